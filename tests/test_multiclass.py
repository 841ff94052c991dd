"""K-class baselines and the multinomial fit: against scikit-learn, NumPy loops and the binary ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.metrics as skm
from sklearn.linear_model import LogisticRegression

from cfjax import baselines, metrics, multiclass
from cfjax.data import from_numpy
from cfjax.logistic import fit_multinomial, multinomial_loss, multinomial_proba

M, K, N = 4, 3, 60


def ensemble(seed=0, m=M, K=K, n=N, labeled=0.6, missing=0.0):
    """A random K-class ensemble: R (m, K, n) of noisy softmaxes leaning to the true class,
    labels with every class labeled, y_true; `missing` of the cells NaN (never a whole column)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    y[:K] = np.arange(K)
    logits = rng.normal(size=(m, K, n)) + rng.uniform(0.5, 2.0, (m, 1, 1)) * (np.arange(K)[None, :, None] == y)
    R = np.exp(logits)
    R /= R.sum(axis=1, keepdims=True)
    gone = rng.random((m, n)) < missing
    gone[0] = False  # classifier 0 sees every column
    R[np.broadcast_to(gone[:, None, :], R.shape)] = np.nan
    is_labeled = rng.random(n) < labeled
    is_labeled[:K] = True
    return R, np.where(is_labeled, y, -1), y


def loop_average(R):
    """The slow twin of simple_average: a Python loop over columns and classifiers."""
    m, K, n = R.shape
    out = np.empty((K, n))
    for i in range(n):
        rows = [R[u, :, i] for u in range(m) if not np.isnan(R[u, :, i]).any()]
        mean = np.mean(rows, axis=0) if rows else np.zeros(K)
        out[:, i] = mean / mean.sum() if mean.sum() > 0 else 1.0 / K
    return out


# ----- the multinomial fit -----------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
@pytest.mark.parametrize("K", [3, 5])
def test_fit_multinomial_is_sklearns_logistic_regression(K, solver):
    """Float64: the coefficients, intercepts and probabilities of LogisticRegression(C=1)
    (multinomial, lbfgs, run to tol 1e-12), whose gap to the optimum is its own tolerance:
    our gradient is zero to 1e-12 and our loss is not above sklearn's."""
    rng = np.random.default_rng(K)
    n, p = 150, 6
    X = rng.normal(size=(n, p))
    y = rng.integers(0, K, n)
    X[:, 0] += 0.7 * y
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(X, y)
    with jax.enable_x64(True):
        l2 = baselines.stacking_l2(n, 1.0)
        W, b = fit_multinomial(jnp.asarray(X.T), jnp.asarray(y), jnp.ones(n), l2, K, solver=solver, tol=1e-13)
        np.testing.assert_allclose(np.asarray(W), sk.coef_, atol=1e-5)
        np.testing.assert_allclose(np.asarray(b), sk.intercept_, atol=1e-5)
        np.testing.assert_allclose(np.asarray(multinomial_proba(W, b, X.T)), sk.predict_proba(X).T, atol=1e-6)
        loss = lambda W, b: multinomial_loss(W, b, X.T, y, np.ones(n), l2)
        gW, gb = jax.grad(loss, argnums=(0, 1))(W, b)
        assert np.abs(np.asarray(gW)).max() < 1e-12 and np.abs(np.asarray(gb)).max() < 1e-12  # lbfgs: 1e-13
        assert float(loss(W, b)) <= float(loss(jnp.asarray(sk.coef_), jnp.asarray(sk.intercept_))) + 1e-14


def test_fit_multinomial_weights_and_unseen_class():
    """omega = 0 columns are ignored (their label may be -1); a class outside `classes` gets
    W = 0, b = 0 and probability 0: sklearn fitted on the classes seen."""
    rng = np.random.default_rng(1)
    n, p = 120, 4
    X = rng.normal(size=(n, p))
    y = rng.integers(0, 3, n)  # classes 0, 1, 2 of K = 4; class 3 never seen
    X[:, 1] += y
    keep = rng.random(n) < 0.7
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(X[keep], y[keep])
    with jax.enable_x64(True):
        classes = jnp.array([True, True, True, False])
        W, b = fit_multinomial(X.T, np.where(keep, y, -1), keep.astype(float),
                               baselines.stacking_l2(keep.sum(), 1.0), 4, classes)
        P = np.asarray(multinomial_proba(W, b, X.T, classes))
        assert (P[3] == 0).all() and (np.asarray(W)[3] == 0).all() and float(b[3]) == 0.0
        np.testing.assert_allclose(P[:3], sk.predict_proba(X).T, atol=1e-6)


