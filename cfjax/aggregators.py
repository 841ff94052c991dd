r"""Aggregators: how a reconstructed column becomes one prediction, as a protocol.

An aggregator is a small set of pure functions (an `Aggregator`), in the spirit of an optax
transformation:

* ``init(key, m, hparams, dtype, latent_dim) -> theta``: its parameters, a pytree, for m
  classifiers and d = latent_dim factors (most aggregators ignore d; `attention` reads it);
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
* ``from_linear(template, w, b) -> theta`` (optional, for an aggregator that is not logit-linear
  but contains the logit-linear rules, as `attention` does at A = 0): a theta, shaped like
  `template`, whose logit is exactly ``w^T r_hat + b``. With it (or `linear`), `auto` can return a
  logit-linear candidate's fit in this aggregator (`embed_linear`).
* ``multiclass`` (a flag, default False): the aggregator also combines K-class problems
  (`cfjax.Problem`'s K-class layout, K >= 3: R_hat has m K rows, row u K + k classifier u's class
  k). Its init is then called with the keyword ``n_classes=K`` (and m the number of
  classifiers), its logits are (K, n) (a softmax over classes), and `exact_fit` reads one-hot
  labels (K, n). `linear` and `from_linear` stay binary: MM-ALS and `auto`'s rewriting of one
  aggregator's rule in another are binary-only. Aggregators without the flag are refused on
  K-class problems, with an error that names the ones that take them.

Parameters indexed by the latent dimension (attention's d x d map) must leave the logits
unchanged when they and the factors are zero-padded to a larger d: `auto` pads every candidate's
factors to the largest rank among them (`pad_theta`).

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

from cfjax.logistic import (
    NEWTON_MAX_PARAMETERS,
    fit_logistic,
    fit_logistic_prior_nonnegative,
    fit_multinomial,
    multinomial_penalty,
)

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "AttentionTheta",
    "Inputs",
    "Linear",
    "PriorTheta",
    "WeightedTheta",
    "attention",
    "attention_weights",
    "averaging_direction",
    "discriminant_direction",
    "embed_linear",
    "fit_on_fixed_inputs",
    "get",
    "initial_theta",
    "inputs",
    "logits",
    "mean",
    "multiclass_names",
    "pad_theta",
    "prior",
    "prior_direction",
    "register",
    "unsupervised_direction",
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
    """theta <-> (w, b) for an aggregator whose logit is exactly w^T r_hat + b (K classes: W r_hat
    + b, W (K, m K)), and its penalty as the quadratic form penalty(theta) = vec(w)^T Q vec(w)
    (`penalty_matrix(theta) -> Q`, (w.size, w.size), on w raveled row-major)."""

    weights: Callable[[Any], tuple[jax.Array, jax.Array]]
    with_weights: Callable[[Any, jax.Array, jax.Array], Any]
    penalty_matrix: Callable[[Any], jax.Array]


class Aggregator(NamedTuple):
    """A registered aggregator (see the module docstring for each function's contract)."""

    name: str
    init: Callable[[jax.Array, int, Any, Any, int], Any]
    logits: Callable[[Any, Inputs], jax.Array]
    penalty: Callable[[Any], jax.Array] | None = None
    exact_fit: Callable[..., Any] | None = None
    linear: Linear | None = None
    from_linear: Callable[[Any, jax.Array, jax.Array], Any] | None = None
    description: str = ""
    multiclass: bool = False


def initial_theta(aggregator: Aggregator | str, key: jax.Array, m: int, latent_dim: int, hparams: Any,
                  dtype: Any, n_classes: int = 2) -> Any:
    """The aggregator's starting parameters for m classifiers, d = `latent_dim` factors and
    `n_classes` classes (K >= 3 only for a `multiclass` aggregator)."""
    agg = get(aggregator) if isinstance(aggregator, str) else aggregator
    if n_classes == 2:
        return agg.init(key, m, hparams, dtype, latent_dim)
    if not agg.multiclass:
        raise ValueError(f"aggregator: {agg.name!r} combines two classes only; for K = {n_classes} "
                         f"use one of {multiclass_names()}")
    return agg.init(key, m, hparams, dtype, latent_dim, n_classes=n_classes)


def multiclass_names() -> list[str]:
    """The registered aggregators that take K-class problems."""
    return sorted(name for name, agg in _REGISTRY.items() if agg.multiclass)


def embed_linear(aggregator: Aggregator | str) -> Callable[[Any, jax.Array, jax.Array], Any] | None:
    """`(template, w, b) -> theta` with logit w^T r_hat + b in this aggregator (its `from_linear`,
    else its `linear.with_weights`), or None when it cannot express the logit-linear rules."""
    agg = get(aggregator) if isinstance(aggregator, str) else aggregator
    if agg.from_linear is not None:
        return agg.from_linear
    return agg.linear.with_weights if agg.linear is not None else None


def pad_theta(theta: Any, template: Any) -> Any:
    """`theta` with every leaf zero-padded (at the end of each axis) to the shape of the same leaf
    of `template`: a theta fitted at latent dimension d read at a larger one (the protocol's
    padding rule, in the module docstring)."""
    def pad(leaf, like):
        if leaf.shape == like.shape:
            return leaf
        return jnp.pad(leaf, [(0, b - a) for a, b in zip(leaf.shape, like.shape)])

    return jax.tree.map(pad, theta, template)


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
    from_factors: bool = False,
) -> Float[Array, "*K n"]:
    """The aggregator's logits (n,) for every column of a fit, (K, n) for a K-class one: the one
    place they are formed.

    `from_factors` (static): for an aggregator with a `linear` pair and no `R_hat` given, form
    w^T (X^T Y) + b as (X w)^T Y + b, O((m + n) d) instead of an (m, n) reconstruction (equal up
    to the order of the sums). The losses use it; others ignore it.
    """
    agg = get(config.aggregator)
    if from_factors and R_hat is None and agg.linear is not None:
        w, b = agg.linear.weights(params.theta)
        if w.ndim == 2:  # K classes: (W X^T) Y + b, (K, n)
            return (w @ params.X.T) @ params.Y + b[:, None]
        return (params.X @ w) @ params.Y + b
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
    labels: Real[ArrayLike, "*K n"],
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
    return _lbfgs_fit(aggregator, theta, fixed, labels, omega, hparams, n_steps)


