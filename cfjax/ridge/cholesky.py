"""Batched Cholesky solves of packed symmetric positive-definite systems, batch axis last.

A system is given by its packed lower triangle G (d(d+1)/2, rows), in row-major order
(`np.tril_indices(d)`: entry q is the pair a >= b with q = a (a + 1) / 2 + b), and a right-hand
side b (d, rows). Three back-ends solve all rows at once (static choice, `resolve_method`):

* ``"unrolled"``: the factorisation written out entry by entry at trace time; every entry is a
  (rows,) vector that XLA fuses into vectorised loops. Fastest at run time for small d, but the
  program grows as d^3, and with it the compile time.
* ``"looped"``: the same left-looking factorisation with `lax.fori_loop` over columns (in blocks
  of `LOOP_BLOCK`), forward and back substitution as loops. Compiles in about constant time at
  any d; its reverse-mode derivative is the implicit-function rule (one more solve), not the
  derivative of the loop.
* ``"lapack"``: `jnp.linalg.cholesky` and two triangular solves on (rows, d, d). Compiles in
  constant time, one LAPACK call per row: best for a handful of rows (the m classifiers).

Singular systems: pivots below `floor` (a jitter relative to the mean diagonal, `jitter`) are
raised to it (the lapack path re-factors the rows whose factor is not finite), so the answer is
finite and acts only where a system is numerically singular. `benchmarks/bench_als.py --solvers`
measures the three against each other.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "JITTER",
    "LOOP_BLOCK",
    "METHODS",
    "UNROLL_MAX_DIM",
    "UNROLL_MIN_ROWS",
    "jitter",
    "packed_index",
    "pairs",
    "resolve_method",
    "solve_packed",
    "solve_shared",
    "sym_index",
]

UNROLL_MAX_DIM = 8
"""Largest d for which `"auto"` picks the unrolled factorisation: its compile time grows as d^3,
while the looped one compiles in about the same time at any d and runs within ~10% of it at
d = 16 (`benchmarks/bench_als.py --solvers`)."""

UNROLL_MIN_ROWS = 512
"""Fewest rows for which `"auto"` picks a batch-last factorisation (unrolled or looped)."""

LOOP_BLOCK = 8
"""Columns per block of the looped factorisation (the unrolled width of its inner sums)."""

JITTER = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
"""Relative jitter (times the mean diagonal) used only for (numerically) singular systems."""

METHODS = ("auto", "unrolled", "looped", "lapack")


def pairs(d: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with a >= b in row-major lower-triangle order: q = a (a + 1) / 2 + b."""
    return np.tril_indices(d)


def packed_index(a: int, b: int) -> int:
    if a < b:
        a, b = b, a
    return a * (a + 1) // 2 + b


def sym_index(d: int) -> np.ndarray:
    """(d, d) int: entry (a, b) is the packed index of the pair {a, b}."""
    return np.array([[packed_index(a, b) for b in range(d)] for a in range(d)])


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
        pivot = G[packed_index(j, j)]
        for p in range(j):
            pivot = pivot - L[j, p] * L[j, p]
        # Raises only pivots at roundoff level, i.e. (numerically) singular systems.
        inv = lax.rsqrt(jnp.maximum(pivot, floor))
        inv_diag.append(inv)
        for i in range(j + 1, d):
            s = G[packed_index(i, j)]
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
    sym = jnp.asarray(sym_index(d), jnp.int32)
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
    a, c = pairs(x.shape[0])
    off = jnp.asarray(a != c, x.dtype)[:, None]
    gG = -(gb[a] * x[c] + off * gb[c] * x[a])
    return gG, gb, jnp.zeros_like(floor)


_cholesky_solve_looped.defvjp(_looped_fwd, _looped_bwd)


def _cholesky_solve_lapack(G: jax.Array, b: jax.Array, floor: jax.Array) -> jax.Array:
    """Same contract as `_cholesky_solve_unrolled`, through batched LAPACK calls."""
    d = b.shape[0]
    sym = np.array([[packed_index(a, c) for c in range(d)] for a in range(d)])
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


def solve_shared(G: jax.Array, b: jax.Array, floor: jax.Array) -> jax.Array:
    """Solve G x_j = b_j for every column of b with ONE packed SPD matrix G (d(d+1)/2,): one
    Cholesky factorisation (re-factored with `floor` on the diagonal if it is not finite, as the
    lapack path does per row) and two triangular solves with all right-hand sides. b: (d, rows);
    floor: scalar. Differentiable by autodiff (the triangular solves' own rules)."""
    d = b.shape[0]
    sym = np.array([[packed_index(a, c) for c in range(d)] for a in range(d)])
    A = G[sym]
    L = jnp.linalg.cholesky(A)
    L = lax.cond(jnp.all(jnp.isfinite(L)), lambda L: L,
                 lambda L: jnp.linalg.cholesky(A + floor * jnp.eye(d, dtype=A.dtype)), L)
    z = lax.linalg.triangular_solve(L, b, left_side=True, lower=True)
    return lax.linalg.triangular_solve(L, z, left_side=True, lower=True, transpose_a=True)


def resolve_method(method: str, d: int, rows: int) -> str:
    """`method`, or for "auto" the back-end chosen from d and the number of rows (both static)."""
    if method != "auto":
        return method
    if rows < UNROLL_MIN_ROWS:
        return "lapack"
    return "unrolled" if d <= UNROLL_MAX_DIM else "looped"


def jitter(dtype) -> float:
    """The relative jitter of `dtype` (`JITTER`; ten machine epsilons for other float types)."""
    return JITTER.get(np.dtype(dtype), 10.0 * float(jnp.finfo(dtype).eps))



def solve_packed(G: jax.Array, b: jax.Array, floor: jax.Array, method: str = "auto") -> jax.Array:
    """Solve every packed SPD system G_j x_j = b_j.

    Args:
      G: (d(d+1)/2, rows) packed lower triangles. b: (d, rows). floor: (rows,) pivot floor.
      method: static; "auto", "unrolled", "looped" or "lapack".

    Returns:
      x: (d, rows).
    """
    method = resolve_method(method, b.shape[0], b.shape[1])
    if method == "unrolled":
        return _cholesky_solve_unrolled(G, b, floor)
    if method == "looped":
        return _cholesky_solve_looped(G, b, floor)
    return _cholesky_solve_lapack(G, b, floor)
