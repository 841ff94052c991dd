"""The validated front door: `fit` checks on the host, then runs one jitted program."""

from __future__ import annotations

import functools

import jax
from jax.sharding import Mesh

from cfjax import sharding, solvers
from cfjax.structs import Config, FitResult, Hparams, Problem
from cfjax.validation import check_fit_inputs

__all__ = ["fit", "fit_jit", "fit_unchecked"]

#: The jitted core: `config` is static, everything else (hparams included) is traced.
fit_jit = jax.jit(solvers.fit_traced, static_argnames="config")


def _fit_on_mesh(key: jax.Array, problem: Problem, hparams: Hparams, config: Config, mesh: Mesh) -> FitResult:
    fit = functools.partial(solvers.fit_traced, config=config)
    return sharding.on_mesh(fit, mesh)(key, problem, hparams)


_fit_on_mesh_jit = jax.jit(_fit_on_mesh, static_argnames=("config", "mesh"))


def fit(
    key: jax.Array,
    problem: Problem,
    hparams: Hparams | None = None,
    config: Config | None = None,
    *,
    mesh: Mesh | None = None,
) -> FitResult:
    """Fits CF-Ensemble by `config.method` (defaults: `Config()`, and the method's registry
    hparams `cfjax.solvers.get(config.method).hparams()`).

    Validates every input on the host (`ValueError` naming the argument), then calls the
    jitted `fit_jit`. A new `hparams` value never recompiles; a new `config` does.

    With `mesh` (a `jax.sharding.Mesh` with an axis named "n"), the instances are split across
    the mesh's devices (`cfjax.sharding`): R, C, the labels, the masks and Y along n, X and
    theta replicated. The result equals the single-device fit up to the order of float sums.
    """
    config = Config() if config is None else config
    if hparams is None:
        hparams = solvers.get(config.method).hparams() if isinstance(config, Config) else Hparams.create()
    check_fit_inputs(problem, hparams, config)
    return fit_unchecked(key, problem, hparams, config, mesh)


def fit_unchecked(
    key: jax.Array, problem: Problem, hparams: Hparams, config: Config, mesh: Mesh | None = None
) -> FitResult:
    """`fit` without the host-side checks, for callers that have already run them."""
    if mesh is None:
        return fit_jit(key, problem, hparams, config)
    placed = sharding.shard_problem(problem, mesh)
    with jax.sharding.set_mesh(mesh):
        result = _fit_on_mesh_jit(key, placed, hparams, config, mesh)
    return sharding.unpad(result, problem.n_instances, mesh)
