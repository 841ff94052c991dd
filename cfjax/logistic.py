"""Weighted L2 logistic regression by guarded Newton steps, in jnp (jit- and vmap-friendly).

Used for the stacking baseline and for the exact aggregator fit of the two-stage method:
minimise  sum_i omega_i CE(y_i, w^T f_i + b) / sum_i omega_i + l2 ||w||^2  (b unpenalised).
The loss is convex; each step solves the Newton system, then keeps the best of the step sizes
1, 1/2, 1/4, 1/8 and 0, so the loss never rises and (near-)separable data cannot diverge.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Real

__all__ = ["fit_logistic", "fit_logistic_prior", "logistic_loss"]

_STEP_SIZES = (1.0, 0.5, 0.25, 0.125, 0.0)


def logistic_loss(
    w: Float[ArrayLike, " p"],
    b: Float[ArrayLike, ""],
    F: Float[ArrayLike, "p n"],
    y: Real[ArrayLike, " n"],
    omega: Real[ArrayLike, " n"],
    l2: Real[ArrayLike, ""],
) -> Float[Array, ""]:
    """The objective above. F: (p, n) features, y, omega: (n,)."""
    s = w @ F + b
    ce = -jax.nn.log_sigmoid(jnp.where(y > 0.5, s, -s))
    return jnp.sum(omega * ce) / jnp.maximum(jnp.sum(omega), 1e-30) + l2 * jnp.sum(w**2)


def _guarded_newton(objective, grad_and_hessian, theta: jax.Array, n_steps: int) -> jax.Array:
    """`n_steps` Newton steps on a convex objective, each keeping the best of the step sizes
    `_STEP_SIZES` (1, 1/2, 1/4, 1/8, 0): the objective never rises, non-finite candidates lose."""
    steps = jnp.asarray(_STEP_SIZES, theta.dtype)

    def newton(theta, _):
        grad, H = grad_and_hessian(theta)
        delta = jnp.linalg.solve(H, grad)
        candidates = theta[None, :] - steps[:, None] * delta[None, :]
        losses = jax.vmap(objective)(candidates)
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        return candidates[jnp.argmin(losses)], None

    theta, _ = jax.lax.scan(newton, theta, None, length=n_steps)
    return theta


def fit_logistic(
    F: Float[ArrayLike, "p n"],
    y: Real[ArrayLike, " n"],
    omega: Real[ArrayLike, " n"],
    l2: Real[ArrayLike, ""],
    w0: Float[ArrayLike, " p"] | None = None,
    b0: Float[ArrayLike, ""] | None = None,
    n_steps: int = 30,
) -> tuple[Float[Array, " p"], Float[Array, ""]]:
    """Fits (w, b). F: (p, n); y, omega: (n,) with omega = 0 on columns to ignore; l2 traced.

    Returns w: (p,), b: (). A tiny ridge (1e-8 relative) on the bias keeps the Newton system
    definite when l2 = 0 and the weights are degenerate.
    """
    p = F.shape[0]
    dtype = F.dtype
    w = jnp.zeros((p,), dtype) if w0 is None else w0
    b = jnp.zeros((), dtype) if b0 is None else b0
    total = jnp.maximum(jnp.sum(omega), 1e-30)
    Fa = jnp.concatenate([F, jnp.ones((1, F.shape[1]), dtype)], axis=0)  # (p + 1, n)
    penalty = jnp.concatenate([jnp.full((p,), 2.0, dtype) * l2, jnp.full((1,), 1e-8, dtype)])

    def grad_and_hessian(theta):
        w, b = theta[:p], theta[p]
        prob = jax.nn.sigmoid(w @ F + b)
        grad = Fa @ (omega * (prob - y)) / total + jnp.concatenate([2.0 * l2 * w, jnp.zeros((1,), dtype)])
        curv = omega * prob * (1.0 - prob) / total
        return grad, (Fa * curv[None, :]) @ Fa.T + jnp.diag(penalty + 1e-8 * jnp.max(curv))

    theta = _guarded_newton(
        lambda t: logistic_loss(t[:p], t[p], F, y, omega, l2),
        grad_and_hessian,
        jnp.concatenate([w, b[None]]),
        n_steps,
    )
    w, b = theta[:p], theta[p]
    return w, b


def fit_logistic_prior(
    F: jax.Array,
    y: jax.Array,
    weights: jax.Array,
    precision: jax.Array,
    w0: jax.Array | None = None,
    b0: jax.Array | None = None,
    bias_precision: float | jax.Array = 1e-8,
    n_steps: int = 30,
) -> tuple[jax.Array, jax.Array]:
    r"""MAP logistic regression under a Gaussian prior on w with any precision matrix.

    Minimises :math:`\sum_i \text{weights}_i \, CE(y_i, w^\top f_i + b)
    + \tfrac12 w^\top \Lambda w + \tfrac12 \epsilon b^2` on the *sum* scale, so the prior's
    weight against the data falls as labeled columns are added. The prior is centred at 0;
    a precision that is singular along a direction (e.g. Lambda = (I - c c^T) / tau, the prior of
    `cfjax.aggregators.prior`) leaves the scale along it to the data. Same guarded Newton
    steps as `fit_logistic`.

    Args:
      F: (p, n) features; y, weights: (n,), weights 0 on columns to ignore.
      precision: (p, p) symmetric positive semi-definite Lambda. Traced.
      bias_precision: epsilon, a tiny ridge on b (keeps the system definite).
    """
    p = F.shape[0]
    dtype = F.dtype
    w = jnp.zeros((p,), dtype) if w0 is None else w0
    b = jnp.zeros((), dtype) if b0 is None else b0
    Fa = jnp.concatenate([F, jnp.ones((1, F.shape[1]), dtype)], axis=0)
    prior = jnp.zeros((p + 1, p + 1), dtype).at[:p, :p].set(precision).at[p, p].set(bias_precision)

    def objective(theta):
        s = theta[:p] @ F + theta[p]
        ce = -jax.nn.log_sigmoid(jnp.where(y > 0.5, s, -s))
        return jnp.sum(weights * ce) + 0.5 * theta @ prior @ theta

    def grad_and_hessian(theta):
        prob = jax.nn.sigmoid(theta[:p] @ F + theta[p])
        curv = weights * prob * (1.0 - prob)
        H = (Fa * curv[None, :]) @ Fa.T + prior + 1e-8 * jnp.max(curv) * jnp.eye(p + 1, dtype=dtype)
        return Fa @ (weights * (prob - y)) + prior @ theta, H

    theta = _guarded_newton(objective, grad_and_hessian, jnp.concatenate([w, b[None]]), n_steps)
    return theta[:p], theta[p]


# Jitted here so that eager calls compile once per shape, not once per call (the lax loops
# inside close over per-call functions; why that matters: tests/test_compiles_once.py).
fit_logistic = jax.jit(fit_logistic, static_argnames="n_steps")
fit_logistic_prior = jax.jit(fit_logistic_prior, static_argnames="n_steps")
