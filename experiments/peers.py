"""The baselines and the peer systems on the same splits: accuracy at 10 % labels, and speed.

Every entry of `cfjax.baselines.BASELINES` (simple average, best single, stacking, Caruana
ensemble selection, the spectral meta-learner, local competence) and, where the optional
`peers` extra is installed, of `PEERS` (Dawid-Skene, Snorkel's label model, on hard votes), on
the synthetic presets "seed" and "imbalanced_10" (splits 0-9) and on breast_cancer (seeds 0-4),
all with labeled_fraction 0.1. Test PR-AUC on the unlabeled columns; per data set the mean and
the paired difference against simple_average with its 95 % t interval and wins/losses. Then the
wall time of each at n = 20000 (60 % labeled, |L| = 12000): the first call (for the jnp
baselines under `jax.jit`, compile included) and the best of three warm calls.

Writes results/peers/ (config.json, records.json, table.md) and prints the table.

    python experiments/peers.py [--synthetic-splits 10] [--real-splits 5] [--timing-n 20000]
                                [--no-peers] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import provenance, results_dir, score_test_columns, write_json

from cfjax import baselines, data
from cfjax.benchmark import t_interval

LABELED_FRACTION = 0.1
REFERENCE = "simple_average"


def _methods(with_peers: bool) -> dict:
    methods = dict(baselines.BASELINES)
    if with_peers:
        for name, fn in baselines.PEERS.items():
            try:
                fn(data.synthetic(jax.random.key(0), n_instances=20).problem)
            except ImportError as err:
                print(f"skipping {name}: {err}")
                continue
            methods[name] = fn
    return methods


def _ensembles(synthetic_splits: int, real_splits: int, n: int | None):
    extra = {} if n is None else {"n_instances": n}
    for preset in ("seed", "imbalanced_10"):
        for s in range(synthetic_splits):
            yield f"synthetic-{preset}", s, data.preset(
                jax.random.key(s), preset, labeled_fraction=LABELED_FRACTION, **extra)
    if real_splits:
        from cfjax import datasets

        for s in range(real_splits):
            yield "breast_cancer", s, datasets.load("breast_cancer", seed=s, labeled_fraction=LABELED_FRACTION)


def accuracy(methods: dict, synthetic_splits: int, real_splits: int, n: int | None) -> list[dict]:
    records = []
    for name, split, ens in _ensembles(synthetic_splits, real_splits, n):
        for method, fn in methods.items():
            start = time.perf_counter()
            proba = np.asarray(fn(ens.problem))
            seconds = time.perf_counter() - start
            scores = score_test_columns(ens.y_true, proba, ens.test)
            records.append(dict(dataset=name, split=split, method=method, seconds=seconds, **scores))
            print(f"{name} {split} {method}: pr_auc {scores['pr_auc']:.4f} ({seconds:.2f} s)", flush=True)
    return records


def timing(methods: dict, n: int) -> list[dict]:
    ens = data.synthetic(jax.random.key(0), n_instances=n, labeled_fraction=0.6)
    rows = []
    for method, fn in methods.items():
        host = method in baselines.PEERS
        call = fn if host else jax.jit(fn)
        start = time.perf_counter()
        jax.block_until_ready(call(ens.problem))
        first = time.perf_counter() - start
        warm = []
        for _ in range(3):
            start = time.perf_counter()
            jax.block_until_ready(call(ens.problem))
            warm.append(time.perf_counter() - start)
        rows.append(dict(method=method, n=n, first_s=first, warm_s=min(warm), host=host))
        print(f"timing {method}: first {first:.2f} s, warm {min(warm):.3f} s", flush=True)
    return rows


def table(records: list[dict], times: list[dict]) -> str:
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    by = {(r["dataset"], r["method"], r["split"]): r["pr_auc"] for r in records}
    lines = ["| method | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for method in methods:
        cells = [f"{np.mean([v for (d, m, _), v in by.items() if d == ds and m == method]):.4f}" for ds in datasets]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired difference in test PR-AUC against {REFERENCE} (mean [95 % t interval], wins/losses):", ""]
    lines += ["| method | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for method in methods:
        if method == REFERENCE:
            continue
        cells = []
        for ds in datasets:
            splits = sorted(s for (d, m, s) in by if d == ds and m == method)
            diff = [by[(ds, method, s)] - by[(ds, REFERENCE, s)] for s in splits]
            mean, lo, hi = t_interval(diff)
            wins, losses = sum(x > 0 for x in diff), sum(x < 0 for x in diff)
            cells.append(f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] {wins}/{losses}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if times:
        lines += ["", f"Wall time at n = {times[0]['n']} (m = 10, 60 % labeled):", "",
                  "| method | first call (s) | warm call (s) |", "|---|---|---|"]
        for t in times:
            note = " (host)" if t["host"] else " (jit, compile in first)"
            lines.append(f"| {t['method']}{note} | {t['first_s']:.2f} | {t['warm_s']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-splits", type=int, default=10)
    parser.add_argument("--real-splits", type=int, default=5)
    parser.add_argument("--timing-n", type=int, default=20000, help="0 skips the timing")
    parser.add_argument("--no-peers", action="store_true", help="only the jnp baselines")
    parser.add_argument("--smoke", action="store_true", help="one small synthetic split, no timing")
    args = parser.parse_args(argv)
    n = None
    if args.smoke:
        args.synthetic_splits, args.real_splits, args.timing_n, n = 1, 0, 0, 300
    out = results_dir("peers")
    methods = _methods(not args.no_peers)
    records = accuracy(methods, args.synthetic_splits, args.real_splits, n)
    times = timing(methods, args.timing_n) if args.timing_n else []
    text = table(records, times)
    (out / "table.md").write_text(text)
    write_json(out / "records.json", {"accuracy": records, "timing": times})
    write_json(out / "config.json", provenance(**vars(args), methods=list(methods),
                                               labeled_fraction=LABELED_FRACTION))
    print(text)


if __name__ == "__main__":
    main()
