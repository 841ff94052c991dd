"""`auto`: the default pipeline, a cross-validated choice among candidate fits.

Each candidate is a method with its formulation, the space it factorizes R in, a rank (the
config's latent_dim, or full rank min(m, n)) and a grid of rho values. `auto`:

1. deals the labeled columns into K stratified folds (`Config.option("folds", 3)`; keyed, the
   same folds for every candidate, so their scores are paired);
2. fits every candidate at every rho on every fold's training columns *and* on all labeled
   columns, as one vmapped batch per candidate (K + 1 problems x the rho grid: one compiled
   program per candidate, whatever K and the grid);
3. scores each fold fit by PR-AUC on the fold's held-out columns (which are neither trained on
   nor monitored: they are transductive targets of that fit, exactly as the unlabeled columns
   are of the final fit);
4. keeps, per candidate, the rho with the best mean score, and across candidates the best mean
   (ties, and NaN scores, go to the earlier candidate: the list runs simplest first);
5. returns the chosen candidate's fit on all labeled columns.

Never reads a label outside `problem.labeled`. All traced: `auto` runs under jit, vmap and
`cfjax.sweep.run` like any method (its candidates take auto's hparams except rho). Its params
are the chosen candidate's, with X and Y zero-padded to the largest candidate rank (the
reconstruction X^T Y is unchanged), and `FitResult.info` says what was chosen: "candidate"
(index into `candidates(config)`), "space" (0: R, 1: logit), "rho", "lam", "latent_dim", and
"cv_mean" (C,), "cv_scores" (C, K) of every candidate at its best rho. `describe(result,
config, problem)` turns that into readable rows; `cfjax.plots.auto_choice` draws them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfjax import metrics
from cfjax.aggregators import logits as aggregator_logits
from cfjax.solvers import driver
from cfjax.solvers.base import Method, register
from cfjax.structs import Config, FitResult, Hparams, Params, Problem

__all__ = [
    "CANDIDATES",
    "METHOD",
    "Candidate",
    "CandidateRun",
    "candidate_config",
    "candidates",
    "combine",
    "describe",
    "run_candidate",
    "stratified_fold_ids",
]

DEFAULT_FOLDS = 3


class Candidate(NamedTuple):
    """One family `auto` chooses from: `method` (with `formulation`) on R in `space`
    ("probability" or "logit"), at the config's latent_dim or at `full_rank` (min(m, n)),
    over the grid `rhos`."""

    method: str
    space: str = "probability"
    formulation: str = "fold_in"
    rhos: tuple[float, ...] = (1.0,)
    full_rank: bool = False

    def label(self, latent_dim: int, rho: float | None = None) -> str:
        rho_text = "" if rho is None or len(self.rhos) == 1 else f", rho={rho:g}"
        form = "fold-in " if self.formulation == "fold_in" and self.method == "joint" else ""
        space = "R" if self.space == "probability" else "logit(R)"
        return f"{space}: {form}{self.method}(d={latent_dim}{rho_text})"


#: The candidates, simplest first (a tie in cross-validated score goes to the earlier one).
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("als"),
    Candidate("two_stage"),
    Candidate("joint", formulation="fold_in", rhos=(0.1, 0.5, 0.9)),
    Candidate("two_stage", space="logit", full_rank=True),
)


def candidates(config: Config) -> tuple[Candidate, ...]:
    """The candidates of a config: `Config.option("candidates")` or `CANDIDATES`."""
    return tuple(config.option("candidates", CANDIDATES))


def candidate_config(candidate: Candidate, config: Config, m: int, n: int) -> Config:
    """The static config a candidate is fitted with: auto's config with the candidate's method,
    formulation, space and rank (and no auto options)."""
    d = min(m, n) if candidate.full_rank else min(config.latent_dim, m, n)
    return config.replace(method=candidate.method, formulation=candidate.formulation, space=candidate.space,
                          latent_dim=d, options=())


def stratified_fold_ids(key: jax.Array, labels: jax.Array, labeled: jax.Array, n_folds: int) -> jax.Array:
    """(n,) int32: the fold (0..K-1) of each labeled column, -1 elsewhere. Traced.

    Within each class the labeled columns are taken in the order of a keyed permutation and
    dealt round-robin, so every fold holds floor or ceil of (class count / K) of each class
    (the same assignment as `cfjax.selection.stratified_folds` for the same key).
    """
    n = labels.shape[0]
    order = jax.random.permutation(key, n)
    fold = jnp.full((n,), -1, jnp.int32)
    for positive in (False, True):
        member = (labeled & ((labels > 0.5) == positive))[order]
        rank = jnp.cumsum(member.astype(jnp.int32)) - 1
        fold = fold.at[order].set(jnp.where(member, rank % n_folds, fold[order]))
    return fold


class CandidateRun(NamedTuple):
    """One candidate's fits: `scores` (K, R) PR-AUC on each fold's held-out columns per rho,
    and `full` (R,) the FitResults on all labeled columns per rho."""

    scores: jax.Array
    full: FitResult


def _folds(key: jax.Array, problem: Problem, config: Config) -> jax.Array:
    n_folds = config.option("folds", DEFAULT_FOLDS)
    ids = stratified_fold_ids(key, problem.labels, problem.labeled, n_folds)
    return ids[None, :] == jnp.arange(n_folds)[:, None]  # (K, n) held-out masks


def run_candidate(key: jax.Array, problem: Problem, hparams: Hparams, config: Config, index: int) -> CandidateRun:
    """Candidate `index` fitted on every fold (and on all labels) at every rho of its grid."""
    fold_key, fit_key = jax.random.split(key)
    held = _folds(fold_key, problem, config)
    m, n = problem.R.shape
    candidate = candidates(config)[index]
    cfg = candidate_config(candidate, config, m, n)
    rhos = jnp.asarray(candidate.rhos, problem.R.dtype)
    grid = jax.tree.map(lambda v: jnp.broadcast_to(v, rhos.shape), hparams)._replace(rho=rhos)
    labeled = jnp.concatenate([problem.labeled[None, :] & ~held, problem.labeled[None, :]], axis=0)

    def one(train: jax.Array, h: Hparams) -> FitResult:
        return driver.fit_traced(fit_key, problem._replace(labeled=train), h, cfg)._replace(state=None)

    results = jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(labeled, grid)  # (K+1, R)

    def score(params: Params, mask: jax.Array) -> jax.Array:
        return metrics.average_precision(problem.labels, aggregator_logits(params, cfg, problem.observed), mask)

    folds_only = jax.tree.map(lambda x: x[:-1], results.params)
    scores = jax.vmap(lambda p, mask: jax.vmap(lambda q: score(q, mask))(p))(folds_only, held)
    return CandidateRun(scores=scores, full=jax.tree.map(lambda x: x[-1], results))


def _pad(params: Params, d: int) -> Params:
    extra = d - params.X.shape[0]
    return params._replace(X=jnp.pad(params.X, ((0, extra), (0, 0))), Y=jnp.pad(params.Y, ((0, extra), (0, 0))))


def combine(runs: tuple[CandidateRun, ...], problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    """The choice among the candidates' runs (see the module docstring) as a FitResult."""
    m, n = problem.R.shape
    cands = candidates(config)
    ranks = [candidate_config(c, config, m, n).latent_dim for c in cands]
    d_max = max(ranks)
    best_rho, cv_mean, cv_scores, fits = [], [], [], []
    for run in runs:
        mean = jnp.nanmean(run.scores, axis=0)  # (R,)
        r = jnp.argmax(jnp.where(jnp.isnan(mean), -jnp.inf, mean))
        best_rho.append(r)
        cv_mean.append(mean[r])
        cv_scores.append(run.scores[:, r])
        full = jax.tree.map(lambda x, r=r: x[r], run.full)
        fits.append(full._replace(params=_pad(full.params, d_max)))
    cv_mean = jnp.stack(cv_mean)
    chosen = jnp.argmax(jnp.where(jnp.isnan(cv_mean), -jnp.inf, cv_mean))
    pick = lambda *xs: jnp.stack(xs)[chosen]
    result = jax.tree.map(pick, *fits)
    rhos = jnp.stack([jnp.asarray(c.rhos, problem.R.dtype)[r] for c, r in zip(cands, best_rho)])
    info = {
        "confidence": result.info["confidence"],
        "candidate": chosen.astype(jnp.int32),
        "space": jnp.asarray([c.space == "logit" for c in cands], jnp.int32)[chosen],
        "rho": rhos[chosen],
        "lam": jnp.asarray(hparams.lam),
        "latent_dim": jnp.asarray(ranks, jnp.int32)[chosen],
        "cv_mean": cv_mean,
        "cv_scores": jnp.stack(cv_scores),
        "candidate_rho": rhos,
    }
    return result._replace(state=None, info=info)


