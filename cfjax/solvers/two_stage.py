"""`two_stage`: the seed's two-stage training.

Stage 1: ALS on the reconstruction alone (rho = 1) for up to `max_iter` sweeps (the history).
Stage 2: the aggregator fitted on the fixed reconstruction X^T Y, minimising L_sup
(omega-weighted cross-entropy + agg_l2 * penalty, focal gamma ignored) by the aggregator's own
`exact_fit` (for "weighted": L2 logistic regression by guarded Newton steps; "mean" has nothing
to fit) or, for an aggregator without one, L-BFGS (`cfjax.aggregators.fit_on_fixed_inputs`).
Equivalent to stacking on the reconstructed predictions: the factors never see the labels.
The last history entry shows the fitted aggregator.
"""

from __future__ import annotations

from cfjax import aggregators, losses
from cfjax.solvers.als import als_step, init
from cfjax.solvers.base import Method, register
from cfjax.structs import Config, Hparams, Params, Problem

__all__ = ["METHOD", "fit_aggregator"]


def fit_aggregator(params: Params, problem: Problem, hparams: Hparams, config: Config) -> Params:
    """Stage 2: theta fitted on the fixed reconstruction of `params`."""
    agg = aggregators.get(config.aggregator)
    omega = losses.supervised_weights(problem, config)
    fixed = aggregators.inputs(params, problem.observed)
    theta = aggregators.fit_on_fixed_inputs(agg, params.theta, fixed, problem.labels, omega, hparams)
    return params._replace(theta=theta)


METHOD = register(
    Method(
        name="two_stage",
        init=init,
        step=als_step,
        finalize=fit_aggregator,
        description="ALS to convergence, then the aggregator fitted exactly (Newton)",
        multiclass=True,
    )
)
