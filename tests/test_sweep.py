"""cfjax.sweep: grids, the sweep vs the single fit, strategies, traces, model selection."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cfjax
from cfjax import data, solvers, sweep
from cfjax.structs import Config, Hparams

from . import tiers

# Tolerance of "entry [g, s] equals the single fit": float32, 12 iterations; batched kernels
# may round differently from unbatched ones.
RTOL = ATOL = 1e-5


@pytest.fixture(scope="module")
def ensemble():
    return data.preset(jax.random.key(3), "seed", n_classifiers=5, n_instances=48)


def _config(method: str, **changes) -> Config:
    # tol = 0 switches the convergence stop off (no change is below 0): with it on, a float32
    # relative change near tol in one program may be 1 ulp off in a batched one, stopping the
    # two at different iterations. patience 4 keeps joint's early stopping on (different fits
    # stop at different steps inside one batch).
    base = dict(method=method, latent_dim=3, max_iter=12, tol=0.0, patience=4, damped_every=3)
    return Config(**{**base, **changes})


#: the grid and seeds of the single-fit comparisons (shared shapes: one compile per config)
ENTRY_GRID = dict(rho=[0.3, 0.8], lr=[0.01, 0.1])
N_SEEDS = 2


def _assert_tree_close(actual, expected, rtol=RTOL, atol=ATOL):
    flat_a, tree_a = jax.tree.flatten(actual)
    flat_e, tree_e = jax.tree.flatten(expected)
    assert tree_a == tree_e
    for a, e in zip(flat_a, flat_e, strict=True):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(e), rtol=rtol, atol=atol, equal_nan=True
        )


def _entry(result, g, s):
    return jax.tree.map(lambda x: x[g, s], result)


# ------------------------------------------------------------------------------------------
# grids


def test_grid_is_the_cartesian_product_in_order():
    g = sweep.grid(rho=[0.1, 0.5, 0.9], lam=[0.01, 1.0])
    assert sweep.grid_size(g) == 6
    expected = list(itertools.product([0.1, 0.5, 0.9], [0.01, 1.0]))
    np.testing.assert_allclose(np.stack([g.rho, g.lam], axis=1), np.array(expected), rtol=1e-7)
    defaults = Hparams.create()
    for name in ("alpha", "lr", "focal_gamma", "agg_l2", "certainty_floor"):
        field = getattr(g, name)
        assert field.shape == (6,) and field.dtype == getattr(defaults, name).dtype
        np.testing.assert_array_equal(field, np.full(6, getattr(defaults, name)))
    point = sweep.take(g, 3)
    assert isinstance(point, Hparams) and point.rho.shape == ()
    np.testing.assert_allclose([point.rho, point.lam], expected[3], rtol=1e-7)


@pytest.mark.parametrize(
    "axes, name",
    [({"rhoo": [0.1]}, "rhoo"), ({"rho": []}, "rho"), ({"lam": [[0.1, 0.2]]}, "lam"), ({}, "axes")],
)
def test_grid_rejects_bad_axes(axes, name):
    with pytest.raises(ValueError, match=name):
        sweep.grid(**axes)


def test_default_rhos_avoid_zero():
    rhos = np.asarray(sweep.DEFAULT_RHOS)
    assert rhos.size >= 10 and (rhos > 0).all() and (rhos <= 1).all() and rhos.min() <= 0.05
    assert np.all(np.diff(rhos) > 0)


# ------------------------------------------------------------------------------------------
# every sweep entry is the single fit it stands for


# fast tier: the ALS family under the CPU strategy ("map"; joint: test_strategies_agree)
@tiers.parametrize("method", sorted(solvers.METHODS), only_fast=lambda m: m in ("als", "mm_als"))
def test_entry_equals_single_fit(method, ensemble):
    problem = ensemble.problem
    config = _config(method)
    g = sweep.grid(**ENTRY_GRID)
    keys = jax.random.split(jax.random.key(1), N_SEEDS)
    result = sweep.run(keys, problem, g, config)  # "auto"
    assert result.n_iter.shape == (4, N_SEEDS)
    for gi, si in itertools.product(range(sweep.grid_size(g)), range(N_SEEDS)):
        single = cfjax.fit_jit(keys[si], problem, sweep.take(g, gi), config)._replace(state=None)
        _assert_tree_close(_entry(result, gi, si), single)


def test_strategies_agree(ensemble):
    # joint here; the ALS family under vmap is checked against the single fit below
    problem = ensemble.problem
    config = _config("joint")
    g = sweep.grid(**ENTRY_GRID)
    keys = jax.random.split(jax.random.key(1), N_SEEDS)
    reference = sweep.run(keys, problem, g, config, strategy="map")
    # batch_size 3 does not divide G * S = 8: both the scanned batches and the remainder run
    for strategy, batch_size in (("vmap", None), ("map_batched", 3)):
        other = sweep.run(keys, problem, g, config, strategy=strategy, batch_size=batch_size)
        _assert_tree_close(other, reference)


def test_vmap_entry_equals_single_fit_with_hparam_dependent_confidence(ensemble):
    # The confidence depends on traced hparams here, so the SVD initialisation is batched too.
    problem = ensemble.problem
    config = _config("als", confidence="certainty")
    g = sweep.grid(certainty_floor=[0.01, 0.5], lam=[0.01, 0.3])
    keys = jax.random.split(jax.random.key(2), 2)
    result = sweep.run(keys, problem, g, config, strategy="vmap")
    for gi, si in itertools.product(range(4), range(2)):
        _assert_tree_close(
            _entry(result, gi, si), cfjax.fit_jit(keys[si], problem, sweep.take(g, gi), config)._replace(state=None)
        )


# ------------------------------------------------------------------------------------------
# one compiled program per grid size


@pytest.mark.parametrize("strategy", ["map", "vmap"])
def test_one_trace_per_grid_shape(strategy, ensemble, monkeypatch):
    calls = []
    original = solvers.fit_traced

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(solvers, "fit_traced", counted)
    # a config no other test uses, so the jit cache starts empty for it
    config = _config("als", max_iter=7, latent_dim=2, init="random")
    keys = jax.random.split(jax.random.key(0), 2)
    problem = ensemble.problem
    first = sweep.run(keys, problem, sweep.grid(rho=[0.2, 0.4, 0.6]), config, strategy=strategy)
    assert len(calls) == 1
    # new values, same size (and grids built differently: scalars are broadcast on the host)
    second = sweep.run(
        keys, problem, sweep.grid(rho=[0.3, 0.5, 0.7], lam=[0.05]), config, strategy=strategy
    )
    third = sweep.run(
        keys, problem, Hparams.create(lam=jnp.array([0.9, 0.8, 0.7])), config, strategy=strategy
    )
    assert len(calls) == 1
    assert not np.allclose(first.params.Y, second.params.Y)
    assert third.n_iter.shape == (3, 2)
    # the seed axis carries the keys: random initialisations differ between seeds
    assert not np.allclose(first.params.Y[0, 0], first.params.Y[0, 1])
    if strategy == "map":
        sweep.run(keys, problem, sweep.grid(rho=[0.3, 0.5]), config, strategy=strategy)
        assert len(calls) == 2


# ------------------------------------------------------------------------------------------
# host-side validation


def test_run_validates_on_the_host(ensemble):
    problem = ensemble.problem
    config = _config("joint")
    keys = jax.random.split(jax.random.key(0), 2)
    g = sweep.grid(rho=[0.5])
    with pytest.raises(ValueError, match="keys"):
        sweep.run(jax.random.PRNGKey(0)[None], problem, g, config)
    with pytest.raises(ValueError, match="keys"):
        sweep.run(jax.random.key(0), problem, g, config)
    with pytest.raises(ValueError, match="rho"):
        sweep.run(keys, problem, sweep.grid(rho=[0.5, 1.5]), config)
    with pytest.raises(ValueError, match="lr"):
        sweep.run(keys, problem, sweep.grid(lr=[0.1, -1.0]), config)
    with pytest.raises(ValueError, match="grid"):
        sweep.run(
            keys,
            problem,
            Hparams.create(rho=jnp.array([0.1, 0.2]), lam=jnp.array([0.1, 0.2, 0.3])),
            config,
        )
    with pytest.raises(ValueError, match="strategy"):
        sweep.run(keys, problem, g, config, strategy="pmap")
    with pytest.raises(ValueError, match="batch_size"):
        sweep.run(keys, problem, g, config, strategy="map_batched")
    with pytest.raises(ValueError, match="batch_size"):
        sweep.run(keys, problem, g, config, strategy="vmap", batch_size=2)
    with pytest.raises(ValueError, match="latent_dim"):
        sweep.run(keys, problem, g, config.replace(latent_dim=99))
    unlabeled = problem._replace(labeled=jnp.zeros_like(problem.labeled))
    with pytest.raises(ValueError, match="labels"):
        sweep.run(keys, unlabeled, g, config)
    # rho = 0 warns (the host checks come before the strategy is read, so nothing compiles)
    with pytest.warns(cfjax.validation.RhoZeroWarning), pytest.raises(ValueError, match="strategy"):
        sweep.run(keys, problem, sweep.grid(rho=[0.0, 0.5]), config, strategy="none")


def test_resolve_strategy_auto_follows_the_backend():
    expected = "map" if jax.default_backend() == "cpu" else "vmap"
    assert sweep.resolve_strategy("auto") == expected
    assert sweep.resolve_strategy("map_batched") == "map_batched"


# ------------------------------------------------------------------------------------------
# model selection


def _informative_problem(seed: int = 2, n: int = 90):
    """One strong classifier among four near-0/1 random ones; half the columns labeled."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    rng.shuffle(y)
    good = 1 / (1 + np.exp(-(2.5 * (2 * y - 1) + rng.normal(size=n))))
    noise = 1 / (1 + np.exp(-4 * rng.normal(size=(4, n))))
    R = np.vstack([good[None, :], noise])
    labeled = data.stratified_labeled_mask(jax.random.key(seed), y, 0.5)
    problem = cfjax.from_numpy(R, np.where(labeled, y, -1))
    return problem, y, labeled


