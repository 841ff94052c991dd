"""Confidence strategies: `(problem, hparams) -> C`, the weights of the reconstruction loss.

Each strategy rescales the problem's base confidence `problem.C`, so unobserved cells (C = 0)
stay at 0 whatever the strategy. Select one by name with `Config.confidence`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from cfjax.structs import Hparams, Problem

__all__ = ["STRATEGIES", "agreement", "apply", "calibration", "certainty", "get", "label_aware", "uniform"]


def uniform(problem: Problem, hparams: Hparams) -> jax.Array:
    """The base confidence unchanged (1 on observed cells unless the user gave weights)."""
    return problem.C


def certainty(problem: Problem, hparams: Hparams) -> jax.Array:
    """c * (|r - 1/2| + floor): confident predictions are reconstructed first."""
    return problem.C * (jnp.abs(problem.R - 0.5) + hparams.certainty_floor)


def label_aware(problem: Problem, hparams: Hparams) -> jax.Array:
    """The seed's Solution 1 on training columns: y = 1: c (1 + alpha r); y = 0: c (1 + alpha (1 - r)).

    Cells that agree with the label weigh more in reconstruction; unlabeled and validation
    columns keep their base confidence.
    """
    agreement = jnp.where(problem.labels[None, :] > 0.5, problem.R, 1.0 - problem.R)
    boost = jnp.where(problem.labeled[None, :], 1.0 + hparams.alpha * agreement, 1.0)
    return problem.C * boost


def calibration(problem: Problem, hparams: Hparams) -> jax.Array:
    """Per classifier, 1 - Brier score on its observed training columns (1 if it has none)."""
    weight = (problem.observed & problem.labeled[None, :]).astype(problem.R.dtype)
    sq = weight * (problem.R - problem.labels[None, :]) ** 2
    count = weight.sum(axis=1)
    brier = jnp.where(count > 0, sq.sum(axis=1) / jnp.maximum(count, 1.0), 0.0)
    return problem.C * (1.0 - brier)[:, None]


def agreement(problem: Problem, hparams: Hparams) -> jax.Array:
    """Per column, 1 - 4 * (variance across observed classifiers), floored; 4 = 1 / max variance."""
    weight = problem.observed.astype(problem.R.dtype)
    count = jnp.maximum(weight.sum(axis=0), 1.0)
    mean = (weight * problem.R).sum(axis=0) / count
    var = (weight * (problem.R - mean[None, :]) ** 2).sum(axis=0) / count
    return problem.C * jnp.maximum(1.0 - 4.0 * var, hparams.certainty_floor)[None, :]


STRATEGIES: dict[str, Callable[[Problem, Hparams], jax.Array]] = {
    "uniform": uniform,
    "certainty": certainty,
    "label_aware": label_aware,
    "calibration": calibration,
    "agreement": agreement,
}


def get(name: str) -> Callable[[Problem, Hparams], jax.Array]:
    if name not in STRATEGIES:
        raise ValueError(f"confidence: unknown strategy {name!r}; choose from {sorted(STRATEGIES)}")
    return STRATEGIES[name]


def apply(name: str, problem: Problem, hparams: Hparams) -> Problem:
    """The problem with its confidence replaced by strategy `name` (computed once per fit)."""
    return problem._replace(C=get(name)(problem, hparams))
