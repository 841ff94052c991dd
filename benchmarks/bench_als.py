"""One ALS sweep (`cfjax.ridge.als_sweep`) against a NumPy loop of per-row np.linalg.solve.

For each (m, n, d) in `--sizes` (default (10, 1e4, 8) and (50, 1e5, 16)), on a random
problem with 30% of the cells unobserved (C = 0):

* compile time (ahead of time, `lower` + `compile`) and the median wall time of `--repeats`
  steady-state sweeps (X then Y), blocking on the result, in float32 and float64, and in
  float32 also with `--chunk` rows per chunk;
* the float64 NumPy reference: a Python loop over the m + n rows, each forming
  F diag(c) F^T + lam I and calling np.linalg.solve. All m classifier rows are timed; the
  instance rows are timed on a subset of `--numpy-rows` and scaled to n.

`--solvers` adds the micro-benchmark behind `cfjax.ridge`'s choice of method: the batched SPD
solve alone (Grams given) for d in {4, 8, 16, 32} and rows in {1e4, 1e5}, comparing the
unrolled and the looped batch-last Cholesky, batched `jnp.linalg.cholesky` + `triangular_solve`, and
batched `jnp.linalg.solve` (jax issue 36927). The unrolled one is skipped above
`--unrolled-max-d` (default 16) because its compile time grows as d^3. `--smoke` shrinks both
parts to a few seconds (sweeps at (5, 300, 4); solvers at 300 rows, d in {4, 8}).

Prints markdown tables and writes benchmarks/results/als.json. Not part of the tests.

    python benchmarks/bench_als.py [--repeats 5] [--solvers] [--smoke]
"""

from __future__ import annotations

import argparse
import time

import _harness as H
import jax
import jax.numpy as jnp
import numpy as np
from _problem import numpy_rows
from jax import lax

from cfjax import ridge

LAM = 0.1
SOLVER_ROWS = (10_000, 100_000)  # the solver micro-benchmark's batch sizes and latent dims
SOLVER_DIMS = (4, 8, 16, 32)