#: shared by the selection tests (one compiled sweep): full rank, so the aggregator can find the
#: strong row; rho = 1 leaves joint's aggregator at its initial weights (the plain mean).
SELECT_CONFIG = _config("joint", patience=0, max_iter=60, latent_dim=5)
SELECT_GRID = sweep.grid(rho=[1.0, 0.5], lr=[0.1])


def test_stratified_folds_partition_the_training_columns():
    problem, y, labeled = _informative_problem()
    folds = sweep.stratified_folds(jax.random.key(0), problem, 3)
    assert folds.shape == (3, problem.n_instances)
    assert (folds.sum(axis=0) <= 1).all()
    np.testing.assert_array_equal(folds.any(axis=0), labeled)
    for cls in (0, 1):
        counts = (folds & (y == cls)[None, :]).sum(axis=1)
        assert counts.max() - counts.min() <= 1 and counts.min() >= 1
    sub = sweep.fold_problem(problem, folds[0])
    np.testing.assert_array_equal(sub.validation, folds[0])
    np.testing.assert_array_equal(sub.labeled, labeled & ~folds[0])
    with pytest.raises(ValueError, match="n_folds"):
        sweep.stratified_folds(jax.random.key(0), problem, 1)
    with pytest.raises(ValueError, match="n_folds"):
        sweep.stratified_folds(jax.random.key(0), problem, 40)


