"""The combined objective: reference loop, gradients, limits, normalisation, missing cells."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfjax import aggregators, data, losses
from cfjax.aggregators import WeightedTheta
from cfjax.structs import Config, Hparams, Params
from tests import reference


def _setup(seed=0, m=4, n=9, d=2, missing=True):
    rng = np.random.default_rng(seed)
    R = rng.uniform(size=(m, n))
    if missing:
        R[1, 2] = np.nan
        R[3, 7] = np.nan
    labels = np.array([0, 1, 1, 0, 1, -1, -1, 0, -1], float)[:n]
    problem = data.from_numpy(R, labels, confidence=rng.uniform(0.5, 2.0, size=(m, n)))
    params = Params(
        X=jnp.asarray(rng.normal(size=(d, m))),
        Y=jnp.asarray(rng.normal(size=(d, n))),
        theta=WeightedTheta(w=jnp.asarray(rng.normal(size=m)), b=jnp.asarray(0.3)),
    )
    return problem, params


@pytest.mark.parametrize("class_weight", [True, False])
@pytest.mark.parametrize("focal_gamma", [0.0, 2.0])
def test_loss_matches_numpy_loop(class_weight, focal_gamma):
    with jax.enable_x64(True):
        problem, params = _setup()
        hp = Hparams.create(rho=0.3, lam=0.05, agg_l2=0.01, focal_gamma=focal_gamma)
        cfg = Config(class_weight=class_weight)
        parts = losses.loss_parts(params, problem, hp, cfg)
        ref_total, ref_recon, ref_sup = reference.combined_loss(
            *(np.asarray(a) for a in (params.X, params.Y, params.theta.w)), float(params.theta.b),
            np.asarray(problem.R), np.asarray(problem.C), np.asarray(problem.labels),
            np.asarray(problem.labeled), 0.3, 0.05, 0.01, focal_gamma, class_weight,
        )
        np.testing.assert_allclose(float(parts.total), ref_total, rtol=1e-10)
        np.testing.assert_allclose(float(parts.recon), ref_recon, rtol=1e-10)
        np.testing.assert_allclose(float(parts.sup), ref_sup, rtol=1e-10)


def _finite_difference_check(f, params, eps=1e-6, n_dirs=5, seed=0):
    rng = np.random.default_rng(seed)
    grad = jax.grad(f)(params)
    for _ in range(n_dirs):
        direction = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
        plus = jax.tree.map(lambda a, v: a + eps * v, params, direction)
        minus = jax.tree.map(lambda a, v: a - eps * v, params, direction)
        numeric = (f(plus) - f(minus)) / (2 * eps)
        analytic = sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
        np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("part", ["total", "recon", "sup"])
@pytest.mark.parametrize("focal_gamma", [0.0, 1.5])
def test_gradients_match_finite_differences(part, focal_gamma):
    with jax.enable_x64(True):
        problem, params = _setup()
        hp = Hparams.create(rho=0.4, lam=0.02, focal_gamma=focal_gamma)
        cfg = Config()
        _finite_difference_check(lambda p: getattr(losses.loss_parts(p, problem, hp, cfg), part), params)


def test_rho_limits():
    problem, params = _setup()
    cfg = Config()
    parts = losses.loss_parts(params, problem, Hparams.create(rho=0.5), cfg)
    at0 = losses.loss(params, problem, Hparams.create(rho=0.0), cfg)
    at1 = losses.loss(params, problem, Hparams.create(rho=1.0), cfg)
    np.testing.assert_allclose(float(at0), float(parts.sup), rtol=1e-6)
    np.testing.assert_allclose(float(at1), float(parts.recon), rtol=1e-6)


def test_rho_zero_gives_no_gradient_to_unlabeled_instance_factors():
    problem, params = _setup()
    grad = jax.grad(losses.loss)(params, problem, Hparams.create(rho=0.0), Config())
    unlabeled = ~np.asarray(problem.labeled)
    assert np.all(np.asarray(grad.Y)[:, unlabeled] == 0.0)


def test_normalisation_invariant_to_duplicating_columns():
    # lam = 0: the penalty on X is not duplicated with the columns, by design
    problem, params = _setup(missing=False)
    hp = Hparams.create(lam=0.0)
    cfg = Config()
    twice = problem._replace(**{
        f: jnp.concatenate([getattr(problem, f)] * 2, axis=-1)
        for f in ("R", "C", "observed", "labels", "labeled", "validation")
    })
    params2 = params._replace(Y=jnp.concatenate([params.Y] * 2, axis=1))
    a = losses.loss_parts(params, problem, hp, cfg)
    b = losses.loss_parts(params2, twice, hp, cfg)
    np.testing.assert_allclose(float(a.recon), float(b.recon), rtol=1e-5)
    np.testing.assert_allclose(float(a.sup), float(b.sup), rtol=1e-5)
    np.testing.assert_allclose(2 * float(a.recon_sum), float(b.recon_sum), rtol=1e-5)


def test_missing_cells_change_nothing_and_give_finite_gradients():
    problem, params = _setup(missing=True)
    hp, cfg = Hparams.create(), Config()
    # changing what an unobserved cell "holds" must not move the loss
    poked = problem._replace(R=problem.R.at[1, 2].set(0.9))
    np.testing.assert_allclose(
        float(losses.loss(params, problem, hp, cfg)), float(losses.loss(params, poked, hp, cfg)), rtol=1e-7
    )
    grad = jax.grad(losses.loss)(params, problem, hp, cfg)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grad))


def test_cross_entropy_is_finite_for_saturated_logits():
    logits = jnp.asarray([-1e4, -50.0, 0.0, 50.0, 1e4])
    for y in (0.0, 1.0):
        for gamma in (0.0, 2.0):
            ce = losses.cross_entropy(jnp.full(5, y), logits, jnp.asarray(gamma))
            g = jax.grad(lambda s, y=y, gamma=gamma: losses.cross_entropy(jnp.full(5, y), s, jnp.asarray(gamma)).sum())(logits)
            assert np.isfinite(np.asarray(ce)).all() and np.isfinite(np.asarray(g)).all()


def test_no_training_column_gives_zero_supervised_loss():
    problem, params = _setup()
    empty = problem._replace(labeled=jnp.zeros_like(problem.labeled))
    sup, _ = losses.supervised_parts(params, empty, Hparams.create(agg_l2=0.0), Config())
    assert float(sup) == 0.0


def test_mean_aggregator_is_the_clipped_mean():
    R_hat = jnp.asarray([[0.2, 1.2], [0.4, -0.1]])
    inputs = aggregators.Inputs(R_hat=R_hat, X=jnp.eye(2), Y=R_hat)
    p = jax.nn.sigmoid(aggregators.mean.logits((), inputs))
    np.testing.assert_allclose(np.asarray(p), [0.3, 0.55], rtol=1e-5)


# --- the fused reconstruction term (issue 19): equal to autodiff of the plain formula ----------


def _plain_squared_error(X, Y, R, C):
    """The obvious formula whose autodiff the fused VJP replaces."""
    return jnp.sum(C * (R - X.T @ Y) ** 2)


def _missing_cells_problem(seed, m, n, d):
    """R, C with about 30 % of the cells missing (C = 0 and R = 0 there, as `data.from_numpy`
    leaves them), random confidences elsewhere, and random factors; float64."""
    rng = np.random.default_rng(seed)
    observed = rng.random((m, n)) > 0.3
    R = np.where(observed, rng.random((m, n)), 0.0)
    C = np.where(observed, rng.uniform(0.2, 2.0, (m, n)), 0.0)
    X, Y = rng.normal(size=(d, m)), rng.normal(size=(d, n))
    return tuple(jnp.asarray(a) for a in (X, Y, R, C))


def _assert_trees_close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        scale = max(float(jnp.max(jnp.abs(y))), 1e-300)
        assert float(jnp.max(jnp.abs(x - y))) <= rtol * scale, (float(jnp.max(jnp.abs(x - y))), scale)


# block sizes: several whole blocks and a remainder, whole blocks only, a single block (>= n)
@pytest.mark.parametrize("m,n,d,block", [(5, 1000, 3, 128), (7, 640, 4, 128), (3, 50, 2, None), (6, 300, 3, 1000)])
def test_fused_squared_error_and_gradients_equal_autodiff(m, n, d, block):
    with jax.enable_x64(True):
        X, Y, R, C = _missing_cells_problem(0, m, n, d)
        fused = lambda X, Y, R, C: losses.weighted_squared_error(X, Y, R, C, block)
        argnums = (0, 1, 2, 3)  # R and C too: their cotangents are hand-written as well
        want = jax.value_and_grad(_plain_squared_error, argnums)(X, Y, R, C)
        _assert_trees_close(jax.jit(jax.value_and_grad(fused, argnums))(X, Y, R, C), want, 1e-10)
        _assert_trees_close(jax.value_and_grad(fused, argnums)(X, Y, R, C), want, 1e-10)  # no jit
        _assert_trees_close(jax.jit(fused)(X, Y, R, C), want[0], 1e-10)  # the value-only primal
        # vmapped over stacked factors (a sweep's configurations), R and C shared
        Xs = jnp.stack([X, 0.5 * X, -X])
        Ys = jnp.stack([Y, 2.0 * Y, Y + 1.0])
        batched = jax.vmap(jax.value_and_grad(fused, (0, 1)), in_axes=(0, 0, None, None))
        plain = jax.vmap(jax.value_and_grad(_plain_squared_error, (0, 1)), in_axes=(0, 0, None, None))
        _assert_trees_close(jax.jit(batched)(Xs, Ys, R, C), plain(Xs, Ys, R, C), 1e-10)


def test_fused_squared_error_keeps_float32():
    X, Y, R, C = (a.astype(jnp.float32) for a in _missing_cells_problem(1, 5, 700, 3))
    value, grads = jax.value_and_grad(losses.weighted_squared_error, (0, 1))(X, Y, R, C, 256)
    assert value.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in grads)
    _assert_trees_close((value, grads), jax.value_and_grad(_plain_squared_error, (0, 1))(X, Y, R, C), 1e-5)


def _plain_loss(params, problem, hp, cfg):
    """The combined loss as it was before the fusion: X^T Y formed once, read by both parts."""
    R_hat = losses.reconstruct(params)
    recon = losses.reconstruction_parts(params, problem, hp, R_hat)[0]
    sup = losses.supervised_parts(params, problem, hp, cfg, R_hat=R_hat)[0]
    return hp.rho * recon + (1.0 - hp.rho) * sup


@pytest.mark.parametrize("aggregator", ["weighted", "prior", "mean", "attention"])
def test_fused_loss_and_gradients_equal_the_plain_expression(aggregator):
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        m, n, d = 6, 700, 3
        R = rng.uniform(size=(m, n))
        R[rng.random((m, n)) < 0.3] = np.nan  # missing cells: C = 0 there
        labels = np.where(rng.random(n) < 0.6, (rng.random(n) < 0.4).astype(float), -1.0)
        problem = data.from_numpy(R, labels, confidence=rng.uniform(0.5, 2.0, size=(m, n)))
        cfg = Config(aggregator=aggregator)
        theta = aggregators.initial_theta(aggregator, jax.random.key(0), m, d, None, jnp.float64)
        if aggregator != "mean":
            theta = theta._replace(w=jnp.asarray(rng.normal(size=m)))
        if aggregator == "attention":
            theta = theta._replace(A=jnp.asarray(rng.normal(size=(d, d))))
        params = Params(X=jnp.asarray(rng.normal(size=(d, m))), Y=jnp.asarray(rng.normal(size=(d, n))), theta=theta)
        grid = Hparams.create(rho=jnp.asarray([0.0, 0.3, 1.0]), lam=jnp.asarray([0.0, 0.05, 1.0]), agg_l2=0.01)
        grid = jax.tree.map(lambda a: jnp.broadcast_to(a, (3,)), grid)
        hp = jax.tree.map(lambda a: a[1], grid)
        fused = jax.value_and_grad(losses.loss)
        plain = jax.value_and_grad(_plain_loss)
        _assert_trees_close(jax.jit(fused, static_argnums=3)(params, problem, hp, cfg), plain(params, problem, hp, cfg), 1e-10)
        # vmapped over Hparams, as a sweep runs it
        over_hp = lambda f: jax.jit(jax.vmap(f, in_axes=(None, None, 0, None)), static_argnums=3)
        _assert_trees_close(over_hp(fused)(params, problem, grid, cfg), over_hp(plain)(params, problem, grid, cfg), 1e-10)


def test_block_size_is_cache_sized_on_cpu_and_one_block_elsewhere():
    assert losses.block_size(100, 1_000_000, jnp.float32, backend="cpu") == 10368  # 4 MiB of R
    assert losses.block_size(100, 1_000_000, jnp.float64, backend="cpu") == 5120
    assert losses.block_size(10, 500, jnp.float32, backend="cpu") == 500  # never more than n
    assert losses.block_size(100, 1_000_000, jnp.float32, backend="gpu") == 1_000_000
