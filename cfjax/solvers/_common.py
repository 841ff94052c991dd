"""What every solver shares: initialisation, evaluation, the iteration loop, aggregator steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cfjax import aggregators, confidence, losses, metrics
from cfjax.predict import logits
from cfjax.structs import Config, FitResult, History, Hparams, LossParts, Params, Problem

__all__ = [
    "aggregator_gradient_step",
    "evaluate",
    "init_params",
    "iterate",
    "prepare",
]


def prepare(problem: Problem, hparams: Hparams, config: Config) -> Problem:
    """The problem with the configured confidence strategy applied (once per fit)."""
    return confidence.apply(config.confidence, problem, hparams)


def init_params(key: jax.Array, problem: Problem, config: Config) -> Params:
    """Initial factors and aggregator parameters.

    "svd" (default): X = sqrt(S_d) U_d^T, Y = sqrt(S_d) V_d^T from the truncated SVD of C * R
    (unobserved cells are 0), deterministic and close to an ALS fixed point, so the iteration
    budget goes to what the objective adds, not to leaving a random start. "random": keyed
    N(0, init_scale^2) entries. The aggregator starts from its own `init`.
    """
    m, n = problem.R.shape
    d = config.latent_dim
    dtype = problem.R.dtype
    if config.init == "svd":
        U, S, Vt = jnp.linalg.svd(problem.C * problem.R, full_matrices=False)
        root = jnp.sqrt(S[:d])
        X = root[:, None] * U[:, :d].T
        Y = root[:, None] * Vt[:d]
    elif config.init == "random":
        kx, ky = jax.random.split(key)
        X = config.init_scale * jax.random.normal(kx, (d, m), dtype)
        Y = config.init_scale * jax.random.normal(ky, (d, n), dtype)
    else:
        raise ValueError(f"config.init: unknown {config.init!r}; choose 'svd' or 'random'")
    theta = aggregators.get(config.aggregator).init(m, dtype)
    return Params(X=X.astype(dtype), Y=Y.astype(dtype), theta=theta)


def evaluate(params: Params, problem: Problem, hparams: Hparams, config: Config) -> tuple[LossParts, jax.Array]:
    """The loss parts and the PR-AUC on the validation columns (NaN when undefined)."""
    parts = losses.loss_parts(params, problem, hparams, config)
    score = metrics.average_precision(problem.labels, logits(params, config), problem.validation)
    return parts, score


def aggregator_gradient_step(params: Params, problem: Problem, hparams: Hparams, config: Config) -> Params:
    """One plain gradient step on theta for L_sup alone (the seed's aggregator update)."""

    def sup(theta):
        return losses.supervised_parts(params._replace(theta=theta), problem, hparams, config)[0]

    grad = jax.grad(sup)(params.theta)
    theta = jax.tree.map(lambda t, g: t - hparams.lr * g, params.theta, grad)
    return params._replace(theta=theta)


class _Carry(NamedTuple):
    state: Any
    last: tuple  # (LossParts, score) of the latest accepted iterate
    stopped: jax.Array
    converged: jax.Array
    n_iter: jax.Array


def iterate(
    step: Callable[[Any, jax.Array], Any],
    state: Any,
    params_of: Callable[[Any], Params],
    problem: Problem,
    hparams: Hparams,
    config: Config,
    length: int | None = None,
    stop_of: Callable[[Any], jax.Array] | None = None,
    check_convergence: bool = True,
) -> tuple[Any, History, jax.Array, jax.Array]:
    """Runs `state = step(state, t)` for `length` iterations under `lax.scan`, recording history.

    Once the relative change of the total loss falls strictly below `config.tol` (if
    `check_convergence`) or `stop_of(state)` says so, the state is frozen and the history repeats
    its last values: shapes stay fixed, so fits vmap and sweep like any other array program.
    With tol = 0 the loop never stops on the tolerance (a change of exactly 0 in one program may
    be 1 ulp in a batched twin, so "<= 0" would stop the two at different iterations).

    Returns (final state, History, n_iter, converged).
    """
    length = config.max_iter if length is None else length
    params0 = params_of(state)
    first = evaluate(params0, problem, hparams, config)
    false = jnp.zeros((), bool)

    def body(carry: _Carry, t):
        new_state = step(carry.state, t)
        record = evaluate(params_of(new_state), problem, hparams, config)
        prev_total = carry.last[0].total
        change = jnp.abs(prev_total - record[0].total) / jnp.maximum(jnp.abs(prev_total), 1e-30)
        converged = (change < config.tol) & check_convergence  # strict: tol = 0 never stops
        stop = converged | (stop_of(new_state) if stop_of is not None else false)
        keep = carry.stopped

        def pick(old, new):
            return jax.tree.map(lambda o, n: jnp.where(keep, o, n), old, new)

        carry = _Carry(
            state=pick(carry.state, new_state),
            last=pick(carry.last, record),
            stopped=carry.stopped | stop,
            converged=carry.converged | (converged & ~keep),
            n_iter=carry.n_iter + jnp.where(keep, 0, 1),
        )
        parts, score = carry.last
        return carry, History(total=parts.total, recon=parts.recon, sup=parts.sup, valid_pr_auc=score)

    carry0 = _Carry(state=state, last=first, stopped=false, converged=false, n_iter=jnp.zeros((), jnp.int32))
    carry, history = jax.lax.scan(body, carry0, jnp.arange(length))
    return carry.state, history, carry.n_iter, carry.converged


def result(params: Params, history: History, n_iter: jax.Array, converged: jax.Array) -> FitResult:
    return FitResult(params=params, history=history, n_iter=n_iter, converged=converged)
