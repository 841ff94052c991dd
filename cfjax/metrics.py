r"""Binary classification metrics in `jax.numpy`: masked, jit-able, vmappable; checked against sklearn.

Every metric takes 1-D arrays of one fixed length n and a boolean `mask` (n,) selecting the
entries that count (default: all). Masked-out entries may hold anything finite or not; they
never reach the result. Batches are `jax.vmap` away, e.g. the PR-AUC of every base classifier:

    jax.vmap(average_precision, in_axes=(None, 0, None))(labels, R, problem.validation)

Labels are read as positives where `y_true > 0.5`, so float, int and bool labels in {0, 1}
all work. Results carry the floating dtype of the score / probability argument.

Where a metric is undefined over the selected entries, it returns NaN instead of raising
(sklearn raises or warns there); see each docstring. All arguments may be traced; only shapes
are static.

Registry (`METRICS`), with the cases that give NaN:

* ``"pr_auc"``: :func:`average_precision`, higher is better; NaN with no selected positive.
* ``"roc_auc"``: :func:`roc_auc`, higher is better; NaN without both a positive and a negative.
* ``"brier"``: :func:`brier`, lower is better; NaN for an empty mask.
* ``"log_loss"``: :func:`log_loss`, lower is better; NaN for an empty mask.

Selected scores and probabilities must be finite (sklearn refuses NaN and inf; here they
would give a meaningless value, not an error).

K-class metrics (`MULTICLASS_METRICS`) take int labels y_true (n,) in 0..K-1 and class
probabilities `proba` (K, n) (a column per instance, as R[u] of a K-class ensemble (m, K, n));
masks as above (masked entries may hold anything, e.g. the -1 of an unlabeled column). The
ranking metrics are one-vs-rest: :func:`one_vs_rest` vmaps a binary metric over the classes
(class k positive, the rest negative, scored by proba[k]), and the macro mean skips the classes
where the binary metric is NaN:

* ``"log_loss"``: :func:`multiclass_log_loss`, lower is better; NaN for an empty mask.
* ``"accuracy"``: :func:`accuracy`, higher is better; NaN for an empty mask.
* ``"pr_auc"``: :func:`macro_pr_auc`, higher is better; classes without a selected positive are
  skipped (sklearn would warn and count them as 0); NaN when no class has one.
* ``"roc_auc"``: :func:`macro_roc_auc`, higher is better; classes without a selected positive
  or without a selected negative are skipped (sklearn raises); NaN when no class is left.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Real

__all__ = [
    "METRICS",
    "MULTICLASS_METRICS",
    "accuracy",
    "average_precision",
    "brier",
    "get",
    "get_multiclass",
    "higher_is_better",
    "log_loss",
    "macro_pr_auc",
    "macro_roc_auc",
    "multiclass_log_loss",
    "one_vs_rest",
    "pr_auc_of_logits",
    "roc_auc",
]

# Labels may be float, int or bool (positive where > 0.5); masks are bool.
_Labels = Bool[ArrayLike, " n"] | Real[ArrayLike, " n"]
_Mask = Bool[ArrayLike, " n"] | None


def _prepare(y_true, score, mask, score_name: str):
    """Validates shapes (static, so this is safe under jit/vmap) and returns (pos, score, mask)."""
    y_true = jnp.asarray(y_true)
    score = jnp.asarray(score)
    if score.ndim != 1:
        raise ValueError(
            f"{score_name}: expected a 1-D array, got shape {score.shape}; vmap for batches"
        )
    if y_true.shape != score.shape:
        raise ValueError(
            f"y_true: shape {y_true.shape} does not match {score_name} shape {score.shape}"
        )
    if not jnp.issubdtype(score.dtype, jnp.floating):
        score = score.astype(jnp.result_type(float))
    if mask is None:
        mask = jnp.ones(score.shape, dtype=bool)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != score.shape:
            raise ValueError(
                f"mask: shape {mask.shape} does not match {score_name} shape {score.shape}"
            )
        mask = mask.astype(bool)
    return y_true > 0.5, score, mask


def _tie_group_counts(pos, score, mask):
    """Cumulative weighted (tp, fp) at the end and the start of each entry's tie group.

    Entries are sorted by score descending. The threshold "score >= s" admits a whole group of
    equal scores at once, so every member of a group sees the counts at the group's end. Masked
    entries have weight 0: wherever they sort, they change no count, so they can share a key with
    selected entries; they get the score -inf only so that NaN padding cannot disturb the sort.

    Returns:
      pos_s, w_s: sorted positive flags and weights (n,).
      tp_end, fp_end: counts over all entries with score >= this entry's score (n,).
      tp_start, fp_start: counts over entries with score > this entry's score (n,).
    """
    dtype = score.dtype
    key = -jnp.where(mask, score, -jnp.inf)
    order = jnp.argsort(key)
    key_s = key[order]
    w_s = mask[order].astype(dtype)
    pos_s = pos[order]
    tp = jnp.cumsum(jnp.where(pos_s, w_s, 0.0))
    fp = jnp.cumsum(jnp.where(pos_s, 0.0, w_s))
    end = jnp.searchsorted(key_s, key_s, side="right") - 1
    start = jnp.searchsorted(key_s, key_s, side="left")
    # Counts strictly before the group: the cumulative count at index start - 1 (0 if start = 0).
    before = jnp.maximum(start - 1, 0)
    tp_start = jnp.where(start > 0, tp[before], 0.0)
    fp_start = jnp.where(start > 0, fp[before], 0.0)
    return pos_s, w_s, tp[end], fp[end], tp_start, fp_start


def average_precision(
    y_true: _Labels, score: Real[ArrayLike, " n"], mask: _Mask = None
) -> Float[Array, ""]:
    r"""Average precision (PR-AUC), exactly as `sklearn.metrics.average_precision_score`.

    .. math::

        AP = \frac{1}{P} \sum_{i \in M,\, y_i = 1} \mathrm{prec}(s_i), \qquad
        \mathrm{prec}(t) = \frac{|\{j \in M: y_j = 1, s_j \ge t\}|}{|\{j \in M: s_j \ge t\}|}

    with M the selected entries and P the number of positives among them. Ties are grouped as
    sklearn does: each positive takes the precision at the end of its group of equal scores
    (the step-wise sum :math:`\sum_k (R_k - R_{k-1}) P_k` over distinct thresholds).

    Args:
      y_true: (n,) labels in {0, 1} (positive where > 0.5). Traced.
      score: (n,) real scores, higher means more likely positive. Traced.
      mask: (n,) bool, entries that count; default all. Traced.

    Returns:
      Scalar AP in [0, 1], in `score`'s float dtype. NaN when no selected entry is positive
      (sklearn warns and returns 0 there). With no selected negative it is 1, as in sklearn.
    """
    pos, score, mask = _prepare(y_true, score, mask, "score")
    pos_s, w_s, tp_end, fp_end, _, _ = _tie_group_counts(pos, score, mask)
    admitted = tp_end + fp_end
    precision = tp_end / jnp.where(admitted > 0, admitted, 1.0)
    contrib = jnp.where(pos_s, w_s * precision, 0.0)
    n_pos = jnp.sum(jnp.where(pos_s, w_s, 0.0))
    ap = jnp.sum(contrib) / jnp.maximum(n_pos, 1.0)
    return jnp.where(n_pos > 0, ap, jnp.nan)


def roc_auc(y_true: _Labels, score: Real[ArrayLike, " n"], mask: _Mask = None) -> Float[Array, ""]:
    r"""Area under the ROC curve, equal to `sklearn.metrics.roc_auc_score` (ties count 1/2).

    The Mann-Whitney form of the trapezoidal area:

    .. math::

        AUC = \frac{1}{P N} \sum_{i \in M, y_i = 1} \Big( |\{j \in M: y_j = 0, s_j < s_i\}|
              + \tfrac12 |\{j \in M: y_j = 0, s_j = s_i\}| \Big)

    Args:
      y_true: (n,) labels in {0, 1} (positive where > 0.5). Traced.
      score: (n,) real scores. Traced.
      mask: (n,) bool, entries that count; default all. Traced.

    Returns:
      Scalar AUC in [0, 1], in `score`'s float dtype. NaN when the selected entries lack a
      positive or a negative (sklearn raises there).
    """
    pos, score, mask = _prepare(y_true, score, mask, "score")
    pos_s, w_s, _, fp_end, _, fp_start = _tie_group_counts(pos, score, mask)
    n_pos = jnp.sum(jnp.where(pos_s, w_s, 0.0))
    n_neg = jnp.sum(jnp.where(pos_s, 0.0, w_s))
    # Negatives below the group: n_neg - fp_end; tied negatives: fp_end - fp_start, at half weight.
    wins = n_neg - 0.5 * (fp_end + fp_start)
    total = jnp.sum(jnp.where(pos_s, w_s * wins, 0.0))
    auc = total / jnp.maximum(n_pos * n_neg, 1.0)
    return jnp.where((n_pos > 0) & (n_neg > 0), auc, jnp.nan)


def _masked_mean(values, mask):
    count = jnp.sum(mask.astype(values.dtype))
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)


def brier(y_true: _Labels, proba: Real[ArrayLike, " n"], mask: _Mask = None) -> Float[Array, ""]:
    r"""Brier score :math:`\frac{1}{|M|} \sum_{i \in M} (p_i - y_i)^2`, as `sklearn.metrics.brier_score_loss`.

    Args:
      y_true: (n,) labels in {0, 1} (positive where > 0.5). Traced.
      proba: (n,) predicted probabilities of the positive class. Traced.
      mask: (n,) bool, entries that count; default all. Traced.

    Returns:
      Scalar in `proba`'s float dtype (lower is better). NaN for an empty mask. A single class
      among the selected entries is fine (the score is still defined).
    """
    pos, proba, mask = _prepare(y_true, proba, mask, "proba")
    return _masked_mean((proba - pos.astype(proba.dtype)) ** 2, mask)


def log_loss(
    y_true: _Labels,
    proba: Real[ArrayLike, " n"],
    mask: _Mask = None,
    eps: Real[ArrayLike, ""] | None = None,
) -> Float[Array, ""]:
    r"""Mean binary cross-entropy, as `sklearn.metrics.log_loss` (sklearn >= 1.5 clipping).

    .. math::

        \frac{1}{|M|} \sum_{i \in M} -\big( y_i \log \mathrm{clip}(p_i) + (1 - y_i) \log \mathrm{clip}(1 - p_i) \big),
        \qquad \mathrm{clip}(x) = \min(\max(x, \epsilon), 1 - \epsilon)

    sklearn clips the two columns [1 - p, p] separately, so 1 - p is clipped rather than
    1 - clip(p); this matches it to the last bit of the dtype.

    Args:
      y_true: (n,) labels in {0, 1} (positive where > 0.5). Traced.
      proba: (n,) predicted probabilities of the positive class. Traced.
      mask: (n,) bool, entries that count; default all. Traced.
      eps: clipping constant; default the machine epsilon of `proba`'s float dtype, as sklearn.
        Traced.

    Returns:
      Scalar in `proba`'s float dtype (lower is better). NaN for an empty mask. A single class
      among the selected entries is fine (sklearn needs `labels=[0, 1]` to agree).
    """
    pos, proba, mask = _prepare(y_true, proba, mask, "proba")
    if eps is None:
        eps = jnp.finfo(proba.dtype).eps
    eps = jnp.asarray(eps, dtype=proba.dtype)
    p = jnp.where(pos, proba, 1.0 - proba)
    nll = -jnp.log(jnp.clip(p, eps, 1.0 - eps))
    return _masked_mean(nll, mask)


METRICS: dict[str, Callable[..., jax.Array]] = {
    "pr_auc": average_precision,
    "roc_auc": roc_auc,
    "brier": brier,
    "log_loss": log_loss,
}

_HIGHER_IS_BETTER = {"pr_auc": True, "roc_auc": True, "brier": False, "log_loss": False, "accuracy": True}


def get(name: str) -> Callable[..., jax.Array]:
    """The metric registered under `name` (see `METRICS`)."""
    if name not in METRICS:
        raise ValueError(f"name: unknown metric {name!r}; choose from {sorted(METRICS)}")
    return METRICS[name]


def higher_is_better(name: str) -> bool:
    """True for the ranking metrics (pr_auc, roc_auc) and accuracy, False for the losses
    (brier, log_loss); a name of `METRICS` or `MULTICLASS_METRICS`."""
    if name not in _HIGHER_IS_BETTER:
        get(name)
    return _HIGHER_IS_BETTER[name]


# ---------------------------------------------------------------------------------------------
# K classes: int labels (n,), probabilities (K, n)

_ClassLabels = Real[ArrayLike, " n"]


def _prepare_multiclass(y_true, proba, mask):
    """Validates shapes (static: safe under jit/vmap); returns (y_true, proba, mask)."""
    y_true = jnp.asarray(y_true)
    proba = jnp.asarray(proba)
    if proba.ndim != 2:
        raise ValueError(f"proba: expected a (K, n) array, got shape {proba.shape}; vmap for batches")
    if proba.shape[0] < 2:
        raise ValueError(f"proba: expected K >= 2 classes (rows), got shape {proba.shape}")
    n = proba.shape[1]
    if y_true.shape != (n,):
        raise ValueError(f"y_true: expected shape ({n},) to match proba {proba.shape}, got {y_true.shape}")
    if not jnp.issubdtype(proba.dtype, jnp.floating):
        proba = proba.astype(jnp.result_type(float))
    if mask is None:
        mask = jnp.ones((n,), dtype=bool)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != (n,):
            raise ValueError(f"mask: expected shape ({n},) to match proba {proba.shape}, got {mask.shape}")
        mask = mask.astype(bool)
    return y_true, proba, mask


def one_vs_rest(
    metric: Callable[..., jax.Array],
    y_true: _ClassLabels,
    proba: Real[ArrayLike, "K n"],
    mask: _Mask = None,
) -> Float[Array, " K"]:
    """A binary metric per class, one against the rest: `metric(y_true == k, proba[k], mask)`.

    One `jax.vmap` over the K rows of `proba`, so a binary metric of this module serves K
    classes unchanged (NaN where it is undefined for a class, e.g. no selected positive).

    Args:
      metric: a binary metric `(labels (n,), score (n,), mask (n,)) -> scalar`, e.g.
        `average_precision`. Static.
      y_true: (n,) class labels in 0..K-1. Traced.
      proba: (K, n) class scores (probabilities). Traced.
      mask: (n,) bool, entries that count; default all. Traced.

    Returns:
      (K,) the metric of each class.
    """
    y_true, proba, mask = _prepare_multiclass(y_true, proba, mask)
    onehot = y_true[None, :] == jnp.arange(proba.shape[0], dtype=y_true.dtype)[:, None]
    return jax.vmap(metric, in_axes=(0, 0, None))(onehot, proba, mask)


def _macro(values: jax.Array) -> jax.Array:
    """Mean over the non-NaN entries; NaN when there is none."""
    valid = ~jnp.isnan(values)
    count = jnp.sum(valid.astype(values.dtype))
    total = jnp.sum(jnp.where(valid, values, 0.0))
    return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)


def macro_pr_auc(y_true: _ClassLabels, proba: Real[ArrayLike, "K n"], mask: _Mask = None) -> Float[Array, ""]:
    r"""Macro one-vs-rest average precision: the mean over classes of
    `average_precision(y_true == k, proba[k], mask)`.

    Equal to `sklearn.metrics.average_precision_score(label_binarize(y, classes=range(K)),
    proba.T, average="macro")` when every class has a selected positive. A class without one is
    skipped here (its AP is undefined: sklearn warns and counts it as 0, pulling the mean down
    by a class that was never there); NaN when no class has a selected positive.

    Args:
      y_true: (n,) class labels in 0..K-1. Traced.
      proba: (K, n) class probabilities (any scores: only their order within a class counts).
        Traced.
      mask: (n,) bool, entries that count; default all. Traced.
    """
    return _macro(one_vs_rest(average_precision, y_true, proba, mask))


def macro_roc_auc(y_true: _ClassLabels, proba: Real[ArrayLike, "K n"], mask: _Mask = None) -> Float[Array, ""]:
    r"""Macro one-vs-rest ROC-AUC: the mean over classes of `roc_auc(y_true == k, proba[k], mask)`.

    Equal to `sklearn.metrics.roc_auc_score(y, proba.T, multi_class="ovr", average="macro",
    labels=range(K))` when every class has a selected positive and a selected negative (for
    K = 2 sklearn's binary AUC of proba[1], which both classes' AUCs equal when proba[0] =
    1 - proba[1]). A class without a selected positive or negative is skipped (sklearn raises);
    NaN when no class is left.

    Args:
      y_true: (n,) class labels in 0..K-1. Traced.
      proba: (K, n) class probabilities. Traced.
      mask: (n,) bool, entries that count; default all. Traced.
    """
    return _macro(one_vs_rest(roc_auc, y_true, proba, mask))


def _true_class_proba(y_true, proba):
    """proba[y_i, i] for each i (labels outside 0..K-1, e.g. -1 on masked entries, clipped in)."""
    index = jnp.clip(y_true.astype(jnp.int32), 0, proba.shape[0] - 1)
    return jnp.take_along_axis(proba, index[None, :], axis=0)[0]


def multiclass_log_loss(
    y_true: _ClassLabels,
    proba: Real[ArrayLike, "K n"],
    mask: _Mask = None,
    eps: Real[ArrayLike, ""] | None = None,
) -> Float[Array, ""]:
    r"""Mean cross-entropy of K-class probabilities, as `sklearn.metrics.log_loss(y, proba.T,
    labels=range(K))` (sklearn >= 1.5: clipped, not renormalised).

    .. math::

        \frac{1}{|M|} \sum_{i \in M} -\log \mathrm{clip}(p_{y_i i}),
        \qquad \mathrm{clip}(x) = \min(\max(x, \epsilon), 1 - \epsilon)

    For K = 2 with proba[0] = 1 - proba[1] it equals the binary `log_loss(y, proba[1])`.

    Args:
      y_true: (n,) class labels in 0..K-1 (entries outside the mask may hold anything). Traced.
      proba: (K, n) class probabilities, columns summing to 1 (not checked: sklearn warns).
        Traced.
      mask: (n,) bool, entries that count; default all. Traced.
      eps: clipping constant; default the machine epsilon of `proba`'s float dtype, as sklearn.
        Traced.

    Returns:
      Scalar in `proba`'s float dtype (lower is better). NaN for an empty mask.
    """
    y_true, proba, mask = _prepare_multiclass(y_true, proba, mask)
    if eps is None:
        eps = jnp.finfo(proba.dtype).eps
    eps = jnp.asarray(eps, dtype=proba.dtype)
    nll = -jnp.log(jnp.clip(_true_class_proba(y_true, proba), eps, 1.0 - eps))
    return _masked_mean(nll, mask)


def accuracy(y_true: _ClassLabels, proba: Real[ArrayLike, "K n"], mask: _Mask = None) -> Float[Array, ""]:
    r"""Share of selected entries whose most probable class is the true one, as
    `sklearn.metrics.accuracy_score(y, proba.argmax(0))`.

    Ties go to the lowest class index (`argmax`), as scikit-learn's `predict`; for K = 2 the
    prediction is class 1 exactly where proba[1] > proba[0] (proba[1] > 0.5 when the columns
    sum to 1).

    Args:
      y_true: (n,) class labels in 0..K-1. Traced.
      proba: (K, n) class probabilities (any scores). Traced.
      mask: (n,) bool, entries that count; default all. Traced.

    Returns:
      Scalar in [0, 1] in `proba`'s float dtype. NaN for an empty mask.
    """
    y_true, proba, mask = _prepare_multiclass(y_true, proba, mask)
    hit = jnp.argmax(proba, axis=0) == y_true
    return _masked_mean(hit.astype(proba.dtype), mask)


MULTICLASS_METRICS: dict[str, Callable[..., jax.Array]] = {
    "log_loss": multiclass_log_loss,
    "accuracy": accuracy,
    "pr_auc": macro_pr_auc,
    "roc_auc": macro_roc_auc,
}
"""The K-class metrics `(y_true (n,), proba (K, n), mask) -> scalar`, by the names of their
binary counterparts where there is one (`higher_is_better` covers both registries)."""


def get_multiclass(name: str) -> Callable[..., jax.Array]:
    """The K-class metric registered under `name` (see `MULTICLASS_METRICS`)."""
    if name not in MULTICLASS_METRICS:
        raise ValueError(f"name: unknown K-class metric {name!r}; choose from {sorted(MULTICLASS_METRICS)}")
    return MULTICLASS_METRICS[name]


def pr_auc_of_logits(labels: Real[ArrayLike, "*K n"], logits: Float[ArrayLike, "*K n"], mask: _Mask = None
                     ) -> Float[Array, ""]:
    """The PR-AUC a fit is monitored and selected by, from a `Problem`'s labels and an
    aggregator's logits: `average_precision` for binary labels (n,) and logits (n,); for one-hot
    K-class labels (K, n) and logits (K, n), `macro_pr_auc` of the softmax probabilities (a
    class's ranking reads its probability, not its logit, whose normaliser differs per column)."""
    labels = jnp.asarray(labels)
    if labels.ndim == 1:
        return average_precision(labels, logits, mask)
    return macro_pr_auc(jnp.argmax(labels, axis=0), jax.nn.softmax(logits, axis=0), mask)

