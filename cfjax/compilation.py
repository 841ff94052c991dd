"""The one `jit` of cfjax's programs: `jax.jit` with XLA compiler options for the CPU backend.

XLA's CPU runtime in jaxlib 0.10.2 (later versions not tried) can wedge under its default
concurrency-optimised scheduler: every thread of the intra-op pool waits for work while the host
waits for the result, forever. On a 2-core machine the default K-class fit (`auto`'s 44 vmapped
multinomial fits) on a 9-classifier, 7-class ensemble hangs in every run, with the processor
idle; with the program pinned to one core, or scheduled by the memory-optimised scheduler, it
finishes (segment: 4.3 s). The regression test is `tests/test_compilation.py`.
`CPU_COMPILER_OPTIONS` selects that scheduler for every program cfjax compiles for the CPU;
programs for other backends are compiled as before (these are XLA's CPU flags; whether GPU or
TPU runtimes can wedge the same way was not tested).

Programs a user jits around cfjax's functions (`jax.jit(jax.vmap(cfjax.fit_jit))`) are compiled by
that outer jit, without these options: pass `compiler_options=cfjax.compilation.CPU_COMPILER_OPTIONS`
to it, or set `XLA_FLAGS=--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED` before
JAX starts.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

__all__ = ["CPU_COMPILER_OPTIONS", "jit"]

#: XLA options for programs compiled for the CPU (see the module docstring).
CPU_COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


class _Jitted:
    """`jax.jit(fun, **kwargs)` for the default backend: with `CPU_COMPILER_OPTIONS` when it is
    the CPU. Attributes (`lower`, `trace`, `eval_shape`, ...) are the chosen jitted function's."""

    def __init__(self, fun: Callable, **kwargs: Any):
        self._on_cpu = jax.jit(fun, compiler_options=CPU_COMPILER_OPTIONS, **kwargs)
        self._elsewhere = jax.jit(fun, **kwargs)
        functools.update_wrapper(self, fun)

    def _chosen(self):
        # compiler options belong to the outermost jit only: inside a trace the plain one is used
        if _tracing() or jax.default_backend() != "cpu" or not _cpu_options_known():
            return self._elsewhere
        return self._on_cpu

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._chosen()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chosen(), name)


@functools.cache
def _cpu_options_known() -> bool:
    """Whether this jaxlib's XLA knows `CPU_COMPILER_OPTIONS` (it refuses unknown ones); asked
    once per process, by compiling a one-operation program with them."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(np.float32(0)).compile()
    except Exception as error:  # noqa: BLE001 (XLA's error type differs between versions)
        warnings.warn(f"cfjax: this XLA does not take {CPU_COMPILER_OPTIONS} ({error}); programs are compiled "
                      "without them, and a large vmapped fit may hang on a multi-core CPU", RuntimeWarning,
                      stacklevel=3)
        return False
    return True


def _tracing() -> bool:
    """Whether a JAX transformation (jit, vmap, grad, ...) is tracing the caller."""
    from jax._src import core  # JAX has no public test of the trace state

    return not core.trace_state_clean()


def jit(fun: Callable | None = None, **kwargs: Any) -> Any:
    """`jax.jit` with cfjax's compiler options; `jit(fun, static_argnames=...)`, or as a
    decorator, bare or `functools.partial(jit, static_argnames=...)`."""
    if fun is None:
        return functools.partial(jit, **kwargs)
    return _Jitted(fun, **kwargs)
