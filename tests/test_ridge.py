"""cfjax.ridge: batched ridge solves against a NumPy loop of np.linalg.solve, and their properties."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfjax import losses, ridge
from cfjax.structs import Hparams, Params, Problem

METHODS = ["unrolled", "looped", "lapack"]

# The library never hides jit; the tests jit at the outside (eager dispatch of the unrolled
# Cholesky's many small ops would dominate the run time).
_static = ("chunk_size", "method")
solve_rows = jax.jit(ridge.solve_rows, static_argnames=_static)
update_X = jax.jit(ridge.update_X, static_argnames=_static)
update_Y = jax.jit(ridge.update_Y, static_argnames=_static)
als_sweep = jax.jit(ridge.als_sweep, static_argnames=_static)


# ----------------------------------------------------------------------------- NumPy twins


def np_solve_rows(F, R, C, lam, s=None, v=None, e=None):
    """Row by row: (F diag(C_j) F^T + lam I + s_j v v^T) z_j = F (C_j * R_j) + e_j."""
    d = F.shape[0]
    Z = np.zeros((d, R.shape[0]))
    for j in range(R.shape[0]):
        A = F @ np.diag(C[j]) @ F.T + lam * np.eye(d)
        b = F @ (C[j] * R[j])
        if s is not None:
            A = A + s[j] * np.outer(v, v)
        if e is not None:
            b = b + e[:, j]
        Z[:, j] = np.linalg.solve(A, b)
    return Z


def np_update_X(Y, R, C, lam):
    return np_solve_rows(Y, R, C, lam)


def np_update_Y(X, R, C, lam):
    return np_solve_rows(X, R.T, C.T, lam)


def np_objective(X, Y, R, C, lam):
    return np.sum(C * (R - X.T @ Y) ** 2) + lam * (np.sum(X**2) + np.sum(Y**2))


def random_problem(seed, m=6, n=13, d=3, p_zero=0.3):
    """R in [0, 1], C uniform with a fraction of exact zeros, one fully unobserved column."""
    rng = np.random.default_rng(seed)
    R = rng.uniform(size=(m, n))
    C = rng.uniform(0.1, 2.0, size=(m, n)) * (rng.uniform(size=(m, n)) > p_zero)
    C[:, 1] = 0.0
    X = rng.normal(size=(d, m))
    Y = rng.normal(size=(d, n))
    return X, Y, R, C


# ----------------------------------------------------------------------------- against the twins


@pytest.mark.parametrize("method", METHODS)
def test_update_X_and_Y_match_numpy_loop(method):
    with jax.enable_x64(True):
        X, Y, R, C = random_problem(0, d=4)
        lam = 0.07
        got_X = update_X(jnp.asarray(Y), jnp.asarray(R), jnp.asarray(C), lam, method=method)
        got_Y = update_Y(jnp.asarray(X), jnp.asarray(R), jnp.asarray(C), lam, method=method)
        assert got_X.dtype == jnp.float64
        np.testing.assert_allclose(got_X, np_update_X(Y, R, C, lam), rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(got_Y, np_update_Y(X, R, C, lam), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_extra_rank_one_term_and_rhs_match_numpy_loop(method):
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        X, _, R, C = random_problem(1, d=4)
        n = R.shape[1]
        s = rng.uniform(0.0, 3.0, size=n)
        s[3] = 0.0
        v = rng.normal(size=4)
        e = rng.normal(size=(4, n))
        lam = 0.2
        want = np_solve_rows(X, R.T, C.T, lam, s, v, e)
        got = update_Y(
            jnp.asarray(X),
            jnp.asarray(R),
            jnp.asarray(C),
            lam,
            extra_gram_scale=jnp.asarray(s),
            extra_gram_vec=jnp.asarray(v),
            extra_rhs=jnp.asarray(e),
            method=method,
        )
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)
        got_rhs_only = update_Y(
            jnp.asarray(X), jnp.asarray(R), jnp.asarray(C), lam, extra_rhs=jnp.asarray(e)
        )
        np.testing.assert_allclose(
            got_rhs_only, np_solve_rows(X, R.T, C.T, lam, e=e), rtol=1e-8, atol=1e-8
        )


def test_auto_uses_lapack_above_unroll_limit_and_still_matches():
    with jax.enable_x64(True):
        d = ridge.UNROLL_MAX_DIM + 1
        rng = np.random.default_rng(2)
        F = rng.normal(size=(d, 40))
        R = rng.uniform(size=(5, 40))
        C = rng.uniform(size=(5, 40)) * (rng.uniform(size=(5, 40)) > 0.2)
        got = solve_rows(jnp.asarray(F), jnp.asarray(R), jnp.asarray(C), 0.1)
        np.testing.assert_allclose(got, np_solve_rows(F, R, C, 0.1), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(
    "d, rows, want",
    [
        (4, ridge.UNROLL_MIN_ROWS, "unrolled"),
        (ridge.UNROLL_MAX_DIM + 1, ridge.UNROLL_MIN_ROWS, "looped"),
        (4, ridge.UNROLL_MIN_ROWS - 1, "lapack"),
        (ridge.UNROLL_MAX_DIM + 1, ridge.UNROLL_MIN_ROWS - 1, "lapack"),
    ],
)
def test_auto_dispatch(d, rows, want):
    F = jax.ShapeDtypeStruct((d, 3), jnp.float32)
    RC = jax.ShapeDtypeStruct((rows, 3), jnp.float32)
    # a (zero) rank-one term: no shared-Gram branch (one dense Cholesky, `solve_shared`) beside the
    # per-row back-end whose choice this checks
    extras = dict(extra_gram_scale=jnp.zeros((rows,)), extra_gram_vec=jnp.zeros((d,)))
    jaxpr = jax.make_jaxpr(lambda F, R, C: ridge.solve_rows(F, R, C, 0.1, **extras))(F, RC, RC)
    names = _primitive_names(jaxpr.jaxpr)
    assert ("cholesky" in names) == (want == "lapack")
    assert any(name.startswith("custom_vjp_call") for name in names) == (want == "looped")


def _primitive_names(jaxpr) -> set[str]:
    """Every primitive in a jaxpr, including those of its sub-jaxprs (scan, cond, custom_vjp)."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(item, "jaxpr", item)
                if hasattr(inner, "eqns"):
                    names |= _primitive_names(inner)
    return names


