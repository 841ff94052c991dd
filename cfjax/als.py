r"""Batched closed-form weighted ridge solves: the inner step of every ALS-type solver.

For fixed factors F (d, k), targets R (rows, k) and confidences C (rows, k), row j solves

.. math::

    (F \operatorname{diag}(C_j) F^\top + \lambda I + s_j v v^\top) \, z_j = F (C_j \odot R_j) + e_j

where the optional rank-one term (scale s: (rows,), vector v: (d,) shared by all rows) and
extra right-hand side e: (d, rows) let MM-ALS add the quadratic majoriser of the supervised
loss. With the extras absent this is the minimiser of
sum_j c_jl (r_jl - f_l^T z_j)^2 + lam ||z_j||^2, so `update_X` and `update_Y` are exact block
minimisations of

.. math::

    \sum_{ui} c_{ui} (r_{ui} - x_u^\top y_i)^2 + \lambda (\|X\|_F^2 + \|Y\|_F^2).

Dividing by sum C (`cfjax.losses`) does not move the minimiser, so `lam` is the same lambda as
in the normalised objective.

**How.** No loop over rows. The Grams of all rows come from one GEMM: the packed lower
triangle of the Khatri-Rao product (row q = f_a * f_b for the q-th pair a >= b, a
(d(d+1)/2, k) matrix) times C^T, giving (d(d+1)/2, rows) with the batch axis last. The
right-hand sides are one more GEMM, F (C * R)^T. The d x d systems are then solved by
Cholesky, in one of two ways (static `method`):

* ``"unrolled"``: a Cholesky written out entry by entry at trace time, every entry a (rows,)
  vector, so XLA turns it into vectorised loops over the batch. On a 2-core x86 CPU it was
  10-30x faster than LAPACK's batched calls at d = 4 and 8 and 2-7x at d = 16 (the gap
  shrinks when other processes compete for memory bandwidth); but its program grows as
  d^3: compile takes 2-3 s at d = 16 on a quiet machine and 35-70 s at d = 32.
* ``"lapack"``: `jnp.linalg.cholesky` plus two `lax.linalg.triangular_solve` on (rows, d, d).
  Compiles in constant time; in float32 1.2-2x faster than batched `jnp.linalg.solve`
  (jax issue 36927), in float64 about even.
* ``"auto"`` (default): unrolled for d <= `UNROLL_MAX_DIM` and at least `UNROLL_MIN_ROWS`
  rows, else lapack. A handful of rows (the m classifiers of `update_X`) costs microseconds
  either way, so there the compile time decides.

See `benchmarks/bench_als.py --solvers` for the measurements behind these choices.

**Singular systems.** With lam > 0 every system is positive definite and nothing below acts.
With lam = 0 (or lam far below the data scale) a row whose Gram is singular, e.g. a row with
fewer observed cells than d, would give NaN. Instead, a jitter tau_j = `JITTER[dtype]` *
mean(diag(A_j)) + tiny is used only where needed: the unrolled path raises any Cholesky
pivot below tau_j to tau_j (pivots of A_j + lam I are >= lam, so this never acts when
lam >= tau_j); the lapack path re-factors A_j + tau_j I for the rows whose factor came out
non-finite. The result is finite and fits the observed cells like a least-squares solution;
its component along the null space of the Gram is arbitrary. Use lam > 0 for a unique
answer. A row with all-zero confidence and no extra term solves to exactly 0 whenever
lam > 0 (and to 0 with lam = 0 too, since its right-hand side is 0).

**Memory.** `chunk_size > 0` solves the rows in chunks of that many under `lax.map`, so the
(d(d+1)/2, chunk) Grams bound the peak memory; rows are padded with zero confidence to a
multiple of the chunk and the padding is dropped. The (d(d+1)/2, k) Khatri-Rao product is
built once. Results agree across chunk sizes to float rounding.

Traced: F, R, C, lam and the extras (lam never recompiles; everything is vmappable over lam).
Static: shapes, `chunk_size`, `method`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "UNROLL_MAX_DIM",
    "UNROLL_MIN_ROWS",
    "JITTER",
    "METHODS",
    "gram_packed",
    "solve_rows",
    "update_X",
    "update_Y",
    "als_sweep",
    "objective",
]

UNROLL_MAX_DIM = 16
"""Largest latent dimension for which `method="auto"` picks the unrolled Cholesky."""

UNROLL_MIN_ROWS = 512
"""Fewest rows for which `method="auto"` picks the unrolled Cholesky."""

JITTER = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
"""Relative jitter (times the mean diagonal) used only for (numerically) singular systems."""

METHODS = ("auto", "unrolled", "lapack")

# Full precision for the Grams and right-hand sides: on accelerators the default matmul
# precision (TF32/bf16 passes) would lose most digits of the normal equations. Free on CPU.
_HIGHEST = lax.Precision.HIGHEST


def _pairs(d: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with a >= b in row-major lower-triangle order: q = a (a + 1) / 2 + b."""
    return np.tril_indices(d)


