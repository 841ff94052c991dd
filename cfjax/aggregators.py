r"""Aggregators: how a reconstructed column becomes one prediction, as a protocol.

An aggregator is a small set of pure functions (an `Aggregator`), in the spirit of an optax
transformation:

* ``init(key, m, hparams, dtype) -> theta``: its parameters, a pytree, for m classifiers;
* ``logits(theta, inputs) -> (n,)``: one logit per column from `Inputs`: the reconstruction
  X^T Y, the factors X and Y themselves, and the mask of observed cells (None where the
  caller has no problem at hand, e.g. `cfjax.predict.proba(params, config)`: treat every cell
  as observed);
* ``penalty(theta) -> scalar`` (optional): added to L_sup times `Hparams.agg_l2`;
* ``exact_fit(theta, inputs, labels, omega, hparams) -> theta`` (optional): the minimiser of
  L_sup over theta with the inputs fixed; `two_stage` uses it, and falls back to
  `fit_on_fixed_inputs` (L-BFGS on L_sup) for an aggregator that has none;
* ``linear`` (optional): a `Linear` pair that reads and writes theta as (w, b) when the logit is
  exactly ``w^T r_hat + b``. MM-ALS majorises the cross-entropy of such aggregators only and
  refuses the others.

Logits, never probabilities, so the supervised loss uses log-sigmoid and never takes the log of
a clipped probability. `register` adds an aggregator to `AGGREGATORS`; `Config.aggregator`
names it; nothing else in the library needs to know about it (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from cfjax.logistic import fit_logistic

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "Inputs",
    "Linear",
    "WeightedTheta",
    "fit_on_fixed_inputs",
    "get",
    "inputs",
    "logits",
    "mean",
    "register",
    "weighted",
]

_EPS = 1e-6


class Inputs(NamedTuple):
    """What an aggregator may read for the n columns of a fit.

    Attributes:
      R_hat: (m, n) the reconstruction X^T Y.
      X: (d, m) classifier factors. Y: (d, n) instance factors.
      observed: (m, n) bool mask of the cells the base classifiers scored, or None (every cell).
    """

    R_hat: jax.Array
    X: jax.Array
    Y: jax.Array
    observed: jax.Array | None = None


class Linear(NamedTuple):
    """theta <-> (w, b) for an aggregator whose logit is exactly w^T r_hat + b."""

    weights: Callable[[Any], tuple[jax.Array, jax.Array]]
    with_weights: Callable[[Any, jax.Array, jax.Array], Any]


class Aggregator(NamedTuple):
    """A registered aggregator (see the module docstring for each function's contract)."""

    name: str
    init: Callable[[jax.Array, int, Any, Any], Any]
    logits: Callable[[Any, Inputs], jax.Array]
    penalty: Callable[[Any], jax.Array] | None = None
    exact_fit: Callable[..., Any] | None = None
    linear: Linear | None = None
    description: str = ""


def inputs(
    params: Any,
    observed: Bool[ArrayLike, "m n"] | None = None,
    R_hat: Float[Array, "m n"] | None = None,
) -> Inputs:
    """`Inputs` of fitted `Params` (R_hat = X^T Y unless the caller already has it)."""
    R_hat = params.X.T @ params.Y if R_hat is None else R_hat
    return Inputs(R_hat=R_hat, X=params.X, Y=params.Y, observed=observed)


def logits(
    params: Any,
    config: Any,
    observed: Bool[ArrayLike, "m n"] | None = None,
    R_hat: Float[Array, "m n"] | None = None,
) -> Float[Array, " n"]:
    """The aggregator's logits (n,) for every column of a fit: the one place they are formed."""
    agg = get(config.aggregator)
    return agg.logits(params.theta, inputs(params, observed, R_hat))


def penalty(aggregator: Aggregator, theta: Any) -> jax.Array:
    """The aggregator's penalty on theta (0 when it declares none)."""
    if aggregator.penalty is None:
        return jnp.zeros(())
    return aggregator.penalty(theta)


def fit_on_fixed_inputs(
    aggregator: Aggregator,
    theta: Any,
    fixed: Inputs,
    labels: Real[ArrayLike, " n"],
    omega: Real[ArrayLike, " n"],
    hparams: Any,
    n_steps: int = 200,
) -> Any:
    """theta minimising the omega-weighted cross-entropy + agg_l2 * penalty with inputs fixed.

    The aggregator's own `exact_fit` when it has one; otherwise `n_steps` of L-BFGS (optax)
    from `theta`, which needs nothing but `logits` and `penalty` (and is exact for a convex
    aggregator). Traceable.
    """
    if aggregator.exact_fit is not None:
        return aggregator.exact_fit(theta, fixed, labels, omega, hparams)
    total = jnp.maximum(jnp.sum(omega), 1e-30)

    def objective(t):
        s = aggregator.logits(t, fixed)
        ce = -jax.nn.log_sigmoid(jnp.where(labels > 0.5, s, -s))
        return jnp.sum(omega * ce) / total + hparams.agg_l2 * penalty(aggregator, t)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry, _):
        t, state = carry
        value, grad = value_and_grad(t, state=state)
        updates, state = solver.update(grad, state, t, value=value, grad=grad, value_fn=objective)
        return (optax.apply_updates(t, updates), state), None

    (theta, _), _ = jax.lax.scan(step, (theta, solver.init(theta)), None, length=n_steps)
    return theta