def test_select_ignores_the_hidden_labels():
    problem, y, labeled = _informative_problem()
    config, g = SELECT_CONFIG, SELECT_GRID
    # the hidden labels set to the truth, then to a permutation of it: neither may matter
    truth = problem._replace(labels=jnp.asarray(y, problem.labels.dtype))
    hidden = np.flatnonzero(~labeled)
    shuffled = y.copy()
    shuffled[hidden] = np.random.default_rng(0).permutation(y[hidden])
    assert (shuffled != y).any()
    permuted = problem._replace(labels=jnp.asarray(shuffled, problem.labels.dtype))
    a = sweep.select(jax.random.key(7), truth, g, config, n_folds=3, seeds=2)
    b = sweep.select(jax.random.key(7), permuted, g, config, n_folds=3, seeds=2)
    assert a.index == b.index
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.folds, b.folds)
    assert not (a.folds & ~labeled[None, :]).any()
    _assert_tree_close(a.refit, b.refit, rtol=0, atol=0)


def test_select_picks_the_sensible_point():
    # rho = 1 leaves joint's aggregator at the plain mean, dominated by the noise rows;
    # rho = 0.5 learns to trust the strong row.
    problem, y, labeled = _informative_problem()
    config, g = SELECT_CONFIG, SELECT_GRID
    sel = sweep.select(jax.random.key(0), problem, g, config, n_folds=3, seeds=2)
    assert sel.scores.shape == (2, 3) and sel.mean.shape == (2,) and sel.sd.shape == (2,)
    assert sel.index == 1
    assert sel.mean[1] > sel.mean[0] + 0.05
    np.testing.assert_allclose(sel.hparams.rho, 0.5, rtol=1e-6)
    _assert_tree_close(
        sel.refit,
        cfjax.fit_jit(
            jax.random.split(jax.random.split(jax.random.key(0))[1], 2)[0],
            problem,
            sel.hparams,
            config,
        ),
    )  # the refit keeps its state (it is a single fit)
    # the refit is on all training columns: it scores well on the hidden ones
    test_score = cfjax.metrics.average_precision(
        jnp.asarray(y, jnp.float32), cfjax.proba(sel.refit.params, config), jnp.asarray(~labeled)
    )
    assert test_score > 0.85
    # a loss metric is minimised
    by_brier = sweep.select(jax.random.key(0), problem, g, config, metric="brier", seeds=2)
    assert by_brier.index == int(np.argmin(by_brier.mean))


