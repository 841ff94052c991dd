"""Figures of fits, sweeps and predictions (matplotlib, optional: `pip install cfjax[plots]`).

Every function returns the matplotlib `Figure`. Single-panel plots take an optional `ax` to
draw into (the figure is then `ax.figure`); every function takes an optional `path` to save a
PNG. Nothing here selects a backend: scripts and tests that run headless call
`matplotlib.use("Agg")` first (notebooks need nothing).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cfjax import aggregators, losses
from cfjax.predict import proba
from cfjax.structs import Config, FitResult, History, Hparams, Params, Problem

__all__ = [
    "aggregator_weights",
    "attention_by_region",
    "auto_choice",
    "confusion",
    "heatmaps",
    "latent_scatter",
    "loss_curves",
    "pr_curves",
    "rho_sweep",
    "roc_curves",
]

_INSTALL = 'cfjax.plots needs matplotlib: pip install "cfjax[plots]"'


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(_INSTALL) from None
    return plt


def _figure_and_ax(ax: Any, figsize: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax
    fig, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _legend_beside(fig: Any, ax: Any, created: bool):
    """The legend to the right of the axes, outside them, so that it hides no curve or
    reference line. On a figure this module `created`, a figure legend that the constrained
    layout places, and the figure is widened by its width, so the axes keep their size.
    Into a given `ax`, an axes legend anchored beside it; leave room for it (e.g.
    ``layout="constrained"`` and a wide enough figure)."""
    if not created:
        return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    if ax.get_legend() is not None:  # scikit-learn's displays draw one inside the axes
        ax.get_legend().remove()
    legend = fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper")
    width = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
    fig.set_figwidth(fig.get_figwidth() + width + 0.1)
    # One layout pass now: scikit-learn's displays make the axes square (aspect "equal"), and
    # the constrained layout's first pass after the resize left the y label off the canvas;
    # from the second pass on it is stable.
    fig.draw_without_rendering()
    return legend


def _finish(fig: Any, path: str | os.PathLike | None):
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def loss_curves(
    history: History,
    rho: float,
    n_iter: int | None = None,
    log: bool = False,
    ax: Any = None,
    path: str | os.PathLike | None = None,
):
    """The objective and its two weighted parts per iteration.

    Plots total = rho L_recon + (1 - rho) L_sup, rho * recon and (1 - rho) * sup.

    Args:
      history: a single fit's `History` (fields of shape (max_iter,)).
      rho: the rho of the fit (a float or a scalar array).
      n_iter: if given, only the first `n_iter` iterations (the fit's `n_iter`; later entries
        repeat the last value).
      log: log-scale y axis.
    """
    total = np.asarray(history.total, np.float64)
    if total.ndim != 1:
        raise ValueError(
            f"history: expected one fit's History (fields of shape (T,)), got {total.shape}"
        )
    rho = float(np.asarray(rho))
    stop = total.size if n_iter is None else max(int(n_iter), 1)
    steps = np.arange(1, total.size + 1)[:stop]
    fig, ax = _figure_and_ax(ax, (6, 4))
    ax.plot(steps, total[:stop], label="total", color="black")
    ax.plot(steps, rho * np.asarray(history.recon)[:stop], label=r"$\rho \cdot L_{recon}$")
    ax.plot(steps, (1 - rho) * np.asarray(history.sup)[:stop], label=r"$(1-\rho) \cdot L_{sup}$")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(rf"loss ($\rho$ = {rho:g})")
    ax.legend()
    return _finish(fig, path)


def rho_sweep(
    rhos: Sequence[float],
    scores: Any,
    baselines: Mapping[str, float] | None = None,
    metric: str = "PR-AUC",
    ax: Any = None,
    path: str | os.PathLike | None = None,
):
    """A score against rho: mean over seeds with a mean +/- sd band, baselines as lines.

    The legend sits to the right of the axes, not over them: the baselines' lines span the
    whole width and the curve can lie anywhere between them, so no corner inside is free. Into
    a given `ax`, leave room for it (e.g. `plt.subplots(layout="constrained")`).

    Args:
      rhos: (n_rho,) values of rho.
      scores: (n_rho, n_seeds) scores (one column for a single seed: no band).
      baselines: name -> score, drawn as horizontal dashed lines.
      metric: the y-axis label.
    """
    rhos = np.asarray(rhos, np.float64)
    scores = np.asarray(scores, np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if rhos.ndim != 1 or scores.ndim != 2 or scores.shape[0] != rhos.size:
        raise ValueError(
            f"scores: expected shape ({rhos.size}, n_seeds) to match rhos, got {scores.shape}"
        )
    mean = np.nanmean(scores, axis=1)
    sd = np.nanstd(scores, axis=1, ddof=1) if scores.shape[1] > 1 else np.zeros_like(mean)
    fig, ax = _figure_and_ax(ax, (7.5, 4))  # 6 x 4 for the axes, the rest for the legend
    ax.plot(rhos, mean, marker="o", label=f"CF-Ensemble (mean of {scores.shape[1]})")
    ax.fill_between(rhos, mean - sd, mean + sd, alpha=0.25, label="mean ± sd")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(float(value), linestyle="--", color=f"C{(i + 2) % 10}", label=name)
    ax.set_xlabel(r"$\rho$")
    ax.set_ylabel(metric)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return _finish(fig, path)


def confusion(
    y_true: Any,
    proba: Any,
    mask: Any = None,
    classes: Sequence[Any] | None = None,
    ax: Any = None,
    path: str | os.PathLike | None = None,
):
    r"""The row-normalised confusion matrix of K-class predictions, as a heat map: the per-class
    view of a K-class fit.

    Cell (j, k) is the share of the selected instances of true class j whose most probable
    class is k (the argmax of `proba`, ties to the lower index as `cfjax.metrics.accuracy`), so
    each row sums to 1 and the diagonal holds each class's recall; scikit-learn's
    `confusion_matrix(y, proba.argmax(0), labels=range(K), normalize="true")`. Each cell is
    annotated with its share; the row labels give each true class's count, and a class with no
    selected instance has a blank row. The title gives the accuracy.

    Args:
      y_true: (n,) int true classes in 0..K-1 (anything, e.g. -1, where `mask` is False).
      proba: (K, n) class probabilities, a column per instance, as `cfjax.proba` of a K-class
        fit (the estimator's (n, K) `predict_proba` transposed); or (n,) probabilities of class
        1 of a binary fit, read as K = 2.
      mask: optional (n,) bool, the instances to count (e.g. the test columns); default all.
      classes: optional K names of the classes (default 0..K-1).
    """
    p = np.asarray(proba, np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p])
    if p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"proba: expected (K, n) class probabilities or (n,) of class 1, got shape {p.shape}")
    K, n = p.shape
    y = np.asarray(y_true)
    if y.shape != (n,):
        raise ValueError(f"y_true: expected shape ({n},) to match proba's {n} columns, got {y.shape}")
    keep = np.ones(n, bool) if mask is None else np.asarray(mask)
    if keep.shape != (n,) or keep.dtype != bool:
        raise ValueError(f"mask: expected a bool mask of shape ({n},), got {keep.dtype} {keep.shape}")
    if not keep.any():
        raise ValueError("mask: selects no instance")
    y = y[keep]
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"y_true: expected int classes 0..{K - 1}, got dtype {y.dtype}")
    bad = ~np.isin(y, np.arange(K))
    if bad.any():
        raise ValueError(f"y_true: selected entries must be classes 0..{K - 1}, found {np.unique(y[bad])[:5].tolist()}")
    if not np.isfinite(p[:, keep]).all():
        raise ValueError("proba: selected columns must be finite")
    names = [str(c) for c in (range(K) if classes is None else classes)]
    if len(names) != K:
        raise ValueError(f"classes: expected {K} names, one per row of proba, got {len(names)}")
    predicted = np.argmax(p[:, keep], axis=0)
    counts = np.zeros((K, K))
    np.add.at(counts, (y.astype(int), predicted), 1.0)
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / totals[:, None]  # NaN rows: no instance of that class
    size = 1.2 + 0.55 * K
    fig, ax = _figure_and_ax(ax, (size + 1.6, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for j in range(K):
        for k in range(K):
            if np.isfinite(shares[j, k]):
                ax.text(k, j, f"{shares[j, k]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if shares[j, k] > 0.6 else "black")
    long = max(map(len, names)) > 3
    ax.set_xticks(range(K), names, rotation=45 if long else 0, ha="right" if long else "center")
    ax.set_yticks(range(K), [f"{name} (n={int(t)})" for name, t in zip(names, totals)])
    ax.set_xlabel("predicted class (most probable)")
    ax.set_ylabel("true class")
    accuracy = float(np.trace(counts) / counts.sum())
    ax.set_title(f"accuracy {accuracy:.3f} on {int(counts.sum())} instances", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label("share of the true class")
    return _finish(fig, path)


def _curve_style(i: int) -> dict[str, str]:
    """Colour and line style of the i-th curve: the 10 default colours, then the same colours
    dashed, then dash-dotted (past 10 curves, colours alone repeat: the benchmark draws 14)."""
    return {"color": f"C{i % 10}", "linestyle": ("-", "--", "-.")[(i // 10) % 3]}


def _curve_inputs(y_true: Any, probas: Mapping[str, Any], mask: Any):
    y = np.asarray(y_true)
    keep = np.ones(y.shape, bool) if mask is None else np.asarray(mask, bool)
    if keep.shape != y.shape:
        raise ValueError(f"mask: expected shape {y.shape} to match y_true, got {keep.shape}")
    if not probas:
        raise ValueError("probas: give at least one name -> probabilities")
    out = {}
    for name, p in probas.items():
        p = np.asarray(p, np.float64)
        if p.ndim == 2 and p.shape[1:] == y.shape:
            raise ValueError(f"probas[{name!r}]: {p.shape} reads as the class probabilities of a {p.shape[0]}-class "
                             "fit; these curves are binary: draw plots.confusion(y_true, proba), or one class k "
                             "against the rest (y_true == k, proba[k])")
        if p.shape != y.shape:
            raise ValueError(f"probas[{name!r}]: expected shape {y.shape}, got {p.shape}")
        out[name] = p[keep]
    return (y[keep] > 0.5).astype(int), out


def _curves(display: Any, chance: Any, y_true: Any, probas: Mapping[str, Any], mask: Any, ax: Any,
            path: str | os.PathLike | None):
    """One scikit-learn `display` curve per name, each in its `_curve_style`, then
    `chance(ax, y)` draws the chance line, and the legend goes beside the axes."""
    y, probas = _curve_inputs(y_true, probas, mask)
    created = ax is None
    fig, ax = _figure_and_ax(ax, (5, 5))  # the axes; the legend's width is added
    for i, (name, p) in enumerate(probas.items()):
        display.from_predictions(y, p, name=name, ax=ax).line_.set(**_curve_style(i))
    chance(ax, y)
    _legend_beside(fig, ax, created)
    return _finish(fig, path)


def pr_curves(
    y_true: Any,
    probas: Mapping[str, Any],
    mask: Any = None,
    ax: Any = None,
    path: str | os.PathLike | None = None,
):
    """Precision-recall curves (scikit-learn's `PrecisionRecallDisplay`), one per name, and
    the chance level (the positive rate) as a dotted line. The legend sits beside the axes:
    inside, with the benchmark's 14 names, it covered most of the plot and the chance line.
    Into a given `ax`, leave room for it (``layout="constrained"`` and a wide enough figure).

    Args:
      y_true: (n,) labels in {0, 1}.
      probas: name -> (n,) probabilities of the positive class.
      mask: (n,) bool, the entries that count (e.g. the test columns); default all.
    """
    from sklearn.metrics import PrecisionRecallDisplay

    def chance(ax, y):
        ax.axhline(y.mean(), linestyle=":", color="grey", label=f"chance ({y.mean():.2f})")

    return _curves(PrecisionRecallDisplay, chance, y_true, probas, mask, ax, path)


def roc_curves(
    y_true: Any,
    probas: Mapping[str, Any],
    mask: Any = None,
    ax: Any = None,
    path: str | os.PathLike | None = None,
):
    """ROC curves (scikit-learn's `RocCurveDisplay`), one per name, and the chance diagonal;
    the legend beside the axes and the arguments as `pr_curves`."""
    from sklearn.metrics import RocCurveDisplay

    def chance(ax, y):
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")

    return _curves(RocCurveDisplay, chance, y_true, probas, mask, ax, path)


def _aggregator_of(params: Params, config: Config | None) -> Config:
    """`config`, or a Config naming the registered aggregator whose parameters have the
    structure of `params.theta` (the first registered, in registry order)."""
    if config is not None:
        return config
    import jax

    d, m = np.shape(params.X)[-2:]
    target = jax.tree.structure(params.theta)
    for name, agg in aggregators.AGGREGATORS.items():
        if jax.tree.structure(aggregators.initial_theta(agg, jax.random.key(0), m, d, Hparams.create(),
                                                        np.float32)) == target:
            return Config(aggregator=name)
    raise ValueError("params: theta matches no registered aggregator; pass config")


def heatmaps(
    problem: Problem,
    params: Params,
    y_true: Any = None,
    config: Config | None = None,
    path: str | os.PathLike | None = None,
):
    """R, its reconstruction X^T Y, the residual |R - X^T Y| and the confidence C, side by side.

    Columns are ordered labeled first, then the rest; within each block by label (the true
    label `y_true` for unlabeled columns when given) and then by the fit's predicted
    probability. A red line marks the labeled/unlabeled boundary; dotted lines mark where the
    label switches from 0 to 1 inside a block whose labels are known. Unobserved cells are
    blank in R and in the residual.

    A K-class problem's rows are its (classifier, class) pairs, row u K + k; its columns are
    ordered by class (0..K-1) and then by the predicted probability of that class (of the most
    probable class where the label is not known), with a dotted line at each change of class.

    Args:
      problem: the fitted `Problem` (m, n), or (m K, n) for K classes.
      params: the fit's `Params` (X (d, m), Y (d, n)).
      y_true: optional (n,) labels of every column (0..K-1 for K classes), used to order the
        unlabeled block.
      config: for the aggregator of the predicted probability; default: inferred from theta.
    """
    plt = _pyplot()
    R = np.asarray(problem.R, np.float64)
    observed = np.asarray(problem.observed, bool)
    R_hat = np.asarray(losses.reconstruct(params), np.float64)
    if R_hat.shape != R.shape:
        raise ValueError(f"params: reconstruction has shape {R_hat.shape}, problem.R has {R.shape}")
    score = np.asarray(proba(params, _aggregator_of(params, config)), np.float64)
    labeled = np.asarray(problem.labeled) | np.asarray(problem.validation)
    n_classes = problem.n_classes
    if n_classes == 2:
        label = np.where(labeled, np.asarray(problem.labels, np.float64), -1.0)
    else:
        label = np.where(labeled, np.argmax(np.asarray(problem.labels), axis=0), -1).astype(np.float64)
    if y_true is not None:
        y_true = np.asarray(y_true, np.float64)
        if y_true.shape != label.shape:
            raise ValueError(f"y_true: expected shape {label.shape}, got {y_true.shape}")
        label = np.where(labeled, label, y_true)
    if n_classes > 2:  # the probability of the column's class, or of its most probable one
        if not np.isin(label, np.arange(-1, n_classes)).all():
            raise ValueError(f"y_true: expected classes 0..{n_classes - 1}")
        known = np.where(label >= 0, label, np.argmax(score, axis=0)).astype(int)
        score = score[known, np.arange(score.shape[1])]
    # lexsort: last key first; labeled block first, then label, then predicted probability
    order = np.lexsort((score, label, ~labeled))
    boundary = int(labeled.sum())
    # where the (known) label switches from 0 to 1 inside each block: dotted lines
    sorted_label = label[order]
    class_edges = [
        start + int(np.argmax(sorted_label[start:stop] > 0.5))
        for start, stop in ((0, boundary), (boundary, R.shape[1]))
        if stop > start
        and (sorted_label[start:stop] > 0.5).any()
        and (sorted_label[start:stop] == 0).any()
    ]
    if n_classes > 2:  # every change of (known) class inside a block
        changes = np.flatnonzero((sorted_label[1:] != sorted_label[:-1]) & (sorted_label[:-1] >= 0)) + 1
        class_edges = [int(e) for e in changes if e != boundary]
    panels = (
        ("R", np.where(observed, R, np.nan), "viridis", (0, 1), "probability"),
        (r"$X^T Y$", R_hat, "viridis", (0, 1), "probability"),
        (
            r"$|R - X^T Y|$",
            np.where(observed, np.abs(R - R_hat), np.nan),
            "magma",
            (0, None),
            "|residual|",
        ),
        ("C", np.asarray(problem.C, np.float64), "cividis", (0, None), "confidence"),
    )
    fig, axes = plt.subplots(4, 1, figsize=(10, 8), sharex=True, layout="constrained")
    for ax, (title, values, cmap, (lo, hi), unit) in zip(axes, panels):
        image = ax.imshow(
            values[:, order], aspect="auto", interpolation="nearest", cmap=cmap, vmin=lo, vmax=hi
        )
        if 0 < boundary < R.shape[1]:
            ax.axvline(boundary - 0.5, color="red", linewidth=1.5)
        for edge in class_edges:
            ax.axvline(edge - 0.5, color="white", linewidth=1.0, linestyle=":")
        ax.set_ylabel("classifier" if n_classes == 2 else "classifier x class")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, label=unit)
    axes[-1].set_xlabel(
        f"instance (labeled: {boundary} | unlabeled: {R.shape[1] - boundary}; "
        "sorted by label, then predicted probability)"
    )
    return _finish(fig, path)


def latent_scatter(
    params: Params,
    names: Sequence[str] | None = None,
    y_true: Any = None,
    ax: Any = None,
    path: str | os.PathLike | None = None,
):
    """Classifier factors X and instance factors Y in the first two latent dimensions.

    Args:
      params: `Params` with X (d, m), Y (d, n); for d = 1 the second coordinate is 0.
      names: optional m names to annotate the classifiers.
      y_true: optional (n,) labels to colour the instances.
    """
    X = np.asarray(params.X, np.float64)
    Y = np.asarray(params.Y, np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(
            f"params: expected one fit's X (d, m) and Y (d, n), got {X.shape} and {Y.shape}"
        )

    def first_two(F):
        return (F[0], F[1]) if F.shape[0] > 1 else (F[0], np.zeros_like(F[0]))

    fig, ax = _figure_and_ax(ax, (6, 5))
    yx, yy = first_two(Y)
    if y_true is None:
        ax.scatter(yx, yy, s=8, alpha=0.5, color="grey", label="instances (Y)")
    else:
        y = np.asarray(y_true) > 0.5
        ax.scatter(yx[~y], yy[~y], s=8, alpha=0.5, color="C0", label="instances, y = 0")
        ax.scatter(yx[y], yy[y], s=8, alpha=0.5, color="C3", label="instances, y = 1")
    xx, xy = first_two(X)
    ax.scatter(xx, xy, marker="^", s=70, color="black", label="classifiers (X)")
    if names is not None:
        if len(names) != X.shape[1]:
            raise ValueError(f"names: expected {X.shape[1]} names, got {len(names)}")
        for name, a, b in zip(names, xx, xy):
            ax.annotate(str(name), (a, b), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("latent dim 1")
    ax.set_ylabel("latent dim 2" if X.shape[0] > 1 else "(d = 1)")
    ax.legend()
    return _finish(fig, path)


def aggregator_weights(
    params: Params,
    names: Sequence[str] | None = None,
    ax: Any = None,
    path: str | os.PathLike | None = None,
    config: Config | None = None,
):
    """A logit-linear aggregator's weights w per classifier as bars (the bias b in the title).

    Args:
      config: names the aggregator (default: inferred from the structure of `params.theta`).

    Raises:
      ValueError: if the aggregator is not logit-linear (`Aggregator.linear`: "mean" has no
        weights).
    """
    agg = aggregators.get(_aggregator_of(params, config).aggregator)
    if agg.linear is None:
        raise ValueError(f"params: the {agg.name!r} aggregator has no weights (it is not logit-linear)")
    w, b = agg.linear.weights(params.theta)
    w = np.asarray(w, np.float64)
    if w.ndim != 1:
        raise ValueError(f"params: expected one binary fit's weights (m,), got {w.shape} (a K-class fit's "
                         "are (K, m K), one row per class; a sweep's have leading axes: take one fit)")
    names = [f"{u}" for u in range(w.size)] if names is None else [str(n) for n in names]
    if len(names) != w.size:
        raise ValueError(f"names: expected {w.size} names, got {len(names)}")
    fig, ax = _figure_and_ax(ax, (max(4, 0.5 * w.size + 2), 4))
    ax.bar(np.arange(w.size), w, color=np.where(w >= 0, "C0", "C3"))
    ax.axhline(0.0, color="black", linewidth=0.8)
    crowded = w.size > 15  # vertical, smaller labels once 45-degree ones would overlap
    ax.set_xticks(
        np.arange(w.size),
        names,
        rotation=90 if crowded else 45,
        ha="center" if crowded else "right",
        fontsize=7 if crowded else None,
    )
    ax.set_xlabel("classifier")
    ax.set_ylabel("weight w")
    ax.set_title(f"aggregator weights (b = {float(np.asarray(b)):.3g})")
    return _finish(fig, path)


def auto_choice(
    result: FitResult,
    config: Config,
    problem: Problem,
    ax: Any = None,
    path: str | os.PathLike | None = None,
):
    """What `auto` chose: each option's cross-validated PR-AUC (mean over the folds, a bar per
    option, simplest at the top) with the corrected standard error of its gap to the best, the
    one-standard-error threshold when the fit chose by that rule (`auto.choice_rule`), and the
    chosen option highlighted.

    Args:
      result: the `FitResult` of an `auto` fit (one fit, no sweep axes).
      config: its config (its options name the candidates); problem: the problem it fitted.
    """
    from cfjax.solvers.auto import choice_rule, describe

    rows = describe(result, config, problem)
    mean = np.array([r["cv_mean"] for r in rows])
    se = np.array([r["cv_se"] for r in rows])
    y = np.arange(len(rows))[::-1]
    fig, ax = _figure_and_ax(ax, (10, 0.45 * len(rows) + 1.8))
    colors = ["C3" if r["chosen"] else "C0" for r in rows]
    ax.barh(y, mean, xerr=se, color=colors, alpha=0.8, error_kw={"ecolor": "black", "capsize": 3})
    one_se = choice_rule(config, problem.n_classes) == "one_se"
    if one_se:
        threshold = mean[int(np.argmax(mean))] - config.option("z", 1.0) * se
        for yi, t in zip(y, threshold):
            ax.plot([t, t], [yi - 0.4, yi + 0.4], color="black", linestyle=":", linewidth=1)
    ax.set_yticks(y, [r["option"] for r in rows], fontsize=8)
    ax.set_ylabel("option (simplest at the top)")
    low = float(np.nanmin(mean - se)) if np.isfinite(mean - se).any() else 0.0
    ax.set_xlim(max(0.0, low - 0.02), min(1.0, float(np.nanmax(mean)) + 0.02))
    ax.set_xlabel("cross-validated PR-AUC (bars: SE of the gap to the best)")
    ax.set_title("auto's options (one-SE rule): chosen in red,\ndotted: the best option's mean minus z SE"
                 if one_se else "auto's options (best mean): chosen in red")
    return _finish(fig, path)


def attention_by_region(
    params: Params,
    regions: Any,
    experts: Any = None,
    names: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
):
    """The trust an `attention` aggregator learned, against a known grouping of the instances.

    Two heatmaps, a row per classifier and a column per region, averaged over the instances of
    each region: the attention m alpha_ui (1 = uniform trust), and the weight the logit gives
    the classifier's evidence, m alpha_ui w_u (the attention times the classifier's global
    weight, which the softmax offsets and w can trade). The cells where the classifier is a true
    expert are outlined.

    Args:
      params: a fit with the "attention" aggregator (its theta an `AttentionTheta`).
      regions: (n,) int, the region of every column (e.g. `Ensemble.regions`).
      experts: optional (m, K) bool, the true expert cells (e.g. `Ensemble.experts`).
      names: the classifiers' names (default: their indices).
    """
    if not isinstance(params.theta, aggregators.AttentionTheta):
        raise ValueError("params: theta is not the attention aggregator's (fit with aggregator='attention')")
    regions = np.asarray(regions)
    if regions.shape != (np.shape(params.Y)[-1],):
        raise ValueError(f"regions: expected shape ({np.shape(params.Y)[-1]},), got {regions.shape}")
    alpha = np.asarray(aggregators.attention_weights(params.theta, aggregators.inputs(params)))
    m = alpha.shape[0]
    groups = np.unique(regions)
    trust = np.stack([m * alpha[:, regions == g].mean(axis=1) for g in groups], axis=1)  # (m, K)
    weight = trust * np.asarray(params.theta.w)[:, None]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(2.4 * len(groups) + 5.0, 0.32 * m + 1.9), layout="constrained")
    bound = max(float(np.abs(weight).max()), 1e-12)
    panels = ((axes[0], trust, "viridis", 0.0, None, "m α (1 = uniform)", "attention"),
              (axes[1], weight, "RdBu_r", -bound, bound, "m α w", "weight on the evidence"))
    for ax, values, cmap, lo, hi, label, title in panels:
        image = ax.imshow(values, aspect="auto", cmap=cmap, vmin=lo, vmax=hi)
        fig.colorbar(image, ax=ax, label=label)
        if experts is not None:
            for u, k in zip(*np.nonzero(np.asarray(experts)[:, groups])):
                ax.add_patch(plt.Rectangle((k - 0.5, u - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
        ax.set_xticks(range(len(groups)), [str(g) for g in groups])
        ax.set_yticks(range(m), list(names) if names is not None else [str(u) for u in range(m)], fontsize=8)
        ax.set_xlabel("true region of the instance")
        ax.set_ylabel("classifier")
        ax.set_title(title)
    fig.suptitle("Trust learned per region, mean over its instances"
                 + (" (outlined: the classifier is an expert there)" if experts is not None else ""))
    return _finish(fig, path)
