"""`joint`: gradient descent on the exact combined loss, all of X, Y and theta together.

The seed's recommended fix. Every step follows the gradient of the same objective
L = rho L_recon + (1 - rho) L_sup, so nothing undoes anything else. Built on optax:

* optimizer: `Config.optimizer` in {"adam" (default), "adamw", "sgd"} at learning rate
  `Hparams.lr` (traced: the optimizer is built inside the traced function, never static);
* reduce-on-plateau: the update is scaled by `Config.plateau_factor` when the training loss
  has not improved (relative 1e-4) for `Config.patience // 2` steps;
* formulation: with `Config.formulation = "fold_in"` the instance factors are not free
  parameters but the ridge solve Y(X) = argmin_Y L_recon(X, Y), differentiated through the
  batched Cholesky solve; the Y in the returned params is that solve (and the Adam state for Y
  goes unused);
* early stopping: when the problem has validation columns, stop once their supervised loss has
  not improved for `Config.patience` steps and return the parameters of the best validation
  loss; without validation columns, the same rule on the training loss. `patience = 0`
  disables both.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cfjax import als as kernel
from cfjax import losses
from cfjax.solvers._common import init_params, iterate, prepare, result
from cfjax.structs import Config, FitResult, Hparams, Params, Problem


def make_optimizer(hparams: Hparams, config: Config) -> optax.GradientTransformationExtraArgs:
    if config.optimizer == "adam":
        base = optax.adam(hparams.lr)
    elif config.optimizer == "adamw":
        base = optax.adamw(hparams.lr, weight_decay=1e-4)
    elif config.optimizer == "sgd":
        base = optax.sgd(hparams.lr, momentum=0.9)
    else:
        raise ValueError(f"config.optimizer: unknown {config.optimizer!r}; choose adam, adamw or sgd")
    if config.patience <= 0:
        return optax.with_extra_args_support(base)
    plateau = optax.contrib.reduce_on_plateau(
        factor=config.plateau_factor, patience=max(config.patience // 2, 1), rtol=1e-4, cooldown=0
    )
    return optax.chain(base, plateau)


class JointState(NamedTuple):
    params: Params
    opt_state: Any
    best_params: Params
    best_monitor: jax.Array
    bad_steps: jax.Array


def monitored_loss(params: Params, problem: Problem, hparams: Hparams, config: Config) -> jax.Array:
    """Validation supervised loss when there are validation columns, else the training loss."""
    has_validation = jnp.any(problem.validation)
    validation = losses.supervised_parts(params, problem, hparams, config, mask=problem.validation)[0]
    return jnp.where(has_validation, validation, losses.loss(params, problem, hparams, config))


def with_fold_in(params: Params, problem: Problem, hparams: Hparams, config: Config) -> Params:
    """Under the "fold_in" formulation, Y := argmin_Y L_recon(X, Y) (differentiable in X)."""
    if config.formulation == "free":
        return params
    Y = kernel.update_Y(params.X, problem.R, problem.C, hparams.lam, chunk_size=config.chunk_size)
    return params._replace(Y=Y)


def objective(params: Params, problem: Problem, hparams: Hparams, config: Config) -> jax.Array:
    """The combined loss of the formulation: Y free, or Y(X) by the ridge fold-in."""
    return losses.loss(with_fold_in(params, problem, hparams, config), problem, hparams, config)


def fit(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    problem = prepare(problem, hparams, config)
    params = with_fold_in(init_params(key, problem, config), problem, hparams, config)
    optimizer = make_optimizer(hparams, config)
    value_and_grad = jax.value_and_grad(objective)

    def step(state: JointState, t: jax.Array) -> JointState:
        value, grads = value_and_grad(state.params, problem, hparams, config)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params, value=value)
        params = with_fold_in(optax.apply_updates(state.params, updates), problem, hparams, config)
        monitor = monitored_loss(params, problem, hparams, config)
        improved = monitor < state.best_monitor
        best_params = jax.tree.map(lambda b, p: jnp.where(improved, p, b), state.best_params, params)
        return JointState(
            params=params,
            opt_state=opt_state,
            best_params=best_params,
            best_monitor=jnp.where(improved, monitor, state.best_monitor),
            bad_steps=jnp.where(improved, 0, state.bad_steps + 1),
        )

    state = JointState(
        params=params,
        opt_state=optimizer.init(params),
        best_params=params,
        best_monitor=monitored_loss(params, problem, hparams, config),
        bad_steps=jnp.zeros((), jnp.int32),
    )
    stop_of = (lambda s: s.bad_steps >= config.patience) if config.patience > 0 else None
    state, history, n_iter, converged = iterate(
        step, state, lambda s: s.params, problem, hparams, config, stop_of=stop_of
    )
    params = state.best_params if config.patience > 0 else state.params
    return result(params, history, n_iter, converged)