# ----------------------------------------------------------------------------- optimality


def test_half_steps_zero_the_gradient():
    with jax.enable_x64(True):
        X, Y, R, C = (jnp.asarray(a) for a in random_problem(3, d=3))
        lam = jnp.asarray(0.05)
        grad_X = jax.jit(jax.grad(ridge.objective, argnums=0))
        grad_Y = jax.jit(jax.grad(ridge.objective, argnums=1))
        scale_X = jnp.max(jnp.abs(grad_X(X, Y, R, C, lam)))
        scale_Y = jnp.max(jnp.abs(grad_Y(X, Y, R, C, lam)))
        X1 = update_X(Y, R, C, lam)
        assert jnp.max(jnp.abs(grad_X(X1, Y, R, C, lam))) < 1e-10 * scale_X
        Y1 = update_Y(X1, R, C, lam)
        assert jnp.max(jnp.abs(grad_Y(X1, Y1, R, C, lam))) < 1e-10 * scale_Y


def test_objective_is_the_unnormalised_reconstruction_loss():
    with jax.enable_x64(True):
        X, Y, R, C = random_problem(4)
        n = R.shape[1]
        problem = Problem(
            R=jnp.asarray(R),
            C=jnp.asarray(C),
            observed=jnp.asarray(C > 0),
            labels=jnp.zeros(n),
            labeled=jnp.zeros(n, bool),
            validation=jnp.zeros(n, bool),
        )
        hparams = Hparams.create(lam=0.3)
        _, recon_sum = losses.reconstruction_parts(
            Params(jnp.asarray(X), jnp.asarray(Y), None), problem, hparams
        )
        got = ridge.objective(jnp.asarray(X), jnp.asarray(Y), problem.R, problem.C, hparams.lam)
        np.testing.assert_allclose(got, recon_sum, rtol=1e-12)
        np.testing.assert_allclose(got, np_objective(X, Y, R, C, 0.3), rtol=1e-12)


def _sweeps(X, Y, R, C, lam, n_sweeps=20):
    def step(carry, _):
        X, Y = ridge.als_sweep(*carry, R, C, lam)
        return (X, Y), ridge.objective(X, Y, R, C, lam)

    _, objs = jax.lax.scan(step, (X, Y), None, length=n_sweeps)
    return jnp.concatenate([ridge.objective(X, Y, R, C, lam)[None], objs])


