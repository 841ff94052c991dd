"""The panel benchmark: every method and baseline on several ensembles over repeated splits.

`run_panel` fits each method on each (data set, split) and scores the transductive predictions
on the unlabeled columns; `summarize` turns the records into a table with paired differences
against the baselines and 95% confidence intervals (Student t over splits, the split being the
unit of pairing). Used by `cfjax benchmark` and by the experiment scripts.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfjax import baselines, data, metrics, predict, solvers
from cfjax.api import fit
from cfjax.structs import Config, FitResult

__all__ = [
    "AUTO_CANDIDATES",
    "AUTO_DESCRIPTION",
    "DEFAULT_DATASETS",
    "SYNTHETIC_PREFIX",
    "AutoCandidate",
    "AutoFit",
    "Pipeline",
    "auto_fit",
    "auto_pipeline",
    "default_pipelines",
    "git_commit",
    "load_ensemble",
    "logit_space",
    "markdown_table",
    "paired",
    "provenance",
    "run_panel",
    "score_candidates",
    "score_test_columns",
    "summarize",
    "t_interval",
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


def method_pipeline(method: str, name: str | None = None, base: Config | None = None, **hparams: Any) -> Pipeline:
    """A registered method with its default hparams (overridable) and `base` config."""
    entry = solvers.get(method)
    base = base or Config()

    def run(ens: data.Ensemble, key: jax.Array):
        m, n = ens.problem.R.shape
        config = dataclasses.replace(base, method=method, latent_dim=min(base.latent_dim, m, n))
        result = fit(key, ens.problem, entry.hparams(**hparams), config)
        return predict.proba(result.params, config), result

    return Pipeline(name or method, run, False, entry.description)


def baseline_pipeline(name: str) -> Pipeline:
    fn = baselines.BASELINES[name]
    return Pipeline(name, lambda ens, key: (fn(ens.problem), None), True, fn.__doc__.splitlines()[0])


def default_pipelines(methods: Sequence[str] | None = None, base: Config | None = None) -> list[Pipeline]:
    """The baselines, then each method (default: every registered one) at its defaults."""
    methods = list(solvers.METHODS) if methods is None else list(methods)
    return [baseline_pipeline(b) for b in BASELINE_NAMES] + [method_pipeline(m, base=base) for m in methods]


def load_ensemble(name: str, split: int, cache_dir: Any = None) -> data.Ensemble:
    """`synthetic-<preset>` (keyed by the split) or a `cfjax.datasets` name (split = its seed)."""
    if name.startswith(SYNTHETIC_PREFIX):
        return data.preset(jax.random.key(split), name[len(SYNTHETIC_PREFIX):])
    from cfjax import datasets

    return datasets.load(name, seed=split, cache_dir=cache_dir)


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions, device, git hash and time: what a reviewer needs to reproduce a table."""
    import datetime
    import os
    import platform

    import optax

    from cfjax import __version__

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cfjax": __version__, "jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "device": str(jax.devices()[0]), "backend": jax.default_backend(), "git": git_commit(), **extra,
    }


