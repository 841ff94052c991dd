r"""`auto`: the default pipeline, a cross-validated choice among candidate fits.

A candidate (`Candidate`) is a method with its formulation, the space it factorizes R in, a
rank (the config's latent_dim, or full rank min(m, n)), an aggregator, and a small grid of
hyperparameters (e.g. rho, or the prior scale `agg_prior`). Its grid points are *options*; the
options of all candidates form one list, ordered from the simplest (most regularised) to the
most flexible. `auto`:

1. deals the labeled columns into K stratified folds, R times with independent shuffles
   (`Config.option("folds", 5)`, `option("repeats", 2)`; keyed, the same folds for every
   option, so their scores are paired);
2. fits every option on every fold's training columns *and* on all labeled columns, as one
   vmapped batch per candidate (K R + 1 problems x its grid: one compiled program per
   candidate);
3. scores each fold fit by PR-AUC on the fold's held-out columns (neither trained on nor
   monitored: transductive targets of that fit, as the unlabeled columns are of the final fit);
4. chooses an option by `option("rule")` (`choice_rule`): "best" takes the highest mean score;
   "one_se" takes the *first* option whose mean is within z (`option("z", 1.0)`) standard errors
   of the best one's, the standard error being that of the paired differences over the J = K R
   fold scores with Nadeau and Bengio's correction for the overlap of cross-validation training
   sets, sqrt((1/J + 1/(K - 1)) s^2). With few labels the fold scores are noisy and "one_se"
   keeps the simple option unless a flexible one is better by more than the noise; with many it
   finds the flexible one. Unless the config names a rule, the default candidates on a binary
   problem are chosen by "best" (their options are one family whose fits keep w >= 0, so no
   option can turn the ensemble around, and there the one-SE caution cost more than the noise
   it avoided: docs/results/scarce_rule.md), everything else by "one_se". (NaN fold scores,
   from a fold without both classes, are left out.)
5. returns the chosen option's fit on all labeled columns, with its theta written in the
   config's aggregator: a candidate with another aggregator must be logit-linear (logit
   w^T r + b) and the config's must express that rule (logit-linear itself, or `from_linear`, as
   `attention` does at A = 0); any aggregator serves when the candidates use the config's.

Never reads a label outside `problem.labeled`. All traced: `auto` runs under jit, vmap and
`cfjax.sweep.run` like any method (options take auto's hparams except their grid's fields). Its
params are the chosen option's, X and Y zero-padded to the largest rank (the reconstruction
X^T Y is unchanged), and `FitResult.info` says what was chosen: "option" (flat index),
"candidate", "space" (0: R, 1: logit), "latent_dim", "hparams" (every Hparams field of the
chosen option), and "cv_mean" (O,), "cv_se" (O,) (the corrected standard error of each
option's difference from the best) and "cv_scores" (O, J). `describe` turns that into rows;
`cfjax.plots.auto_choice` draws them. The study behind the default candidates:
`experiments/scarce_labels.py`, docs/results/scarce_labels.md.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfjax import aggregators, metrics
from cfjax.aggregators import logits as aggregator_logits
from cfjax.compilation import jit
from cfjax.solvers import driver
from cfjax.solvers.base import Method, get, register
from cfjax.structs import Config, FitResult, Hparams, Params, Problem

__all__ = [
    "CANDIDATES",
    "METHOD",
    "RULES",
    "WITH_ATTENTION",
    "Candidate",
    "CandidateRun",
    "candidate_config",
    "candidates",
    "choice_rule",
    "choose",
    "combine",
    "describe",
    "held_out_masks",
    "options",
    "run_candidate",
    "stratified_fold_ids",
]

DEFAULT_FOLDS = 5
DEFAULT_REPEATS = 2
RULES = ("one_se", "best")


class Candidate(NamedTuple):
    """One family `auto` chooses from: `method` (with `formulation`) on R in `space`
    ("probability" or "logit"), at the config's latent_dim or at `full_rank` (min(m, n)), with
    `aggregator` (None: the config's), over `grid`: ((Hparams field, values), ...), the
    cartesian product, last axis fastest; list the most regularised values first."""

    method: str
    space: str = "probability"
    formulation: str = "fold_in"
    grid: tuple = ()
    full_rank: bool = False
    aggregator: str | None = None

    def points(self) -> list[dict[str, float]]:
        """The grid's points as field -> value dicts ([{}] for no grid)."""
        names = [name for name, _ in self.grid]
        return [dict(zip(names, values)) for values in itertools.product(*(v for _, v in self.grid))]

    def label(self, latent_dim: int, point: dict[str, float] | None = None) -> str:
        shown = ", ".join(f"{k}={v:g}" for k, v in (point or {}).items())
        form = "fold-in " if self.formulation == "fold_in" and self.method == "joint" else ""
        space = "R" if self.space == "probability" else "logit(R)"
        agg = f" [{self.aggregator}]" if self.aggregator else ""
        return f"{space}: {form}{self.method}(d={latent_dim}{', ' + shown if shown else ''}){agg}"


#: The default candidates, simplest first (see the module docstring and docs/results/scarce_labels.md).
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("two_stage", full_rank=True, aggregator="prior", grid=(("agg_prior", (0.1, 0.3, 1.0, 3.0)),)),
)


