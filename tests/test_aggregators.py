"""Aggregators: the protocol's helpers, and the prior aggregator against its definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cfjax
from cfjax import aggregators, baselines, data, losses
from cfjax.benchmark import score_test_columns
from cfjax.logistic import fit_logistic_prior, fit_logistic_prior_nonnegative
from cfjax.structs import Hparams


def _problem(seed=0, n=200, m=6, missing=0.0):
    return data.synthetic(jax.random.key(seed), n_classifiers=m, n_instances=n, missing_rate=missing,
                          labeled_fraction=0.3).problem


def _discriminant_loop(R, y, mask):
    """The diagonal discriminant written out per classifier."""
    out = []
    for r in R:
        pos, neg = r[mask & (y > 0.5)], r[mask & (y <= 0.5)]
        scatter = ((pos - pos.mean()) ** 2).sum() + ((neg - neg.mean()) ** 2).sum()
        var = scatter / max(pos.size + neg.size - 2, 1)
        out.append(max((pos.mean() - neg.mean()) / max(var, 1e-12), 0.0))
    out = np.array(out)
    return out if (out > 0).any() else np.ones_like(out)


def test_discriminant_direction_equals_a_loop():
    with jax.enable_x64(True):
        p = _problem()
        R, y, lab = np.array(p.R), np.asarray(p.labels), np.asarray(p.labeled)
        R[2] = 1.0 - R[2]  # a classifier worse than chance gets weight 0
        got = aggregators.discriminant_direction(jnp.asarray(R), jnp.asarray(y), jnp.asarray(lab))
        want = _discriminant_loop(R, y, lab)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)
        assert float(got[2]) == 0.0


def test_no_classifier_better_than_chance_falls_back_to_equal_weights():
    R = jnp.asarray([[0.9, 0.1, 0.8, 0.2], [0.7, 0.3, 0.6, 0.4]])
    y = jnp.asarray([0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(aggregators.discriminant_direction(R, y, jnp.ones(4, bool)), [1.0, 1.0])


def test_prior_direction_blends_the_unsupervised_and_supervised_directions():
    with jax.enable_x64(True):
        p = _problem(1)
        fixed = aggregators.Inputs(R_hat=p.R, X=jnp.eye(6), Y=p.R)
        v, _ = baselines.sml_weights(p._replace(labeled=jnp.zeros_like(p.labeled)))
        d = _discriminant_loop(np.asarray(p.R), np.asarray(p.labels), np.asarray(p.labeled))
        for a in (0.0, 0.5, 1.0):
            got = aggregators.prior_direction(fixed, p.labels, p.labeled, jnp.asarray(a))
            np.testing.assert_allclose(np.asarray(got), (1 - a) * d / np.linalg.norm(d) + a * np.asarray(v),
                                       rtol=1e-8, atol=1e-12)


def _map_objective(w, b, F, y, mask, precision, eps):
    s = w @ F + b
    ce = np.logaddexp(0.0, np.where(y > 0.5, -s, s))
    return (mask * ce).sum() + 0.5 * w @ precision @ w + 0.5 * eps * b * b


def test_prior_exact_fit_is_the_map_of_its_objective():
    """The fitted (w, b) is stationary for the MAP objective, written out in NumPy, on its free
    weights and the bias, and no perturbation of those lowers it; a classifier turned around
    (worse than chance on every column) is held at 0 and keeps the trace of the direction."""
    with jax.enable_x64(True):
        p = _problem(2)
        R = np.array(p.R)
        R[1] = 1.0 - R[1]
        fixed = aggregators.Inputs(R_hat=jnp.asarray(R), X=jnp.eye(6), Y=jnp.asarray(R))
        hp = Hparams.create(agg_prior=0.3)
        theta0 = aggregators.prior.init(jax.random.key(0), 6, hp, jnp.float64)
        theta = aggregators.prior.exact_fit(theta0, fixed, p.labels, p.labeled.astype(jnp.float64), hp)
        c = np.asarray(theta.center) / np.linalg.norm(np.asarray(theta.center))
        precision = (np.eye(6) - np.outer(c, c)) / 0.3 + 1e-2 * np.outer(c, c)
        F, y, mask = R, np.asarray(p.labels), np.asarray(p.labeled, float)
        held = np.isclose(np.asarray(theta.w), aggregators._HELD_TRACE * c, rtol=1e-12, atol=0)
        assert held[1] and not held.all()
        w = np.where(held, 0.0, np.asarray(theta.w))  # the fit before the trace
        b = float(theta.b)
        grad = np.asarray(jax.grad(lambda t: _map_objective_jnp(t, F, y, mask, precision))(jnp.asarray(np.r_[w, b])))
        assert np.abs(grad[:-1][~held]).max() < 1e-8 and abs(grad[-1]) < 1e-8
        base = _map_objective(w, b, F, y, mask, precision, 1e-8)
        rng = np.random.default_rng(0)
        for _ in range(20):
            dw, db = np.where(held, 0.0, 1e-3 * rng.normal(size=6)), 1e-3 * rng.normal()
            assert _map_objective(w + dw, b + db, F, y, mask, precision, 1e-8) >= base - 1e-12


def _backward_elimination_twin(F, y, mask, precision):
    """`fit_logistic_prior_nonnegative` written out: SciPy's BFGS on the free weights and the bias,
    then every negative free weight held at 0, until none is negative."""
    from scipy.optimize import minimize

    free = np.ones(F.shape[0], bool)
    while True:
        idx = np.flatnonzero(free)

        def objective(t, idx=idx):
            w = np.zeros(F.shape[0])
            w[idx] = t[:-1]
            return _map_objective(w, t[-1], F, y, mask, precision, 1e-8)

        t = minimize(objective, np.zeros(idx.size + 1), method="BFGS", options={"gtol": 1e-9}).x
        w = np.zeros(F.shape[0])
        w[idx] = t[:-1]
        negative = free & (w < 0)
        if not negative.any():
            return w, t[-1]
        free &= ~negative


@pytest.mark.parametrize("seed", range(6))
def test_nonnegative_fit_against_a_scipy_twin(seed):
    """Backward elimination against its twin where the unconstrained fit has negative weights
    (odd seeds: some classifiers against the label; even: all of them, so all are held), and the
    unconstrained fit itself where it has none (every classifier turned towards the label)."""
    rng = np.random.default_rng(seed)
    m, n = 5, 60
    y = (rng.uniform(size=n) < 0.4).astype(float)
    signs = np.array([1.0, -1.0, 1.0, -0.5, 0.3]) if seed % 2 else -np.ones(m)
    noise = 0.2 * rng.normal(size=(m, n))
    F = np.clip(0.5 + 0.25 * signs[:, None] * (y - 0.5)[None, :] + noise, 0, 1)
    towards = np.clip(0.5 + 0.25 * np.abs(signs)[:, None] * (y - 0.5)[None, :] + noise, 0, 1)
    mask = (rng.uniform(size=n) < 0.7).astype(float)
    c = rng.uniform(0.2, 1.0, size=m)
    c /= np.linalg.norm(c)
    tau = [0.1, 1.0, 10.0][seed % 3]
    precision = (np.eye(m) - np.outer(c, c)) / tau + 1e-2 * np.outer(c, c)
    rest = (jnp.asarray(y), jnp.asarray(mask), jnp.asarray(precision))
    with jax.enable_x64(True):
        w, b = (np.asarray(x) for x in fit_logistic_prior_nonnegative(jnp.asarray(F), *rest))
        free_w, _ = fit_logistic_prior(jnp.asarray(F), *rest)
        plain = [np.asarray(x) for x in fit_logistic_prior(jnp.asarray(towards), *rest)]
        again = [np.asarray(x) for x in fit_logistic_prior_nonnegative(jnp.asarray(towards), *rest)]
    assert (w >= 0).all() and (seed % 2 or (np.asarray(free_w) < 0).all())
    want_w, want_b = _backward_elimination_twin(F, y, mask, precision)
    np.testing.assert_allclose(w, want_w, atol=1e-5)
    assert abs(float(b) - want_b) < 1e-5
    if seed % 2 == 0:
        assert (w == 0).all()
    if (plain[0] >= 0).all():  # nothing to hold: the unconstrained fit itself
        np.testing.assert_allclose(again[0], plain[0], rtol=1e-10)
        assert float(again[1]) == pytest.approx(float(plain[1]), rel=1e-10)


def _map_objective_jnp(t, F, y, mask, precision):
    w, b = t[:-1], t[-1]
    s = w @ F + b
    ce = jnp.logaddexp(0.0, jnp.where(y > 0.5, -s, s))
    return (mask * ce).sum() + 0.5 * w @ precision @ w + 0.5 * 1e-8 * b * b


def test_a_strong_prior_ranks_like_its_direction_a_weak_one_like_logistic_regression():
    with jax.enable_x64(True):
        p = _problem(3, n=400)
        fixed = aggregators.Inputs(R_hat=p.R, X=jnp.eye(6), Y=p.R)
        theta0 = aggregators.prior.init(jax.random.key(0), 6, Hparams.create(), jnp.float64)
        strong = aggregators.prior.exact_fit(theta0, fixed, p.labels, p.labeled.astype(jnp.float64),
                                             Hparams.create(agg_prior=1e-6))
        cos = float(strong.w @ strong.center / (jnp.linalg.norm(strong.w) * jnp.linalg.norm(strong.center)))
        assert cos > 0.9999
        weak = aggregators.prior.exact_fit(theta0, fixed, p.labels, p.labeled.astype(jnp.float64),
                                           Hparams.create(agg_prior=1e6))
        # what remains of the prior as tau grows is its weak precision along the direction, 1e-2 c c^T
        # (and the constraint w >= 0)
        c = weak.center / jnp.linalg.norm(weak.center)
        w_lr, _ = fit_logistic_prior_nonnegative(p.R, p.labels, p.labeled.astype(jnp.float64),
                                                 1e-2 * jnp.outer(c, c) + 1e-12 * jnp.eye(6))
        w_lr = jnp.where(w_lr > 0, w_lr, aggregators._HELD_TRACE * c)
        np.testing.assert_allclose(np.asarray(weak.w), np.asarray(w_lr), rtol=1e-3, atol=1e-3)


def test_prior_penalty_is_its_quadratic_form_and_has_no_gradient_through_the_center():
    theta = aggregators.PriorTheta(w=jnp.asarray([1.0, 2.0, 3.0]), b=jnp.asarray(0.0),
                                   center=jnp.asarray([1.0, 1.0, 0.0]))
    Q = aggregators.prior.linear.penalty_matrix(theta)
    np.testing.assert_allclose(float(aggregators.prior.penalty(theta)), float(theta.w @ Q @ theta.w), rtol=1e-6)
    grad = jax.grad(aggregators.prior.penalty)(theta)
    assert float(jnp.abs(grad.center).max()) == 0.0
    # the direction itself costs nothing: only the departure from it is penalised
    assert float(aggregators.prior.penalty(theta._replace(w=jnp.asarray([2.0, 2.0, 0.0])))) < 1e-5  # float32


@pytest.mark.parametrize("method", ["two_stage", "joint", "mm_als"])
def test_every_method_trains_the_prior_aggregator(method):
    ens = data.preset(jax.random.key(0), "seed", n_instances=200, n_classifiers=6, labeled_fraction=0.2)
    config = cfjax.Config(method=method, aggregator="prior", latent_dim=3, max_iter=15)
    result = cfjax.fit(jax.random.key(0), ens.problem, None, config)
    assert isinstance(result.params.theta, aggregators.PriorTheta)
    proba = np.asarray(cfjax.proba(result.params, config))
    assert np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    if method == "mm_als":  # its quadratic penalty keeps MM-ALS's descent guarantee
        total = np.asarray(result.history.total)
        assert (np.diff(total) <= 1e-6 * np.abs(total[:-1])).all()


def test_logits_and_penalty_of_every_registered_aggregator_are_finite():
    p = _problem(4, missing=0.2)
    params = cfjax.solvers.initial_params(jax.random.key(0), p, Hparams.create(), cfjax.Config(latent_dim=3))
    for name, agg in aggregators.AGGREGATORS.items():
        theta = aggregators.initial_theta(agg, jax.random.key(0), 6, 3, Hparams.create(), jnp.float32)
        config = cfjax.Config(aggregator=name, latent_dim=3)
        logits = aggregators.logits(params._replace(theta=theta), config, p.observed)
        assert logits.shape == (200,) and bool(jnp.all(jnp.isfinite(logits))), name
        assert bool(jnp.isfinite(aggregators.penalty(agg, theta))), name
        sup, _ = losses.supervised_parts(params._replace(theta=theta), p, Hparams.create(), config)
        assert bool(jnp.isfinite(sup)), name


def test_unsupervised_direction_is_a_finite_unit_vector_on_degenerate_columns():
    # identical rows: a covariance of rank one everywhere, the classic degenerate case
    R = jnp.tile(jnp.linspace(0.1, 0.9, 7), (3, 1))
    v = aggregators.unsupervised_direction(aggregators.Inputs(R_hat=R, X=jnp.eye(3), Y=R))
    assert bool(jnp.all(jnp.isfinite(v)))
    np.testing.assert_allclose(float(jnp.linalg.norm(v)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(v), np.full(3, 1 / np.sqrt(3)), rtol=1e-4)


# ---------------------------------------------------------------------------------- attention


def _attention_loop(X, Y, R_hat, w, b, A, a):
    """The attention aggregator written out per instance and classifier."""
    m, n = R_hat.shape
    logits, alphas = np.zeros(n), np.zeros((m, n))
    for i in range(n):
        scores = np.array([X[:, u] @ A @ Y[:, i] + a[u] for u in range(m)])
        alpha = np.exp(scores - scores.max())
        alpha /= alpha.sum()
        alphas[:, i] = alpha
        logits[i] = m * sum(alpha[u] * w[u] * (R_hat[u, i] - 0.5) for u in range(m)) + b
    return logits, alphas


def test_attention_equals_a_loop_and_its_weights_sum_to_one():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        d, m, n = 3, 5, 17
        X, Y = rng.normal(size=(d, m)), rng.normal(size=(d, n))
        theta = aggregators.AttentionTheta(w=rng.normal(size=m), b=np.float64(0.3), A=rng.normal(size=(d, d)),
                                           a=rng.normal(size=m))
        fixed = aggregators.Inputs(R_hat=jnp.asarray(X.T @ Y), X=jnp.asarray(X), Y=jnp.asarray(Y))
        theta = jax.tree.map(jnp.asarray, theta)
        want_logits, want_alpha = _attention_loop(X, Y, X.T @ Y, *map(np.asarray, theta))
        alpha = aggregators.attention_weights(theta, fixed)
        np.testing.assert_allclose(np.asarray(alpha), want_alpha, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(alpha).sum(axis=0), 1.0, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(aggregators.attention.logits(theta, fixed)), want_logits, rtol=1e-12)


def test_attention_with_no_trust_map_is_the_weighted_aggregator():
    p = _problem(2)
    params = cfjax.solvers.initial_params(jax.random.key(0), p, Hparams.create(), cfjax.Config(latent_dim=3))
    fixed = aggregators.inputs(params)
    w, b = jnp.linspace(-1.0, 2.0, 6), jnp.asarray(0.7)
    theta = aggregators.AttentionTheta(w=w, b=b, A=jnp.zeros((3, 3)), a=jnp.zeros(6))
    np.testing.assert_allclose(np.asarray(aggregators.attention.logits(theta, fixed)),
                               np.asarray(aggregators.weighted.logits(aggregators.WeightedTheta(w, b - 0.5 * w.sum()),
                                                                      fixed)), rtol=1e-5, atol=1e-5)
    # and its starting point ranks as the weighted aggregator's does: the mean
    start = aggregators.initial_theta("attention", jax.random.key(0), 6, 3, Hparams.create(), jnp.float32)
    np.testing.assert_allclose(np.asarray(aggregators.attention.logits(start, fixed)),
                               np.asarray(aggregators.weighted.logits(aggregators.weighted.init(
                                   jax.random.key(0), 6, Hparams.create(), jnp.float32, 3), fixed)), atol=1e-5)


def test_attention_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        p = _problem(3)
        config = cfjax.Config(aggregator="attention", latent_dim=3)
        params = cfjax.solvers.initial_params(jax.random.key(0), p, Hparams.create(), config)
        rng = np.random.default_rng(1)
        theta = jax.tree.map(lambda t: t + 0.3 * jnp.asarray(rng.normal(size=np.shape(t))), params.theta)
        params = params._replace(theta=theta)

        def loss(params):
            return losses.supervised_parts(params, p, Hparams.create(), config)[0]

        grad = jax.grad(loss)(params)
        direction = jax.tree.map(lambda t: jnp.asarray(rng.normal(size=np.shape(t))), params)
        eps = 1e-6
        plus = loss(jax.tree.map(lambda t, v: t + eps * v, params, direction))
        minus = loss(jax.tree.map(lambda t, v: t - eps * v, params, direction))
        directional = sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
        np.testing.assert_allclose(float(directional), float((plus - minus) / (2 * eps)), rtol=1e-6)


def test_attention_learns_the_trust_that_depends_on_the_instance():
    """On regional experts, trust per instance is what the data need: attention beats the
    weighted aggregator on the same factors by a wide margin, and trusts each region's experts."""
    ens = data.preset(jax.random.key(0), "regional_experts", n_instances=600)
    scores = {}
    for name in ("weighted", "attention"):
        config = cfjax.Config(method="two_stage", aggregator=name, latent_dim=6)
        result = cfjax.fit(jax.random.key(0), ens.problem, None, config)
        scores[name] = score_test_columns(ens.y_true, cfjax.proba(result.params, config),
                                                          ens.test)["pr_auc"]
    assert scores["attention"] > scores["weighted"] + 0.08, scores
    alpha = np.asarray(aggregators.attention_weights(result.params.theta, aggregators.inputs(result.params)))
    weight = alpha * np.asarray(result.params.theta.w)[:, None]  # the weight on each cell's evidence
    per_region = np.stack([weight[:, ens.regions == k].mean(axis=1) for k in range(3)], axis=1)  # (m, K)
    # in every region, the classifier weighed most there is one of its experts
    assert ens.experts[per_region.argmax(axis=0), np.arange(3)].all(), per_region


