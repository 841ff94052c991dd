"""Confidence strategies: the weights C of the reconstruction loss, as a protocol.

A strategy (`Strategy`) is two pure functions:

* ``learn(problem, hparams) -> stats``: what it learns from the *training* problem (a dict of
  arrays, {} for a strategy that learns nothing), computed once per fit and kept in
  `FitResult.info["confidence"]`;
* ``weights(stats, problem, hparams) -> C``: the (m, n) confidence of any problem given those
  statistics: the training problem during the fit, new columns at fold-in
  (`cfjax.predict.fold_in`), so inductive prediction solves the same system as training.

Every strategy rescales the problem's base confidence `problem.C`, so unobserved cells (C = 0)
stay at 0 whatever the strategy. `Config.confidence` names one; `register` adds one. A strategy
with ``multiclass=True`` also weighs the rows of a K-class problem (`cfjax.Problem`: row
u K + k is classifier u's probability of class k, a one-vs-rest prediction whose label is
`Problem.row_labels`); the others are refused on K-class problems.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cfjax.structs import Hparams, Problem

__all__ = [
    "STRATEGIES",
    "Strategy",
    "agreement",
    "apply",
    "calibration",
    "certainty",
    "get",
    "label_aware",
    "learn",
    "learned_reliability",
    "register",
    "reliability_features",
    "uniform",
]


class Strategy(NamedTuple):
    """A registered confidence strategy (see the module docstring)."""

    name: str
    weights: Callable[[dict, Problem, Hparams], jax.Array]
    learn: Callable[[Problem, Hparams], dict] = lambda problem, hparams: {}
    learns_from_labels: bool = False  # True when `learn` reads the training labels
    description: str = ""
    multiclass: bool = False  # True: its weights also hold for K-class problems' class rows


_REGISTRY: dict[str, Strategy] = {}
STRATEGIES = _REGISTRY  # the registry: name -> Strategy


def register(strategy: Strategy, *, replace: bool = False) -> Strategy:
    """Adds `strategy` to the registry under its name; refuses to shadow one unless `replace`."""
    if not isinstance(strategy, Strategy):
        raise ValueError(f"strategy: expected cfjax.confidence.Strategy, got {type(strategy).__name__}")
    if strategy.name in _REGISTRY and not replace:
        raise ValueError(f"confidence: {strategy.name!r} is registered already (pass replace=True)")
    _REGISTRY[strategy.name] = strategy
    return strategy


def get(name: str) -> Strategy:
    if name not in _REGISTRY:
        raise ValueError(f"confidence: unknown strategy {name!r}; choose from {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def learn(name: str, problem: Problem, hparams: Hparams) -> dict:
    """What strategy `name` learns from the training problem `problem`."""
    return get(name).learn(problem, hparams)


def apply(name: str, problem: Problem, hparams: Hparams, stats: Any = None) -> Problem:
    """`problem` with its confidence replaced by strategy `name`, given learned `stats`
    (default: learned from `problem` itself, as during a fit)."""
    strategy = get(name)
    stats = strategy.learn(problem, hparams) if stats is None else stats
    return problem._replace(C=strategy.weights(stats, problem, hparams))


# ----------------------------------------------------------------------------------------------
# the built-in strategies; each plain function is (problem, hparams) -> C on one problem


def uniform(problem: Problem, hparams: Hparams) -> jax.Array:
    """The base confidence unchanged (1 on observed cells unless the user gave weights)."""
    return problem.C


def certainty(problem: Problem, hparams: Hparams) -> jax.Array:
    """c * (|r - 1/2| + floor): confident predictions are reconstructed first."""
    return problem.C * (jnp.abs(problem.R - 0.5) + hparams.certainty_floor)


def label_aware(problem: Problem, hparams: Hparams) -> jax.Array:
    """The seed's Solution 1 on training columns: y = 1: c (1 + alpha r); y = 0: c (1 + alpha (1 - r)).

    Cells that agree with the label weigh more in reconstruction; unlabeled and validation
    columns (and so every new column at fold-in) keep their base confidence. For K classes each
    row is a one-vs-rest prediction of its class (`Problem.row_labels`): y is 1 on the true
    class's rows.
    """
    agreement_ = jnp.where(problem.row_labels() > 0.5, problem.R, 1.0 - problem.R)
    boost = jnp.where(problem.labeled[None, :], 1.0 + hparams.alpha * agreement_, 1.0)
    return problem.C * boost


def _calibration_learn(problem: Problem, hparams: Hparams) -> dict:
    weight = (problem.observed & problem.labeled[None, :]).astype(problem.R.dtype)
    sq = weight * (problem.R - problem.row_labels()) ** 2
    count = weight.sum(axis=1)
    brier = jnp.where(count > 0, sq.sum(axis=1) / jnp.maximum(count, 1.0), 0.0)
    return {"classifier_weight": 1.0 - brier}


def calibration(problem: Problem, hparams: Hparams) -> jax.Array:
    """Per classifier, 1 - Brier score on its observed training columns (1 if it has none).

    Learned from the training labels: new columns at fold-in get the training weights. For K
    classes per row: the one-vs-rest Brier score of the classifier's class-k probability.
    """
    return problem.C * _calibration_learn(problem, hparams)["classifier_weight"][:, None]


def agreement(problem: Problem, hparams: Hparams) -> jax.Array:
    """Per column, 1 - 4 * (variance across observed classifiers), floored; 4 = 1 / max variance."""
    weight = problem.observed.astype(problem.R.dtype)
    count = jnp.maximum(weight.sum(axis=0), 1.0)
    mean = (weight * problem.R).sum(axis=0) / count
    var = (weight * (problem.R - mean[None, :]) ** 2).sum(axis=0) / count
    return problem.C * jnp.maximum(1.0 - 4.0 * var, hparams.certainty_floor)[None, :]


def _stateless(name: str, fn: Callable[[Problem, Hparams], jax.Array], multiclass: bool = True) -> Strategy:
    return Strategy(name=name, weights=lambda stats, problem, hparams: fn(problem, hparams),
                    description=fn.__doc__.splitlines()[0], multiclass=multiclass)


for _name, _fn in (("uniform", uniform), ("certainty", certainty), ("label_aware", label_aware)):
    register(_stateless(_name, _fn))
# the variance across a column's rows: for K classes they mix classes, so it is binary only
register(_stateless("agreement", agreement, multiclass=False))

register(
    Strategy(
        name="calibration",
        weights=lambda stats, problem, hparams: problem.C * stats["classifier_weight"][:, None],
        learn=_calibration_learn,
        learns_from_labels=True,
        description=calibration.__doc__.splitlines()[0],
        multiclass=True,
    )
)


# ----------------------------------------------------------------------------------------------
# learned: a per-cell reliability model, cross-fitted on the labeled columns

#: Cross-fitting folds of the "learned" strategy, and the ridge on its logistic coefficients.
RELIABILITY_FOLDS = 5
RELIABILITY_L2 = 1e-2


def reliability_features(problem: Problem) -> jax.Array:
    """(f, m, n) features of every cell for the reliability model, all in [-1, 1]:

    own certainty |2 r_ui - 1|; signed agreement (2 r_ui - 1)(2 rbar_-u,i - 1) with the mean
    rbar_-u,i of the column's other observed classifiers; the strength of that consensus
    |2 rbar_-u,i - 1|; and the signed prediction 2 r_ui - 1 (a classifier may be reliable on one
    class only). Unobserved cells read 0 and weigh nothing (C = 0).
    """
    weight = problem.observed.astype(problem.R.dtype)
    centred = weight * (2.0 * problem.R - 1.0)
    others = jnp.maximum(weight.sum(axis=0, keepdims=True) - weight, 1.0)
    consensus = (centred.sum(axis=0, keepdims=True) - centred) / others
    return jnp.stack([jnp.abs(centred), centred * consensus, weight * jnp.abs(consensus), centred])


def _reliability_folds(labeled: jax.Array) -> jax.Array:
    """(n,) the cross-fitting fold of every labeled column (the labeled columns dealt out in
    column order, so each fold spans the data set), -1 elsewhere."""
    return jnp.where(labeled, (jnp.cumsum(labeled) - 1) % RELIABILITY_FOLDS, -1)


def _fit_reliability(features: jax.Array, correct: jax.Array, cells: jax.Array) -> jax.Array:
    """(m, f + 1) per-classifier logistic coefficients (weights, then bias) predicting `correct`
    from `features` on the `cells` (m, n) mask."""
    from cfjax.logistic import (
        fit_logistic,  # structs <- confidence <- logistic would cycle at import
    )

    def one(F, y, omega):
        w, b = fit_logistic(F, y, omega, jnp.asarray(RELIABILITY_L2, F.dtype))
        return jnp.append(w, b)

    return jax.vmap(one, in_axes=(1, 0, 0))(features, correct, cells.astype(features.dtype))


def _reliability_learn(problem: Problem, hparams: Hparams) -> dict:
    features = reliability_features(problem)
    correct = ((problem.R > 0.5) == (problem.labels[None, :] > 0.5)).astype(problem.R.dtype)
    cells = problem.observed & problem.labeled[None, :]
    folds = _reliability_folds(problem.labeled)
    per_fold = jax.vmap(lambda k: _fit_reliability(features, correct, cells & (folds != k)[None, :]))(
        jnp.arange(RELIABILITY_FOLDS))
    return {"coef": _fit_reliability(features, correct, cells), "fold_coef": per_fold}


def learned_reliability(stats: dict, problem: Problem) -> jax.Array:
    """(m, n) the predicted probability that classifier u is right on instance i: the model of
    all labeled columns, except on a column `problem` labels, which gets the model of its
    cross-fitting fold (fitted without it), so no label sets its own column's confidence."""
    features = reliability_features(problem)
    folds = _reliability_folds(problem.labeled)
    coef = jnp.where(problem.labeled[None, :, None], stats["fold_coef"][jnp.maximum(folds, 0)].transpose(1, 0, 2),
                     stats["coef"][:, None, :])  # (m, n, f + 1)
    logit = jnp.einsum("fmn,mnf->mn", features, coef[..., :-1]) + coef[..., -1]
    return jax.nn.sigmoid(logit)


register(
    Strategy(
        name="learned",
        weights=lambda stats, problem, hparams: problem.C * learned_reliability(stats, problem),
        learn=_reliability_learn,
        learns_from_labels=True,  # binary only: its features read a column's rows as one class
        description=(
            "c times the learned probability that the classifier is right on the cell (per-classifier "
            "logistic model on the cell's certainty and agreement, cross-fitted on the labeled columns)"
        ),
    )
)