#: The default candidates and the attention aggregator on the config's rank over its penalty
#: (the pull towards the global rule), strongest first: for `Config(aggregator="attention",
#: options=(("candidates", WITH_ATTENTION),))`, where the one-SE rule keeps the global rule unless
#: instance-dependent trust is clearly better (docs/instance_trust.md).
WITH_ATTENTION: tuple[Candidate, ...] = CANDIDATES + (
    Candidate("two_stage", aggregator="attention", grid=(("agg_l2", (1e-2, 1e-3, 1e-4)),)),
)


def candidates(config: Config) -> tuple[Candidate, ...]:
    """The candidates of a config: `Config.option("candidates")` or `CANDIDATES`."""
    return tuple(config.option("candidates", CANDIDATES))


def choice_rule(config: Config, n_classes: int) -> str:
    """The rule `auto` chooses by: the config's `("rule", ...)` option when it names one, else
    "best" for the default candidates (`CANDIDATES`) on a binary problem, whose prior fits keep
    w >= 0 (`cfjax.logistic.fit_logistic_prior_nonnegative`), and "one_se" for K classes (w
    free) or candidates of one's own (e.g. `WITH_ATTENTION`, where the one-SE rule keeps the
    global rule unless instance trust is clearly better)."""
    named = config.option("rule", None)
    if named is not None:
        return named
    return "best" if candidates(config) == CANDIDATES and n_classes == 2 else "one_se"


def options(config: Config) -> list[tuple[int, dict[str, float]]]:
    """Every option as (candidate index, grid point), in the order the rule reads them."""
    return [(i, point) for i, c in enumerate(candidates(config)) for point in c.points()]


def candidate_config(candidate: Candidate, config: Config, m: int, n: int) -> Config:
    """The static config a candidate is fitted with: auto's config with the candidate's method,
    formulation, space, rank and aggregator (and no auto options)."""
    d = min(m, n) if candidate.full_rank else min(config.latent_dim, m, n)
    return config.replace(method=candidate.method, formulation=candidate.formulation, space=candidate.space,
                          latent_dim=d, aggregator=candidate.aggregator or config.aggregator, options=())


def stratified_fold_ids(key: jax.Array, labels: jax.Array, labeled: jax.Array, n_folds: int) -> jax.Array:
    """(n,) int32: the fold (0..K-1) of each labeled column, -1 elsewhere. Traced.

    Within each class the labeled columns are taken in the order of a keyed permutation and
    dealt round-robin, so every fold holds floor or ceil of (class count / K) of each class
    (`cfjax.selection.stratified_folds` gives them as validated masks). `labels`: binary (n,) or
    one-hot (C, n) for C classes.
    """
    n = labels.shape[-1]
    order = jax.random.permutation(key, n)
    fold = jnp.full((n,), -1, jnp.int32)
    classes = (labels > 0.5).astype(jnp.int32) if labels.ndim == 1 else jnp.argmax(labels, axis=0)
    for k in range(2 if labels.ndim == 1 else labels.shape[0]):
        member = (labeled & (classes == k))[order]
        rank = jnp.cumsum(member.astype(jnp.int32)) - 1
        fold = fold.at[order].set(jnp.where(member, rank % n_folds, fold[order]))
    return fold


