r"""Grids of hyperparameters x seeds in one compiled call, and model selection by stratified folds.

A sweep is the single fit `cfjax.fit_jit(key, problem, hparams, config)` evaluated at every
grid point g and every seed s. Because every field of `Hparams` is traced, the whole sweep is
one program: it is compiled once per (grid size G, number of seeds S, `config`, problem shapes)
and a new grid of the same size reuses it.

* `grid(**axes)` builds the cartesian product of hyperparameter values as one `Hparams` whose
  fields have a leading axis G; `take(grid, g)` is one point of it.
* `run(keys, problem, grid, config)` returns a `FitResult` whose leaves have leading axes
  (G, S): entry [g, s] is the single fit with `keys[s]` and `take(grid, g)`.

Model selection by K-fold cross-validation on the labeled columns (`select`) lives in
`cfjax.selection` and is re-exported here.

Three batching strategies run the same computation (results agree to float rounding):

=================  =====================================================================
``"vmap"``         `jax.vmap` over G and then S: every fit advances in lock-step; memory
                   grows with G * S. Best where wide batched kernels pay (GPU, TPU).
``"map"``          `lax.map` over the G * S flattened fits: sequential inside one program,
                   memory of about one fit; no per-call dispatch.
``"map_batched"``  `lax.map(..., batch_size=k)`: k fits vmapped per sequential step.
``"auto"``         "map" on CPU, "vmap" on GPU / TPU (`jax.default_backend()`).
=================  =====================================================================

Two things make a sweep cheaper than a loop of single fits beyond dispatch: work that does not
depend on the swept values is computed once (with the default `init="svd"` and a confidence
strategy that ignores hparams, XLA hoists the SVD of C * R out of the sequential map), and
under "vmap" a fit that does not depend on its key (init="svd" with a deterministic method) is
not batched over seeds at all, so the S seeds cost one fit. On a 2-core CPU
(`benchmarks/bench_sweep.py`, 16 rho x 4 seeds, n = 20000, 50 iterations), "map" took
0.5-1.0x the time of the loop; "vmap" 0.2-0.3x with init="svd" but 1.4-1.6x with
init="random" (a real batch of 64 fits), hence "map" as the CPU default.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cfjax import sharding, solvers
from cfjax.compilation import jit
from cfjax.solvers import chunks, driver
from cfjax.structs import Config, FitResult, Hparams, Problem
from cfjax.validation import check_fit_inputs, resolve_config

__all__ = [
    "DEFAULT_RHOS",
    "STRATEGIES",
    "grid",
    "grid_size",
    "resolve_strategy",
    "run",
    "take",
]

#: The default rho grid: 11 values in (0, 1), dense near 0 where the supervised term dominates.
#: rho = 0 is left out on purpose: with no reconstruction term the factors Y_i of the unlabeled
#: columns receive no gradient at all (L_sup only sees the labeled columns), so their predictions
#: stay whatever the initialisation made them. A small positive rho keeps them tied to R.
#: rho = 1 is left out too: it switches the labels off (the `als` method covers that limit).
DEFAULT_RHOS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

STRATEGIES = ("auto", "vmap", "map", "map_batched")

_FIELDS = Hparams._fields


# --------------------------------------------------------------------------------------------
# grids


def grid(*, method: str | None = None, dtype: Any = None, **axes: Sequence[float]) -> Hparams:
    """The cartesian product of hyperparameter values, as one `Hparams` with a leading axis G.

    Axes vary in the order given, the last fastest (as `itertools.product`): `grid(rho=[a, b],
    lam=[x, y])` is (a, x), (a, y), (b, x), (b, y).

    **Fields not named** take the registry defaults of `method` when it is given
    (`cfjax.solvers.get(method).hparams()`, e.g. lam = 1 for joint), and otherwise the
    method-independent defaults of `Hparams.create` (lam = 0.01): pass `method=` to sweep a
    method at the settings it is run with elsewhere.

    Args:
      method: a registered method whose defaults fill the fields not named.
      dtype: float dtype of every field (default: JAX's default float, as `Hparams.create`).
      **axes: field name of `Hparams` -> non-empty 1-D sequence of values.

    Returns:
      `Hparams` whose every field has shape (G,), G = the product of the axis lengths.

    Raises:
      ValueError: naming an unknown field or method, or an empty / non-1-D axis.
    """
    if not axes:
        raise ValueError(f"axes: give at least one of {list(_FIELDS)}")
    values = {}
    for name, value in axes.items():
        if name not in _FIELDS:
            raise ValueError(f"{name}: not a field of Hparams; choose from {list(_FIELDS)}")
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(
                f"{name}: expected a non-empty 1-D sequence of values, got shape {arr.shape}"
            )
        values[name] = arr
    points = np.array(list(itertools.product(*values.values())), dtype=np.float64)  # (G, n_axes)
    size = points.shape[0]
    if method is None:
        defaults = Hparams.create(dtype=dtype)
    else:
        defaults = solvers.get(method).hparams(dtype=dtype)
    columns = {name: points[:, j] for j, name in enumerate(values)}
    return Hparams(
        **{
            name: jnp.asarray(columns[name], getattr(defaults, name).dtype)
            if name in columns
            else jnp.full((size,), getattr(defaults, name))
            for name in _FIELDS
        }
    )


def grid_size(hparams_grid: Hparams) -> int:
    """G, the length of the leading axis shared by every field of a grid."""
    sizes = {np.shape(getattr(hparams_grid, name)) for name in _FIELDS}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(
            f"grid: every field must have the same shape (G,), got shapes {sorted(sizes)}"
        )
    return next(iter(sizes))[0]


def take(hparams_grid: Hparams, g: int) -> Hparams:
    """Grid point `g` as scalar `Hparams` (what the single fit `cfjax.fit_jit` takes)."""
    return jax.tree.map(lambda x: x[g], hparams_grid)


def _as_grid(hparams_grid: Hparams) -> Hparams:
    """Scalar fields broadcast to (G,); every field in JAX's default float dtype.

    Fixing shapes and dtypes on the host is what makes "same G, same program" hold however
    the grid was built.
    """
    if not isinstance(hparams_grid, Hparams):
        raise ValueError(
            "grid: expected cfjax.Hparams (use cfjax.sweep.grid), "
            f"got {type(hparams_grid).__name__}"
        )
    shapes = {name: np.shape(getattr(hparams_grid, name)) for name in _FIELDS}
    lengths = {s[0] for s in shapes.values() if len(s) == 1}
    if any(len(s) > 1 for s in shapes.values()) or len(lengths) > 1:
        raise ValueError(f"grid: fields must be scalars or share one shape (G,), got {shapes}")
    size = lengths.pop() if lengths else 1
    if size == 0:
        raise ValueError("grid: G = 0 grid points")
    dtype = jnp.result_type(float)
    return Hparams(
        **{
            name: jnp.broadcast_to(jnp.asarray(getattr(hparams_grid, name), dtype), (size,))
            for name in _FIELDS
        }
    )


# --------------------------------------------------------------------------------------------
# the sweep


def resolve_strategy(strategy: str) -> str:
    """ "auto" -> "map" on CPU, "vmap" elsewhere; other names are checked and returned."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown {strategy!r}; choose from {list(STRATEGIES)}")
    if strategy == "auto":
        return "map" if jax.default_backend() == "cpu" else "vmap"
    return strategy