_sweeps_jit = jax.jit(_sweeps)


@given(
    seed=st.integers(0, 2**31 - 1),
    lam=st.floats(1e-3, 10.0),
    p_zero=st.sampled_from([0.0, 0.3, 0.8]),
)
def test_objective_non_increasing_over_20_sweeps(seed, lam, p_zero):
    with jax.enable_x64(True):
        X, Y, R, C = (jnp.asarray(a) for a in random_problem(seed, m=5, n=11, d=3, p_zero=p_zero))
        objs = np.asarray(_sweeps_jit(X, Y, R, C, jnp.asarray(lam)))
        assert np.all(np.isfinite(objs))
        assert np.all(np.diff(objs) <= 1e-10 * objs[:-1]), objs


# ----------------------------------------------------------------------------- zeros and padding


def test_zero_confidence_padding_is_a_no_op():
    with jax.enable_x64(True):
        _, Y, R, C = random_problem(5, d=3)
        m = R.shape[0]
        rng = np.random.default_rng(5)
        R_pad = np.concatenate([R, rng.uniform(size=(m, 4))], axis=1)  # junk targets, ignored
        C_pad = np.concatenate([C, np.zeros((m, 4))], axis=1)
        Y_pad = np.concatenate(
            [Y, rng.normal(size=(3, 4))], axis=1
        )  # padding factors are ignored too
        lam = 0.1
        X1 = update_X(jnp.asarray(Y), jnp.asarray(R), jnp.asarray(C), lam)
        X1_pad = update_X(jnp.asarray(Y_pad), jnp.asarray(R_pad), jnp.asarray(C_pad), lam)
        np.testing.assert_allclose(X1_pad, X1, rtol=1e-12, atol=1e-12)
        Y1_pad = update_Y(X1_pad, jnp.asarray(R_pad), jnp.asarray(C_pad), lam)
        assert np.all(np.asarray(Y1_pad[:, -4:]) == 0.0)
        assert np.all(np.asarray(Y1_pad[:, 1]) == 0.0)  # the unobserved column of random_problem
        Y1 = update_Y(X1, jnp.asarray(R), jnp.asarray(C), lam)
        np.testing.assert_allclose(Y1_pad[:, :-4], Y1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lam_zero_singular_rows_are_finite_and_fit_like_least_squares(method, dtype):
    """k = 2 < d = 4: every Gram is singular. A row of zeros solves to 0, others fit the data."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(6)
        d, k, rows = 4, 2, 6
        F = rng.normal(size=(d, k))
        R = rng.uniform(size=(rows, k))
        C = rng.uniform(0.5, 1.5, size=(rows, k))
        C[0] = 0.0
        Z = solve_rows(
            jnp.asarray(F, dtype), jnp.asarray(R, dtype), jnp.asarray(C, dtype), 0.0, method=method
        )
        Z = np.asarray(Z, np.float64)
        assert np.all(np.isfinite(Z))
        assert np.all(Z[:, 0] == 0.0)
        # k <= d with F of full column rank: least squares interpolates the targets exactly.
        tol = 1e-3 if dtype == np.float32 else 1e-6
        np.testing.assert_allclose((F.T @ Z)[:, 1:], R[1:].T, atol=tol)


@pytest.mark.parametrize("method", METHODS)
def test_all_zero_confidence_row_solves_to_exactly_zero(method):
    F = jnp.asarray(np.random.default_rng(7).normal(size=(3, 5)), jnp.float32)
    R = jnp.ones((2, 5), jnp.float32)
    C = jnp.zeros((2, 5), jnp.float32).at[1].set(1.0)
    Z = solve_rows(F, R, C, 0.5, method=method)
    assert np.all(np.asarray(Z[:, 0]) == 0.0)
    assert np.all(np.asarray(Z[:, 1]) != 0.0)


@pytest.mark.parametrize("method", METHODS)
def test_gradient_in_lam_and_factors_matches_finite_differences(method):
    """lam is traced and differentiable (for hyper-gradients through the solves)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(13)
        F, R = rng.normal(size=(3, 8)), rng.uniform(size=(5, 8))
        C = rng.uniform(size=(5, 8)) * (rng.uniform(size=(5, 8)) > 0.3)
        W = rng.normal(size=(3, 5))  # a random linear functional of Z

        def f(F, lam):
            Z = ridge.solve_rows(F, jnp.asarray(R), jnp.asarray(C), lam, method=method)
            return jnp.sum(jnp.asarray(W) * Z)

        g_F, g_lam = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.asarray(F), jnp.asarray(0.3))
        h = 1e-6
        fd_lam = (
            np.sum(W * np_solve_rows(F, R, C, 0.3 + h))
            - np.sum(W * np_solve_rows(F, R, C, 0.3 - h))
        ) / (2 * h)
        np.testing.assert_allclose(g_lam, fd_lam, rtol=1e-6)
        E = np.zeros_like(F)
        E[1, 4] = 1.0
        fd_F = (
            np.sum(W * np_solve_rows(F + h * E, R, C, 0.3))
            - np.sum(W * np_solve_rows(F - h * E, R, C, 0.3))
        ) / (2 * h)
        np.testing.assert_allclose(g_F[1, 4], fd_F, rtol=1e-6)


