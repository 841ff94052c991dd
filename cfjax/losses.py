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

**The fused reconstruction term.** The weighted squared error is memory-bound: written as
``sum(C * (R - X^T Y)**2)`` and differentiated by autodiff, it makes several passes over (m, n)
arrays per gradient (X^T Y, the residual, its cotangent, each written and read again), 400 MB
each at (100, 1e6) in float32. `weighted_squared_error` has a hand-written VJP instead: in one
loop over blocks of columns it forms the block's residual E_b = C_b (R_b - X^T Y_b) once, while
the block is in cache, and builds both factor gradients from it with GEMMs
(dX = -2 Y E^T, accumulated; dY_b = -2 X E_b), so R and C are read once per gradient and no
(m, n) temporary is written. With a linear aggregator (weighted, prior) the supervised term
needs no reconstruction either: its logits w^T X^T Y + b are formed as (X w)^T Y + b
(`aggregators.logits(..., from_factors=True)`). An aggregator that reads the reconstruction
itself (mean) gets the plain expression: X^T Y is then formed once for both parts, which is
what autodiff of the plain expression already does best.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from cfjax import aggregators
from cfjax.structs import Config, Hparams, LossParts, Params, Problem

__all__ = [
    "class_counts",
    "class_weights",
    "cross_entropy",
    "loss",
    "loss_parts",
    "per_class_weights",
    "reconstruct",
    "reconstruction_parts",
    "softmax_cross_entropy",
    "supervised_cross_entropy",
    "supervised_parts",
    "supervised_weights",
    "weighted_squared_error",
]

#: Bytes of one (m, block) slab of R that a block of `weighted_squared_error` aims at: the
#: block's R, C, reconstruction and residual (4 such slabs) then stay in the 32 MB L3 cache of
#: the machine it was tuned on, and a loop iteration is long enough that its overhead is noise
#: (blocks of 2048, 8192 and 32768 columns at (100, 1e6, 32) float32: 315, 241, 244 ms a
#: gradient; 541 ms unblocked).
BLOCK_BYTES = 4 * 2**20


def reconstruct(params: Params) -> Float[Array, "m n"]:
    """R_hat = X^T Y, shape (m, n)."""
    return params.X.T @ params.Y


def block_size(m: int, n: int, dtype=jnp.float32, backend: str | None = None) -> int:
    """Columns per block of `weighted_squared_error` for an (m, n) problem on `backend`
    (default: `jax.default_backend()`). Host arithmetic on shapes.

    On CPU, `BLOCK_BYTES` of R, rounded down to a multiple of 128, at least 128 and at most n.
    Elsewhere n (one block, no loop): on an H200 the CPU's 10368-column blocks made the value and
    gradient at (100, 1e6, 32) float32 2.3x slower than autodiff of the plain formula (3.2 against
    1.4 ms) and one block equal to it (1.5 ms); a GPU streams the unblocked passes at ~4 TB/s and
    loses more to the loop's small serial GEMMs than the passes cost.
    """
    if (backend or jax.default_backend()) != "cpu":
        return max(int(n), 1)
    block = BLOCK_BYTES // (max(m, 1) * np.dtype(dtype).itemsize) // 128 * 128
    return int(min(max(block, 128), max(n, 1)))


def _blocks(n: int, block: int) -> tuple[int, int]:
    """(number of whole blocks, columns left over): the loop runs the first, a last static
    slice the second, so no block is padded or overlaps another (sums must count each cell once)."""
    return n // block, n % block


def _sse_value(X, Y, R, C, block: int):
    """sum C (R - X^T Y)^2 by blocks of columns, value only (the primal without autodiff)."""
    n_blocks, rest = _blocks(R.shape[1], block)

    def block_sse(Y_b, R_b, C_b):
        resid = R_b - X.T @ Y_b
        return jnp.sum(C_b * resid * resid)

    def body(k, total):
        take = lambda A: jax.lax.dynamic_slice_in_dim(A, k * block, block, axis=1)
        return total + block_sse(take(Y), take(R), take(C))

    if n_blocks == 1 and not rest:  # one block: no loop (XLA fuses across it better)
        return block_sse(Y, R, C)
    total = jax.lax.fori_loop(0, n_blocks, body, jnp.zeros((), R.dtype)) if n_blocks else jnp.zeros((), R.dtype)
    if rest:
        start = n_blocks * block
        total = total + block_sse(Y[:, start:], R[:, start:], C[:, start:])
    return total


