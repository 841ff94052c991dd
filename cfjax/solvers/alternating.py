"""`alternating`: the seed's original procedure, kept on purpose as the documented failure mode.

Each iteration: a closed-form ALS sweep for X and Y on the reconstruction loss alone, then one
plain gradient step (learning rate `lr`) on theta for the supervised loss alone. The two steps
minimise two different objectives, so the combined loss L is not guaranteed to decrease and the
factors never see the labels (docs/background.md). `label_aware_als` and `damped`
are variations of this loop and share it (`alternate`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from cfjax.solvers._common import aggregator_gradient_step, init_params, iterate, prepare, result
from cfjax.solvers.als import als_step
from cfjax.structs import Config, FitResult, Hparams, Params, Problem


def alternate(
    key: jax.Array,
    problem: Problem,
    hparams: Hparams,
    config: Config,
    every: int = 1,
    reconstruction_confidence: Callable[[Problem, Hparams], jax.Array] | None = None,
) -> FitResult:
    """ALS sweep on (optionally re-weighted) reconstruction, aggregator step every `every` iterations.

    Args:
      reconstruction_confidence: the confidence the ALS sweep uses, computed once from the
        prepared problem; default: the problem's own. The history always reports the
        objective under the problem's own confidence.
    """
    problem = prepare(problem, hparams, config)
    recon_problem = problem
    if reconstruction_confidence is not None:
        recon_problem = problem._replace(C=reconstruction_confidence(problem, hparams))
    params = init_params(key, problem, config)

    def step(p: Params, t: jax.Array) -> Params:
        p = als_step(p, recon_problem, hparams, config)
        stepped = aggregator_gradient_step(p, problem, hparams, config)
        due = (t % every) == every - 1
        return jax.tree.map(lambda a, b: jnp.where(due, a, b), stepped, p)

    # Between two aggregator steps only ALS moves, so a flat loss there is not convergence:
    # with every > 1 the loop runs its full budget.
    params, history, n_iter, converged = iterate(
        step, params, lambda p: p, problem, hparams, config, check_convergence=every == 1
    )
    return result(params, history, n_iter, converged)


def fit(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    return alternate(key, problem, hparams, config, every=1)
