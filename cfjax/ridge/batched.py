r"""Batched weighted ridge solves: Grams and right-hand sides by GEMMs, over chunks of instances.

For fixed factors F (d, k), targets R (rows, k) and confidences C (rows, k), row j solves

.. math::

    (F \operatorname{diag}(C_j) F^\top + \lambda I + s_j v v^\top) \, z_j = F (C_j \odot R_j) + e_j

where the optional rank-one term (scale s: (rows,), vector v: (d,)) and extra right-hand side
e: (d, rows) let MM-ALS add the quadratic majoriser of the supervised loss; for K classes the
term has rank r: V S_j V^T with V (d, r) and S_j (r, r) (scale (r, r, rows)). Without the extras,
`update_X` and `update_Y` are exact block minimisations of
sum_ui c_ui (r_ui - x_u^T y_i)^2 + lambda (||X||^2 + ||Y||^2) (`objective`); dividing by sum C
(`cfjax.losses`) does not move the minimiser, so `lam` is the lambda of the normalised objective.

**How.** No loop over rows: the packed Grams of all rows are one GEMM per chunk (the packed
lower triangle of the Khatri-Rao product, row q = f_a * f_b for the q-th pair a >= b, times
C^T), the right-hand sides another (F (C * R)^T), and the d x d systems are solved batch-last
by `cfjax.ridge.cholesky`.

**Memory.** `chunk_size` counts instances (the n columns of R). `update_Y` solves instances in
chunks under `lax.map`; `update_X` (and `gram_packed`) sum the per-chunk contributions under
`lax.scan`, so the (d(d+1)/2, n) Khatri-Rao matrix is never formed. No input is padded or
copied: the last chunk is shifted back to end at n, and the instances it shares with the
previous chunk get zero weight in a sum and are dropped from a solve. ``chunk_size=0`` picks
`default_chunk_size` (one chunk's packed Grams near `CHUNK_BYTES`, small enough to stay in
cache); a `chunk_size` >= n means one chunk. Chunk sizes change results only by float
reassociation.

**Singular systems.** With lam > 0 every system is positive definite and nothing special
happens. With lam = 0 (or far below the data scale), a row whose Gram is singular (fewer
observed cells than d) gets the jitter of `cfjax.ridge.cholesky` only where needed: finite, a
least-squares fit of the observed cells, arbitrary along the Gram's null space.

Traced: F, R, C, lam and the extras (everything is vmappable over lam). Static: shapes,
`chunk_size`, `method`. Timings behind the defaults: `benchmarks/bench_als.py` and
`benchmarks/bench_speed.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Real

from cfjax.compilation import jit
from cfjax.ridge.cholesky import METHODS, jitter, packed_index, pairs, solve_packed, solve_shared

__all__ = [
    "CHUNK_BYTES",
    "als_sweep",
    "default_chunk_size",
    "gram_packed",
    "objective",
    "solve_rows",
    "update_X",
    "update_Y",
]

CHUNK_BYTES = 2 * 2**20
"""Target size of one chunk's packed Grams, (d(d+1)/2, chunk), for ``chunk_size=0`` on CPU."""

ACCELERATOR_CHUNK_BYTES = 256 * 2**20
"""The same off CPU: a GPU runs one chunk's GEMM and solves as a few large kernels, so a chunk
there is sized by memory, not by cache. With CPU-sized chunks (~1000 instances at d = 32) an
H200 spent 1.78 s in one ALS sweep at (100, 1e6, 32) looping over ~1000 chunks."""

_MIN_CHUNK, _MAX_CHUNK = 256, 16384

# Full precision for the Grams and right-hand sides: on accelerators the default matmul
# precision (TF32/bf16 passes) would lose most digits of the normal equations. Free on CPU.
_HIGHEST = lax.Precision.HIGHEST


def _khatri_rao_packed(F: jax.Array) -> jax.Array:
    """(d(d+1)/2, k): row q is f_a * f_b (element-wise over k) for the q-th pair a >= b."""
    a, b = pairs(F.shape[0])
    return F[a] * F[b]


