"""Weighted L2 logistic regression by guarded Newton steps, in jnp (jit- and vmap-friendly).

Used for the stacking baseline and for the exact aggregator fit of the two-stage method:
minimise  sum_i omega_i CE(y_i, w^T f_i + b) / sum_i omega_i + l2 ||w||^2  (b unpenalised).
The loss is convex; each step solves the Newton system, then keeps the best of the step sizes
1, 1/2, 1/4, 1/8 and 0, so the loss never rises and (near-)separable data cannot diverge.

`fit_multinomial` is the K-class (softmax) counterpart, by the same guarded Newton steps, for
the K-class stacking baseline (`cfjax.multiclass.stacking`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

from cfjax.compilation import jit

__all__ = ["NEWTON_MAX_PARAMETERS", "fit_logistic", "fit_logistic_prior", "fit_logistic_prior_nonnegative",
           "fit_multinomial", "logistic_loss", "multinomial_loss", "multinomial_penalty",
           "multinomial_proba"]

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
    def newton(theta, _):
        return _newton_step(objective, grad_and_hessian, theta)[0], None

    theta, _ = jax.lax.scan(newton, theta, None, length=n_steps)
    return theta


def _newton_step(objective, grad_and_hessian, theta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(theta, objective there) after one guarded Newton step: the best of the step sizes
    `_STEP_SIZES` along the Newton direction, a non-finite candidate never chosen."""
    steps = jnp.asarray(_STEP_SIZES, theta.dtype)
    grad, H = grad_and_hessian(theta)
    delta = jnp.linalg.solve(H, grad)
    candidates = theta[None, :] - steps[:, None] * delta[None, :]
    losses = jax.vmap(objective)(candidates)
    losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
    best = jnp.argmin(losses)
    return candidates[best], losses[best]


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
    a precision that is singular or weak along a direction (e.g. Lambda = (I - c c^T) / tau + 1e-2
    c c^T, the prior of `cfjax.aggregators.prior`) leaves the scale along it mostly to the data.
    Same guarded Newton steps as `fit_logistic`.

    Args:
      F: (p, n) features; y, weights: (n,), weights 0 on columns to ignore.
      precision: (p, p) symmetric positive semi-definite Lambda. Traced.
      bias_precision: epsilon, a tiny ridge on b (keeps the system definite).
    """
    theta = _prior_newton(F, y, weights, precision, w0, b0, bias_precision, n_steps, None)
    return theta[:-1], theta[-1]


def _prior_newton(F, y, weights, precision, w0, b0, bias_precision, n_steps, free):
    """`fit_logistic_prior`'s guarded Newton steps from (w0, b0) (None: 0) with the weights
    outside `free` (p,) bool (None: all free) held at 0. Returns theta (p + 1,): w, then b."""
    p = F.shape[0]
    dtype = F.dtype
    w = jnp.zeros((p,), dtype) if w0 is None else jnp.asarray(w0, dtype)
    b = jnp.zeros((), dtype) if b0 is None else jnp.asarray(b0, dtype)
    theta = jnp.concatenate([w, b[None]])
    Fa = jnp.concatenate([F, jnp.ones((1, F.shape[1]), dtype)], axis=0)
    prior = jnp.zeros((p + 1, p + 1), dtype).at[:p, :p].set(precision).at[p, p].set(bias_precision)
    moving = jnp.ones((p + 1,), bool) if free is None else jnp.concatenate([free, jnp.ones((1,), bool)])
    theta = jnp.where(moving, theta, 0.0)

    def objective(theta):
        s = theta[:p] @ F + theta[p]
        ce = -jax.nn.log_sigmoid(jnp.where(y > 0.5, s, -s))
        return jnp.sum(weights * ce) + 0.5 * theta @ prior @ theta

    def grad_and_hessian(theta):
        prob = jax.nn.sigmoid(theta[:p] @ F + theta[p])
        gradient = Fa @ (weights * (prob - y)) + prior @ theta
        curv = weights * prob * (1.0 - prob)
        H = (Fa * curv[None, :]) @ Fa.T + prior + 1e-8 * jnp.max(curv) * jnp.eye(p + 1, dtype=dtype)
        # A held weight: its row and column of the Newton system are the identity's, its gradient
        # 0, so no step moves it.
        both = moving[:, None] & moving[None, :]
        H = jnp.where(both, H, jnp.eye(p + 1, dtype=dtype))
        return jnp.where(moving, gradient, 0.0), H

    return _guarded_newton(objective, grad_and_hessian, theta, n_steps)


def fit_logistic_prior_nonnegative(
    F: jax.Array,
    y: jax.Array,
    weights: jax.Array,
    precision: jax.Array,
    bias_precision: float | jax.Array = 1e-8,
    n_steps: int = 30,
) -> tuple[jax.Array, jax.Array]:
    r"""`fit_logistic_prior` with w >= 0 by backward elimination (b free).

    Non-negative stacking weights (Breiman 1996, "Stacked regressions"): no base classifier's
    probability of the positive class may count against it. Each round refits the free weights
    by guarded Newton steps with the others held at 0, then holds every free weight that came out
    negative; it stops when none does (at most p + 1 rounds). A held weight is never freed
    again, so this is not the constrained optimum in general, on purpose: where the labeled
    columns weigh every classifier negatively, it holds them all at once (the labels contradict
    the whole ensemble, so trust none of them), where the exact optimum would keep whichever
    classifier the few labels happen to favour (docs/results/scarce_holdout.md). Where the
    unconstrained fit has no negative weight, it is that fit. Returns (w, b), w >= 0 (0 where
    held) and the free weights the MAP of the objective restricted to them. Traced; vmappable (a
    `lax.while_loop`).
    """
    p = F.shape[0]

    def body(state):
        free, _, _ = state
        theta = _prior_newton(F, y, weights, precision, None, None, bias_precision, n_steps, free)
        negative = free & (theta[:p] < 0)
        return free & ~negative, theta, negative.any()

    start = (jnp.ones((p,), bool), jnp.zeros((p + 1,), F.dtype), jnp.asarray(True))
    free, theta, _ = jax.lax.while_loop(lambda state: state[2], body, start)
    return jnp.where(free, theta[:p], 0.0), theta[p]


def multinomial_proba(
    W: Float[ArrayLike, "K p"],
    b: Float[ArrayLike, " K"],
    F: Float[ArrayLike, "p n"],
    classes: Bool[ArrayLike, " K"] | None = None,
) -> Float[Array, "K n"]:
    """softmax_k(W_k^T f_i + b_k) (K, n); classes outside `classes` (K,) get probability 0."""
    return jax.nn.softmax(_multinomial_logits(W, b, F, classes), axis=0)


def _multinomial_logits(W, b, F, classes) -> jax.Array:
    """W F + b (K, n), -inf on the rows of classes outside `classes` (None: every class)."""
    z = W @ F + b[:, None]
    if classes is not None:
        z = jnp.where(jnp.asarray(classes)[:, None], z, -jnp.inf)
    return z


def multinomial_loss(
    W: Float[ArrayLike, "K p"],
    b: Float[ArrayLike, " K"],
    F: Float[ArrayLike, "p n"],
    y: Int[ArrayLike, " n"],
    omega: Real[ArrayLike, " n"],
    l2: Real[ArrayLike, ""],
    classes: Bool[ArrayLike, " K"] | None = None,
    center: Float[ArrayLike, "K p"] | None = None,
    along: Real[ArrayLike, ""] = 0.0,
) -> Float[Array, ""]:
    """sum_i omega_i CE(y_i, softmax(W f_i + b)) / sum_i omega_i + l2 ||W||_F^2 (b unpenalised).

    F: (p, n); y: (n,) int in 0..K-1 (read where omega > 0); omega: (n,); `classes` as in
    `multinomial_proba`. With `center` (K, p), the penalty is l2 (||W||^2 - (1 - along) <W, c>^2)
    for the unit direction c of `center`: deviations from the line through it are penalised, the
    scale along it only by `along` times as much (`multinomial_penalty`).
    """
    logp = jax.nn.log_softmax(_multinomial_logits(W, b, F, classes), axis=0)
    index = jnp.clip(jnp.asarray(y).astype(jnp.int32), 0, W.shape[0] - 1)
    ce = -jnp.take_along_axis(logp, index[None, :], axis=0)[0]
    ce = jnp.where(omega > 0, ce, 0.0)  # unread columns: their label may be -1
    return jnp.sum(omega * ce) / jnp.maximum(jnp.sum(omega), 1e-30) + l2 * multinomial_penalty(W, center, along)


def multinomial_penalty(W: jax.Array, center: jax.Array | None = None, along: Real[ArrayLike, ""] = 0.0) -> jax.Array:
    """||W||_F^2, or with `center`: ||W||^2 - (1 - along) <W, c>^2 for its unit direction c (no
    gradient through c): the squared distance from the line through `center`, plus `along` times
    the squared length along it."""
    if center is None:
        return jnp.sum(W**2)
    c = jax.lax.stop_gradient(center / jnp.linalg.norm(center))
    return jnp.sum(W**2) - (1.0 - along) * jnp.sum(W * c) ** 2


#: The largest multinomial problem (K (p + 1) parameters) fitted by Newton steps; beyond it
#: (stacking on KEEL letter: 6110) each Newton system costs minutes, and L-BFGS takes over.
NEWTON_MAX_PARAMETERS = 2000


def fit_multinomial(
    F: Float[ArrayLike, "p n"],
    y: Int[ArrayLike, " n"],
    omega: Real[ArrayLike, " n"],
    l2: Real[ArrayLike, ""],
    n_classes: int,
    classes: Bool[ArrayLike, " K"] | None = None,
    n_steps: int = 30,
    solver: str = "newton",
    tol: Real[ArrayLike, ""] = 1e-10,
    center: Float[ArrayLike, "K p"] | None = None,
    along: Real[ArrayLike, ""] = 0.0,
) -> tuple[Float[Array, "K p"], Float[Array, " K"]]:
    r"""Multinomial (softmax) L2 logistic regression: minimises `multinomial_loss` over (W, b).

    The symmetric parametrisation of scikit-learn's multinomial `LogisticRegression`: one
    weight row and intercept per class, every row penalised, so with l2 = 1 / (2 C sum omega)
    the minimiser is sklearn's `LogisticRegression(C)` fitted on the columns with omega = 1
    (K >= 3; for K = 2 sklearn fits the binary model instead; this fit at C is the binary one
    at 2 C, with w = W_1 - W_0). Guarded Newton steps from zero as `fit_logistic`: the Hessian of
    the cross-entropy is sum_i omega_i (diag(p_i) - p_i p_i^T) kron x_i x_i^T (x_i = [f_i; 1]),
    (K (p + 1))^2 entries, so this is for the few-thousand-parameter problems of stacking (KEEL
    letter, K = 26 on 9 K features, is beyond it). The intercepts are defined up to a common
    shift, along which the gradient is always 0: from zero, sum_k b_k stays 0, as in sklearn's
    L-BFGS, so both return the same b; a 1e-8 ridge on the Newton system keeps it definite.

    Args:
      F: (p, n) features. y: (n,) int labels in 0..K-1, read where omega > 0.
      omega: (n,) weights, 0 on columns to ignore. Traced.
      l2: penalty on ||W||_F^2 (traced).
      n_classes: K (static).
      classes: (K,) bool, the classes the model may predict (traced); default all. A class
        outside it has its logit fixed at -inf (probability 0, W_k = 0, b_k = 0): scikit-learn's
        fit on the labels seen, which never predicts an unseen class.
      n_steps: the most Newton steps (static); the loop ends earlier, at the first step that
        does not lower the loss (in float64 about 6-10 steps on stacking problems). With
        "lbfgs", the most L-BFGS steps is 100 n_steps.
      solver: "newton" (default) or "lbfgs" (static): optax's L-BFGS with its zoom line search,
        stopping when the gradient's norm falls below `tol`; for problems whose Newton system
        (K (p + 1))^2 is too large (KEEL letter: 6110^2).
      tol: the gradient norm at which "lbfgs" stops (traced; unused by "newton").
      center, along: the penalty towards a line instead of 0 (`multinomial_loss`); traced. The
        K-class `prior` aggregator's fit (centred on averaging).

    Returns:
      W: (K, p), b: (K,).
    """
    F = jnp.asarray(F)
    p, n = F.shape
    K = n_classes
    dtype = F.dtype
    q = p + 1
    present = jnp.ones((K,), bool) if classes is None else jnp.asarray(classes, bool)
    omega = jnp.asarray(omega, dtype)
    w = omega / jnp.maximum(jnp.sum(omega), 1e-30)
    Y = jax.nn.one_hot(jnp.where(omega > 0, jnp.asarray(y), -1), K, dtype=dtype, axis=0)  # (K, n)
    Fa = jnp.concatenate([F, jnp.ones((1, n), dtype)], axis=0)  # (q, n)
    is_weight = jnp.concatenate([jnp.ones((p,), dtype), jnp.zeros((1,), dtype)])
    penalty = jnp.tile(2.0 * l2 * is_weight + 1e-8 * (1.0 - is_weight), K)  # (K q,)
    eye = jnp.eye(K, dtype=dtype)

    def unpack(theta):
        theta = theta.reshape(K, q)
        return theta[:, :p], theta[:, p]

    # the line of `center` in theta's layout (zero on the intercepts), unit length
    line = jnp.zeros((K * q,), dtype) if center is None else jnp.concatenate(
        [jnp.asarray(center, dtype), jnp.zeros((K, 1), dtype)], axis=1).reshape(-1)
    line = line / jnp.maximum(jnp.linalg.norm(line), 1e-30)
    toward = 0.0 if center is None else 1.0 - jnp.asarray(along, dtype)

    def grad_and_hessian(theta):
        W, b = unpack(theta)
        P = multinomial_proba(W, b, F, present)  # (K, n)
        grad = ((P - Y) * w[None, :]) @ Fa.T  # (K, q)
        grad = grad.reshape(-1) + 2.0 * l2 * (theta * jnp.tile(is_weight, K) - toward * (line @ theta) * line)
        WP = P * w[None, :]
        diag_blocks = jnp.einsum("an,kn,bn->kab", Fa, WP, Fa)  # (K, q, q)
        Z = (P[:, None, :] * Fa[None, :, :]).reshape(K * q, n)
        H = jnp.einsum("kab,kl->kalb", diag_blocks, eye).reshape(K * q, K * q) - (Z * w[None, :]) @ Z.T
        scale = jnp.max(jnp.diagonal(H))
        H = H - 2.0 * l2 * toward * jnp.outer(line, line)
        return grad, H + jnp.diag(penalty + 1e-8 * scale)

    def objective(theta):
        return multinomial_loss(*unpack(theta), F, y, omega, l2, present, center, along)

    if solver == "lbfgs":
        return unpack(_lbfgs(objective, jnp.zeros((K * q,), dtype), 100 * n_steps, tol))
    if solver != "newton":
        raise ValueError(f"solver: expected 'newton' or 'lbfgs', got {solver!r}")

    def newton(carry):
        theta, loss, i, _ = carry
        theta, new_loss = _newton_step(objective, grad_and_hessian, theta)
        return theta, new_loss, i + 1, new_loss < loss

    def moving(carry):
        _, _, i, improved = carry
        return improved & (i < n_steps)

    theta0 = jnp.zeros((K * q,), dtype)
    # Stops once a step no longer lowers the loss (machine precision: Newton converges
    # quadratically) or after n_steps.
    theta, _, _, _ = jax.lax.while_loop(
        moving, newton, (theta0, objective(theta0), jnp.zeros((), jnp.int32), jnp.ones((), bool))
    )
    return unpack(theta)


def _lbfgs(objective, theta: jax.Array, max_steps: int, tol) -> jax.Array:
    """optax's L-BFGS (zoom line search) on a smooth objective, until ||grad|| < tol or
    `max_steps`; the loop of optax's documentation, in a `lax.while_loop`."""
    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry):
        theta, state = carry
        value, grad = value_and_grad(theta, state=state)
        updates, state = optimizer.update(grad, state, theta, value=value, grad=grad, value_fn=objective)
        return optax.apply_updates(theta, updates), state

    def moving(carry):
        _, state = carry
        count = optax.tree_utils.tree_get(state, "count")
        grad = optax.tree_utils.tree_get(state, "grad")
        return (count == 0) | ((count < max_steps) & (optax.tree_utils.tree_norm(grad) >= tol))

    theta, _ = jax.lax.while_loop(moving, step, (theta, optimizer.init(theta)))
    return theta


# Jitted here so that eager calls compile once per shape, not once per call (the lax loops
# inside close over per-call functions; why that matters: tests/test_compiles_once.py).
fit_logistic = jit(fit_logistic, static_argnames="n_steps")
fit_logistic_prior = jit(fit_logistic_prior, static_argnames="n_steps")
fit_multinomial = jit(fit_multinomial, static_argnames=("n_classes", "n_steps", "solver"))
