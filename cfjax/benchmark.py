"""The panel benchmark: every method and baseline on several ensembles over repeated splits.

`run_panel` fits each method on each (data set, labeled fraction, split) and scores the
transductive predictions on the unlabeled columns; `summarize` turns the records into a table
with paired differences against the baselines and 95% confidence intervals (Student t over
splits, the split being the unit of pairing). Used by `cfjax benchmark` and by the experiment
scripts.

The labeled fraction is an axis of the panel. `None` stands for each source's own default
(`default_labeled_fraction`: 0.6 for the real data sets, the preset's value, 0.5, for
`synthetic-*`). A (data set, fraction) pair is *applicable* on a set of splits when every split
labels at least `MIN_LABELED_PER_CLASS` (5) instances of each class, what the real ensembles'
5-fold out-of-fold protocol needs (and, for real data sets, leaves every out-of-fold training
set at least the kNN base model's 15 instances); `applicable` decides it from class counts
alone (`labeled_counts`), without building an ensemble, and `run_panel` skips the other pairs
and lists them in its result's `skipped`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cfjax import baselines, data, metrics, multiclass, predict, solvers
from cfjax.api import fit, prepare_inputs
from cfjax.io import git_commit, provenance
from cfjax.structs import Config, FitResult, Problem

__all__ = [
    "DEFAULT_DATASETS",
    "MIN_LABELED_PER_CLASS",
    "SYNTHETIC_PREFIX",
    "PanelRecords",
    "Pipeline",
    "applicable",
    "baseline_pipeline",
    "class_arrays",
    "default_labeled_fraction",
    "default_pipelines",
    "git_commit",
    "labeled_counts",
    "load_ensemble",
    "markdown_table",
    "method_pipeline",
    "paired",
    "panel_pairs",
    "provenance",
    "read_records",
    "run_panel",
    "score_test_columns",
    "skip_reason",
    "split_list",
    "summarize",
    "t_interval",
    "write_records",
]

SYNTHETIC_PREFIX = "synthetic-"
DEFAULT_DATASETS = ("synthetic-seed", "breast_cancer")
BASELINE_NAMES = tuple(baselines.BASELINES)


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A named way to predict: a method with its config and hparams overrides, or a baseline.

    `predict(ensemble, key) -> (proba, FitResult | None)`.
    """

    name: str
    predict: Callable[[data.Ensemble, jax.Array], tuple[jax.Array, FitResult | None]]
    is_baseline: bool = False
    description: str = ""
    multiclass: bool = False  # whether it predicts K-class ensembles ((K, n) probabilities)


def method_pipeline(method: str, name: str | None = None, base: Config | None = None, **hparams: Any) -> Pipeline:
    """A registered method with its registry hparams (overridable) and `base` config (default
    `Config()`; its latent_dim None adapts to each ensemble, an explicit one must fit it)."""
    entry = solvers.get(method)
    base = base or Config()

    def run(ens: data.Ensemble, key: jax.Array):
        hp, config = prepare_inputs(ens.problem, entry.hparams(**hparams), base.replace(method=method))
        result = fit(key, ens.problem, hp, config)
        return predict.proba(result.params, config), result

    return Pipeline(name or method, run, False, entry.description, multiclass=entry.multiclass)


def baseline_pipeline(name: str) -> Pipeline:
    """A baseline of `cfjax.baselines`; on a K-class ensemble its `cfjax.multiclass` namesake
    (simple_average, best_single, stacking), the others being binary only."""
    fn = baselines.BASELINES[name]
    k_class = multiclass.BASELINES.get(name)

    def run(ens: data.Ensemble, key: jax.Array):
        if ens.problem.n_classes == 2:
            return fn(ens.problem), None
        return k_class(*class_arrays(ens.problem)), None

    return Pipeline(name, run, True, fn.__doc__.splitlines()[0], multiclass=k_class is not None)