def test_select_validates_arguments():
    problem, _, _ = _informative_problem()
    config = _config("joint", max_iter=2)
    g = sweep.grid(rho=[0.5])
    with pytest.raises(ValueError, match="metric"):
        sweep.select(jax.random.key(0), problem, g, config, metric="accuracy")
    with pytest.raises(ValueError, match="seeds"):
        sweep.select(jax.random.key(0), problem, g, config, seeds=0)
    with pytest.raises(ValueError, match="key"):
        sweep.select(jax.random.split(jax.random.key(0), 2), problem, g, config)


def test_sweep_over_the_attention_aggregator_and_learned_confidence(ensemble):
    # a grid over the penalty of the trust map, fitted by joint and by two_stage's L-BFGS
    problem = ensemble.problem
    g = sweep.grid(agg_l2=[1e-3, 1e-1])
    keys = jax.random.split(jax.random.key(2), 1)
    for method in ("joint", "two_stage"):
        config = _config(method, aggregator="attention", confidence="learned")
        result = sweep.run(keys, problem, g, config, strategy="vmap")
        for gi in range(2):
            single = cfjax.fit_jit(keys[0], problem, sweep.take(g, gi), config)._replace(state=None)
            _assert_tree_close(_entry(result, gi, 0), single, rtol=1e-4, atol=1e-4)
        assert not np.allclose(np.asarray(result.params.theta.A[0]), np.asarray(result.params.theta.A[1]))


# ------------------------------------------------------------------------------------------
# K classes: the sweep and the selection of a K-class problem (classes as rows, one-hot labels)


def _k_class_problem():
    from tests.test_multiclass import ensemble as k_ensemble

    R, labels, y = k_ensemble(4, n=48)
    return cfjax.from_numpy(R, labels), labels, y