def _sse_value_and_grads(X, Y, R, C, block: int):
    """(sum C (R - X^T Y)^2, d/dX, d/dY) in one pass over R and C, by blocks of columns.

    Per block: E_b = C_b (R_b - X^T Y_b), the error sum(E_b (R_b - X^T Y_b)), dY_b = -2 X E_b
    and dX += -2 Y_b E_b^T; the (m, block) intermediates never leave the cache.
    """
    n_blocks, rest = _blocks(R.shape[1], block)
    contract_columns = (((1,), (1,)), ((), ()))  # Y_b E_b^T without transposing E_b in memory

    def block_terms(Y_b, R_b, C_b):
        resid = R_b - X.T @ Y_b
        E_b = C_b * resid
        return jnp.sum(E_b * resid), jax.lax.dot_general(Y_b, E_b, contract_columns), X @ E_b

    def body(k, carry):
        total, YEt, XE = carry
        start = k * block
        take = lambda A: jax.lax.dynamic_slice_in_dim(A, start, block, axis=1)
        sse_b, YEt_b, XE_b = block_terms(take(Y), take(R), take(C))
        return total + sse_b, YEt + YEt_b, jax.lax.dynamic_update_slice_in_dim(XE, XE_b, start, axis=1)

    if n_blocks == 1 and not rest:  # one block: no loop (XLA fuses across it better)
        total, YEt, XE = block_terms(Y, R, C)
        return total, -2.0 * YEt, -2.0 * XE
    carry = (jnp.zeros((), R.dtype), jnp.zeros(X.shape, R.dtype), jnp.zeros(Y.shape, R.dtype))
    total, YEt, XE = jax.lax.fori_loop(0, n_blocks, body, carry) if n_blocks else carry
    if rest:
        start = n_blocks * block
        sse_b, YEt_b, XE_b = block_terms(Y[:, start:], R[:, start:], C[:, start:])
        total, YEt = total + sse_b, YEt + YEt_b
        XE = jax.lax.dynamic_update_slice_in_dim(XE, XE_b, start, axis=1)
    return total, -2.0 * YEt, -2.0 * XE


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _fused_sse(X, Y, R, C, block):
    return _sse_value(X, Y, R, C, block)


def _fused_sse_fwd(X, Y, R, C, block):
    total, dX, dY = _sse_value_and_grads(X, Y, R, C, block)
    # The factor gradients are the residuals: (m + n) d numbers, not the (m, n) error.
    return total, (dX, dY, X, Y, R, C)


def _fused_sse_bwd(block, residuals, g):
    dX, dY, X, Y, R, C = residuals
    # Cotangents of R and C, for a caller that differentiates through the data (e.g. a learned
    # confidence): one unblocked pass, which jit removes as dead code when nobody reads them.
    resid = R - X.T @ Y
    return g * dX, g * dY, (2.0 * g) * C * resid, g * resid * resid


_fused_sse.defvjp(_fused_sse_fwd, _fused_sse_bwd)


def weighted_squared_error(
    X: Float[Array, "d m"],
    Y: Float[Array, "d n"],
    R: Float[Array, "m n"],
    C: Float[Array, "m n"],
    block: int | None = None,
) -> Float[Array, ""]:
    """sum_ui C_ui (R_ui - x_u^T y_i)^2, with a hand-written VJP that reads R and C once.

    Equals ``jnp.sum(C * (R - X.T @ Y) ** 2)`` and its autodiff gradients in X, Y, R and C (up to
    the order of the sums); see the module docstring for why it is fused. Works under jit, vmap
    and grad (reverse mode only: `jax.custom_vjp` has no forward-mode rule). Unobserved cells
    contribute nothing: their C is 0 and their R holds 0, never NaN (`Problem`).

    Args:
      X: (d, m), Y: (d, n) factors; R, C: (m, n) targets and confidences.
      block: static, columns per block; None: `block_size(m, n, dtype)` (cache-sized blocks on
        CPU, one block elsewhere).
    """
    m, n = R.shape
    block = block_size(m, n, R.dtype) if block is None else max(min(int(block), n), 1)
    return _fused_sse(X, Y, R, C, block)


def class_counts(problem: Problem, mask: Bool[ArrayLike, " n"]) -> Float[Array, " K"]:
    """The columns of each class among `mask` (K,) (binary: [negatives, positives]); integers,
    exact in floating point."""
    dtype = problem.R.dtype
    return problem.class_indicators().astype(dtype) @ jnp.asarray(mask).astype(dtype)


def per_class_weights(counts: Float[ArrayLike, " K"]) -> Float[Array, " K"]:
    """|L| / (K |L_k|): the weight of a column of class k given the class counts (K,), so each
    class carries 1/K of the total weight."""
    counts = jnp.asarray(counts)
    return jnp.sum(counts) / (counts.shape[0] * jnp.maximum(counts, 1.0))