# ------------------------------------------------------------------- chunks, dtypes, tracing


@pytest.mark.parametrize("method", METHODS)
def test_chunked_equals_unchunked(method):
    with jax.enable_x64(True):
        rng = np.random.default_rng(8)
        X, _, R, C = (jnp.asarray(a) for a in random_problem(8, n=12, d=3))
        n = R.shape[1]
        s = jnp.asarray(rng.uniform(size=n))
        v = jnp.asarray(rng.normal(size=3))
        e = jnp.asarray(rng.normal(size=(3, n)))
        kw = {"extra_gram_scale": s, "extra_gram_vec": v, "extra_rhs": e, "method": method}
        full = update_Y(X, R, C, 0.1, **kw)
        for chunk in (4, 5):  # divides n = 12, does not divide it
            np.testing.assert_allclose(
                update_Y(X, R, C, 0.1, chunk_size=chunk, **kw), full, rtol=1e-12, atol=1e-12
            )
        Y = jnp.asarray(rng.normal(size=(3, n)))
        np.testing.assert_allclose(
            update_X(Y, R, C, 0.1, chunk_size=4, method=method),
            update_X(Y, R, C, 0.1, method=method),
            rtol=1e-12,
            atol=1e-12,
        )


@pytest.mark.parametrize("method", METHODS)
def test_update_X_chunked_over_instances_matches_unchunked_and_numpy(method):
    """update_X sums the Grams over chunks of n; the last chunk overlaps and is masked."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(14)
        _, Y, R, C = random_problem(14, m=5, n=37, d=3)
        Y, R, C = (jnp.asarray(a) for a in (Y, R, C))
        s, v = jnp.asarray(rng.uniform(size=5)), jnp.asarray(rng.normal(size=3))
        e = jnp.asarray(rng.normal(size=(3, 5)))
        want = np_solve_rows(np.asarray(Y), np.asarray(R), np.asarray(C), 0.1, s, v, e)
        kw = {"extra_gram_scale": s, "extra_gram_vec": v, "extra_rhs": e, "method": method}
        full = update_X(Y, R, C, 0.1, chunk_size=37, **kw)
        np.testing.assert_allclose(full, want, rtol=1e-10, atol=1e-10)
        for chunk in (1, 8, 10, 36):  # 37 = 4 x 9 + 1: every chunk size leaves a remainder
            got = update_X(Y, R, C, 0.1, chunk_size=chunk, **kw)
            np.testing.assert_allclose(got, full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_sweep_chunked_matches_unchunked_and_numpy(method):
    with jax.enable_x64(True):
        X, Y, R, C = random_problem(15, m=4, n=29, d=3)
        args = [jnp.asarray(a) for a in (X, Y, R, C)]
        want_X = np_update_X(Y, R, C, 0.2)
        want_Y = np_update_Y(want_X, R, C, 0.2)
        full = als_sweep(*args, 0.2, chunk_size=29, method=method)
        np.testing.assert_allclose(full[0], want_X, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(full[1], want_Y, rtol=1e-10, atol=1e-10)
        for chunk in (4, 7, 28):
            got = als_sweep(*args, 0.2, chunk_size=chunk, method=method)
            for g, f in zip(got, full):
                np.testing.assert_allclose(g, f, rtol=1e-12, atol=1e-12)


def test_float32_chunked_close_to_unchunked():
    """In float32 the chunked sums only reassociate: agreement to a few ulps of the scale."""
    X, Y, R, C = (jnp.asarray(a, jnp.float32) for a in random_problem(16, m=6, n=300, d=4))
    full = als_sweep(X, Y, R, C, 0.1, chunk_size=300)
    got = als_sweep(X, Y, R, C, 0.1, chunk_size=64)
    for g, f in zip(got, full):
        np.testing.assert_allclose(g, f, rtol=1e-4, atol=1e-5)


def test_gram_packed_chunked_matches_one_gemm():
    with jax.enable_x64(True):
        rng = np.random.default_rng(17)
        F, C = jnp.asarray(rng.normal(size=(4, 50))), jnp.asarray(rng.uniform(size=(3, 50)))
        full = ridge.gram_packed(F, C, chunk_size=50)
        for chunk in (7, 25, 49):
            np.testing.assert_allclose(
                ridge.gram_packed(F, C, chunk_size=chunk), full, rtol=1e-12, atol=1e-12
            )


def test_default_chunk_size():
    # small problems: one chunk
    assert ridge.default_chunk_size(8, 1000, backend="cpu") == 1000
    # large: a multiple of 128 within bounds, whose packed Grams fit CHUNK_BYTES
    chunk = ridge.default_chunk_size(32, 1_000_000, backend="cpu")
    assert chunk % 128 == 0 and 256 <= chunk <= 16384
    assert chunk * 528 * 4 <= ridge.CHUNK_BYTES
    assert ridge.default_chunk_size(32, 1_000_000, jnp.float64, backend="cpu") < chunk
    # the backend defaults to JAX's
    assert ridge.default_chunk_size(32, 1_000_000) == ridge.default_chunk_size(32, 1_000_000, backend=jax.default_backend())


def test_default_chunk_size_off_cpu_is_sized_by_memory():
    """On an accelerator a chunk fills ACCELERATOR_CHUNK_BYTES (no 16384 cap): at (d, n) =
    (32, 1e6) float32 eight chunks of 127k instances, not ~1000 of CPU size."""
    chunk = ridge.default_chunk_size(32, 1_000_000, backend="gpu")
    assert chunk % 128 == 0 and chunk > 16384
    assert chunk * 528 * 4 <= ridge.ACCELERATOR_CHUNK_BYTES < (chunk + 128) * 528 * 4
    assert -(-1_000_000 // chunk) == 8
    assert ridge.default_chunk_size(16, 100_000, backend="gpu") == 100_000  # fits: one chunk


def test_update_X_memory_is_bounded_by_the_chunk():
    """The point of chunking over n: no (d(d+1)/2, n) temporary (here 136 x 2e5 f32 = 109 MB)."""
    m, n, d = 4, 200_000, 16
    S = jax.ShapeDtypeStruct
    args = (S((d, n), jnp.float32), S((m, n), jnp.float32), S((m, n), jnp.float32), 0.1)
    cpu_chunk = ridge.default_chunk_size(d, n, jnp.float32, backend="cpu")  # the default here
    chunked = jax.jit(ridge.update_X, static_argnames="chunk_size").lower(*args, chunk_size=cpu_chunk)
    chunked = chunked.compile().memory_analysis()
    whole = jax.jit(ridge.update_X, static_argnames="chunk_size").lower(*args, chunk_size=n)
    whole = whole.compile().memory_analysis()
    packed_bytes = d * (d + 1) // 2 * n * 4
    assert whole.temp_size_in_bytes >= packed_bytes
    assert chunked.temp_size_in_bytes < packed_bytes / 20


def test_float32_close_to_float64():
    X, Y, R, C = random_problem(9, d=3)
    lam = 0.1
    with jax.enable_x64(True):
        want = als_sweep(*(jnp.asarray(a) for a in (X, Y, R, C)), lam)
    got = als_sweep(*(jnp.asarray(a, jnp.float32) for a in (X, Y, R, C)), lam)
    for g, w in zip(got, want):
        assert g.dtype == jnp.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_new_lam_does_not_retrace():
    X, Y, R, C = (jnp.asarray(a, jnp.float32) for a in random_problem(10))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def sweep(X, Y, lam):
        return ridge.als_sweep(X, Y, R, C, lam, chunk_size=4)

    a = sweep(X, Y, jnp.float32(0.1))
    b = sweep(X, Y, jnp.float32(0.2))
    c = sweep(X, Y, jnp.float32(0.2))
    assert not np.allclose(a[0], b[0])
    np.testing.assert_array_equal(b[0], c[0])


@pytest.mark.parametrize("method", METHODS)
def test_vmap_over_lam_equals_loop(method):
    with jax.enable_x64(True):
        X, Y, R, C = (jnp.asarray(a) for a in random_problem(11, d=3))
        lams = jnp.asarray([0.01, 0.3, 2.0])  # > 0: with lam = 0 the null-space part is arbitrary
        sweep = lambda lam: ridge.als_sweep(X, Y, R, C, lam, chunk_size=5, method=method)
        Xs, Ys = jax.jit(jax.vmap(sweep))(lams)
        for i, lam in enumerate(lams):
            X1, Y1 = als_sweep(X, Y, R, C, lam, chunk_size=5, method=method)
            np.testing.assert_allclose(Xs[i], X1, rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(Ys[i], Y1, rtol=1e-10, atol=1e-10)


def test_gram_packed_matches_dense():
    rng = np.random.default_rng(12)
    F, C = rng.normal(size=(4, 7)), rng.uniform(size=(3, 7))
    with jax.enable_x64(True):
        G = np.asarray(ridge.gram_packed(jnp.asarray(F), jnp.asarray(C)))
    a, b = np.tril_indices(4)
    for j in range(3):
        np.testing.assert_allclose(G[:, j], (F @ np.diag(C[j]) @ F.T)[a, b], rtol=1e-12)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"R": np.zeros((3, 6))}, "R"),
        ({"C": np.zeros((3, 4))}, "C"),
        ({"F": np.zeros(5)}, "F"),
        ({"lam": np.ones(2)}, "lam"),
        ({"extra_gram_scale": np.ones(3)}, "extra_gram_scale"),
        ({"extra_gram_scale": np.ones(4), "extra_gram_vec": np.ones(2)}, "extra_gram_scale"),
        ({"extra_gram_scale": np.ones(3), "extra_gram_vec": np.ones(3)}, "extra_gram_vec"),
        ({"extra_rhs": np.ones((3, 2))}, "extra_rhs"),
        ({"chunk_size": -1}, "chunk_size"),
        ({"chunk_size": 1.5}, "chunk_size"),
        ({"method": "qr"}, "method"),
    ],
)
@pytest.mark.usefixtures("without_type_checks")
def test_validation_names_the_argument(kwargs, name):
    args = {"F": np.ones((2, 5)), "R": np.zeros((3, 5)), "C": np.ones((3, 5)), "lam": 0.1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        ridge.solve_rows(**args)


@pytest.mark.parametrize("layout", ["uniform", "per_classifier"])
def test_one_shared_gram_when_the_confidence_does_not_vary(layout):
    """Complete data under uniform confidence (or any C constant across instances): every
    instance's system has the same Gram, factorised once (`solve_shared`); the same solutions as
    the loop, and the same gradient through update_Y as finite differences (fold-in joint
    differentiates it). update_X (m systems, few) keeps the per-row path; checked on the same C."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        d, m, n = 4, 6, 120
        X, Y, R = rng.normal(size=(d, m)), rng.normal(size=(d, n)), rng.random((m, n))
        per_row = np.ones((m, 1)) if layout == "uniform" else rng.random((m, 1)) + 0.5
        C_cols = np.repeat(per_row, n, axis=1)  # every instance's system: X diag(c) X^T
        C_rows = np.repeat(rng.random((1, n)) + 0.5 if layout != "uniform" else np.ones((1, n)), m, axis=0)
        for chunk in (0, 50):
            Y_fast = ridge.update_Y(X, R, C_cols, 0.1, chunk_size=chunk)
            X_fast = ridge.update_X(Y, R, C_rows, 0.1, chunk_size=chunk)
            np.testing.assert_allclose(np.asarray(Y_fast), np_update_Y(X, R, C_cols, 0.1), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(np.asarray(X_fast), np_update_X(Y, R, C_rows, 0.1), rtol=1e-10, atol=1e-12)
        f = lambda X: jnp.sum(ridge.update_Y(X, R, C_cols, 0.1) ** 2)
        grad = np.asarray(jax.grad(f)(jnp.asarray(X)))
        for a, u in ((0, 0), (2, 3), (3, 5)):
            e = np.zeros((d, m))
            e[a, u] = 1e-6
            assert grad[a, u] == pytest.approx((float(f(X + e)) - float(f(X - e))) / 2e-6, rel=1e-6)

