"""Confidence strategies against their formulas; unobserved cells stay at zero."""

import jax
import numpy as np
import pytest

import cfjax
from cfjax import confidence, data, predict, ridge
from cfjax.structs import Hparams


@pytest.fixture
def problem():
    return data.synthetic(jax.random.key(0), n_classifiers=5, n_instances=40, missing_rate=0.2).problem


@pytest.mark.parametrize("name", sorted(confidence.STRATEGIES))
def test_unobserved_cells_stay_zero_and_values_finite(problem, name):
    C = np.asarray(confidence.apply(name, problem, Hparams.create()).C)
    assert np.isfinite(C).all() and (C >= 0).all()
    assert (C[~np.asarray(problem.observed)] == 0).all()


def test_label_aware_formula(problem):
    alpha = 0.7
    C = np.asarray(confidence.label_aware(problem, Hparams.create(alpha=alpha)))
    R, C0 = np.asarray(problem.R), np.asarray(problem.C)
    y, lab = np.asarray(problem.labels), np.asarray(problem.labeled)
    for u in range(R.shape[0]):
        for i in range(R.shape[1]):
            if not lab[i]:
                expected = C0[u, i]
            elif y[i] == 1:
                expected = C0[u, i] * (1 + alpha * R[u, i])
            else:
                expected = C0[u, i] * (1 + alpha * (1 - R[u, i]))
            np.testing.assert_allclose(C[u, i], expected, rtol=1e-6)


def test_certainty_and_calibration_formulas(problem):
    hp = Hparams.create(certainty_floor=0.05)
    R, C0, obs = np.asarray(problem.R), np.asarray(problem.C), np.asarray(problem.observed)
    np.testing.assert_allclose(
        np.asarray(confidence.certainty(problem, hp)), C0 * (np.abs(R - 0.5) + 0.05), rtol=1e-6
    )
    y, lab = np.asarray(problem.labels), np.asarray(problem.labeled)
    cal = np.asarray(confidence.calibration(problem, hp))
    for u in range(R.shape[0]):
        cells = obs[u] & lab
        brier = np.mean((R[u, cells] - y[cells]) ** 2)
        np.testing.assert_allclose(cal[u], C0[u] * (1 - brier), rtol=1e-5)


def test_agreement_is_high_where_classifiers_agree():
    R = np.array([[0.9, 0.1], [0.9, 0.9], [0.9, 0.5]])
    p = data.from_numpy(R, [1, 0])
    C = np.asarray(confidence.agreement(p, Hparams.create()))
    assert (C[:, 0] > C[:, 1]).all()


def test_unknown_strategy_raises():
    with pytest.raises(ValueError, match="confidence: unknown strategy"):
        confidence.get("nope")


def test_fold_in_uses_the_weights_learned_at_training(problem):
    """Issue 14's bug: fold-in recomputed "calibration" from the new columns (which carry no
    labels, so every classifier weighed 1); it must solve the system the fit solved."""
    config = cfjax.Config(method="als", latent_dim=3, max_iter=5, confidence="calibration")
    hparams = cfjax.solvers.get("als").hparams()
    result = cfjax.fit(jax.random.key(0), problem, hparams, config)
    learned = np.asarray(result.info["confidence"]["classifier_weight"])
    assert np.ptp(learned) > 0.01  # the classifiers differ, so the weights matter
    unlabeled = problem._replace(labeled=np.zeros_like(problem.labeled))  # new columns: no labels
    Y = predict.fold_in(result, unlabeled, hparams, config)
    expected = ridge.update_Y(result.params.X, problem.R, problem.C * learned[:, None], hparams.lam)
    np.testing.assert_allclose(np.asarray(Y), np.asarray(expected), rtol=1e-5, atol=1e-6)
    with_labels = predict.fold_in(result, problem, hparams, config)  # labels of new columns are not read
    np.testing.assert_allclose(np.asarray(Y), np.asarray(with_labels), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="learns from the training labels"):
        predict.fold_in(result.params, unlabeled, hparams, config)