# ----- the baselines -----------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [0.0, 0.3])
def test_stacking_is_sklearns_on_the_mK_features(missing):
    """LogisticRegression(C=1) on R_filled[:, :, labeled] as (n_labeled, m K) features."""
    R, labels, _ = ensemble(seed=2, missing=missing)
    lab = labels >= 0
    with jax.enable_x64(True):
        F = np.asarray(multiclass.filled(R)).reshape(M * K, N)
        sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(F[:, lab].T, labels[lab])
        got = np.asarray(multiclass.stacking(R, labels))
        np.testing.assert_allclose(got, sk.predict_proba(F.T).T, atol=1e-6)
        # C is traced: a second value reuses the program and matches sklearn too
        sk3 = LogisticRegression(C=3.0, tol=1e-12, max_iter=100_000).fit(F[:, lab].T, labels[lab])
        np.testing.assert_allclose(np.asarray(multiclass.stacking(R, labels, C=3.0)), sk3.predict_proba(F.T).T,
                                   atol=1e-6)


def test_stacking_beyond_newton_uses_lbfgs():
    """K (m K + 1) above NEWTON_MAX_PARAMETERS (m = 2, K = 32: 2080): the L-BFGS path, still
    sklearn's LogisticRegression(C=1)."""
    m, K, n = 2, 32, 160
    assert K * (m * K + 1) > multiclass.NEWTON_MAX_PARAMETERS
    R, labels, _ = ensemble(seed=10, m=m, K=K, n=n, labeled=0.7)
    lab = labels >= 0
    with jax.enable_x64(True):
        F = R.reshape(m * K, n)
        sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(F[:, lab].T, labels[lab])
        np.testing.assert_allclose(np.asarray(multiclass.stacking(R, labels)), sk.predict_proba(F.T).T, atol=1e-6)


def test_stacking_class_absent_from_the_labels():
    """Class 2 has no labeled column: probability 0 everywhere, the rest sklearn's 2-class
    multinomial... which sklearn fits as a binary model, so compare with the multinomial
    optimum directly (fit_multinomial on classes 0, 1) and check the columns sum to 1."""
    R, labels, _ = ensemble(seed=3)
    labels = np.where(labels == 2, -1, labels)
    with jax.enable_x64(True):
        P = np.asarray(multiclass.stacking(R, labels))
        assert (P[2] == 0).all()
        np.testing.assert_allclose(P.sum(axis=0), 1.0, atol=1e-12)
        # simple_average and best_single still give class 2 the base models' probability
        assert (np.asarray(multiclass.best_single(R, labels))[2] > 0).all()
        assert (np.asarray(multiclass.simple_average(R))[2] > 0).all()


@pytest.mark.parametrize("missing", [0.0, 0.3])
def test_simple_average_equals_loop(missing):
    R, _, _ = ensemble(seed=4, missing=missing)
    R[1:, :, 5] = np.nan  # a column only classifier 0 saw
    with jax.enable_x64(True):
        got = np.asarray(multiclass.simple_average(R))
    np.testing.assert_allclose(got, loop_average(R), rtol=1e-12)
    np.testing.assert_allclose(got.sum(axis=0), 1.0, atol=1e-12)


def test_simple_average_of_an_unobserved_column_is_uniform():
    R, _, _ = ensemble(seed=5)
    R[:, :, 7] = np.nan
    with jax.enable_x64(True):
        got = np.asarray(multiclass.simple_average(R))
    np.testing.assert_allclose(got[:, 7], 1.0 / K)
    np.testing.assert_allclose(got, loop_average(R), rtol=1e-12)


@pytest.mark.parametrize("metric", ["log_loss", "pr_auc", "roc_auc", "accuracy"])
def test_best_single_equals_loop(metric):
    """The row with the best sklearn metric on its observed labeled columns (ties: lowest row)."""
    R, labels, _ = ensemble(seed=6, m=5, missing=0.2)
    with jax.enable_x64(True):
        got = np.asarray(multiclass.best_single(R, labels, metric))
        F = np.asarray(multiclass.filled(R))
    scores = []
    for u in range(5):
        sel = (labels >= 0) & ~np.isnan(R[u, 0])
        y, p = labels[sel], R[u][:, sel]
        if metric == "log_loss":
            scores.append(-skm.log_loss(y, p.T, labels=list(range(K))))
        elif metric == "accuracy":
            scores.append(skm.accuracy_score(y, p.argmax(0)))
        elif metric == "pr_auc":
            scores.append(np.mean([skm.average_precision_score(y == k, p[k]) for k in range(K)]))
        else:
            scores.append(skm.roc_auc_score(y, p.T, multi_class="ovr", labels=list(range(K))))
    best = int(np.argmax(scores))
    np.testing.assert_allclose(got, F[best], rtol=1e-12)