@pytest.mark.parametrize("formulation", ["fold_in", "free"])
def test_joint_trains_the_attention_aggregator(formulation):
    ens = data.preset(jax.random.key(1), "regional_experts", n_instances=300)
    config = cfjax.Config(method="joint", aggregator="attention", latent_dim=4, max_iter=60, formulation=formulation)
    result = cfjax.fit(jax.random.key(0), ens.problem, None, config)
    assert isinstance(result.params.theta, aggregators.AttentionTheta)
    assert float(jnp.abs(result.params.theta.A).max()) > 0  # the trust map moved off zero
    total = np.asarray(result.history.total)[: int(result.n_iter)]
    assert np.isfinite(total).all() and total[-1] < total[0]
    assert np.isfinite(np.asarray(cfjax.proba(result.params, config))).all()



def _wine_prior_fit(ensemble, along, monkeypatch):
    monkeypatch.setattr(aggregators, "_PRIOR_ALONG", along)
    problem = ensemble.problem
    R = problem.R  # complete; the default's full-rank reconstruction is within 0.006 of it
    fixed = aggregators.Inputs(R_hat=R, X=jnp.eye(R.shape[0]), Y=R)
    hp = Hparams.create(agg_prior=0.1)
    theta0 = aggregators.prior.init(jax.random.key(0), R.shape[0], hp, R.dtype)
    theta = aggregators.prior.exact_fit(theta0, fixed, problem.labels, problem.labeled.astype(R.dtype), hp)
    logits = theta.w @ R + theta.b
    return (score_test_columns(ensemble.y_true, jax.nn.sigmoid(logits), ensemble.test)["pr_auc"],
            score_test_columns(ensemble.y_true, logits, ensemble.test)["pr_auc"])


def test_separable_labeled_columns_keep_the_float32_probabilities_ranked(tmp_path, monkeypatch):
    """wine at 20 % labeled, split 3: one classifier separates the 35 labeled columns. With a free
    scale along the prior's direction (precision 1e-4, as it was) the fit ran out to logits of 70,
    the float32 probabilities of positives and negatives tied at exactly 1.0, and the test PR-AUC
    the user gets (of the probabilities) fell to 0.94 while the logits ranked at 0.999. The weak
    prior along it (standard deviation 10) keeps the probabilities ranking as the logits do."""
    from cfjax import benchmark

    wine = benchmark.load_ensemble("wine", 3, cache_dir=tmp_path, labeled_fraction=0.2)
    proba_score, logit_score = _wine_prior_fit(wine, 1e-2, monkeypatch)
    assert logit_score > 0.99 and proba_score > logit_score - 1e-3
    proba_free, logit_free = _wine_prior_fit(wine, 1e-4, monkeypatch)
    assert logit_free > 0.99 and proba_free < logit_free - 0.02  # the failure the weak prior removes
