"""MM-ALS vs joint gradient descent: wall time to reach the same combined loss.

For each size (m, n, d) of the synthetic seed preset (rho = 0.5, lam = 0.01, agg_l2 = 1e-3):

1. every method is compiled once (`jit(...).lower(...).compile()`, timed separately);
2. one long run per method (MM-ALS with `mm_curvature` "bound" and "exact", joint Adam at a few
   learning rates) gives its loss history and its wall time per iteration (scan cost is linear in
   the number of iterations, so time per iteration = run time / max_iter);
3. target = the lowest loss any run reached; each run's time to target is
   (first iteration whose loss is within `--rtol` (1e-4) relative of the target) x time per
   iteration. "-" means the run never got there within its budget.

Prints a markdown table and writes benchmarks/results/mm_als.json (with device and versions).
Not a test: run `python benchmarks/bench_mm_als.py` (about 5 minutes on a 2-core CPU with the
defaults; `--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import cfjax
from cfjax import data, solvers
from cfjax.structs import Config, Hparams

SIZES = [(20, 10_000, 8), (50, 100_000, 16)]


def _run(problem, hparams, config):
    """(compile seconds, run seconds, history.total as NumPy)."""
    fit = jax.jit(solvers.fit_traced, static_argnames="config")
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = fit.lower(key, problem, hparams, config=config).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    result = compiled(key, problem, hparams)
    total = np.asarray(jax.block_until_ready(result.history.total))
    return compile_s, time.perf_counter() - start, total


def bench_size(m, n, d, mm_iters, joint_iters, lrs, rtol):
    ens = data.preset(jax.random.key(0), "seed", n_classifiers=m, n_instances=n)
    problem = ens.problem
    runs = []
    for curvature in ("bound", "exact"):
        config = Config(method="mm_als", latent_dim=d, max_iter=mm_iters, tol=0.0, mm_curvature=curvature)
        runs.append((f"mm_als ({curvature})", config, Hparams.create(rho=0.5)))
    for lr in lrs:
        config = Config(method="joint", latent_dim=d, max_iter=joint_iters, tol=0.0, patience=0)
        runs.append((f"joint adam lr={lr:g}", config, Hparams.create(rho=0.5, lr=lr)))
    rows = []
    for name, config, hparams in runs:
        compile_s, run_s, total = _run(problem, hparams, config)
        rows.append(dict(method=name, compile_s=compile_s, run_s=run_s, iters=config.max_iter,
                         per_iter_s=run_s / config.max_iter, final_loss=float(total[-1]), history=total))
        print(f"  {m}x{n} d={d} {name}: compile {compile_s:.1f}s run {run_s:.1f}s final {total[-1]:.7f}", flush=True)
    target = min(float(np.nanmin(r["history"])) for r in rows)
    for r in rows:
        hit = np.flatnonzero(r.pop("history") <= target * (1.0 + rtol))
        r["iters_to_target"] = int(hit[0]) + 1 if hit.size else None
        r["time_to_target_s"] = r["iters_to_target"] * r["per_iter_s"] if hit.size else None
    joint_times = [r["time_to_target_s"] for r in rows if r["method"].startswith("joint") and r["time_to_target_s"]]
    best_joint = min(joint_times) if joint_times else None
    for r in rows:
        r["speedup_vs_best_joint"] = (
            best_joint / r["time_to_target_s"] if best_joint and r["time_to_target_s"] else None
        )
    return dict(m=m, n=n, d=d, target_loss=target, rtol=rtol, runs=rows)


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def markdown(results):
    lines = [
        "| m | n | d | method | compile s | s / iter | iters to target | time to target s | speed-up vs best joint | final loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["runs"]:
            lines.append(
                f"| {res['m']} | {res['n']} | {res['d']} | {r['method']} | {r['compile_s']:.1f} | "
                f"{r['per_iter_s'] * 1e3:.2f} ms | {_fmt(r['iters_to_target'], 'd')} | "
                f"{_fmt(r['time_to_target_s'], '.2f')} | {_fmt(r['speedup_vs_best_joint'], '.1f')} | "
                f"{r['final_loss']:.7f} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and budgets (smoke run)")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mm_als.json")
    args = parser.parse_args()
    if args.quick:
        plan = [((10, 500, 4), 100, 1000, (0.03,))]
    else:
        # (size, MM sweeps, joint steps, Adam learning rates)
        plan = [(SIZES[0], 300, 4000, (0.01, 0.03, 0.1)), (SIZES[1], 80, 1500, (0.03, 0.1))]
    results = []
    for (m, n, d), mm_iters, joint_iters, lrs in plan:
        results.append(bench_size(m, n, d, mm_iters, joint_iters, lrs, args.rtol))
    table = markdown(results)
    print()
    print(table)
    meta = dict(
        device=str(jax.devices()[0]), platform=platform.platform(), jax=jax.__version__,
        cfjax=cfjax.__version__, dtype=str(jnp.result_type(float)),
        rho=0.5, lam=0.01, agg_l2=1e-3, preset="seed",
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(meta=meta, results=results, table=table), indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