def class_weights(problem: Problem, mask: Bool[ArrayLike, " n"],
                  counts: Float[ArrayLike, " K"] | None = None) -> Float[Array, " n"]:
    """Inverse class-frequency weights omega (n,) over `mask`, 0 outside it.

    omega_i = |L| / (K |L_{y_i}|), so each class carries 1/K of the total weight (K = 2: half).
    `counts`: the class counts behind them (default `class_counts(problem, mask)`; a minibatch
    passes the counts of every column).
    """
    dtype = problem.R.dtype
    counts = class_counts(problem, mask) if counts is None else counts
    return mask.astype(dtype) * (per_class_weights(counts) @ problem.class_indicators().astype(dtype))


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


def softmax_cross_entropy(
    labels: Real[ArrayLike, "K n"],
    logits: Float[ArrayLike, "K n"],
    focal_gamma: Real[ArrayLike, ""],
) -> Float[Array, " n"]:
    """Per-column (focal) K-class cross-entropy from logits (K, n) and one-hot labels (K, n).

    -log p_t times (1 - p_t)^gamma, with log(1 - p_t) the log-sum-exp of the other classes'
    log-probabilities: finite for every finite logit, as the binary `cross_entropy` (whose
    K = 2 case this is). A column with no label (all-zero one-hot) gives 0.
    """
    logp = jax.nn.log_softmax(logits, axis=0)
    truth = jnp.asarray(labels) > 0.5
    nll = -jnp.sum(jnp.where(truth, logp, 0.0), axis=0)
    log_rest = jax.nn.logsumexp(jnp.where(truth, -jnp.inf, logp), axis=0)  # log(1 - p_t)
    return jnp.exp(focal_gamma * log_rest) * nll


def supervised_cross_entropy(
    problem: Problem, logits: Float[Array, "*K n"], focal_gamma: Real[ArrayLike, ""]
) -> Float[Array, " n"]:
    """Per-column cross-entropy of the problem's labels under `logits`: (n,) logits and the binary
    `cross_entropy`, or (K, n) logits and `softmax_cross_entropy` for a K-class problem."""
    if problem.n_classes == 2:
        return cross_entropy(problem.labels, logits, focal_gamma)
    return softmax_cross_entropy(problem.labels, logits, focal_gamma)


def reconstruction_parts(
    params: Params, problem: Problem, hparams: Hparams, R_hat: Float[Array, "m n"] | None = None
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(normalised L_recon, un-normalised sum) for the problem's (effective) confidence C.

    `R_hat`: X^T Y if the caller already has it (it must equal `reconstruct(params)`): the
    error is then the plain expression on it. Without it, the fused `weighted_squared_error`,
    which never forms X^T Y in full.
    """
    if R_hat is None:
        error = weighted_squared_error(params.X, params.Y, problem.R, problem.C)
    else:
        error = jnp.sum(problem.C * (problem.R - R_hat) ** 2)
    penalty = hparams.lam * (jnp.sum(params.X**2) + jnp.sum(params.Y**2))
    total = error + penalty
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
    logits = aggregators.logits(params, config, observed=problem.observed, R_hat=R_hat, from_factors=True)
    omega = supervised_weights(problem, config, mask)
    ce_sum = jnp.sum(omega * supervised_cross_entropy(problem, logits, hparams.focal_gamma))
    sup = ce_sum / jnp.maximum(jnp.sum(omega), 1e-30) + hparams.agg_l2 * aggregators.penalty(agg, params.theta)
    return sup, ce_sum


def loss_parts(params: Params, problem: Problem, hparams: Hparams, config: Config) -> LossParts:
    """The combined objective and its parts (see the module docstring).

    With a linear aggregator neither part forms X^T Y in full (the fused reconstruction term and
    logits from the factors); otherwise X^T Y is formed once for both parts.
    """
    # One X^T Y for both parts when the aggregator reads it: XLA does not merge two (m, n) GEMMs
    # and their transposes in the backward pass, which made a joint step 1.3x slower at
    # (100, 1e6, 32).
    R_hat = None if aggregators.get(config.aggregator).linear is not None else reconstruct(params)
    recon, recon_sum = reconstruction_parts(params, problem, hparams, R_hat)
    sup, sup_sum = supervised_parts(params, problem, hparams, config, R_hat=R_hat)
    total = hparams.rho * recon + (1.0 - hparams.rho) * sup
    return LossParts(total=total, recon=recon, sup=sup, recon_sum=recon_sum, sup_sum=sup_sum)


def loss(params: Params, problem: Problem, hparams: Hparams, config: Config) -> Float[Array, ""]:
    """The scalar L = rho * L_recon + (1 - rho) * L_sup, differentiable in params and hparams."""
    return loss_parts(params, problem, hparams, config).total
