"""The method protocol and its registry: a training method is a few pure functions.

In the spirit of optax's `(init, update)` pair, a method is

* ``init(key, problem, hparams, config, params=None) -> state``: its starting state, from
  `params` when given (a warm start, e.g. from `cfjax.io.load`), else from its own
  initialisation (`initial_params`);
* ``step(state, problem, hparams, config) -> state``: one iteration (an ALS sweep, an MM sweep,
  an optimizer step);
* ``params(state) -> Params``: the current iterate, on which the history is evaluated;

plus optional hooks: ``finalize(state, problem, hparams, config) -> Params`` (what the fit
returns when that is not the current iterate: two_stage's exact aggregator, joint's best
validation iterate), ``stop(state, config) -> bool`` (early stopping), ``converges(config)``
(whether the loss-change tolerance may stop the loop), ``hparams_of(hparams)`` (hyperparameters
the method fixes, e.g. MM-ALS's focal_gamma = 0) and ``check_config(config)`` (host-side
validation of the options it reads); ``batches`` says whether it trains on batches of columns
(`Config.options` ``batch_size``: fold-in joint, `cfjax.solvers.minibatch`); every other method
refuses that option, as its step needs every column at once; ``multiclass`` says whether it
takes K-class problems (`cfjax.Problem`'s K-class layout). One driver (`cfjax.solvers.driver`) runs every such
method: the scan, the history, convergence, early stopping, warm starts, progress and
checkpoints.

A method that is not an iteration (`auto`, a cross-validated choice among other methods)
supplies ``fit(key, problem, hparams, config) -> FitResult`` instead and no init/step, and
optionally ``fit_with_progress`` (the same result, driven from the host with a progress bar).

`problem` is always the prepared problem (space and confidence applied by the driver).
`register` adds a method; the registry `METHODS` is the only list of method names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cfjax import aggregators
from cfjax.structs import Config, FitResult, Hparams, Params, Problem

__all__ = ["METHODS", "SVD_GRAM_CELLS", "Method", "get", "gram_factors", "initial_params", "leading_factors",
           "register"]


def _always(config: Config) -> bool:
    return True


class Method(NamedTuple):
    """A registered training method (see the module docstring for each function's contract).

    `defaults` are the `Hparams` values the method is run with unless told otherwise
    (`hparams()`); `cfjax.fit(..., hparams=None)`, the command, the scikit-learn estimator,
    `cfjax.sweep.grid(method=...)` and the benchmark all start from them.
    """

    name: str
    init: Callable[..., Any] | None = None
    step: Callable[..., Any] | None = None
    params: Callable[[Any], Params] = lambda state: state
    finalize: Callable[..., Params] | None = None
    stop: Callable[[Any, Config], jax.Array] | None = None
    converges: Callable[[Config], bool] = _always
    hparams_of: Callable[[Hparams], Hparams] | None = None
    check_config: Callable[[Config], None] | None = None
    fit: Callable[..., FitResult] | None = None
    fit_with_progress: Callable[..., FitResult] | None = None
    description: str = ""
    uses_labels: bool = True
    defaults: tuple = ()
    batches: bool = False
    multiclass: bool = False

    def hparams(self, **overrides: Any) -> Hparams:
        """`Hparams.create` with this method's defaults, then `overrides`."""
        return Hparams.create(**{**dict(self.defaults), **overrides})


_REGISTRY: dict[str, Method] = {}
METHODS = _REGISTRY  # the registry: name -> Method, in registration order


def register(method: Method, *, replace: bool = False) -> Method:
    """Adds `method` to the registry under its name; refuses to shadow one unless `replace`."""
    if not isinstance(method, Method):
        raise ValueError(f"method: expected cfjax.solvers.Method, got {type(method).__name__}")
    if method.fit is None and (method.init is None or method.step is None):
        raise ValueError(f"method {method.name!r}: give init and step (an iteration) or fit (a pipeline)")
    if method.name in _REGISTRY and not replace:
        raise ValueError(f"method: {method.name!r} is registered already (pass replace=True)")
    _REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    if name not in _REGISTRY:
        raise ValueError(f"method: unknown {name!r}; choose from {sorted(_REGISTRY)}")
    return _REGISTRY[name]


#: Above this many cells of R the "svd" start takes the leading factors from the Gram matrix of
#: the shorter side: LAPACK's thin SVD of a 100 x 1e6 matrix took 7.0 s on 2 cores, 1.77x ten
#: joint steps; the Gram route 0.21 s. Below it (every panel of the benchmarks) the exact SVD.
SVD_GRAM_CELLS = 1 << 22


def leading_factors(A: jax.Array, d: int, gram: bool = False) -> tuple[jax.Array, jax.Array]:
    """(X, Y) = (sqrt(S_d) U_d^T, sqrt(S_d) V_d^T) of the d leading singular triplets of A (m, n).

    `gram` (static): from the eigendecomposition of the Gram matrix of the shorter side (A A^T
    when m <= n) instead of the thin SVD; the same factors up to signs and rounding (the Gram
    squares the condition number, which a starting point can afford). Components below the
    Gram's resolution, 10 sqrt(eps) of the largest singular value, get zero factors.
    """
    if not gram:
        U, S, Vt = jnp.linalg.svd(A, full_matrices=False)
        root = jnp.sqrt(S[:d])
        return root[:, None] * U[:, :d].T, root[:, None] * Vt[:d]
    wide = A.shape[0] <= A.shape[1]
    B = A if wide else A.T
    short, V, inverse_root = gram_factors(jnp.matmul(B, B.T, precision=jax.lax.Precision.HIGHEST), d)
    long = inverse_root[:, None] * jnp.matmul(V.T, B, precision=jax.lax.Precision.HIGHEST)  # sqrt(S) V^T
    return (short, long) if wide else (long, short)


def gram_factors(G: jax.Array, d: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(sqrt(S_d) U_d^T, U_d, 1 / sqrt(S_d)) from the Gram G = B B^T (k, k) of the shorter side B
    of a matrix: its d leading eigenvectors U_d and singular values S_d = sqrt(eigenvalues).
    Components below the Gram's resolution get zero factors (see `leading_factors`). The
    out-of-core fit (`cfjax.stream`) accumulates G over blocks of columns and starts from it."""
    w, V = jnp.linalg.eigh(G)
    w, V = w[::-1][:d], V[:, ::-1][:, :d]  # descending
    S = jnp.sqrt(jnp.maximum(w, 0.0))
    # the Gram route resolves singular values down to ~sqrt(eps) of the largest; below, noise
    positive = S > 10.0 * jnp.sqrt(jnp.finfo(G.dtype).eps) * S[0]
    root = jnp.where(positive, jnp.sqrt(S), 0.0)
    inverse_root = jnp.where(positive, 1.0 / jnp.where(positive, root, 1.0), 0.0)
    return root[:, None] * V.T, V, inverse_root  # sqrt(S) U^T for the shorter side


def initial_params(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> Params:
    """The default starting point of every factorization method.

    "svd" (default): X = sqrt(S_d) U_d^T, Y = sqrt(S_d) V_d^T from the truncated SVD of C * R
    (unobserved cells are 0; `leading_factors`, through the Gram matrix above `SVD_GRAM_CELLS`
    cells), deterministic and close to an ALS fixed point, so the iteration
    budget goes to what the objective adds, not to leaving a random start. "random": keyed
    N(0, init_scale^2) entries. The aggregator starts from its own `init`.
    """
    m, n = problem.R.shape  # m K rows for K classes: the factorization does not see the class axis
    d = config.latent_dim
    dtype = problem.R.dtype
    if config.init == "svd":
        X, Y = leading_factors(problem.C * problem.R, d, gram=m * n > SVD_GRAM_CELLS)
    elif config.init == "random":
        kx, ky = jax.random.split(key)
        X = config.init_scale * jax.random.normal(kx, (d, m), dtype)
        Y = config.init_scale * jax.random.normal(ky, (d, n), dtype)
    else:
        raise ValueError(f"config.init: unknown {config.init!r}; choose 'svd' or 'random'")
    # fold_in keeps the factors' draws what they were before aggregators took a key
    theta = aggregators.initial_theta(config.aggregator, jax.random.fold_in(key, 1), problem.n_classifiers, d,
                                      hparams, dtype, n_classes=problem.n_classes)
    return Params(X=X.astype(dtype), Y=Y.astype(dtype), theta=theta)
