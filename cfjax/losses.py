r"""The CF-Ensemble objective, normalised so that rho means the same thing at every size.

.. math::

    L_{recon} = \frac{\sum_{ui} c_{ui} (r_{ui} - x_u^\top y_i)^2 + \lambda (\|X\|_F^2 + \|Y\|_F^2)}
                     {\sum_{ui} c_{ui}}

    L_{sup} = \frac{\sum_{i \in L} \omega_i \, \ell_\gamma(y_i, s_i)}{\sum_{i \in L} \omega_i}
              + \text{agg\_l2} \cdot \text{penalty}(\theta),
    \qquad s = g_\theta(X^\top Y) \text{ (logits)}

    L = \rho \, L_{recon} + (1 - \rho) \, L_{sup}

where L is the set of training columns (`problem.labeled`), omega the inverse class-frequency
weights (`Config.class_weight`) and l_gamma the cross-entropy in the logit, multiplied by the
focal factor (1 - p_t)^gamma (gamma = 0: plain cross-entropy).

**Why normalise.** The reference implementation summed the reconstruction over all m·n cells
but averaged the supervision over the labeled columns, so rho = 0.5 weighted supervision about
m·n times less than it says, and the balance moved with the data size. Here both parts are
averages. The un-normalised sums are returned too (`LossParts.recon_sum`, `sup_sum`) so the
reference's scaling can be reproduced: rho_ref * recon_sum + (1 - rho_ref) * sup / 1.

With no training column the supervised part is 0 (not NaN); host-side validation refuses such
problems for supervised methods.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from cfjax import aggregators
from cfjax.structs import Config, Hparams, LossParts, Params, Problem

__all__ = [
    "class_weights",
    "cross_entropy",
    "loss",
    "loss_parts",
    "reconstruct",
    "reconstruction_parts",
    "supervised_parts",
    "supervised_weights",
]


def reconstruct(params: Params) -> Float[Array, "m n"]:
    """R_hat = X^T Y, shape (m, n)."""
    return params.X.T @ params.Y


def class_weights(problem: Problem, mask: Bool[ArrayLike, " n"]) -> Float[Array, " n"]:
    """Inverse class-frequency weights omega (n,) over `mask`, 0 outside it.

    omega_i = |L| / (2 |L_{y_i}|), so each class carries half of the total weight.
    """
    dtype = problem.R.dtype
    maskf = mask.astype(dtype)
    n_pos = jnp.sum(maskf * problem.labels)
    n_neg = jnp.sum(maskf) - n_pos
    total = n_pos + n_neg
    w_pos = total / (2.0 * jnp.maximum(n_pos, 1.0))
    w_neg = total / (2.0 * jnp.maximum(n_neg, 1.0))
    return maskf * jnp.where(problem.labels > 0.5, w_pos, w_neg)


def supervised_weights(
    problem: Problem, config: Config, mask: Bool[ArrayLike, " n"] | None = None
) -> Float[Array, " n"]:
    """The omega of L_sup over `mask` (default: the training columns)."""
    mask = problem.labeled if mask is None else mask
    if config.class_weight:
        return class_weights(problem, mask)
    return mask.astype(problem.R.dtype)


def cross_entropy(
    labels: Real[ArrayLike, "*shape"],
    logits: Float[ArrayLike, "*shape"],
    focal_gamma: Real[ArrayLike, ""],
) -> Float[Array, "*shape"]:
    """Element-wise (focal) binary cross-entropy from logits; finite for every finite logit.

    The focal factor (1 - p_t)^gamma is computed as exp(gamma * log_sigmoid(-s_t)), which has
    finite gradients at gamma = 0 and at saturated logits.
    """
    signed = jnp.where(labels > 0.5, logits, -logits)  # s_t: the logit of the true class
    nll = -jax.nn.log_sigmoid(signed)
    return jnp.exp(focal_gamma * jax.nn.log_sigmoid(-signed)) * nll


def reconstruction_parts(
    params: Params, problem: Problem, hparams: Hparams, R_hat: Float[Array, "m n"] | None = None
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(normalised L_recon, un-normalised sum) for the problem's (effective) confidence C.

    `R_hat`: X^T Y if the caller already has it (it must equal `reconstruct(params)`).
    """
    resid = problem.R - (reconstruct(params) if R_hat is None else R_hat)
    penalty = hparams.lam * (jnp.sum(params.X**2) + jnp.sum(params.Y**2))
    total = jnp.sum(problem.C * resid**2) + penalty
    return total / jnp.maximum(jnp.sum(problem.C), 1e-30), total


def supervised_parts(
    params: Params,
    problem: Problem,
    hparams: Hparams,
    config: Config,
    mask: Bool[ArrayLike, " n"] | None = None,
    R_hat: Float[Array, "m n"] | None = None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(normalised L_sup incl. the aggregator penalty, weighted cross-entropy sum) over `mask`.

    `R_hat`: as in `reconstruction_parts`.
    """
    agg = aggregators.get(config.aggregator)
    logits = aggregators.logits(params, config, observed=problem.observed, R_hat=R_hat)
    omega = supervised_weights(problem, config, mask)
    ce_sum = jnp.sum(omega * cross_entropy(problem.labels, logits, hparams.focal_gamma))
    sup = ce_sum / jnp.maximum(jnp.sum(omega), 1e-30) + hparams.agg_l2 * aggregators.penalty(agg, params.theta)
    return sup, ce_sum


def loss_parts(params: Params, problem: Problem, hparams: Hparams, config: Config) -> LossParts:
    """The combined objective and its parts (see the module docstring)."""
    # One X^T Y for both parts: XLA does not merge the two (m, n) GEMMs and their transposes in
    # the backward pass, which made a joint step 1.3x slower at (100, 1e6, 32).
    R_hat = reconstruct(params)
    recon, recon_sum = reconstruction_parts(params, problem, hparams, R_hat)
    sup, sup_sum = supervised_parts(params, problem, hparams, config, R_hat=R_hat)
    total = hparams.rho * recon + (1.0 - hparams.rho) * sup
    return LossParts(total=total, recon=recon, sup=sup, recon_sum=recon_sum, sup_sum=sup_sum)


def loss(params: Params, problem: Problem, hparams: Hparams, config: Config) -> Float[Array, ""]:
    """The scalar L = rho * L_recon + (1 - rho) * L_sup, differentiable in params and hparams."""
    return loss_parts(params, problem, hparams, config).total