def held_out_masks(key: jax.Array, problem: Problem, config: Config) -> jax.Array:
    """(J, n) held-out masks: K folds for each of R repeats (independent keys), row j = r K + k.

    `run_candidate` draws them from the first half of its key (`jax.random.split(key)[0]`).
    """
    n_folds = config.option("folds", DEFAULT_FOLDS)
    keys = jax.random.split(key, config.option("repeats", DEFAULT_REPEATS))
    ids = jax.vmap(lambda k: stratified_fold_ids(k, problem.labels, problem.labeled, n_folds))(keys)
    return (ids[:, None, :] == jnp.arange(n_folds)[None, :, None]).reshape(-1, problem.n_instances)


class CandidateRun(NamedTuple):
    """One candidate's fits: `scores` (J, P) PR-AUC on each held-out fold per grid point, and
    `full` (P,) the FitResults on all labeled columns per grid point."""

    scores: jax.Array
    full: FitResult


def run_candidate(key: jax.Array, problem: Problem, hparams: Hparams, config: Config, index: int) -> CandidateRun:
    """Candidate `index` fitted on every fold (and on all labels) at every point of its grid."""
    fold_key, fit_key = jax.random.split(key)
    held = held_out_masks(fold_key, problem, config)
    m, n = problem.R.shape
    candidate = candidates(config)[index]
    cfg = candidate_config(candidate, config, m, n)
    points = candidate.points()
    dtype = problem.R.dtype

    def at(point: dict[str, float]) -> Hparams:
        return hparams._replace(**{k: jnp.asarray(v, dtype) for k, v in point.items()})

    grid = jax.tree.map(lambda *xs: jnp.stack(xs), *[at(p) for p in points])
    labeled = jnp.concatenate([problem.labeled[None, :] & ~held, problem.labeled[None, :]], axis=0)

    def one(train: jax.Array, h: Hparams) -> FitResult:
        return driver.fit_traced(fit_key, problem._replace(labeled=train), h, cfg)._replace(state=None)

    results = jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(labeled, grid)  # (J+1, P)

    def score(params: Params, mask: jax.Array) -> jax.Array:
        return metrics.pr_auc_of_logits(problem.labels, aggregator_logits(params, cfg, problem.observed), mask)

    folds_only = jax.tree.map(lambda x: x[:-1], results.params)
    scores = jax.vmap(lambda p, mask: jax.vmap(lambda q: score(q, mask))(p))(folds_only, held)
    return CandidateRun(scores=scores, full=jax.tree.map(lambda x: x[-1], results))


