"""Baselines (the classic three, ensemble selection, SML, local competence), the hard-vote peers,
and the Newton logistic regression behind stacking and two-stage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from cfjax import baselines, data, metrics
from cfjax.logistic import fit_logistic, logistic_loss
from tests import reference


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
        # stationary to float64 rounding (1.1e-10 under jax 0.8.0, < 1e-10 under 0.10)
        assert max(float(jnp.max(jnp.abs(g))) for g in grad) < 1e-9


def test_fit_logistic_is_finite_on_separable_data():
    F = jnp.asarray([[0.0, 0.1, 0.9, 1.0]])
    y = jnp.asarray([0.0, 0.0, 1.0, 1.0])
    w, b = fit_logistic(F, y, jnp.ones(4), jnp.asarray(0.0))
    assert np.isfinite(np.asarray(w)).all() and np.isfinite(float(b))


# --- caruana, spectral_meta_learner, local_competence -------------------------------------------

NEW_BASELINES = ("caruana", "spectral_meta_learner", "local_competence")


def _host(p):
    return (np.asarray(p.R, np.float64), np.asarray(p.observed), np.asarray(p.labels).astype(int),
            np.asarray(p.labeled))


@pytest.mark.parametrize(("seed", "missing_rate", "n_init"), [(0, 0.0, 0), (1, 0.3, 0), (2, 0.0, 3)])
def test_caruana_matches_a_python_loop_over_steps(seed, missing_rate, n_init):
    with jax.enable_x64(True):
        ens = data.synthetic(jax.random.key(seed), n_instances=200, labeled_fraction=0.3,
                             missing_rate=missing_rate, dtype=jnp.float64)
        p = ens.problem
        R, observed, y, labeled = _host(p)
        F = reference.filled(R, observed)
        expected = reference.caruana_weights(F, y, labeled, n_steps=20, n_init=n_init)
        weights = np.asarray(baselines.caruana_weights(p, n_steps=20, n_init=n_init))
        np.testing.assert_allclose(weights, expected, atol=1e-12)
        np.testing.assert_allclose(np.asarray(baselines.caruana(p, n_steps=20, n_init=n_init)),
                                   expected @ F, rtol=1e-10)


def test_caruana_is_at_least_as_good_as_the_best_single_on_the_labeled_columns():
    p = _ensemble(4).problem
    loss = lambda proba: float(metrics.log_loss(p.labels, proba, p.labeled))
    best = min(loss(r) for r in p.R)
    assert loss(baselines.caruana(p)) <= best + 1e-6


def test_caruana_pr_auc_metric_and_no_labels():
    p = _ensemble(5).problem
    w = np.asarray(baselines.caruana_weights(p, n_steps=10, metric="pr_auc"))
    assert np.isclose(w.sum(), 1.0) and (w >= 0).all()
    # no labeled column: every candidate's metric is NaN, so the uniform weights
    blind = p._replace(labeled=jnp.zeros_like(p.labeled))
    np.testing.assert_allclose(np.asarray(baselines.caruana_weights(blind)), np.full(p.R.shape[0], 0.1))
    with pytest.raises(ValueError, match="n_init"):
        baselines.caruana_weights(p, n_init=11)


@pytest.mark.parametrize(("seed", "missing_rate"), [(0, 0.0), (1, 0.3)])
def test_sml_matches_power_iteration(seed, missing_rate):
    with jax.enable_x64(True):
        ens = data.synthetic(jax.random.key(seed), n_instances=150, missing_rate=missing_rate, dtype=jnp.float64)
        p = ens.problem
        R, observed, _, _ = _host(p)
        Q_ref = reference.pairwise_covariance(R, observed)
        Q, _ = baselines._pairwise_covariance(p)
        np.testing.assert_allclose(np.asarray(Q), Q_ref, atol=1e-12)
        v_ref, lam_ref = reference.sml_weights(R, observed, n_iter=30)
        v, lam = baselines.sml_weights(p, n_iter=30)
        np.testing.assert_allclose(np.asarray(v), v_ref, atol=1e-8)
        np.testing.assert_allclose(float(lam), lam_ref, rtol=1e-8)
        np.testing.assert_allclose(np.asarray(baselines.spectral_meta_learner(p, n_iter=30)),
                                   reference.spectral_meta_learner(R, observed, n_iter=30), atol=1e-8)


def test_sml_rank_one_fit_lowers_the_off_diagonal_residual():
    with jax.enable_x64(True):
        p = data.synthetic(jax.random.key(3), n_instances=500, dtype=jnp.float64).problem
        R, observed, _, _ = _host(p)
        Q = reference.pairwise_covariance(R, observed)
        off = ~np.eye(Q.shape[0], dtype=bool)

        def residual(n_iter):
            v, lam = (np.asarray(a) for a in baselines.sml_weights(p, n_iter=n_iter))
            return ((Q - lam * np.outer(v, v))[off] ** 2).sum()

        r0, r10, r100 = residual(0), residual(10), residual(100)
        assert r100 <= r10 <= r0 and r100 < 0.9 * r0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sml_recovers_the_ranking_of_classifier_reliabilities(seed):
    """Conditionally independent classifiers: v ranks them by AUC (Spearman; chance is 0)."""
    ens = data.synthetic(jax.random.key(seed), n_instances=2000, error_correlation=0.0)
    R = np.asarray(ens.problem.R)
    auc = np.array([roc_auc_score(ens.y_true, r) for r in R])
    v, _ = baselines.sml_weights(ens.problem)
    assert (np.asarray(v) > 0).all()
    assert spearmanr(np.asarray(v), auc)[0] > 0.5  # calibration distortion bends v away from AUC
    calibrated = data.synthetic(jax.random.key(seed), n_instances=2000, error_correlation=0.0,
                                calibration_distortion=0.0)
    R = np.asarray(calibrated.problem.R)
    auc = np.array([roc_auc_score(calibrated.y_true, r) for r in R])
    v, _ = baselines.sml_weights(calibrated.problem)
    assert spearmanr(np.asarray(v), auc)[0] > 0.9
    assert np.corrcoef(np.asarray(v), auc)[0, 1] > 0.9
    # and the combination beats the average classifier
    proba = baselines.spectral_meta_learner(calibrated.problem)
    assert roc_auc_score(calibrated.y_true, np.asarray(proba)) > auc.mean()


@pytest.mark.parametrize(("seed", "missing_rate", "competence"),
                         [(0, 0.0, "accuracy"), (1, 0.3, "accuracy"), (2, 0.0, "likelihood")])
def test_local_competence_matches_a_python_loop_over_columns(seed, missing_rate, competence):
    with jax.enable_x64(True):
        ens = data.synthetic(jax.random.key(seed), n_instances=120, labeled_fraction=0.4,
                             missing_rate=missing_rate, dtype=jnp.float64)
        p = ens.problem
        R, observed, y, labeled = _host(p)
        F = reference.filled(R, observed)
        expected = reference.local_competence(F, y, labeled, k=7, competence=competence)
        ours = baselines.local_competence(p, k=7, competence=competence, chunk_size=25)
        np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-10)


def test_local_competence_chunks_and_few_labels():
    p = _ensemble(6).problem
    whole = np.asarray(baselines.local_competence(p, chunk_size=p.R.shape[1]))
    np.testing.assert_allclose(np.asarray(baselines.local_competence(p, chunk_size=37)), whole, rtol=1e-6)
    # k above |L|: every labeled column is a neighbour; no label at all: the plain mean of F
    few = data.mask_columns(p, np.flatnonzero(np.asarray(p.labeled))[4:])
    assert np.isfinite(np.asarray(baselines.local_competence(few, k=50))).all()
    blind = p._replace(labeled=jnp.zeros_like(p.labeled))
    np.testing.assert_allclose(np.asarray(baselines.local_competence(blind)),
                               np.asarray(baselines.simple_average(p)), rtol=1e-6)


@pytest.mark.parametrize("name", NEW_BASELINES)
def test_new_baselines_never_read_a_hidden_label(name):
    fn = baselines.BASELINES[name]
    p = data.hold_out(jax.random.key(1), _ensemble(7, missing_rate=0.3).problem)
    scrambled = p._replace(labels=jnp.where(p.labeled, p.labels, 1.0 - p.labels))
    np.testing.assert_array_equal(np.asarray(fn(scrambled)), np.asarray(fn(p)))


@pytest.mark.parametrize("name", NEW_BASELINES)
def test_new_baselines_jit_agrees_and_outputs_are_probabilities(name):
    fn = baselines.BASELINES[name]
    p = _ensemble(8, missing_rate=0.3).problem
    eager = np.asarray(fn(p))
    assert eager.shape == (p.R.shape[1],)
    assert np.isfinite(eager).all() and (eager >= 0).all() and (eager <= 1).all()
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(p)), eager, rtol=1e-5, atol=1e-6)


def test_new_baselines_beat_chance_on_the_seed_setting():
    ens = data.preset(jax.random.key(0), "seed", labeled_fraction=0.1)
    for name in NEW_BASELINES:
        proba = np.asarray(baselines.BASELINES[name](ens.problem))
        assert average_precision_score(ens.y_true[ens.test], proba[ens.test]) > 0.9, name


# --- the hard-vote peers (optional `peers` extra) ------------------------------------------------


def test_peer_registry_is_separate_and_hard_votes_abstain():
    assert set(baselines.PEERS) == baselines.HARD_VOTE
    assert not set(baselines.PEERS) & set(baselines.BASELINES)
    p = data.from_numpy([[0.2, np.nan, 0.9], [0.6, 0.5, np.nan]], [0, 1, -1])
    np.testing.assert_array_equal(baselines.hard_votes(p), [[0, 1], [-1, 0], [1, -1]])


def test_peers_name_the_extra_when_their_library_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_peers(name, *args, **kwargs):
        if name.split(".")[0] in ("crowdkit", "snorkel"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peers)
    monkeypatch.setattr("importlib.import_module", lambda name: no_peers(name))
    p = _ensemble(0, n=50).problem
    for fn in baselines.PEERS.values():
        with pytest.raises(ImportError, match=r"cfjax\[peers\]"):
            fn(p)


def _peer_reference_votes(p):
    R, observed, y, labeled = _host(p)
    return np.where(observed, (R > 0.5).astype(int), -1).T, y, labeled


def test_dawid_skene_matches_crowd_kit_with_gold_labels():
    pd = pytest.importorskip("pandas")
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    ens = data.preset(jax.random.key(0), "seed", labeled_fraction=0.1, missing_rate=0.3, n_instances=400)
    p = ens.problem
    votes, y, labeled = _peer_reference_votes(p)
    rows = [(i, u, votes[i, u]) for i in range(votes.shape[0]) for u in range(votes.shape[1]) if votes[i, u] >= 0]
    frame = pd.DataFrame(rows, columns=["task", "worker", "label"])
    gold = pd.Series({i: y[i] for i in np.flatnonzero(labeled)})
    ref = crowdkit.DawidSkene(n_iter=100).fit(frame, true_labels=gold).probas_
    expected = np.array([ref.loc[i, 1] for i in range(votes.shape[0])])
    ours = baselines.dawid_skene(p)
    np.testing.assert_allclose(ours, expected, atol=1e-12)
    np.testing.assert_allclose(ours[labeled], y[labeled], atol=1e-9)  # gold fixes those posteriors
    assert average_precision_score(ens.y_true[ens.test], ours[ens.test]) > 0.85
    scrambled = p._replace(labels=jnp.where(p.labeled, p.labels, 1.0 - p.labels))
    np.testing.assert_array_equal(baselines.dawid_skene(scrambled), ours)


def test_snorkel_label_model_matches_snorkel():
    pytest.importorskip("torch")
    model_module = pytest.importorskip("snorkel.labeling.model")
    ens = data.preset(jax.random.key(0), "imbalanced_10", labeled_fraction=0.1, missing_rate=0.3, n_instances=400)
    p = ens.problem
    votes, y, labeled = _peer_reference_votes(p)
    prior = y[labeled].mean()
    model = model_module.LabelModel(cardinality=2, verbose=False)
    model.fit(votes, class_balance=np.array([1 - prior, prior]), n_epochs=100, seed=0, progress_bar=False)
    expected = model.predict_proba(votes)[:, 1]
    ours = baselines.snorkel_label_model(p, n_epochs=100)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-9)
    assert np.isfinite(ours).all() and ((ours >= 0) & (ours <= 1)).all()
    assert average_precision_score(ens.y_true[ens.test], ours[ens.test]) > 0.5
    scrambled = p._replace(labels=jnp.where(p.labeled, p.labels, 1.0 - p.labels))
    np.testing.assert_array_equal(baselines.snorkel_label_model(scrambled, n_epochs=100), ours)
