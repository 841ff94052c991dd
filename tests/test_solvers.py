"""Every training method: one call, finite results, the behaviour each one promises."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cfjax
from cfjax import baselines, data, losses, metrics, predict
from cfjax.solvers import METHODS

from . import tiers

#: The iterative methods (auto, a choice among them, has tests of its own: test_auto.py).
METHOD_NAMES = tuple(name for name, method in METHODS.items() if method.fit is None)


@pytest.fixture(scope="module")
def small():
    return data.preset(jax.random.key(0), "seed", n_instances=200, n_classifiers=6)


def _test_pr_auc(ens, proba):
    return float(metrics.average_precision(jnp.asarray(ens.y_true, jnp.float32), proba, jnp.asarray(ens.test)))


def test_registry_lists_every_method():
    assert set(METHODS) == {*METHOD_NAMES, "auto"}
    assert set(METHOD_NAMES) == {"als", "alternating", "label_aware_als", "two_stage", "damped", "joint", "mm_als"}
    for method in METHODS.values():
        assert method.description


@pytest.mark.parametrize("method", METHOD_NAMES)
@tiers.parametrize("init", ["svd", "random"], only_fast=0)  # every method, svd init; random: slow
def test_every_method_runs_with_the_same_call(small, method, init):
    cfg = cfjax.Config(method=method, latent_dim=3, max_iter=15, init=init, damped_every=3)
    result = cfjax.fit(jax.random.key(1), small.problem, cfjax.Hparams.create(rho=0.5), cfg)
    assert result.params.X.shape == (3, 6) and result.params.Y.shape == (3, 200)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(result.params))
    for field in ("total", "recon", "sup"):
        h = np.asarray(getattr(result.history, field))
        assert h.shape == (15,) and np.isfinite(h).all()
    assert 1 <= int(result.n_iter) <= 15
    proba = np.asarray(predict.proba(result.params, cfg))
    assert proba.shape == (200,) and ((proba >= 0) & (proba <= 1)).all()


@tiers.parametrize("method", METHOD_NAMES, only_fast=lambda m: m in ("joint", "mm_als"))
def test_same_key_gives_identical_results(small, method):
    cfg = cfjax.Config(method=method, latent_dim=3, max_iter=10, init="random")
    a = cfjax.fit(jax.random.key(5), small.problem, cfjax.Hparams.create(), cfg)
    b = cfjax.fit(jax.random.key(5), small.problem, cfjax.Hparams.create(), cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_als_reconstruction_is_non_increasing(small):
    cfg = cfjax.Config(method="als", latent_dim=3, max_iter=30, init="random", tol=0.0)
    result = cfjax.fit(jax.random.key(0), small.problem, cfjax.Hparams.create(rho=1.0), cfg)
    recon = np.asarray(result.history.recon)
    assert (np.diff(recon) <= 1e-6 * recon[:-1]).all()


@pytest.mark.slow  # 3000 float64 Adam steps
def test_joint_decreases_the_loss_to_a_small_gradient():
    with jax.enable_x64(True):
        ens = data.preset(jax.random.key(0), "seed", n_instances=60, n_classifiers=4)
        hp = cfjax.Hparams.create(rho=0.5, lr=0.02)
        cfg = cfjax.Config(method="joint", formulation="free", latent_dim=2, max_iter=3000, patience=0, tol=0.0)
        result = cfjax.fit(jax.random.key(0), ens.problem, hp, cfg)
        total = np.asarray(result.history.total)
        assert total[-1] < 0.5 * total[0]
        grad = jax.grad(losses.loss)(result.params, ens.problem, hp, cfg)
        norm = np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grad)))
        assert norm < 1e-3


@pytest.mark.slow  # 20 steps op by op without jit
def test_joint_jit_and_no_jit_agree(small):
    cfg = cfjax.Config(method="joint", latent_dim=3, max_iter=20)
    hp = cfjax.Hparams.create()
    jitted = cfjax.fit(jax.random.key(0), small.problem, hp, cfg)
    with jax.disable_jit():
        eager = cfjax.solvers.fit_traced(jax.random.key(0), small.problem, hp, cfg)
    np.testing.assert_allclose(np.asarray(jitted.params.X), np.asarray(eager.params.X), rtol=1e-4, atol=1e-5)


def test_joint_early_stopping_uses_validation_columns(small):
    problem = data.hold_out(jax.random.key(0), small.problem, 0.3)
    cfg = cfjax.Config(method="joint", latent_dim=3, max_iter=2000, patience=20, tol=0.0)
    result = cfjax.fit(jax.random.key(0), problem, cfjax.Hparams.create(rho=0.1, lr=0.05), cfg)
    assert int(result.n_iter) < 2000
    assert np.isfinite(np.asarray(result.history.valid_pr_auc)).all()


def test_fold_in_formulation_solves_y_from_x(small):
    hp = cfjax.Hparams.create(rho=0.5)
    cfg = cfjax.Config(method="joint", formulation="fold_in", latent_dim=3, max_iter=20)
    result = cfjax.fit(jax.random.key(0), small.problem, hp, cfg)
    Y = predict.fold_in(result.params, small.problem, hp, cfg)
    np.testing.assert_allclose(np.asarray(result.params.Y), np.asarray(Y), rtol=1e-4, atol=1e-5)


def test_label_aware_als_depends_on_rho(small):
    cfg = cfjax.Config(method="label_aware_als", latent_dim=3, max_iter=20)
    probas = [
        np.asarray(predict.proba(cfjax.fit(jax.random.key(0), small.problem, cfjax.Hparams.create(rho=r), cfg).params, cfg))
        for r in (0.1, 0.5, 1.0)
    ]
    assert np.abs(probas[0] - probas[1]).max() > 1e-3
    assert np.abs(probas[1] - probas[2]).max() > 1e-3


def test_damped_differs_from_alternating(small):
    hp = cfjax.Hparams.create(lr=0.1)
    fits = {
        m: cfjax.fit(jax.random.key(0), small.problem, hp, cfjax.Config(method=m, latent_dim=3, max_iter=20, damped_every=5))
        for m in ("alternating", "damped")
    }
    assert not np.allclose(np.asarray(fits["alternating"].params.theta.w), np.asarray(fits["damped"].params.theta.w))


def test_two_stage_aggregator_is_the_exact_logistic_fit(small):
    hp = cfjax.Hparams.create(agg_l2=1e-3)
    cfg = cfjax.Config(method="two_stage", latent_dim=3, max_iter=30)
    params = cfjax.fit(jax.random.key(0), small.problem, hp, cfg).params
    grad = jax.grad(lambda th: losses.supervised_parts(params._replace(theta=th), small.problem, hp, cfg)[0])(
        params.theta
    )
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grad)) < 1e-4


def test_fold_in_of_training_columns_reproduces_transductive_at_rho_one(small):
    hp = cfjax.Hparams.create(rho=1.0)
    cfg = cfjax.Config(method="als", latent_dim=3, max_iter=50)
    params = cfjax.fit(jax.random.key(0), small.problem, hp, cfg).params
    transductive = predict.proba(params, cfg)
    inductive = predict.fold_in_proba(params, small.problem, hp, cfg)
    np.testing.assert_allclose(np.asarray(inductive), np.asarray(transductive), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["joint", "two_stage", "label_aware_als"])
def test_methods_reach_simple_averaging_on_the_seed_setting(method):
    lr = {"joint": 0.01, "label_aware_als": 0.1}.get(method, 0.01)
    hp = cfjax.Hparams.create(rho=0.5, lam=0.01, lr=lr)
    cfg = cfjax.Config(method=method, formulation="free", latent_dim=8, max_iter=200)
    ours, average = [], []
    for seed in range(5):
        ens = data.preset(jax.random.key(seed), "seed", n_instances=1000)
        fit = cfjax.fit(jax.random.key(seed), ens.problem, hp, cfg)
        ours.append(_test_pr_auc(ens, predict.proba(fit.params, cfg)))
        average.append(_test_pr_auc(ens, baselines.simple_average(ens.problem)))
    assert np.mean(ours) >= np.mean(average) - 0.01


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(latent_dim=0), "latent_dim: must be positive"),
        (dict(latent_dim=7), r"latent_dim: must be <= min\(m, n\)"),
        (dict(method="nope"), "method: unknown"),
        (dict(aggregator="nope"), "aggregator: unknown"),
        (dict(method="mm_als", aggregator="mean"), "aggregator: MM-ALS majorizes"),
        (dict(formulation="nope"), "formulation: must be"),
    ],
)
def test_bad_config_raises(small, change, match):
    with pytest.raises(ValueError, match=match):
        cfjax.fit(jax.random.key(0), small.problem, cfjax.Hparams.create(),
                  cfjax.Config(**{"method": "joint", "latent_dim": 3, **change}))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(rho=1.5), r"rho: must lie in \[0.0, 1.0\]"),
        (dict(rho=-0.1), r"rho: must lie in \[0.0, 1.0\]"),
        (dict(lam=-1.0), "lam: must lie in"),
        (dict(lr=0.0), "lr: must lie in"),
        (dict(rho=float("nan")), "rho: must be finite"),
    ],
)
def test_bad_hparams_raise(small, change, match):
    with pytest.raises(ValueError, match=match):
        cfjax.fit(jax.random.key(0), small.problem, cfjax.Hparams.create(**change),
                  cfjax.Config(method="joint", max_iter=2, latent_dim=3))


def test_rho_zero_warns(small):
    with pytest.warns(cfjax.validation.RhoZeroWarning):
        cfjax.fit(jax.random.key(0), small.problem, cfjax.Hparams.create(rho=0.0),
                  cfjax.Config(method="joint", max_iter=2, latent_dim=3))


def test_supervised_method_refuses_single_class_labels(small):
    p = small.problem
    one_class = p._replace(labeled=p.labeled & (p.labels > 0.5))
    with pytest.raises(ValueError, match="labels: labeled instances are all of class 1"):
        cfjax.fit(jax.random.key(0), one_class, cfjax.Hparams.create(), cfjax.Config(method="joint", max_iter=2, latent_dim=3))


@pytest.mark.parametrize("shape", [(6, 40), (40, 6), (5, 5)])
def test_leading_factors_through_the_gram_equal_the_svd(shape):
    """The large-problem "svd" start (eigendecomposition of the shorter side's Gram) against
    the thin SVD: the same rank-d reconstruction and the same factor norms, in float64; a
    rank-deficient matrix gives zero factors for its zero singular values."""
    from cfjax.solvers.base import leading_factors

    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        A = jnp.asarray(rng.uniform(size=shape))
        for d in (1, 3, min(shape)):
            X_svd, Y_svd = leading_factors(A, d)
            X_gram, Y_gram = leading_factors(A, d, gram=True)
            assert X_gram.shape == X_svd.shape == (d, shape[0]) and Y_gram.shape == Y_svd.shape == (d, shape[1])
            np.testing.assert_allclose(X_gram.T @ Y_gram, X_svd.T @ Y_svd, atol=1e-8)
            np.testing.assert_allclose(jnp.abs(X_gram), jnp.abs(X_svd), atol=1e-6)
        low_rank = A[:, :2] @ A[:2, :]  # rank 2 (A's leading 2 x 2 block makes the factors)
        X, Y = leading_factors(low_rank, min(shape), gram=True)
        assert np.isfinite(np.asarray(X)).all() and np.isfinite(np.asarray(Y)).all()
        np.testing.assert_allclose(X.T @ Y, low_rank, atol=1e-8)


def _plain_loss_parts(params, problem, hparams, config):
    """`losses.loss_parts` as it was before the fused reconstruction term (issue 19): X^T Y
    formed once and both parts autodiffed through the plain expressions."""
    R_hat = losses.reconstruct(params)
    recon, recon_sum = losses.reconstruction_parts(params, problem, hparams, R_hat)
    sup, sup_sum = losses.supervised_parts(params, problem, hparams, config, R_hat=R_hat)
    total = hparams.rho * recon + (1.0 - hparams.rho) * sup
    return cfjax.structs.LossParts(total=total, recon=recon, sup=sup, recon_sum=recon_sum, sup_sum=sup_sum)


#: float64: the fused and plain gradients differ by rounding only, and so do 60 Adam steps.
#: float32: the order of the sums moves 60 Adam steps' factors by up to 8e-6 and the
#: probabilities by 2e-6 (measured at these settings); the loss history agrees to 2.4e-7.
FUSED_TOL = {"float64": {"params": 1e-9, "proba": 1e-9, "total": 1e-10},
             "float32": {"params": 3e-5, "proba": 1e-5, "total": 1e-6}}


@pytest.mark.parametrize("formulation", ["free", "fold_in"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_joint_fit_unchanged_by_the_fused_loss(monkeypatch, formulation, dtype):
    tol = FUSED_TOL[dtype]
    with jax.enable_x64(dtype == "float64"):
        ens = data.preset(jax.random.key(0), "seed", n_instances=300, n_classifiers=6)
        hp = cfjax.Hparams.create(rho=0.5, lr=0.02)
        cfg = cfjax.Config(method="joint", formulation=formulation, latent_dim=3, max_iter=60, chunk_size=128)

        def fit():  # a fresh jit each time, so the second fit is traced again with the patch
            return jax.jit(lambda key: cfjax.solvers.fit_traced(key, ens.problem, hp, cfg))(jax.random.key(0))

        fused = fit()
        traced = []
        monkeypatch.setattr(losses, "loss_parts", lambda *a: traced.append(1) or _plain_loss_parts(*a))
        plain = fit()
        assert traced  # the plain expression was really used
        assert fused.params.Y.dtype == jnp.dtype(dtype) and int(fused.n_iter) == int(plain.n_iter)
        for a, b in zip(jax.tree.leaves(fused.params), jax.tree.leaves(plain.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=tol["params"])
        np.testing.assert_allclose(
            np.asarray(predict.proba(fused.params, cfg)), np.asarray(predict.proba(plain.params, cfg)), atol=tol["proba"]
        )
        np.testing.assert_allclose(np.asarray(fused.history.total), np.asarray(plain.history.total), rtol=tol["total"])