def random_problem(m: int, n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    R = rng.uniform(size=(m, n))
    C = (rng.uniform(size=(m, n)) > 0.3).astype(np.float64)
    X = rng.normal(size=(d, m)) / np.sqrt(d)
    Y = rng.normal(size=(d, n)) / np.sqrt(d)
    return X, Y, R, C


def numpy_sweep_time(X, Y, R, C, lam, n_sub: int) -> tuple[float, float, float]:
    """(estimated seconds of a full sweep, seconds for X, seconds for the Y subset)."""
    m, n = R.shape
    start = time.perf_counter()
    X_new = numpy_rows(Y, R, C, lam, range(m))
    t_x = time.perf_counter() - start
    sub = np.linspace(0, n - 1, min(n_sub, n)).astype(int)
    Rt, Ct = np.ascontiguousarray(R.T), np.ascontiguousarray(C.T)
    start = time.perf_counter()
    numpy_rows(X_new, Rt, Ct, lam, sub)
    t_y = time.perf_counter() - start
    return t_x + t_y * n / len(sub), t_x, t_y


def bench_sweeps(args) -> list[dict]:
    sweep = jax.jit(ridge.als_sweep, static_argnames=("chunk_size", "method"))
    rows = []
    for m, n, d in args.sizes:
        X, Y, R, C = random_problem(m, n, d)
        ref_s, t_x, t_y = numpy_sweep_time(X, Y, R, C, LAM, args.numpy_rows)
        print(f"(m, n, d) = ({m}, {n}, {d}): numpy loop {ref_s:.2f}s (est.)", flush=True)
        for dtype in ("float32", "float64"):
            # chunked in float32 only: each variant is another d^3-sized compile
            for chunk in (0, args.chunk) if dtype == "float32" else (0,):
                if chunk >= n:
                    continue
                with jax.enable_x64(dtype == "float64"):
                    arrs = [jnp.asarray(a, dtype) for a in (X, Y, R, C)]
                    lam = jnp.asarray(LAM, dtype)
                    t = H.compile_and_time(sweep, (*arrs, lam), {"chunk_size": chunk}, args.repeats)
                compile_s, run_s, runs = t["compile_s"], t["run_s"], t["runs_s"]
                rows.append(
                    {
                        "m": m,
                        "n": n,
                        "d": d,
                        "dtype": dtype,
                        "chunk": chunk,
                        "compile_s": compile_s,
                        "sweep_ms": 1e3 * run_s,
                        "runs_ms": [1e3 * t for t in runs],
                        "numpy_ms": 1e3 * ref_s,
                        "numpy_x_ms": 1e3 * t_x,
                        "numpy_y_subset_ms": 1e3 * t_y,
                        "numpy_y_subset_rows": min(args.numpy_rows, n),
                        "speedup": ref_s / run_s,
                    }
                )
                print(
                    f"  {dtype} chunk {chunk}: compile {compile_s:.2f}s, sweep {1e3 * run_s:.1f}ms "
                    f"({ref_s / run_s:.0f}x numpy)",
                    flush=True,
                )
    return rows


def sweep_table(rows: list[dict]) -> str:
    lines = [
        (
            "| m | n | d | dtype | chunk | compile (s) | sweep, median (ms) "
            "| NumPy loop f64 (ms, est.) | speed-up |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['m']} | {r['n']} | {r['d']} | {r['dtype']} | {r['chunk'] or '-'} | "
            f"{r['compile_s']:.2f} | {r['sweep_ms']:.1f} | {r['numpy_ms']:.0f} | "
            f"{r['speedup']:.0f}x |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ the solver micro-benchmark


def _spd_batch(d: int, rows: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(d, 20))
    C = rng.uniform(size=(rows, 20))
    G = np.array(ridge.gram_packed(jnp.asarray(F, dtype), jnp.asarray(C, dtype)))
    G[[a * (a + 1) // 2 + a for a in range(d)]] += 0.1
    b = rng.normal(size=(d, rows))
    return jnp.asarray(G, dtype), jnp.asarray(b, dtype)


def _dense(G, d):
    sym = np.array(
        [[max(a, c) * (max(a, c) + 1) // 2 + min(a, c) for c in range(d)] for a in range(d)]
    )
    return jnp.moveaxis(G[sym], -1, 0)


def _unrolled(G, b):
    return ridge.cholesky._cholesky_solve_unrolled(G, b, jnp.zeros(b.shape[1], b.dtype))


def _looped(G, b):
    return ridge.cholesky._cholesky_solve_looped(G, b, jnp.zeros(b.shape[1], b.dtype))


def _chol_tri(G, b):
    L = jnp.linalg.cholesky(_dense(G, b.shape[0]))
    z = lax.linalg.triangular_solve(L, b.T[..., None], left_side=True, lower=True)
    return lax.linalg.triangular_solve(L, z, left_side=True, lower=True, transpose_a=True)[..., 0].T


def _solve(G, b):
    return jnp.linalg.solve(_dense(G, b.shape[0]), b.T[..., None])[..., 0].T


SOLVERS = {
    "unrolled (batch last)": _unrolled,
    "looped (batch last)": _looped,
    "cholesky + triangular_solve": _chol_tri,
    "jnp.linalg.solve": _solve,
}


def bench_solvers(args) -> list[dict]:
    rows = []
    for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
            for n_rows in args.solver_rows:
                for d in args.solver_dims:
                    G, b = _spd_batch(d, n_rows, dtype)
                    for name, fn in SOLVERS.items():
                        if name.startswith("unrolled") and d > args.unrolled_max_d:
                            continue
                        t = H.compile_and_time(jax.jit(fn), (G, b), None, args.repeats)
                        compile_s, run_s = t["compile_s"], t["run_s"]
                        rows.append(
                            {
                                "dtype": dtype,
                                "rows": n_rows,
                                "d": d,
                                "solver": name,
                                "compile_s": compile_s,
                                "solve_ms": 1e3 * run_s,
                            }
                        )
                        print(
                            f"  {dtype} rows {n_rows} d {d} {name}: {1e3 * run_s:.2f}ms "
                            f"(compile {compile_s:.1f}s)",
                            flush=True,
                        )
    return rows


def solver_table(rows: list[dict]) -> str:
    names = list(SOLVERS)
    lines = [
        "| dtype | rows | d | " + " | ".join(f"{s} (ms)" for s in names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    keys = sorted({(r["dtype"], r["rows"], r["d"]) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
    for key in keys:
        cells = []
        for s in names:
            hit = [r for r in rows if (r["dtype"], r["rows"], r["d"], r["solver"]) == (*key, s)]
            cells.append(f"{hit[0]['solve_ms']:.2f}" if hit else "-")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="*",
        default=["10,10000,8", "50,100000,16"],
        help="m,n,d triples; none (`--sizes` alone) skips the sweeps",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=8192, help="chunk_size of the chunked runs")
    parser.add_argument("--numpy-rows", type=int, default=2000, help="instance rows timed in NumPy")
    parser.add_argument(
        "--solvers", action="store_true", help="also run the solver micro-benchmark"
    )
    parser.add_argument("--unrolled-max-d", type=int, default=16)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repeat (solvers: 300 rows, d in {4, 8})"
    )
    parser.add_argument("--out", default=str(H.RESULTS / "als.json"))
    args = parser.parse_args(argv)
    args.solver_rows, args.solver_dims = SOLVER_ROWS, SOLVER_DIMS
    if args.smoke:
        args.sizes, args.repeats, args.numpy_rows, args.chunk = ["5,300,4"], 1, 50, 128
        args.solver_rows, args.solver_dims = (300,), (4, 8)
    args.sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes]

    meta = H.provenance()
    print(H.header_line(meta) + f", lam = {LAM}")
    rows = bench_sweeps(args)
    text = sweep_table(rows)
    print(text)
    payload = {
        "lam": LAM,
        "unroll_max_dim": ridge.UNROLL_MAX_DIM,
        "settings": {
            "sizes": args.sizes,
            "repeats": args.repeats,
            "chunk": args.chunk,
            "numpy_rows": args.numpy_rows,
            "smoke": args.smoke,
        },
        "rows": rows,
        "table": text,
    }
    if args.solvers:
        solver_rows = bench_solvers(args)
        payload["solver_rows"] = solver_rows
        payload["solver_table"] = solver_table(solver_rows)
        print(payload["solver_table"])
    out = H.write_json(args.out, payload, meta)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