def _flat_index(size: int, n_seeds: int) -> tuple[jax.Array, jax.Array]:
    """(g, s) of every fit, s fastest, so a flat result reshapes to (G, S) directly."""
    return jnp.repeat(jnp.arange(size), n_seeds), jnp.tile(jnp.arange(n_seeds), size)


def _over_fits(fn, strategy: str, batch_size: int | None):
    """`fn` applied to every fit of a flattened batch (leading axis G * S) by the strategy."""
    if strategy == "vmap":
        return jax.vmap(fn)
    return lambda *xs: jax.lax.map(lambda x: fn(*x), xs, batch_size=batch_size)


def _sweep(
    keys: jax.Array,
    problem: Problem,
    hparams_grid: Hparams,
    config: Config,
    strategy: str,
    batch_size: int | None,
    keep_state: bool = False,
) -> FitResult:
    """The traced sweep: (S,) keys x (G,) grid -> FitResult with leading (G, S)."""

    def fit(k, h):
        # Looked up at trace time (not bound at import) so tests can count traces.
        result = solvers.fit_traced(k, problem, h, config)
        return result if keep_state else result._replace(state=None)

    size, n_seeds = grid_size(hparams_grid), keys.shape[0]
    if strategy == "vmap":
        over_seeds = jax.vmap(fit, in_axes=(0, None))
        return jax.vmap(over_seeds, in_axes=(None, 0))(keys, hparams_grid)
    g_index, s_index = _flat_index(size, n_seeds)
    flat_grid = jax.tree.map(lambda x: x[g_index], hparams_grid)
    out = _over_fits(fit, strategy, batch_size)(keys[s_index], flat_grid)
    return jax.tree.map(lambda x: x.reshape((size, n_seeds) + x.shape[1:]), out)