_REGISTRY: dict[str, Aggregator] = {}
AGGREGATORS = _REGISTRY  # the registry: name -> Aggregator (read it, extend it with `register`)


def register(aggregator: Aggregator, *, replace: bool = False) -> Aggregator:
    """Adds `aggregator` to the registry under its name; refuses to shadow one unless `replace`."""
    if not isinstance(aggregator, Aggregator):
        raise ValueError(f"aggregator: expected cfjax.aggregators.Aggregator, got {type(aggregator).__name__}")
    if aggregator.name in _REGISTRY and not replace:
        raise ValueError(f"aggregator: {aggregator.name!r} is registered already (pass replace=True)")
    _REGISTRY[aggregator.name] = aggregator
    return aggregator


def get(name: str) -> Aggregator:
    if name not in _REGISTRY:
        raise ValueError(f"aggregator: unknown name {name!r}; choose from {sorted(_REGISTRY)}")
    return _REGISTRY[name]


# ----------------------------------------------------------------------------------------------
# weighted: sigmoid(w^T r_hat + b)


class WeightedTheta(NamedTuple):
    """Parameters of the weighted logistic aggregator: logit_i = w^T r_i + b."""

    w: jax.Array  # (m,)
    b: jax.Array  # ()


def _weighted_init(key: jax.Array, m: int, hparams: Any, dtype: Any) -> WeightedTheta:
    # 4/m and -2: the first-order logit of the plain mean around p = 1/2, so the initial
    # predictions rank instances exactly as simple averaging does.
    return WeightedTheta(w=jnp.full((m,), 4.0 / m, dtype), b=jnp.asarray(-2.0, dtype))


def _weighted_exact_fit(theta: WeightedTheta, fixed: Inputs, labels, omega, hparams) -> WeightedTheta:
    w, b = fit_logistic(fixed.R_hat, labels, omega, hparams.agg_l2, theta.w, theta.b)
    return WeightedTheta(w=w, b=b)


weighted = register(
    Aggregator(
        name="weighted",
        init=_weighted_init,
        logits=lambda theta, x: theta.w @ x.R_hat + theta.b,
        penalty=lambda theta: jnp.sum(theta.w**2),
        exact_fit=_weighted_exact_fit,
        linear=Linear(weights=lambda t: (t.w, t.b), with_weights=lambda t, w, b: WeightedTheta(w=w, b=b)),
        description="sigmoid(w^T r + b), w and b learned",
    )
)


# ----------------------------------------------------------------------------------------------
# mean: the mean reconstructed probability, nothing learned


def _mean_logits(theta: Any, x: Inputs) -> jax.Array:
    p = jnp.clip(jnp.mean(x.R_hat, axis=0), _EPS, 1.0 - _EPS)
    return jnp.log(p) - jnp.log1p(-p)


mean = register(
    Aggregator(
        name="mean",
        init=lambda key, m, hparams, dtype: (),
        logits=_mean_logits,
        exact_fit=lambda theta, fixed, labels, omega, hparams: theta,
        description="mean of the reconstructed probabilities, clipped into (0, 1); nothing learned",
    )
)
