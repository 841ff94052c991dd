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
