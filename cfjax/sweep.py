r"""Grids of hyperparameters x seeds in one compiled call, and model selection by stratified folds.

A sweep is the single fit `cfjax.fit_jit(key, problem, hparams, config)` evaluated at every
grid point g and every seed s. Because every field of `Hparams` is traced, the whole sweep is
one program: it is compiled once per (grid size G, number of seeds S, `config`, problem shapes)
and a new grid of the same size reuses it.

* `grid(**axes)` builds the cartesian product of hyperparameter values as one `Hparams` whose
  fields have a leading axis G; `take(grid, g)` is one point of it.
* `run(keys, problem, grid, config)` returns a `FitResult` whose leaves have leading axes
  (G, S): entry [g, s] is the single fit with `keys[s]` and `take(grid, g)`.
* `select(key, problem, grid, config)` picks a grid point by K-fold cross-validation over the
  training columns only, then refits it on all labels. The transductive targets (columns in
  neither mask) are never scored, so their hidden labels cannot influence the choice.

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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cfjax import metrics, sharding, solvers
from cfjax.api import fit_unchecked
from cfjax.data import require_labels
from cfjax.predict import proba
from cfjax.structs import Config, FitResult, Hparams, Problem
from cfjax.validation import check_fit_inputs

__all__ = [
    "DEFAULT_RHOS",
    "STRATEGIES",
    "Selection",
    "fold_problem",
    "grid",
    "grid_size",
    "resolve_strategy",
    "run",
    "select",
    "stratified_folds",
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


def grid(*, dtype: Any = None, **axes: Sequence[float]) -> Hparams:
    """The cartesian product of hyperparameter values, as one `Hparams` with a leading axis G.

    Axes vary in the order given, the last fastest (as `itertools.product`): `grid(rho=[a, b],
    lam=[x, y])` is (a, x), (a, y), (b, x), (b, y). Fields not named keep the defaults of
    `Hparams.create`.

    Args:
      dtype: float dtype of every field (default: JAX's default float, as `Hparams.create`).
      **axes: field name of `Hparams` -> non-empty 1-D sequence of values.

    Returns:
      `Hparams` whose every field has shape (G,), G = the product of the axis lengths.

    Raises:
      ValueError: naming an unknown field or an empty / non-1-D axis.
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
    defaults = Hparams.create(dtype=dtype)
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


def _sweep(
    keys: jax.Array,
    problem: Problem,
    hparams_grid: Hparams,
    config: Config,
    strategy: str,
    batch_size: int | None,
) -> FitResult:
    """The traced sweep: (S,) keys x (G,) grid -> FitResult with leading (G, S)."""
    # Looked up at trace time (not bound at import) so tests can count traces.
    fit = functools.partial(solvers.fit_traced, config=config)
    size, n_seeds = grid_size(hparams_grid), keys.shape[0]
    if strategy == "vmap":
        over_seeds = jax.vmap(lambda k, h: fit(k, problem, h), in_axes=(0, None))
        return jax.vmap(over_seeds, in_axes=(None, 0))(keys, hparams_grid)
    # Flatten (g, s) with s fastest, so the result reshapes to (G, S) directly.
    g_index = jnp.repeat(jnp.arange(size), n_seeds)
    s_index = jnp.tile(jnp.arange(n_seeds), size)
    flat_keys = keys[s_index]
    flat_grid = jax.tree.map(lambda x: x[g_index], hparams_grid)
    out = jax.lax.map(
        lambda xs: fit(xs[0], problem, xs[1]), (flat_keys, flat_grid), batch_size=batch_size
    )
    return jax.tree.map(lambda x: x.reshape((size, n_seeds) + x.shape[1:]), out)


_sweep_jit = jax.jit(_sweep, static_argnames=("config", "strategy", "batch_size"))


def _sweep_on_mesh(keys, problem, hparams_grid, config, strategy, batch_size, mesh):
    sweep = functools.partial(_sweep, config=config, strategy=strategy, batch_size=batch_size)
    return sharding.on_mesh(sweep, mesh)(keys, problem, hparams_grid)


_sweep_on_mesh_jit = jax.jit(_sweep_on_mesh, static_argnames=("config", "strategy", "batch_size", "mesh"))


def _check_keys(keys: Any) -> jax.Array:
    if not (isinstance(keys, jax.Array) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)):
        raise ValueError("keys: expected typed keys, e.g. jax.random.split(jax.random.key(0), S)")
    if keys.ndim != 1 or keys.shape[0] == 0:
        raise ValueError(f"keys: expected shape (S,) with S >= 1, got {keys.shape}")
    return keys


