"""K-class ensembles: the data contract, its host-side check, and the K-class baselines.

The contract (what `cfjax.datasets.load_multiclass` returns and the K-class model will read):

* `R`: (m, K, n) float, classifier u's probability of class k for instance i; for each (u, i)
  the K entries sum to 1, or are all NaN where classifier u gave no prediction for i (an
  unobserved cell; all K together).
* `labels`: (n,) int, the class in 0..K-1 of a labeled column, -1 for an unlabeled one.
* `y_true`: (n,) int in 0..K-1 (evaluation only; never read by a method).
* K >= 2. For K = 2, R[:, 1, :] is the binary ensemble of the rest of cfjax, and every
  function here agrees with its binary counterpart on it (tests/test_multiclass.py), stacking
  up to the penalty's scale (see `stacking`).

The baselines are pure functions of these plain arrays, jit-able (the work is jitted inside),
each returning (K, n) class probabilities for every column, with labels read only on the
labeled columns:

* `simple_average`: the mean of the observed classifiers' probabilities per class.
* `best_single`: the classifier with the best labeled-column metric (log-loss by default).
* `stacking`: multinomial L2 logistic regression on the m K probabilities, scikit-learn's
  `LogisticRegression(C=1.0)` (multinomial, lbfgs) by guarded Newton steps.

Unobserved cells are filled, for best_single and stacking, with the column's `simple_average`
(as the binary baselines fill them with the column's observed mean). Called with concrete
arrays, each baseline first checks them on the host (`check_inputs`: shapes, K >= 2,
probabilities in [0, 1] summing to 1, NaN only as whole cells, labels in -1..K-1, a labeled
column where labels are read) and raises a `ValueError` naming the argument; under an outer
`jit` (tracers) only the static shape checks run.

A class that no labeled column holds may still be predicted by simple_average and best_single
(the base models' probabilities); stacking, like scikit-learn's LogisticRegression, which
knows only the classes it saw, gives it probability 0 on every column.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from cfjax import metrics
from cfjax.baselines import stacking_l2
from cfjax.compilation import jit
from cfjax.data import class_cells
from cfjax.logistic import NEWTON_MAX_PARAMETERS, fit_multinomial, multinomial_proba

__all__ = [
    "BASELINES",
    "best_single",
    "check_inputs",
    "filled",
    "observed",
    "simple_average",
    "stacking",
]

_SUM_TOLERANCE = 1e-4


def _concrete(*arrays: Any) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def check_inputs(
    R: Float[ArrayLike, "m K n"], labels: Int[ArrayLike, " n"] | None = None, need_labeled: bool = False
) -> None:
    """Raises a ValueError naming the argument where (R, labels) break the K-class contract.

    Shapes are checked always (they are static); values only for concrete arrays (host
    arrays or concrete jax arrays, not tracers): R's observed entries in [0, 1] with each
    cell's K entries summing to 1 within 1e-4, NaN only as whole cells (all K entries);
    labels integer-valued in -1..K-1; with `need_labeled`, at least one labeled column.
    """
    shape = np.shape(R)
    if len(shape) != 3:
        raise ValueError(f"R: expected an (m, K, n) array, got shape {shape}")
    m, K, n = shape
    if m < 1 or n < 1:
        raise ValueError(f"R: expected at least one classifier and one instance, got shape {shape}")
    if K < 2:
        raise ValueError(f"R: expected K >= 2 classes on axis 1, got shape {shape}")
    if labels is not None and np.shape(labels) != (n,):
        raise ValueError(f"labels: expected shape ({n},) to match R {shape}, got {np.shape(labels)}")
    if _concrete(R):
        values = np.asarray(R)
        if not np.issubdtype(values.dtype, np.floating):
            raise ValueError(f"R: expected a float array, got dtype {values.dtype}")
        partial, sums = class_cells(values, axis=1)
        if partial.any():
            u, i = np.argwhere(partial)[0]
            raise ValueError(
                f"R: classifier {u} on instance {i} has some but not all of its {K} class "
                "probabilities NaN; an unobserved cell is NaN in all K entries"
            )
        seen = values[~np.isnan(values)]
        if seen.size and (not np.isfinite(seen).all() or seen.min() < 0.0 or seen.max() > 1.0):
            raise ValueError("R: observed probabilities must be finite and lie in [0, 1]")
        sums = sums[~np.isnan(sums)]
        if sums.size and np.abs(sums - 1.0).max() > _SUM_TOLERANCE:
            raise ValueError(
                f"R: each classifier's K class probabilities must sum to 1 (within {_SUM_TOLERANCE}); "
                f"found a sum of {sums[np.argmax(np.abs(sums - 1.0))]:.6g} (is the class axis axis 1?)"
            )
    if labels is not None and _concrete(labels):
        lab = np.asarray(labels)
        if lab.dtype == bool or not (
            np.issubdtype(lab.dtype, np.integer)
            or (np.issubdtype(lab.dtype, np.floating) and np.all(lab == np.round(lab)))
        ):
            raise ValueError(f"labels: expected integer class labels in -1..{K - 1}, got dtype {lab.dtype}")
        if lab.size and (lab.min() < -1 or lab.max() > K - 1):
            raise ValueError(
                f"labels: expected values in 0..{K - 1} (labeled) or -1 (unlabeled), "
                f"found {sorted(set(lab[(lab < -1) | (lab > K - 1)].tolist()))[:5]}"
            )
        if need_labeled and not (lab >= 0).any():
            raise ValueError("labels: no labeled column (every label is -1); this baseline needs labels")


def observed(R: Float[ArrayLike, "m K n"]) -> jax.Array:
    """(m, n) bool: where classifier u gave a prediction for instance i (no NaN in the cell)."""
    return ~jnp.any(jnp.isnan(jnp.asarray(R)), axis=1)


def _average(R: jax.Array) -> jax.Array:
    obs = observed(R)
    total = jnp.sum(jnp.where(obs[:, None, :], R, 0.0), axis=0)  # (K, n)
    mean = total / jnp.maximum(jnp.sum(obs, axis=0).astype(R.dtype), 1.0)[None, :]
    mass = jnp.sum(mean, axis=0, keepdims=True)
    return jnp.where(mass > 0, mean / jnp.where(mass > 0, mass, 1.0), 1.0 / R.shape[1])


def _filled(R: jax.Array) -> jax.Array:
    return jnp.where(observed(R)[:, None, :], R, _average(R)[None, :, :])


def _as_arrays(R, labels=None):
    R = jnp.asarray(R)
    if not jnp.issubdtype(R.dtype, jnp.floating):
        R = R.astype(jnp.result_type(float))
    if labels is None:
        return R
    return R, jnp.asarray(labels).astype(jnp.int32)


@jit
def _simple_average(R):
    return _average(R)


def simple_average(R: Float[ArrayLike, "m K n"]) -> Float[Array, "K n"]:
    r"""The mean over observed classifiers of each class probability, renormalised.

    p_ki = a_ki / sum_l a_li with a_ki = sum_u o_ui R_uki / sum_u o_ui (o: observed). Rows that
    sum to 1 make the renormalisation a no-op up to rounding; it keeps each column a
    distribution. A column no classifier observed gets 1/K for every class. For K = 2 the
    binary `cfjax.baselines.simple_average` of R[:, 1, :] (where every column has an
    observation).

    Returns:
      (K, n) probabilities, columns summing to 1.
    """
    check_inputs(R)
    return _simple_average(_as_arrays(R))


def filled(R: Float[ArrayLike, "m K n"]) -> Float[Array, "m K n"]:
    """R with every unobserved cell replaced by its column's `simple_average` (K entries)."""
    check_inputs(R)
    return jit(_filled)(_as_arrays(R))


