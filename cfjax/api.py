"""The front door: `fit` checks on the host, then runs one jitted program.

`cfjax.fit(key, problem)` is the default pipeline (`Config()`: method "auto") with its registry
defaults; every argument after the problem is optional. Warm starts, continuation, progress
bars, checkpoints and device meshes are keyword arguments of the same function.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from cfjax import sharding, solvers
from cfjax.compilation import jit
from cfjax.solvers import chunks, driver
from cfjax.structs import Config, FitResult, Hparams, Params, Problem
from cfjax.validation import check_fit_inputs, resolve_config

__all__ = [
    "COMPILATION_CACHE_ENV",
    "enable_compilation_cache",
    "fit",
    "fit_jit",
    "fit_unchecked",
    "prepare_inputs",
    "settings",
]

#: The jitted core: `config` is static, everything else (hparams, init) is traced.
fit_jit = jit(driver.fit_traced, static_argnames="config")


#: Where the command and the estimator keep compiled programs between runs: a folder, or one of
#: "0", "off", "false", "no" to switch the cache off. Default: ~/.cache/cfjax/jax-compilation-cache.
COMPILATION_CACHE_ENV = "CFJAX_COMPILATION_CACHE"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache, unless the user switched it off or set one.

    Most of a first fit's time is compilation (an `auto` fit: ~30 s cold, a few seconds with a
    warm cache); the cache keeps compiled programs on disk, keyed by the program and the
    jax/XLA versions, so a later process skips it. The command and the scikit-learn estimator
    call this; a notebook can too. Returns the folder in use, or None when off.

    Args:
      path: the folder; default `$CFJAX_COMPILATION_CACHE`, else ~/.cache/cfjax/jax-compilation-cache.
        `$CFJAX_COMPILATION_CACHE` set to "0", "off", "false" or "no" switches it off.
    """
    from pathlib import Path

    env = os.environ.get(COMPILATION_CACHE_ENV)
    if path is None and env is not None and env.strip().lower() in ("0", "off", "false", "no", ""):
        return None
    current = jax.config.jax_compilation_cache_dir
    if path is None and current:  # the user (or JAX_COMPILATION_CACHE_DIR) chose one already
        return current
    folder = Path(path or env or Path.home() / ".cache" / "cfjax" / "jax-compilation-cache").expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return str(folder)


def _fit_on_mesh(key: jax.Array, problem: Problem, hparams: Hparams, config: Config, init: Any, mesh: Mesh) -> FitResult:
    def one(key, problem, hparams, init):
        # The state is not kept on a mesh: its instance-sized arrays would be gathered.
        return driver.fit_traced(key, problem, hparams, config, init)._replace(state=None)

    return sharding.on_mesh(one, mesh)(key, problem, hparams, init)


_fit_on_mesh_jit = jit(_fit_on_mesh, static_argnames=("config", "mesh"))


def prepare_inputs(problem: Problem, hparams: Hparams | None, config: Config | None) -> tuple[Hparams, Config]:
    """The (hparams, config) a fit of `problem` runs with: `Config()` and the method's registry
    defaults where not given, problem-dependent defaults resolved (`resolve_config`), all
    validated on the host (`ValueError` naming the argument)."""
    config = Config() if config is None else config
    config = resolve_config(config, problem)
    if hparams is None:  # in the problem's dtype: a float32 problem under jax_enable_x64 stays float32
        hparams = solvers.get(config.method).hparams(dtype=problem.R.dtype)
    check_fit_inputs(problem, hparams, config)
    return hparams, config


