"""A scikit-learn estimator over CF-Ensemble: `CFEnsembleClassifier`.

The estimator sees the ensemble the scikit-learn way round, rows are instances. `y` follows
scikit-learn's semi-supervised convention: -1 (or NaN) marks an unlabeled row; the other values
are the classes, any K >= 2 labels (strings too), sorted into `classes_` as `np.unique` sorts.
K is read from y, and it fixes how X is read:

* **two classes**: `X` is R^T, an (n, m) array whose columns are the m base classifiers'
  probabilities of the positive class `classes_[1]` (NaN marks a missing prediction).
* **K >= 3 classes**: `X` is (n, m K), classifier-major: columns u K .. u K + K - 1 are base
  classifier u's K class probabilities in the order of `classes_`, so each row's block of K
  sums to 1 (a missing prediction is NaN in all K). This is what stacking the base models'
  `predict_proba` outputs side by side gives, `np.hstack([clf.predict_proba(X) for clf in
  base])`, and it is read as the (m, K, n) ensemble of `cfjax.from_numpy`
  (``X.T.reshape(m, K, n)``). `predict_proba` returns (n, K) and `transductive_proba_` is
  (n, K). Every class needs a labeled row (K comes from y alone).

Two ways to predict, as in the library (`cfjax.predict`):

* **transductive** (CF-Ensemble's own setting): pass the unlabeled rows to `fit` with y = -1;
  their probabilities are `transductive_proba_` after the fit. `transductive_cross_val_score`
  estimates this setting's skill by masking the labels of one fold at a time.
* **inductive** (`predict_proba`, `predict`, and so `GridSearchCV` / `cross_val_score`): new
  rows are folded in with the classifier factors X fixed (`cfjax.predict.fold_in_proba`).
  With the "fold_in" formulation (the default) and uniform confidence, folding in the training rows
  reproduces `transductive_proba_` exactly.

Each fit runs the jitted `cfjax.fit` once; a new (n, m) shape or a new static setting
(method, latent_dim, max_iter, ...) compiles again, new values of rho, lam or lr do not.
Compiled programs are kept on disk between processes (`cfjax.api.enable_compilation_cache`;
`CFJAX_COMPILATION_CACHE=off` switches that off).
Needs scikit-learn >= 1.6 (the tags API).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, clone
    from sklearn.model_selection import check_cv
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import (
        check_consistent_length,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as err:  # pragma: no cover
    raise ImportError(
        'cfjax.sklearn needs scikit-learn >= 1.6: pip install "cfjax[sklearn]" '
        f"(import failed: {err})"
    ) from None

from cfjax import solvers
from cfjax.api import enable_compilation_cache, prepare_inputs
from cfjax.api import fit as cf_fit
from cfjax.api import settings as cf_settings
from cfjax.compilation import jit
from cfjax.data import _R_TOL, _SUM_TOL, class_cells, from_numpy
from cfjax.predict import fold_in_proba, proba

__all__ = [
    "EXPECTED_FAILED_CHECKS",
    "SCORINGS",
    "CFEnsembleClassifier",
    "transductive_cross_val_score",
]

#: The estimator's inductive entry point: one compile per (config, padded batch shape).
_fold_in_proba_jit = jit(fold_in_proba, static_argnames="config")

#: Fewest columns of a predict_proba batch. XLA:CPU runs a loop over fewer columns than its
#: vector width on a scalar path that rounds differently (no fused multiply-adds), so a batch
#: of a few rows and the same rows inside a larger batch differed by 1.5e-7 in float32
#: (scikit-learn's check_methods_subset_invariance). Padding every batch to at least this many
#: columns keeps each row on the vector path.
_MIN_PREDICT_WIDTH = 64

_DOMAIN = (
    "X holds base classifiers' probabilities, which must lie in [0, 1]; the check feeds "
    "arbitrary reals (blobs, iris or regression features), which fit rejects with ValueError"
)

_LAYOUT = (
    "for K >= 3 classes X must be a K-class ensemble, (n, m K) with each classifier's K columns "
    "summing to 1; the check feeds uniform [0, 1] features with a 3- or 4-class y, which fit "
    "rejects with ValueError"
)

#: The checks of `sklearn.utils.estimator_checks.check_estimator` that fail by design, each
#: with its reason: pass it as `check_estimator(est, expected_failed_checks=...)`. All but one
#: pass once X is mapped into the domain: into [0, 1], and for a K-class y into K class
#: probabilities per feature (tests/test_sklearn.py runs them on such a twin of the estimator);
#: scikit-learn has no tag for "inputs in [0, 1]". The estimator is tagged multi-class, so the
#: checks feed it 3- and 4-class targets too; the last three entries fail for those only.
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    **{
        name: _DOMAIN
        for name in (
            "check_classifier_data_not_an_array",
            "check_classifiers_train",
            "check_dict_unchanged",
            "check_dont_overwrite_parameters",
            "check_estimators_dtypes",
            "check_estimators_fit_returns_self",
            "check_estimators_overwrite_params",
            "check_estimators_pickle",
            "check_f_contiguous_array_estimator",
            "check_fit2d_1feature",
            "check_fit2d_predict1d",
            "check_fit_check_is_fitted",
            "check_fit_idempotent",
            "check_methods_sample_order_invariance",
            "check_methods_subset_invariance",
            "check_n_features_in",
            "check_n_features_in_after_fitting",
            "check_non_transformer_estimators_n_iter",
            "check_pipeline_consistency",
            "check_readonly_memmap_input",
        )
    },
    "check_classifiers_classes": _DOMAIN + "; also, its labels {-1, 1} read as one class plus "
    "unlabeled rows, since y = -1 marks an unlabeled row (scikit-learn's semi-supervised "
    "convention)",
    "check_positive_only_tag_during_fit": "without the positive_only tag the check expects "
    "negative X to be accepted; with it, every X >= 0 would be promised to work. Neither fits "
    "[0, 1]",
    **{name: _LAYOUT for name in ("check_dtype_object", "check_fit_score_takes_y", "check_supervised_y_2d")},
}


def _score_function(name: str, n_classes: int = 2) -> Callable[[np.ndarray, np.ndarray], float]:
    """`name`'s score of (y_true, proba): y_true in {0, 1} and proba (n,) of class 1 for two
    classes; for K >= 3, y_true in 0..K-1 and proba (n, K) (macro one-vs-rest for the rankings)."""
    from sklearn import metrics as skm

    if n_classes > 2:
        labels = list(range(n_classes))
        table_k: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
            "average_precision": lambda y, p: skm.average_precision_score(
                np.eye(n_classes)[y], p, average="macro"),
            "roc_auc": lambda y, p: skm.roc_auc_score(y, p, multi_class="ovr", labels=labels),
            "neg_log_loss": lambda y, p: -skm.log_loss(y, p, labels=labels),
            "neg_brier_score": lambda y, p: -skm.brier_score_loss(y, p, labels=labels),
            "accuracy": lambda y, p: skm.accuracy_score(y, np.argmax(p, axis=1)),
        }
        return table_k[name]
    table: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "average_precision": skm.average_precision_score,
        "roc_auc": skm.roc_auc_score,
        "neg_log_loss": lambda y, p: -skm.log_loss(y, p, labels=[0, 1]),
        "neg_brier_score": lambda y, p: -skm.brier_score_loss(y, p),
        # p > 0.5, as `predict` (the argmax of [1 - p, p]) decides
        "accuracy": lambda y, p: skm.accuracy_score(y, (p > 0.5).astype(int)),
    }
    return table[name]


#: Names `transductive_cross_val_score` accepts for `scoring` (higher is better for every one).
SCORINGS = ("average_precision", "roc_auc", "neg_log_loss", "neg_brier_score", "accuracy")


def _rename(err: ValueError) -> ValueError:
    """`from_numpy` names R (= X.T) and labels (= y); say so in the estimator's terms."""
    msg = str(err)
    if msg.startswith("R:"):
        msg = "X (read as R = X.T: R's rows are X's columns):" + msg[2:]
    elif msg.startswith("labels:"):
        msg = "y:" + msg[len("labels:") :]
    return ValueError(msg)


