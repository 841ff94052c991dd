"""Public functions called eagerly compile once per shape, not on every call.

A `lax.scan` / `while_loop` over a closure made afresh on each call, run outside jit, traces
and compiles a new program every time, and XLA:CPU keeps every program mapped: a 9520-fit
benchmark ran out of memory maps ("LLVM ERROR: Unable to allocate section memory") after ~3300
fits. Each entry below is called three times on the same shapes; the second and third calls
must not compile.
"""

from __future__ import annotations

import collections
import types

import jax
import pytest

import cfjax
from cfjax import baselines, logistic, metrics, predict, ridge

from .monitoring import listening

COMPILE = "/jax/core/compile/backend_compile_duration"


@pytest.fixture(scope="module")
def fitted():
    ens = cfjax.data.synthetic(jax.random.key(0), n_classifiers=5, n_instances=60)
    config = cfjax.Config(method="als", latent_dim=3, max_iter=3)
    hparams = cfjax.solvers.get("als").hparams()
    result = cfjax.fit(jax.random.key(0), ens.problem, hparams, config)
    return types.SimpleNamespace(p=ens.problem, y=ens.y_true, config=config, hparams=hparams, result=result)


#: name -> one call, given the fixture's problem p, labels y, config, hparams and fitted result.
CALLS = {
    **{f"baselines.{name}": (lambda f, fn=fn: fn(f.p)) for name, fn in baselines.BASELINES.items()},
    "logistic.fit_logistic": lambda f: logistic.fit_logistic(f.p.R, f.p.labels, f.p.labeled.astype(f.p.R.dtype), 0.01),
    "ridge.update_Y": lambda f: ridge.update_Y(f.result.params.X, f.p.R, f.p.C, f.hparams.lam),
    "ridge.update_X": lambda f: ridge.update_X(f.result.params.Y, f.p.R, f.p.C, f.hparams.lam),
    "predict.proba": lambda f: predict.proba(f.result.params, f.config, f.p),
    "predict.fold_in_proba": lambda f: predict.fold_in_proba(f.result, f.p, f.hparams, f.config),
    "metrics.average_precision": lambda f: metrics.average_precision(f.y, f.p.R[0], f.p.labeled),
    "cfjax.fit": lambda f: cfjax.fit(jax.random.key(0), f.p, f.hparams, f.config),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_repeated_calls_do_not_compile(fitted, name):
    jax.block_until_ready(CALLS[name](fitted))
    events = collections.Counter()

    def listen(event, duration, **kwargs):
        events[event] += 1

    with listening(listen, "duration"):
        jax.block_until_ready(CALLS[name](fitted))
        jax.block_until_ready(CALLS[name](fitted))
    assert events[COMPILE] == 0, f"{name} compiled {events[COMPILE]} program(s) on repeated calls"