def class_arrays(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """A K-class problem's (R (m, K, n), NaN where unobserved; labels (n,), -1 where not a
    training column): `cfjax.multiclass`'s contract, the inverse of `from_numpy`."""
    K, m, n = problem.n_classes, problem.n_classifiers, problem.n_instances
    R = np.where(np.asarray(problem.observed), np.asarray(problem.R), np.nan).reshape(m, K, n)
    labels = np.where(np.asarray(problem.labeled), np.asarray(problem.labels).argmax(axis=0), -1)
    return R, labels


def default_pipelines(methods: Sequence[str] | None = None, base: Config | None = None) -> list[Pipeline]:
    """The baselines, then each method (default: every registered one) at its defaults."""
    methods = list(solvers.METHODS) if methods is None else list(methods)
    return [baseline_pipeline(b) for b in BASELINE_NAMES] + [method_pipeline(m, base=base) for m in methods]


#: What the 5-fold out-of-fold protocol of the real ensembles needs of each class.
MIN_LABELED_PER_CLASS = 5


def _preset_name(name: str) -> str | None:
    """The preset of `synthetic-<preset>`, None for a real data set; ValueError if unknown."""
    if not isinstance(name, str):
        raise ValueError(f"name: expected a data set name, got {name!r}")
    if not name.startswith(SYNTHETIC_PREFIX):
        return None
    preset = name[len(SYNTHETIC_PREFIX):]
    if preset not in data.PRESETS:
        raise ValueError(f"name: unknown synthetic preset {name!r}; choose from "
                         f"{[SYNTHETIC_PREFIX + p for p in data.PRESETS]}")
    return preset


def default_labeled_fraction(name: str) -> float:
    """The labeled fraction `name` gets when none is asked for: the preset's (else `synthetic`'s
    default) for `synthetic-<preset>`, `datasets.load`'s default (0.6) for a real data set."""
    import inspect

    preset = _preset_name(name)
    if preset is None:
        from cfjax import datasets

        return float(inspect.signature(datasets.load).parameters["labeled_fraction"].default)
    default = inspect.signature(data.synthetic).parameters["labeled_fraction"].default
    return float(data.PRESETS[preset].get("labeled_fraction", default))


def _resolve_fraction(name: str, labeled_fraction: float | None) -> float:
    if labeled_fraction is None:
        return default_labeled_fraction(name)
    if isinstance(labeled_fraction, (bool, np.bool_)) or not isinstance(
            labeled_fraction, (int, float, np.integer, np.floating)):
        raise ValueError(f"labeled_fraction: expected a float in (0, 1) or None, got {labeled_fraction!r}")
    if not 0.0 < float(labeled_fraction) < 1.0:
        raise ValueError(f"labeled_fraction: must lie in (0, 1), got {labeled_fraction}")
    return float(labeled_fraction)


def _k_class(name: str) -> bool:
    from cfjax import datasets

    return name in datasets.MULTICLASS_DATASETS


def load_ensemble(name: str, split: int, cache_dir: Any = None,
                  labeled_fraction: float | None = None) -> data.Ensemble:
    """`synthetic-<preset>` (keyed by the split) or a `cfjax.datasets` name (split = its seed),
    with a stratified `labeled_fraction` of the columns labeled (None: the source's default,
    `default_labeled_fraction`, which reproduces the ensembles, and cache entries, of before the
    argument existed). A K-class name (`datasets.MULTICLASS_DATASETS`) gives the K-class problem
    of `datasets.load_multiclass` (`from_numpy` of its (m, K, n) R)."""
    fraction = _resolve_fraction(name, labeled_fraction)
    preset = _preset_name(name)
    if preset is not None:
        return data.preset(jax.random.key(split), preset, labeled_fraction=fraction)
    from cfjax import datasets

    if _k_class(name):
        ens = datasets.load_multiclass(name, seed=split, labeled_fraction=fraction, cache_dir=cache_dir)
        return data.Ensemble(problem=data.from_numpy(ens.R, ens.labels), y_true=ens.y_true, test=ens.test,
                             names=ens.names)
    return datasets.load(name, seed=split, labeled_fraction=fraction, cache_dir=cache_dir)


def labeled_counts(name: str, split: int, labeled_fraction: float | None = None) -> np.ndarray:
    """Labeled instances per class (negatives, positives) of `load_ensemble(name, split, ...,
    labeled_fraction)`, from the labels and the stratified split alone (milliseconds; nothing
    is fitted or cached). Equal to the counts of the ensemble `load_ensemble` builds."""
    fraction = _resolve_fraction(name, labeled_fraction)
    preset = _preset_name(name)
    if preset is not None:
        return data.preset_labeled_counts(jax.random.key(split), preset, labeled_fraction=fraction)
    from cfjax import datasets

    if _k_class(name):
        return datasets.multiclass_labeled_counts(name, seed=split, labeled_fraction=fraction)
    return datasets.labeled_counts(name, seed=split, labeled_fraction=fraction)


def split_list(splits: int | Iterable[int]) -> list[int]:
    """The splits (seeds) as a list: an int n means 0..n-1; an iterable is taken as given (a
    confirmation on fresh splits, e.g. range(20, 30))."""
    if isinstance(splits, (int, np.integer)) and not isinstance(splits, (bool, np.bool_)):
        if splits < 1:
            raise ValueError(f"splits: must be >= 1, got {splits}")
        return list(range(int(splits)))
    out = [int(s) for s in splits]
    if not out:
        raise ValueError("splits: no split given")
    return out


def skip_reason(name: str, split: int, labeled_fraction: float | None = None) -> str | None:
    """Why (name, split, labeled_fraction) cannot be benchmarked, or None when it can.

    The rule: >= `MIN_LABELED_PER_CLASS` (5) labeled instances of each class (`labeled_counts`);
    for a real data set also what its base models need (`datasets.protocol_fault`: every
    out-of-fold training set as large as the kNN model's k = 15, which binds only on small
    sets such as wine at 10%). Nothing is fitted or cached.
    """
    fraction = _resolve_fraction(name, labeled_fraction)
    if _preset_name(name) is None:
        from cfjax import datasets

        if _k_class(name):
            return datasets.multiclass_protocol_fault(name, seed=split, labeled_fraction=fraction)
        return datasets.protocol_fault(name, seed=split, labeled_fraction=fraction)
    counts = labeled_counts(name, split, fraction)
    if int(counts.min()) < MIN_LABELED_PER_CLASS:
        return (f"each class needs >= {MIN_LABELED_PER_CLASS} labeled instances, got class counts "
                f"{counts.tolist()}")
    return None


def applicable(name: str, labeled_fraction: float | None = None, splits: int | Iterable[int] = 1) -> bool:
    """Whether (name, labeled_fraction) can be benchmarked on `splits` (an int n: splits 0..n-1):
    `skip_reason` is None on every split, so every pair of a panel holds the same splits.
    Decided from class counts (and the unfitted base models), without building an ensemble.
    """
    return all(skip_reason(name, s, labeled_fraction) is None for s in split_list(splits))


class PanelRecords(list):
    """`run_panel`'s records (a plain list of dicts) with `skipped`: one dict per (data set,
    labeled fraction) pair left out by `applicable`, holding dataset, labeled_fraction, the
    first split that failed, its labeled class counts [negatives, positives] and the reason
    (`skip_reason`)."""

    def __init__(self, records: Iterable[dict[str, Any]] = (), skipped: Iterable[dict[str, Any]] = (),
                 not_applicable: Iterable[dict[str, Any]] = ()):
        super().__init__(records)
        self.skipped = list(skipped)
        self.not_applicable = list(not_applicable)  # (dataset, method): a binary pipeline on K classes


def score_test_columns(y_true: Any, proba: Any, test: Any) -> dict[str, float]:
    """PR-AUC and ROC-AUC of `proba` on the `test` columns (the unlabeled ones); for (K, n)
    K-class probabilities their macro one-vs-rest means (`metrics.macro_pr_auc`, `macro_roc_auc`)."""
    proba = jnp.asarray(proba)
    mask = jnp.asarray(test)
    if proba.ndim == 2:
        y = jnp.asarray(y_true)
        return {"pr_auc": float(metrics.macro_pr_auc(y, proba, mask)),
                "roc_auc": float(metrics.macro_roc_auc(y, proba, mask))}
    y = jnp.asarray(y_true, proba.dtype)
    return {
        "pr_auc": float(metrics.average_precision(y, proba, mask)),
        "roc_auc": float(metrics.roc_auc(y, proba, mask)),
    }


def panel_pairs(datasets: Iterable[str], labeled_fractions: Iterable[float | None] | None = None,
                splits: int | Iterable[int] = 5) -> tuple[list[tuple[str, float]], list[dict[str, Any]]]:
    """The (data set, labeled fraction) pairs of a panel, fractions resolved (None: the data
    set's default), split into the applicable ones and the skipped ones (`PanelRecords.skipped`
    entries). Nothing is built."""
    fractions = [None] if labeled_fractions is None else list(labeled_fractions)
    if not fractions:
        raise ValueError("labeled_fractions: no fraction given (None means each data set's default)")
    chosen_splits = split_list(splits)
    pairs, skipped = [], []
    for name in datasets:
        for fraction in dict.fromkeys(_resolve_fraction(name, f) for f in fractions):
            for split in chosen_splits:
                reason = skip_reason(name, split, fraction)
                if reason is not None:
                    counts = labeled_counts(name, split, fraction)
                    skipped.append(dict(dataset=name, labeled_fraction=fraction, split=split,
                                        labeled_counts=[int(c) for c in counts], reason=reason))
                    break
            else:
                pairs.append((name, fraction))
    return pairs, skipped


def run_panel(
    datasets: Iterable[str],
    pipelines: Sequence[Pipeline],
    splits: int | Iterable[int] = 5,
    progress: bool = False,
    cache_dir: Any = None,
    keep: Callable[[str, int, str, data.Ensemble, jax.Array, FitResult | None], None] | None = None,
    labeled_fractions: Iterable[float | None] | None = None,
) -> PanelRecords:
    """Fits every pipeline on every applicable (data set, labeled fraction, split); one record per fit.

    `labeled_fractions`: the fractions of columns labeled (None, or None among them: each data
    set's default, `default_labeled_fraction`). `splits`: an int n (splits 0..n-1) or the splits
    themselves (`split_list`). Pairs that `applicable` refuses on those splits (fewer than 5
    labeled instances of a class on some split) are not fitted; they are listed in the result's
    `skipped` (`PanelRecords`), never an error.

    Records hold dataset, labeled_fraction, split, method, pr_auc, roc_auc (on the unlabeled
    columns), seconds (wall time including any compile) and, for methods, n_iter and converged.
    `keep` is called with each prediction (for plots) as keep(name, split, method, ensemble,
    proba, result). Fits are keyed by the split: at one split, every fraction shares the key.
    """
    pairs, skipped = panel_pairs(datasets, labeled_fractions, splits)
    splits = split_list(splits)
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pairs) * len(splits) * len(pipelines), desc="benchmark", unit="fit")
        except ImportError:
            bar = None
    records = PanelRecords(skipped=skipped)
    previous = None
    for name, fraction in pairs:
        if previous is not None and name != previous:
            # Another data set has other shapes: the compiled programs of the last one are dead
            # weight, and a long panel would otherwise exhaust the process's memory maps (XLA:CPU
            # maps each executable; "LLVM ERROR: Unable to allocate section memory" after ~3000
            # fits). The persistent compilation cache, when on, still serves them from disk.
            jax.clear_caches()
        previous = name
        for split in splits:
            ens = load_ensemble(name, split, cache_dir, labeled_fraction=fraction)
            for pipe in pipelines:
                if ens.problem.n_classes > 2 and not pipe.multiclass:
                    entry = dict(dataset=name, method=pipe.name, reason="binary only")
                    if entry not in records.not_applicable:
                        records.not_applicable.append(entry)
                    if bar is not None:
                        bar.update()
                    continue
                if bar is not None:
                    bar.set_postfix_str(f"{name} lf {fraction:g} split {split} {pipe.name}")
                start = time.perf_counter()
                proba, result = pipe.predict(ens, jax.random.key(split))
                proba = jax.block_until_ready(proba)
                seconds = time.perf_counter() - start
                if not np.isfinite(np.asarray(proba)).all():
                    raise FloatingPointError(f"{pipe.name} on {name} (labeled fraction {fraction:g}) "
                                             f"split {split}: non-finite prediction")
                record = dict(dataset=name, labeled_fraction=fraction, split=split, method=pipe.name,
                              baseline=pipe.is_baseline, seconds=seconds,
                              **score_test_columns(ens.y_true, proba, ens.test))
                if result is not None:
                    record.update(n_iter=int(result.n_iter), converged=bool(result.converged))
                records.append(record)
                if keep is not None:
                    keep(name, split, pipe.name, ens, proba, result)
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    return records