def _lbfgs_fit(aggregator: Aggregator, theta: Any, fixed: Inputs, labels: jax.Array, omega: jax.Array,
               hparams: Any, n_steps: int) -> Any:
    """`n_steps` of L-BFGS (optax) on the omega-weighted cross-entropy + agg_l2 * penalty."""
    total = jnp.maximum(jnp.sum(omega), 1e-30)

    def objective(t):
        s = aggregator.logits(t, fixed)
        if labels.ndim == 2:  # K classes: one-hot labels, (K, n) logits
            ce = -jnp.sum(labels * jax.nn.log_softmax(s, axis=0), axis=0)
        else:
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
    """Parameters of the weighted logistic aggregator: logit_i = w^T r_i + b.

    For K classes the multinomial one: logits_i = W r_i + b, w = W of shape (K, m K), b (K,).
    """

    w: jax.Array  # (m,), or (K, m K)
    b: jax.Array  # (), or (K,)


def _weighted_init(key: jax.Array, m: int, hparams: Any, dtype: Any, latent_dim: int = 0,
                   n_classes: int = 2) -> WeightedTheta:
    # 4/m and -2: the first-order logit of the plain mean around p = 1/2, so the initial
    # predictions rank instances exactly as simple averaging does. For K classes the same
    # around p = 1/K: log p_k ~ K p_k + const, so W_k = K/m on class k's rows, the softmax of K
    # times the mean, which ranks every class as averaging does.
    if n_classes == 2:
        return WeightedTheta(w=jnp.full((m,), 4.0 / m, dtype), b=jnp.asarray(-2.0, dtype))
    return WeightedTheta(w=(n_classes / m) * averaging_direction(m, n_classes, dtype),
                         b=jnp.zeros((n_classes,), dtype))


def _weighted_logits(theta: Any, x: Inputs) -> jax.Array:
    # theta: WeightedTheta or PriorTheta (the two share the logit)
    if theta.w.ndim == 2:
        return theta.w @ x.R_hat + theta.b[:, None]
    return theta.w @ x.R_hat + theta.b


