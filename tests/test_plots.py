"""cfjax.plots: every figure renders to a non-empty PNG and returns its Figure."""

import jax
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

import cfjax
from cfjax import plots
from cfjax.structs import Config, Hparams


@pytest.fixture(scope="module")
def fitted():
    ens = cfjax.data.synthetic(jax.random.key(1), n_classifiers=4, n_instances=30, missing_rate=0.1)
    config = Config(latent_dim=2, max_iter=8)
    result = cfjax.fit(jax.random.key(0), ens.problem, Hparams.create(rho=0.5), config)
    return ens, result, config


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _saved(fig, path):
    assert isinstance(fig, matplotlib.figure.Figure)
    assert path.is_file() and path.stat().st_size > 0


def test_loss_curves(fitted, tmp_path):
    _, result, _ = fitted
    path = tmp_path / "loss.png"
    fig = plots.loss_curves(result.history, 0.5, n_iter=int(result.n_iter), log=True, path=path)
    _saved(fig, path)
    assert len(fig.axes[0].lines) == 3
    with pytest.raises(ValueError, match="history"):
        plots.loss_curves(jax.tree.map(lambda x: x[None], result.history), 0.5)


def test_rho_sweep_and_into_given_ax(tmp_path):
    rhos = [0.1, 0.5, 0.9]
    scores = np.array([[0.7, 0.72], [0.8, 0.78], [0.75, 0.74]])
    fig, ax = plt.subplots()
    out = plots.rho_sweep(
        rhos, scores, {"stacking": 0.76, "mean": 0.7}, ax=ax, path=tmp_path / "rho.png"
    )
    assert out is fig
    _saved(out, tmp_path / "rho.png")
    with pytest.raises(ValueError, match="scores"):
        plots.rho_sweep(rhos, scores[:2])


@pytest.mark.parametrize("draw", [plots.pr_curves, plots.roc_curves])
def test_pr_and_roc_curves(fitted, draw, tmp_path):
    ens, result, config = fitted
    probas = {
        "cf": cfjax.proba(result.params, config),
        "mean": cfjax.baselines.simple_average(ens.problem),
    }
    path = tmp_path / "curves.png"
    _saved(draw(ens.y_true, probas, mask=ens.test, path=path), path)
    with pytest.raises(ValueError, match="mask"):
        draw(ens.y_true, probas, mask=ens.test[:-1])


def test_heatmaps(fitted, tmp_path):
    ens, result, config = fitted
    path = tmp_path / "heat.png"
    fig = plots.heatmaps(ens.problem, result.params, y_true=ens.y_true, config=config, path=path)
    _saved(fig, path)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 4


def test_latent_scatter_and_weights(fitted, tmp_path):
    ens, result, _ = fitted
    _saved(
        plots.latent_scatter(
            result.params, names=ens.names, y_true=ens.y_true, path=tmp_path / "latent.png"
        ),
        tmp_path / "latent.png",
    )
    _saved(
        plots.aggregator_weights(result.params, names=ens.names, path=tmp_path / "w.png"),
        tmp_path / "w.png",
    )
    with pytest.raises(ValueError, match="params"):
        plots.aggregator_weights(result.params._replace(theta=()))
    with pytest.raises(ValueError, match="names"):
        plots.aggregator_weights(result.params, names=["a"])
