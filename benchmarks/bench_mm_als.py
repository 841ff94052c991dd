"""MM-ALS vs joint gradient descent: wall time to reach the same combined loss.

For each size (m, n, d) of the synthetic seed preset (rho = 0.5, lam = 0.01, agg_l2 = 1e-3,
float32, the SVD init shared by every method):

1. every run is compiled once (`jit(...).lower(...).compile()`, timed separately; a run that
   differs from an earlier one only in traced hyperparameters, e.g. Adam's learning rate,
   reuses its program and shows a compile time of ~0);
2. one long run per method (MM-ALS with `mm_curvature` "bound", "sharp", "exact"; joint Adam at
   a few learning rates, no early stopping, no convergence stop) gives its loss history and
   wall time; the setup every fit shares (confidence, SVD init, first evaluation) is timed on
   its own, and a run's time per iteration is (run time - setup) / iterations;
3. two targets, each reached when a run's loss is within `--rtol` (1e-4) relative of it:
   * "best": the lowest loss any run reached (the brief's target);
   * "joint": the lowest loss any joint run reached (what joint itself achieves in its budget);
   time to a target = setup + first iteration there x time per iteration. "-": not reached
   within the budget. Speed-up = best joint time / MM time; where no joint run reached the
   target it is a lower bound ">= x" (joint's whole budget / MM time).

Prints a markdown table and writes benchmarks/results/mm_als.json (device, versions, table).
Not a test. `python benchmarks/bench_mm_als.py`: about 5-8 minutes on 2 CPU cores, where joint
cannot be run to convergence at the large size (so that ratio is a lower bound);
`--long` gives joint 2000 steps there (about 15 more minutes on CPU, seconds on a GPU);
`--quick`: a smoke run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _harness as H
import jax
import jax.numpy as jnp
import numpy as np

import cfjax
from cfjax import data, solvers
from cfjax.solvers import driver
from cfjax.structs import Config, Hparams

SIZES = [(20, 10_000, 8), (50, 100_000, 16)]
# (size, {curvature: MM sweeps}, joint steps, Adam learning rates)
PLAN = [
    (SIZES[0], {"bound": 400, "sharp": 200, "exact": 40}, 6000, (0.03, 0.1)),
    (SIZES[1], {"sharp": 20, "exact": 20}, 600, (0.1,)),
]
LONG = [
    (SIZES[0], {"bound": 400, "sharp": 200, "exact": 40}, 6000, (0.03, 0.1)),
    (SIZES[1], {"bound": 60, "sharp": 60, "exact": 30}, 2000, (0.03, 0.1)),
]
QUICK = [((10, 500, 4), {"bound": 100, "sharp": 100, "exact": 40}, 2000, (0.03,))]
NEVER = -1.0  # Config.tol that never reports convergence: every run uses its whole budget


def _timed(fn, *args, repeat_below_s=10.0):
    """Wall seconds of `fn(*args)` (the faster of two calls when short: timer noise) and its value."""
    best = np.inf
    for _ in range(2):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
        if best > repeat_below_s:
            break
    return best, out


def _setup_time(problem, hparams, config):
    """The work every fit does before its loop: confidence, init, first evaluation
    (`cfjax.solvers.driver.prepare`, `solvers.initial_params`, `driver.evaluate`)."""

    def setup(key, problem, hparams):
        prepared, _ = driver.prepare(problem, hparams, config)
        params = solvers.initial_params(key, prepared, hparams, config)
        return driver.evaluate(params, prepared, hparams, config)

    compiled = jax.jit(setup).lower(jax.random.key(0), problem, hparams).compile()
    return _timed(compiled, jax.random.key(0), problem, hparams)[0]


def _run(problem, hparams, config):
    """(compile seconds, run seconds, history.total as NumPy) of one fit."""
    fit = jax.jit(solvers.fit_traced, static_argnames="config")
    key = jax.random.key(0)
    compile_s, compiled = H.compile_time(fit, key, problem, hparams, config=config)
    run_s, result = _timed(compiled, key, problem, hparams)
    return compile_s, run_s, np.asarray(result.history.total)


def _reach(history, target, rtol):
    hit = np.flatnonzero(history <= target * (1.0 + rtol))
    return int(hit[0]) + 1 if hit.size else None


def bench_size(m, n, d, mm_iters, joint_iters, lrs, rtol):
    ens = data.preset(jax.random.key(0), "seed", n_classifiers=m, n_instances=n)
    problem = ens.problem
    setup_s = _setup_time(problem, Hparams.create(rho=0.5), Config(latent_dim=d))
    print(f"  {m}x{n} d={d}: shared setup {setup_s:.2f}s", flush=True)
    runs = []
    for curvature, iters in mm_iters.items():
        config = Config(
            method="mm_als", latent_dim=d, max_iter=iters, tol=NEVER, mm_curvature=curvature
        )
        runs.append((f"mm_als ({curvature})", config, Hparams.create(rho=0.5)))
    for lr in lrs:
        config = Config(method="joint", formulation="free", latent_dim=d, max_iter=joint_iters, tol=NEVER, patience=0)
        runs.append((f"joint adam lr={lr:g}", config, Hparams.create(rho=0.5, lr=lr)))
    rows, histories = [], []
    for name, config, hparams in runs:
        compile_s, run_s, total = _run(problem, hparams, config)
        per_iter = max(run_s - setup_s, 0.0) / config.max_iter
        rows.append(
            {
                "method": name,
                "compile_s": compile_s,
                "run_s": run_s,
                "iters": config.max_iter,
                "per_iter_s": per_iter,
                "final_loss": float(total[-1]),
                "best_loss": float(np.nanmin(total)),
            }
        )
        histories.append(total)
        print(
            f"  {m}x{n} d={d} {name}: compile {compile_s:.1f}s, {config.max_iter} iters in {run_s:.1f}s, "
            f"final {total[-1]:.7f}",
            flush=True,
        )
    is_joint = [r["method"].startswith("joint") for r in rows]
    targets = {
        "best": min(r["best_loss"] for r in rows),
        "joint": min(r["best_loss"] for r, j in zip(rows, is_joint) if j),
    }
    for name, target in targets.items():
        for r, h in zip(rows, histories):
            k = _reach(h, target, rtol)
            r[f"iters_to_{name}"] = k
            r[f"s_to_{name}"] = None if k is None else setup_s + k * r["per_iter_s"]
        joint_times = [
            r[f"s_to_{name}"] for r, j in zip(rows, is_joint) if j and r[f"s_to_{name}"] is not None
        ]
        joint_budget = min(
            setup_s + r["iters"] * r["per_iter_s"] for r, j in zip(rows, is_joint) if j
        )
        for r, j in zip(rows, is_joint):
            if j or r[f"s_to_{name}"] is None:
                r[f"speedup_{name}"] = None
            elif joint_times:
                r[f"speedup_{name}"] = min(joint_times) / r[f"s_to_{name}"]
            else:  # no joint run got there: it needed more than its whole budget
                r[f"speedup_{name}"] = f">= {joint_budget / r[f's_to_{name}']:.1f}"
    return {
        "m": m,
        "n": n,
        "d": d,
        "targets": targets,
        "rtol": rtol,
        "setup_s": setup_s,
        "runs": rows,
    }


def _fmt(value, spec):
    if value is None:
        return "-"
    return value if isinstance(value, str) else format(value, spec)


def markdown(results):
    lines = [
        (
            "| m | n | d | method | compile s | ms / iter | iters run | final loss | iters to best "
            "| s to best | speed-up (best) | iters to joint's | s to joint's | speed-up (joint's) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["runs"]:
            lines.append(
                f"| {res['m']} | {res['n']} | {res['d']} | {r['method']} | {r['compile_s']:.1f} | "
                f"{r['per_iter_s'] * 1e3:.1f} | {r['iters']} | {r['final_loss']:.7f} | "
                f"{_fmt(r['iters_to_best'], 'd')} | {_fmt(r['s_to_best'], '.3g')} | "
                f"{_fmt(r['speedup_best'], '.1f')} | {_fmt(r['iters_to_joint'], 'd')} | "
                f"{_fmt(r['s_to_joint'], '.3g')} | {_fmt(r['speedup_joint'], '.1f')} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--quick", action="store_true", help="one tiny size (smoke run)")
    budget.add_argument(
        "--long", action="store_true", help="joint run to its plateau at the large size"
    )
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--out", type=Path, default=H.RESULTS / "mm_als.json")
    args = parser.parse_args()
    plan = QUICK if args.quick else LONG if args.long else PLAN
    meta = H.provenance()
    print(H.header_line(meta))
    results = [bench_size(m, n, d, mm, joint, lrs, args.rtol) for (m, n, d), mm, joint, lrs in plan]
    table = markdown(results)
    print()
    print(table)
    settings = {
        "cfjax": cfjax.__version__,
        "dtype": str(jnp.result_type(float)),
        "rho": 0.5,
        "lam": 0.01,
        "agg_l2": 1e-3,
        "preset": "seed",
        "budget": "quick" if args.quick else "long" if args.long else "default",
    }
    H.write_json(args.out, {"settings": settings, "results": results, "table": table}, meta)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