def choose(scores: jax.Array, rule: str, z: float, n_folds: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(chosen option, mean (O,), se (O,)) from fold scores (O, J) by `rule` (module docstring).

    se[o] is the corrected standard error of the paired difference (best - o); 0 for the best.
    Ties go to the earlier option; an option whose scores are all NaN is never chosen.
    """
    valid = jnp.isfinite(scores)
    count = jnp.maximum(valid.sum(axis=1), 1)
    mean = jnp.where(valid, scores, 0.0).sum(axis=1) / count
    mean = jnp.where(valid.any(axis=1), mean, -jnp.inf)
    best = jnp.argmax(mean)
    diff = scores[best][None, :] - scores  # (O, J), paired by fold
    both = valid & valid[best][None, :]
    j = jnp.maximum(both.sum(axis=1), 2)
    d_mean = jnp.where(both, diff, 0.0).sum(axis=1) / j
    s2 = jnp.where(both, (diff - d_mean[:, None]) ** 2, 0.0).sum(axis=1) / (j - 1)
    se = jnp.sqrt((1.0 / j + 1.0 / max(n_folds - 1, 1)) * s2)
    if rule == "best":
        return best, mean, se
    close = (mean >= mean[best] - z * se) & jnp.isfinite(mean)
    return jnp.argmax(close), mean, se  # the first option within z SE of the best


def _as_config_theta(theta: Any, source: str, target: str, problem: Problem, d: int, hparams: Hparams) -> Any:
    """A candidate's theta of aggregator `source` as one of `target` at latent dimension d (the
    largest rank among the candidates), with the same logits: zero-padded when the aggregators
    are the same, else read as (w, b) and embedded (`aggregators.embed_linear`)."""
    template = aggregators.initial_theta(target, jax.random.key(0), problem.n_classifiers, d, hparams,
                                         problem.R.dtype, n_classes=problem.n_classes)
    if source == target:
        return aggregators.pad_theta(theta, template)
    w, b = aggregators.get(source).linear.weights(theta)
    return aggregators.embed_linear(target)(template, w, b)


def combine(runs: tuple[CandidateRun, ...], problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    """The choice among the candidates' runs (see the module docstring) as a FitResult."""
    m, n = problem.R.shape
    dtype = problem.R.dtype
    cands = candidates(config)
    cfgs = [candidate_config(c, config, m, n) for c in cands]
    d_max = max(c.latent_dim for c in cfgs)
    fits = []
    for cand, cfg, run in zip(cands, cfgs, runs):
        for p in range(len(cand.points())):
            full = jax.tree.map(lambda x, p=p: x[p], run.full)
            params = full.params._replace(
                X=jnp.pad(full.params.X, ((0, d_max - cfg.latent_dim), (0, 0))),
                Y=jnp.pad(full.params.Y, ((0, d_max - cfg.latent_dim), (0, 0))),
                theta=_as_config_theta(full.params.theta, cfg.aggregator, config.aggregator, problem, d_max, hparams),
            )
            fits.append(full._replace(params=params))
    scores = jnp.concatenate([run.scores.T for run in runs], axis=0)  # (O, J)
    chosen, mean, se = choose(scores, choice_rule(config, problem.n_classes), config.option("z", 1.0),
                              config.option("folds", DEFAULT_FOLDS))
    result = jax.tree.map(lambda *xs: jnp.stack(xs)[chosen], *fits)
    flat = options(config)
    per_option = {
        "candidate": jnp.asarray([i for i, _ in flat], jnp.int32),
        "space": jnp.asarray([cands[i].space == "logit" for i, _ in flat], jnp.int32),
        "latent_dim": jnp.asarray([cfgs[i].latent_dim for i, _ in flat], jnp.int32),
    }
    point_hparams = [hparams._replace(**{k: jnp.asarray(v, dtype) for k, v in point.items()}) for _, point in flat]
    chosen_hparams = jax.tree.map(lambda *xs: jnp.stack(xs)[chosen], *point_hparams)
    info = {
        "confidence": result.info["confidence"],
        "option": chosen.astype(jnp.int32),
        **{name: values[chosen] for name, values in per_option.items()},
        "hparams": chosen_hparams._asdict(),
        "lam": chosen_hparams.lam,
        "cv_mean": mean,
        "cv_se": se,
        "cv_scores": scores,
    }
    return result._replace(state=None, info=info)


