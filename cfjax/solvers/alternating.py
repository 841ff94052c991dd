"""`alternating`: the seed's original procedure, kept on purpose as the documented failure mode.

Each iteration: a closed-form ALS sweep for X and Y on the reconstruction loss alone, then one
plain gradient step (learning rate `lr`) on theta for the supervised loss alone. The two steps
minimise two different objectives, so the combined loss L is not guaranteed to decrease and the
factors never see the labels (docs/background.md). `label_aware_als` and `damped` are
variations of this loop and share it (`alternation`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from cfjax import losses
from cfjax.solvers.als import als_step
from cfjax.solvers.als import init as init_params
from cfjax.solvers.base import Method, register
from cfjax.structs import Config, Hparams, Params, Problem

__all__ = ["METHOD", "AlternatingState", "aggregator_gradient_step", "alternation"]


class AlternatingState(NamedTuple):
    params: Params
    t: jax.Array  # iterations taken: the aggregator steps on every `every`-th


def aggregator_gradient_step(params: Params, problem: Problem, hparams: Hparams, config: Config) -> Params:
    """One plain gradient step on theta for L_sup alone (the seed's aggregator update)."""

    def sup(theta):
        return losses.supervised_parts(params._replace(theta=theta), problem, hparams, config)[0]

    grad = jax.grad(sup)(params.theta)
    theta = jax.tree.map(lambda t, g: t - hparams.lr * g, params.theta, grad)
    return params._replace(theta=theta)


def alternation(
    name: str,
    description: str,
    every: Callable[[Config], int],
    reconstruction_confidence: Callable[[Problem, Hparams], jax.Array] | None = None,
    defaults: tuple = (),
) -> Method:
    """The method: an ALS sweep on (optionally re-weighted) reconstruction, then an aggregator
    step on every `every(config)`-th iteration.

    Args:
      reconstruction_confidence: the confidence the ALS sweep uses, from the prepared problem;
        default: the problem's own. The history always reports the objective under the
        problem's own confidence.
    """

    def init(key, problem, hparams, config, params=None):
        return AlternatingState(params=init_params(key, problem, hparams, config, params),
                                t=jnp.zeros((), jnp.int32))

    def step(state: AlternatingState, problem: Problem, hparams: Hparams, config: Config) -> AlternatingState:
        recon_problem = problem
        if reconstruction_confidence is not None:
            recon_problem = problem._replace(C=reconstruction_confidence(problem, hparams))
        p = als_step(state.params, recon_problem, hparams, config)
        stepped = aggregator_gradient_step(p, problem, hparams, config)
        k = every(config)
        due = (state.t % k) == k - 1
        p = jax.tree.map(lambda a, b: jnp.where(due, a, b), stepped, p)
        return AlternatingState(params=p, t=state.t + 1)

    return Method(
        name=name,
        init=init,
        step=step,
        params=lambda state: state.params,
        # Between two aggregator steps only ALS moves, so a flat loss there is not convergence:
        # with every > 1 the loop runs its full budget.
        converges=lambda config: every(config) == 1,
        description=description,
        defaults=defaults,
        multiclass=True,
    )


METHOD = register(
    alternation(
        "alternating",
        "the seed's original loop: ALS for X, Y then a gradient step on theta (the failure mode)",
        every=lambda config: 1,
        defaults=(("lr", 0.1),),
    )
)
