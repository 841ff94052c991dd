"""cfjax.io: save / load round trips, stable names, and refusal of files that are not results."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cfjax
from cfjax import io, sweep
from cfjax.structs import Config, FitResult, Hparams

from . import tiers


@pytest.fixture(scope="module")
def fitted():
    ens = cfjax.data.synthetic(jax.random.key(3), n_classifiers=5, n_instances=40)
    config = Config(method="joint", latent_dim=2, max_iter=10)
    hparams = Hparams.create(rho=0.3, lam=0.05)
    result = cfjax.fit(jax.random.key(0), ens.problem, hparams, config)
    return ens, result, config, hparams


def _assert_tree_equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_arrays_config_predictions(fitted, tmp_path):
    _, result, config, hparams = fitted
    written = io.save(
        tmp_path / "fit", result, config, hparams, extra={"seed": 0, "proba": np.arange(3.0)}
    )
    assert written == tmp_path / "fit.npz" and written.stat().st_size > 0
    loaded, config2, hparams2 = io.load(written)
    _assert_tree_equal(loaded, result._replace(state=None))  # the state is not written
    _assert_tree_equal(hparams2, hparams)
    assert config2 == config
    assert isinstance(loaded.params.theta, cfjax.aggregators.WeightedTheta)
    np.testing.assert_array_equal(
        np.asarray(cfjax.proba(loaded.params, config2)),
        np.asarray(cfjax.proba(result.params, config)),
    )
    extra = io.load_extra(tmp_path / "fit")  # the suffix is optional on reading too
    np.testing.assert_array_equal(extra["proba"], np.arange(3.0))
    assert extra["seed"] == 0


def test_stable_names(fitted, tmp_path):
    _, result, config, hparams = fitted
    path = io.save(tmp_path / "fit.npz", result, config, hparams)
    with np.load(path, allow_pickle=False) as f:
        names = set(f.files)
        stored = json.loads(str(f["config_json"]))
    expected = {
        "params/X",
        "params/Y",
        "params/theta/w",
        "params/theta/b",
        "n_iter",
        "converged",
        "config_json",
        "meta_json",
    }
    expected |= {f"history/{f}" for f in cfjax.History._fields}
    expected |= {f"hparams/{f}" for f in Hparams._fields}
    assert names == expected
    assert stored == json.loads(io.config_to_json(config))
    assert io.config_from_json(io.config_to_json(config)) == config


def test_mean_aggregator_and_batched_result(tmp_path):
    # A result with leading batch axes (as a sweep returns) and an aggregator without parameters.
    m, n, d, T = 3, 6, 2, 4
    one = FitResult(
        params=cfjax.Params(X=jnp.ones((d, m)), Y=jnp.zeros((d, n)), theta=()),
        history=cfjax.History(*(jnp.arange(T, dtype=jnp.float32) for _ in range(4))),
        n_iter=jnp.asarray(T, jnp.int32),
        converged=jnp.asarray(False),
    )
    batched = jax.tree.map(lambda x: jnp.stack([x, x + 1]), one)
    grid = sweep.grid(rho=[0.1, 0.9])
    config = Config(aggregator="mean", latent_dim=d)
    loaded, config2, grid2 = io.load(io.save(tmp_path / "sweep.npz", batched, config, grid))
    _assert_tree_equal(loaded, batched._replace(info={"confidence": {}}))  # info: always a dict on loading
    _assert_tree_equal(grid2, grid)
    assert config2 == config and loaded.params.theta == ()


def test_save_rejects_bad_arguments(fitted, tmp_path):
    _, result, config, hparams = fitted
    with pytest.raises(ValueError, match="result"):
        io.save(tmp_path / "a.npz", result.params, config, hparams)
    with pytest.raises(ValueError, match="config"):
        io.save(tmp_path / "a.npz", result, dataclasses.asdict(config), hparams)
    with pytest.raises(ValueError, match="hparams"):
        io.save(tmp_path / "a.npz", result, config, {"rho": 0.5})
    with pytest.raises(ValueError, match="extra"):
        io.save(tmp_path / "a.npz", result, config, hparams, extra={"bad": {"a": 1}})


def test_load_rejects_files_that_are_not_results(fitted, tmp_path):
    _, result, config, hparams = fitted
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    other = tmp_path / "other.npz"
    np.savez(other, R=np.zeros(3))
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    good = io.save(tmp_path / "good.npz", result, config, hparams)
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    newer = tmp_path / "newer.npz"
    meta = json.loads(str(arrays["meta_json"]))
    np.savez(
        newer, **{**arrays, "meta_json": np.asarray(json.dumps({**meta, "format_version": 99}))}
    )
    partial = tmp_path / "partial.npz"
    np.savez(partial, **{k: v for k, v in arrays.items() if k != "params/Y"})
    alien = tmp_path / "alien.npz"
    cfg = {**json.loads(str(arrays["config_json"])), "warp_drive": True}
    np.savez(alien, **{**arrays, "config_json": np.asarray(json.dumps(cfg))})
    for path, match in (
        (text, "not a cfjax result"),
        (other, "format tag"),
        (single, "not a cfjax result"),
        (newer, "newer"),
        (partial, "missing array"),
        (alien, "warp_drive"),
    ):
        with pytest.raises(ValueError, match=match) as info:
            io.load(path)
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "absent.npz")


def test_attention_and_learned_confidence_round_trip(tmp_path):
    ens = cfjax.data.preset(jax.random.key(0), "regional_experts", n_instances=90)
    config = Config(method="two_stage", aggregator="attention", confidence="learned", latent_dim=5, max_iter=5)
    hparams = cfjax.solvers.get("two_stage").hparams()
    result = cfjax.fit(jax.random.key(0), ens.problem, hparams, config)
    loaded, config2, hparams2 = io.load(io.save(tmp_path / "attention.npz", result, config, hparams))
    assert config2 == config and loaded.params.theta.A.shape == (5, 5)
    _assert_tree_equal(loaded.params, result.params)
    np.testing.assert_array_equal(np.asarray(cfjax.predict.fold_in_proba(loaded, ens.problem, hparams2, config2)),
                                  np.asarray(cfjax.predict.fold_in_proba(result, ens.problem, hparams, config)))


@tiers.parametrize("aggregator", ["weighted", "prior"], only_fast=0)
def test_k_class_fit_and_sweep_round_trip(aggregator, tmp_path):
    """A K-class fit (X (d, m K), theta with a class axis) and a K-class sweep's (G, S) result
    come back with their aggregator's K-class structure and the same (K, n) probabilities."""
    from tests.test_multiclass import ensemble

    R, labels, _ = ensemble(1, n=40)
    problem = cfjax.from_numpy(R, labels)
    config = Config(method="two_stage", latent_dim=3, max_iter=5, aggregator=aggregator)
    hparams = cfjax.solvers.get("two_stage").hparams()
    result = cfjax.fit(jax.random.key(0), problem, hparams, config)
    loaded, config2, hparams2 = io.load(io.save(tmp_path / "k", result, config, hparams))
    _assert_tree_equal(loaded, result._replace(state=None))
    assert config2 == config and loaded.params.theta.b.shape == (3,)
    _assert_tree_equal(hparams2, hparams)
    proba = cfjax.proba(loaded.params, config2)
    assert proba.shape == (3, 40)
    np.testing.assert_array_equal(np.asarray(proba), np.asarray(cfjax.proba(result.params, config)))
    with np.load(tmp_path / "k.npz") as f:
        assert json.loads(str(f["meta_json"]))["n_classes"] == 3
    swept = sweep.run(jax.random.split(jax.random.key(0), 2), problem, sweep.grid(rho=[0.2, 0.7]), config)
    loaded_sweep, _, _ = io.load(io.save(tmp_path / "ks", swept, config, hparams))
    _assert_tree_equal(loaded_sweep, swept)
    assert loaded_sweep.params.theta.b.shape == (2, 2, 3)
