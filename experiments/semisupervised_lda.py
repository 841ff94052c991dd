r"""A semi-supervised linear discriminant as aggregators: issue 17's experiment, not the library.

The classifiers' scores are strongly correlated, so their covariance is nearly singular and a
few dozen labels cannot estimate it; but its *total* covariance needs no labels and every
column estimates it. `lda_direction` forms

    Sigma_within = Sigma_total(all n columns) - pi (1 - pi) dmu dmu^T,

dmu = mu_pos - mu_neg and pi the positive rate of the labeled columns, projects it onto the
positive semi-definite matrices (eigenvalues floored at 1e-6 x the mean variance), shrinks it
towards its diagonal by the Ledoit-Wolf intensity of the total covariance (Schafer and
Strimmer 2005, target "D": unequal variances, zero correlations; estimated from every column,
no label read; fixed before any test score was seen), and returns the unit direction
(Sigma_shrunk)^{-1} dmu. At intensity 1 this is the diagonal discriminant of the default prior
(`cfjax.aggregators.discriminant_direction`, up to its clipping of negative weights and its
labeled-only variances); at 0 it is Fisher's discriminant with the unlabeled covariance.

Registered aggregators (the `prior` aggregator's code, with another centre), all logit-linear
with theta a `cfjax.aggregators.PriorTheta`:

* ``prior_lda``: the prior aggregator centred on (1 - a) l + a v, l the unit LDA direction,
  v the spectral meta-learner's (unit) reliabilities, a = `Hparams.agg_prior_sml` (0.5 by
  default: the default prior's blend with the diagonal discriminant replaced by the LDA);
* ``prior_lda_diag``: centred on (1 - a) (l + d / |d|) / 2 + a v, d the diagonal discriminant
  (the LDA blended with the default's centre rather than replacing it);
* ``lda``: the LDA rule itself, logit = s (l^T r) + b with (s, b) a 1-D logistic fit on the
  labeled columns (2 parameters; the prior aggregator's tiny 1e-4 precision along the direction).

`em_direction` is the semi-supervised LDA proper: a two-component Gaussian mixture with a shared
covariance fitted by EM with the labeled columns' classes fixed, so that the unlabeled columns
inform the class means as well as the covariance. It starts from `lda_direction`'s estimate
(labeled means, total-minus-between covariance), keeps pi at the labeled positive rate (the
stratified labeled sample estimates it without bias; a free pi lets EM split the majority class
of an imbalanced set), shrinks every M-step's covariance towards its diagonal by the same
Ledoit-Wolf intensity, and runs `EM_STEPS` = 50 steps (all fixed before any test score was seen).
Its aggregators: ``prior_em`` (as ``prior_lda``, centred on (1 - a) e + a v) and ``em`` (as ``lda``).

Imported by experiments/scarce_design.py (``--lda``); registering twice replaces.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from cfjax import aggregators
from cfjax.aggregators import Aggregator, Inputs, Linear, PriorTheta
from cfjax.logistic import fit_logistic_prior

__all__ = ["EM_STEPS", "diagonal_shrinkage_intensity", "em_direction", "lda_direction"]

EM_STEPS = 50


def diagonal_shrinkage_intensity(R: jax.Array) -> jax.Array:
    r"""Ledoit-Wolf intensity towards the diagonal of the sample covariance of the n columns of
    R (m, n) (Schafer and Strimmer 2005, target D), in [0, 1]:

        lambda = sum_{i != j} Var(s_ij) / sum_{i != j} s_ij^2,
        s_ij = n / (n - 1) mean_k w_kij,  Var(s_ij) = n / (n - 1)^3 sum_k (w_kij - mean_k w_kij)^2,

    w_kij = (r_ik - rbar_i)(r_jk - rbar_j). Sums over k as matrix products (no (m, m, n) array).
    """
    n = R.shape[1]
    Xc = R - jnp.mean(R, axis=1, keepdims=True)
    wbar = Xc @ Xc.T / n  # mean_k w_kij
    w2 = (Xc**2) @ (Xc**2).T  # sum_k w_kij^2
    var_s = n / (n - 1.0) ** 3 * (w2 - n * wbar**2)
    s = n / (n - 1.0) * wbar
    off = 1.0 - jnp.eye(R.shape[0], dtype=R.dtype)
    num = jnp.sum(off * var_s)
    den = jnp.maximum(jnp.sum(off * s**2), 1e-30)
    return jnp.clip(num / den, 0.0, 1.0)


def lda_direction(R_hat: jax.Array, labels: jax.Array, labeled: jax.Array) -> jax.Array:
    """The unit semi-supervised LDA direction (m,) (module docstring); labels read only where
    `labeled`. Falls back to equal weights when the class means coincide (dmu = 0)."""
    dtype = R_hat.dtype
    m, n = R_hat.shape
    pos = (labeled & (labels > 0.5)).astype(dtype)
    neg = (labeled & (labels <= 0.5)).astype(dtype)
    n_pos, n_neg = jnp.maximum(pos.sum(), 1.0), jnp.maximum(neg.sum(), 1.0)
    delta = R_hat @ pos / n_pos - R_hat @ neg / n_neg
    pi = n_pos / (n_pos + n_neg)
    Xc = R_hat - jnp.mean(R_hat, axis=1, keepdims=True)
    total = Xc @ Xc.T / (n - 1.0)
    within = total - pi * (1.0 - pi) * jnp.outer(delta, delta)
    evals, evecs = jnp.linalg.eigh(within)
    floor = 1e-6 * jnp.maximum(jnp.mean(jnp.diag(total)), 1e-30)
    within = (evecs * jnp.maximum(evals, floor)[None, :]) @ evecs.T
    gamma = diagonal_shrinkage_intensity(R_hat)
    shrunk = (1.0 - gamma) * within + gamma * jnp.diag(jnp.diag(within))
    w = jnp.linalg.solve(shrunk, delta)
    norm = jnp.linalg.norm(w)
    ok = jnp.all(jnp.isfinite(w)) & (norm > 1e-30)
    return jnp.where(ok, w / jnp.where(ok, norm, 1.0), jnp.full((m,), 1.0 / jnp.sqrt(m), dtype))


def em_direction(R_hat: jax.Array, labels: jax.Array, labeled: jax.Array, n_steps: int = EM_STEPS) -> jax.Array:
    """The unit EM semi-supervised LDA direction (m,) (module docstring): labels read only where
    `labeled`; `n_steps` static. Falls back to equal weights when it is not finite."""
    dtype = R_hat.dtype
    m, n = R_hat.shape
    y = (labels > 0.5).astype(dtype)
    pos = (labeled & (labels > 0.5)).astype(dtype)
    neg = (labeled & (labels <= 0.5)).astype(dtype)
    n_pos, n_neg = jnp.maximum(pos.sum(), 1.0), jnp.maximum(neg.sum(), 1.0)
    mu1, mu0 = R_hat @ pos / n_pos, R_hat @ neg / n_neg
    pi = n_pos / (n_pos + n_neg)
    Xc = R_hat - jnp.mean(R_hat, axis=1, keepdims=True)
    total = Xc @ Xc.T / (n - 1.0)
    floor = 1e-6 * jnp.maximum(jnp.mean(jnp.diag(total)), 1e-30)
    gamma = diagonal_shrinkage_intensity(R_hat)

    def regularised(within):
        evals, evecs = jnp.linalg.eigh(within)
        within = (evecs * jnp.maximum(evals, floor)[None, :]) @ evecs.T
        return (1.0 - gamma) * within + gamma * jnp.diag(jnp.diag(within))

    def step(carry, _):
        mu1, mu0, shrunk = carry
        w = jnp.linalg.solve(shrunk, mu1 - mu0)  # E-step: the posterior of the shared-covariance model
        s = w @ (R_hat - 0.5 * (mu1 + mu0)[:, None]) + jnp.log(pi) - jnp.log1p(-pi)
        tau = jnp.where(labeled, y, jax.nn.sigmoid(s))
        mu1 = R_hat @ tau / jnp.maximum(tau.sum(), 1e-12)  # M-step, pi fixed
        mu0 = R_hat @ (1.0 - tau) / jnp.maximum(n - tau.sum(), 1e-12)
        C1, C0 = R_hat - mu1[:, None], R_hat - mu0[:, None]
        within = ((C1 * tau[None, :]) @ C1.T + (C0 * (1.0 - tau)[None, :]) @ C0.T) / n
        return (mu1, mu0, regularised(within)), None

    start = regularised(total - pi * (1.0 - pi) * jnp.outer(mu1 - mu0, mu1 - mu0))
    (mu1, mu0, shrunk), _ = jax.lax.scan(step, (mu1, mu0, start), None, length=n_steps)
    w = jnp.linalg.solve(shrunk, mu1 - mu0)
    norm = jnp.linalg.norm(w)
    ok = jnp.all(jnp.isfinite(w)) & (norm > 1e-30)
    return jnp.where(ok, w / jnp.where(ok, norm, 1.0), jnp.full((m,), 1.0 / jnp.sqrt(m), dtype))


def _center(fixed: Inputs, labels, labeled, weight_sml, diag_share: float, direction=lda_direction) -> jax.Array:
    lda = direction(fixed.R_hat, labels, labeled)
    if diag_share > 0:
        d = aggregators.discriminant_direction(fixed.R_hat, labels, labeled)
        lda = (1.0 - diag_share) * lda + diag_share * d / jnp.linalg.norm(d)
    v = aggregators.unsupervised_direction(fixed)
    return (1.0 - weight_sml) * lda + weight_sml * v


def _prior_init(key: jax.Array, m: int, hparams: Any, dtype: Any, latent_dim: int = 0) -> PriorTheta:
    return aggregators.prior.init(key, m, hparams, dtype, latent_dim)


def _linear() -> Linear:
    return Linear(weights=lambda t: (t.w, t.b), with_weights=lambda t, w, b: t._replace(w=w, b=b),
                  penalty_matrix=aggregators.prior.linear.penalty_matrix)


def _make_prior(name: str, diag_share: float, direction=lda_direction) -> Aggregator:
    def exact_fit(theta: PriorTheta, fixed: Inputs, labels, omega, hparams) -> PriorTheta:
        labeled = omega > 0
        center = _center(fixed, labels, labeled, hparams.agg_prior_sml, diag_share, direction)
        w, b = fit_logistic_prior(fixed.R_hat, labels, labeled.astype(fixed.R_hat.dtype),
                                  aggregators.prior_precision(center, hparams.agg_prior), theta.w, theta.b)
        return PriorTheta(w=w, b=b, center=center)

    return Aggregator(name=name, init=_prior_init, logits=aggregators.prior.logits,
                      penalty=aggregators.prior.penalty, exact_fit=exact_fit, linear=_linear(),
                      description=f"the prior aggregator centred on {direction.__name__} (diag share {diag_share})")


def _make_rule_fit(direction):
    def exact_fit(theta: PriorTheta, fixed: Inputs, labels, omega, hparams) -> PriorTheta:
        labeled = omega > 0
        dtype = fixed.R_hat.dtype
        c = direction(fixed.R_hat, labels, labeled)
        s = c @ fixed.R_hat
        a, b = fit_logistic_prior(s[None, :], labels, labeled.astype(dtype), jnp.full((1, 1), 1e-4, dtype),
                                  jnp.ones((1,), dtype), theta.b)
        return PriorTheta(w=a[0] * c, b=b, center=c)

    return exact_fit


_lda_exact_fit = _make_rule_fit(lda_direction)


PRIOR_LDA = aggregators.register(_make_prior("prior_lda", 0.0), replace=True)
PRIOR_LDA_DIAG = aggregators.register(_make_prior("prior_lda_diag", 0.5), replace=True)
LDA = aggregators.register(
    Aggregator(name="lda", init=_prior_init, logits=aggregators.prior.logits, penalty=aggregators.prior.penalty,
               exact_fit=_lda_exact_fit, linear=_linear(),
               description="the semi-supervised LDA rule, calibrated by a 1-D logistic fit (2 parameters)"),
    replace=True,
)
PRIOR_EM = aggregators.register(_make_prior("prior_em", 0.0, em_direction), replace=True)
EM = aggregators.register(
    Aggregator(name="em", init=_prior_init, logits=aggregators.prior.logits, penalty=aggregators.prior.penalty,
               exact_fit=_make_rule_fit(em_direction), linear=_linear(),
               description="the EM semi-supervised LDA rule, calibrated by a 1-D logistic fit (2 parameters)"),
    replace=True,
)