def _packed_index(a: int, b: int) -> int:
    if a < b:
        a, b = b, a
    return a * (a + 1) // 2 + b


def _khatri_rao_packed(F: jax.Array) -> jax.Array:
    """(d(d+1)/2, k): row q is f_a * f_b (element-wise over k) for the q-th pair a >= b."""
    a, b = _pairs(F.shape[0])
    return F[a] * F[b]


def gram_packed(F: jax.Array, C: jax.Array) -> jax.Array:
    """Packed lower triangles of F diag(C_j) F^T for all rows j, in one GEMM.

    Args:
      F: (d, k) factors.
      C: (rows, k) confidences.

    Returns:
      (d(d+1)/2, rows); entry (q, j) is sum_l C[j, l] F[a, l] F[b, l] for the q-th pair
      (a, b), a >= b, in row-major lower-triangle order (`np.tril_indices(d)`).
    """
    return jnp.matmul(_khatri_rao_packed(F), C.T, precision=_HIGHEST)


def _cholesky_solve_unrolled(G: jax.Array, b: jax.Array, floor: jax.Array) -> jax.Array:
    """Solve packed SPD systems with the batch axis last, written out entry by entry.

    G: (d(d+1)/2, rows) packed lower triangles; b: (d, rows); floor: (rows,) pivot floor.
    Returns (d, rows). Every intermediate is a (rows,) vector, which XLA fuses; the Python
    loops run at trace time over the d x d entries, never over rows.
    """
    d = b.shape[0]
    L: dict[tuple[int, int], jax.Array] = {}
    inv_diag = []
    for j in range(d):
        pivot = G[_packed_index(j, j)]
        for p in range(j):
            pivot = pivot - L[j, p] * L[j, p]
        # Raises only pivots at roundoff level, i.e. (numerically) singular systems.
        inv = lax.rsqrt(jnp.maximum(pivot, floor))
        inv_diag.append(inv)
        for i in range(j + 1, d):
            s = G[_packed_index(i, j)]
            for p in range(j):
                s = s - L[i, p] * L[j, p]
            L[i, j] = s * inv
    z = []
    for i in range(d):
        s = b[i]
        for p in range(i):
            s = s - L[i, p] * z[p]
        z.append(s * inv_diag[i])
    x: list[jax.Array | None] = [None] * d
    for i in reversed(range(d)):
        s = z[i]
        for p in range(i + 1, d):
            s = s - L[p, i] * x[p]
        x[i] = s * inv_diag[i]
    return jnp.stack(x)


def _cholesky_solve_lapack(G: jax.Array, b: jax.Array, floor: jax.Array) -> jax.Array:
    """Same contract as `_cholesky_solve_unrolled`, through batched LAPACK calls."""
    d = b.shape[0]
    sym = np.array([[_packed_index(a, c) for c in range(d)] for a in range(d)])
    A = jnp.moveaxis(G[sym], -1, 0)  # (rows, d, d)
    eye = jnp.eye(d, dtype=A.dtype)

    def solve(L):
        z = lax.linalg.triangular_solve(L, b.T[..., None], left_side=True, lower=True)
        x = lax.linalg.triangular_solve(L, z, left_side=True, lower=True, transpose_a=True)
        return x[..., 0].T

    L = jnp.linalg.cholesky(A)
    bad = ~jnp.all(jnp.isfinite(L), axis=(-2, -1))

    # LAPACK cannot floor its pivots, so singular rows are re-factored with the jitter added.
    # The cond skips that second factorisation when no row needs it (under vmap it becomes
    # a select and both run).
    def refactor(L):
        jittered = A + jnp.where(bad, floor, 0.0)[:, None, None] * eye[None]
        return jnp.where(bad[:, None, None], jnp.linalg.cholesky(jittered), L)

    L = lax.cond(jnp.any(bad), refactor, lambda L: L, L)
    return solve(L)