def default_chunk_size(d: int, n: int, dtype=jnp.float32, backend: str | None = None) -> int:
    """The instance chunk that ``chunk_size=0`` uses for latent dimension d and n instances on
    `backend` (default: `jax.default_backend()`).

    On CPU: n itself (one chunk) when the packed Grams of all n instances fit in `CHUNK_BYTES`;
    otherwise CHUNK_BYTES / (d(d+1)/2 * itemsize) instances, rounded down to a multiple of
    128 and kept within [256, 16384]. Elsewhere the same with `ACCELERATOR_CHUNK_BYTES` and no
    upper limit. Pure host arithmetic on static shapes.
    """
    per_instance = d * (d + 1) // 2 * np.dtype(dtype).itemsize
    on_cpu = (backend or jax.default_backend()) == "cpu"
    budget = CHUNK_BYTES if on_cpu else ACCELERATOR_CHUNK_BYTES
    if n * per_instance <= budget:
        return max(int(n), 1)
    chunk = max((budget // per_instance) // 128 * 128, _MIN_CHUNK)
    return int(min(chunk, _MAX_CHUNK, n) if on_cpu else min(chunk, n))


def _resolve_chunk(chunk_size: int, d: int, n: int, dtype) -> int:
    if chunk_size == 0:
        return default_chunk_size(d, n, dtype)
    return max(min(int(chunk_size), n), 1)


def _chunk_starts(n: int, chunk: int) -> tuple[int, jax.Array]:
    """(number of chunks, their starts): chunk i starts at min(i chunk, n - chunk)."""
    n_chunks = -(-n // chunk)
    starts = np.minimum(np.arange(n_chunks) * chunk, n - chunk)
    return n_chunks, jnp.asarray(starts, jnp.int32)


def _reduce_over_instances(F, W, chunk_size, contributions):
    """Sum `contributions(F_c, W_c)` over chunks of the last axis of F (d, k) and of W.

    W is a tuple of (rows, k) arrays (C, and R where needed). The last chunk is shifted back
    to end at k; its columns already counted by the previous chunk are zeroed in every W,
    which removes them from any contribution that is linear in C.
    """
    d, k = F.shape
    chunk = _resolve_chunk(chunk_size, d, k, F.dtype)
    if chunk >= k:
        return contributions(F, W)
    n_chunks, starts = _chunk_starts(k, chunk)

    def body(acc, i):
        start = starts[i]
        keep = (start + jnp.arange(chunk)) >= i * chunk  # all True except in the last chunk
        F_c = lax.dynamic_slice_in_dim(F, start, chunk, axis=1)
        W_c = tuple(
            jnp.where(keep[None, :], lax.dynamic_slice_in_dim(w, start, chunk, axis=1), 0)
            for w in W
        )
        return jax.tree.map(jnp.add, acc, contributions(F_c, W_c)), None

    shapes = jax.eval_shape(contributions, F[:, :chunk], tuple(w[:, :chunk] for w in W))
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    acc, _ = lax.scan(body, zero, jnp.arange(n_chunks))
    return acc


def gram_packed(
    F: Float[ArrayLike, "d k"], C: Float[ArrayLike, "rows k"], chunk_size: int = 0
) -> Float[Array, "pairs rows"]:
    """Packed lower triangles of F diag(C_j) F^T for all rows j, by GEMMs.

    Args:
      F: (d, k) factors.
      C: (rows, k) confidences.
      chunk_size: static; the k axis is summed in chunks of this many (0: `default_chunk_size`;
        >= k: one GEMM), so the (d(d+1)/2, k) Khatri-Rao matrix is never formed whole.

    Returns:
      (d(d+1)/2, rows); entry (q, j) is sum_l C[j, l] F[a, l] F[b, l] for the q-th pair
      (a, b), a >= b, in row-major lower-triangle order (`np.tril_indices(d)`).
    """
    return _reduce_over_instances(
        F,
        (C,),
        chunk_size,
        lambda F_c, W_c: jnp.matmul(_khatri_rao_packed(F_c), W_c[0].T, precision=_HIGHEST),
    )


def _finish(G, rhs, lam, scale, vec, extra_rhs, method, shared: bool = False):
    """Z (d, rows) from packed Grams G (d(d+1)/2, rows) and right-hand sides (d, rows); with
    `shared` (static), G is (d(d+1)/2, 1), one Gram for every row (`solve_shared`)."""
    d = rhs.shape[0]
    dtype = G.dtype
    # A 0/1 mask over the packed entries rather than a scatter/gather on the diagonal: it
    # fuses into the elementwise work and stays cheap when lam is vmapped.
    on_diag = np.zeros(d * (d + 1) // 2)
    on_diag[[packed_index(a, a) for a in range(d)]] = 1.0
    G = G + lam * jnp.asarray(on_diag, dtype)[:, None]
    if scale is not None:
        a, c = pairs(d)
        if vec.ndim == 1:
            G = G + (vec[a] * vec[c])[:, None] * scale[None, :]
        else:  # rank r: V S_j V^T with S_j (r, r), one GEMM over the rows
            r = vec.shape[1]
            outer = (vec[a][:, :, None] * vec[c][:, None, :]).reshape(a.size, r * r)
            G = G + jnp.matmul(outer, scale.reshape(r * r, -1), precision=_HIGHEST)
    if extra_rhs is not None:
        rhs = rhs + extra_rhs
    mean_diag = jnp.matmul(jnp.asarray(on_diag / d, dtype), G, precision=_HIGHEST)
    floor = jitter(dtype) * mean_diag + jnp.finfo(dtype).tiny
    if shared:
        return solve_shared(G[:, 0], rhs, floor[0])
    return solve_packed(G, rhs, floor, method)


def _shared_weights(W: jax.Array, axis: int) -> jax.Array:
    """Whether every slice of W (a confidence) along `axis` is the same: then every row's Gram is
    the same matrix, factorised once (`solve_shared`). Complete data under uniform confidence
    (the default) is the common case; the check is one pass over W."""
    first = lax.slice_in_dim(W, 0, 1, axis=axis)
    return jnp.all(W == first)


def _solve_instances(F, Rt, Ct, lam, scale, vec, erhs, chunk_size, method):
    """Z (d, rows) with the batch axis last throughout: Rt, Ct are (k, rows).

    Chunks of the rows run under `lax.map`; each slices its columns of Rt and Ct (no copy of
    the inputs), and the last chunk is shifted back to end at `rows`.
    """
    d = F.shape[0]
    rows = Rt.shape[1]
    KR = _khatri_rao_packed(F)  # (d(d+1)/2, k), built once, shared by all chunks

    def one(R_c, C_c, scale_c, erhs_c):
        G = jnp.matmul(KR, C_c, precision=_HIGHEST)
        rhs = jnp.matmul(F, C_c * R_c, precision=_HIGHEST)
        return _finish(G, rhs, lam, scale_c, vec, erhs_c, method)

    def shared():
        G = jnp.matmul(KR, Ct[:, :1], precision=_HIGHEST)  # the one Gram
        rhs = jnp.matmul(F, Ct * Rt, precision=_HIGHEST)
        return _finish(G, rhs, lam, None, None, erhs, method, shared=True)

    if scale is None:  # rows differ only through C: one Gram when C's rows (batch-last: columns) agree
        return lax.cond(_shared_weights(Ct, axis=1), shared,
                        lambda: _solve_per_row(one, Rt, Ct, scale, erhs, d, rows, KR.dtype, chunk_size))
    return _solve_per_row(one, Rt, Ct, scale, erhs, d, rows, KR.dtype, chunk_size)


def _solve_per_row(one, Rt, Ct, scale, erhs, d, rows, dtype, chunk_size):
    """`one` on every row's system, in chunks of rows under `lax.map` (see `_solve_instances`)."""
    chunk = _resolve_chunk(chunk_size, d, rows, dtype)
    if chunk >= rows:
        return one(Rt, Ct, scale, erhs)
    n_chunks, starts = _chunk_starts(rows, chunk)

    def sliced(x, start):
        return None if x is None else lax.dynamic_slice_in_dim(x, start, chunk, axis=x.ndim - 1)

    def body(start):
        return one(sliced(Rt, start), sliced(Ct, start), sliced(scale, start), sliced(erhs, start))

    Z = lax.map(body, starts)  # (n_chunks, d, chunk)
    head = jnp.moveaxis(Z[:-1], 0, 1).reshape(d, (n_chunks - 1) * chunk)
    tail = Z[-1][:, n_chunks * chunk - rows :]  # the last chunk's columns not in `head`
    return jnp.concatenate([head, tail], axis=1)


def _check_matrix(name, x, ndim):
    if not hasattr(x, "shape") or len(x.shape) != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-d array, got shape {getattr(x, 'shape', None)}"
        )


def _check_solve_args(F, R, C, lam, scale, vec, erhs, chunk_size, method, batch_last=False):
    """Host-side checks shared by the entry points; R and C are (rows, k), or (k, rows) when
    `batch_last`."""
    _check_matrix("F", F, 2)
    _check_matrix("R", R, 2)
    _check_matrix("C", C, 2)
    d, k = F.shape
    rows_axis, k_axis = (1, 0) if batch_last else (0, 1)
    if R.shape[k_axis] != k:
        want = f"({k}, n)" if batch_last else f"(rows, {k})"
        raise ValueError(f"R: expected shape {want} to match F {F.shape}, got {R.shape}")
    if C.shape != R.shape:
        raise ValueError(f"C: expected the shape of R {R.shape}, got {C.shape}")
    rows = R.shape[rows_axis]
    if jnp.ndim(lam) != 0:
        raise ValueError(f"lam: expected a scalar, got shape {jnp.shape(lam)} (vmap for a grid)")
    if (scale is None) != (vec is None):
        raise ValueError("extra_gram_scale: must be given together with extra_gram_vec")
    if vec is not None and (len(vec.shape) not in (1, 2) or vec.shape[0] != d):
        raise ValueError(f"extra_gram_vec: expected shape ({d},) or ({d}, r), got {vec.shape}")
    if scale is not None:
        want = (rows,) if len(vec.shape) == 1 else (vec.shape[1], vec.shape[1], rows)
        if tuple(scale.shape) != want:
            raise ValueError(f"extra_gram_scale: expected shape {want} for extra_gram_vec of shape "
                             f"{tuple(vec.shape)}, got {scale.shape}")
    if erhs is not None and tuple(erhs.shape) != (d, rows):
        raise ValueError(f"extra_rhs: expected shape ({d}, {rows}), got {erhs.shape}")
    if (
        not isinstance(chunk_size, (int, np.integer))
        or isinstance(chunk_size, bool)
        or chunk_size < 0
    ):
        raise ValueError(f"chunk_size: expected an int >= 0, got {chunk_size!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def _as_dtype(F, R, C, lam, scale, vec, erhs):
    dtype = jnp.result_type(F, R, C)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    cast = lambda x: None if x is None else jnp.asarray(x, dtype)
    return dtype, tuple(cast(x) for x in (F, R, C, lam, scale, vec, erhs))


def solve_rows(
    F: Real[ArrayLike, "d k"],
    R: Real[ArrayLike, "rows k"],
    C: Real[ArrayLike, "rows k"],
    lam: Real[ArrayLike, ""],
    *,
    extra_gram_scale: Real[ArrayLike, "*rank_pair rows"] | None = None,
    extra_gram_vec: Real[ArrayLike, "d ..."] | None = None,
    extra_rhs: Real[ArrayLike, "d rows"] | None = None,
    chunk_size: int = 0,
    method: str = "auto",
) -> Float[Array, "d rows"]:
    r"""Solve every row's weighted ridge normal equations at once.

    For each row j:
    (F diag(C_j) F^T + lam I + s_j v v^T) z_j = F (C_j * R_j) + e_j.

    Args:
      F: (d, k) fixed factors. Traced.
      R: (rows, k) targets. Traced.
      C: (rows, k) confidences, >= 0; 0 means the cell is ignored. Traced.
      lam: scalar ridge, >= 0 (> 0 for a unique solution; see the module docstring).
        Traced: a new value never recompiles.
      extra_gram_scale: optional (rows,) s_j >= 0 of the rank-one Gram term, or (r, r, rows)
        positive semi-definite S_j of the rank-r term V S_j V^T. Traced.
      extra_gram_vec: optional (d,) v of the rank-one term, or (d, r) V of the rank-r term,
        shared by all rows; given together with `extra_gram_scale`. Traced.
      extra_rhs: optional (d, rows) e added to the right-hand sides. Traced.
      chunk_size: static; the rows are solved in chunks of this many (bounds memory);
        0 (default) picks `default_chunk_size(d, rows)`; >= rows solves them all at once.
      method: static; "auto", "unrolled", "looped" or "lapack" (see the module docstring).
        "auto" decides from d and the rows per chunk, both static.

    Returns:
      Z: (d, rows), in the common floating dtype of F, R and C.

    Raises:
      ValueError: on inconsistent shapes or invalid static arguments (host-side).
    """
    _check_solve_args(F, R, C, lam, extra_gram_scale, extra_gram_vec, extra_rhs, chunk_size, method)
    dtype, (F, R, C, lam, scale, vec, erhs) = _as_dtype(
        F, R, C, lam, extra_gram_scale, extra_gram_vec, extra_rhs
    )
    if R.shape[0] == 0:
        return jnp.zeros((F.shape[0], 0), dtype)
    # The kernel works batch-last: (k, rows). update_Y passes R and C without this transpose.
    return _solve_instances(F, R.T, C.T, lam, scale, vec, erhs, chunk_size, method)


def update_X(
    Y: Real[ArrayLike, "d n"],
    R: Real[ArrayLike, "m n"],
    C: Real[ArrayLike, "m n"],
    lam: Real[ArrayLike, ""],
    *,
    extra_gram_scale: Real[ArrayLike, "*rank_pair m"] | None = None,
    extra_gram_vec: Real[ArrayLike, "d ..."] | None = None,
    extra_rhs: Real[ArrayLike, "d m"] | None = None,
    chunk_size: int = 0,
    method: str = "auto",
) -> Float[Array, "d m"]:
    """Classifier factors X (d, m): per classifier u, (Y C_u Y^T + lam I) x_u = Y C_u r_u.

    The Grams Y C_u Y^T (packed) and right-hand sides are sums over the n instances, taken
    chunk by chunk (see the module docstring), then the m systems are solved at once.

    Args:
      Y: (d, n) instance factors (fixed).
      R: (m, n) targets (`problem.R`).
      C: (m, n) confidences (the effective C of the fit).
      lam: traced scalar ridge.
      extra_gram_scale, extra_gram_vec, extra_rhs, method: as in `solve_rows`, with rows = m
        classifiers (extra_gram_scale (m,), extra_rhs (d, m)).
      chunk_size: static; instances per chunk of the sums over n (0: `default_chunk_size`;
        >= n: one GEMM each).
    """
    _check_solve_args(Y, R, C, lam, extra_gram_scale, extra_gram_vec, extra_rhs, chunk_size, method)
    dtype, (Y, R, C, lam, scale, vec, erhs) = _as_dtype(
        Y, R, C, lam, extra_gram_scale, extra_gram_vec, extra_rhs
    )
    d, n = Y.shape
    if R.shape[0] == 0:
        return jnp.zeros((d, 0), dtype)
    if n == 0:
        G, rhs = jnp.zeros((d * (d + 1) // 2, R.shape[0]), dtype), jnp.zeros((d, R.shape[0]), dtype)
    else:

        def contributions(Y_c, W_c):
            C_c, R_c = W_c  # C * R formed per chunk: never an (m, n) temporary
            G = jnp.matmul(_khatri_rao_packed(Y_c), C_c.T, precision=_HIGHEST)
            return G, jnp.matmul(Y_c, (C_c * R_c).T, precision=_HIGHEST)

        G, rhs = _reduce_over_instances(Y, (C, R), chunk_size, contributions)
    return _finish(G, rhs, lam, scale, vec, erhs, method)


def update_Y(
    X: Real[ArrayLike, "d m"],
    R: Real[ArrayLike, "m n"],
    C: Real[ArrayLike, "m n"],
    lam: Real[ArrayLike, ""],
    *,
    extra_gram_scale: Real[ArrayLike, "*rank_pair n"] | None = None,
    extra_gram_vec: Real[ArrayLike, "d ..."] | None = None,
    extra_rhs: Real[ArrayLike, "d n"] | None = None,
    chunk_size: int = 0,
    method: str = "auto",
) -> Float[Array, "d n"]:
    """Instance factors Y (d, n): per instance i, (X C_i X^T + lam I) y_i = X C_i r_i.

    Args:
      X: (d, m) classifier factors (fixed).
      R: (m, n) targets (`problem.R`).
      C: (m, n) confidences (the effective C of the fit).
      lam: traced scalar ridge.
      extra_gram_scale, extra_gram_vec, extra_rhs, chunk_size, method: as in `solve_rows`,
        with rows = n instances (extra_gram_scale (n,), extra_rhs (d, n)). MM-ALS passes
        its supervised majoriser here: v = X w, s_i its curvature, e_i its linear term.
    """
    _check_solve_args(
        X,
        R,
        C,
        lam,
        extra_gram_scale,
        extra_gram_vec,
        extra_rhs,
        chunk_size,
        method,
        batch_last=True,
    )
    n = R.shape[1]
    dtype, (X, R, C, lam, scale, vec, erhs) = _as_dtype(
        X, R, C, lam, extra_gram_scale, extra_gram_vec, extra_rhs
    )
    if n == 0:
        return jnp.zeros((X.shape[0], 0), dtype)
    # (m, n) is already batch-last for the n instance systems: no transpose.
    return _solve_instances(X, R, C, lam, scale, vec, erhs, chunk_size, method)


def als_sweep(
    X: Real[ArrayLike, "d m"],
    Y: Real[ArrayLike, "d n"],
    R: Real[ArrayLike, "m n"],
    C: Real[ArrayLike, "m n"],
    lam: Real[ArrayLike, ""],
    chunk_size: int = 0,
    method: str = "auto",
) -> tuple[Float[Array, "d m"], Float[Array, "d n"]]:
    """One ALS sweep: X given Y, then Y given the new X. Never increases `objective`.

    Args:
      X: (d, m), Y: (d, n) current factors (X is only used for its shape: it is solved for).
      R, C: (m, n) targets and confidences.
      lam: traced scalar ridge.
      chunk_size, method: static, as in `solve_rows`.

    Returns:
      (X_new (d, m), Y_new (d, n)).
    """
    _check_matrix("X", X, 2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X: expected {Y.shape[0]} latent rows to match Y {Y.shape}, got {X.shape}"
        )
    X_new = update_X(Y, R, C, lam, chunk_size=chunk_size, method=method)
    Y_new = update_Y(X_new, R, C, lam, chunk_size=chunk_size, method=method)
    return X_new, Y_new


def objective(
    X: Real[ArrayLike, "d m"],
    Y: Real[ArrayLike, "d n"],
    R: Real[ArrayLike, "m n"],
    C: Real[ArrayLike, "m n"],
    lam: Real[ArrayLike, ""],
) -> Float[Array, ""]:
    """sum_ui c_ui (r_ui - x_u^T y_i)^2 + lam (||X||^2 + ||Y||^2): what the updates minimise.

    Equals `cfjax.losses.reconstruction_parts(...)[1]` (the un-normalised sum).
    """
    resid = R - jnp.matmul(X.T, Y, precision=_HIGHEST)
    return jnp.sum(C * resid**2) + lam * (jnp.sum(X**2) + jnp.sum(Y**2))


# Jitted here so that eager calls compile once per shape, not once per call (the lax loops
# inside close over per-call functions; why that matters: tests/test_compiles_once.py).
gram_packed = jit(gram_packed, static_argnames="chunk_size")
solve_rows = jit(solve_rows, static_argnames=("chunk_size", "method"))
update_X = jit(update_X, static_argnames=("chunk_size", "method"))
update_Y = jit(update_Y, static_argnames=("chunk_size", "method"))
als_sweep = jit(als_sweep, static_argnames=("chunk_size", "method"))