def test_k2_agrees_with_the_binary_baselines():
    """K = 2 on [1 - r, r]: averaging and best single (log-loss, ROC-AUC) are the binary ones on
    r; multinomial stacking at C is the binary stacking at 4 C (the symmetric softmax on two
    collinear feature blocks)."""
    R3, labels3, _ = ensemble(seed=7, missing=0.2)
    R = R3[:, :2, :] / R3[:, :2, :].sum(axis=1, keepdims=True)
    R[:, 0, :] = 1.0 - R[:, 1, :]
    labels = np.where(labels3 >= 0, (labels3 == 1).astype(int), -1)
    with jax.enable_x64(True):
        problem = from_numpy(R[:, 1, :], labels, dtype=jnp.float64)
        np.testing.assert_allclose(np.asarray(multiclass.simple_average(R))[1],
                                   np.asarray(baselines.simple_average(problem)), atol=1e-12)
        for metric in ["log_loss", "roc_auc"]:
            np.testing.assert_allclose(np.asarray(multiclass.best_single(R, labels, metric))[1],
                                       np.asarray(baselines.best_single(problem, metric)), atol=1e-12)
        for C in (1.0, 0.25):
            np.testing.assert_allclose(np.asarray(multiclass.stacking(R, labels, C))[1],
                                       np.asarray(baselines.stacking(problem, 4.0 * C)), atol=1e-9)


def test_baselines_registry_and_jit():
    """Every baseline: (K, n) distributions, jit-able under an outer jit (tracers skip the value
    checks), the same values."""
    R, labels, y = ensemble(seed=8, missing=0.1)
    assert list(multiclass.BASELINES) == ["simple_average", "best_single", "stacking"]
    for fn in multiclass.BASELINES.values():
        eager = np.asarray(fn(R, labels))
        assert eager.shape == (K, N) and np.isfinite(eager).all()
        np.testing.assert_allclose(eager.sum(axis=0), 1.0, atol=1e-5)
        traced = np.asarray(jax.jit(fn)(jnp.asarray(R, jnp.float32), jnp.asarray(labels)))
        np.testing.assert_allclose(traced, eager, atol=1e-5)
        assert float(metrics.accuracy(y, eager, labels < 0)) > 1.0 / K


@pytest.mark.parametrize(
    "R, labels, match",
    [
        (np.full((2, 3), 0.5), None, "R: expected an .m, K, n"),
        (np.full((2, 1, 4), 1.0), None, "K >= 2"),
        (np.full((2, 2, 4), 0.5), np.zeros(3, int), "labels: expected shape"),
        (np.full((2, 2, 4), 0.7), None, "sum to 1"),
        (np.stack([np.full((2, 4), 1.5), np.full((2, 4), -0.5)], axis=1), None, r"\[0, 1\]"),
        (np.full((2, 2, 4), 1, int), None, "float"),
        (np.full((2, 2, 4), 0.5), np.array([0, 1, 2, -1]), "labels: expected values"),
        (np.full((2, 2, 4), 0.5), np.array([0, 1, -2, -1]), "labels: expected values"),
        (np.full((2, 2, 4), 0.5), np.array([0.5, 1, 0, -1]), "integer"),
        (np.full((2, 2, 4), 0.5), np.full(4, -1), "no labeled column"),
    ],
)
@pytest.mark.usefixtures("without_type_checks")
def test_check_inputs_errors(R, labels, match):
    with pytest.raises(ValueError, match=match):
        multiclass.check_inputs(R, labels, need_labeled=True)


def test_partial_nan_cell_and_the_callers_validate():
    R, labels, _ = ensemble(seed=9)
    R[1, 0, 3] = np.nan
    with pytest.raises(ValueError, match="some but not all"):
        multiclass.simple_average(R)
    R[1, :, 3] = np.nan  # a whole cell: fine
    multiclass.simple_average(R)
    with pytest.raises(ValueError, match="no labeled column"):
        multiclass.stacking(R, np.full(N, -1))
    with pytest.raises(ValueError, match="no labeled column"):
        multiclass.best_single(R, np.full(N, -1))
    with pytest.raises(ValueError, match="name"):
        multiclass.best_single(R, labels, metric="brier")