def git_commit() -> str | None:
    """The short commit of the checkout cfjax runs from, "+dirty" when tracked files changed
    (a table made from uncommitted code says so); None outside a git checkout."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=here).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except OSError:
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def score_test_columns(y_true: Any, proba: Any, test: Any) -> dict[str, float]:
    """PR-AUC and ROC-AUC of `proba` on the `test` columns (the unlabeled ones)."""
    proba = jnp.asarray(proba)
    y = jnp.asarray(y_true, proba.dtype)
    mask = jnp.asarray(test)
    return {
        "pr_auc": float(metrics.average_precision(y, proba, mask)),
        "roc_auc": float(metrics.roc_auc(y, proba, mask)),
    }


def run_panel(
    datasets: Iterable[str],
    pipelines: Sequence[Pipeline],
    splits: int = 5,
    progress: bool = False,
    cache_dir: Any = None,
    keep: Callable[[str, int, str, data.Ensemble, jax.Array, FitResult | None], None] | None = None,
) -> list[dict[str, Any]]:
    """Fits every pipeline on every (data set, split); one record per fit.

    Records hold dataset, split, method, pr_auc, roc_auc (on the unlabeled columns), seconds
    (wall time including any compile) and, for methods, n_iter and converged. `keep` is called
    with each prediction (for plots). Fits are keyed by the split.
    """
    datasets = list(datasets)
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(datasets) * splits * len(pipelines), desc="benchmark", unit="fit")
        except ImportError:
            bar = None
    records = []
    for name in datasets:
        for split in range(splits):
            ens = load_ensemble(name, split, cache_dir)
            for pipe in pipelines:
                if bar is not None:
                    bar.set_postfix_str(f"{name} split {split} {pipe.name}")
                start = time.perf_counter()
                proba, result = pipe.predict(ens, jax.random.key(split))
                proba = jax.block_until_ready(proba)
                seconds = time.perf_counter() - start
                if not np.isfinite(np.asarray(proba)).all():
                    raise FloatingPointError(f"{pipe.name} on {name} split {split}: non-finite prediction")
                record = dict(dataset=name, split=split, method=pipe.name, baseline=pipe.is_baseline,
                              seconds=seconds, **score_test_columns(ens.y_true, proba, ens.test))
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


def summarize(records: list[dict[str, Any]], metric: str = "pr_auc") -> list[dict[str, Any]]:
    """Per (data set, method): mean and sd of the metrics, and the paired difference against the
    best baseline of that data set (highest mean `metric`), with its 95% CI and wins/losses over splits.
    """
    rows = []
    for name in dict.fromkeys(r["dataset"] for r in records):
        recs = [r for r in records if r["dataset"] == name]
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
            if best_base is not None:
                ref = by_method[best_base]
                diffs = np.array([by_split[s][metric] - ref[s][metric] for s in splits if s in ref])
                mean, lo, hi = t_interval(diffs)
                row.update(diff=mean, diff_lo=lo, diff_hi=hi, wins=int((diffs > 0).sum()),
                           losses=int((diffs < 0).sum()))
            rows.append(row)
    return rows


def paired(records: list[dict[str, Any]], method: str, reference: str, metric: str = "pr_auc") -> dict[str, dict]:
    """Per data set (and "panel", the mean over data sets per split): the paired difference
    method - reference over splits, with its 95% t interval and wins/losses."""
    out: dict[str, dict] = {}
    table: dict[str, dict[int, float]] = {}
    for name in dict.fromkeys(r["dataset"] for r in records):
        a = {r["split"]: r[metric] for r in records if r["dataset"] == name and r["method"] == method}
        b = {r["split"]: r[metric] for r in records if r["dataset"] == name and r["method"] == reference}
        common = sorted(set(a) & set(b))
        diffs = np.array([a[s] - b[s] for s in common])
        table[name] = dict(zip(common, diffs))
        mean, lo, hi = t_interval(diffs)
        out[name] = dict(diff=mean, lo=lo, hi=hi, wins=int((diffs > 0).sum()), losses=int((diffs < 0).sum()))
    splits = sorted(set.intersection(*(set(v) for v in table.values()))) if table else []
    panel = np.array([np.mean([table[name][s] for name in table]) for s in splits])
    if panel.size:
        mean, lo, hi = t_interval(panel)
        out["panel"] = dict(diff=mean, lo=lo, hi=hi, wins=int((panel > 0).sum()), losses=int((panel < 0).sum()))
    return out


def markdown_table(rows: list[dict[str, Any]], metric: str = "pr_auc") -> str:
    lines = [
        f"| dataset | method | PR-AUC | ROC-AUC | Δ {metric} vs best baseline [95% CI] | wins/losses |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "—" if r["method"] == r.get("best_baseline") else (
            f"{r['diff']:+.4f} [{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}]" if "diff" in r else "—"
        )
        wl = "—" if r["method"] == r.get("best_baseline") or "wins" not in r else f"{r['wins']}/{r['losses']}"
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['pr_auc_mean']:.4f} ± {r['pr_auc_sd']:.4f} | "
            f"{r['roc_auc_mean']:.4f} ± {r['roc_auc_sd']:.4f} | {diff} | {wl} |"
        )
    best = {r["dataset"]: r.get("best_baseline") for r in rows}
    lines.append("")
    lines.append("Best baseline per data set (the reference of Δ): " + ", ".join(f"{k}: {v}" for k, v in best.items()))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the default pipeline: cross-validated choice among CF-Ensemble candidates

#: Clipping of the base probabilities before the logit of `logit_space`.
LOGIT_EPS = 1e-3


def logit_space(problem: data.Problem, eps: float = LOGIT_EPS) -> data.Problem:
    r"""`problem` with R replaced by R' = 1/2 + logit(clip(R, eps, 1 - eps)) / 4 (observed cells).

    R' is an affine image of the base classifiers' logits, scaled by the tangent of the sigmoid
    at 0 (1/4) so that R' ~ R near R = 1/2. Two consequences:

    * an aggregator affine in the reconstruction ("weighted": w^T r' + b) is a linear model on
      the base *logits*, and at full rank (d = m, small lambda) the fit approaches logistic
      stacking on logit(R) rather than on R. When the base scores are Gaussian with a shared
      covariance (the synthetic presets, and roughly any calibrated-up-to-monotone ensemble),
      a linear rule on the logits is the Bayes rule; on the probabilities it is not;
    * the weighted aggregator's initial point (w = 4/m, b = -2) becomes exactly the mean of
      the base logits, so every solver starts from a sensible ranking. (On the raw logits,
      that init saturates the sigmoid and two_stage's Newton fit cannot leave it.)

    Unobserved cells stay 0 with confidence 0. Labels and masks are unchanged. Used by `auto`'s
    "logit" candidates; apply it to any new problem before `predict.fold_in_proba` with such a fit.
    """
    R = jnp.clip(problem.R, eps, 1.0 - eps)
    transformed = 0.5 + 0.25 * (jnp.log(R) - jnp.log1p(-R))
    return problem._replace(R=jnp.where(problem.observed, transformed, jnp.zeros_like(transformed)))


class AutoCandidate(NamedTuple):
    """One family `auto` chooses from: a method and formulation on R in a `space`
    ("probability": R itself, "logit": `logit_space(R)`), with a rho grid; `full_rank` fits at
    latent_dim = m (every classifier) instead of `auto_fit`'s latent_dim."""

    space: str
    method: str
    formulation: str
    rhos: tuple[float, ...] = (1.0,)
    full_rank: bool = False

    def label(self, latent_dim: int, rho: float | None = None) -> str:
        rho_text = "" if rho is None or self.method in ("als", "two_stage") else f", rho={rho:g}"
        form = "fold-in " if self.formulation == "fold_in" else ""
        space = "R" if self.space == "probability" else "logit(R)"
        return f"{space}: {form}{self.method}(d={latent_dim}{rho_text})"


AUTO_DESCRIPTION = (
    "cross-validated choice (3 folds of the labeled columns, PR-AUC) among als, two_stage and "
    "joint with fold-in factors at rho in {0.1, 0.5, 0.9} (latent_dim 4) on R, and two_stage at "
    "full rank (latent_dim m) on the base logits; the winner is refit on all labels"
)

#: The candidates `auto` chooses from, simplest first: a tie in cross-validated score goes to
#: the earlier one. The first three (probabilities, latent_dim 4) were the whole of `auto`
#: before issue 10; the fourth, two_stage at full rank on `logit_space(R)`, approaches logistic
#: stacking on the base logits and wins where a linear rule on the logits is what the data want
#: (the imbalanced synthetic presets). The study behind the choice: experiments/auto_candidates.py
#: and docs/results/panel.md.
AUTO_CANDIDATES: tuple[AutoCandidate, ...] = (
    AutoCandidate("probability", "als", "free"),
    AutoCandidate("probability", "two_stage", "free"),
    AutoCandidate("probability", "joint", "fold_in", (0.1, 0.5, 0.9)),
    AutoCandidate("logit", "two_stage", "free", full_rank=True),
)

SPACES = ("probability", "logit")

#: The ridge of every `auto` candidate, fixed rather than taken from the registry: auto was
#: designed and checked (splits 0-4 and fresh splits 5-9) with lam = 0.01 throughout. Moving its
#: fold-in joint candidate to the registry's lam = 1 left the candidate itself no worse (pima
#: +0.0019 paired, experiments/lambda_panel.py) but changed which candidate cross-validation
#: picked on pima (auto -0.0086 against averaging there, 0/5): selection noise, not a better
#: pipeline, so the validated configuration stays. docs/results/panel.md has both runs.
AUTO_LAM = 0.01


@dataclasses.dataclass(frozen=True)
class AutoFit:
    """What `auto_fit` chose and fitted: the refit result with its config and hparams, and `info`
    (every candidate's cross-validated mean score, the winner). `space` is the representation
    of R the winner was fitted on: new columns go through `transform` before any fold-in."""

    result: FitResult
    config: Config
    hparams: Any
    info: dict[str, Any]
    space: str = "probability"

    def transform(self, problem: data.Problem) -> data.Problem:
        """`problem` in this fit's space (identity for "probability", `logit_space` for "logit")."""
        return logit_space(problem) if self.space == "logit" else problem


def score_candidates(
    key: jax.Array,
    problem: data.Problem,
    candidates: Sequence[AutoCandidate] = AUTO_CANDIDATES,
    latent_dim: int = 4,
    max_iter: int = 200,
    n_folds: int = 3,
    metric: str = "pr_auc",
    progress: bool = False,
) -> list[tuple[str, float, AutoFit]]:
    """Every candidate selected by `sweep.select` on folds of the labeled columns (one key, so the
    folds are the same for all and their scores are paired) and refit on all labels.

    Returns (label, cross-validated mean `metric` of its best grid point, refit) per candidate.
    """
    from cfjax import sweep

    for c in candidates:
        if c.space not in SPACES:
            raise ValueError(f"candidates: unknown space {c.space!r}; choose from {list(SPACES)}")
    m, n = problem.R.shape
    problems = {"probability": problem}
    if any(c.space == "logit" for c in candidates):
        problems["logit"] = logit_space(problem)
    out = []
    for c in candidates:
        entry = solvers.get(c.method)
        d = min(m if c.full_rank else latent_dim, m, n)
        config = Config(method=c.method, formulation=c.formulation, latent_dim=d, max_iter=max_iter)
        fixed = {**dict(entry.defaults), "lam": AUTO_LAM}
        grid = sweep.grid(rho=list(c.rhos), **{k: [v] for k, v in fixed.items()})
        selection = sweep.select(key, problems[c.space], grid, config, n_folds=n_folds, metric=metric)
        score = float(selection.mean[selection.index])
        label = c.label(d, float(selection.hparams.rho))
        out.append((label, score, AutoFit(selection.refit, config, selection.hparams, {}, c.space)))
        if progress:
            print(f"  auto: {label}: cross-validated {metric} {score:.4f}", flush=True)
    return out


def auto_fit(
    key: jax.Array,
    problem: data.Problem,
    latent_dim: int = 4,
    max_iter: int = 200,
    n_folds: int = 3,
    metric: str = "pr_auc",
    progress: bool = False,
    candidates: Sequence[AutoCandidate] = AUTO_CANDIDATES,
) -> AutoFit:
    """The default pipeline: each of `candidates` scored by `sweep.select` on folds of the labeled
    columns (never the unlabeled ones), the best refit on all labels (`score_candidates`).

    The fold assignment is the same for every candidate (one key), so their scores are paired;
    a tie goes to the earlier candidate. The chosen fit's `space` says whether it factorized R
    or `logit_space(R)`; its `predict.proba` are probabilities either way.
    """
    scored = score_candidates(key, problem, candidates, latent_dim, max_iter, n_folds, metric, progress)
    signs = [s if metrics.higher_is_better(metric) else -s for _, s, _ in scored]
    best = int(np.argmax(np.where(np.isnan(signs), -np.inf, signs)))
    label, _, chosen = scored[best]
    info = {"candidates": {lab: s for lab, s, _ in scored}, "chosen": chosen.config.method, "label": label,
            "space": chosen.space, "formulation": chosen.config.formulation, "rho": float(chosen.hparams.rho),
            "latent_dim": chosen.config.latent_dim, "metric": metric, "n_folds": n_folds}
    return dataclasses.replace(chosen, info=info)


def auto_pipeline(latent_dim: int = 4, candidates: Sequence[AutoCandidate] = AUTO_CANDIDATES,
                  name: str = "auto") -> Pipeline:
    def run(ens: data.Ensemble, key: jax.Array):
        chosen = auto_fit(key, ens.problem, latent_dim=latent_dim, candidates=candidates)
        return predict.proba(chosen.result.params, chosen.config), chosen.result

    return Pipeline(name, run, False, AUTO_DESCRIPTION)
