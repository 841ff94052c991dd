"""Problems from arrays, validated on the host; splits as masks; synthetic ensembles.

Every public entry here runs on the host (NumPy) and raises `ValueError` naming the argument
and the fault. Inside `jit` nothing is validated: what reaches a solver is already clean.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfjax.structs import Problem

__all__ = [
    "LOGIT_EPS",
    "PRESETS",
    "Ensemble",
    "check_class_cells",
    "class_cells",
    "class_index",
    "from_numpy",
    "hold_out",
    "logit_space",
    "mask_columns",
    "preset",
    "preset_labeled_counts",
    "require_labels",
    "synthetic",
    "synthetic_labeled_counts",
    "validate_problem",
]

_R_TOL = 1e-6
_SUM_TOL = 1e-4  # as cfjax.multiclass: K class probabilities of one prediction sum to 1


def _as_float_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)  # copies: contiguous, any numeric dtype
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot be read as a numeric array ({err})") from None
    return arr


def from_numpy(
    R: Any,
    labels: Any,
    confidence: Any = None,
    *,
    validation: Any = None,
    dtype: Any = None,
    require_labels: bool = True,
) -> Problem:
    """Builds a validated `Problem` from host arrays.

    Args:
      R: (m, n) probabilities in [0, 1] (values within 1e-6 outside are clipped). NaN marks a
        missing prediction: that cell is unobserved and gets zero confidence. Or (m, K, n): each
        classifier's K class probabilities per instance (summing to 1 within 1e-4; a missing
        prediction is NaN in all K), labels then in {0..K-1}. K >= 3 gives the K-class
        `Problem` (classes as rows, one-hot labels: see `Problem`); K = 2 gives exactly the
        binary problem of R[:, 1, :], whose fit is the same.
      labels: (n,) with 0 / 1 for labeled instances and NaN or -1 for unlabeled ones.
      confidence: optional (m, n) base confidence, finite and >= 0 (default 1 on observed cells).
        Unobserved cells get 0 whatever is given.
      validation: optional (n,) bool mask of labeled columns to hold out from training.
      dtype: float dtype of the arrays (default: JAX's default float).
      require_labels: if True (the default, needed by every supervised method), fail unless
        the training columns hold both classes.

    Handled, not refused: lists, ints, bools and float16/32/64 (read as float64, then cast to
    `dtype`), non-contiguous or Fortran-ordered arrays (copied), NaN in `R` (a missing
    prediction, not an error), NaN or -1 in `labels` (unlabeled), a single classifier (m = 1,
    which allows latent_dim = 1 only), and any confidence on unobserved cells (set to 0).

    Raises:
      ValueError: naming `R`, `labels`, `confidence` or `validation` and the fault: not
        numeric; R not 2-D; n < 2 or m < 1; inf in R or labels; R outside [0, 1]; a row or a
        column of R with every cell missing; labels of the wrong length or outside
        {0, 1, -1, NaN}; with `require_labels`, no labeled column or only one class; confidence
        of the wrong shape, NaN, inf or negative on an observed cell, or zero on a whole column.
    """
    R = _as_float_array(R, "R")
    if R.ndim == 3:
        return _from_class_probabilities(R, labels, confidence, validation=validation, dtype=dtype,
                                         require_labels=require_labels)
    if R.ndim != 2:
        raise ValueError(f"R: expected a 2-D (m, n) array (or (m, K, n) for K classes), got shape {R.shape}")
    m, n = R.shape
    if m < 1:
        raise ValueError(f"R: needs at least one classifier (row), got m={m}")
    if n < 2:
        raise ValueError(f"R: needs at least two instances (columns), got n={n}")
    if np.isinf(R).any():
        raise ValueError("R: contains infinite values (use NaN for a missing prediction)")
    observed = ~np.isnan(R)
    values = R[observed]
    if values.size and (values.min() < -_R_TOL or values.max() > 1 + _R_TOL):
        raise ValueError(
            f"R: probabilities must lie in [0, 1]; found values in [{values.min():.6g}, "
            f"{values.max():.6g}]"
        )
    if not observed.any(axis=1).all():
        rows = np.flatnonzero(~observed.any(axis=1))
        raise ValueError(f"R: classifier row(s) {rows[:5].tolist()} have no observed cell")
    if not observed.any(axis=0).all():
        cols = np.flatnonzero(~observed.any(axis=0))
        raise ValueError(f"R: instance column(s) {cols[:5].tolist()} have no observed cell")
    R = np.where(observed, np.clip(np.nan_to_num(R, nan=0.0), 0.0, 1.0), 0.0)

    labels, unlabeled = _read_labels(labels, n)
    bad = ~unlabeled & (labels != 0) & (labels != 1)
    if bad.any():
        raise ValueError(
            f"labels: values must be 0, 1, or -1/NaN for unlabeled; found {np.unique(labels[bad])[:5].tolist()}"
        )
    has_label = ~unlabeled
    labels01 = np.where(has_label, labels, 0.0)

    if confidence is None:
        C = observed.astype(np.float64)
    else:
        C = _as_float_array(confidence, "confidence")
        if C.shape != (m, n):
            raise ValueError(f"confidence: expected shape {(m, n)} to match R, got {C.shape}")
        if not np.isfinite(C[observed]).all():
            raise ValueError("confidence: contains NaN or infinite values on observed cells")
        if (C[observed] < 0).any():
            raise ValueError("confidence: must be >= 0")
        C = np.where(observed, C, 0.0)
        if not (C.sum(axis=0) > 0).all():
            raise ValueError("confidence: some instance column has zero total confidence")

    valid = _validation_mask(validation, has_label)
    train = has_label & ~valid

    if require_labels:
        _check_two_classes(labels01, train, "labels")

    dtype = dtype or jnp.result_type(float)
    return Problem(
        R=jnp.asarray(R, dtype),
        C=jnp.asarray(C, dtype),
        observed=jnp.asarray(observed),
        labels=jnp.asarray(labels01, dtype),
        labeled=jnp.asarray(train),
        validation=jnp.asarray(valid),
    )


def _read_labels(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels as float64 (n,), the unlabeled mask: NaN or -1), refusing a wrong shape or inf;
    the values themselves are checked by the caller (0/1, or a class in 0..K-1)."""
    labels = _as_float_array(labels, "labels")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels: expected shape ({n},) to match R's n={n} columns, got {labels.shape}")
    if np.isinf(labels).any():
        raise ValueError("labels: contains infinite values")
    return labels, np.isnan(labels) | (labels == -1)


def _validation_mask(validation: Any, has_label: np.ndarray) -> np.ndarray:
    """The (n,) bool validation mask (all False when None), refusing a wrong shape or dtype and
    columns without a label."""
    n = has_label.shape[0]
    if validation is None:
        return np.zeros(n, dtype=bool)
    valid = np.asarray(validation)
    if valid.shape != (n,) or valid.dtype != bool:
        raise ValueError(f"validation: expected a bool mask of shape ({n},), got {valid.dtype} {valid.shape}")
    if (valid & ~has_label).any():
        raise ValueError("validation: marks columns that have no label")
    return valid


def _check_two_classes(labels01: np.ndarray, mask: np.ndarray, name: str) -> None:
    """Training columns exist and hold two classes or more (labels (n,) binary or (K, n) one-hot)."""
    if not mask.any():
        raise ValueError(f"{name}: no labeled instance (every label is -1/NaN); supervised methods need labels")
    classes = np.unique(labels01[mask] if labels01.ndim == 1 else np.argmax(labels01[:, mask], axis=0))
    if classes.size < 2:
        need = "both classes" if labels01.ndim == 1 else "at least two classes"
        raise ValueError(f"{name}: labeled instances are all of class {int(classes[0])}; supervised methods need {need}")


def class_cells(P: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The host checks' view of K-class predictions, the class axis `axis` of P (NumPy):
    (partial, sums), both without that axis: `partial` where a prediction is NaN in some classes
    but not all (a missing prediction is NaN in all K), `sums` its K probabilities' sum, NaN
    where the whole prediction is missing. `from_numpy`, `cfjax.multiclass.check_inputs` and the
    estimator's X read their K-class input through it, each naming its own argument."""
    missing = np.isnan(P)
    partial = missing.any(axis=axis) & ~missing.all(axis=axis)
    sums = np.where(missing.all(axis=axis), np.nan, np.nansum(P, axis=axis))
    return partial, sums


def check_class_cells(R: np.ndarray, first_column: int = 0, where: str = "") -> None:
    """Raises a ValueError naming R where an (m, K, n) ensemble has a cell NaN in some classes
    only or K probabilities not summing to 1 within the tolerance (`class_cells`). Columns are
    reported from `first_column` (a block read from disk); `where` ends the sum message."""
    partial, sums = class_cells(R, axis=1)
    if partial.any():
        u, i = np.argwhere(partial)[0]
        raise ValueError(f"R: cell (classifier {u}, instance {first_column + i}) is NaN in some classes only; a "
                         "missing prediction is NaN in all K")
    sums = sums[~np.isnan(sums)]
    if sums.size and np.abs(sums - 1.0).max() > _SUM_TOL:
        raise ValueError(f"R: each classifier's K class probabilities must sum to 1 (within {_SUM_TOL:g}); "
                         f"found sums in [{sums.min():.6g}, {sums.max():.6g}]{where}")


def _from_class_probabilities(R: np.ndarray, labels: Any, confidence: Any, *, validation: Any, dtype: Any,
                              require_labels: bool) -> Problem:
    """`from_numpy` of an (m, K, n) ensemble: K = 2 as the binary R[:, 1, :], K >= 3 as classes in rows."""
    m, K, n = R.shape
    if K < 2:
        raise ValueError(f"R: an (m, K, n) ensemble needs K >= 2 classes, got K={K}")
    if np.isinf(R).any():
        raise ValueError("R: contains infinite values (use NaN for a missing prediction)")
    check_class_cells(R)
    labels, unlabeled = _read_labels(labels, n)
    bad = ~unlabeled & ~np.isin(labels, np.arange(K))
    if bad.any():
        raise ValueError(f"labels: values must be classes 0..{K - 1}, or -1/NaN for unlabeled; found "
                         f"{np.unique(labels[bad])[:5].tolist()}")
    if confidence is not None:
        confidence = _as_float_array(confidence, "confidence")
        if confidence.shape != (m, n):
            raise ValueError(f"confidence: expected shape {(m, n)} (one per classifier and instance), "
                             f"got {confidence.shape}")
    if K == 2:  # the class-1 probabilities carry everything: the binary problem itself
        return from_numpy(R[:, 1, :], labels, confidence, validation=validation, dtype=dtype,
                          require_labels=require_labels)
    # classes as rows: the (m K, n) rows are binary "is class k" predictions, each validated as one
    # (the one-hot labels are set below), and every row of a classifier shares its confidence
    rows = R.reshape(m * K, n)
    first = from_numpy(rows, np.zeros(n), None if confidence is None else np.repeat(confidence, K, axis=0),
                       validation=None, dtype=dtype, require_labels=False)
    has_label = ~unlabeled
    valid = _validation_mask(validation, has_label)
    train = has_label & ~valid
    onehot = np.zeros((K, n))
    onehot[labels[has_label].astype(int), np.flatnonzero(has_label)] = 1.0
    if require_labels:
        _check_two_classes(onehot, train, "labels")
    return first._replace(labels=jnp.asarray(onehot, first.R.dtype), labeled=jnp.asarray(train),
                          validation=jnp.asarray(valid))


def validate_problem(problem: Problem) -> None:
    """Host-side check of a `Problem` built by hand (shapes, finiteness, masks)."""
    R, C = np.asarray(problem.R), np.asarray(problem.C)
    if R.ndim != 2:
        raise ValueError(f"problem.R: expected 2-D, got shape {R.shape}")
    if C.shape != R.shape or np.asarray(problem.observed).shape != R.shape:
        raise ValueError("problem.C / problem.observed: shapes must equal R's")
    n = R.shape[1]
    for name in ("labeled", "validation"):
        if np.asarray(getattr(problem, name)).shape != (n,):
            raise ValueError(f"problem.{name}: expected shape ({n},)")
    labels = np.asarray(problem.labels)
    if labels.shape != (n,):  # else the K-class layout: one-hot (K, n), R's rows a multiple of K
        if labels.ndim != 2 or labels.shape[1] != n or labels.shape[0] < 3 or R.shape[0] % labels.shape[0]:
            raise ValueError(f"problem.labels: expected shape ({n},), or one-hot (K, {n}) with K >= 3 dividing "
                             f"R's {R.shape[0]} rows, got {labels.shape}")
        if not (np.isin(labels, (0.0, 1.0)).all() and (labels.sum(axis=0) <= 1).all()):
            raise ValueError("problem.labels: a K-class problem's labels must be one-hot columns (or all 0)")
    if not (np.isfinite(R).all() and np.isfinite(C).all()):
        raise ValueError("problem.R / problem.C: must be finite (unobserved cells hold 0)")
    if (C < 0).any():
        raise ValueError("problem.C: confidence must be >= 0")
    if (np.asarray(problem.labeled) & np.asarray(problem.validation)).any():
        raise ValueError("problem.validation: overlaps problem.labeled")


def require_labels(problem: Problem) -> None:
    """Raises unless the training columns of `problem` hold both classes."""
    _check_two_classes(np.asarray(problem.labels), np.asarray(problem.labeled), "labels")


def class_index(problem: Problem) -> np.ndarray:
    """(n,) int on the host: each column's class, 0 where it has no label (binary labels, or the
    argmax of the K-class one-hot)."""
    labels = np.asarray(problem.labels)
    return (labels > 0.5).astype(np.int64) if problem.n_classes == 2 else np.argmax(labels, axis=0)


def mask_columns(problem: Problem, columns: Any) -> Problem:
    """Hides the labels of `columns` (bool mask or indices): they become transductive targets.

    Shapes are unchanged, so masked problems share one compiled program.
    """
    hide = np.zeros(problem.n_instances, bool)
    hide[np.asarray(columns)] = True
    keep = jnp.asarray(~hide)
    return problem._replace(labeled=problem.labeled & keep, validation=problem.validation & keep)


def hold_out(key: jax.Array, problem: Problem, fraction: float = 0.2) -> Problem:
    """Moves a stratified `fraction` of the training columns into the validation mask.

    At least one column of each class stays on each side when the class has two or more.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: must lie in (0, 1), got {fraction}")
    labels = class_index(problem)
    train = np.asarray(problem.labeled).copy()
    valid = np.asarray(problem.validation).copy()
    order = np.asarray(jax.random.permutation(key, problem.n_instances))
    for cls in range(problem.n_classes):
        members = order[train[order] & (labels[order] == cls)]
        k = round(fraction * members.size)
        k = min(max(k, 1 if members.size >= 2 else 0), members.size - 1 if members.size >= 2 else 0)
        valid[members[:k]] = True
        train[members[:k]] = False
    return problem._replace(labeled=jnp.asarray(train), validation=jnp.asarray(valid))


def stratified_labeled_mask(key: jax.Array, y: np.ndarray, fraction: float) -> np.ndarray:
    """A keyed stratified subset of instances (at least one of each class present in y)."""
    y = np.asarray(y)
    order = np.asarray(jax.random.permutation(key, y.size))
    mask = np.zeros(y.size, bool)
    for cls in np.unique(y):
        members = order[y[order] == cls]
        k = max(1, round(fraction * members.size))
        mask[members[:k]] = True
    return mask


class Ensemble(NamedTuple):
    """A problem together with the labels it hides, for evaluation.

    Attributes:
      problem: the `Problem` a solver sees.
      y_true: (n,) int, the true label of every column (also the hidden ones).
      test: (n,) bool, the transductive targets: columns in neither training mask.
      names: the base classifiers' names.
      regions: (n,) int, the latent region of every column when the generator has regions
        (`synthetic(..., n_regions > 1)`, the "regional_experts" preset), else None.
      experts: (m, n_regions) bool, which classifier is an expert on which region, or None.
    """

    problem: Problem
    y_true: np.ndarray
    test: np.ndarray
    names: tuple[str, ...]
    regions: np.ndarray | None = None
    experts: np.ndarray | None = None


def _probit(q: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF (float32 precision is ample for setting AUCs)."""
    return np.asarray(jax.scipy.special.ndtri(jnp.asarray(q, jnp.float32)), np.float64)


def _synthetic_labels(key: jax.Array, n: int, positive_rate: float) -> np.ndarray:
    y = np.array(jax.random.bernoulli(key, positive_rate, (n,))).astype(np.int64)
    # Both classes must exist: force the rarest one into a random position if absent.
    if y.min() == y.max():
        y[0] = 1 - y[0]
    return y


def synthetic(
    key: jax.Array,
    n_classifiers: int = 10,
    n_instances: int = 1000,
    positive_rate: float = 0.5,
    quality: float = 0.85,
    quality_spread: float = 0.1,
    labeled_fraction: float = 0.5,
    error_correlation: float = 0.4,
    calibration_distortion: float = 0.5,
    missing_rate: float = 0.0,
    n_regions: int = 1,
    off_region_quality: float = 0.55,
    region_bias: float = 1.0,
    dtype: Any = None,
) -> Ensemble:
    """A keyed synthetic ensemble with known per-classifier ROC-AUC and correlated errors.

    Model (equal-variance binormal): classifier u scores instance i as
    s_ui = mu_u * y_i + e_ui, with e_ui = sqrt(c) z_i + sqrt(1 - c) eps_ui, z, eps ~ N(0, 1),
    so each classifier's ROC-AUC is Phi(mu_u / sqrt(2)) whatever the correlation c. The AUCs
    are spread uniformly over quality +/- quality_spread (clipped to [0.51, 0.995]), their mean
    is `quality`. The shared term z makes errors correlated, so averaging m classifiers does
    not reach a perfect score. The probability reported is a distorted version of the true
    posterior, sigmoid(t_u * logit_u + b_u), with log t_u and b_u ~ N(0, distortion^2): a
    monotone map, so AUCs are unchanged while calibration is not.

    Regional experts (`n_regions` = K > 1): every instance lies in one of K latent regions
    (uniform), and classifier u is an expert on region u mod K only. On its region it scores as
    above; elsewhere its separation drops to that of AUC `off_region_quality` and its score is
    shifted by a systematic error beta_uk ~ N(0, region_bias^2), fixed per (classifier, region),
    while it still reports the posterior of its expert model: out of its domain it is as
    confident as in it, and wrong. No global weighting of the classifiers is right everywhere;
    trusting u only where it is an expert is. K = 1 is the model above, draw for draw.

    Args:
      key: a `jax.random.key`.
      missing_rate: fraction of cells dropped at random (NaN in R, zero confidence); every
        row and column keeps at least one observed cell.
      n_regions: K, the number of latent regions (1: no regions).
      off_region_quality: a classifier's ROC-AUC off its region (K > 1), in (0, 1).
      region_bias: standard deviation of the systematic score shift off its region (K > 1).

    Returns:
      An `Ensemble` whose problem labels a stratified `labeled_fraction` of the columns.
    """
    for name, value, lo, hi in (
        ("positive_rate", positive_rate, 0.0, 1.0),
        ("quality", quality, 0.5, 1.0),
        ("labeled_fraction", labeled_fraction, 0.0, 1.0),
    ):
        if not lo < value < hi:
            raise ValueError(f"{name}: must lie in ({lo}, {hi}), got {value}")
    if not 0.0 <= error_correlation < 1.0:
        raise ValueError(f"error_correlation: must lie in [0, 1), got {error_correlation}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate: must lie in [0, 1), got {missing_rate}")
    if n_classifiers < 1 or n_instances < 4:
        raise ValueError("n_classifiers >= 1 and n_instances >= 4 are required")
    if isinstance(n_regions, bool) or not isinstance(n_regions, (int, np.integer)) or not 1 <= n_regions <= n_classifiers:
        raise ValueError(f"n_regions: must be an int in [1, n_classifiers={n_classifiers}], got {n_regions!r}")
    if not 0.0 < off_region_quality < 1.0:
        raise ValueError(f"off_region_quality: must lie in (0, 1), got {off_region_quality}")
    if not (np.isfinite(region_bias) and region_bias >= 0.0):
        raise ValueError(f"region_bias: must be finite and >= 0, got {region_bias}")
    m, n = n_classifiers, n_instances
    k_y, k_q, k_z, k_e, k_t, k_b, k_miss, k_lab = jax.random.split(key, 8)

    y = _synthetic_labels(k_y, n, positive_rate)
    offsets = np.asarray(jax.random.uniform(k_q, (m,), minval=-1.0, maxval=1.0))
    offsets = offsets - offsets.mean() if m > 1 else offsets * 0
    aucs = np.clip(quality + quality_spread * offsets, 0.51, 0.995)
    mu = np.sqrt(2.0) * _probit(aucs)

    z = np.asarray(jax.random.normal(k_z, (n,)), np.float64)
    eps = np.asarray(jax.random.normal(k_e, (m, n)), np.float64)
    noise = np.sqrt(error_correlation) * z[None, :] + np.sqrt(1 - error_correlation) * eps
    separation, shift, regions, experts = mu[:, None], 0.0, None, None
    if n_regions > 1:
        # a key of its own (not one of the 8 above), so K = 1 draws exactly as before
        k_region, k_bias = jax.random.split(jax.random.fold_in(key, 8))
        regions = np.asarray(jax.random.randint(k_region, (n,), 0, n_regions))
        experts = (np.arange(m)[:, None] % n_regions) == np.arange(n_regions)[None, :]
        beta = region_bias * np.asarray(jax.random.normal(k_bias, (m, n_regions)), np.float64)
        mu_off = np.sqrt(2.0) * _probit(np.full(m, off_region_quality))
        expert_here = experts[:, regions]  # (m, n)
        separation = np.where(expert_here, mu[:, None], mu_off[:, None])
        shift = np.where(expert_here, 0.0, beta[:, regions])
    scores = separation * y[None, :] + shift + noise
    prior_logit = np.log(positive_rate / (1 - positive_rate))
    true_logit = mu[:, None] * scores - 0.5 * mu[:, None] ** 2 + prior_logit
    t = np.exp(calibration_distortion * np.asarray(jax.random.normal(k_t, (m,)), np.float64))
    b = calibration_distortion * np.asarray(jax.random.normal(k_b, (m,)), np.float64)
    R = 1.0 / (1.0 + np.exp(-(t[:, None] * true_logit + b[:, None])))

    if missing_rate > 0:
        drop = np.array(jax.random.bernoulli(k_miss, missing_rate, (m, n)))
        # a column or row with nothing observed is invalid: give it back one cell
        empty_cols = np.flatnonzero(drop.all(axis=0))
        drop[empty_cols % m, empty_cols] = False
        empty_rows = np.flatnonzero(drop.all(axis=1))
        drop[empty_rows, empty_rows % n] = False
        R = np.where(drop, np.nan, R)

    labeled = stratified_labeled_mask(k_lab, y, labeled_fraction)
    labels = np.where(labeled, y, -1)
    problem = from_numpy(R, labels, dtype=dtype)
    names = tuple(f"clf{u:02d}" for u in range(m))
    return Ensemble(problem=problem, y_true=y, test=~labeled, names=names, regions=regions, experts=experts)


def synthetic_labeled_counts(
    key: jax.Array,
    n_instances: int = 1000,
    positive_rate: float = 0.5,
    labeled_fraction: float = 0.5,
    **_: Any,
) -> np.ndarray:
    """Labeled instances per class of `synthetic(key, ...)` with these arguments, without R.

    Draws only the labels (the same key stream as `synthetic`) and counts what
    `stratified_labeled_mask` keeps of each class, max(1, round(labeled_fraction * n_class)).
    Other arguments of `synthetic` are accepted and ignored: they do not move the counts.

    Returns:
      (2,) int64: labeled negatives, labeled positives.
    """
    if not 0.0 < positive_rate < 1.0:
        raise ValueError(f"positive_rate: must lie in (0.0, 1.0), got {positive_rate}")
    if not 0.0 < labeled_fraction < 1.0:
        raise ValueError(f"labeled_fraction: must lie in (0.0, 1.0), got {labeled_fraction}")
    if n_instances < 4:
        raise ValueError("n_instances >= 4 is required")
    y = _synthetic_labels(jax.random.split(key, 8)[0], n_instances, positive_rate)
    per_class = np.bincount(y, minlength=2)
    # Python's round (half to even), as in stratified_labeled_mask.
    return np.array([max(1, round(labeled_fraction * int(c))) for c in per_class], np.int64)


PRESETS: dict[str, dict[str, Any]] = {
    # The seed document's setting: balanced classes, base classifiers of AUC 0.85.
    "seed": dict(positive_rate=0.5, quality=0.85),
    "imbalanced_10": dict(positive_rate=0.10, quality=0.85),
    "imbalanced_5": dict(positive_rate=0.05, quality=0.85),
    "imbalanced_1": dict(positive_rate=0.01, quality=0.85, n_instances=5000),
    # Regional experts (issue 16): 3 latent regions, 4 of the 12 classifiers expert on each (AUC
    # 0.9), near chance (0.55) and systematically shifted elsewhere yet as confident: which
    # classifier to trust depends on the instance.
    "regional_experts": dict(n_classifiers=12, n_regions=3, quality=0.9, quality_spread=0.05,
                             off_region_quality=0.55, region_bias=1.0),
}


def preset(key: jax.Array, name: str, **overrides: Any) -> Ensemble:
    """A named synthetic ensemble (`PRESETS`), with any argument of `synthetic` overridable."""
    if name not in PRESETS:
        raise ValueError(f"name: unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return synthetic(key, **{**PRESETS[name], **overrides})


#: Clipping of the base probabilities before the logit of `logit_space`.
LOGIT_EPS = 1e-3


def logit_space(problem: Problem, eps: float = LOGIT_EPS) -> Problem:
    r"""`problem` with R replaced by R' = 1/2 + logit(clip(R, eps, 1 - eps)) / 4 (observed cells).

    R' is an affine image of the base classifiers' logits, scaled by the tangent of the sigmoid
    at 0 (1/4) so that R' ~ R near R = 1/2. Two consequences:

    * an aggregator affine in the reconstruction ("weighted": w^T r' + b) is a linear model on
      the base *logits*, and at full rank (d = m, small lambda) the fit approaches logistic
      stacking on logit(R) rather than on R. When the base scores are Gaussian with a shared
      covariance (the synthetic presets), a linear rule on the logits is the Bayes rule; on the
      probabilities it is not;
    * the weighted aggregator's initial point (w = 4/m, b = -2) becomes exactly the mean of
      the base logits, so every solver starts from a sensible ranking.

    Unobserved cells stay 0 with confidence 0; labels and masks are unchanged. Traceable.
    `Config.space = "logit"` applies it inside every fit and again to new columns at fold-in.
    """
    R = jnp.clip(problem.R, eps, 1.0 - eps)
    transformed = 0.5 + 0.25 * (jnp.log(R) - jnp.log1p(-R))
    return problem._replace(R=jnp.where(problem.observed, transformed, jnp.zeros_like(transformed)))


def preset_labeled_counts(key: jax.Array, name: str, **overrides: Any) -> np.ndarray:
    """`synthetic_labeled_counts` of `preset(key, name, **overrides)`: (2,) labeled per class."""
    if name not in PRESETS:
        raise ValueError(f"name: unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return synthetic_labeled_counts(key, **{**PRESETS[name], **overrides})