def _weighted_exact_fit(theta: WeightedTheta, fixed: Inputs, labels, omega, hparams) -> WeightedTheta:
    if labels.ndim == 2:
        W, b = _fit_softmax(fixed.R_hat, labels, omega, hparams.agg_l2)
        return WeightedTheta(w=W, b=b)
    w, b = fit_logistic(fixed.R_hat, labels, omega, hparams.agg_l2, theta.w, theta.b)
    return WeightedTheta(w=w, b=b)


def _fit_softmax(F: jax.Array, labels: jax.Array, omega: jax.Array, l2: jax.Array, center: jax.Array | None = None,
                 along: jax.Array | float = 0.0) -> tuple[jax.Array, jax.Array]:
    """The multinomial logistic fit (`cfjax.logistic.fit_multinomial`, penalty l2 towards the line
    of `center` when given) on features F (p, n) and one-hot labels (K, n): exact, by Newton steps
    up to `SOFTMAX_NEWTON_MAX_PARAMETERS` parameters and L-BFGS beyond (to a gradient norm of
    0.01 sqrt(eps)). A class no weighted column holds keeps logit -inf's limit: W_k = 0 and a bias
    far below the others (finite, so the losses stay finite; scikit-learn never predicts it)."""
    K, (p, _) = labels.shape[0], F.shape
    seen = labels @ omega > 0
    solver = "newton" if K * (p + 1) <= SOFTMAX_NEWTON_MAX_PARAMETERS else "lbfgs"
    W, b = fit_multinomial(F, jnp.argmax(labels, axis=0), omega, l2, K, seen, solver=solver,
                           tol=jnp.sqrt(jnp.finfo(F.dtype).eps) * 1e-2, center=center, along=along)
    return W, jnp.where(seen, b, jnp.min(jnp.where(seen, b, jnp.inf)) - _UNSEEN_CLASS_MARGIN)


def averaging_direction(m: int, n_classes: int, dtype: Any) -> jax.Array:
    """(K, m K): W with W_k = 1 on class k's rows, 0 elsewhere: softmax(s W r_hat) is the softmax
    of s times the classifiers' summed probabilities, so every W on its line ranks each class as
    averaging does."""
    return jnp.tile(jnp.eye(n_classes, dtype=dtype), (1, m))


#: The largest K-class aggregator fit done by Newton steps: stacking's `NEWTON_MAX_PARAMETERS`.
#: One fit alone is far faster by L-BFGS (digits, 910 parameters, float32, one thread: Newton
#: 0.25 s, L-BFGS 0.008 s to the same loss), but under auto's vmap of 44 fits every fit runs
#: until the slowest stops, and the default fit on segment (448 parameters) took longer with
#: L-BFGS (over 150 s) than with Newton (~100 s): not changed until that is understood.
SOFTMAX_NEWTON_MAX_PARAMETERS = NEWTON_MAX_PARAMETERS


#: How far below every seen class's bias a class without a labeled column is put: e^-30, the
#: probability 0 of `fit_multinomial`'s masked logit made finite.
_UNSEEN_CLASS_MARGIN = 30.0


weighted = register(
    Aggregator(
        name="weighted",
        init=_weighted_init,
        logits=_weighted_logits,
        penalty=lambda theta: jnp.sum(theta.w**2),
        exact_fit=_weighted_exact_fit,
        linear=Linear(weights=lambda t: (t.w, t.b), with_weights=lambda t, w, b: WeightedTheta(w=w, b=b),
                      penalty_matrix=lambda t: jnp.eye(t.w.size, dtype=t.w.dtype)),
        description="sigmoid(w^T r + b), w and b learned; for K classes softmax(W r + b)",
        multiclass=True,
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
        init=lambda key, m, hparams, dtype, latent_dim: (),
        logits=_mean_logits,
        exact_fit=lambda theta, fixed, labels, omega, hparams: theta,
        description="mean of the reconstructed probabilities, clipped into (0, 1); nothing learned",
    )
)


# ----------------------------------------------------------------------------------------------
# prior: sigmoid(w^T r_hat + b) with a Gaussian prior that pulls w towards a direction


