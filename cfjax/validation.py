"""Host-side checks of hyperparameters and configurations, with errors that name the argument.

Nothing here runs inside `jit`: the front doors (`cfjax.fit`, `cfjax.sweep.run`, the CLI, the
scikit-learn estimator) call these before tracing.
"""

from __future__ import annotations

import warnings

import numpy as np

from cfjax import aggregators, confidence
from cfjax.structs import Config, Hparams, Problem

__all__ = [
    "RhoZeroWarning",
    "check_config",
    "check_fit_inputs",
    "check_hparams",
    "check_multiclass",
    "check_scalar_hparams",
    "default_latent_dim",
    "resolve_config",
]


class RhoZeroWarning(UserWarning):
    """rho = 0: the unlabeled columns get no signal from reconstruction."""


_RANGES = {
    # name: (low, high, low inclusive, high inclusive)
    "rho": (0.0, 1.0, True, True),
    "lam": (0.0, np.inf, True, False),
    "alpha": (0.0, np.inf, True, False),
    "lr": (0.0, np.inf, False, False),
    "focal_gamma": (0.0, np.inf, True, False),
    "agg_l2": (0.0, np.inf, True, False),
    "agg_prior": (0.0, np.inf, False, False),
    "agg_prior_sml": (0.0, 1.0, True, True),
    "certainty_floor": (0.0, np.inf, True, False),
}


def check_hparams(hparams: Hparams) -> None:
    """Every field finite and in range (arrays: every entry). Warns at rho = 0."""
    if not isinstance(hparams, Hparams):
        raise ValueError(f"hparams: expected cfjax.Hparams (use Hparams.create), got {type(hparams).__name__}")
    for name, (lo, hi, lo_in, hi_in) in _RANGES.items():
        value = np.asarray(getattr(hparams, name), dtype=np.float64)
        if not np.isfinite(value).all():
            raise ValueError(f"{name}: must be finite, got {value}")
        below = value < lo if lo_in else value <= lo
        above = value > hi if hi_in else value >= hi
        if below.any() or above.any():
            interval = f"{'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"
            raise ValueError(f"{name}: must lie in {interval}, got {value.ravel()[:5].tolist()}")
    if (np.asarray(hparams.rho) == 0).any():
        warnings.warn(
            "rho = 0: the unlabeled columns receive no signal from reconstruction beyond their "
            "initialisation; use a small positive rho instead",
            RhoZeroWarning,
            stacklevel=3,
        )


def default_latent_dim(m: int, n: int, n_classes: int = 2) -> int:
    """The latent dimension of `Config(latent_dim=None)`: min(4, m, n) for m rows of R; for K
    classes min(max(4, K), m K, n), since a rank below K cannot keep K classes apart (on digits
    at 10 % labeled, stacking on the reconstruction fell from 0.92 accuracy to 0.77 at d = 4)."""
    return max(1, min(max(4, n_classes), m, n))


def resolve_config(config: Config, problem: Problem) -> Config:
    """`config` with its problem-dependent defaults filled in (latent_dim None -> min(4, m, n)).

    The one place a default adapts to the problem's shape; an explicit value is never changed
    (`check_config` refuses it when it does not fit).
    """
    if not isinstance(config, Config):
        raise ValueError(f"config: expected cfjax.Config, got {type(config).__name__}")
    if config.latent_dim is None:
        m, n = np.shape(problem.R)[-2:]
        return config.replace(latent_dim=default_latent_dim(m, n, problem.n_classes))
    return config


