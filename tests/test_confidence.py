"""Confidence strategies against their formulas; unobserved cells stay at zero."""

import jax
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

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


# ---------------------------------------------------------------------------------- learned


def _features_loop(R, observed):
    """The reliability features written out per cell."""
    m, n = R.shape
    out = np.zeros((4, m, n))
    for u in range(m):
        for i in range(n):
            if not observed[u, i]:
                continue
            others = [2 * R[v, i] - 1 for v in range(m) if v != u and observed[v, i]]
            consensus = np.mean(others) if others else 0.0
            own = 2 * R[u, i] - 1
            out[:, u, i] = abs(own), own * consensus, abs(consensus), own
    return out


def test_reliability_features_equal_a_loop(problem):
    got = np.asarray(confidence.reliability_features(problem))
    want = _features_loop(np.asarray(problem.R, np.float64), np.asarray(problem.observed))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_learned_reliability_is_cross_fitted():
    """No labeled column's label sets its own confidence: flipping it leaves its column of C as
    it was (its fold's model never saw it), while the model of all labels moves."""
    problem = data.synthetic(jax.random.key(1), n_classifiers=6, n_instances=120, labeled_fraction=0.5).problem
    hp = Hparams.create()
    C = np.asarray(confidence.apply("learned", problem, hp).C)
    i = int(np.flatnonzero(np.asarray(problem.labeled))[3])
    flipped = problem._replace(labels=problem.labels.at[i].set(1.0 - problem.labels[i]))
    C_flipped = np.asarray(confidence.apply("learned", flipped, hp).C)
    np.testing.assert_array_equal(C_flipped[:, i], C[:, i])
    unlabeled = ~np.asarray(problem.labeled)
    assert np.abs(C_flipped[:, unlabeled] - C[:, unlabeled]).max() > 1e-6


def test_learned_reliability_predicts_which_classifier_is_right():
    ens = data.preset(jax.random.key(0), "seed", n_instances=2000)
    p = ens.problem
    reliability = np.asarray(confidence.apply("learned", p, Hparams.create()).C / p.C)
    right = (np.asarray(p.R) > 0.5) == (ens.y_true[None, :] > 0.5)
    test = np.asarray(ens.test)
    assert roc_auc_score(right[:, test].ravel(), reliability[:, test].ravel()) > 0.7


@pytest.mark.parametrize("method", ["als", "two_stage", "joint", "mm_als"])
def test_learned_confidence_changes_every_fit(problem, method):
    config = cfjax.Config(method=method, latent_dim=3, max_iter=10)
    plain = cfjax.fit(jax.random.key(0), problem, None, config)
    learned = cfjax.fit(jax.random.key(0), problem, None, config.replace(confidence="learned"))
    assert np.abs(np.asarray(learned.params.Y) - np.asarray(plain.params.Y)).max() > 1e-4
    assert set(learned.info["confidence"]) == {"coef", "fold_coef"}


def test_fold_in_reads_no_label_of_the_new_columns(problem):
    config = cfjax.Config(method="als", latent_dim=3, max_iter=5, confidence="learned")
    hparams = cfjax.solvers.get("als").hparams()
    result = cfjax.fit(jax.random.key(0), problem, hparams, config)
    unlabeled = problem._replace(labeled=np.zeros_like(problem.labeled))
    Y = predict.fold_in(result, unlabeled, hparams, config)
    reliability = confidence.learned_reliability(result.info["confidence"], unlabeled)
    expected = ridge.update_Y(result.params.X, problem.R, problem.C * reliability, hparams.lam)
    np.testing.assert_allclose(np.asarray(Y), np.asarray(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(predict.fold_in(result, problem, hparams, config)), np.asarray(Y),
                               rtol=1e-6, atol=1e-7)
