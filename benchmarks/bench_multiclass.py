"""The closed-form ALS kernel's cost as the number of classes K grows (issue 20, part 2).

A K-class ensemble R (m, K, n) becomes a problem with m K rows (classifier u's class k is row
u K + k; `cfjax.from_numpy`), so the ALS kernel is unchanged and one sweep solves m K ridge
systems of size d over n columns (update_X) and n systems of size d over m K rows (update_Y).
At the issue's rank d = K the sweep costs O(n m K d^2 + (n + m K) d^3) = O(n m K^3): cubic in K.

For each K in `--classes` (default 2, 5, 10, 20, 26; K = 2 is the binary (m, n) problem) on a
random Dirichlet ensemble with m = 9 classifiers and n = 10_000 instances (float32, uniform
confidence, lam = the registry default 0.01): the compile time (ahead of time) and the median
wall time of `--repeats` steady-state calls of the jitted `cfjax.solvers.als.als_step` (one
sweep, X then Y), and of `cfjax.ridge.update_X` and `update_Y` alone, each blocked. `--dims`
picks the ranks: "K" (default) and/or fixed integers (e.g. `--dims K 4`, which separates the
growth in rows from the growth in rank).

Prints a markdown table and writes benchmarks/results/multiclass_als.json. Not part of the
tests.

    python benchmarks/bench_multiclass.py [--classes 2 5 10 20 26] [--dims K] [--repeats 7] [--smoke]
"""

from __future__ import annotations

import argparse

import _harness as H
import jax
import numpy as np

import cfjax
from cfjax import ridge
from cfjax.solvers import als
from cfjax.solvers.base import initial_params

M, N = 9, 10_000


def k_class_problem(m: int, k: int, n: int, seed: int = 0) -> cfjax.Problem:
    """A float32 problem from a random (m, k, n) ensemble, 60 % labeled (k = 2: the binary one)."""
    rng = np.random.default_rng(seed)
    R = rng.dirichlet(np.ones(k), size=(m, n)).transpose(0, 2, 1)  # (m, k, n), columns sum to 1
    labels = np.where(rng.uniform(size=n) < 0.6, rng.integers(0, k, n), -1)
    return cfjax.from_numpy(R, labels, dtype=np.float32)


def bench(args) -> list[dict]:
    step = jax.jit(als.als_step, static_argnames="config")
    update_X = jax.jit(ridge.update_X)
    update_Y = jax.jit(ridge.update_Y)
    rows = []
    for k in args.classes:
        problem = k_class_problem(M if not args.smoke else 3, k, args.n)
        for dim in args.dims:
            d = k if dim == "K" else int(dim)
            config = cfjax.Config(method="als", latent_dim=d, init="random")
            hparams = als.METHOD.hparams(dtype=np.float32)
            params = initial_params(jax.random.key(0), problem, hparams, config)
            sweep = H.compile_and_time(step, (params, problem, hparams), {"config": config}, args.repeats,
                                       min_total_s=args.min_total_s)
            X = H.block(update_X(params.Y, problem.R, problem.C, hparams.lam))
            ux = H.compile_and_time(update_X, (params.Y, problem.R, problem.C, hparams.lam), None, args.repeats,
                                    min_total_s=args.min_total_s)
            uy = H.compile_and_time(update_Y, (X, problem.R, problem.C, hparams.lam), None, args.repeats,
                                    min_total_s=args.min_total_s)
            row = dict(rank=dim, K=k, m=problem.n_classifiers, rows=problem.R.shape[0], n=problem.R.shape[1], d=d,
                       dtype="float32", compile_s=sweep["compile_s"], sweep_ms=1e3 * sweep["run_s"],
                       sweep_runs_ms=[1e3 * t for t in sweep["runs_s"]], update_X_ms=1e3 * ux["run_s"],
                       update_Y_ms=1e3 * uy["run_s"])
            rows.append(row)
            print(f"K = {k}, rows {row['rows']}, d = {d}: compile {row['compile_s']:.2f} s, sweep "
                  f"{row['sweep_ms']:.2f} ms (X {row['update_X_ms']:.2f}, Y {row['update_Y_ms']:.2f})", flush=True)
    for row in rows:  # relative to the first K under the same rank rule
        base = next(r for r in rows if r["rank"] == row["rank"])
        row["sweep_vs_first"] = row["sweep_ms"] / base["sweep_ms"]
    return rows


def table(rows: list[dict]) -> str:
    return H.markdown_table(
        ["K", "rows m K", "n", "d", "compile (s)", "sweep, median (ms)", "update_X (ms)", "update_Y (ms)",
         "sweep / first K"],
        [[r["K"], r["rows"], r["n"], r["d"], f"{r['compile_s']:.2f}", f"{r['sweep_ms']:.2f}",
          f"{r['update_X_ms']:.2f}", f"{r['update_Y_ms']:.2f}", f"{r['sweep_vs_first']:.1f}x"] for r in rows],
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", nargs="+", type=int, default=[2, 5, 10, 20, 26])
    parser.add_argument("--dims", nargs="+", default=["K"], help='"K" (d = K) and/or fixed ranks')
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-total-s", type=float, default=1.0, help="repeat until the calls add up to this")
    parser.add_argument("--smoke", action="store_true", help="m = 3, n = 300, K in {2, 3}, one repeat")
    parser.add_argument("--out", default=str(H.RESULTS / "multiclass_als.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.classes, args.n, args.repeats, args.min_total_s = [2, 3], 300, 1, 0.0
    meta = H.provenance()
    print(H.header_line(meta) + f", m = {3 if args.smoke else M}, n = {args.n}, float32")
    rows = bench(args)
    text = table(rows)
    print(text)
    out = H.write_json(args.out, {"settings": dict(classes=args.classes, dims=args.dims, m=M, n=args.n,
                                                   repeats=args.repeats, smoke=args.smoke),
                                  "rows": rows, "table": text}, meta)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