def check_config(config: Config, problem: Problem | None = None) -> None:
    """Names exist, sizes are positive ints, tolerances finite and in range, latent_dim fits, and
    the method's own options are valid (`Method.check_config`)."""
    from cfjax import solvers  # solvers import this module's peers; avoid an import cycle

    if not isinstance(config, Config):
        raise ValueError(f"config: expected cfjax.Config, got {type(config).__name__}")
    method = solvers.get(config.method)
    aggregators.get(config.aggregator)
    confidence.get(config.confidence)
    names = ("max_iter", "patience", "damped_every", "chunk_size")
    if config.latent_dim is not None:
        names = ("latent_dim", *names)
    for name in names:
        value = getattr(config, name)
        # a float here would reach a shape or a loop bound deep inside tracing; bool is an int
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name}: expected an int, got {value!r}")
    for name in ("tol", "init_scale", "plateau_factor"):
        value = getattr(config, name)
        if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
    if config.latent_dim is not None and config.latent_dim <= 0:
        raise ValueError(f"latent_dim: must be positive, got {config.latent_dim}")
    if config.max_iter <= 0:
        raise ValueError(f"max_iter: must be positive, got {config.max_iter}")
    if config.formulation not in ("free", "fold_in"):
        raise ValueError(f"formulation: must be 'free' or 'fold_in', got {config.formulation!r}")
    if config.space not in ("probability", "logit"):
        raise ValueError(f"space: must be 'probability' or 'logit', got {config.space!r}")
    if config.init not in ("svd", "random"):
        raise ValueError(f"init: must be 'svd' or 'random', got {config.init!r}")
    if config.chunk_size < 0:
        raise ValueError(f"chunk_size: must be >= 0 (0 = automatic), got {config.chunk_size}")
    # tol = 0 is the way to switch the convergence stop off (a change is never below 0);
    # a negative or NaN tol would do the same silently, so it is refused
    if not (np.isfinite(config.tol) and config.tol >= 0):
        raise ValueError(f"tol: must be finite and >= 0 (0 never stops early), got {config.tol}")
    if not (np.isfinite(config.init_scale) and config.init_scale > 0):
        raise ValueError(f"init_scale: must be finite and > 0, got {config.init_scale}")
    if not isinstance(config.options, tuple) or not all(
        isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], str) for o in config.options
    ):
        raise ValueError(f"options: expected a tuple of (name, value) pairs, got {config.options!r}")
    try:
        hash(config)
    except TypeError:
        raise ValueError(f"options: every value must be hashable (Config is a static argument), got {config.options!r}") from None
    # Config's own fields are checked whichever method reads them (a typo is an error even
    # where it would be ignored); `options` and method-specific constraints are the method's.
    if config.optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer: must be adam, adamw or sgd, got {config.optimizer!r}")
    if config.mm_curvature not in ("bound", "sharp", "exact"):
        raise ValueError(f"mm_curvature: must be 'bound', 'sharp' or 'exact', got {config.mm_curvature!r}")
    if config.damped_every < 1:
        raise ValueError(f"damped_every: must be >= 1, got {config.damped_every}")
    if config.patience < 0:
        raise ValueError(f"patience: must be >= 0 (0 disables early stopping), got {config.patience}")
    if not 0.0 < config.plateau_factor <= 1.0:  # also refuses NaN
        raise ValueError(f"plateau_factor: must lie in (0, 1], got {config.plateau_factor}")
    if config.option("batch_size") is not None and not method.batches:
        raise ValueError(
            f"options batch_size: method {config.method!r} needs the full batch (its step updates "
            "per-column factors or solves X from every column at once); minibatch training is "
            "method='joint' with formulation='fold_in'"
        )
    if method.check_config is not None:
        method.check_config(config)
    if problem is not None and config.latent_dim is not None:
        m, n = np.shape(problem.R)[-2:]
        if config.latent_dim > min(m, n):
            raise ValueError(f"latent_dim: must be <= min(m, n) = {min(m, n)}, got {config.latent_dim}")
    if problem is not None and problem.n_classes > 2:
        check_multiclass(config, problem.n_classes)


def check_multiclass(config: Config, n_classes: int) -> None:
    """Refuses what a K-class problem (K >= 3) cannot be fitted with: a method, an aggregator or
    a confidence without K-class support, or MM-ALS's binary "sharp" bound."""
    from cfjax import solvers

    methods = [name for name, m in solvers.METHODS.items() if m.multiclass]
    if not solvers.get(config.method).multiclass:
        raise ValueError(f"method: {config.method!r} is binary only; a {n_classes}-class problem takes one of "
                         f"{methods}")
    if not aggregators.get(config.aggregator).multiclass:
        raise ValueError(f"aggregator: {config.aggregator!r} combines two classes only; a {n_classes}-class "
                         f"problem takes one of {aggregators.multiclass_names()}")
    if not confidence.get(config.confidence).multiclass:
        names = sorted(name for name, s in confidence.STRATEGIES.items() if s.multiclass)
        raise ValueError(f"confidence: {config.confidence!r} is binary only; a {n_classes}-class problem takes "
                         f"one of {names}")
    if config.method == "mm_als" and config.mm_curvature == "sharp":
        raise ValueError(f"mm_curvature: 'sharp' (Jaakkola-Jordan's bound) majorizes the binary cross-entropy "
                         f"only; a {n_classes}-class problem takes 'exact' or 'bound' (Bohning's)")


def check_scalar_hparams(hparams: Hparams) -> None:
    """`check_hparams`, and every field a scalar: a grid belongs to `cfjax.sweep.run`."""
    check_hparams(hparams)
    shapes = {name: np.shape(getattr(hparams, name)) for name in Hparams._fields}
    gridded = {name: shape for name, shape in shapes.items() if shape != ()}
    if gridded:
        raise ValueError(
            f"hparams: a single fit takes scalar fields, got shapes {gridded}; for a grid of "
            "hyperparameters use cfjax.sweep.run (one compiled call for the whole grid)"
        )


def check_fit_inputs(problem: Problem, hparams: Hparams, config: Config, *, scalar: bool = True) -> None:
    """Everything a fit needs before tracing: the problem, the (resolved) config, the
    hyperparameters (scalars unless `scalar=False`, as a sweep's grid) and, for supervised
    methods, labels of both classes."""
    from cfjax import data, solvers

    if not isinstance(problem, Problem):
        raise ValueError(f"problem: expected cfjax.Problem (use cfjax.from_numpy), got {type(problem).__name__}")
    data.validate_problem(problem)
    check_config(config, problem)
    (check_scalar_hparams if scalar else check_hparams)(hparams)
    if solvers.get(config.method).uses_labels:
        data.require_labels(problem)
