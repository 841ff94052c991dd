"""The one driver every iterative method runs under: scan, history, convergence, early stopping.

`fit_traced(key, problem, hparams, config, init=None)` is the whole fit as a pure, traceable
function (jit it, vmap it, shard it):

1. `prepare`: R in the configured space (`Config.space`), then the confidence strategy, whose
   learned statistics go into `FitResult.info["confidence"]`;
2. `start`: the method's `init` (or a warm start from `Params`, or the exact continuation of an
   earlier fit from its `DriverState`) and the loss of the starting point;
3. `advance`: up to `length` steps of the method under `lax.while_loop`, recording the
   `History`. Once the relative change of the total loss falls strictly below `Config.tol` (for
   methods that `converge`) or the method's `stop` says so, the loop ends and the rest of the
   history repeats the last values, so shapes stay fixed and fits vmap like any other array
   program;
4. `finish`: the returned params (the method's `finalize`, else the current iterate); the last
   history entry always describes the returned params.

`advance` can be called several times on one state: a fit of k + l steps equals a fit of k
steps continued by l (`cfjax.fit(..., init=result.state)`), which is what progress bars and
checkpoints use (`cfjax.solvers.chunks`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cfjax import confidence, data, losses, metrics
from cfjax.aggregators import logits as aggregator_logits
from cfjax.solvers.base import Method, get
from cfjax.structs import Config, FitResult, History, Hparams, LossParts, Params, Problem

__all__ = [
    "DriverState",
    "advance",
    "evaluate",
    "finish",
    "fit_traced",
    "method_hparams",
    "prepare",
    "start",
]


class DriverState(NamedTuple):
    """Everything a fit needs to continue: the method's own state and the driver's bookkeeping.

    Attributes:
      inner: the method's state (its `init` / `step` pytree).
      last: `LossParts` of the latest accepted iterate. score: its validation PR-AUC.
      stopped: whether the loop has stopped (converged or early-stopped); a stopped fit stays.
      converged: whether the tolerance stopped it. n_iter: iterations run so far (int32).
    """

    inner: Any
    last: LossParts
    score: jax.Array
    stopped: jax.Array
    converged: jax.Array
    n_iter: jax.Array


def prepare(problem: Problem, hparams: Hparams, config: Config, stats: Any = None) -> tuple[Problem, Any]:
    """(the problem a method sees, the confidence statistics): R in `config.space`, then the
    confidence strategy, learned from this problem unless `stats` are given."""
    if config.space == "logit":
        problem = data.logit_space(problem)
    if stats is None:
        stats = confidence.learn(config.confidence, problem, hparams)
    return confidence.apply(config.confidence, problem, hparams, stats), stats


def _validation_score(params: Params, problem: Problem, config: Config) -> jax.Array:
    """PR-AUC on the validation columns (macro one-vs-rest for K classes); NaN (and no sort over
    n) when there are none."""

    def score():
        return metrics.pr_auc_of_logits(problem.labels, aggregator_logits(params, config, problem.observed),
                                        problem.validation)

    return jax.lax.cond(jnp.any(problem.validation), score, lambda: jnp.full((), jnp.nan, problem.R.dtype))


def evaluate(params: Params, problem: Problem, hparams: Hparams, config: Config) -> tuple[LossParts, jax.Array]:
    """The loss parts and the validation PR-AUC of `params`."""
    return losses.loss_parts(params, problem, hparams, config), _validation_score(params, problem, config)


def method_hparams(method: Method, hparams: Hparams) -> Hparams:
    """The hyperparameters the method runs with (its `hparams_of` applied)."""
    return hparams if method.hparams_of is None else method.hparams_of(hparams)


def start(
    method: Method, key: jax.Array, problem: Problem, hparams: Hparams, config: Config, init: Any = None
) -> DriverState:
    """The state before the first step: from `init` (None, `Params` or a `DriverState`)."""
    if isinstance(init, DriverState):
        return init
    inner = method.init(key, problem, hparams, config, params=init)
    last, score = evaluate(method.params(inner), problem, hparams, config)
    false = jnp.zeros((), bool)
    return DriverState(inner=inner, last=last, score=score, stopped=false, converged=false,
                       n_iter=jnp.zeros((), jnp.int32))


def advance(
    method: Method, state: DriverState, problem: Problem, hparams: Hparams, config: Config, length: int
) -> tuple[DriverState, History]:
    """Up to `length` steps (static), returning the state and the History of `length` entries.

    A `lax.while_loop` that stops as soon as the fit has stopped (converged or early-stopped):
    the entries after that repeat the last accepted values, exactly what a scan over all
    `length` steps of a frozen state records, without paying for those steps. Under `vmap`
    (sweeps, `auto`'s folds) the loop runs until every fit has stopped, each fit frozen from its
    own stop. With tol = 0 the loop never stops on the tolerance (a change of exactly 0 in one
    program may be 1 ulp in a batched twin).
    """
    check_convergence = method.converges(config)

    def step(state: DriverState) -> tuple[DriverState, History]:
        new_inner = method.step(state.inner, problem, hparams, config)
        last, score = evaluate(method.params(new_inner), problem, hparams, config)
        prev = state.last.total
        change = jnp.abs(prev - last.total) / jnp.maximum(jnp.abs(prev), 1e-30)
        converged = (change < config.tol) & check_convergence  # strict: tol = 0 never stops
        stop = converged
        if method.stop is not None:
            stop = stop | method.stop(new_inner, config)
        keep = state.stopped  # only a continued fit that had stopped already

        def pick(old, new):
            return jax.tree.map(lambda o, n: jnp.where(keep, o, n), old, new)

        inner, last, score = pick((state.inner, state.last, state.score), (new_inner, last, score))
        state = DriverState(
            inner=inner, last=last, score=score,
            stopped=state.stopped | stop,
            converged=state.converged | (converged & ~keep),
            n_iter=state.n_iter + jnp.where(keep, 0, 1).astype(jnp.int32),
        )
        return state, _record(state)

    def running(carry):
        i, state, _ = carry
        return (i < length) & ~state.stopped

    def body(carry):
        i, state, history = carry
        state, record = step(state)
        return i + 1, state, jax.tree.map(lambda h, v: h.at[i].set(v), history, record)

    empty = jax.tree.map(lambda v: jnp.zeros((length,), v.dtype), _record(state))
    done, state, history = jax.lax.while_loop(running, body, (jnp.zeros((), jnp.int32), state, empty))
    recorded = jnp.arange(length) < done
    history = jax.tree.map(lambda h, v: jnp.where(recorded, h, v), history, _record(state))
    return state, history


def _record(state: DriverState) -> History:
    """The history entry of the latest accepted iterate."""
    return History(total=state.last.total, recon=state.last.recon, sup=state.last.sup, valid_pr_auc=state.score)


def finish(
    method: Method, state: DriverState, history: History, problem: Problem, hparams: Hparams,
    config: Config, stats: Any,
) -> FitResult:
    """The `FitResult`: the returned params and the history, whose last entry describes them."""
    if method.finalize is None:
        params = method.params(state.inner)
    else:
        params = method.finalize(state.inner, problem, hparams, config)
        last, score = evaluate(params, problem, hparams, config)
        final = History(total=last.total, recon=last.recon, sup=last.sup, valid_pr_auc=score)
        history = jax.tree.map(lambda h, v: h.at[-1].set(v), history, final)
    return FitResult(params=params, history=history, n_iter=state.n_iter, converged=state.converged,
                     state=state, info={"confidence": stats})


def fit_traced(
    key: jax.Array, problem: Problem, hparams: Hparams, config: Config, init: Any = None
) -> FitResult:
    """The fit of `config.method` as one traceable function (no validation: see `cfjax.fit`).

    Args:
      key: typed PRNG key (the "random" init and any randomness of the method).
      problem: the raw `Problem`; `prepare` is applied here.
      hparams: traced; config: static.
      init: None, `Params` (warm start: the method's init from these params) or the
        `DriverState` of an earlier fit (`FitResult.state`: continue it exactly).
    """
    method = get(config.method)
    if method.fit is not None:
        if init is not None:
            raise ValueError(f"init: method {config.method!r} has no state to start from or continue")
        return method.fit(key, problem, hparams, config)
    hparams = method_hparams(method, hparams)
    prepared, stats = prepare(problem, hparams, config)
    state = start(method, key, prepared, hparams, config, init)
    state, history = advance(method, state, prepared, hparams, config, config.max_iter)
    return finish(method, state, history, prepared, hparams, config, stats)
