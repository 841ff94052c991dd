"""Data parallelism over instances: a `Problem` split along n across the devices of a mesh.

Every per-instance array (R, C, observed: (m, n); labels, labeled, validation: (n,)) is laid
out with ``PartitionSpec(None, "n")`` (``PartitionSpec("n")`` for vectors); X, theta and every
scalar are replicated. Nothing in the solvers changes: XLA's partitioner sees the input
layouts, keeps the instance factors Y split like R, turns the sums over instances (the Grams of
``update_X``, the normalised losses, the aggregator's gradients) into all-reduces, and solves
each column's ridge system on the device that holds it. Results equal the single-device fit up
to the order of floating-point sums.

**Padding.** n is padded to a multiple of the mesh's "n" size with columns of zero confidence,
unobserved and in neither label mask. Such a column adds nothing to any loss, Gram or metric,
and its factor solves to 0 (lam > 0), so the padding changes no result; `unpad` removes it from
the returned Y (gathering Y to every device when there was padding: see `unpad`).

**Chunks.** The automatic ALS chunking (`Config.chunk_size = 0`) cuts chunks from the global
instance axis, across devices; results are unchanged. Each device already holds only n / D
columns, so ``chunk_size=n`` (one chunk per sweep) is usually the better choice on a mesh
(1.6 s against 2.1 s for 5 ALS sweeps at (10, 8e4, 4) on 8 simulated CPU devices).

**Mesh axis types.** Both `AxisType.Auto` and `AxisType.Explicit` meshes work (in jax 0.10
`jax.make_mesh` defaults to Explicit). Under an Explicit mesh, operations whose sharding rule is
not defined for a split operand (the SVD of the initialisation, for one) would be type errors,
so the fit runs inside `jax.sharding.auto_axes` and the partitioner chooses the layouts
inside, as with an Auto mesh; the outputs come back with the layouts above.

**Several hosts.** Start every process with `jax.distributed.initialize()` and build the mesh
over `jax.devices()` (all hosts' devices), e.g. ``jax.make_mesh((jax.device_count(),), ("n",))``.
`shard_problem` accepts host arrays that every process holds in full (R is only m x n floats)
and places each process's columns on its own devices. For a problem too large for one host's
memory, build each field as a global array yourself
(`jax.make_array_from_process_local_data(NamedSharding(mesh, instance_spec(ndim)), local)`)
with n already a multiple of the mesh size; `shard_problem` leaves arrays that already have the
right sharding in place. A Y split across processes is gathered with
`jax.experimental.multihost_utils.process_allgather`. Tested with 2 processes on one host
(`tests/test_distributed.py`: CPU devices, gloo collectives), not yet on several machines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from cfjax.structs import FitResult, Problem

__all__ = [
    "INSTANCE_AXIS",
    "check_mesh",
    "instance_spec",
    "on_mesh",
    "pad_instances",
    "shard_problem",
    "unpad",
]

#: The mesh axis that instances (columns of R) are split over.
INSTANCE_AXIS = "n"


def check_mesh(mesh: Any) -> Mesh:
    """The mesh, or a `ValueError` naming `mesh` and what is wrong with it."""
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh: expected a jax.sharding.Mesh (e.g. jax.make_mesh), got {type(mesh).__name__}")
    if INSTANCE_AXIS not in mesh.axis_names:
        raise ValueError(
            f"mesh: needs an axis named {INSTANCE_AXIS!r} to split instances over, got axes {mesh.axis_names}"
        )
    return mesh


def instance_spec(ndim: int) -> PartitionSpec:
    """The layout of an array whose last axis is the instance axis."""
    return PartitionSpec(*([None] * (ndim - 1)), INSTANCE_AXIS)


def pad_instances(problem: Problem, multiple: int) -> Problem:
    """`problem` with n padded up to a multiple of `multiple` by zero-confidence, unlabeled columns."""
    n = problem.n_instances
    extra = -n % multiple
    if extra == 0:
        return problem

    def pad(a: jax.Array) -> jax.Array:
        return jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, extra)])

    # Zero fill is exactly "absent": R = C = 0, observed = labeled = validation = False, label 0.
    return jax.tree.map(pad, problem)


def shard_problem(problem: Problem, mesh: Mesh) -> Problem:
    """The problem padded to the mesh's "n" size and placed with every field split along n."""
    mesh = check_mesh(mesh)
    padded = pad_instances(problem, mesh.shape[INSTANCE_AXIS])

    def place(a: jax.Array) -> jax.Array:
        sharding = NamedSharding(mesh, instance_spec(a.ndim))
        if isinstance(a, jax.Array) and a.sharding == sharding:
            return a
        return jax.device_put(a, sharding)

    return jax.tree.map(place, padded)


def unpad(result: FitResult, n: int, mesh: Mesh) -> FitResult:
    """The result with the padding columns dropped from Y (which may carry leading sweep axes).

    Y keeps its split layout when n is a multiple of the mesh's "n" size (nothing to drop).
    Otherwise it is gathered, replicated, before slicing: jax has no uneven layouts, so choose n
    (or pad it yourself with zero-confidence columns) to keep a large Y split.
    """
    Y = result.params.Y
    if Y.shape[-1] == n:
        return result
    Y = jax.device_put(Y, NamedSharding(mesh, PartitionSpec()))[..., :n]
    return result._replace(params=result.params._replace(Y=Y))


def _result_specs(result: FitResult) -> FitResult:
    """Output layouts: Y split along n, everything else replicated."""
    specs = jax.tree.map(lambda _: PartitionSpec(), result)
    y_spec = instance_spec(result.params.Y.ndim)
    return specs._replace(params=specs.params._replace(Y=y_spec))


def on_mesh(fn: Callable[..., FitResult], mesh: Mesh) -> Callable[..., FitResult]:
    """`fn` made runnable inside jit on arrays laid out on `mesh`, whatever its axis types.

    Under an Auto mesh `fn` is returned as is. Under a mesh with Explicit axes it is wrapped in
    `jax.sharding.auto_axes`, with its outputs laid out as the module docstring says (Y split
    along its last axis, so a sweep's leading (G, S) axes are replicated). Call the result
    inside `jax.sharding.set_mesh(mesh)`.
    """
    mesh = check_mesh(mesh)
    explicit = tuple(name for name, kind in zip(mesh.axis_names, mesh.axis_types) if kind == AxisType.Explicit)
    if not explicit:
        return fn

    def wrapped(*args):
        # Traced without layouts: under the Explicit mesh `fn` itself would not type-check.
        plain = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
        shape = jax.eval_shape(fn, *plain)
        return jax.sharding.auto_axes(fn, axes=explicit, out_sharding=_result_specs(shape))(*args)

    return wrapped
