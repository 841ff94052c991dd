"""Aggregators: how a reconstructed column of probabilities becomes one prediction.

An aggregator is a pair of pure functions, `init(m, dtype) -> theta` and
`logits(theta, R_hat) -> (n,)`, plus a penalty on theta. It returns *logits*, so the supervised
loss is computed with log-sigmoid and never takes the log of a clipped probability. New
aggregators join the registry `AGGREGATORS` without any change to the solvers.

`logit_linear` marks aggregators whose logit is affine in R_hat (s = w^T r + b): the only kind
whose cross-entropy MM-ALS can majorize by a quadratic in the factors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["AGGREGATORS", "Aggregator", "WeightedTheta", "get", "mean", "weighted"]

_EPS = 1e-6


class Aggregator(NamedTuple):
    name: str
    init: Callable[[int, Any], Any]
    logits: Callable[[Any, jax.Array], jax.Array]
    penalty: Callable[[Any], jax.Array]
    logit_linear: bool
    description: str


class WeightedTheta(NamedTuple):
    """Parameters of the weighted logistic aggregator: logit_i = w^T r_i + b."""

    w: jax.Array  # (m,)
    b: jax.Array  # ()


def _weighted_init(m: int, dtype: Any) -> WeightedTheta:
    # 4/m and -2: the first-order logit of the plain mean around p = 1/2, so the initial
    # predictions rank instances exactly as simple averaging does.
    return WeightedTheta(w=jnp.full((m,), 4.0 / m, dtype), b=jnp.asarray(-2.0, dtype))


def _weighted_logits(theta: WeightedTheta, R_hat: jax.Array) -> jax.Array:
    return theta.w @ R_hat + theta.b


def _weighted_penalty(theta: WeightedTheta) -> jax.Array:
    return jnp.sum(theta.w**2)


def _mean_logits(theta: Any, R_hat: jax.Array) -> jax.Array:
    p = jnp.clip(jnp.mean(R_hat, axis=0), _EPS, 1.0 - _EPS)
    return jnp.log(p) - jnp.log1p(-p)


weighted = Aggregator(
    name="weighted",
    init=_weighted_init,
    logits=_weighted_logits,
    penalty=_weighted_penalty,
    logit_linear=True,
    description="sigmoid(w^T r + b), w and b learned",
)

mean = Aggregator(
    name="mean",
    init=lambda m, dtype: (),
    logits=_mean_logits,
    penalty=lambda theta: jnp.zeros(()),
    logit_linear=False,
    description="mean of the reconstructed probabilities, clipped into (0, 1); nothing learned",
)

AGGREGATORS: dict[str, Aggregator] = {a.name: a for a in (weighted, mean)}


def get(name: str) -> Aggregator:
    if name not in AGGREGATORS:
        raise ValueError(f"aggregator: unknown name {name!r}; choose from {sorted(AGGREGATORS)}")
    return AGGREGATORS[name]
