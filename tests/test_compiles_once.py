"""Public functions called eagerly compile once per shape, not on every call.

A `lax.scan` / `while_loop` over a closure made afresh on each call, run outside jit, traces
and compiles a new program every time, and XLA:CPU keeps every program mapped: a 9520-fit
benchmark ran out of memory maps ("LLVM ERROR: Unable to allocate section memory") after ~3300
fits. Each entry below is called three times on the same shapes; the second and third calls
must not compile.
"""

from __future__ import annotations

import collections

import jax
import pytest

import cfjax
from cfjax import baselines, logistic, metrics, predict, ridge

COMPILE = "/jax/core/compile/backend_compile_duration"


@pytest.fixture(scope="module")
def fitted():
    ens = cfjax.data.synthetic(jax.random.key(0), n_classifiers=5, n_instances=60)
    config = cfjax.Config(method="als", latent_dim=3, max_iter=3)
    hparams = cfjax.solvers.get("als").hparams()
    return ens, config, hparams, cfjax.fit(jax.random.key(0), ens.problem, hparams, config)


def _calls(fitted):
    ens, config, hparams, result = fitted
    p, X, Y = ens.problem, result.params.X, result.params.Y
    F = p.R
    omega = p.labeled.astype(F.dtype)
    calls = {f"baselines.{name}": (lambda fn=fn: fn(p)) for name, fn in baselines.BASELINES.items()}
    calls.update({
        "logistic.fit_logistic": lambda: logistic.fit_logistic(F, p.labels, omega, 0.01),
        "ridge.update_Y": lambda: ridge.update_Y(X, p.R, p.C, hparams.lam),
        "ridge.update_X": lambda: ridge.update_X(Y, p.R, p.C, hparams.lam),
        "predict.proba": lambda: predict.proba(result.params, config, p),
        "predict.fold_in_proba": lambda: predict.fold_in_proba(result, p, hparams, config),
        "metrics.average_precision": lambda: metrics.average_precision(ens.y_true, F[0], p.labeled),
        "cfjax.fit": lambda: cfjax.fit(jax.random.key(0), p, hparams, config),
    })
    return calls


NAMES = [*(f"baselines.{name}" for name in baselines.BASELINES), "logistic.fit_logistic", "ridge.update_Y",
         "ridge.update_X", "predict.proba", "predict.fold_in_proba", "metrics.average_precision", "cfjax.fit"]


def _unregister(listener) -> None:
    """jax.monitoring.unregister_event_duration_listener; a private name before jax 0.8.1."""
    public = getattr(jax.monitoring, "unregister_event_duration_listener", None)
    if public is not None:
        public(listener)
    else:
        from jax._src import monitoring

        monitoring._unregister_event_duration_listener_by_callback(listener)


@pytest.mark.parametrize("name", NAMES)
def test_repeated_calls_do_not_compile(fitted, name):
    call = _calls(fitted)[name]
    jax.block_until_ready(call())
    events = collections.Counter()

    def listen(event, duration, **kwargs):
        events[event] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jax.block_until_ready(call())
        jax.block_until_ready(call())
    finally:
        _unregister(listen)
    assert events[COMPILE] == 0, f"{name} compiled {events[COMPILE]} program(s) on repeated calls"
