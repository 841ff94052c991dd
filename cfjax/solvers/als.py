"""`als`: alternating least squares on the reconstruction alone (the rho = 1 behaviour).

The aggregator keeps its initial parameters (for "weighted": the logit of the mean near 1/2,
so predictions rank columns like the mean of the reconstruction). A baseline for what
reconstruction by itself does to the ensemble.
"""

from __future__ import annotations

import jax

from cfjax import ridge
from cfjax.solvers.base import Method, initial_params, register
from cfjax.structs import Config, Hparams, Params, Problem

__all__ = ["METHOD", "als_step", "init"]


def init(key: jax.Array, problem: Problem, hparams: Hparams, config: Config, params: Params | None = None) -> Params:
    """The default start (`initial_params`) or the given params: the state is the params."""
    return initial_params(key, problem, hparams, config) if params is None else params


def als_step(params: Params, problem: Problem, hparams: Hparams, config: Config) -> Params:
    """One closed-form sweep, X then Y, on the problem's confidence."""
    X = ridge.update_X(params.Y, problem.R, problem.C, hparams.lam, chunk_size=config.chunk_size)
    Y = ridge.update_Y(X, problem.R, problem.C, hparams.lam, chunk_size=config.chunk_size)
    return params._replace(X=X, Y=Y)


METHOD = register(
    Method(
        name="als",
        init=init,
        step=als_step,
        description="ALS on the reconstruction alone (rho = 1); aggregator left at its init",
        uses_labels=False,
        multiclass=True,
    )
)
