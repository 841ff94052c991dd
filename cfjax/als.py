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

**How.** No loop over rows. The Grams of all rows come from one GEMM per chunk: the packed
lower triangle of the Khatri-Rao product (row q = f_a * f_b for the q-th pair a >= b, a
(d(d+1)/2, k) matrix) times C^T, giving (d(d+1)/2, rows) with the batch axis last. The
right-hand sides are one more GEMM, F (C * R)^T. The d x d systems are then solved by
Cholesky, in one of three ways (static `method`):

* ``"unrolled"``: a Cholesky written out entry by entry at trace time, every entry a (rows,)
  vector, so XLA turns it into vectorised loops over the batch. The fastest at run time for
  small d, but its program grows as d^3: compile takes about 2-3 s at d = 16 on a quiet
  2-core machine (5x that on a loaded one) and 35-70 s at d = 32.
* ``"looped"``: the same batch-last, left-looking Cholesky with the loop over columns kept as
  `lax.fori_loop` (in blocks of `LOOP_BLOCK` columns, so the work per column is bounded by
  the block rather than by d), plus looped forward and back substitution. Its program does
  not grow with d beyond the block sums: it compiles in about 1-2 s at any d. At d = 32 it
  ran 1.4-3x faster than batched LAPACK on a 2-core CPU. Reverse-mode derivatives use the
  implicit-function rule (a second solve) rather than differentiating the loop.
* ``"lapack"``: `jnp.linalg.cholesky` plus two `lax.linalg.triangular_solve` on (rows, d, d).
  Compiles in constant time; in float32 1.2-2x faster than batched `jnp.linalg.solve`
  (jax issue 36927), in float64 about even. One LAPACK call per row, so slow for many rows.
* ``"auto"`` (default): for at least `UNROLL_MIN_ROWS` rows, unrolled for d <=
  `UNROLL_MAX_DIM` and looped above it; lapack for fewer rows. A handful of rows (the m
  classifiers of `update_X`) costs microseconds either way, so there the compile time decides.

See `benchmarks/bench_als.py --solvers` and `benchmarks/bench_speed.py` for the measurements
behind these choices.

**Singular systems.** With lam > 0 every system is positive definite and nothing below acts.
With lam = 0 (or lam far below the data scale) a row whose Gram is singular, e.g. a row with
fewer observed cells than d, would give NaN. Instead, a jitter tau_j = `JITTER[dtype]` *
mean(diag(A_j)) + tiny is used only where needed: the unrolled and looped paths raise any
Cholesky pivot below tau_j to tau_j (pivots of A_j + lam I are >= lam, so this never acts
when lam >= tau_j); the lapack path re-factors A_j + tau_j I for the rows whose factor came
out non-finite. The result is finite and fits the observed cells like a least-squares
solution; its component along the null space of the Gram is arbitrary. Use lam > 0 for a
unique answer. A row with all-zero confidence and no extra term solves to exactly 0 whenever
lam > 0 (and to 0 with lam = 0 too, since its right-hand side is 0).

**Memory: chunks over the instance axis.** `chunk_size` counts instances (the n columns of
R). `update_Y` solves the instances in chunks of that many under `lax.map`, so only the
(d(d+1)/2, chunk) Grams of one chunk exist at a time; `update_X` (and `gram_packed`) sum the
Gram and right-hand-side contributions chunk by chunk over n under `lax.scan`, so the
(d(d+1)/2, n) packed Khatri-Rao matrix is never formed (at (m, n, d) = (100, 1e6, 32) it
would take 2.1 GB in float32). No input is padded or copied: the last chunk is shifted back
to end at n, and the instances it shares with the previous chunk get zero weight in a
reduction and are dropped from a solve. ``chunk_size=0`` (the default) picks a chunk with
`default_chunk_size`, which keeps one chunk's packed Grams near `CHUNK_BYTES`: small enough
to stay in cache, which also made the GEMMs about 2.5x faster at n = 1e5 than one
(d(d+1)/2, n) GEMM. A `chunk_size` >= n means one chunk. Results agree across chunk sizes
to float rounding (the sums are only reassociated).

Traced: F, R, C, lam and the extras (lam never recompiles; everything is vmappable over lam).
Static: shapes, `chunk_size`, `method`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "CHUNK_BYTES",
    "JITTER",
    "LOOP_BLOCK",
    "METHODS",
    "UNROLL_MAX_DIM",
    "UNROLL_MIN_ROWS",
    "als_sweep",
    "default_chunk_size",
    "gram_packed",
    "objective",
    "solve_rows",
    "update_X",
    "update_Y",
]