def _class_ensemble(X: np.ndarray, K: int) -> np.ndarray:
    """(n, m K) classifier-major X -> the (m, K, n) ensemble, validated on the host (ValueError
    naming X: values outside [0, 1], a column count that is not a multiple of K, a classifier's
    block of K that is NaN in some classes only or does not sum to 1)."""
    n, width = X.shape
    values = X[~np.isnan(X)]
    if values.size and (values.min() < -_R_TOL or values.max() > 1 + _R_TOL):
        raise ValueError(f"X: probabilities must lie in [0, 1]; found values in [{values.min():.6g}, "
                         f"{values.max():.6g}]")
    if width % K:
        raise ValueError(f"X: has {width} columns, not a multiple of the K = {K} classes of y's labeled rows; for "
                         f"K classes X is (n, m K), columns u K .. u K + K - 1 holding classifier u's K class "
                         "probabilities (np.hstack of the base models' predict_proba)")
    blocks = X.reshape(n, width // K, K)  # [i, u, k] = X[i, u K + k]
    partial, sums = class_cells(blocks, axis=2)
    if partial.any():
        i, u = np.argwhere(partial)[0]
        raise ValueError(f"X: row {i}, columns {u * K}..{u * K + K - 1} (classifier {u}) are NaN in some classes "
                         "only; a missing prediction is NaN in all K")
    off = np.abs(sums - 1.0) > _SUM_TOL  # False where the prediction is missing (NaN)
    if off.any():
        i, u = np.argwhere(off)[0]
        raise ValueError(f"X: row {i}, columns {u * K}..{u * K + K - 1} (classifier {u}'s K = {K} class "
                         f"probabilities) sum to {sums[i, u]:.6g}, not 1 (within {_SUM_TOL:g})")
    return blocks.transpose(1, 2, 0)


def _unlabeled_mask(y: np.ndarray) -> np.ndarray:
    """Rows marked -1 or NaN (numeric y only: a string or object y has no unlabeled marker)."""
    if y.dtype.kind in "iub":
        return y == -1
    if y.dtype.kind == "f":
        return np.isnan(y) | (y == -1)
    return np.zeros(y.shape, bool)


class CFEnsembleClassifier(ClassifierMixin, BaseEstimator):
    """CF-Ensemble as a scikit-learn classifier of K >= 2 classes (transductive fit, fold-in
    prediction). X's layout depends on K (the module docstring): (n, m) for two classes,
    (n, m K) classifier-major for K >= 3.

    With no arguments it is the library's default pipeline: `CFEnsembleClassifier().fit(X, y)`
    gives the probabilities of `cfjax.fit(jax.random.key(0), cfjax.from_numpy(X.T, y))`.
    Parameters left None take the defaults of `cfjax.Config` and of the method's registry entry
    (`cfjax.api.settings`, shared with the `cfjax fit` command); a parameter is honoured or
    refused with a `ValueError`, never ignored.

    Args:
      method: None (the default pipeline, "auto") or a name in `cfjax.solvers.METHODS`.
      rho: weight of reconstruction in [0, 1]; None: the method's default ("auto" chooses it).
      lam: ridge penalty lambda on the factors; None: the method's default.
      latent_dim: d; None: min(4, m, n). An explicit value above min(m, n) is refused.
      max_iter: iterations of the method's outer loop; None: `Config`'s default (200).
      lr: learning rate of the gradient steps; None: the method's default.
      formulation: "fold_in" or "free" (read by joint); None: "fold_in".
      aggregator: a name in `cfjax.aggregators.AGGREGATORS`; None: "weighted".
      confidence: a name in `cfjax.confidence.STRATEGIES`; None: "uniform".
      seed: seed of the `jax.random.key` passed to the fit.

    Attributes (after `fit`):
      classes_: (K,) the labels; for two classes `classes_[1]` is the positive class.
      transductive_proba_: for two classes (n,), the probability of `classes_[1]`; for K >= 3
        (n, K), the probability of each of `classes_`: for every row given to `fit`, from the
        learned instance factors (unlabeled rows included: the transductive targets).
      result_: the `cfjax.FitResult`.
      config_: the `cfjax.Config` used. hparams_: the `cfjax.Hparams` used.
      n_iter_: iterations the fit ran (`result_.n_iter`).
      n_features_in_: X's columns (m, or m K for K >= 3 classes).
      n_classifiers_: m, the number of base classifiers.
    """

    def __init__(
        self,
        method: str | None = None,
        rho: float | None = None,
        lam: float | None = None,
        latent_dim: int | None = None,
        max_iter: int | None = None,
        lr: float | None = None,
        formulation: str | None = None,
        aggregator: str | None = None,
        confidence: str | None = None,
        seed: int = 0,
    ):
        self.method = method
        self.rho = rho
        self.lam = lam
        self.latent_dim = latent_dim
        self.max_iter = max_iter
        self.lr = lr
        self.formulation = formulation
        self.aggregator = aggregator
        self.confidence = confidence
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN is a missing prediction, not an error
        tags.classifier_tags.multi_class = True  # K >= 3 classes: X is (n, m K)
        return tags

    # ----------------------------------------------------------------------------------------

    def _settings(self):
        for name in ("latent_dim", "max_iter"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
                raise ValueError(f"{name}: expected a positive int or None, got {value!r}")
        return cf_settings(
            self.method, rho=self.rho, lam=self.lam, lr=self.lr,
            latent_dim=None if self.latent_dim is None else int(self.latent_dim),
            max_iter=None if self.max_iter is None else int(self.max_iter),
            formulation=self.formulation, aggregator=self.aggregator, confidence=self.confidence,
        )

    def fit(self, X: Any, y: Any) -> CFEnsembleClassifier:
        """Fits on every row of X; rows with y = -1 (or NaN) are the transductive targets.

        Args:
          X: (n, m) probabilities of the positive class for two classes, (n, m K) class
            probabilities classifier-major for K >= 3 (the module docstring); in [0, 1], NaN =
            missing; each row and each classifier needs an observed cell.
          y: (n,) K >= 2 classes, -1 / NaN for unlabeled rows; every class labeled at least once.

        Raises:
          ValueError: naming X, y or the parameter at fault.
        """
        enable_compilation_cache()
        X = validate_data(
            self, X, ensure_all_finite="allow-nan", ensure_min_samples=2, dtype=np.float64
        )
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        unlabeled = _unlabeled_mask(y)
        y_labeled = y[~unlabeled]
        try:
            check_classification_targets(y_labeled)
        except ValueError as err:  # scikit-learn's message does not say which argument
            raise ValueError(f"y: {err}") from None
        classes = np.unique(y_labeled)
        if classes.size < 2:
            raise ValueError(
                f"y: the labeled rows must hold at least two classes, got {classes.size} class(es) "
                f"{classes[:5].tolist()} (-1 / NaN mark unlabeled rows)"
            )
        labels = np.where(unlabeled, -1.0, 0.0)
        if classes.size == 2:
            labels[~unlabeled] = (y_labeled == classes[1]).astype(np.float64)
            R = X.T
        else:
            labels[~unlabeled] = np.searchsorted(classes, y_labeled)
            R = _class_ensemble(X, classes.size)
        hparams, config = self._settings()
        try:
            problem = from_numpy(R, labels, require_labels=solvers.get(config.method).uses_labels)
        except ValueError as err:
            raise _rename(err) from None
        try:
            hparams, config = prepare_inputs(problem, hparams, config)
        except ValueError as err:
            if str(err).startswith("latent_dim:"):  # say it in the estimator's terms too
                raise ValueError(f"{err} (X has {X.shape[1]} feature(s) and {X.shape[0]} rows)") from None
            raise
        result = cf_fit(jax.random.key(self.seed), problem, hparams, config)
        self.classes_ = classes
        self.result_ = result
        self.config_ = config
        self.hparams_ = hparams
        self.n_iter_ = int(result.n_iter)
        self.n_classifiers_ = problem.n_classifiers
        self.transductive_proba_ = np.asarray(proba(result.params, config), np.float64).T
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n_new, K) probabilities of `classes_` for new rows, by fold-in with X fixed."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        n = X.shape[0]
        # Fold-in solves each column alone, so padding columns change no other prediction.
        # At least one fully observed pad keeps from_numpy's checks satisfied for a single row
        # or a classifier absent from this batch; padding up to a power of two bounds the
        # number of compiled batch shapes (GridSearchCV's folds differ in size by one).
        width = max(_MIN_PREDICT_WIDTH, 1 << n.bit_length())
        K = self.classes_.size
        if K == 2:
            R = np.concatenate([X.T, np.full((X.shape[1], width - n), 0.5)], axis=1)
        else:  # (m, K, n), padded with columns of uniform class probabilities
            R = _class_ensemble(X, K)
            R = np.concatenate([R, np.full(R.shape[:2] + (width - n,), 1.0 / K)], axis=2)
        try:
            problem = from_numpy(R, np.full(width, -1.0), require_labels=False)
        except ValueError as err:
            raise _rename(err) from None
        p = _fold_in_proba_jit(self.result_, problem, self.hparams_, self.config_)
        p = np.asarray(p, np.float64)[..., :n]
        return np.stack([1.0 - p, p], axis=1) if K == 2 else p.T

    def predict(self, X: Any) -> np.ndarray:
        """The most probable of `classes_` for each row: the argmax of `predict_proba`, so a tie
        goes to the earlier class (for two classes: `classes_[1]` where the fold-in probability
        exceeds 0.5)."""
        p = self.predict_proba(X)
        return self.classes_[np.argmax(p, axis=1)]


def transductive_cross_val_score(
    estimator: CFEnsembleClassifier,
    X: Any,
    y: Any,
    cv: Any = 5,
    scoring: str | Callable[[np.ndarray, np.ndarray], float] = "average_precision",
) -> np.ndarray:
    """Scores the transductive setting: each fold's labels hidden, all rows fitted.

    For each split of the labeled rows (rows with y = -1 / NaN are never scored and stay
    unlabeled), the test fold's labels become -1, a clone of `estimator` is fitted on all rows,
    and `scoring` compares the fold's true labels with `transductive_proba_` on the fold. Every
    fit has the same shapes, so they share one compiled program.

    Args:
      estimator: a `CFEnsembleClassifier` (cloned, never fitted itself).
      X: (n, m) as in `CFEnsembleClassifier.fit`. y: (n,) with -1 / NaN for unlabeled rows.
      cv: an int (stratified K folds), a splitter or an iterable, as
        `sklearn.model_selection.check_cv`; applied to the labeled rows only.
      scoring: a name in `SCORINGS` or a callable (y_true, proba) -> float, higher is better:
        y_true in {0, 1} and proba (n_fold,) of the positive class for two classes; for K >= 3,
        y_true in 0..K-1 (the index in `classes_`) and proba (n_fold, K). For K >= 3 the
        rankings are macro one-vs-rest and brier the multi-class Brier score.

    Returns:
      (n_splits,) scores.
    """
    if isinstance(scoring, str):
        if scoring not in SCORINGS:
            raise ValueError(
                f"scoring: unknown {scoring!r}; choose from {list(SCORINGS)} or pass a callable"
            )
    elif not callable(scoring):
        raise ValueError(f"scoring: expected a name or a callable, got {scoring!r}")
    y = column_or_1d(np.asarray(y), warn=True)
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    X = np.asarray(X)
    check_consistent_length(X, y)
    unlabeled = _unlabeled_mask(y)
    rows = np.flatnonzero(~unlabeled)
    classes = np.unique(y[rows])
    if classes.size < 2:
        raise ValueError(
            f"y: labeled rows must hold at least two classes, got {classes.tolist()[:5]}"
        )
    score_fn = _score_function(scoring, classes.size) if isinstance(scoring, str) else scoring
    splitter = check_cv(cv, y[rows], classifier=True)
    if y.dtype.kind not in "iuf":
        raise ValueError(f"y: must be numeric (-1 marks a hidden label), got dtype {y.dtype}")
    scores = []
    for _, test in splitter.split(np.zeros((rows.size, 1)), y[rows]):
        fold = rows[test]
        y_masked = y.copy()
        y_masked[fold] = -1
        kept = np.unique(y_masked[~_unlabeled_mask(y_masked)])
        if classes.size > 2 and kept.size != classes.size:  # fit would read fewer classes (another X layout)
            raise ValueError(f"cv: a fold holds every labeled row of a class (the other rows have classes "
                             f"{kept.tolist()} of {classes.tolist()}); use fewer folds")
        model = clone(estimator).fit(X, y_masked)
        if classes.size == 2:
            truth = (y[fold] == model.classes_[1]).astype(int)
        else:
            truth = np.searchsorted(model.classes_, y[fold])
        scores.append(float(score_fn(truth, model.transductive_proba_[fold])))
    return np.asarray(scores)
