"""The default pipeline's cost against its candidates': `cfjax fit` in fresh processes.

For each panel-sized ensemble (real: m = 9 scikit-learn models; synthetic: m = 10), every
measurement is one fresh `python -m cfjax fit` process (what a user pays), timed around the
whole process, with JAX's persistent compilation cache in a folder of the benchmark's own:

* cold: the cache folder empty (every program compiled);
* warm: the same folder again (programs loaded from disk).

Pipelines: the default (`auto`) and each of its candidates fitted alone by the command at the
candidate's settings (the slowest of them is the reference of the issue-14 target: auto <= 3x
it cold, <= 2x warm). Prints a table (median seconds over repeats, ratios) and writes JSON.

    python benchmarks/bench_auto.py [--datasets breast_cancer pima phoneme synthetic-seed]
        [--labeled 0.1] [--repeats 3] [--out benchmarks/results/auto.json]
    python benchmarks/bench_auto.py --smoke --out /tmp/auto.json   # synthetic-seed, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import provenance

from cfjax import benchmark
from cfjax.solvers.auto import CANDIDATES, candidate_config


def _input(name: str, fraction: float, folder: Path) -> tuple[Path, tuple[int, int]]:
    ens = benchmark.load_ensemble(name, 0, labeled_fraction=fraction)
    R = np.asarray(ens.problem.R, np.float64)
    R[~np.asarray(ens.problem.observed)] = np.nan
    labels = np.where(np.asarray(ens.problem.labeled), ens.y_true, -1)
    path = folder / f"{name}.npz"
    np.savez(path, R=R, labels=labels)
    return path, R.shape


def _candidate_args(index: int, shape: tuple[int, int]) -> list[str]:
    """The `cfjax fit` flags of candidate `index` fitted alone (its first grid point)."""
    from cfjax import Config

    cand = CANDIDATES[index]
    config = candidate_config(cand, Config(latent_dim=min(4, *shape)), *shape)
    args = ["--method", cand.method, "--latent-dim", str(config.latent_dim)]
    if cand.method == "joint":
        args += ["--formulation", cand.formulation]
    point = cand.points()[0]
    if "rho" in point:
        args += ["--rho", str(point["rho"])]
    args += ["--space", cand.space] + (["--aggregator", cand.aggregator] if cand.aggregator else [])
    return args


def _run(input_path: Path, args: list[str], cache: Path, out: Path) -> float:
    env = {**os.environ, "CFJAX_COMPILATION_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cfjax", "fit", str(input_path), *args, "--output", str(out), "--quiet"],
                   check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["breast_cancer", "pima", "phoneme", "synthetic-seed"])
    parser.add_argument("--labeled", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "auto.json"))
    parser.add_argument("--smoke", action="store_true", help="synthetic-seed only, one repeat")
    args = parser.parse_args(argv)
    if args.smoke:
        args.datasets, args.repeats = ["synthetic-seed"], 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.datasets:
            path, shape = _input(name, args.labeled, tmp)
            pipelines = {"auto": []}
            for i, cand in enumerate(CANDIDATES):
                pipelines[f"candidate {i}: {cand.label(candidate_config(cand, _config(shape), *shape).latent_dim)}"] = \
                    _candidate_args(i, shape)
            for label, flags in pipelines.items():
                cold, warm = [], []
                for r in range(args.repeats):
                    cache = tmp / f"cache-{name}-{abs(hash(label))}-{r}"
                    cold.append(_run(path, flags, cache, tmp / "out.npz"))
                    warm.append(_run(path, flags, cache, tmp / "out.npz"))
                    shutil.rmtree(cache, ignore_errors=True)
                rows.append(dict(dataset=name, m=shape[0], n=shape[1], pipeline=label,
                                 cold_s=float(np.median(cold)), warm_s=float(np.median(warm)), cold=cold, warm=warm))
                print(f"{name:16s} {label:60s} cold {np.median(cold):6.1f} s  warm {np.median(warm):6.1f} s", flush=True)
    print("\n| data set (m x n) | auto cold (s) | slowest candidate cold (s) | ratio | auto warm (s) | "
          "slowest candidate warm (s) | ratio |")
    print("|---|---|---|---|---|---|---|")
    summary = []
    for name in args.datasets:
        sub = [r for r in rows if r["dataset"] == name]
        auto = next(r for r in sub if r["pipeline"] == "auto")
        cands = [r for r in sub if r["pipeline"] != "auto"]
        slow_cold = max(r["cold_s"] for r in cands)
        slow_warm = max(r["warm_s"] for r in cands)
        summary.append(dict(dataset=name, cold_ratio=auto["cold_s"] / slow_cold, warm_ratio=auto["warm_s"] / slow_warm))
        print(f"| {name} ({auto['m']} x {auto['n']}) | {auto['cold_s']:.1f} | {slow_cold:.1f} | "
              f"{auto['cold_s'] / slow_cold:.2f} | {auto['warm_s']:.1f} | {slow_warm:.1f} | {auto['warm_s'] / slow_warm:.2f} |")
    cold_med = float(np.median([s["cold_ratio"] for s in summary]))
    warm_med = float(np.median([s["warm_ratio"] for s in summary]))
    print(f"\nmedian ratio auto / slowest candidate: cold {cold_med:.2f} (target <= 3), warm {warm_med:.2f} (target <= 2)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {**provenance(), "labeled": args.labeled, "repeats": args.repeats, "smoke": args.smoke}
    Path(args.out).write_text(json.dumps(dict(provenance=meta,
                                              rows=rows, summary=summary, median_cold_ratio=cold_med,
                                              median_warm_ratio=warm_med), indent=2) + "\n")


def _config(shape):
    from cfjax import Config

    return Config(latent_dim=min(4, *shape))


if __name__ == "__main__":
    main()
