"""`joint`: gradient descent on the exact combined loss, all of X, Y and theta together.

The seed's recommended fix. Every step follows the gradient of the same objective
L = rho L_recon + (1 - rho) L_sup, so nothing undoes anything else. Built on optax:

* optimizer: `Config.optimizer` in {"adam" (default), "adamw", "sgd"} at learning rate
  `Hparams.lr` (traced: the optimizer is built inside the traced function, never static);
* reduce-on-plateau: the update is scaled by `Config.plateau_factor` when the training loss
  has not improved (relative 1e-4) for `Config.patience // 2` steps;
* formulation: with `Config.formulation = "fold_in"` (the default) the instance factors are
  not free parameters but the ridge solve Y(X) = argmin_Y L_recon(X, Y), differentiated
  through the batched Cholesky solve; the Y in the returned params is that solve (and the Adam
  state for Y goes unused). "free" makes Y a parameter like X;
* early stopping: when the problem has validation columns, stop once their supervised loss has
  not improved for `Config.patience` steps and return the parameters of the best validation
  loss; without validation columns, the same rule on the training loss. `patience = 0`
  disables both;
* minibatch: with the option ``batch_size`` (`Config.options`, fold-in only) each iteration is
  an epoch of optax steps on batches of columns, Y solved per batch and never stored
  (`cfjax.solvers.minibatch`; out of core: `cfjax.stream`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cfjax import losses, ridge
from cfjax.solvers.base import Method, initial_params, register
from cfjax.structs import Config, Hparams, Params, Problem

__all__ = ["METHOD", "JointState", "make_optimizer", "monitored_loss", "objective", "with_fold_in"]


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
    Y = ridge.update_Y(params.X, problem.R, problem.C, hparams.lam, chunk_size=config.chunk_size)
    return params._replace(Y=Y)


def objective(params: Params, problem: Problem, hparams: Hparams, config: Config) -> jax.Array:
    """The combined loss of the formulation: Y free, or Y(X) by the ridge fold-in."""
    return losses.loss(with_fold_in(params, problem, hparams, config), problem, hparams, config)


def _minibatch(config: Config) -> Any:
    """`cfjax.solvers.minibatch` when the config asks for batches of columns, else None."""
    if config.option("batch_size") is None:
        return None
    from cfjax.solvers import minibatch  # it builds on this module

    return minibatch


def _check_config(config: Config) -> None:
    from cfjax.solvers import minibatch

    minibatch.check_options(config)


def init(key: jax.Array, problem: Problem, hparams: Hparams, config: Config, params: Params | None = None) -> JointState:
    """The optimizer state of a fresh Adam (etc.) at the start, or at `params` (warm start)."""
    if _minibatch(config) is not None:
        return _minibatch(config).init(key, problem, hparams, config, params)
    params = initial_params(key, problem, hparams, config) if params is None else params
    params = with_fold_in(params, problem, hparams, config)
    return JointState(
        params=params,
        opt_state=make_optimizer(hparams, config).init(params),
        best_params=params,
        best_monitor=monitored_loss(params, problem, hparams, config),
        bad_steps=jnp.zeros((), jnp.int32),
    )


def step(state: JointState, problem: Problem, hparams: Hparams, config: Config) -> JointState:
    """One optimizer step on the exact loss, then the early-stopping bookkeeping (under the
    ``batch_size`` option: one epoch of minibatch steps, `cfjax.solvers.minibatch.epoch`)."""
    if _minibatch(config) is not None:
        return _minibatch(config).epoch(state, problem, hparams, config)
    optimizer = make_optimizer(hparams, config)  # built from traced values, never static
    value, grads = jax.value_and_grad(objective)(state.params, problem, hparams, config)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params, value=value)
    params = with_fold_in(optax.apply_updates(state.params, updates), problem, hparams, config)
    return track_best(state, params, problem, hparams, config)._replace(opt_state=opt_state)


def track_best(state: Any, params: Params, problem: Problem, hparams: Hparams, config: Config) -> Any:
    """`state` (a JointState, or any state with its fields) at the new `params`, with the
    early-stopping bookkeeping: the best monitored loss so far, its parameters, and the number
    of steps since it improved."""
    monitor = monitored_loss(params, problem, hparams, config)
    improved = monitor < state.best_monitor
    return state._replace(
        params=params,
        best_params=jax.tree.map(lambda b, p: jnp.where(improved, p, b), state.best_params, params),
        best_monitor=jnp.where(improved, monitor, state.best_monitor),
        bad_steps=jnp.where(improved, 0, state.bad_steps + 1),
    )


METHOD = register(
    Method(
        name="joint",
        init=init,
        step=step,
        params=lambda state: state.params,
        finalize=lambda state, problem, hparams, config: state.best_params if config.patience > 0 else state.params,
        stop=lambda state, config: (state.bad_steps >= config.patience) & (config.patience > 0),
        description="Adam on the exact combined loss, X, Y and theta together",
        # lam = 1: with 30 % of R missing, lam = 0.01 left the column solves nearly singular
        # (-0.084 test PR-AUC against complete data, experiments/missing_data.py); lam = 1 keeps
        # it within 0.02 and costs nothing measurable on the complete panel (lambda_panel.py).
        defaults=(("lam", 1.0),),
        check_config=_check_config,
        batches=True,
        multiclass=True,  # full batch and minibatch epochs (class weights from the global class counts)
    )
)
