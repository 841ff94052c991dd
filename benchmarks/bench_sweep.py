"""The sweep entry point against a Python loop of the jitted single fit.

16 rho values x 4 seeds on a synthetic ensemble of (m, n) = (20, 20000), latent_dim 8, 50
iterations, for the joint and als methods. For each: compile time and the median wall time of
`--repeats` steady-state runs of

* `cfjax.sweep.run(keys, problem, grid, config, strategy=...)` for each strategy, host checks
  included (they are part of the entry point);
* a Python loop `cfjax.fit_jit(keys[s], problem, hparams[g], config)` over the 64 fits, the
  per-point `Hparams` built before the clock starts, blocking once at the end.

Compile time is measured ahead of time (`lower` + `compile`, tracing included). With
`--init svd` (the default) the SVD of C * R is independent of rho (uniform confidence), so
inside one sweep program XLA computes it once, whereas every call of the loop pays it;
`--init random` shows the cost of the iterations alone.

Prints a markdown table and writes benchmarks/results/sweep.json. Not part of the tests.

    python benchmarks/bench_sweep.py [--repeats 3] [--methods joint als] [--smoke]
"""

from __future__ import annotations

import argparse
import functools

import _harness as H
import jax
import numpy as np

import cfjax
from cfjax import data, sweep


def _compile_and_median(jitted, args, kwargs, call, repeats: int):
    """(compile s, median steady run s, steady runs s): `_harness.compile_and_time`, timing the
    host entry point `call` (warmed up untimed first: AOT results do not fill the jit cache)."""
    t = H.compile_and_time(jitted, args, kwargs, repeats, call=call)
    return t["compile_s"], t["run_s"], t["runs_s"]


def bench_method(method: str, problem, keys, grid, args) -> list[dict]:
    config = cfjax.Config(
        method=method, formulation="free", latent_dim=args.d, max_iter=args.iters, tol=0.0, patience=0,
        init=args.init
    )
    n_fits = sweep.grid_size(grid) * keys.shape[0]
    rows = []

    # the Python loop of the jitted single fit (one compile, shared by the 64 calls)
    points = [sweep.take(grid, g) for g in range(sweep.grid_size(grid))]

    def loop():
        return [cfjax.fit_jit(k, problem, h, config) for h in points for k in keys]

    compile_s, loop_time, loop_times = _compile_and_median(
        cfjax.fit_jit, (keys[0], problem, points[0]), {"config": config}, loop, args.repeats
    )
    rows.append(
        {
            "method": method,
            "runner": "python loop of fit_jit",
            "compile_s": compile_s,
            "run_s": loop_time,
            "runs_s": loop_times,
            "per_fit_ms": 1e3 * loop_time / n_fits,
            "ratio": 1.0,
        }
    )
    print(f"  {method} loop: {loop_time:.3f}s", flush=True)

    for strategy, batch_size in args.strategies:
        call = functools.partial(
            sweep.run, keys, problem, grid, config, strategy=strategy, batch_size=batch_size
        )
        compile_s, run_s, runs = _compile_and_median(
            sweep._sweep_jit,
            (keys, problem, grid, config, strategy, batch_size),
            {},
            call,
            args.repeats,
        )
        label = f"sweep.run {strategy}" + (f" (batch {batch_size})" if batch_size else "")
        rows.append(
            {
                "method": method,
                "runner": label,
                "compile_s": compile_s,
                "run_s": run_s,
                "runs_s": runs,
                "per_fit_ms": 1e3 * run_s / n_fits,
                "ratio": run_s / loop_time,
            }
        )
        print(f"  {method} {label}: {run_s:.3f}s ({run_s / loop_time:.2f}x loop)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| method | runner | compile (s) | run, median (s) | per fit (ms) | vs loop |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['runner']} | {r['compile_s']:.2f} | {r['run_s']:.3f} | "
            f"{r['per_fit_ms']:.1f} | {r['ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rhos", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--m", type=int, default=20)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="for the map_batched strategy")
    parser.add_argument("--methods", nargs="+", default=["joint", "als"])
    parser.add_argument(
        "--init",
        default="svd",
        choices=["svd", "random"],
        help="svd (default): the SVD of C * R does not depend on rho, so XLA computes "
        "it once per sweep, while the loop pays it per fit; random isolates the "
        "iterations",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument(
        "--out",
        default=None,
        help="default benchmarks/results/sweep.json (sweep_random_init.json with --init random)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rhos, args.seeds, args.n, args.iters, args.repeats = 4, 2, 500, 5, 1
    args.strategies = [("map", None), ("vmap", None), ("map_batched", args.batch_size)]

    meta = H.provenance()
    print(H.header_line(meta))
    ens = data.synthetic(jax.random.key(0), n_classifiers=args.m, n_instances=args.n)
    problem = ens.problem
    grid = sweep.grid(rho=np.linspace(0.05, 0.95, args.rhos))
    keys = jax.random.split(jax.random.key(1), args.seeds)
    print(
        f"init {args.init}, {args.rhos} rho x {args.seeds} seeds, "
        f"(m, n, d) = ({args.m}, {args.n}, {args.d}), {args.iters} iterations, "
        f"device {jax.devices()[0]}, auto = {sweep.resolve_strategy('auto')}"
    )
    rows = []
    for method in args.methods:
        rows += bench_method(method, problem, keys, grid, args)
    text = table(rows)
    print(text)
    payload = {
        "cfjax": cfjax.__version__,
        "auto_strategy": sweep.resolve_strategy("auto"),
        "settings": {
            "init": args.init,
            "rhos": args.rhos,
            "seeds": args.seeds,
            "m": args.m,
            "n": args.n,
            "d": args.d,
            "iters": args.iters,
            "repeats": args.repeats,
            "batch_size": args.batch_size,
            "smoke": args.smoke,
        },
        "rows": rows,
        "table": text,
    }
    default = "sweep.json" if args.init == "svd" else "sweep_random_init.json"
    out = H.write_json(args.out or H.RESULTS / default, payload, meta)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