def _solve_chunk(KR, F, R, C, lam, scale, vec, extra_rhs, method):
    """Z (d, rows) for one chunk of rows; see `solve_rows`."""
    d = F.shape[0]
    dtype = KR.dtype
    # A 0/1 mask over the packed entries rather than a scatter/gather on the diagonal: it
    # fuses into the elementwise work and stays cheap when lam is vmapped.
    on_diag = np.zeros(d * (d + 1) // 2)
    on_diag[[_packed_index(a, a) for a in range(d)]] = 1.0
    G = jnp.matmul(KR, C.T, precision=_HIGHEST) + lam * jnp.asarray(on_diag, dtype)[:, None]
    if scale is not None:
        a, c = _pairs(d)
        G = G + (vec[a] * vec[c])[:, None] * scale[None, :]
    rhs = jnp.matmul(F, (C * R).T, precision=_HIGHEST)
    if extra_rhs is not None:
        rhs = rhs + extra_rhs
    mean_diag = jnp.matmul(jnp.asarray(on_diag / d, dtype), G, precision=_HIGHEST)
    floor = _jitter(dtype) * mean_diag + jnp.finfo(dtype).tiny
    if method == "unrolled":
        return _cholesky_solve_unrolled(G, rhs, floor)
    return _cholesky_solve_lapack(G, rhs, floor)


def _jitter(dtype) -> float:
    # Other float types (bfloat16, float16) get ten machine epsilons.
    return JITTER.get(np.dtype(dtype), 10.0 * float(jnp.finfo(dtype).eps))


def _check_matrix(name, x, ndim):
    if not hasattr(x, "shape") or len(x.shape) != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-d array, got shape {getattr(x, 'shape', None)}"
        )