@tiers.parametrize(
    "method, aggregator, axes",
    [("joint", "weighted", dict(rho=[0.3, 0.8], lam=[0.01, 1.0])), ("two_stage", "prior", dict(agg_prior=[0.1, 3.0]))],
    only_fast=0,
)
def test_k_class_sweep_entries_are_single_fits(method, aggregator, axes):
    """A sweep over rho / lam / agg_prior of a K-class problem is the loop of its single fits."""
    problem, _, _ = _k_class_problem()
    config = _config(method, aggregator=aggregator)
    g = sweep.grid(method=method, **axes)
    keys = jax.random.split(jax.random.key(1), N_SEEDS)
    result = sweep.run(keys, problem, g, config)
    assert result.params.theta.b.shape == (sweep.grid_size(g), N_SEEDS, 3)  # (G, S, K)
    for gi, s in itertools.product(range(sweep.grid_size(g)), range(N_SEEDS)):
        single = cfjax.fit_jit(keys[s], problem, sweep.take(g, gi), config)._replace(state=None)
        _assert_tree_close(_entry(result, gi, s), single, rtol=1e-4, atol=1e-5)
    probas = jax.vmap(jax.vmap(lambda p: cfjax.proba(p, config)))(result.params)
    assert probas.shape == (sweep.grid_size(g), N_SEEDS, 3, problem.n_instances)
    assert not np.allclose(probas[0, 0], probas[-1, 0])  # the swept value matters


@pytest.mark.slow  # 11 s; K-class folds are also checked in tests/test_multiclass_model.py
def test_k_class_folds_and_selection():
    """Folds deal every one of K classes evenly; each fold's score is the K-class metric (macro
    PR-AUC of the softmax) of the single fit with that fold held out."""
    problem, labels, y = _k_class_problem()
    train = labels >= 0
    folds = sweep.stratified_folds(jax.random.key(0), problem, 3)
    np.testing.assert_array_equal(folds.any(axis=0), train)
    for cls in range(3):
        counts = (folds & (y == cls)[None, :]).sum(axis=1)
        assert counts.max() - counts.min() <= 1 and counts.min() >= 1, cls
    config = _config("two_stage")
    g = sweep.grid(rho=[0.2, 0.9], method="two_stage")
    sel = sweep.select(jax.random.key(5), problem, g, config, n_folds=3)
    assert sel.scores.shape == (2, 3) and np.isfinite(sel.scores).all()
    fit_key = jax.random.split(jax.random.split(jax.random.key(5))[1], 1)[0]
    for gi, k in itertools.product(range(2), range(3)):
        single = cfjax.fit_jit(fit_key, sweep.fold_problem(problem, sel.folds[k]), sweep.take(g, gi), config)
        expected = cfjax.metrics.macro_pr_auc(jnp.asarray(y), cfjax.proba(single.params, config),
                                              jnp.asarray(sel.folds[k]))
        np.testing.assert_allclose(sel.scores[gi, k], float(expected), rtol=1e-5)
    assert sel.index == int(np.argmax(sel.mean))
    assert sel.refit.params.theta.b.shape == (3,)
    with pytest.raises(ValueError, match="metric: unknown K-class metric 'brier'"):
        sweep.select(jax.random.key(5), problem, g, config, metric="brier")
    by_accuracy = sweep.select(jax.random.key(5), problem, g, config, metric="accuracy")
    assert by_accuracy.scores.shape == (2, 3)
    few = cfjax.from_numpy(*_k_class_problem_arrays_with_few_of_class_two())
    with pytest.raises(ValueError, match="n_folds: class 2 has 2 training columns"):
        sweep.stratified_folds(jax.random.key(0), few, 3)


def _k_class_problem_arrays_with_few_of_class_two():
    from tests.test_multiclass import ensemble as k_ensemble

    R, labels, _ = k_ensemble(4, n=48)
    two = np.flatnonzero(labels == 2)
    labels[two[2:]] = -1
    return R, labels
