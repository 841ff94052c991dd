"""Baselines and the Newton logistic regression behind stacking and two-stage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from cfjax import baselines, data
from cfjax.logistic import fit_logistic, logistic_loss


def _ensemble(seed=0, n=300, missing_rate=0.0):
    return data.synthetic(jax.random.key(seed), n_instances=n, missing_rate=missing_rate)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stacking_matches_sklearn_logistic_regression(seed):
    ens = _ensemble(seed)
    p = ens.problem
    R, labeled = np.asarray(p.R, np.float64), np.asarray(p.labeled)
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(R[:, labeled].T, np.asarray(p.labels)[labeled])
    ours = np.asarray(baselines.stacking(p))
    np.testing.assert_allclose(ours, ref.predict_proba(R.T)[:, 1], atol=1e-3)


def test_simple_average_ignores_missing_cells():
    R = np.array([[0.2, np.nan, 0.9], [0.4, 0.6, np.nan]])
    p = data.from_numpy(R, [0, 1, -1])
    np.testing.assert_allclose(np.asarray(baselines.simple_average(p)), [0.3, 0.6, 0.9], rtol=1e-6)


def test_best_single_picks_the_best_labeled_model_without_hidden_labels():
    ens = _ensemble(3)
    p = ens.problem
    R, y, lab = np.asarray(p.R), np.asarray(p.labels), np.asarray(p.labeled)
    expected = int(np.argmax([average_precision_score(y[lab], r[lab]) for r in R]))
    np.testing.assert_allclose(np.asarray(baselines.best_single(p)), R[expected], rtol=1e-6)
    # hidden labels play no part: scrambling them changes nothing
    scrambled = p._replace(labels=jnp.where(p.labeled, p.labels, 1.0 - p.labels))
    np.testing.assert_array_equal(np.asarray(baselines.best_single(scrambled)), R[expected])


def test_baselines_are_finite_with_missing_cells():
    p = _ensemble(0, missing_rate=0.3).problem
    for name, fn in baselines.BASELINES.items():
        out = np.asarray(fn(p))
        assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all(), name


def test_fit_logistic_reaches_the_optimum_in_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        F = jnp.asarray(rng.normal(size=(3, 200)))
        y = jnp.asarray((rng.uniform(size=200) < 0.4).astype(float))
        omega = jnp.asarray(rng.uniform(0.5, 2.0, size=200))
        l2 = jnp.asarray(0.01)
        w, b = fit_logistic(F, y, omega, l2)
        grad = jax.grad(logistic_loss, argnums=(0, 1))(w, b, F, y, omega, l2)
        assert max(float(jnp.max(jnp.abs(g))) for g in grad) < 1e-10


def test_fit_logistic_is_finite_on_separable_data():
    F = jnp.asarray([[0.0, 0.1, 0.9, 1.0]])
    y = jnp.asarray([0.0, 0.0, 1.0, 1.0])
    w, b = fit_logistic(F, y, jnp.ones(4), jnp.asarray(0.0))
    assert np.isfinite(np.asarray(w)).all() and np.isfinite(float(b))