class PriorTheta(NamedTuple):
    """Parameters of the prior aggregator: logit_i = w^T r_i + b, and the prior's direction.

    `center` is not learned by gradient (the penalty stops its gradient): it starts as the
    averaging direction and `exact_fit` sets it (`prior_direction`): half from every column
    without labels (the spectral meta-learner's reliabilities), half from the labeled columns
    (the diagonal discriminant), by default. Fitted exactly (binary), w >= 0
    (`cfjax.logistic.fit_logistic_prior_nonnegative`): no classifier's probability of the
    positive class counts against it. With a few dozen labels the out-of-fold base predictions
    on the labeled columns can rank every classifier below chance while the same models score
    well on the other columns; unconstrained, the fit then turns the whole ensemble around
    (docs/results/scarce_holdout.md). A classifier held at 0 keeps a trace (`_HELD_TRACE`) of
    its weight in the prior's direction. Gradient-trained (joint, mm_als) the weights are not
    constrained. The study behind it: docs/results/scarce_labels.md.
    """

    w: jax.Array  # (m,)
    b: jax.Array  # ()
    center: jax.Array  # (m,)


def discriminant_direction(R_hat: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Diagonal discriminant weights on the `mask` columns, negative parts set to 0 (m,).

    d_u = (mean of r_u on positives - mean on negatives) / pooled within-class variance of r_u:
    the linear discriminant that treats the classifiers as independent given the class (a
    Gaussian naive Bayes with shared variances). It reads one mean difference and one variance
    per classifier, never inverts their (nearly singular) covariance, and so stays stable with
    a few dozen labels; a classifier that does worse than chance on the labeled columns gets 0.
    All zero (no classifier better than chance) falls back to equal weights.
    """
    dtype = R_hat.dtype
    pos = (mask & (labels > 0.5)).astype(dtype)
    neg = (mask & (labels <= 0.5)).astype(dtype)
    n_pos, n_neg = jnp.maximum(pos.sum(), 1.0), jnp.maximum(neg.sum(), 1.0)
    mu_pos = R_hat @ pos / n_pos
    mu_neg = R_hat @ neg / n_neg
    scatter = ((R_hat - mu_pos[:, None]) ** 2) @ pos + ((R_hat - mu_neg[:, None]) ** 2) @ neg
    var = scatter / jnp.maximum(n_pos + n_neg - 2.0, 1.0)
    d = jnp.maximum((mu_pos - mu_neg) / jnp.maximum(var, 1e-12), 0.0)
    return jnp.where(jnp.any(d > 0), d, jnp.ones_like(d))


def _off_center(theta: PriorTheta) -> jax.Array:
    """Q = I - c c^T for the unit prior direction c of theta (no gradient through c); for K
    classes on vec(W), c the raveled (K, m K) direction (`multinomial_penalty`'s quadratic form)."""
    return _off_direction(theta.center.ravel())


def _off_direction(center: jax.Array) -> jax.Array:
    """Q = I - c c^T for the unit direction c of `center` (no gradient through c)."""
    c = jax.lax.stop_gradient(center)
    c = c / jnp.maximum(jnp.linalg.norm(c), 1e-30)
    return jnp.eye(c.shape[-1], dtype=c.dtype) - jnp.outer(c, c)


def _prior_init(key: jax.Array, m: int, hparams: Any, dtype: Any, latent_dim: int = 0,
                n_classes: int = 2) -> PriorTheta:
    base = _weighted_init(key, m, hparams, dtype, latent_dim, n_classes)
    center = jnp.ones((m,), dtype) if n_classes == 2 else averaging_direction(m, n_classes, dtype)
    return PriorTheta(w=base.w, b=base.b, center=center)


def unsupervised_direction(fixed: Inputs) -> jax.Array:
    """The spectral meta-learner's reliability direction of the reconstruction (m,), unit norm:
    the leading eigenvector of the rank-one fit of its classifiers' off-diagonal covariance over
    every column (`cfjax.baselines.sml_weights`); no label is read."""
    from cfjax.baselines import sml_weights  # a peer method's estimator, reused as a prior
    from cfjax.structs import Problem

    R = fixed.R_hat
    observed = jnp.ones(R.shape, bool) if fixed.observed is None else fixed.observed
    n = R.shape[1]
    none = jnp.zeros((n,), bool)
    v, _ = sml_weights(Problem(R=R, C=observed.astype(R.dtype), observed=observed, labels=jnp.zeros((n,), R.dtype),
                               labeled=none, validation=none))
    return v


def prior_direction(fixed: Inputs, labels: jax.Array, labeled: jax.Array, weight_sml: jax.Array) -> jax.Array:
    """The prior's direction: (1 - a) d / |d| + a v / |v| for the diagonal discriminant d of the
    labeled columns (`discriminant_direction`) and the unsupervised direction v
    (`unsupervised_direction`), a = `weight_sml` (traced)."""
    d = discriminant_direction(fixed.R_hat, labels, labeled)
    v = unsupervised_direction(fixed)
    return (1.0 - weight_sml) * d / jnp.linalg.norm(d) + weight_sml * v


def _prior_exact_fit(theta: PriorTheta, fixed: Inputs, labels, omega, hparams) -> PriorTheta:
    labeled = omega > 0
    if labels.ndim == 2:  # K classes: centred on averaging, the same prior on the mean scale
        weights = labeled.astype(fixed.R_hat.dtype)
        l2 = 1.0 / (2.0 * hparams.agg_prior * jnp.maximum(jnp.sum(weights), 1.0))
        W, b = _fit_softmax(fixed.R_hat, labels, weights, l2, theta.center, _PRIOR_ALONG * hparams.agg_prior)
        return theta._replace(w=W, b=b)
    center = prior_direction(fixed, labels, labeled, hparams.agg_prior_sml)
    w, b = fit_logistic_prior_nonnegative(fixed.R_hat, labels, labeled.astype(fixed.R_hat.dtype),
                                          prior_precision(center, hparams.agg_prior))
    # A classifier held at 0 keeps a trace of its weight in the prior's direction: where the
    # labels would weigh every classifier negatively the direction still ranks the columns.
    w = jnp.where(w > 0, w, _HELD_TRACE * center / jnp.linalg.norm(center))
    return PriorTheta(w=w, b=b, center=center)


#: The weight, relative to the unit prior direction, that a classifier held at 0 by the
#: non-negativity constraint keeps: far below any fitted weight, enough to break the ties of a
#: fit that holds every classifier (then the probabilities are the labeled base rate, ranked by
#: the direction).
_HELD_TRACE = 1e-3


def prior_precision(center: jax.Array, scale: jax.Array, along: Any = None) -> jax.Array:
    """The prior's precision on w (m, m): (I - c c^T) / scale + along c c^T for the unit direction
    c of `center`. Deviations from the direction have variance `scale` (agg_prior); along it the
    prior is weak (`along`, default `_PRIOR_ALONG` = 1e-2: standard deviation 10), so a strong
    prior still learns how confident to be."""
    c = center / jnp.linalg.norm(center)
    return _off_direction(center) / scale + (_PRIOR_ALONG if along is None else along) * jnp.outer(c, c)


#: The prior's precision along its unit direction, on the summed log-likelihood: weakly informative
#: (standard deviation 10), not free. Free (1e-4, as it was) let separable labeled columns send the
#: fit far along the line. K classes: on scikit-learn's wine3, split 0 at 60 %, W 16.8 times the
#: averaging direction and intercepts +-40, test log-loss 0.44 and macro PR-AUC 0.974 against 0.13 and
#: 0.998 at 1e-2. Binary: on wine at 20 % labeled, split 3, |w| = 39 and logits up to 71, so float32
#: probabilities of positives and negatives tied at 1.0 and the test PR-AUC fell from 0.999 (its
#: logits' ranking) to 0.940 (docs/results/scarce_design_along.md).
_PRIOR_ALONG = 1e-2


def _prior_penalty(theta: PriorTheta) -> jax.Array:
    if theta.w.ndim == 2:
        return multinomial_penalty(theta.w, theta.center)
    return theta.w @ _off_center(theta) @ theta.w


prior = register(
    Aggregator(
        name="prior",
        init=_prior_init,
        logits=_weighted_logits,
        penalty=_prior_penalty,
        exact_fit=_prior_exact_fit,
        linear=Linear(weights=lambda t: (t.w, t.b), with_weights=lambda t, w, b: t._replace(w=w, b=b),
                      penalty_matrix=_off_center),
        description=(
            "sigmoid(w^T r + b) under a Gaussian prior centred on a direction: when fitted exactly "
            "(two_stage), the spectral meta-learner's reliabilities of every column blended with the "
            "diagonal discriminant of the labeled columns (Hparams.agg_prior_sml), and w >= 0; "
            "averaging otherwise; scale Hparams.agg_prior, on the summed log-likelihood. For K classes "
            "softmax(W r + b), centred on averaging (W_k on class k's rows)"
        ),
        multiclass=True,
    )
)


# ----------------------------------------------------------------------------------------------
# attention: per-instance trust over the classifiers, from the latent factors


class AttentionTheta(NamedTuple):
    """Parameters of the attention aggregator (see `attention_weights` and `attention`).

    w: (m,) per-classifier weights; b: () bias; A: (d, d) the bilinear trust map between
    classifier and instance factors; a: (m,) per-classifier trust offsets.
    """

    w: jax.Array
    b: jax.Array
    A: jax.Array
    a: jax.Array


def attention_weights(theta: AttentionTheta, x: Inputs) -> jax.Array:
    """alpha (m, n): alpha_ui = softmax over classifiers u of x_u^T A y_i + a_u; every column
    sums to 1, and A = 0, a = 0 gives every classifier 1/m."""
    return jax.nn.softmax(x.X.T @ theta.A @ x.Y + theta.a[:, None], axis=0)


def _attention_logits(theta: AttentionTheta, x: Inputs) -> jax.Array:
    # m * alpha: uniform trust is the identity, so A = 0, a = 0 is exactly "weighted" on the
    # centred reconstruction, w^T (r - 1/2) + b
    alpha = attention_weights(theta, x)
    m = x.R_hat.shape[0]
    return m * jnp.sum(alpha * theta.w[:, None] * (x.R_hat - 0.5), axis=0) + theta.b


def _attention_from_linear(template: AttentionTheta, w: jax.Array, b: jax.Array) -> AttentionTheta:
    """The rule w^T r_hat + b with uniform trust: on the centred reconstruction its bias is
    b + w^T 1/2."""
    return AttentionTheta(w=w, b=b + 0.5 * jnp.sum(w), A=jnp.zeros_like(template.A), a=jnp.zeros_like(template.a))


def _attention_init(key: jax.Array, m: int, hparams: Any, dtype: Any, latent_dim: int) -> AttentionTheta:
    # the weighted aggregator's start (w = 4/m; b = 0 on the centred reconstruction is its
    # b = -2 on the raw one, exactly, where `_attention_from_linear` would round), with uniform trust
    return AttentionTheta(w=jnp.full((m,), 4.0 / m, dtype), b=jnp.zeros((), dtype),
                          A=jnp.zeros((latent_dim, latent_dim), dtype), a=jnp.zeros((m,), dtype))


def _attention_fit(theta: AttentionTheta, fixed: Inputs, labels, omega, hparams) -> AttentionTheta:
    """Not exact (the loss is not convex in A): the weighted aggregator's exact fit with uniform
    trust (Newton), then L-BFGS on every parameter from there."""
    w, b = fit_logistic(fixed.R_hat - 0.5, labels, omega, hparams.agg_l2, theta.w, theta.b)
    start = AttentionTheta(w=w, b=b, A=jnp.zeros_like(theta.A), a=jnp.zeros_like(theta.a))
    return _lbfgs_fit(attention, start, fixed, labels, omega, hparams, n_steps=300)


attention = register(
    Aggregator(
        name="attention",
        init=_attention_init,
        logits=_attention_logits,
        penalty=lambda theta: jnp.sum(theta.w**2) + jnp.sum(theta.A**2) + jnp.sum(theta.a**2),
        exact_fit=_attention_fit,
        from_linear=_attention_from_linear,
        description=(
            "sigmoid(m sum_u alpha_ui w_u (r_ui - 1/2) + b), alpha_ui = softmax_u(x_u^T A y_i + a_u): "
            "per-instance trust from the latent factors; A = 0, a = 0 is 'weighted'"
        ),
    )
)
