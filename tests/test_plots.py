"""cfjax.plots and the figures of `cfjax benchmark` (cli._plots).

Every figure renders to a non-empty PNG and returns its Figure; and, drawn at its default size,
its titles, axis labels, tick labels and legends lie inside the canvas, every axis that shows
tick labels has a label, and no legend covers plotted points (`layout_problems`).
"""

import pathlib

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
    config = Config(method="joint", latent_dim=2, max_iter=8)
    result = cfjax.fit(jax.random.key(0), ens.problem, Hparams.create(rho=0.5), config)
    return ens, result, config


@pytest.fixture(scope="module")
def auto_fitted():
    ens = cfjax.data.synthetic(jax.random.key(2), n_classifiers=4, n_instances=60)
    config = cfjax.validation.resolve_config(Config(max_iter=5, options=(("folds", 3), ("repeats", 1))), ens.problem)
    return ens, cfjax.fit(jax.random.key(0), ens.problem, None, config), config


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


# ---------------------------------------------------------------------------------- layout
# Every figure at its default size: titles, axis labels, tick labels and legends inside the
# canvas, every axis that shows tick labels named, and no legend over plotted points.


def _inside(box, frame, tol=1.0):
    return (
        box.x0 >= frame.x0 - tol
        and box.y0 >= frame.y0 - tol
        and box.x1 <= frame.x1 + tol
        and box.y1 <= frame.y1 + tol
    )


def _shows_tick_labels(axis):
    return any(t.get_visible() and t.get_text() for t in axis.get_ticklabels())


def _data_points(ax, samples=101):
    """Display coordinates of the plotted points inside the axes: vertices of lines with more
    than two points, points along straight guides (axhline, axvline, a chance diagonal: two
    points, `samples` taken between them) and scatter offsets."""

    def along(line):
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), float))
        if len(xy) == 2:
            t = np.linspace(0.0, 1.0, samples)[:, None]
            xy = (1 - t) * xy[0] + t * xy[1]
        return xy

    points = [along(line) for line in ax.lines if line.get_visible() and len(line.get_xdata()) >= 2]
    points += [
        c.get_offset_transform().transform(np.asarray(c.get_offsets(), float))
        for c in ax.collections
        if c.get_visible() and isinstance(c, matplotlib.collections.PathCollection)
    ]
    if not points:
        return np.zeros((0, 2))
    xy = np.concatenate(points)
    return xy[np.array([ax.bbox.contains(x, y) for x, y in xy], bool)]