def fit(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    """The whole pipeline as one traceable function."""
    runs = tuple(run_candidate(key, problem, hparams, config, i) for i in range(len(candidates(config))))
    return combine(runs, problem, hparams, config)


_run_candidate_jit = jit(run_candidate, static_argnames=("config", "index"))
_combine_jit = jit(combine, static_argnames="config")


def fit_with_progress(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    """`fit`, driven from the host one candidate at a time with a tqdm bar (same result)."""
    from cfjax.solvers.chunks import _progress_bar

    cands = candidates(config)
    bar = _progress_bar(len(cands), "auto")
    bar.unit = "candidate"
    runs = []
    try:
        for i in range(len(cands)):
            runs.append(jax.block_until_ready(_run_candidate_jit(key, problem, hparams, config, i)))
            bar.update(1)
    finally:
        bar.close()
    return _combine_jit(tuple(runs), problem, hparams, config)


def describe(result: FitResult, config: Config, problem: Problem) -> list[dict[str, Any]]:
    """One row per option: its label, cross-validated mean, corrected standard error of its gap
    to the best, fold scores, and whether it was chosen. Host-side; one fit (no sweep axes)."""
    m, n = problem.R.shape
    info = jax.tree.map(np.asarray, result.info)
    cands = candidates(config)
    rows = []
    for o, (i, point) in enumerate(options(config)):
        d = candidate_config(cands[i], config, m, n).latent_dim
        rows.append({
            "option": cands[i].label(d, point),
            "cv_mean": float(info["cv_mean"][o]),
            "cv_se": float(info["cv_se"][o]),
            "cv_scores": info["cv_scores"][o].tolist(),
            "chosen": bool(int(info["option"]) == o),
        })
    return rows


def _check_config(config: Config) -> None:
    for name, default, low in (("folds", DEFAULT_FOLDS, 2), ("repeats", DEFAULT_REPEATS, 1)):
        value = config.option(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"options: auto's {name!r} must be an int >= {low}, got {value!r}")
    rule, z = config.option("rule", "one_se"), config.option("z", 1.0)  # "one_se" stands for no rule named
    if rule not in RULES:
        raise ValueError(f"options: auto's 'rule' must be one of {RULES}, got {rule!r}")
    if not isinstance(z, (int, float)) or isinstance(z, bool) or not np.isfinite(z) or z < 0:
        raise ValueError(f"options: auto's 'z' must be a finite number >= 0, got {z!r}")
    cands = candidates(config)
    if not cands or not all(isinstance(c, Candidate) for c in cands):
        raise ValueError("options: auto's 'candidates' must be a non-empty tuple of cfjax.solvers.auto.Candidate")
    fields = set(Hparams._fields)
    for c in cands:
        method = get(c.method)
        if method.fit is not None:
            raise ValueError(f"options: auto's candidate {c.method!r} must be an iterative method")
        if c.space not in ("probability", "logit"):
            raise ValueError(f"options: auto's candidate space must be 'probability' or 'logit', got {c.space!r}")
        source = c.aggregator or config.aggregator
        # Another aggregator's theta is rewritten in the config's through the shared logit.
        if source != config.aggregator:
            if aggregators.get(source).linear is None:
                raise ValueError(
                    f"options: auto's candidate aggregator {source!r} differs from the config's "
                    f"{config.aggregator!r}, so it must be logit-linear; it is not"
                )
            if aggregators.embed_linear(config.aggregator) is None:
                raise ValueError(
                    f"options: auto's candidate aggregator {source!r} differs from the config's "
                    f"{config.aggregator!r}, which cannot express a logit-linear rule (neither linear "
                    "nor from_linear)"
                )
        for name, values in c.grid:
            if name not in fields:
                raise ValueError(f"options: auto's candidate grid names {name!r}, not an Hparams field")
            if not isinstance(values, tuple) or not values:
                raise ValueError(f"options: auto's candidate grid for {name!r} must be a non-empty tuple")
        if any(not 0.0 <= p.get("rho", 0.5) <= 1.0 for p in c.points()):
            raise ValueError(f"options: auto's candidate rho values must lie in [0, 1], got {c.grid!r}")
        if method.check_config is not None:
            method.check_config(config.replace(method=c.method, formulation=c.formulation, space=c.space,
                                               aggregator=c.aggregator or config.aggregator))


METHOD = register(
    Method(
        name="auto",
        fit=fit,
        fit_with_progress=fit_with_progress,
        check_config=_check_config,
        description=(
            "the default pipeline: repeated stratified K-fold choice on the labeled columns (PR-AUC; "
            "best mean for the default candidates on binary problems, else the one-standard-error "
            "rule towards the simplest) among the prior aggregator's scales on two_stage at full rank"
        ),
        defaults=(("lam", 0.01),),
        multiclass=True,
    )
)