UNROLL_MAX_DIM = 8
"""Largest latent dimension for which `method="auto"` picks the unrolled Cholesky: its compile
time grows as d^3 (about 1 s at d = 8 and 2-3 s at d = 16 on a quiet 2-core machine), while
the looped one compiles in about the same time at any d and ran within ~10% of it at d = 16."""

UNROLL_MIN_ROWS = 512
"""Fewest rows for which `method="auto"` picks a batch-last Cholesky (unrolled or looped)."""

LOOP_BLOCK = 8
"""Columns per block of the looped Cholesky (the unrolled width of its inner sums)."""

CHUNK_BYTES = 2 * 2**20
"""Target size of one chunk's packed Grams, (d(d+1)/2, chunk), for ``chunk_size=0``."""

_MIN_CHUNK, _MAX_CHUNK = 256, 16384

JITTER = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
"""Relative jitter (times the mean diagonal) used only for (numerically) singular systems."""

METHODS = ("auto", "unrolled", "looped", "lapack")

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


def _sym_index(d: int) -> np.ndarray:
    """(d, d) int: entry (a, b) is the packed index of the pair {a, b}."""
    return np.array([[_packed_index(a, b) for b in range(d)] for a in range(d)])


def _khatri_rao_packed(F: jax.Array) -> jax.Array:
    """(d(d+1)/2, k): row q is f_a * f_b (element-wise over k) for the q-th pair a >= b."""
    a, b = _pairs(F.shape[0])
    return F[a] * F[b]