def settings(
    method: str | None = None,
    *,
    rho: float | None = None,
    lam: float | None = None,
    lr: float | None = None,
    latent_dim: int | None = None,
    max_iter: int | None = None,
    formulation: str | None = None,
    aggregator: str | None = None,
    confidence: str | None = None,
    space: str | None = None,
) -> tuple[Hparams, Config]:
    """(hparams, config) from the plain settings a user gives the command or the estimator.

    The one place their defaults come from: `Config()`'s fields and the method's registry
    hyperparameters (`cfjax.solvers.get(method).hparams()`) for everything left None. A setting
    is either honoured or refused, never ignored: `auto` chooses rho itself and fits each
    candidate in its own formulation and space, so giving it `rho`, `formulation` or `space` is
    a `ValueError` naming the setting; its `latent_dim`, `max_iter`, `lam`, `lr`, `aggregator`
    (the one its result is written in) and `confidence` are its candidates'.
    """
    method = Config().method if method is None else method
    entry = solvers.get(method)
    if entry.fit is not None:
        for name, value in (("rho", rho), ("formulation", formulation), ("space", space)):
            if value is not None:
                raise ValueError(f"{name}: {method!r} chooses it for each candidate itself; leave it unset")
    given = {k: v for k, v in dict(rho=rho, lam=lam, lr=lr).items() if v is not None}
    hparams = entry.hparams(**given)
    fields = dict(latent_dim=latent_dim, max_iter=max_iter, formulation=formulation, aggregator=aggregator,
                  confidence=confidence, space=space)
    config = Config(method=method, **{k: v for k, v in fields.items() if v is not None})
    return hparams, config


def _check_init(init: Any, problem: Problem, config: Config) -> None:
    if init is None or isinstance(init, solvers.DriverState):
        if isinstance(init, solvers.DriverState):
            _check_params_shapes(init.inner if isinstance(init.inner, Params) else getattr(init.inner, "params", None),
                                 problem, config)
        return
    if isinstance(init, FitResult):
        raise ValueError("init: pass result.state (continue the fit) or result.params (warm start), not the FitResult")
    if not isinstance(init, Params):
        raise ValueError(f"init: expected None, cfjax.Params or a DriverState (FitResult.state), got {type(init).__name__}")
    _check_params_shapes(init, problem, config)


def _check_params_shapes(params: Params | None, problem: Problem, config: Config) -> None:
    if params is None:
        return
    m, n = problem.R.shape
    d = config.latent_dim
    want = {"X": (d, m), "Y": (d, n)}
    for name, shape in want.items():
        got = np.shape(getattr(params, name))
        if got != shape:
            raise ValueError(f"init: params.{name} has shape {got}, this fit needs {shape} (latent_dim {d}, R {m} x {n})")


def fit(
    key: jax.Array,
    problem: Problem,
    hparams: Hparams | None = None,
    config: Config | None = None,
    *,
    init: Any = None,
    mesh: Mesh | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    chunk_steps: int | None = None,
) -> FitResult:
    """Fits CF-Ensemble: the default pipeline, or the method `config.method`.

    Args:
      key: a typed PRNG key (`jax.random.key(seed)`); the run is deterministic given it.
      problem: from `cfjax.from_numpy(R, labels)` (or a `cfjax.data` generator).
      hparams: traced `Hparams` (scalars; a grid belongs to `cfjax.sweep.run`). Default: the
        method's registry defaults, `cfjax.solvers.get(config.method).hparams()`. A new value
        never recompiles.
      config: the static `Config`; default `Config()` (method "auto"). A new config recompiles.
      init: None; `Params` to warm-start from (e.g. `cfjax.io.load(path)[0].params`); or
        `result.state` of an earlier fit with the same problem, hparams and config, to continue
        it: k more steps from a fit of j steps equals one fit of j + k steps.
      mesh: a `jax.sharding.Mesh` with an axis named "n": the instances are split across its
        devices (`cfjax.sharding`); R, C, the labels, the masks and Y along n, X and theta
        replicated. The result equals the single-device fit up to the order of float sums, and
        carries no `state`.
      progress: show a tqdm progress bar (iterative methods advance in chunks of
        `chunk_steps`; `auto` advances candidate by candidate).
      checkpoint: a folder for orbax checkpoints written between chunks; a fit that finds a
        checkpoint of the same run there resumes from it (iterative methods).
      chunk_steps: steps per chunk for `progress` and `checkpoint` (default 25).

    Returns:
      `FitResult`; `cfjax.predict.proba(result.params, config)` are the probabilities of every
      column.

    Raises:
      ValueError: naming the argument, for anything invalid (checked before compiling).
    """
    hparams, config = prepare_inputs(problem, hparams, config)
    _check_init(init, problem, config)
    method = solvers.get(config.method)
    if mesh is not None and isinstance(init, solvers.DriverState):
        raise ValueError("init: a fit on a mesh continues from Params (result.params), not from a DriverState")
    if progress or checkpoint is not None:
        if mesh is not None:
            raise ValueError("mesh: progress and checkpoints run on one device; drop one of them")
        if method.fit is not None:
            if checkpoint is not None:
                raise ValueError(f"checkpoint: {config.method!r} is one compiled program without steps to checkpoint")
            if method.fit_with_progress is not None:
                return method.fit_with_progress(key, problem, hparams, config)
            return fit_jit(key, problem, hparams, config)
        return _fit_in_chunks(key, problem, hparams, config, init, progress, checkpoint, chunk_steps)
    return fit_unchecked(key, problem, hparams, config, mesh, init)