def layout_problems(fig):
    """What is wrong with the figure's layout as drawn on its canvas (empty when nothing)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    problems = []

    def check(artist, what):
        if (
            artist is not None
            and artist.get_visible()
            and not _inside(artist.get_window_extent(renderer), frame)
        ):
            problems.append(f"{what} leaves the canvas")

    check(getattr(fig, "_suptitle", None), "suptitle")
    for i, legend in enumerate(fig.legends):
        check(legend, f"figure legend {i}")
        box = legend.get_window_extent(renderer)
        points = [xy for ax in fig.axes if ax.get_visible() for xy in _data_points(ax)]
        covered = sum(box.contains(x, y) for x, y in points)
        if covered:
            problems.append(f"figure legend {i} covers {covered} plotted points")
    for i, ax in enumerate(a for a in fig.axes if a.get_visible()):
        name = f"axes {i} ({ax.get_title() or ax.get_ylabel() or 'untitled'})"
        if ax.get_title():
            check(ax.title, f"{name}: title")
        for loc in ("left", "right"):
            if ax.get_title(loc):
                problems.append(f"{name}: a {loc} title (not checked here)")
        for label, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            shown = _shows_tick_labels(axis)
            if shown and not axis.get_label_text():
                problems.append(f"{name}: the {label} axis has tick labels but no label")
            if axis.get_label_text():
                check(axis.label, f"{name}: {label} label")
        if not _inside(ax.get_tightbbox(renderer), frame):
            problems.append(f"{name}: tick labels or other text leave the canvas")
        legend = ax.get_legend()
        if legend is not None:
            check(legend, f"{name}: legend")
            box = legend.get_window_extent(renderer)
            covered = sum(box.contains(x, y) for x, y in _data_points(ax))
            if covered:
                problems.append(f"{name}: the legend covers {covered} plotted points")
    return problems


def test_layout_check_catches_bad_figures():
    """The checker itself: a cut-off title, an unlabeled axis, a legend over the curve or over
    a reference line."""
    fig, ax = plt.subplots(figsize=(3, 2), layout="constrained")
    x = np.linspace(0, 1, 50)
    ax.plot(x, np.full_like(x, 0.5), label="a flat curve right through the middle")
    ax.legend(loc="center")
    ax.set_title("a title far too long for a figure three inches wide, so it is cut off")
    ax.set_xlabel("x")
    problems = layout_problems(fig)
    assert any("title leaves the canvas" in p for p in problems), problems
    assert any("y axis has tick labels but no label" in p for p in problems), problems
    assert any("legend covers" in p for p in problems), problems
    fig2, ax2 = plt.subplots(figsize=(4, 3), layout="constrained")
    ax2.plot(x, x, label="line")
    ax2.set_xlabel("x")
    ax2.set_ylabel("y")
    ax2.legend(loc="upper left", bbox_to_anchor=(1.5, 1.0))  # off the canvas
    assert any("legend leaves the canvas" in p for p in layout_problems(fig2))
    ax2.get_legend().remove()
    assert layout_problems(fig2) == []
    # a legend over a guide line only (the old pr_curves: the chance level under a tall legend)
    fig3, ax3 = plt.subplots(figsize=(4, 3), layout="constrained")
    ax3.plot(x, 1 - x**8, label="curve")
    ax3.axhline(0.1, linestyle=":", label="chance")
    ax3.set_xlabel("x")
    ax3.set_ylabel("y")
    ax3.legend(loc="lower left")
    assert any("legend covers" in p for p in layout_problems(fig3))
    ax3.get_legend().remove()
    fig3.legend(loc="upper center")  # a figure legend over the curve
    assert any("figure legend 0 covers" in p for p in layout_problems(fig3))


def test_many_curves_keep_their_legend_beside_the_axes(fitted):
    """With the benchmark's number of names (14), the legend of the PR and ROC curves is
    beside the axes, the axes keep their default size, and no two curves look alike (the
    default cycle has 10 colours)."""
    ens = fitted[0]
    p = np.asarray(cfjax.baselines.simple_average(ens.problem))
    probas = {f"a_long_method_name_{i} ": np.clip(p + 0.02 * i, 0, 1) for i in range(14)}
    for draw in (plots.pr_curves, plots.roc_curves):
        fig = draw(ens.y_true, probas, mask=ens.test)
        assert layout_problems(fig) == []
        ax = fig.axes[0]
        assert ax.get_legend() is None and len(fig.legends) == 1
        legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
        assert legend.x0 >= ax.bbox.x1
        assert ax.bbox.width / fig.dpi > 3.5  # of the 5 inches asked for, less tick labels
        styles = [(line.get_color(), line.get_linestyle()) for line in ax.lines]
        assert len(set(styles)) == len(styles) == 15  # 14 curves and the chance line


def _every_plots_figure(ens, result, config):
    probas = {
        "cf": cfjax.proba(result.params, config),
        "simple average": cfjax.baselines.simple_average(ens.problem),
    }
    rhos = [0.01, 0.1, 0.3, 0.5, 0.7, 0.9]
    # the curve between the baselines, which span the whole width: no corner inside is free
    scores = np.array(
        [[0.95, 0.951], [0.951, 0.953], [0.955, 0.953], [0.96, 0.962]] + [[0.965, 0.964]] * 2
    )
    many = result.params._replace(theta=result.params.theta._replace(w=np.linspace(-0.5, 1.0, 30)))
    return {
        "loss_curves": plots.loss_curves(result.history, 0.5, n_iter=int(result.n_iter), log=True),
        "rho_sweep": plots.rho_sweep(
            rhos, scores, {"simple_average": 0.944, "best_single": 0.947, "stacking": 0.970}
        ),
        "pr_curves": plots.pr_curves(ens.y_true, probas, mask=ens.test),
        "roc_curves": plots.roc_curves(ens.y_true, probas, mask=ens.test),
        "heatmaps": plots.heatmaps(ens.problem, result.params, y_true=ens.y_true, config=config),
        "latent_scatter": plots.latent_scatter(result.params, names=ens.names, y_true=ens.y_true),
        "aggregator_weights": plots.aggregator_weights(result.params, names=ens.names),
        "aggregator_weights (30)": plots.aggregator_weights(
            many, names=[f"RandomForest_{u}" for u in range(30)]
        ),
    }


def test_auto_choice(auto_fitted, tmp_path):
    ens, result, config = auto_fitted
    fig = plots.auto_choice(result, config, ens.problem, path=tmp_path / "auto.png")
    _saved(fig, tmp_path / "auto.png")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == len(cfjax.solvers.auto.options(config))
    assert layout_problems(fig) == []


def test_every_plots_figure_fits_its_canvas(fitted):
    ens, result, config = fitted
    figures = _every_plots_figure(ens, result, config)
    problems = {name: layout_problems(fig) for name, fig in figures.items()}
    assert problems == {name: [] for name in figures}


def test_rho_sweep_legend_is_beside_the_axes():
    fig = plots.rho_sweep([0.1, 0.5, 0.9], [[0.9], [0.95], [0.97]], {"stacking": 0.96})
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    assert legend.x0 >= ax.bbox.x1  # entirely right of the plotting area


@pytest.mark.slow  # five fits and the rho sweep of cli._plots
def test_benchmark_figures_fit_their_canvas(tmp_path, monkeypatch):
    """The figures `cfjax benchmark` writes (cli._plots), captured as they are saved."""
    from cfjax import cli

    ens = cfjax.data.preset(jax.random.key(0), "seed", n_classifiers=5, n_instances=60)
    kept_proba, kept_history = {}, {}
    for method in ("joint", "two_stage", "mm_als", "als", "damped"):  # 5: two rows of panels
        config = Config(method=method, latent_dim=2, max_iter=10)
        fit = cfjax.fit(jax.random.key(0), ens.problem, cfjax.solvers.get(method).hparams(), config)
        kept_proba[method] = np.asarray(cfjax.proba(fit.params, config))
        kept_history[method] = fit.history
    kept_proba["simple_average"] = np.asarray(cfjax.baselines.simple_average(ens.problem))
    kept = {"synthetic-seed": {"ens": ens, "proba": kept_proba, "history": kept_history}}

    saved = {}
    original = matplotlib.figure.Figure.savefig

    def capture(fig, path, *args, **kwargs):
        saved[pathlib.Path(path).name] = layout_problems(fig)
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    cli._plots(tmp_path, kept, None)
    names = ("pr_curves_synthetic-seed.png", "loss_curves_synthetic-seed.png",
             "rho_sweep_synthetic-seed.png")  # fmt: skip
    assert sorted(saved) == sorted(names)
    assert saved == {name: [] for name in names}
    assert all((tmp_path / name).stat().st_size > 0 for name in names)


def test_attention_by_region(tmp_path):
    ens = cfjax.data.preset(jax.random.key(0), "regional_experts", n_instances=150)
    config = Config(method="two_stage", aggregator="attention", latent_dim=4, max_iter=5)
    result = cfjax.fit(jax.random.key(0), ens.problem, None, config)
    fig = plots.attention_by_region(result.params, ens.regions, ens.experts, ens.names, path=tmp_path / "a.png")
    _saved(fig, tmp_path / "a.png")
    assert layout_problems(fig) == []
    with pytest.raises(ValueError, match="params"):
        plots.attention_by_region(result.params._replace(theta=()), ens.regions)
    with pytest.raises(ValueError, match="regions"):
        plots.attention_by_region(result.params, ens.regions[:10])


def test_confusion_is_sklearns_row_normalised_matrix(tmp_path):
    """The per-class view of a K-class fit: the heat map holds sklearn's confusion matrix
    normalised by true class, over the masked columns; it fits its canvas."""
    from sklearn.metrics import confusion_matrix

    from tests.test_multiclass import ensemble

    R, labels, y = ensemble(3, K=4, n=80)
    proba = R[2]  # (K, n), as cfjax.proba of a K-class fit: one base classifier's, 62.5 % accurate
    test = labels < 0
    fig = plots.confusion(np.where(test, y, -1), proba, mask=test, classes=["ant", "bee", "cat", "dog"],
                          path=tmp_path / "confusion.png")
    _saved(fig, tmp_path / "confusion.png")
    expected = confusion_matrix(y[test], proba[:, test].argmax(0), labels=range(4), normalize="true")
    assert 0 < np.trace(expected) < 4  # mistakes off the diagonal
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array()), expected)
    assert f"accuracy {np.mean(proba[:, test].argmax(0) == y[test]):.3f}" in fig.axes[0].get_title()
    assert layout_problems(fig) == []
    # binary probabilities (n,) are read as K = 2; a class with no instance leaves a blank row
    two = plots.confusion(np.array([0, 0, 1]), np.array([0.2, 0.7, 0.9]))
    np.testing.assert_allclose(np.asarray(two.axes[0].images[0].get_array()), [[0.5, 0.5], [0.0, 1.0]])
    assert np.isnan(np.asarray(plots.confusion(np.array([0, 0]), np.array([[0.9, 0.2], [0.1, 0.8], [0, 0]]))
                               .axes[0].images[0].get_array())[1:]).all()
    for args, name in (
        ((y, proba[:, :-1]), "y_true"),
        ((y, proba, np.ones(79, bool)), "mask"),
        ((np.full(80, 7), proba), "y_true"),
        ((y, proba[0]), "y_true"),  # (n,) read as binary: classes 2 and 3 do not exist
        ((y, proba, None, ["a"]), "classes"),
        ((y, np.zeros((1, 80))), "proba"),
    ):
        with pytest.raises(ValueError, match=f"^{name}: "):
            plots.confusion(*args)


def test_k_class_heatmaps_and_binary_only_plots_say_so(tmp_path):
    """heatmaps draws a K-class problem's (classifier, class) rows, its columns ordered by class;
    the binary curves and the weight bars refuse K-class inputs naming the argument."""
    from tests.test_multiclass import ensemble

    R, labels, y = ensemble(0)
    problem = cfjax.from_numpy(R, labels)
    rng = np.random.default_rng(0)
    config = Config(latent_dim=3)
    theta = cfjax.aggregators.initial_theta("weighted", jax.random.key(0), 4, 3, Hparams.create(), np.float32,
                                            n_classes=3)
    params = cfjax.Params(X=jax.numpy.asarray(rng.normal(size=(3, 12)), np.float32),
                          Y=jax.numpy.asarray(rng.normal(size=(3, 60)), np.float32), theta=theta)
    fig = plots.heatmaps(problem, params, y_true=y, config=config, path=tmp_path / "k.png")
    _saved(fig, tmp_path / "k.png")
    assert fig.axes[0].images[0].get_array().shape == (12, 60)
    assert fig.axes[0].get_ylabel() == "classifier x class"
    # a dotted line where the class changes: twice in the labeled block, twice in the rest
    dotted = [line for line in fig.axes[0].lines if line.get_linestyle() == ":"]
    assert len(dotted) == 4
    assert layout_problems(fig) == []
    proba = np.asarray(cfjax.proba(params, config))
    with pytest.raises(ValueError, match=r"probas\['cf'\]: \(3, 60\) reads as the class probabilities"):
        plots.pr_curves(y, {"cf": proba})
    with pytest.raises(ValueError, match=r"params: expected one binary fit's weights"):
        plots.aggregator_weights(params, config=config)