_sweep_jit = jit(_sweep, static_argnames=("config", "strategy", "batch_size", "keep_state"))


def _sweep_on_mesh(keys, problem, hparams_grid, config, strategy, batch_size, mesh):
    sweep = functools.partial(_sweep, config=config, strategy=strategy, batch_size=batch_size)
    return sharding.on_mesh(sweep, mesh)(keys, problem, hparams_grid)


_sweep_on_mesh_jit = jit(_sweep_on_mesh, static_argnames=("config", "strategy", "batch_size", "mesh"))


def _check_keys(keys: Any) -> jax.Array:
    if not (isinstance(keys, jax.Array) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)):
        raise ValueError("keys: expected typed keys, e.g. jax.random.split(jax.random.key(0), S)")
    if keys.ndim != 1 or keys.shape[0] == 0:
        raise ValueError(f"keys: expected shape (S,) with S >= 1, got {keys.shape}")
    return keys


def check_sweep_inputs(
    keys: Any, problem: Problem, grid: Hparams, config: Config, strategy: str, batch_size: Any
) -> tuple[jax.Array, Hparams, Config, str, int | None]:
    """Host-side checks of `run`'s arguments; returns them normalised."""
    keys = _check_keys(keys)
    hparams_grid = _as_grid(grid)
    config = resolve_config(config, problem)
    check_fit_inputs(problem, hparams_grid, config, scalar=False)
    strategy = resolve_strategy(strategy)
    if strategy == "map_batched":
        if (
            not isinstance(batch_size, (int, np.integer))
            or isinstance(batch_size, bool)
            or batch_size < 1
        ):
            raise ValueError(f"batch_size: 'map_batched' needs a positive int, got {batch_size!r}")
        batch_size = int(batch_size)
    elif batch_size is not None:
        raise ValueError(
            f"batch_size: only used by strategy 'map_batched', got {batch_size!r} with {strategy!r}"
        )
    return keys, hparams_grid, config, strategy, batch_size


def run(
    keys: jax.Array,
    problem: Problem,
    grid: Hparams,
    config: Config,
    strategy: str = "auto",
    batch_size: int | None = None,
    *,
    mesh: Mesh | None = None,
    progress: bool = False,
    checkpoint: Any = None,
    chunk_steps: int | None = None,
    keep_state: bool = False,
) -> FitResult:
    """Every grid point x every seed, as one compiled program.

    Entry [g, s] of every leaf equals `cfjax.fit(keys[s], problem, take(grid, g), config)` up
    to float rounding (batched kernels may round differently).

    Args:
      keys: (S,) typed PRNG keys, one per seed (`jax.random.split(key, S)`). Traced.
      problem: the `Problem`, shared by every fit (not batched). Traced.
      grid: `Hparams` with fields of shape (G,) (scalars are broadcast), e.g. from `grid`. Traced:
        a new grid of the same size G does not recompile.
      config: static; one compile per (G, S, config, problem shapes).
      strategy: "auto", "vmap", "map" or "map_batched" (see the module docstring). Static.
      batch_size: fits per step for "map_batched" (required there, and only there). Static.
      mesh: optional `jax.sharding.Mesh` with an axis "n": the problem (and every fit's Y) is
        split along the instances across its devices, as in `cfjax.fit`. Static.
      progress: a tqdm bar over steps x fits; the sweep then advances all fits together in
        chunks of `chunk_steps` steps (iterative methods).
      checkpoint: a folder for orbax checkpoints between chunks; an interrupted sweep run again
        with the same folder resumes where it stopped and ends with the same result.
      keep_state: keep every fit's `DriverState` (to continue the fits; memory grows with the
        optimizer state). Default: `state` is None.

    Returns:
      `FitResult` whose leaves have leading axes (G, S).

    Raises:
      ValueError: naming the argument, after host-side checks of every grid point.
    """
    keys, hparams_grid, config, strategy, batch_size = check_sweep_inputs(
        keys, problem, grid, config, strategy, batch_size
    )
    if progress or checkpoint is not None:
        if mesh is not None:
            raise ValueError("mesh: progress and checkpoints run on one device; drop one of them")
        if solvers.get(config.method).fit is not None:
            raise ValueError(f"progress: {config.method!r} is one compiled program; sweep it without progress")
        result = _run_in_chunks(keys, problem, hparams_grid, config, strategy, batch_size, progress,
                                checkpoint, chunk_steps)
        return result if keep_state else result._replace(state=None)
    if mesh is None:
        return _sweep_jit(keys, problem, hparams_grid, config, strategy, batch_size, keep_state)
    placed = sharding.shard_problem(problem, mesh)
    with jax.sharding.set_mesh(mesh):
        result = _sweep_on_mesh_jit(keys, placed, hparams_grid, config, strategy, batch_size, mesh)
    return sharding.unpad(result, problem.n_instances, mesh)


