"""The K-class CF-Ensemble: the (m, K, n) front door, the softmax loss, the K-class aggregators and
methods, each against a slow obvious twin (NumPy loops, scikit-learn, finite differences)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import sklearn.metrics as skm
from sklearn.linear_model import LogisticRegression

import cfjax
from cfjax import aggregators, confidence, losses, metrics, predict, validation
from cfjax.solvers import auto
from tests.test_multiclass import ensemble

M, K, N = 4, 3, 60


def problem(seed=0, dtype=None, **kw):
    R, labels, y = ensemble(seed, **kw)
    return cfjax.from_numpy(R, labels, dtype=dtype), R, labels, y


# ----- the front door ----------------------------------------------------------------------------


def test_classes_become_rows_and_labels_one_hot():
    p, R, labels, _ = problem()
    assert p.R.shape == (M * K, N) and p.labels.shape == (K, N)
    assert p.n_classes == K and p.n_classifiers == M
    for u in range(M):
        for k in range(K):
            np.testing.assert_allclose(np.asarray(p.R[u * K + k]), R[u, k], rtol=1e-6)
    for i in range(N):
        expected = np.zeros(K) if labels[i] < 0 else np.eye(K)[labels[i]]
        np.testing.assert_array_equal(np.asarray(p.labels[:, i]), expected)
    np.testing.assert_array_equal(np.asarray(p.labeled), labels >= 0)


def test_missing_cells_are_unobserved_in_every_class_row():
    p, R, _, _ = problem(missing=0.3)
    gone = np.isnan(R).any(axis=1)  # (m, n)
    assert gone.any()
    np.testing.assert_array_equal(np.asarray(p.observed).reshape(M, K, N), ~np.repeat(gone[:, None], K, 1))
    assert np.all(np.asarray(p.C)[~np.asarray(p.observed)] == 0)


def test_two_classes_given_as_m_2_n_is_the_binary_problem_and_fit():
    """K = 2 as (m, 2, n) gives exactly the binary problem of R[:, 1, :], hence the same fit."""
    R, labels, _ = ensemble(3, K=2)
    three_axes = cfjax.from_numpy(R, labels)
    two_axes = cfjax.from_numpy(R[:, 1, :], labels)
    for a, b in zip(three_axes, two_axes):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    config = cfjax.Config(method="two_stage", latent_dim=2)
    fits = [cfjax.fit(jax.random.key(0), p, config=config) for p in (three_axes, two_axes)]
    np.testing.assert_array_equal(np.asarray(predict.proba(fits[0].params, config)),
                                  np.asarray(predict.proba(fits[1].params, config)))


@pytest.mark.parametrize("fault, match", [
    ("partial_nan", "NaN in some classes only"),
    ("sums", "sum to 1"),
    ("label_range", "classes 0..2"),
    ("one_class", "at least two classes"),
    ("confidence_shape", "confidence"),
    ("one_class_axis", "K >= 2"),
])
def test_bad_k_class_input_is_refused_with_the_argument_named(fault, match):
    R, labels, _ = ensemble(1)
    confidence_ = None
    if fault == "partial_nan":
        R[0, 0, 5] = np.nan
    elif fault == "sums":
        R[1, :, 3] = [0.5, 0.5, 0.5]
    elif fault == "label_range":
        labels[4] = 3
    elif fault == "one_class":
        labels = np.where(labels == 0, 0, -1)
    elif fault == "confidence_shape":
        confidence_ = np.ones((M * K, N))
    elif fault == "one_class_axis":
        R = R[:, :1, :] / R[:, :1, :]
    with pytest.raises(ValueError, match=match):
        cfjax.from_numpy(R, labels, confidence_)


# ----- losses ------------------------------------------------------------------------------------


def loop_softmax_ce(onehot, logits, gamma):
    n = logits.shape[1]
    out = np.zeros(n)
    for i in range(n):
        if onehot[:, i].sum() == 0:
            continue
        z = logits[:, i] - logits[:, i].max()
        p = np.exp(z) / np.exp(z).sum()
        t = int(np.argmax(onehot[:, i]))
        out[i] = -np.log(p[t]) * (1.0 - p[t]) ** gamma
    return out


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_softmax_cross_entropy_is_the_loop(gamma):
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        logits = rng.normal(size=(4, 30)) * 3
        onehot = np.eye(4)[rng.integers(0, 4, 30)].T
        onehot[:, :3] = 0  # unlabeled columns give 0
        got = losses.softmax_cross_entropy(jnp.asarray(onehot), jnp.asarray(logits), gamma)
        np.testing.assert_allclose(np.asarray(got), loop_softmax_ce(onehot, logits, gamma), rtol=1e-10, atol=1e-12)


def test_softmax_cross_entropy_at_two_classes_is_the_binary_one():
    with jax.enable_x64(True):
        s = jnp.linspace(-30, 30, 41)
        y = (jnp.arange(41) % 2).astype(jnp.float64)
        for gamma in (0.0, 1.5):
            binary = losses.cross_entropy(y, s, gamma)
            two = losses.softmax_cross_entropy(jnp.stack([1 - y, y]), jnp.stack([jnp.zeros_like(s), s]), gamma)
            np.testing.assert_allclose(np.asarray(two), np.asarray(binary), rtol=1e-9, atol=1e-12)


def test_class_weights_give_each_class_an_equal_share():
    p, _, labels, _ = problem(2)
    omega = np.asarray(losses.class_weights(p, p.labeled))
    L = labels >= 0
    for k in range(K):
        members = L & (labels == k)
        np.testing.assert_allclose(omega[members], L.sum() / (K * members.sum()), rtol=1e-6)
    assert np.all(omega[~L] == 0)


def test_k_class_loss_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        p, *_ = problem(4, dtype=jnp.float64)
        config = cfjax.Config(method="joint", latent_dim=3, aggregator="weighted")
        hp = cfjax.Hparams.create(rho=0.3, focal_gamma=1.0)
        params = cfjax.solvers.base.initial_params(jax.random.key(0), p, hp, config)
        params = params._replace(theta=params.theta._replace(
            w=params.theta.w + 0.1 * jax.random.normal(jax.random.key(1), params.theta.w.shape)))
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        f = lambda v: losses.loss(unravel(v), p, hp, config)
        g = np.asarray(jax.grad(f)(flat))
        rng = np.random.default_rng(0)
        for j in rng.choice(flat.size, 12, replace=False):
            e = np.zeros(flat.size)
            e[j] = 1e-6
            fd = (float(f(flat + e)) - float(f(flat - e))) / 2e-6
            np.testing.assert_allclose(g[j], fd, rtol=1e-5, atol=1e-8)


# ----- aggregators -------------------------------------------------------------------------------


def test_weighted_initial_rule_ranks_each_class_as_averaging():
    p, R, _, _ = problem(5)
    theta = aggregators.initial_theta("weighted", jax.random.key(0), M, 3, None, p.R.dtype, n_classes=K)
    z = np.asarray(aggregators.get("weighted").logits(theta, aggregators.Inputs(p.R, None, None)))
    mean = R.mean(axis=0)
    for k in range(K):
        np.testing.assert_array_equal(np.argsort(z[k], kind="stable"), np.argsort(mean[k], kind="stable"))


def test_weighted_exact_fit_is_sklearns_multinomial_regression():
    """two_stage's stage 2 with the K-class weighted aggregator, unit weights: scikit-learn's
    LogisticRegression(C) on the reconstruction with C = 1 / (2 agg_l2 N)."""
    with jax.enable_x64(True):
        p, _, labels, _ = problem(6, dtype=jnp.float64)
        F = np.asarray(p.R)
        L = labels >= 0
        agg_l2 = 0.01
        theta0 = aggregators.initial_theta("weighted", jax.random.key(0), M, 3, None, jnp.float64, n_classes=K)
        hp = cfjax.Hparams.create(agg_l2=agg_l2)
        theta = aggregators.weighted.exact_fit(theta0, aggregators.Inputs(p.R, None, None), p.labels,
                                               p.labeled.astype(jnp.float64), hp)
        sk = LogisticRegression(C=1.0 / (2 * agg_l2 * L.sum()), tol=1e-12, max_iter=10_000).fit(F[:, L].T, labels[L])
        ours = jax.nn.softmax(theta.w @ p.R + theta.b[:, None], axis=0)
        np.testing.assert_allclose(np.asarray(ours).T, sk.predict_proba(F.T), atol=2e-5)


def test_prior_exact_fit_is_the_map_estimate():
    """The K-class prior's fit, against scipy's L-BFGS on the objective written in NumPy: summed
    cross-entropy + (||W||^2 - (1 - a tau) <W, c>^2) / (2 tau), c the averaging direction and a
    the precision along it (`aggregators._PRIOR_ALONG`)."""
    with jax.enable_x64(True):
        p, _, labels, _ = problem(7, dtype=jnp.float64)
        tau = 0.3
        F = np.asarray(p.R)
        L = labels >= 0
        c = np.tile(np.eye(K), (1, M)).ravel()
        c /= np.linalg.norm(c)

        def objective(v):
            W, b = v[: K * M * K].reshape(K, M * K), v[K * M * K:]
            z = W @ F[:, L] + b[:, None]
            z = z - z.max(axis=0)
            logp = z - np.log(np.exp(z).sum(axis=0))
            ce = -logp[labels[L], np.arange(L.sum())].sum()
            w = W.ravel()
            return ce + (w @ w - (1 - aggregators._PRIOR_ALONG * tau) * (w @ c) ** 2) / (2 * tau)

        ref = scipy.optimize.minimize(objective, np.zeros(K * M * K + K), method="L-BFGS-B",
                                      options=dict(maxiter=20_000, gtol=1e-10, ftol=1e-15))
        theta0 = aggregators.initial_theta("prior", jax.random.key(0), M, 3, None, jnp.float64, n_classes=K)
        theta = aggregators.prior.exact_fit(theta0, aggregators.Inputs(p.R, None, None), p.labels,
                                            p.labeled.astype(jnp.float64), cfjax.Hparams.create(agg_prior=tau))
        ours = np.concatenate([np.asarray(theta.w).ravel(), np.asarray(theta.b)])
        assert objective(ours) <= ref.fun + 1e-7
        W_ref = ref.x[: K * M * K].reshape(K, M * K)
        np.testing.assert_allclose(np.asarray(theta.w), W_ref, atol=2e-3)


def test_strong_prior_ranks_each_class_as_averaging():
    """At a tiny scale the K-class prior keeps W on the averaging line."""
    with jax.enable_x64(True):
        p, *_ = problem(8, dtype=jnp.float64)
        theta0 = aggregators.initial_theta("prior", jax.random.key(0), M, 3, None, jnp.float64, n_classes=K)
        theta = aggregators.prior.exact_fit(theta0, aggregators.Inputs(p.R, None, None), p.labels,
                                            p.labeled.astype(jnp.float64), cfjax.Hparams.create(agg_prior=1e-6))
        W = np.asarray(theta.w)
        line = np.tile(np.eye(K), (1, M))
        scale = (W * line).sum() / (line * line).sum()
        assert scale > 0
        np.testing.assert_allclose(W, scale * line, atol=1e-4 * scale)


# ----- methods -----------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    cfjax.Config(method="als", latent_dim=3),
    cfjax.Config(method="two_stage", latent_dim=3),
    cfjax.Config(method="two_stage", latent_dim=3, aggregator="prior"),
    cfjax.Config(method="joint", latent_dim=3, max_iter=60),
    cfjax.Config(method="joint", latent_dim=3, max_iter=60, formulation="free"),
    cfjax.Config(method="label_aware_als", latent_dim=3, max_iter=20, confidence="label_aware"),
    cfjax.Config(method="damped", latent_dim=3, max_iter=20),
    cfjax.Config(method="mm_als", latent_dim=3, max_iter=20),
    cfjax.Config(method="joint", latent_dim=3, max_iter=20, options=(("batch_size", 16),)),
], ids=lambda c: f"{c.method}-{c.aggregator}-{c.formulation}{'-minibatch' if c.options else ''}")
def test_every_k_class_method_gives_distributions_better_than_chance(config):
    p, _, _, y = problem(9, n=90)
    result = cfjax.fit(jax.random.key(0), p, config=config)
    P = np.asarray(predict.proba(result.params, config, p))
    assert P.shape == (K, 90) and np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(axis=0), 1.0, rtol=1e-5)
    test = ~np.asarray(p.labeled)
    assert skm.accuracy_score(y[test], P[:, test].argmax(0)) > 1.5 / K
    assert np.isfinite(np.asarray(result.history.total)).all()


@pytest.mark.slow  # joint's K-class fits are in the fast tier's method test
def test_joint_lowers_the_k_class_objective():
    p, *_ = problem(10)
    config = cfjax.Config(method="joint", latent_dim=3, max_iter=100, patience=0)
    result = cfjax.fit(jax.random.key(0), p, config=config)
    total = np.asarray(result.history.total)
    assert total[-1] < total[0]


def test_default_fit_is_the_k_class_auto():
    p, *_ = problem(11, n=120)
    result = cfjax.fit(jax.random.key(0), p)
    config = validation.resolve_config(cfjax.Config(), p)
    assert config.latent_dim == 4  # max(4, K)
    P = np.asarray(predict.proba(result.params, config, p))
    assert P.shape == (K, 120)
    np.testing.assert_allclose(P.sum(axis=0), 1.0, rtol=1e-5)
    assert int(result.info["candidate"]) == 0 and np.isfinite(np.asarray(result.info["cv_mean"])).all()


def test_default_rank_is_at_least_k():
    R, labels, _ = ensemble(0, K=6, m=3, n=80)
    assert validation.resolve_config(cfjax.Config(), cfjax.from_numpy(R, labels)).latent_dim == 6


def test_stratified_folds_deal_every_class_evenly():
    p, _, labels, _ = problem(12, n=150)
    ids = np.asarray(auto.stratified_fold_ids(jax.random.key(3), p.labels, p.labeled, 5))
    for k in range(K):
        counts = np.bincount(ids[labels == k], minlength=5)
        assert counts.max() - counts.min() <= 1 and counts.sum() == (labels == k).sum()
    assert np.all(ids[labels < 0] == -1)


def test_label_aware_confidence_is_the_one_vs_rest_loop():
    p, R, labels, _ = problem(13)
    hp = cfjax.Hparams.create(alpha=2.0)
    C = np.asarray(confidence.label_aware(p, hp)).reshape(M, K, N)
    for u in range(M):
        for k in range(K):
            for i in range(N):
                if labels[i] < 0:
                    expected = 1.0
                else:
                    agree = R[u, k, i] if labels[i] == k else 1 - R[u, k, i]
                    expected = 1 + 2.0 * agree
                assert C[u, k, i] == pytest.approx(expected, rel=1e-5)


def test_pr_auc_of_logits_is_sklearns_macro_average_precision():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(K, 80))
    y = rng.integers(0, K, 80)
    P = np.exp(z) / np.exp(z).sum(axis=0)
    expected = skm.average_precision_score(np.eye(K)[y], P.T, average="macro")
    got = metrics.pr_auc_of_logits(jnp.asarray(np.eye(K)[y].T), jnp.asarray(z))
    assert float(got) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("change, name", [
    (dict(method="mm_als", mm_curvature="sharp"), "mm_curvature"),
    (dict(aggregator="mean"), "aggregator"),
    (dict(aggregator="attention"), "aggregator"),
    (dict(confidence="agreement"), "confidence"),
    (dict(confidence="learned"), "confidence"),
])
def test_what_k_classes_cannot_take_is_refused_by_name(change, name):
    p, *_ = problem(14)
    with pytest.raises(ValueError, match=name):
        cfjax.fit(jax.random.key(0), p, config=cfjax.Config(latent_dim=3, **change))


@pytest.mark.parametrize("k", [2, 3])
def test_float32_problem_fits_under_x64_with_default_hparams(k):
    """The registry's default hparams take the problem's dtype: a float32 problem built while
    jax_enable_x64 is on (as the multi-class panel scores in float64) used to fail in the
    aggregator's while_loop (float64 hparams promoted the float32 carry)."""
    R, labels, _ = ensemble(4, K=k)
    with jax.enable_x64(True):
        p = cfjax.from_numpy(R, labels, dtype=np.float32)
        config = cfjax.Config(method="two_stage", latent_dim=2)
        result = cfjax.fit(jax.random.key(0), p, config=config)
        P = predict.proba(result.params, config, p)
        assert P.dtype == jnp.float32 and np.isfinite(np.asarray(P)).all()
