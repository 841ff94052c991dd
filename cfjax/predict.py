"""Predictions from a fit: transductive (the learned Y) and inductive (fold-in of new columns).

**Transductive** (the normal CF-Ensemble setting): the columns to predict were in R during the
fit, with their labels masked, so each has a learned y_i; use `proba(result.params, config)`.

**Inductive** (new columns that were not in R at fit time): no y_i exists, so it is solved from
the new column's predictions with X fixed, by the same ridge the ALS Y-step uses,
(X C_i X^T + lambda I) y_i = X C_i r_i, on exactly the system of the fit: R mapped to the fit's
space (`Config.space`, or the space `auto` chose), the confidence strategy applied with the
statistics it learned from the training labels (`FitResult.info["confidence"]`), and the ridge
of the fit (`auto`'s chosen lambda). This sees only reconstruction, so its factors resemble a
training column at rho = 1 exactly, and less so the more the supervised term bent the training
factors (rho < 1): evaluate on a transductive split when that difference matters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from cfjax import aggregators, confidence, data, ridge
from cfjax.compilation import jit
from cfjax.structs import Config, FitResult, Hparams, Params, Problem

__all__ = ["fold_in", "fold_in_proba", "logits", "proba"]


def logits(params: Params, config: Config, problem: Problem | None = None) -> Float[Array, "*K n"]:
    """Aggregator logits for every column of the fit, (n,), or (K, n) for a K-class fit;
    `problem` gives the observed mask."""
    return aggregators.logits(params, config, None if problem is None else problem.observed)


def proba(params: Params, config: Config, problem: Problem | None = None) -> Float[Array, "*K n"]:
    """Transductive probabilities for every column of the fit: (n,) of the positive class, or
    (K, n) class probabilities (columns summing to 1) for a K-class fit."""
    z = logits(params, config, problem)
    return jax.nn.sigmoid(z) if z.ndim == 1 else jax.nn.softmax(z, axis=0)


def _fitted_system(fitted: FitResult | Params, config: Config) -> tuple[Params, dict]:
    if isinstance(fitted, FitResult):
        return fitted.params, dict(fitted.info or {})
    if isinstance(fitted, Params):
        if confidence.get(config.confidence).learns_from_labels:
            raise ValueError(
                f"fitted: confidence {config.confidence!r} learns from the training labels; pass the "
                "FitResult (its info holds what was learned), not only its params"
            )
        return fitted, {}
    raise ValueError(f"fitted: expected a cfjax.FitResult (or Params), got {type(fitted).__name__}")


def fold_in(
    fitted: FitResult | Params, problem: Problem, hparams: Hparams, config: Config
) -> Float[Array, "d n"]:
    """Instance factors (d, n_new) for the columns of `problem`, with X fixed.

    Args:
      fitted: the `FitResult` of the fit (or its `Params`, for a confidence strategy that learns
        nothing from labels).
      problem: the new columns; their labels, if any, are not read (every column is folded in
        as an unlabeled one).
      hparams: the fit's hyperparameters (lam; `auto`'s chosen lambda takes precedence).
      config: the fit's config.
    """
    params, info = _fitted_system(fitted, config)
    if "space" in info:  # auto: the space the chosen candidate factorized (0 = R, 1 = logit)
        problem = jax.tree.map(lambda a, b: jnp.where(info["space"] == 1, a, b), data.logit_space(problem), problem)
    elif config.space == "logit":
        problem = data.logit_space(problem)
    # new columns are predicted, never taught: whatever labels they carry, no strategy reads them
    unlabeled = jnp.zeros_like(problem.labeled)
    problem = problem._replace(labeled=unlabeled, validation=unlabeled)
    problem = confidence.apply(config.confidence, problem, hparams, info.get("confidence"))
    lam = info.get("lam", hparams.lam)
    return ridge.update_Y(params.X, problem.R, problem.C, lam, chunk_size=config.chunk_size)


def fold_in_proba(
    fitted: FitResult | Params, problem: Problem, hparams: Hparams, config: Config
) -> Float[Array, "*K n"]:
    """Inductive probabilities for the columns of `problem` (n_new,), or (K, n_new)."""
    params, _ = _fitted_system(fitted, config)
    Y = fold_in(fitted, problem, hparams, config)
    return proba(params._replace(Y=Y), config, problem)


# Jitted here so that eager calls compile once per shape, not once per call (the lax loops
# inside close over per-call functions; why that matters: tests/test_compiles_once.py).
fold_in = jit(fold_in, static_argnames="config")
fold_in_proba = jit(fold_in_proba, static_argnames="config")
