"""The data types every other module speaks: immutable pytrees and one frozen config.

Three kinds of object, kept apart on purpose (see STYLE.md):

* **Data** (`Problem`, `Params`, `FitResult`, `History`, `LossParts`): NamedTuple pytrees of arrays.
  They flow through `jit`, `vmap` and `lax.scan` unchanged and are updated with `_replace`.
* **Traced knobs** (`Hparams`): scalars such as rho and lambda. Changing their values never
  recompiles, so a sweep over them is one compiled program. Build them with `Hparams.create`,
  which fixes every dtype so that a Python float and an array do not compile twice.
* **Static knobs** (`Config`): a frozen, hashable dataclass for whatever changes shapes or control
  flow (latent dimension, iteration count, solver, aggregator). Passed as a static argument.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = [
    "Config",
    "FitResult",
    "History",
    "Hparams",
    "LossParts",
    "Params",
    "Problem",
]


class Problem(NamedTuple):
    """One ensemble to factorize: m base classifiers scored n instances.

    Attributes:
      R: (m, n) predicted probabilities. Unobserved cells hold 0 (never NaN) and have C = 0.
      C: (m, n) base confidence, >= 0; exactly 0 on unobserved cells and on padding.
      observed: (m, n) bool, True where the base classifier scored the instance.
      labels: (n,) float in {0, 1}; the value is meaningless (0) where neither mask is set.
      labeled: (n,) bool, the columns whose labels the supervised loss may use.
      validation: (n,) bool, labeled columns held out from training and used only for
        monitoring, early stopping and model selection. Disjoint from `labeled`.

    Columns in neither mask are the transductive targets: their labels are not in the problem.

    **K classes** (K >= 3, `cfjax.from_numpy` of an (m, K, n) ensemble): the classes are rows.
    R, C and observed are (m K, n), row u K + k holding classifier u's probability of class k,
    so every factorization kernel is unchanged and X is (d, m K); labels are one-hot (K, n)
    (all zero where neither mask is set). `n_classes` tells the two layouts apart from the
    shapes alone (labels have as many axes as R), so K is static wherever a shape is.
    """

    R: Array
    C: Array
    observed: Array
    labels: Array
    labeled: Array
    validation: Array

    @property
    def n_classes(self) -> int:
        """K: 2 for the binary layout, labels.shape[-2] for the K-class one."""
        return self.labels.shape[-2] if self.labels.ndim == self.R.ndim else 2

    def class_indicators(self) -> Array:
        """(K, n) one-hot class membership of every column: [1 - y; y] for binary labels, the
        labels themselves for K classes (zero columns where there is no label)."""
        if self.n_classes == 2:
            return jnp.stack([1.0 - self.labels, self.labels])
        return self.labels

    def row_labels(self) -> Array:
        """The label each row of R predicts, broadcastable to R: y (1, n) for binary; for K
        classes the one-hot entry of the row's class tiled over the classifiers ((m K, n): row
        u K + k is a one-vs-rest prediction of class k). What label-reading confidence compares
        R with."""
        if self.n_classes == 2:
            return self.labels[None, :]
        return jnp.tile(self.labels, (self.R.shape[-2] // self.n_classes, 1))

    @property
    def n_classifiers(self) -> int:
        """m, the base classifiers (R's rows, or its rows over K for K classes)."""
        rows = self.R.shape[-2]
        return rows if self.n_classes == 2 else rows // self.n_classes

    @property
    def n_instances(self) -> int:
        return self.R.shape[-1]


class Params(NamedTuple):
    """What a solver learns.

    Attributes:
      X: (d, m) classifier factors.
      Y: (d, n) instance factors.
      theta: aggregator parameters, a pytree whose structure the aggregator defines.
    """

    X: Array
    Y: Array
    theta: Any


class Hparams(NamedTuple):
    """Traced hyperparameters: every field is a scalar array, vmappable and differentiable.

    Attributes:
      rho: weight of reconstruction in L = rho * L_recon + (1 - rho) * L_sup, in [0, 1].
      lam: ridge penalty lambda on ||X||^2 + ||Y||^2 (inside the normalised L_recon).
      alpha: label-aware confidence strength (confidence strategy "label_aware").
      lr: learning rate of gradient steps (joint, and the aggregator steps of alternating,
        label_aware_als and damped).
      focal_gamma: focal exponent of the supervised loss; 0 is plain cross-entropy.
      agg_l2: L2 penalty on the aggregator weights (not the bias), added to L_sup.
      agg_prior: scale tau of the "prior" aggregator's prior: the variance (precision 1 / tau) of
        its weights' departure from the prior direction, on the summed log-likelihood of the
        labeled columns (so the prior counts for less as labels are added).
      agg_prior_sml: weight in [0, 1] of the unsupervised direction (the spectral meta-learner's
        reliabilities, from every column) in the "prior" aggregator's prior direction; the rest
        is the diagonal discriminant of the labeled columns.
      certainty_floor: floor of the "certainty" confidence strategy.
    """

    rho: Array
    lam: Array
    alpha: Array
    lr: Array
    focal_gamma: Array
    agg_l2: Array
    agg_prior: Array
    agg_prior_sml: Array
    certainty_floor: Array

    @classmethod
    def create(
        cls,
        rho: float = 0.5,
        lam: float = 0.01,
        alpha: float = 1.0,
        lr: float = 0.01,
        focal_gamma: float = 0.0,
        agg_l2: float = 1e-3,
        agg_prior: float = 0.3,
        agg_prior_sml: float = 0.5,
        certainty_floor: float = 0.05,
        dtype: Any = None,
    ) -> Hparams:
        """Hyperparameters with fixed dtypes (float32, or float64 under `jax_enable_x64`).

        Every argument may also be an array of any shape: a leading axis makes a grid
        (see `cfjax.sweep.grid`).
        """
        dtype = dtype or jnp.result_type(float)
        values = dict(
            rho=rho, lam=lam, alpha=alpha, lr=lr, focal_gamma=focal_gamma, agg_l2=agg_l2, agg_prior=agg_prior,
            agg_prior_sml=agg_prior_sml,
            certainty_floor=certainty_floor,
        )
        return cls(**{k: jnp.asarray(v, dtype=dtype) for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class Config:
    """Static configuration: whatever changes shapes or control flow. Hashable.

    Attributes:
      method: the training method, a name in `cfjax.solvers.METHODS` (the registry is the only
        list of methods; each validates the options it reads). The default, "auto", is the
        default pipeline: a cross-validated choice among candidates (`cfjax.solvers.auto`).
      formulation: "fold_in" (default: Y is not learned but solved from R given X by the ALS
        ridge step, so every column, labeled or not, gets its factors the same way and labels
        reach the factors only through X and theta) or "free" (Y is a free parameter per
        instance, the seed's model, which bends the labeled columns' factors toward their
        labels and leaves the unlabeled ones behind). Read by `joint`; the ALS-type methods
        compute Y by the ridge step anyway.
      latent_dim: d, the number of latent factors. None (default): min(4, m, n), resolved from
        the problem's shape in one place (`cfjax.validation.resolve_config`), so the default
        works for every problem; an explicit value is never clipped: above min(m, n) it is
        refused. `auto` uses it as the rank of its low-rank candidates.
      max_iter: iterations of the outer loop (ALS sweeps, MM sweeps, or optimizer steps).
      aggregator: name in `cfjax.aggregators.AGGREGATORS` ("weighted" or "mean").
      confidence: name in `cfjax.confidence.STRATEGIES`.
      init: "svd" (truncated SVD of the confidence-weighted R, the default: deterministic
        and already near an ALS fixed point) or "random" (keyed, N(0, init_scale^2)).
      init_scale: standard deviation of the random initialisation.
      class_weight: inverse class-frequency weights omega in L_sup.
      optimizer: "adam", "adamw" or "sgd" (joint).
      patience: joint's early stopping and plateau patience, in steps; 0 disables both.
      plateau_factor: learning-rate factor of the reduce-on-plateau schedule (joint).
      tol: relative change of the total loss strictly below which a loop stops and reports
        convergence; >= 0. tol = 0 never stops early: every loop runs max_iter iterations.
      damped_every: the damped method updates the aggregator every k-th iteration.
      mm_curvature: MM-ALS's curvature of the cross-entropy bound: "exact" (default;
        sigma(1-sigma), Newton-like, guarded by a fall-back to the sharp bound so it never
        increases the loss: the fewest sweeps and the least time, docs/mm_als.md), "bound" (1/4)
        or "sharp" (Jaakkola-Jordan, still a bound: monotone, ~2.5x fewer sweeps than "bound").
      chunk_size: instances per chunk of the ALS Grams and solves (bounds memory); 0 = automatic
        (`cfjax.ridge.default_chunk_size`: ~2 MB of packed Grams per chunk), >= n = one chunk.
      space: what is factorized: "probability" (R itself) or "logit" (`cfjax.data.logit_space`,
        an affine image of the base classifiers' logits, so a logit-linear aggregator becomes a
        linear model on the base logits). New columns are mapped the same way at fold-in.
      options: method-specific static settings as a tuple of (name, value) pairs (hashable),
        read with `option(name, default)` and validated by the method that reads them: a new
        method's knobs need no new field here.
    """

    method: str = "auto"
    formulation: str = "fold_in"
    latent_dim: int | None = None
    max_iter: int = 200
    aggregator: str = "weighted"
    confidence: str = "uniform"
    init: str = "svd"
    init_scale: float = 0.1
    class_weight: bool = True
    optimizer: str = "adam"
    patience: int = 50
    plateau_factor: float = 0.5
    tol: float = 1e-6
    damped_every: int = 10
    mm_curvature: str = "exact"
    chunk_size: int = 0
    space: str = "probability"
    options: tuple = ()

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def option(self, name: str, default: Any = None) -> Any:
        """The value of method-specific option `name` in `options`, else `default`."""
        for key, value in self.options:
            if key == name:
                return value
        return default


class LossParts(NamedTuple):
    """The combined objective and its parts (scalars).

    `total = rho * recon + (1 - rho) * sup`. `recon` and `sup` are the normalised losses;
    `recon_sum` (the weighted squared error plus penalty, not divided by sum C) and `sup_sum`
    (the weighted cross-entropy summed, not averaged) let a user reproduce the reference
    implementation's un-normalised scaling.
    """

    total: Array
    recon: Array
    sup: Array
    recon_sum: Array
    sup_sum: Array


class History(NamedTuple):
    """Per-iteration trace of a fit, each field of shape (max_iter,).

    Iterations after the loop stopped (early stopping, convergence) repeat the last value.
    `valid_pr_auc` is the PR-AUC on the problem's validation columns (for K classes the macro
    one-vs-rest PR-AUC of the class probabilities); NaN when the problem has no validation
    columns of both classes (undefined, as scikit-learn would refuse).
    """

    total: Array
    recon: Array
    sup: Array
    valid_pr_auc: Array


class FitResult(NamedTuple):
    """What every fit returns: `cfjax.fit(key, problem, hparams, config) -> FitResult`.

    Attributes:
      params: the fitted `Params`.
      history: the per-iteration `History`.
      n_iter: iterations run (scalar int); converged: whether the tolerance stopped the loop.
      state: the driver's state after the last iteration (`cfjax.solvers.driver.DriverState`):
        pass it back as `cfjax.fit(..., init=result.state)` to continue the fit exactly where
        it stopped. None where a fit cannot be continued (sweeps drop it unless asked; `auto`).
      info: a dict of arrays describing the fit: "confidence" holds what the confidence
        strategy learned from the training labels (used again at fold-in); `auto` adds what it
        chose and the cross-validation scores. Nested dicts of arrays only (saved by `cfjax.io`).
    """

    params: Params
    history: History
    n_iter: Array
    converged: Array
    state: Any = None
    info: Any = None
