"""One process of a multi-process sharded fit and sweep, on CPU devices over localhost.

`tests/test_distributed.py` starts this file once per process (``--process-id`` 0 .. P-1), all
pointed at one coordinator. Each process joins the job with `jax.distributed.initialize` (CPU
collectives: jax's default, gloo over TCP), owns ``--local-devices`` CPU devices, and builds
the global mesh over every process's devices. Every process then, in float64, for each case
of ``--cases`` (`CASES`: ALS or the fold-in joint method, one fit or a vmapped sweep of 2 rho x
2 lam x 2 seeds):

* fits with ``mesh=``: on n = 200 instances (Y stays split across the processes' devices and
  is gathered here with `jax.experimental.multihost_utils.process_allgather`) or n = 203, not
  a multiple of the device count (the padding, and the gathered Y of `cfjax.sharding.unpad`);
* fits the same without a mesh, on one local device: what a single process computes;

and prints one JSON line per case: the max deviations between the two, where Y lived, and the
wall time. A launcher on a real cluster does what the test does here: one process per host,
the same script, the coordinator address, process count and id from its environment
(README "Many devices").
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time

#: name -> (method, formulation, sweep?, n). ALS: closed-form solves whose Grams are summed over
#: the instances; joint fold-in: gradients summed over them, and ridge fold-in solves. n = 200
#: is a multiple of the 4 devices (Y stays split across the processes), 203 is padded to 204
#: (`cfjax.sharding.unpad` then gathers Y, replicated).
CASES = {
    "fit_als": ("als", "free", False, 200),
    "sweep_als": ("als", "free", True, 203),
    "fit_joint_fold_in": ("joint", "fold_in", False, 203),
    "sweep_joint_fold_in": ("joint", "fold_in", True, 200),
}


def _max_abs(a, b) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _host(a):
    """The global value of `a` as NumPy on every process (gathered when split across them)."""
    import numpy as np
    from jax.experimental import multihost_utils

    if a.is_fully_addressable:
        return np.asarray(a)
    if a.sharding.is_fully_replicated:
        return np.asarray(a.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def _layout(a) -> dict:
    return {
        "spec": str(a.sharding.spec),
        "processes": len({d.process_index for d in a.sharding.device_set}),
        "devices": len(a.sharding.device_set),
    }


def _compare(name, sharded, plain, proba, start) -> dict:
    """Deviations of the sharded result from the plain one; `proba` maps params to probabilities
    (applied to the sharded params gathered to this process)."""
    import jax

    gathered = jax.tree.map(_host, sharded.params)
    return {
        "case": name,
        "process": jax.process_index(),
        "Y_layout": _layout(sharded.params.Y),
        "Y": _max_abs(gathered.Y, plain.params.Y),
        "X": _max_abs(gathered.X, plain.params.X),
        "total": _max_abs(_host(sharded.history.total), plain.history.total),
        "proba": _max_abs(proba(gathered), proba(plain.params)),
        "seconds": time.perf_counter() - start,
    }


def run(num_processes: int, cases: list[str]) -> list[dict]:
    import jax
    import jax.numpy as jnp

    import cfjax
    from cfjax import data, predict, solvers, sweep
    from cfjax.structs import Config

    if jax.process_count() != num_processes:
        raise SystemExit(f"expected {num_processes} processes, jax sees {jax.process_count()}")
    mesh = jax.make_mesh((jax.device_count(),), ("n",))
    rows = []
    for name in cases:
        method, formulation, is_sweep, n = CASES[name]
        start = time.perf_counter()
        problem = data.preset(
            jax.random.key(0), "seed", n_instances=n, missing_rate=0.1, dtype=jnp.float64
        ).problem
        config = Config(method=method, formulation=formulation, latent_dim=4, max_iter=10)
        if is_sweep:
            keys = jax.random.split(jax.random.key(1), 2)
            grid = sweep.grid(rho=[0.2, 0.8], lam=[0.01, 1.0], dtype=jnp.float64)
            sharded = sweep.run(keys, problem, grid, config, strategy="vmap", mesh=mesh)
            plain = sweep.run(keys, problem, grid, config, strategy="vmap")
            proba = jax.vmap(jax.vmap(functools.partial(predict.proba, config=config)))
        else:
            hparams = solvers.get(method).hparams(dtype=jnp.float64)
            sharded = cfjax.fit(jax.random.key(1), problem, hparams, config, mesh=mesh)
            plain = cfjax.fit(jax.random.key(1), problem, hparams, config)
            proba = functools.partial(predict.proba, config=config)
        rows.append(_compare(name, sharded, plain, proba, start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", required=True, help="host:port of process 0's coordinator")
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--local-devices", type=int, default=2, help="CPU devices of this process")
    parser.add_argument(
        "--init-timeout", type=int, default=120, help="seconds to wait for every process"
    )
    args = parser.parse_args()

    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", args.local_devices)
    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        initialization_timeout=args.init_timeout,
        heartbeat_timeout_seconds=30,
        shutdown_timeout_seconds=30,
    )
    for row in run(args.num_processes, args.cases):
        print(json.dumps(row), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
