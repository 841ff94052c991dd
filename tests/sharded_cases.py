"""Sharded-vs-unsharded fits, run in a subprocess with 8 simulated CPU devices.

`tests/test_sharding.py` starts this file with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the flag must be set before jax starts,
so it cannot run inside the pytest process) and reads one JSON line per case from stdout.
"""

from __future__ import annotations

import json
import sys

#: (name, method, formulation, sweep?) compared sharded vs unsharded.
CASES = (
    ("als", "als", "free", False),
    ("joint", "joint", "free", False),
    ("joint_fold_in", "joint", "fold_in", False),
    ("mm_als", "mm_als", "free", False),
    ("sweep_joint_fold_in", "joint", "fold_in", True),
    # K = 3 classes: R (m K, n) and one-hot labels (K, n), split along their last axis
    ("k_class_als", "als", "free", False),
    ("k_class_joint_fold_in", "joint", "fold_in", False),
)
#: The K-class cases, also run alone (float64, Auto axes) by the fast tier: ``sharded_cases.py k_class``.
K_CLASS_CASES = tuple(c for c in CASES if c[0].startswith("k_class"))
#: (dtype, axis type) pairs: float64 shows exactness under both axis types; float32 the
#: figures a user sees (the axis type changes nothing numerically, so one suffices there).
SETTINGS = (("float64", "auto"), ("float64", "explicit"), ("float32", "auto"))
N_DEVICES = 8
#: Not a multiple of 8, so every case also exercises the zero-confidence padding.
N_INSTANCES = 203


def _max_abs(a, b) -> float:
    import jax.numpy as jnp

    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def _max_rel(a, b) -> float:
    import jax.numpy as jnp

    return _max_abs(a, b) / (1.0 + float(jnp.max(jnp.abs(jnp.asarray(b)))))


def _shapes(result):
    import jax
    import jax.numpy as jnp

    if hasattr(result, "state"):
        result = result._replace(state=None)
    return jax.tree.map(jnp.shape, result)


def run_case(name, method, formulation, is_sweep, axis_type, dtype_name) -> dict:
    import jax
    import jax.numpy as jnp
    from jax.sharding import AxisType

    import cfjax
    from cfjax import data, predict, solvers, sweep
    from cfjax.structs import Config

    dtype = jnp.dtype(dtype_name)
    kind = AxisType.Auto if axis_type == "auto" else AxisType.Explicit
    mesh = jax.make_mesh((N_DEVICES,), ("n",), axis_types=(kind,))
    if name.startswith("k_class"):
        from test_multiclass import ensemble  # a sibling of this file: its folder is sys.path[0]

        R, labels, _ = ensemble(0, n=N_INSTANCES, missing=0.1)
        problem = cfjax.from_numpy(R, labels, dtype=dtype)
    else:
        problem = data.preset(jax.random.key(0), "seed", n_instances=N_INSTANCES, missing_rate=0.1,
                              dtype=dtype).problem
    config = Config(method=method, formulation=formulation, latent_dim=4, max_iter=10)
    if is_sweep:
        keys = jax.random.split(jax.random.key(1), 2)
        grid = sweep.grid(rho=[0.2, 0.8], lam=[0.01, 1.0], dtype=dtype)
        plain = sweep.run(keys, problem, grid, config, strategy="vmap")
        sharded = sweep.run(keys, problem, grid, config, strategy="vmap", mesh=mesh)
        p_plain = jax.vmap(jax.vmap(lambda p: predict.proba(p, config)))(plain.params)
        p_sharded = jax.vmap(jax.vmap(lambda p: predict.proba(p, config)))(sharded.params)
    else:
        hparams = solvers.get(method).hparams(dtype=dtype)
        plain = cfjax.fit(jax.random.key(1), problem, hparams, config)
        sharded = cfjax.fit(jax.random.key(1), problem, hparams, config, mesh=mesh)
        p_plain = predict.proba(plain.params, config)
        p_sharded = predict.proba(sharded.params, config)
    # history.valid_pr_auc is NaN by design here (no validation columns), so it is not checked.
    checked = (sharded.params, sharded.history.total, p_sharded)
    finite = all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(checked))
    return {
        "case": name, "axis_type": axis_type, "dtype": dtype_name,
        "proba": _max_abs(p_sharded, p_plain),
        "Y": _max_rel(sharded.params.Y, plain.params.Y),
        "X": _max_rel(sharded.params.X, plain.params.X),
        "total": _max_rel(sharded.history.total, plain.history.total),
        # A fit on a mesh returns no DriverState (its instance-sized arrays would be gathered).
        "same_shapes": _shapes(sharded) == _shapes(plain),
        "finite": finite,
    }


def layout_case() -> dict:
    """With n a multiple of the device count nothing is gathered: Y stays split, X replicated."""
    import jax
    from jax.sharding import AxisType

    import cfjax
    from cfjax import data
    from cfjax.structs import Config

    out = {"case": "layout"}
    for axis_type, kind in (("auto", AxisType.Auto), ("explicit", AxisType.Explicit)):
        mesh = jax.make_mesh((N_DEVICES,), ("n",), axis_types=(kind,))
        problem = data.preset(jax.random.key(0), "seed", n_instances=200).problem
        result = cfjax.fit(jax.random.key(1), problem, config=Config(method="als", latent_dim=4, max_iter=3), mesh=mesh)
        out[axis_type] = {
            "Y": str(result.params.Y.sharding.spec),
            "X": str(result.params.X.sharding.spec),
            "Y_devices": len(result.params.Y.sharding.device_set),
        }
    return out


def main() -> None:
    """Every row; with the argument ``layout``, the layout row only (a few seconds); with
    ``k_class``, the layout row and the K-class cases in float64 under Auto axes."""
    import jax

    if jax.device_count() != N_DEVICES:
        raise SystemExit(f"expected {N_DEVICES} devices (set XLA_FLAGS), got {jax.device_count()}")
    print(json.dumps(layout_case()), flush=True)
    if sys.argv[1:] == ["layout"]:
        return
    if sys.argv[1:] == ["k_class"]:
        with jax.enable_x64(True):
            for case in K_CLASS_CASES:
                print(json.dumps(run_case(*case, "auto", "float64")), flush=True)
        return
    for dtype_name, axis_type in SETTINGS:
        with jax.enable_x64(dtype_name == "float64"):
            for case in CASES:
                print(json.dumps(run_case(*case, axis_type, dtype_name)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