def solve_rows(
    F: jax.Array,
    R: jax.Array,
    C: jax.Array,
    lam: jax.Array | float,
    *,
    extra_gram_scale: jax.Array | None = None,
    extra_gram_vec: jax.Array | None = None,
    extra_rhs: jax.Array | None = None,
    chunk_size: int = 0,
    method: str = "auto",
) -> jax.Array:
    r"""Solve every row's weighted ridge normal equations at once.

    For each row j:
    (F diag(C_j) F^T + lam I + s_j v v^T) z_j = F (C_j * R_j) + e_j.

    Args:
      F: (d, k) fixed factors. Traced.
      R: (rows, k) targets. Traced.
      C: (rows, k) confidences, >= 0; 0 means the cell is ignored. Traced.
      lam: scalar ridge, >= 0 (> 0 for a unique solution; see the module docstring).
        Traced: a new value never recompiles.
      extra_gram_scale: optional (rows,) s_j >= 0 of the rank-one Gram term. Traced.
      extra_gram_vec: optional (d,) v of the rank-one term, shared by all rows; given
        together with `extra_gram_scale`. Traced.
      extra_rhs: optional (d, rows) e added to the right-hand sides. Traced.
      chunk_size: static; > 0 solves the rows in chunks of this many (bounds memory),
        0 solves them all at once.
      method: static; "auto", "unrolled" or "lapack" (see the module docstring). "auto"
        decides from d and rows, both static.

    Returns:
      Z: (d, rows), in the common floating dtype of F, R and C.

    Raises:
      ValueError: on inconsistent shapes or invalid static arguments (host-side).
    """
    _check_matrix("F", F, 2)
    _check_matrix("R", R, 2)
    _check_matrix("C", C, 2)
    d, k = F.shape
    if R.shape[1] != k:
        raise ValueError(f"R: expected shape (rows, {k}) to match F {F.shape}, got {R.shape}")
    if C.shape != R.shape:
        raise ValueError(f"C: expected the shape of R {R.shape}, got {C.shape}")
    rows = R.shape[0]
    if jnp.ndim(lam) != 0:
        raise ValueError(f"lam: expected a scalar, got shape {jnp.shape(lam)} (vmap for a grid)")
    if (extra_gram_scale is None) != (extra_gram_vec is None):
        raise ValueError("extra_gram_scale: must be given together with extra_gram_vec")
    if extra_gram_scale is not None and tuple(extra_gram_scale.shape) != (rows,):
        raise ValueError(
            f"extra_gram_scale: expected shape ({rows},), got {extra_gram_scale.shape}"
        )
    if extra_gram_vec is not None and tuple(extra_gram_vec.shape) != (d,):
        raise ValueError(f"extra_gram_vec: expected shape ({d},), got {extra_gram_vec.shape}")
    if extra_rhs is not None and tuple(extra_rhs.shape) != (d, rows):
        raise ValueError(f"extra_rhs: expected shape ({d}, {rows}), got {extra_rhs.shape}")
    if (
        not isinstance(chunk_size, (int, np.integer))
        or isinstance(chunk_size, bool)
        or chunk_size < 0
    ):
        raise ValueError(f"chunk_size: expected an int >= 0, got {chunk_size!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if method == "auto":
        method = "unrolled" if d <= UNROLL_MAX_DIM and rows >= UNROLL_MIN_ROWS else "lapack"

    dtype = jnp.result_type(F, R, C)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    F, R, C = (jnp.asarray(x, dtype) for x in (F, R, C))
    lam = jnp.asarray(lam, dtype)
    scale = None if extra_gram_scale is None else jnp.asarray(extra_gram_scale, dtype)
    vec = None if extra_gram_vec is None else jnp.asarray(extra_gram_vec, dtype)
    erhs = None if extra_rhs is None else jnp.asarray(extra_rhs, dtype)
    if rows == 0:
        return jnp.zeros((d, 0), dtype)

    KR = _khatri_rao_packed(F)  # built once, shared by all chunks
    chunk = rows if chunk_size == 0 else min(int(chunk_size), rows)
    if chunk == rows:
        return _solve_chunk(KR, F, R, C, lam, scale, vec, erhs, method)

    n_chunks = -(-rows // chunk)
    pad = n_chunks * chunk - rows
    # Padding rows have zero confidence (and zero extras): they solve to 0 and are dropped.
    R = jnp.pad(R, ((0, pad), (0, 0))).reshape(n_chunks, chunk, k)
    C = jnp.pad(C, ((0, pad), (0, 0))).reshape(n_chunks, chunk, k)
    xs = {"R": R, "C": C}
    if scale is not None:
        xs["scale"] = jnp.pad(scale, (0, pad)).reshape(n_chunks, chunk)
    if erhs is not None:
        xs["erhs"] = jnp.moveaxis(
            jnp.pad(erhs, ((0, 0), (0, pad))).reshape(d, n_chunks, chunk), 1, 0
        )

    def one(x):
        return _solve_chunk(KR, F, x["R"], x["C"], lam, x.get("scale"), vec, x.get("erhs"), method)

    Z = lax.map(one, xs)  # (n_chunks, d, chunk)
    return jnp.moveaxis(Z, 0, 1).reshape(d, n_chunks * chunk)[:, :rows]


def update_X(
    Y: jax.Array,
    R: jax.Array,
    C: jax.Array,
    lam: jax.Array | float,
    *,
    extra_gram_scale: jax.Array | None = None,
    extra_gram_vec: jax.Array | None = None,
    extra_rhs: jax.Array | None = None,
    chunk_size: int = 0,
    method: str = "auto",
) -> jax.Array:
    """Classifier factors X (d, m): per classifier u, (Y C_u Y^T + lam I) x_u = Y C_u r_u.

    Args:
      Y: (d, n) instance factors (fixed).
      R: (m, n) targets (`problem.R`).
      C: (m, n) confidences (the effective C of the fit).
      lam: traced scalar ridge.
      extra_gram_scale, extra_gram_vec, extra_rhs, chunk_size, method: as in `solve_rows`,
        with rows = m classifiers (extra_gram_scale (m,), extra_rhs (d, m)).
    """
    return solve_rows(
        Y,
        R,
        C,
        lam,
        extra_gram_scale=extra_gram_scale,
        extra_gram_vec=extra_gram_vec,
        extra_rhs=extra_rhs,
        chunk_size=chunk_size,
        method=method,
    )


def update_Y(
    X: jax.Array,
    R: jax.Array,
    C: jax.Array,
    lam: jax.Array | float,
    *,
    extra_gram_scale: jax.Array | None = None,
    extra_gram_vec: jax.Array | None = None,
    extra_rhs: jax.Array | None = None,
    chunk_size: int = 0,
    method: str = "auto",
) -> jax.Array:
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
    _check_matrix("R", R, 2)
    _check_matrix("C", C, 2)
    return solve_rows(
        X,
        R.T,
        C.T,
        lam,
        extra_gram_scale=extra_gram_scale,
        extra_gram_vec=extra_gram_vec,
        extra_rhs=extra_rhs,
        chunk_size=chunk_size,
        method=method,
    )


def als_sweep(
    X: jax.Array,
    Y: jax.Array,
    R: jax.Array,
    C: jax.Array,
    lam: jax.Array | float,
    chunk_size: int = 0,
    method: str = "auto",
) -> tuple[jax.Array, jax.Array]:
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
    X: jax.Array, Y: jax.Array, R: jax.Array, C: jax.Array, lam: jax.Array | float
) -> jax.Array:
    """sum_ui c_ui (r_ui - x_u^T y_i)^2 + lam (||X||^2 + ||Y||^2): what the updates minimise.

    Equals `cfjax.losses.reconstruction_parts(...)[1]` (the un-normalised sum).
    """
    resid = R - jnp.matmul(X.T, Y, precision=_HIGHEST)
    return jnp.sum(C * resid**2) + lam * (jnp.sum(X**2) + jnp.sum(Y**2))
