"""Host-side checks of hyperparameters and configurations, with errors that name the argument.

Nothing here runs inside `jit`: the front doors (`cfjax.fit`, `cfjax.sweep.run`, the CLI, the
scikit-learn estimator) call these before tracing.
"""

from __future__ import annotations

import warnings

import numpy as np

from cfjax import aggregators, confidence
from cfjax.structs import Config, Hparams, Problem

__all__ = ["RhoZeroWarning", "check_config", "check_fit_inputs", "check_hparams"]


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


def check_config(config: Config, problem: Problem | None = None) -> None:
    """Names exist, sizes are positive ints, tolerances finite and in range, latent_dim fits."""
    from cfjax import solvers  # solvers import this module's peers; avoid an import cycle

    if not isinstance(config, Config):
        raise ValueError(f"config: expected cfjax.Config, got {type(config).__name__}")
    solvers.get(config.method)
    aggregators.get(config.aggregator)
    confidence.get(config.confidence)
    for name in ("latent_dim", "max_iter", "patience", "damped_every", "chunk_size"):
        value = getattr(config, name)
        # a float here would reach a shape or a loop bound deep inside tracing; bool is an int
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name}: expected an int, got {value!r}")
    for name in ("tol", "init_scale", "plateau_factor"):
        value = getattr(config, name)
        if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
    if config.latent_dim <= 0:
        raise ValueError(f"latent_dim: must be positive, got {config.latent_dim}")
    if config.max_iter <= 0:
        raise ValueError(f"max_iter: must be positive, got {config.max_iter}")
    if config.formulation not in ("free", "fold_in"):
        raise ValueError(f"formulation: must be 'free' or 'fold_in', got {config.formulation!r}")
    if config.init not in ("svd", "random"):
        raise ValueError(f"init: must be 'svd' or 'random', got {config.init!r}")
    if config.optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer: must be adam, adamw or sgd, got {config.optimizer!r}")
    if config.mm_curvature not in ("bound", "sharp", "exact"):
        raise ValueError(f"mm_curvature: must be 'bound', 'sharp' or 'exact', got {config.mm_curvature!r}")
    if config.damped_every < 1:
        raise ValueError(f"damped_every: must be >= 1, got {config.damped_every}")
    if config.chunk_size < 0:
        raise ValueError(f"chunk_size: must be >= 0 (0 = automatic), got {config.chunk_size}")
    if config.patience < 0:
        raise ValueError(f"patience: must be >= 0 (0 disables early stopping), got {config.patience}")
    if not 0.0 < config.plateau_factor <= 1.0:  # also refuses NaN
        raise ValueError(f"plateau_factor: must lie in (0, 1], got {config.plateau_factor}")
    # tol = 0 is the way to switch the convergence stop off (a change is never below 0);
    # a negative or NaN tol would do the same silently, so it is refused
    if not (np.isfinite(config.tol) and config.tol >= 0):
        raise ValueError(f"tol: must be finite and >= 0 (0 never stops early), got {config.tol}")
    if not (np.isfinite(config.init_scale) and config.init_scale > 0):
        raise ValueError(f"init_scale: must be finite and > 0, got {config.init_scale}")
    if config.method == "mm_als" and not aggregators.get(config.aggregator).logit_linear:
        raise ValueError(
            f"aggregator: MM-ALS majorizes cross-entropy only for a logit-linear aggregator; "
            f"{config.aggregator!r} is not (use 'weighted')"
        )
    if problem is not None:
        m, n = problem.R.shape[-2:]
        if config.latent_dim > min(m, n):
            raise ValueError(f"latent_dim: must be <= min(m, n) = {min(m, n)}, got {config.latent_dim}")


def check_fit_inputs(problem: Problem, hparams: Hparams, config: Config) -> None:
    """Everything `cfjax.fit` needs before tracing."""
    from cfjax import data, solvers

    if not isinstance(problem, Problem):
        raise ValueError(f"problem: expected cfjax.Problem (use cfjax.from_numpy), got {type(problem).__name__}")
    data.validate_problem(problem)
    check_config(config, problem)
    check_hparams(hparams)
    if solvers.get(config.method).uses_labels:
        data.require_labels(problem)