def fit(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    """The whole pipeline as one traceable function."""
    runs = tuple(run_candidate(key, problem, hparams, config, i) for i in range(len(candidates(config))))
    return combine(runs, problem, hparams, config)


_run_candidate_jit = jax.jit(run_candidate, static_argnames=("config", "index"))
_combine_jit = jax.jit(combine, static_argnames="config")


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
    """One row per candidate: its label (at its chosen rho), cross-validated mean and fold
    scores, and whether it was chosen. Host-side; for one fit (no sweep axes)."""
    m, n = problem.R.shape
    info = jax.tree.map(np.asarray, result.info)
    rows = []
    for i, c in enumerate(candidates(config)):
        d = candidate_config(c, config, m, n).latent_dim
        rows.append({
            "candidate": c.label(d, float(info["candidate_rho"][i])),
            "cv_mean": float(info["cv_mean"][i]),
            "cv_scores": info["cv_scores"][i].tolist(),
            "chosen": bool(int(info["candidate"]) == i),
        })
    return rows


def _check_config(config: Config) -> None:
    folds = config.option("folds", DEFAULT_FOLDS)
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ValueError(f"options: auto's 'folds' must be an int >= 2, got {folds!r}")
    cands = candidates(config)
    if not cands or not all(isinstance(c, Candidate) for c in cands):
        raise ValueError("options: auto's 'candidates' must be a non-empty tuple of cfjax.solvers.auto.Candidate")
    from cfjax.solvers.base import get

    for c in cands:
        method = get(c.method)
        if method.fit is not None:
            raise ValueError(f"options: auto's candidate {c.method!r} must be an iterative method")
        if c.space not in ("probability", "logit"):
            raise ValueError(f"options: auto's candidate space must be 'probability' or 'logit', got {c.space!r}")
        if not c.rhos or not all(0.0 <= r <= 1.0 for r in c.rhos):
            raise ValueError(f"options: auto's candidate rhos must be a non-empty tuple in [0, 1], got {c.rhos!r}")
        if method.check_config is not None:
            method.check_config(config.replace(method=c.method, formulation=c.formulation, space=c.space))


METHOD = register(
    Method(
        name="auto",
        fit=fit,
        fit_with_progress=fit_with_progress,
        check_config=_check_config,
        description=(
            "the default pipeline: cross-validated choice (stratified folds of the labeled columns, "
            "PR-AUC) among als, two_stage and fold-in joint (rho 0.1/0.5/0.9) at latent_dim on R, and "
            "two_stage at full rank on the base logits; the winner's fit on all labels"
        ),
        # the candidates were designed and validated at lam = 0.01 (docs/results/panel.md)
        defaults=(("lam", 0.01),),
    )
)