# t quantiles (0.975) for small degrees of freedom; beyond 30 the normal 1.96 is within 2%.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, lower, upper) of the 95% Student-t interval of the mean; NaN bounds for one value."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    t = _T975[x.size - 2] if x.size - 1 <= len(_T975) else 1.96
    half = t * x.std(ddof=1) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def _by_fraction(records: list[dict[str, Any]], by_fraction: bool | None) -> bool:
    if by_fraction is not None:
        return bool(by_fraction)
    seen: dict[str, set] = {}
    for r in records:
        seen.setdefault(r["dataset"], set()).add(r.get("labeled_fraction"))
    return any(len(f) > 1 for f in seen.values())


def _groups(records: list[dict[str, Any]], by_fraction: bool) -> dict[Any, list[dict[str, Any]]]:
    """Records by data set, or by (data set, labeled fraction), in order of first appearance."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for r in records:
        key = (r["dataset"], r.get("labeled_fraction")) if by_fraction else r["dataset"]
        out.setdefault(key, []).append(r)
    return out


def summarize(records: list[dict[str, Any]], metric: str = "pr_auc",
              by_fraction: bool | None = None) -> list[dict[str, Any]]:
    """Per (data set, method): mean and sd of the metrics, and the paired difference against the
    best baseline of that data set (highest mean `metric`), with its 95% CI and wins/losses over splits.

    With `by_fraction` (default: when some data set's records hold several labeled fractions),
    the unit is (data set, labeled fraction) instead of the data set, and each row also holds
    `labeled_fraction`; otherwise the rows are those of a panel at one fraction per data set.
    """
    by_fraction = _by_fraction(records, by_fraction)
    rows = []
    for key, recs in _groups(records, by_fraction).items():
        name = key[0] if by_fraction else key
        by_method: dict[str, dict[int, dict]] = {}
        for r in recs:
            by_method.setdefault(r["method"], {})[r["split"]] = r
        base_means = {m: np.mean([r[metric] for r in s.values()]) for m, s in by_method.items()
                      if next(iter(s.values()))["baseline"]}
        best_base = max(base_means, key=base_means.get) if base_means else None
        for method, by_split in by_method.items():
            splits = sorted(by_split)
            roc = np.array([by_split[s]["roc_auc"] for s in splits])
            row = dict(dataset=name, method=method, n_splits=len(splits),
                       pr_auc_mean=float(np.mean([by_split[s]["pr_auc"] for s in splits])),
                       pr_auc_sd=float(np.std([by_split[s]["pr_auc"] for s in splits], ddof=1)) if len(splits) > 1 else math.nan,
                       roc_auc_mean=float(roc.mean()),
                       roc_auc_sd=float(roc.std(ddof=1)) if len(splits) > 1 else math.nan,
                       best_baseline=best_base)
            if by_fraction:
                row = {"dataset": name, "labeled_fraction": key[1], **row}
            if best_base is not None:
                ref = by_method[best_base]
                diffs = np.array([by_split[s][metric] - ref[s][metric] for s in splits if s in ref])
                mean, lo, hi = t_interval(diffs)
                row.update(diff=mean, diff_lo=lo, diff_hi=hi, wins=int((diffs > 0).sum()),
                           losses=int((diffs < 0).sum()))
            rows.append(row)
    return rows


def paired(records: list[dict[str, Any]], method: str, reference: str, metric: str = "pr_auc",
           by_fraction: bool | None = None) -> dict[Any, dict]:
    """Per data set (and "panel", the mean over data sets per split): the paired difference
    method - reference over splits, with its 95% t interval and wins/losses.

    With `by_fraction` (default: when some data set's records hold several labeled fractions),
    the keys are (data set, labeled fraction) and ("panel", labeled fraction), the panel at a
    fraction being the mean over the data sets benchmarked at that fraction.
    """
    by_fraction = _by_fraction(records, by_fraction)
    out: dict[Any, dict] = {}
    table: dict[Any, dict[int, float]] = {}
    for key, recs in _groups(records, by_fraction).items():
        a = {r["split"]: r[metric] for r in recs if r["method"] == method}
        b = {r["split"]: r[metric] for r in recs if r["method"] == reference}
        common = sorted(set(a) & set(b))
        diffs = np.array([a[s] - b[s] for s in common])
        table[key] = dict(zip(common, diffs))
        mean, lo, hi = t_interval(diffs)
        out[key] = dict(diff=mean, lo=lo, hi=hi, wins=int((diffs > 0).sum()), losses=int((diffs < 0).sum()))
    panels = ({None: list(table)} if not by_fraction else
              {f: [k for k in table if k[1] == f] for f in dict.fromkeys(k[1] for k in table)})
    for fraction, keys in panels.items():
        if not keys:
            continue
        splits = sorted(set.intersection(*(set(table[k]) for k in keys)))
        panel = np.array([np.mean([table[k][s] for k in keys]) for s in splits])
        if panel.size:
            mean, lo, hi = t_interval(panel)
            out["panel" if not by_fraction else ("panel", fraction)] = dict(
                diff=mean, lo=lo, hi=hi, wins=int((panel > 0).sum()), losses=int((panel < 0).sum()))
    return out


def markdown_table(rows: list[dict[str, Any]], metric: str = "pr_auc") -> str:
    """`summarize`'s rows as a Markdown table (with a "labeled" column when rows carry fractions)."""
    with_fraction = any("labeled_fraction" in r for r in rows)
    lead = "| dataset | labeled |" if with_fraction else "| dataset |"
    lines = [
        f"{lead} method | PR-AUC | ROC-AUC | Δ {metric} vs best baseline [95% CI] | wins/losses |",
        "|---" * (7 if with_fraction else 6) + "|",
    ]
    for r in rows:
        diff = "—" if r["method"] == r.get("best_baseline") else (
            f"{r['diff']:+.4f} [{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}]" if "diff" in r else "—"
        )
        wl = "—" if r["method"] == r.get("best_baseline") or "wins" not in r else f"{r['wins']}/{r['losses']}"
        unit = f"| {r['dataset']} | {r['labeled_fraction']:g} |" if with_fraction else f"| {r['dataset']} |"
        lines.append(
            f"{unit} {r['method']} | {r['pr_auc_mean']:.4f} ± {r['pr_auc_sd']:.4f} | "
            f"{r['roc_auc_mean']:.4f} ± {r['roc_auc_sd']:.4f} | {diff} | {wl} |"
        )
    best = {(r["dataset"], r.get("labeled_fraction")): r.get("best_baseline") for r in rows}
    lines.append("")
    lines.append("Best baseline per data set (the reference of Δ): " + ", ".join(
        f"{name}{f' @ {f:g}' if with_fraction else ''}: {v}" for (name, f), v in best.items()))
    return "\n".join(lines)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The rows `write_records` wrote, with their types back: integers, floats (nan included)
    and True/False as written; an empty cell (a field the row did not have) is left out."""

    def parse(text: str) -> Any:
        if text in ("True", "False"):
            return text == "True"
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def write_records(path: str | Path, rows: Sequence[dict[str, Any]], fields: Sequence[str] | None = None) -> None:
    """`rows` as a CSV file with a header: `fields` in that order (default: every key of every
    row, sorted); a row without a field leaves its cell empty."""
    fields = sorted({k for r in rows for k in r}) if fields is None else list(fields)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