def run(
    keys: jax.Array,
    problem: Problem,
    grid: Hparams,
    config: Config,
    strategy: str = "auto",
    batch_size: int | None = None,
    *,
    mesh: Mesh | None = None,
) -> FitResult:
    """Every grid point x every seed, as one compiled program.

    Entry [g, s] of every leaf equals `cfjax.fit_jit(keys[s], problem, take(grid, g), config)`
    up to float rounding (batched kernels may round differently).

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

    Returns:
      `FitResult` whose leaves have leading axes (G, S).

    Raises:
      ValueError: naming the argument, after host-side checks of every grid point.
    """
    keys = _check_keys(keys)
    hparams_grid = _as_grid(grid)
    check_fit_inputs(problem, hparams_grid, config)
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
    if mesh is None:
        return _sweep_jit(keys, problem, hparams_grid, config, strategy, batch_size)
    placed = sharding.shard_problem(problem, mesh)
    with jax.sharding.set_mesh(mesh):
        result = _sweep_on_mesh_jit(keys, placed, hparams_grid, config, strategy, batch_size, mesh)
    return sharding.unpad(result, problem.n_instances, mesh)


# --------------------------------------------------------------------------------------------
# model selection


def stratified_folds(key: jax.Array, problem: Problem, n_folds: int = 3) -> np.ndarray:
    """K disjoint folds of the training columns (`problem.labeled`), stratified by class.

    Within each class the training columns are shuffled by `key` and dealt round-robin, so every
    fold holds floor or ceil of (class count / K) of each class. Reads labels only where
    `problem.labeled` is set. Host-side.

    Returns:
      (K, n) bool masks, disjoint, whose union is `problem.labeled`.

    Raises:
      ValueError: if K < 2 or a class has fewer than K training columns (a fold would lack it
        or its complement would).
    """
    if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool) or n_folds < 2:
        raise ValueError(f"n_folds: must be an int >= 2, got {n_folds!r}")
    labels = np.asarray(problem.labels)
    train = np.asarray(problem.labeled)
    order = np.asarray(jax.random.permutation(key, problem.n_instances))
    folds = np.zeros((n_folds, problem.n_instances), bool)
    for cls in (False, True):
        members = order[train[order] & ((labels[order] > 0.5) == cls)]
        if members.size < n_folds:
            raise ValueError(
                f"n_folds: class {int(cls)} has {members.size} training columns, "
                f"fewer than n_folds={n_folds}"
            )
        folds[np.arange(members.size) % n_folds, members] = True
    return folds


def fold_problem(problem: Problem, fold: Any) -> Problem:
    """`problem` with the columns of `fold` moved from the training mask to the validation mask.

    Shapes are unchanged, so every fold shares the sweep's compiled program. Validation
    columns are what solvers monitor (joint's early stopping uses them), never train on.
    """
    fold = jnp.asarray(fold, bool)
    return problem._replace(labeled=problem.labeled & ~fold, validation=problem.validation | fold)


@functools.partial(jax.jit, static_argnames=("config", "metric"))
def _scores(params, labels: jax.Array, mask: jax.Array, config: Config, metric: str) -> jax.Array:
    """`metric` of each fit's transductive probabilities on `mask`: params (G, S, ...) -> (G, S)."""
    score = metrics.get(metric)

    def one(p):
        return score(labels, proba(p, config), mask)

    return jax.vmap(jax.vmap(one))(params)


