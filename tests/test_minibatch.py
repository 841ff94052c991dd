"""Minibatch fold-in joint (`cfjax.solvers.minibatch`): the batch estimate against the full
objective and a NumPy loop, one batch against the full-batch trajectory, keyed shuffling, refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cfjax
from cfjax import data, metrics
from cfjax.solvers import joint, minibatch
from tests import reference


def _problem(n=240, m=6, seed=0, validation=0.0):
    ens = data.synthetic(jax.random.key(seed), n_classifiers=m, n_instances=n, labeled_fraction=0.4, missing_rate=0.1)
    dtype = jnp.result_type(float)  # float64 inside `jax.enable_x64(True)`, else float32
    problem = jax.tree.map(lambda a: a.astype(dtype) if a.dtype == jnp.float32 else a, ens.problem)
    if validation:
        problem = data.hold_out(jax.random.key(seed + 1), problem, validation)
    return problem, ens


def _params(problem, hparams, config, seed=3):
    params = cfjax.solvers.initial_params(jax.random.key(1), problem, hparams, config)
    return params._replace(X=params.X + 0.1 * jax.random.normal(jax.random.key(seed), params.X.shape, params.X.dtype))


@pytest.mark.parametrize("aggregator", ["weighted", "mean"])
@pytest.mark.parametrize("class_weight", [True, False])
def test_one_batch_of_every_column_is_the_fold_in_objective_and_gradient(aggregator, class_weight):
    with jax.enable_x64(True):
        problem, _ = _problem()
        hparams = joint.METHOD.hparams(rho=0.4, agg_l2=0.01, dtype=jnp.float64)
        config = cfjax.Config(method="joint", latent_dim=3, aggregator=aggregator, class_weight=class_weight,
                              options=(("batch_size", 10**6),))
        params = _params(problem, hparams, config)
        full, full_grad = jax.value_and_grad(joint.objective)(params, problem, hparams, config)

        def estimate(trainable):
            n = jnp.asarray(problem.n_instances)
            return minibatch.batch_objective(trainable, problem, n, minibatch.scale_of(problem), hparams, config)[0]

        value, grad = jax.value_and_grad(estimate)(minibatch.Trainable(params.X, params.theta))
        np.testing.assert_allclose(value, full, rtol=1e-12)
        np.testing.assert_allclose(grad.X, full_grad.X, rtol=1e-9, atol=1e-14)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14), grad.theta, full_grad.theta)


def _k_class_problem(K=4, n=120):
    from tests.test_multiclass import ensemble

    R, labels, _ = ensemble(5, m=4, K=K, n=n, labeled=0.5, missing=0.1)
    return cfjax.from_numpy(R, labels, dtype=jnp.result_type(float))


@pytest.mark.parametrize("aggregator", ["weighted", "prior"])
@pytest.mark.parametrize("class_weight", [True, False])
def test_k_class_batches_estimate_the_fold_in_objective_and_gradient(aggregator, class_weight):
    """K = 4: one batch of every column is the fold-in objective and its gradient, and the mean
    over the batches of a partition is too (class weights from the global class counts)."""
    with jax.enable_x64(True):
        problem = _k_class_problem()
        hparams = joint.METHOD.hparams(rho=0.4, agg_l2=0.01, dtype=jnp.float64)
        config = cfjax.Config(method="joint", latent_dim=4, aggregator=aggregator, class_weight=class_weight,
                              options=(("batch_size", 30),))
        params = _params(problem, hparams, config)
        full, full_grad = jax.value_and_grad(joint.objective)(params, problem, hparams, config)
        scale = minibatch.scale_of(problem)
        np.testing.assert_array_equal(scale.class_counts, np.asarray(problem.labels).sum(axis=1))
        trainable = minibatch.Trainable(params.X, params.theta)

        def estimate(t, idx):
            return minibatch.batch_objective(t, minibatch.take_columns(problem, idx), jnp.sum(idx < 120), scale,
                                             hparams, config)[0]

        value, grad = jax.value_and_grad(estimate)(trainable, jnp.arange(120))
        np.testing.assert_allclose(value, full, rtol=1e-12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14), grad,
                     minibatch.Trainable(full_grad.X, full_grad.theta))
        index = minibatch.batch_indices(jax.random.key(2), 120, 120, 30, True)
        parts = [jax.value_and_grad(estimate)(trainable, idx) for idx in index]
        np.testing.assert_allclose(np.mean([v for v, _ in parts]), full, rtol=1e-10)
        mean_grad = jax.tree.map(lambda *g: sum(g) / len(g), *[g for _, g in parts])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-13), mean_grad,
                     minibatch.Trainable(full_grad.X, full_grad.theta))


def test_the_batches_of_a_partition_average_to_the_full_objective_and_gradient():
    """Equal batches of a random permutation: the mean estimate (and gradient) is the full one."""
    with jax.enable_x64(True):
        problem, _ = _problem(n=240)
        hparams = joint.METHOD.hparams(rho=0.3, dtype=jnp.float64)
        config = cfjax.Config(method="joint", latent_dim=3, options=(("batch_size", 60),))
        params = _params(problem, hparams, config)
        scale = minibatch.scale_of(problem)
        index = minibatch.batch_indices(jax.random.key(7), 240, 240, 60, True)
        assert sorted(np.asarray(index).ravel().tolist()) == list(range(240))

        def estimate(trainable, idx):
            batch = minibatch.take_columns(problem, idx)
            return minibatch.batch_objective(trainable, batch, jnp.asarray(60), scale, hparams, config)[0]

        trainable = minibatch.Trainable(params.X, params.theta)
        values, grads = jax.vmap(jax.value_and_grad(estimate), in_axes=(None, 0))(trainable, index)
        full, full_grad = jax.value_and_grad(joint.objective)(params, problem, hparams, config)
        np.testing.assert_allclose(values.mean(), full, rtol=1e-12)
        np.testing.assert_allclose(grads.X.mean(0), full_grad.X, rtol=1e-9, atol=1e-14)
        assert not np.allclose(values, full)  # each batch alone is only an estimate


def test_batch_objective_matches_a_numpy_loop():
    with jax.enable_x64(True):
        problem, _ = _problem(n=120)
        hparams = joint.METHOD.hparams(rho=0.35, agg_l2=0.02, dtype=jnp.float64)
        config = cfjax.Config(method="joint", latent_dim=3, options=(("batch_size", 17),))
        params = _params(problem, hparams, config)
        columns = np.random.default_rng(0).choice(120, 17, replace=False)
        batch = minibatch.take_columns(problem, jnp.asarray(columns))
        scale = minibatch.scale_of(problem)
        got = minibatch.batch_objective(minibatch.Trainable(params.X, params.theta), batch, jnp.asarray(17), scale,
                                        hparams, config)[0]
        P = {k: np.asarray(v) for k, v in problem._asdict().items()}
        want = reference.minibatch_objective(
            np.asarray(params.X), np.asarray(params.theta.w), float(params.theta.b), P["R"], P["C"], P["labels"],
            P["labeled"], columns, dict(n=120, C=P["C"].sum(), pos=float(scale.class_counts[1]), neg=float(scale.class_counts[0])),
            0.35, float(hparams.lam), 0.02)
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_padding_columns_are_ignored():
    with jax.enable_x64(True):
        problem, _ = _problem(n=50)
        hparams = joint.METHOD.hparams(dtype=jnp.float64)
        config = cfjax.Config(method="joint", latent_dim=3, options=(("batch_size", 8),))
        params = _params(problem, hparams, config)
        scale = minibatch.scale_of(problem)
        trainable = minibatch.Trainable(params.X, params.theta)
        idx = jnp.arange(5)
        padded = jnp.concatenate([idx, jnp.full((3,), 50)])
        a = minibatch.batch_objective(trainable, minibatch.take_columns(problem, idx), 5, scale, hparams, config)
        b = minibatch.batch_objective(trainable, minibatch.take_columns(problem, padded), 5, scale, hparams, config)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-12)


def test_batch_indices_cover_each_column_once_and_depend_on_the_key():
    index = np.asarray(minibatch.batch_indices(jax.random.key(0), 10, 7, 3, True))
    assert index.shape == (4, 3)
    flat = index.ravel()
    assert sorted(flat[flat < 10].tolist()) == list(range(7)) and (flat[7:] == 10).all()  # padding last
    again = np.asarray(minibatch.batch_indices(jax.random.key(0), 10, 7, 3, True))
    other = np.asarray(minibatch.batch_indices(jax.random.key(1), 10, 7, 3, True))
    assert (index == again).all() and not (index == other).all()
    ordered = np.asarray(minibatch.batch_indices(jax.random.key(0), 10, 7, 3, False)).ravel()
    assert ordered.tolist() == [0, 1, 2, 3, 4, 5, 6, 10, 10, 10, 10, 10][:12]


@pytest.mark.parametrize("shuffle", [False, True])
def test_one_batch_reproduces_the_full_batch_trajectory(shuffle):
    """batch >= n: an epoch is one step of full-batch fold-in joint, plateau and early stopping
    included (validation columns present, so the monitor is the validation loss)."""
    with jax.enable_x64(True):
        problem, _ = _problem(n=200, validation=0.3)
        hparams = joint.METHOD.hparams(dtype=jnp.float64)
        config = cfjax.Config(method="joint", latent_dim=3, max_iter=40, patience=6)
        full = cfjax.fit(jax.random.key(0), problem, hparams, config)
        batched = cfjax.fit(jax.random.key(0), problem, hparams,
                            config.replace(options=(("batch_size", 500), ("shuffle", shuffle))))
        assert int(full.n_iter) == int(batched.n_iter)
        for f in full.history._fields:
            np.testing.assert_allclose(getattr(batched.history, f), getattr(full.history, f), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(batched.params.X, full.params.X, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(batched.params.Y, full.params.Y, rtol=1e-9, atol=1e-12)


def test_minibatch_fit_is_keyed_and_learns():
    problem, ens = _problem(n=600, seed=2)
    config = cfjax.Config(method="joint", latent_dim=3, max_iter=30, options=(("batch_size", 64),))
    a = cfjax.fit(jax.random.key(0), problem, None, config)
    b = cfjax.fit(jax.random.key(0), problem, None, config)
    c = cfjax.fit(jax.random.key(1), problem, None, config)
    np.testing.assert_array_equal(a.params.X, b.params.X)
    assert not np.allclose(a.params.X, c.params.X)
    full = cfjax.fit(jax.random.key(0), problem, None, config.replace(options=()))
    test = ~np.asarray(problem.labeled)
    y = jnp.asarray(ens.y_true, jnp.float32)
    score = lambda r: float(metrics.average_precision(y, cfjax.predict.proba(r.params, config), test))
    assert np.isfinite(np.asarray(a.history.total)).all()
    assert abs(score(a) - score(full)) < 0.03


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_schedules_run(schedule):
    problem, _ = _problem(n=100)
    config = cfjax.Config(method="joint", latent_dim=2, max_iter=5,
                          options=(("batch_size", 32), ("schedule", schedule)))
    result = cfjax.fit(jax.random.key(0), problem, None, config)
    assert np.isfinite(np.asarray(result.history.total)).all()
    assert float(result.history.total[-1]) < float(result.history.total[0])


def test_sweep_entry_equals_its_single_fit():
    problem, _ = _problem(n=100)
    config = cfjax.Config(method="joint", latent_dim=2, max_iter=4, options=(("batch_size", 32),))
    grid = cfjax.sweep.grid(rho=[0.3, 0.7], method="joint")
    swept = cfjax.sweep.run(jax.random.split(jax.random.key(0), 1), problem, grid, config)
    single = cfjax.fit(jax.random.split(jax.random.key(0), 1)[0], problem, cfjax.solvers.get("joint").hparams(rho=0.7),
                       config)
    np.testing.assert_allclose(np.asarray(swept.params.X)[1, 0], single.params.X, rtol=2e-4, atol=2e-5)


def test_free_y_and_full_batch_methods_refuse_batches():
    problem, _ = _problem(n=60)
    options = (("batch_size", 16),)
    with pytest.raises(ValueError, match="batch_size.*needs the full batch.*fold_in"):
        cfjax.fit(jax.random.key(0), problem, None, cfjax.Config(method="joint", formulation="free", options=options))
    for method in ("als", "two_stage", "mm_als", "alternating", "auto"):
        with pytest.raises(ValueError, match=f"batch_size: method '{method}' needs the full batch"):
            cfjax.fit(jax.random.key(0), problem, None, cfjax.Config(method=method, options=options))


@pytest.mark.parametrize("options, fragment", [
    ((("batch_size", 0),), "batch_size: expected an int >= 1"),
    ((("batch_size", 2.5),), "batch_size: expected an int >= 1"),
    ((("batch_size", 8), ("schedule", "step")), "schedule: expected one of"),
    ((("batch_size", 8), ("shuffle", "yes")), "shuffle: expected a bool"),
])
def test_bad_minibatch_options_are_refused(options, fragment):
    problem, _ = _problem(n=60)
    with pytest.raises(ValueError, match=fragment):
        cfjax.fit(jax.random.key(0), problem, None, cfjax.Config(method="joint", options=options))


def test_a_new_learning_rate_or_rho_does_not_recompile():
    problem, _ = _problem(n=90)
    config = cfjax.Config(method="joint", latent_dim=2, max_iter=3, options=(("batch_size", 16),))
    cfjax.fit(jax.random.key(0), problem, joint.METHOD.hparams(lr=0.01), config)
    before = cfjax.api.fit_jit._cache_size()
    cfjax.fit(jax.random.key(1), problem, joint.METHOD.hparams(lr=0.05, rho=0.2), config)
    assert cfjax.api.fit_jit._cache_size() == before