def fit_unchecked(
    key: jax.Array, problem: Problem, hparams: Hparams, config: Config, mesh: Mesh | None = None, init: Any = None
) -> FitResult:
    """`fit` without the host-side checks, for callers that have already run them."""
    if mesh is None:
        return fit_jit(key, problem, hparams, config, init)
    placed = sharding.shard_problem(problem, mesh)
    if isinstance(init, Params):
        extra = placed.n_instances - problem.n_instances
        init = init._replace(Y=jax.numpy.pad(init.Y, [(0, 0), (0, extra)]))
    with jax.sharding.set_mesh(mesh):
        result = _fit_on_mesh_jit(key, placed, hparams, config, init, mesh)
    return sharding.unpad(result, problem.n_instances, mesh)


# ----------------------------------------------------------------------------------------------
# chunked runs


@functools.partial(jit, static_argnames="config")
def _start(key, problem, hparams, config, init):
    method = solvers.get(config.method)
    hparams = driver.method_hparams(method, hparams)
    prepared, _ = driver.prepare(problem, hparams, config)
    return driver.start(method, key, prepared, hparams, config, init)


@functools.partial(jit, static_argnames=("config", "length"))
def _advance(state, problem, hparams, config, length):
    method = solvers.get(config.method)
    hparams = driver.method_hparams(method, hparams)
    prepared, _ = driver.prepare(problem, hparams, config)
    return driver.advance(method, state, prepared, hparams, config, length)


@functools.partial(jit, static_argnames="config")
def _finish(state, history, problem, hparams, config):
    method = solvers.get(config.method)
    hparams = driver.method_hparams(method, hparams)
    prepared, stats = driver.prepare(problem, hparams, config)
    return driver.finish(method, state, history, prepared, hparams, config, stats)


def _fingerprint(problem: Problem, hparams: Any, config: Config, extra: dict | None = None) -> dict:
    return {
        "config": repr(config),
        "shapes": {k: list(np.shape(v)) for k, v in problem._asdict().items()},
        "hparams": {k: np.asarray(v).tolist() for k, v in hparams._asdict().items()},
        **(extra or {}),
    }


def _fit_in_chunks(key, problem, hparams, config, init, progress, checkpoint, chunk_steps) -> FitResult:
    return chunks.run_in_chunks(
        start=lambda: _start(key, problem, hparams, config, init),
        advance=lambda state, length: _advance(state, problem, hparams, config, length),
        finish=lambda state, history: _finish(state, history, problem, hparams, config),
        total=config.max_iter,
        chunk=chunk_steps,
        progress=progress,
        checkpoint=checkpoint,
        fingerprint=_fingerprint(problem, hparams, config),
        desc=config.method,
    )
