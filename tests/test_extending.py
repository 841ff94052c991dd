"""docs/extending.md: a method, an aggregator and a confidence strategy, each added without
touching the library, then used through every entry point."""

import re
from pathlib import Path

import jax
import numpy as np
import pytest

import cfjax
from cfjax import aggregators, confidence, data, io, predict, solvers, sweep
from cfjax.solvers.auto import Candidate

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
NAMES = {"method": "als_refit", "aggregator": "softmax_average", "confidence": "auc"}


@pytest.fixture(scope="module")
def extended():
    """Runs every python block of the page in order, in one namespace; unregisters afterwards."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 4
    namespace: dict = {}
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 (the page's own code, by design)
        yield namespace
    finally:
        solvers.METHODS.pop(NAMES["method"], None)
        aggregators.AGGREGATORS.pop(NAMES["aggregator"], None)
        confidence.STRATEGIES.pop(NAMES["confidence"], None)


@pytest.fixture(scope="module")
def ens():
    return data.preset(jax.random.key(0), "seed", n_instances=200, n_classifiers=6)


def _config(**changes):
    return cfjax.Config(method=NAMES["method"], aggregator=NAMES["aggregator"], confidence=NAMES["confidence"],
                        latent_dim=3, max_iter=8, **changes)


def test_the_page_ran_and_registered_all_three(extended):
    assert NAMES["method"] in solvers.METHODS
    assert NAMES["aggregator"] in aggregators.AGGREGATORS
    assert NAMES["confidence"] in confidence.STRATEGIES
    result, config = extended["result"], extended["config"]
    assert np.isfinite(np.asarray(predict.proba(result.params, config))).all()


def test_the_extensions_change_the_fit(extended, ens):
    ours = cfjax.fit(jax.random.key(0), ens.problem, None, _config())
    plain_config = cfjax.Config(method="two_stage", latent_dim=3, max_iter=8)
    plain = cfjax.fit(jax.random.key(0), ens.problem, None, plain_config)
    assert not np.allclose(np.asarray(predict.proba(ours.params, _config())),
                           np.asarray(predict.proba(plain.params, plain_config)))
    weight = np.asarray(ours.info["confidence"]["classifier_weight"])
    assert weight.shape == (6,) and (weight > 0).all() and np.ptp(weight) > 0  # learned per classifier


def test_through_a_sweep(extended, ens):
    grid = sweep.grid(rho=[0.3, 0.8], lam=[0.01, 1.0])
    keys = jax.random.split(jax.random.key(0), 2)
    result = sweep.run(keys, ens.problem, grid, _config())
    assert result.params.X.shape == (4, 2, 3, 6)
    single = cfjax.fit_jit(keys[1], ens.problem, sweep.take(grid, 3), _config())
    np.testing.assert_allclose(np.asarray(result.params.X[3, 1]), np.asarray(single.params.X), rtol=1e-4, atol=1e-5)


def test_through_save_and_load(extended, ens, tmp_path):
    config = _config()
    hparams = solvers.get(NAMES["method"]).hparams()
    result = cfjax.fit(jax.random.key(0), ens.problem, hparams, config)
    io.save(tmp_path / "fit", result, config, hparams)
    loaded, config2, hparams2 = io.load(tmp_path / "fit.npz")
    assert config2 == config
    assert type(loaded.params.theta).__name__ == "SoftmaxTheta"
    np.testing.assert_array_equal(np.asarray(predict.proba(loaded.params, config2)),
                                  np.asarray(predict.proba(result.params, config)))
    # fold-in of new columns uses the strategy's learned statistics, from the file too
    np.testing.assert_allclose(np.asarray(predict.fold_in_proba(loaded, ens.problem, hparams2, config2)),
                               np.asarray(predict.fold_in_proba(result, ens.problem, hparams, config)), rtol=1e-6)


def test_through_the_estimator(extended, ens):
    from cfjax.sklearn import CFEnsembleClassifier

    R = np.asarray(ens.problem.R)
    y = np.where(np.asarray(ens.problem.labeled), np.asarray(ens.problem.labels), -1).astype(int)
    clf = CFEnsembleClassifier(method=NAMES["method"], aggregator=NAMES["aggregator"], confidence=NAMES["confidence"],
                               latent_dim=3, max_iter=8).fit(R.T, y)
    direct = cfjax.fit(jax.random.key(0), ens.problem, None, _config())
    np.testing.assert_allclose(clf.transductive_proba_, np.asarray(predict.proba(direct.params, _config())), rtol=1e-5)
    assert clf.predict_proba(R.T[:7]).shape == (7, 2)


@pytest.mark.slow  # a cross-validated auto over the extension
def test_as_a_candidate_of_auto(extended, ens):
    config = cfjax.Config(method="auto", latent_dim=3, max_iter=8, aggregator=NAMES["aggregator"],
                          options=(("candidates", (Candidate(NAMES["method"]), Candidate("two_stage"))),))
    result = cfjax.fit(jax.random.key(0), ens.problem, None, config)
    assert np.asarray(result.info["cv_mean"]).shape == (2,)


def test_registries_refuse_a_second_entry_of_the_same_name(extended):
    with pytest.raises(ValueError, match="registered already"):
        solvers.register(solvers.get(NAMES["method"]))
    with pytest.raises(ValueError, match="registered already"):
        aggregators.register(aggregators.get(NAMES["aggregator"]))
    with pytest.raises(ValueError, match="registered already"):
        confidence.register(confidence.get(NAMES["confidence"]))
