"""`als`: alternating least squares on the reconstruction alone (the rho = 1 behaviour).

The aggregator keeps its initial parameters (for "weighted": the logit of the mean near 1/2,
so predictions rank columns like the mean of the reconstruction). A baseline for what
reconstruction by itself does to the ensemble.
"""

from __future__ import annotations

import jax

from cfjax import als as kernel
from cfjax.solvers._common import init_params, iterate, prepare, result
from cfjax.structs import Config, FitResult, Hparams, Params, Problem


def als_step(params: Params, problem: Problem, hparams: Hparams, config: Config) -> Params:
    """One closed-form sweep, X then Y, on the problem's confidence."""
    X = kernel.update_X(params.Y, problem.R, problem.C, hparams.lam, chunk_size=config.chunk_size)
    Y = kernel.update_Y(X, problem.R, problem.C, hparams.lam, chunk_size=config.chunk_size)
    return params._replace(X=X, Y=Y)


def fit(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    problem = prepare(problem, hparams, config)
    params = init_params(key, problem, config)
    params, history, n_iter, converged = iterate(
        lambda p, t: als_step(p, problem, hparams, config), params, lambda p: p, problem, hparams, config
    )
    return result(params, history, n_iter, converged)