@partial(jit, static_argnames="metric")
def _best_single(R, labels, metric):
    score = metrics.get_multiclass(metric)
    F = _filled(R)
    mask = observed(R) & (labels >= 0)[None, :]
    values = jax.vmap(score, in_axes=(None, 0, 0))(labels, F, mask)
    values = values if metrics.higher_is_better(metric) else -values
    values = jnp.where(jnp.isnan(values), -jnp.inf, values)
    return F[jnp.argmax(values)]


def best_single(
    R: Float[ArrayLike, "m K n"], labels: Int[ArrayLike, " n"], metric: str = "log_loss"
) -> Float[Array, "K n"]:
    """The classifier with the best `metric` on the labeled columns where it is observed.

    `metric` (static): a key of `cfjax.metrics.MULTICLASS_METRICS`: "log_loss" (default, the
    proper score of K-class probabilities), "pr_auc" (macro one-vs-rest), "roc_auc",
    "accuracy". Ties go to the lowest row; a classifier whose metric is undefined on its
    labeled cells (none observed) is never chosen unless all are. Its unobserved cells are
    filled with the column's `simple_average`. For K = 2 and metric "log_loss" or "roc_auc",
    the binary `cfjax.baselines.best_single(..., metric)` of R[:, 1, :].

    Returns:
      (K, n): the chosen classifier's probabilities for every column.
    """
    metrics.get_multiclass(metric)
    check_inputs(R, labels, need_labeled=True)
    R, labels = _as_arrays(R, labels)
    return _best_single(R, labels, metric)


