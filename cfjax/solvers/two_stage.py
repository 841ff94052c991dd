"""`two_stage`: the seed's two-stage training.

Stage 1: ALS on the reconstruction alone (rho = 1) for up to `max_iter` sweeps (the history).
Stage 2: the aggregator fitted exactly on the fixed reconstruction X^T Y: for "weighted", the
L2 logistic regression of L_sup (omega-weighted cross-entropy + agg_l2 ||w||^2, focal gamma
ignored) by guarded Newton steps; "mean" has nothing to fit. Equivalent to stacking on the
reconstructed predictions: the factors never see the labels.
"""

from __future__ import annotations

import jax

from cfjax import losses
from cfjax.aggregators import WeightedTheta
from cfjax.logistic import fit_logistic
from cfjax.solvers import als
from cfjax.solvers._common import evaluate, prepare
from cfjax.structs import Config, FitResult, History, Hparams, Problem


def fit(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    stage1 = als.fit(key, problem, hparams, config)
    params = stage1.params
    if config.aggregator == "weighted":
        prepared = prepare(problem, hparams, config)
        omega = losses.supervised_weights(prepared, config)
        w, b = fit_logistic(
            losses.reconstruct(params), prepared.labels, omega, hparams.agg_l2, params.theta.w, params.theta.b
        )
        params = params._replace(theta=WeightedTheta(w=w, b=b))
        parts, score = evaluate(params, prepared, hparams, config)
        last = History(total=parts.total, recon=parts.recon, sup=parts.sup, valid_pr_auc=score)
        # the final entry of the history shows the fitted aggregator
        history = jax.tree.map(lambda h, v: h.at[-1].set(v), stage1.history, last)
        return stage1._replace(params=params, history=history)
    return stage1
