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

__all__ = ["fit_logistic", "logistic_loss"]

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
    steps = jnp.asarray(_STEP_SIZES, dtype)

    def newton(carry, _):
        w, b = carry
        s = w @ F + b
        prob = jax.nn.sigmoid(s)
        grad = Fa @ (omega * (prob - y)) / total + jnp.concatenate([2.0 * l2 * w, jnp.zeros((1,), dtype)])
        curv = omega * prob * (1.0 - prob) / total
        H = (Fa * curv[None, :]) @ Fa.T + jnp.diag(penalty + 1e-8 * jnp.max(curv))
        delta = jnp.linalg.solve(H, grad)
        cand_w = w[None, :] - steps[:, None] * delta[None, :p]
        cand_b = b - steps * delta[p]
        losses = jax.vmap(logistic_loss, in_axes=(0, 0, None, None, None, None))(cand_w, cand_b, F, y, omega, l2)
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        best = jnp.argmin(losses)
        return (cand_w[best], cand_b[best]), None

    (w, b), _ = jax.lax.scan(newton, (w, b), None, length=n_steps)
    return w, b