def default_chunk_size(d: int, n: int, dtype=jnp.float32) -> int:
    """The instance chunk that ``chunk_size=0`` uses for latent dimension d and n instances.

    n itself (one chunk) when the packed Grams of all n instances fit in `CHUNK_BYTES`;
    otherwise CHUNK_BYTES / (d(d+1)/2 * itemsize) instances, rounded down to a multiple of
    128 and kept within [256, 16384]. Pure host arithmetic on static shapes.
    """
    per_instance = d * (d + 1) // 2 * np.dtype(dtype).itemsize
    if n * per_instance <= CHUNK_BYTES:
        return max(int(n), 1)
    chunk = (CHUNK_BYTES // per_instance) // 128 * 128
    return int(min(max(chunk, _MIN_CHUNK), _MAX_CHUNK, n))


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


def gram_packed(F: jax.Array, C: jax.Array, chunk_size: int = 0) -> jax.Array:
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


def _sum(terms):
    """A Python sum that XLA fuses into one elementwise loop (a reduce over a middle axis
    compiled to much slower code on XLA:CPU)."""
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _looped_impl(G: jax.Array, b: jax.Array, floor: jax.Array) -> jax.Array:
    """Same contract as `_cholesky_solve_unrolled`, with `lax.fori_loop` over the columns.

    Left-looking: column j of L is A[:, j] - sum_p L[:, p] L[j, p], scaled by its pivot. The
    columns are stored as LT[p] = L[:, p] (d, rows), zero until computed, so the sum can run
    over all p < the end of j's block (static) without a mask; per block of `LOOP_BLOCK`
    columns the rows above the block are left out statically. Substitutions: forward
    column-oriented, backward row-oriented, each one `fori_loop` over d.
    """
    d, rows = b.shape
    dtype = b.dtype
    sym = jnp.asarray(_sym_index(d), jnp.int32)
    LT = jnp.zeros((d, d, rows), dtype)
    inv = jnp.zeros((d, rows), dtype)
    for k0 in range(0, d, LOOP_BLOCK):
        k1 = min(k0 + LOOP_BLOCK, d)
        below = np.arange(k0, d)[:, None]

        def column(j, carry, k0=k0, k1=k1, below=below):
            LT, inv = carry
            a = jnp.take(G, lax.dynamic_index_in_dim(sym, j, 0, False)[k0:], axis=0)  # A[k0:, j]
            l_j = lax.dynamic_index_in_dim(LT[:k1], j, 1, False)  # (k1, rows): L[j, p]
            s = a - _sum([LT[p, k0:] * l_j[p][None, :] for p in range(k1)])
            inv_j = lax.rsqrt(jnp.maximum(lax.dynamic_index_in_dim(s, j - k0, 0, False), floor))
            col = jnp.where(below >= j, s * inv_j[None, :], 0.0)
            LT = lax.dynamic_update_slice(LT, col[None], (j, k0, 0))
            return LT, lax.dynamic_update_index_in_dim(inv, inv_j, j, 0)

        LT, inv = lax.fori_loop(k0, k1, column, (LT, inv))

    def forward(j, carry):  # L z = b; rem holds b minus the columns already eliminated
        rem, z = carry
        z_j = lax.dynamic_index_in_dim(rem, j, 0, False) * lax.dynamic_index_in_dim(
            inv, j, 0, False
        )
        rem = rem - lax.dynamic_index_in_dim(LT, j, 0, False) * z_j[None, :]
        return rem, lax.dynamic_update_index_in_dim(z, z_j, j, 0)

    _, z = lax.fori_loop(0, d, forward, (b, jnp.zeros_like(b)))

    def backward(t, x):  # L^T x = z; x_p is still 0 for p <= i, so the full sum is exact
        i = d - 1 - t
        col = lax.dynamic_index_in_dim(LT, i, 0, False) * x
        s = lax.dynamic_index_in_dim(z, i, 0, False) - _sum([col[p] for p in range(d)])
        return lax.dynamic_update_index_in_dim(
            x, s * lax.dynamic_index_in_dim(inv, i, 0, False), i, 0
        )

    return lax.fori_loop(0, d, backward, jnp.zeros_like(b))


@jax.custom_vjp
def _cholesky_solve_looped(G: jax.Array, b: jax.Array, floor: jax.Array) -> jax.Array:
    """`_looped_impl` with the implicit-function derivative: for x = A^{-1} b and a cotangent g,
    b receives A^{-1} g and A receives -(A^{-1} g) x^T (A symmetric). Differentiating the loops
    instead would store every iteration's (d, d, rows) factor. `floor` gets no gradient (it
    only acts on singular rows)."""
    return _looped_impl(G, b, floor)


def _looped_fwd(G, b, floor):
    x = _looped_impl(G, b, floor)
    return x, (G, x, floor)


def _looped_bwd(res, g):
    G, x, floor = res
    gb = _looped_impl(G, g, floor)
    a, c = _pairs(x.shape[0])
    off = jnp.asarray(a != c, x.dtype)[:, None]
    gG = -(gb[a] * x[c] + off * gb[c] * x[a])
    return gG, gb, jnp.zeros_like(floor)


_cholesky_solve_looped.defvjp(_looped_fwd, _looped_bwd)


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


def _finish(G, rhs, lam, scale, vec, extra_rhs, method):
    """Z (d, rows) from packed Grams G (d(d+1)/2, rows) and right-hand sides (d, rows)."""
    d = rhs.shape[0]
    dtype = G.dtype
    # A 0/1 mask over the packed entries rather than a scatter/gather on the diagonal: it
    # fuses into the elementwise work and stays cheap when lam is vmapped.
    on_diag = np.zeros(d * (d + 1) // 2)
    on_diag[[_packed_index(a, a) for a in range(d)]] = 1.0
    G = G + lam * jnp.asarray(on_diag, dtype)[:, None]
    if scale is not None:
        a, c = _pairs(d)
        G = G + (vec[a] * vec[c])[:, None] * scale[None, :]
    if extra_rhs is not None:
        rhs = rhs + extra_rhs
    mean_diag = jnp.matmul(jnp.asarray(on_diag / d, dtype), G, precision=_HIGHEST)
    floor = _jitter(dtype) * mean_diag + jnp.finfo(dtype).tiny
    method = _resolve_method(method, d, rhs.shape[1])
    if method == "unrolled":
        return _cholesky_solve_unrolled(G, rhs, floor)
    if method == "looped":
        return _cholesky_solve_looped(G, rhs, floor)
    return _cholesky_solve_lapack(G, rhs, floor)


def _resolve_method(method: str, d: int, rows: int) -> str:
    if method != "auto":
        return method
    if rows < UNROLL_MIN_ROWS:
        return "lapack"
    return "unrolled" if d <= UNROLL_MAX_DIM else "looped"


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

    chunk = _resolve_chunk(chunk_size, d, rows, KR.dtype)
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


def _jitter(dtype) -> float:
    # Other float types (bfloat16, float16) get ten machine epsilons.
    return JITTER.get(np.dtype(dtype), 10.0 * float(jnp.finfo(dtype).eps))


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
    if scale is not None and tuple(scale.shape) != (rows,):
        raise ValueError(f"extra_gram_scale: expected shape ({rows},), got {scale.shape}")
    if vec is not None and tuple(vec.shape) != (d,):
        raise ValueError(f"extra_gram_vec: expected shape ({d},), got {vec.shape}")
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