@jit
def _stacking(R, labels, C):
    m, K, n = R.shape
    F = _filled(R).reshape(m * K, n)  # row u K + k: classifier u's probability of class k
    labeled = labels >= 0
    omega = labeled.astype(F.dtype)
    seen = jnp.zeros((K,), F.dtype).at[jnp.where(labeled, labels, 0)].add(omega) > 0
    solver = "newton" if K * (m * K + 1) <= NEWTON_MAX_PARAMETERS else "lbfgs"
    W, b = fit_multinomial(F, labels, omega, stacking_l2(jnp.sum(omega), C), K, seen, solver=solver,
                           tol=jnp.sqrt(jnp.finfo(F.dtype).eps) * 1e-2)
    return multinomial_proba(W, b, F, seen)


def stacking(
    R: Float[ArrayLike, "m K n"], labels: Int[ArrayLike, " n"], C: float = 1.0
) -> Float[Array, "K n"]:
    r"""Multinomial L2 logistic regression on the m K probabilities of the labeled columns.

    Features: the (m K,) vector (R_u1i, ..., R_uKi)_u of each column (unobserved cells:
    the column's `simple_average`); one weight vector and intercept per class, softmax link,
    minimising  sum_{i labeled} CE_i + ||W||_F^2 / (2 C)  (intercepts unpenalised), which is
    scikit-learn's `LogisticRegression(C=C)` on those features for K >= 3 (multinomial, lbfgs;
    checked to 1e-6 in float64, where sklearn's own tolerance is the gap). `C` is traced. Fitted
    by guarded Newton steps up to `NEWTON_MAX_PARAMETERS` (2000) parameters K (m K + 1), by
    L-BFGS beyond (until the gradient norm is 0.01 sqrt(eps) of the dtype).

    K = 2: scikit-learn fits a binary model instead. This one stays multinomial, and equals
    the binary `cfjax.baselines.stacking` of R[:, 1, :] at 4 C (the two classes' features
    are r and 1 - r, and the symmetric softmax halves the weight difference: both give a
    penalty of ||w||^2 / (8 C) on the binary weights w).

    A class absent from the labeled columns gets probability 0 everywhere, as scikit-learn's
    model, which knows only the classes it saw (with just two classes present sklearn would
    fit a binary model; this one stays multinomial on them).

    Returns:
      (K, n) probabilities for every column.
    """
    check_inputs(R, labels, need_labeled=True)
    R, labels = _as_arrays(R, labels)
    return _stacking(R, labels, jnp.asarray(C, R.dtype))


def _average_baseline(R: Float[ArrayLike, "m K n"], labels: Int[ArrayLike, " n"]) -> Float[Array, "K n"]:
    """`simple_average` in the baselines' signature (it reads no label)."""
    check_inputs(R, labels)
    return simple_average(R)


BASELINES: dict[str, Callable[..., jax.Array]] = {
    "simple_average": _average_baseline,
    "best_single": best_single,
    "stacking": stacking,
}
"""The K-class baselines as `(R, labels) -> (K, n)`, in the order tables list them."""
