"""Confidence strategies: the weights C of the reconstruction loss, as a protocol.

A strategy (`Strategy`) is two pure functions:

* ``learn(problem, hparams) -> stats``: what it learns from the *training* problem (a dict of
  arrays, {} for a strategy that learns nothing), computed once per fit and kept in
  `FitResult.info["confidence"]`;
* ``weights(stats, problem, hparams) -> C``: the (m, n) confidence of any problem given those
  statistics: the training problem during the fit, new columns at fold-in
  (`cfjax.predict.fold_in`), so inductive prediction solves the same system as training.

Every strategy rescales the problem's base confidence `problem.C`, so unobserved cells (C = 0)
stay at 0 whatever the strategy. `Config.confidence` names one; `register` adds one.
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
    "register",
    "uniform",
]


class Strategy(NamedTuple):
    """A registered confidence strategy (see the module docstring)."""

    name: str
    weights: Callable[[dict, Problem, Hparams], jax.Array]
    learn: Callable[[Problem, Hparams], dict] = lambda problem, hparams: {}
    learns_from_labels: bool = False  # True when `learn` reads the training labels
    description: str = ""


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
    columns (and so every new column at fold-in) keep their base confidence.
    """
    agreement_ = jnp.where(problem.labels[None, :] > 0.5, problem.R, 1.0 - problem.R)
    boost = jnp.where(problem.labeled[None, :], 1.0 + hparams.alpha * agreement_, 1.0)
    return problem.C * boost


def _calibration_learn(problem: Problem, hparams: Hparams) -> dict:
    weight = (problem.observed & problem.labeled[None, :]).astype(problem.R.dtype)
    sq = weight * (problem.R - problem.labels[None, :]) ** 2
    count = weight.sum(axis=1)
    brier = jnp.where(count > 0, sq.sum(axis=1) / jnp.maximum(count, 1.0), 0.0)
    return {"classifier_weight": 1.0 - brier}


def calibration(problem: Problem, hparams: Hparams) -> jax.Array:
    """Per classifier, 1 - Brier score on its observed training columns (1 if it has none).

    Learned from the training labels: new columns at fold-in get the training weights.
    """
    return problem.C * _calibration_learn(problem, hparams)["classifier_weight"][:, None]


def agreement(problem: Problem, hparams: Hparams) -> jax.Array:
    """Per column, 1 - 4 * (variance across observed classifiers), floored; 4 = 1 / max variance."""
    weight = problem.observed.astype(problem.R.dtype)
    count = jnp.maximum(weight.sum(axis=0), 1.0)
    mean = (weight * problem.R).sum(axis=0) / count
    var = (weight * (problem.R - mean[None, :]) ** 2).sum(axis=0) / count
    return problem.C * jnp.maximum(1.0 - 4.0 * var, hparams.certainty_floor)[None, :]


def _stateless(name: str, fn: Callable[[Problem, Hparams], jax.Array]) -> Strategy:
    return Strategy(name=name, weights=lambda stats, problem, hparams: fn(problem, hparams),
                    description=fn.__doc__.splitlines()[0])


for _name, _fn in (("uniform", uniform), ("certainty", certainty), ("label_aware", label_aware),
                   ("agreement", agreement)):
    register(_stateless(_name, _fn))

register(
    Strategy(
        name="calibration",
        weights=lambda stats, problem, hparams: problem.C * stats["classifier_weight"][:, None],
        learn=_calibration_learn,
        learns_from_labels=True,
        description=calibration.__doc__.splitlines()[0],
    )
)
