"""The validated front door: `fit` checks on the host, then runs one jitted program."""

from __future__ import annotations

import jax

from cfjax import solvers
from cfjax.structs import Config, FitResult, Hparams, Problem
from cfjax.validation import check_fit_inputs

__all__ = ["fit", "fit_jit"]

#: The jitted core: `config` is static, everything else (hparams included) is traced.
fit_jit = jax.jit(solvers.fit_traced, static_argnames="config")


def fit(
    key: jax.Array,
    problem: Problem,
    hparams: Hparams | None = None,
    config: Config | None = None,
) -> FitResult:
    """Fits CF-Ensemble by `config.method` (default: `Config()`, `Hparams.create()`).

    Validates every input on the host (`ValueError` naming the argument), then calls the
    jitted `fit_jit`. A new `hparams` value never recompiles; a new `config` does.
    """
    hparams = Hparams.create() if hparams is None else hparams
    config = Config() if config is None else config
    check_fit_inputs(problem, hparams, config)
    return fit_jit(key, problem, hparams, config)
