"""The baselines CF-Ensemble must beat: simple averaging, the best single model, stacking.

Each is a pure function `(problem) -> proba (n,)` for every column, using labels only from the
training columns (`problem.labeled`). Missing cells (unobserved) are handled as documented per
baseline; none ever reads a hidden label.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from cfjax import metrics
from cfjax.logistic import fit_logistic
from cfjax.structs import Problem

__all__ = ["BASELINES", "best_single", "simple_average", "stacking", "stacking_l2"]


def _observed_mean(problem: Problem) -> jax.Array:
    w = problem.observed.astype(problem.R.dtype)
    return jnp.sum(w * problem.R, axis=0) / jnp.maximum(jnp.sum(w, axis=0), 1.0)


def simple_average(problem: Problem) -> jax.Array:
    """Mean of the observed predictions in each column."""
    return _observed_mean(problem)


def _filled(problem: Problem) -> jax.Array:
    """R with each unobserved cell replaced by the column's observed mean."""
    return jnp.where(problem.observed, problem.R, _observed_mean(problem)[None, :])


def best_single(problem: Problem, metric: str = "pr_auc") -> jax.Array:
    """The classifier with the best `metric` on the training columns where it is observed.

    Its unobserved cells are filled with the column mean of the other classifiers.
    """
    score = metrics.METRICS[metric]
    mask = problem.observed & problem.labeled[None, :]
    values = jax.vmap(score, in_axes=(None, 0, 0))(problem.labels, problem.R, mask)
    values = jnp.where(jnp.isnan(values), -jnp.inf, values)
    values = values if metrics.higher_is_better(metric) else -values
    return _filled(problem)[jnp.argmax(values)]


def stacking_l2(n_labeled: jax.Array, C: float = 1.0) -> jax.Array:
    """The l2 of `fit_logistic` equal to scikit-learn's LogisticRegression(C) on n_labeled rows.

    scikit-learn minimises 0.5 ||w||^2 + C sum CE; dividing by C n gives mean CE + ||w||^2 / (2 C n).
    """
    return 0.5 / (C * n_labeled)


def stacking(problem: Problem, C: float = 1.0) -> jax.Array:
    """L2 logistic regression on the training columns of R (unobserved cells: column mean).

    Matches scikit-learn's `LogisticRegression(C=C)` fitted on R[:, labeled].T with labels.
    """
    F = _filled(problem)
    omega = problem.labeled.astype(F.dtype)
    w, b = fit_logistic(F, problem.labels, omega, stacking_l2(jnp.sum(omega), C))
    return jax.nn.sigmoid(w @ F + b)


BASELINES: dict[str, Callable[[Problem], jax.Array]] = {
    "simple_average": simple_average,
    "best_single": best_single,
    "stacking": stacking,
}
