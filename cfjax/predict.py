"""Predictions from fitted parameters: transductive (the learned Y) and inductive (fold-in).

**Transductive** (the normal CF-Ensemble setting): the columns to predict were in R during the
fit, with their labels masked, so each has a learned y_i; use `proba`.

**Inductive** (new columns that were not in R at fit time): no y_i exists, so it is solved from
the new column's predictions with X fixed, by the same ridge the ALS Y-step uses:
(X C_i X^T + lambda I) y_i = X C_i r_i. This sees only reconstruction, so its factors resemble a
training column at rho = 1 exactly, and less so the more the supervised term bent the training
factors (rho < 1): evaluate on a transductive split when that difference matters.
"""

from __future__ import annotations

import jax

from cfjax import aggregators, als, confidence, losses
from cfjax.structs import Config, Hparams, Params, Problem

__all__ = ["fold_in", "fold_in_proba", "logits", "proba"]


def logits(params: Params, config: Config) -> jax.Array:
    """Aggregator logits for every column of the fit, (n,)."""
    return aggregators.get(config.aggregator).logits(params.theta, losses.reconstruct(params))


def proba(params: Params, config: Config) -> jax.Array:
    """Transductive probabilities for every column of the fit, (n,)."""
    return jax.nn.sigmoid(logits(params, config))


def fold_in(params: Params, problem: Problem, hparams: Hparams, config: Config) -> jax.Array:
    """Instance factors (d, n_new) for the columns of `problem`, with X fixed.

    The confidence strategy of `config` is applied to `problem` first, as during the fit
    (label-dependent strategies see no labels on new columns unless the problem has them).
    """
    problem = confidence.apply(config.confidence, problem, hparams)
    return als.update_Y(params.X, problem.R, problem.C, hparams.lam, chunk_size=config.chunk_size)


def fold_in_proba(params: Params, problem: Problem, hparams: Hparams, config: Config) -> jax.Array:
    """Inductive probabilities for the columns of `problem` (n_new,)."""
    Y = fold_in(params, problem, hparams, config)
    return proba(params._replace(Y=Y), config)