# --------------------------------------------------------------------------------------------
# the sweep in chunks of steps (progress, checkpoints)


def _prepared(problem, hparams, config):
    method = solvers.get(config.method)
    hparams = driver.method_hparams(method, hparams)
    prepared, stats = driver.prepare(problem, hparams, config)
    return method, hparams, prepared, stats


@functools.partial(jit, static_argnames=("config", "strategy", "batch_size"))
def _start_all(keys, problem, flat_grid, config, strategy, batch_size):
    def one(k, h):
        method, h, prepared, _ = _prepared(problem, h, config)
        return driver.start(method, k, prepared, h, config)

    return _over_fits(one, strategy, batch_size)(keys, flat_grid)


@functools.partial(jit, static_argnames=("config", "strategy", "batch_size", "length"))
def _advance_all(states, problem, flat_grid, config, strategy, batch_size, length):
    def one(state, h):
        method, h, prepared, _ = _prepared(problem, h, config)
        state, history = driver.advance(method, state, prepared, h, config, length)
        return state, history

    return _over_fits(one, strategy, batch_size)(states, flat_grid)


@functools.partial(jit, static_argnames=("config", "strategy", "batch_size"))
def _finish_all(states, history, problem, flat_grid, config, strategy, batch_size):
    def one(state, hist, h):
        method, h, prepared, stats = _prepared(problem, h, config)
        return driver.finish(method, state, hist, prepared, h, config, stats)

    return _over_fits(one, strategy, batch_size)(states, history, flat_grid)


def _run_in_chunks(keys, problem, hparams_grid, config, strategy, batch_size, progress, checkpoint, chunk_steps):
    from cfjax.api import _fingerprint

    size, n_seeds = grid_size(hparams_grid), keys.shape[0]
    g_index, s_index = _flat_index(size, n_seeds)
    flat_keys = keys[s_index]
    flat_grid = jax.tree.map(lambda x: x[g_index], hparams_grid)
    # a lax.map over fits stacks each chunk's history as (fits, length): iteration axis last
    result = chunks.run_in_chunks(
        start=lambda: _start_all(flat_keys, problem, flat_grid, config, strategy, batch_size),
        advance=lambda states, length: _advance_all(states, problem, flat_grid, config, strategy, batch_size, length),
        finish=lambda states, history: _finish_all(states, history, problem, flat_grid, config, strategy, batch_size),
        total=config.max_iter,
        chunk=chunk_steps,
        progress=progress,
        checkpoint=checkpoint,
        fingerprint=_fingerprint(problem, hparams_grid, config, {"seeds": np.asarray(jax.random.key_data(keys)).tolist(),
                                                                  "strategy": strategy, "batch_size": batch_size}),
        n_fits=size * n_seeds,
        desc=f"sweep {config.method}",
    )
    return jax.tree.map(lambda x: x.reshape((size, n_seeds) + x.shape[1:]), result)


_FROM_SELECTION = ("Selection", "fold_problem", "select", "stratified_folds")


def __getattr__(name: str) -> Any:
    """`cfjax.sweep.select` and friends: model selection lives in `cfjax.selection`."""
    if name in _FROM_SELECTION:
        from cfjax import selection

        return getattr(selection, name)
    raise AttributeError(f"module 'cfjax.sweep' has no attribute {name!r}")