class Selection(NamedTuple):
    """What `select` returns.

    Attributes:
      index: the chosen grid point g (host int).
      hparams: `take(grid, index)`.
      scores: (G, K) the metric of each grid point on each fold's held-out columns (mean over
        seeds).
      mean: (G,) mean over folds.
      sd: (G,) sample standard deviation over folds (ddof = 1).
      refit: the `FitResult` of `hparams` fitted on all the problem's training columns.
      folds: (K, n) bool, the held-out columns of each fold.
    """

    index: int
    hparams: Hparams
    scores: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    refit: FitResult
    folds: np.ndarray


def select(
    key: jax.Array,
    problem: Problem,
    grid: Hparams,
    config: Config,
    n_folds: int = 3,
    metric: str = "pr_auc",
    seeds: int = 1,
    strategy: str = "auto",
    batch_size: int | None = None,
    *,
    mesh: Mesh | None = None,
) -> Selection:
    """Chooses a grid point by stratified K-fold cross-validation on the training columns.

    For each fold k, its columns move from `labeled` to `validation` (`fold_problem`); every grid
    point is fitted with `seeds` seeds (`run`, one compiled program shared by the K folds) and
    scored by `metric` on the fold's columns against their labels, from the transductive
    probabilities. The grid point with the best mean over folds wins (ties: the first in grid
    order; NaN scores count as worst) and is refitted on all training columns.

    Columns in neither mask (the transductive targets) are never scored and their labels are
    never read: permuting them leaves the selection identical. Columns already in
    `problem.validation` stay there in every fold and are not scored either.

    Args:
      key: a typed PRNG key; split into the fold assignment and the fit keys.
      problem: the `Problem`. Each class needs at least `n_folds` training columns.
      grid: `Hparams` with fields of shape (G,) (e.g. from `grid`).
      config: static configuration of every fit.
      n_folds: K >= 2.
      metric: a name in `cfjax.metrics.METRICS`; its direction from `metrics.higher_is_better`.
      seeds: S >= 1 fits per grid point and fold; their scores are averaged. The refit uses the
        first of these keys.
      strategy, batch_size, mesh: as in `run`.

    Returns:
      `Selection`.
    """
    metrics.get(metric)
    if not isinstance(seeds, (int, np.integer)) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds: must be an int >= 1, got {seeds!r}")
    if not (
        isinstance(key, jax.Array)
        and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        and key.ndim == 0
    ):
        raise ValueError("key: expected one typed key, e.g. jax.random.key(0)")
    hparams_grid = _as_grid(grid)
    check_fit_inputs(problem, hparams_grid, config)
    fold_key, fit_key = jax.random.split(key)
    keys = jax.random.split(fit_key, seeds)
    folds = stratified_folds(fold_key, problem, n_folds)

    per_fold = []
    for fold in folds:
        sub = fold_problem(problem, fold)
        require_labels(sub)
        result = run(keys, sub, hparams_grid, config, strategy=strategy, batch_size=batch_size, mesh=mesh)
        per_fold.append(
            np.asarray(_scores(result.params, problem.labels, jnp.asarray(fold), config, metric))
        )
    scores = np.stack(per_fold, axis=-1).mean(axis=1)  # (G, S, K) -> (G, K)
    mean = scores.mean(axis=1)
    sd = scores.std(axis=1, ddof=1)
    signed = mean if metrics.higher_is_better(metric) else -mean
    index = int(np.argmax(np.where(np.isnan(signed), -np.inf, signed)))
    best = take(hparams_grid, index)
    refit = fit_unchecked(keys[0], problem, best, config, mesh)
    return Selection(
        index=index, hparams=best, scores=scores, mean=mean, sd=sd, refit=refit, folds=folds
    )
