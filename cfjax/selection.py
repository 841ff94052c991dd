"""Model selection by stratified K-fold cross-validation on the labeled columns only.

`select(key, problem, grid, config)` fits every grid point on K folds of the training columns
(`cfjax.sweep.run`, one compiled program shared by the folds), scores each on its held-out
columns, picks the best mean and refits it on all labels. The transductive targets (columns in
neither mask) are never scored and their labels are never read, so they cannot influence the
choice. `stratified_folds` and `fold_problem` are the pieces, for callers that build their own.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cfjax import metrics
from cfjax.api import fit_unchecked
from cfjax.compilation import jit
from cfjax.data import class_index, require_labels
from cfjax.predict import proba
from cfjax.solvers.auto import stratified_fold_ids
from cfjax.structs import Config, FitResult, Hparams, Problem
from cfjax.sweep import _as_grid, check_sweep_inputs, run, take

__all__ = ["Selection", "fold_problem", "select", "stratified_folds"]



def stratified_folds(key: jax.Array, problem: Problem, n_folds: int = 3) -> np.ndarray:
    """K disjoint folds of the training columns (`problem.labeled`), stratified by class.

    Within each class (two, or a K-class problem's K) the training columns are shuffled by `key`
    and dealt round-robin, so every fold holds floor or ceil of (class count / K) of each class:
    the assignment of
    `cfjax.solvers.auto.stratified_fold_ids` (traced), here validated on the host and as masks.
    Reads labels only where `problem.labeled` is set.

    Returns:
      (K, n) bool masks, disjoint, whose union is `problem.labeled`.

    Raises:
      ValueError: if K < 2 or a class has fewer than K training columns (a fold would lack it
        or its complement would). For a K-class problem every class needs K training columns.
    """
    if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool) or n_folds < 2:
        raise ValueError(f"n_folds: must be an int >= 2, got {n_folds!r}")
    classes = class_index(problem)
    train = np.asarray(problem.labeled)
    for cls in range(problem.n_classes):
        count = int(np.sum(train & (classes == cls)))
        if count < n_folds:
            raise ValueError(f"n_folds: class {cls} has {count} training columns, fewer than n_folds={n_folds}")
    ids = np.asarray(stratified_fold_ids(key, problem.labels, problem.labeled, n_folds))
    return ids[None, :] == np.arange(n_folds)[:, None]


def fold_problem(problem: Problem, fold: Any) -> Problem:
    """`problem` with the columns of `fold` moved from the training mask to the validation mask.

    Shapes are unchanged, so every fold shares the sweep's compiled program. Validation
    columns are what solvers monitor (joint's early stopping uses them), never train on.
    """
    fold = jnp.asarray(fold, bool)
    return problem._replace(labeled=problem.labeled & ~fold, validation=problem.validation | fold)


@functools.partial(jit, static_argnames=("config", "metric"))
def _scores(params, labels: jax.Array, mask: jax.Array, config: Config, metric: str) -> jax.Array:
    """`metric` of each fit's transductive probabilities on `mask`: params (G, S, ...) -> (G, S).
    K-class labels (one-hot (K, n)) are scored by the K-class metric of that name."""
    if labels.ndim == 2:
        score, labels = metrics.get_multiclass(metric), jnp.argmax(labels, axis=0)
    else:
        score = metrics.get(metric)

    def one(p):
        return score(labels, proba(p, config), mask)

    return jax.vmap(jax.vmap(one))(params)


class Selection(NamedTuple):
    """What `select` returns.

    Attributes:
      index: the chosen grid point g (host int).
      hparams: `take(grid, index)`.
      scores: (G, K) the metric of each grid point on each fold's held-out columns (mean over
        seeds).
      mean: (G,) mean over folds.
      sd: (G,) sample standard deviation over folds (ddof = 1).
      refit: the `FitResult` of `hparams` fitted on all the problem's training columns.
      folds: (K, n) bool, the held-out columns of each fold.
    """

    index: int
    hparams: Hparams
    scores: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    refit: FitResult
    folds: np.ndarray


def select(
    key: jax.Array,
    problem: Problem,
    grid: Hparams,
    config: Config,
    n_folds: int = 3,
    metric: str = "pr_auc",
    seeds: int = 1,
    strategy: str = "auto",
    batch_size: int | None = None,
    *,
    mesh: Mesh | None = None,
) -> Selection:
    """Chooses a grid point by stratified K-fold cross-validation on the training columns.

    For each fold k, its columns move from `labeled` to `validation` (`fold_problem`); every grid
    point is fitted with `seeds` seeds (`run`, one compiled program shared by the K folds) and
    scored by `metric` on the fold's columns against their labels, from the transductive
    probabilities. The grid point with the best mean over folds wins (ties: the first in grid
    order; NaN scores count as worst) and is refitted on all training columns.

    Columns in neither mask (the transductive targets) are never scored and their labels are
    never read: permuting them leaves the selection identical. Columns already in
    `problem.validation` stay there in every fold and are not scored either.

    Args:
      key: a typed PRNG key; split into the fold assignment and the fit keys.
      problem: the `Problem`. Each class needs at least `n_folds` training columns.
      grid: `Hparams` with fields of shape (G,) (e.g. from `grid`).
      config: static configuration of every fit.
      n_folds: K >= 2.
      metric: a name in `cfjax.metrics.METRICS` (for a K-class problem, in
        `cfjax.metrics.MULTICLASS_METRICS`: "pr_auc" is then the macro one-vs-rest PR-AUC of
        the softmax probabilities); its direction from `metrics.higher_is_better`.
      seeds: S >= 1 fits per grid point and fold; their scores are averaged. The refit uses the
        first of these keys.
      strategy, batch_size, mesh: as in `run`.

    Returns:
      `Selection`.
    """
    if not isinstance(seeds, (int, np.integer)) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds: must be an int >= 1, got {seeds!r}")
    if not (
        isinstance(key, jax.Array)
        and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        and key.ndim == 0
    ):
        raise ValueError("key: expected one typed key, e.g. jax.random.key(0)")
    _, hparams_grid, config, _, _ = check_sweep_inputs(
        jax.random.split(key, 1), problem, _as_grid(grid), config, strategy, batch_size
    )
    try:
        (metrics.get if problem.n_classes == 2 else metrics.get_multiclass)(metric)
    except ValueError as err:
        raise ValueError(f"metric: {str(err).removeprefix('name: ')}") from None
    fold_key, fit_key = jax.random.split(key)
    keys = jax.random.split(fit_key, seeds)
    folds = stratified_folds(fold_key, problem, n_folds)

    per_fold = []
    for fold in folds:
        sub = fold_problem(problem, fold)
        require_labels(sub)
        result = run(keys, sub, hparams_grid, config, strategy=strategy, batch_size=batch_size, mesh=mesh)
        per_fold.append(
            np.asarray(_scores(result.params, problem.labels, jnp.asarray(fold), config, metric))
        )
    scores = np.stack(per_fold, axis=-1).mean(axis=1)  # (G, S, K) -> (G, K)
    mean = scores.mean(axis=1)
    sd = scores.std(axis=1, ddof=1)
    signed = mean if metrics.higher_is_better(metric) else -mean
    index = int(np.argmax(np.where(np.isnan(signed), -np.inf, signed)))
    best = take(hparams_grid, index)
    refit = fit_unchecked(keys[0], problem, best, config, mesh)
    return Selection(
        index=index, hparams=best, scores=scores, mean=mean, sd=sd, refit=refit, folds=folds
    )
