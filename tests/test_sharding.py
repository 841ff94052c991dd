"""Instance sharding (`cfjax.sharding`, the `mesh` argument of `fit` and `sweep.run`).

The multi-device comparisons run in a subprocess with 8 simulated CPU devices
(`tests/sharded_cases.py`): XLA fixes the device count when jax starts, so they cannot run in
this process. The in-process tests cover padding, validation and a 1-device mesh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cfjax
from cfjax import data, sharding, sweep
from cfjax.structs import Config

from . import sharded_cases

#: float64: sharding only reorders sums, so results agree to rounding.
F64_TOL = 1e-10
#: float32, max |probability difference|. Fits from the closed-form solvers move by as much
#: when the problem is merely padded, on one device (ALS 1.4e-6, MM-ALS 3.7e-5 at 20
#: iterations): the float32 sensitivity of the fit to the order of sums, not sharding. The
#: vmapped fold-in sweep solves the same ridge systems as ALS, hence ALS's bound (2.4e-6 since
#: the ridge solves are compiled calls of their own; 6.6e-7 before).
F32_TOL = {"als": 5e-6, "mm_als": 5e-5, "joint": 1e-6, "joint_fold_in": 1e-6, "sweep_joint_fold_in": 5e-6,
           "k_class_als": 5e-6, "k_class_joint_fold_in": 1e-6}


def _run_sharded_cases(*args: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={sharded_cases.N_DEVICES}"}
    script = Path(sharded_cases.__file__)
    proc = subprocess.run(
        [sys.executable, str(script), *args], check=False, env=env, capture_output=True, text=True, timeout=1800,
        cwd=script.parent.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {(r["case"], r.get("dtype"), r.get("axis_type")): r for r in rows}


@pytest.fixture(scope="module")
def sharded_results() -> dict:
    return _run_sharded_cases()


@pytest.fixture(scope="module")
def sharded_layout() -> dict:
    """The layout row and the K-class cases in float64 (the fast tier's multi-device checks; the
    slow tier runs them all)."""
    return _run_sharded_cases("k_class")


@pytest.mark.slow  # one subprocess with 8 simulated devices fits every case (~2 min on 2 cores)
@pytest.mark.parametrize("dtype,axis_type", sharded_cases.SETTINGS)
@pytest.mark.parametrize("case", [c[0] for c in sharded_cases.CASES])
def test_sharded_fit_equals_unsharded(sharded_results, case, dtype, axis_type):
    row = sharded_results[(case, dtype, axis_type)]
    assert row["same_shapes"] and row["finite"], row
    if dtype == "float64":
        for field in ("proba", "Y", "X", "total"):
            assert row[field] <= F64_TOL, (field, row)
    else:
        assert row["proba"] <= F32_TOL[case], row
        assert row["total"] <= 1e-6, row


def test_sharded_layout_keeps_instances_split(sharded_layout):
    row = sharded_layout[("layout", None, None)]
    for axis_type in ("auto", "explicit"):
        layout = row[axis_type]
        # the spec's repr is "P(None, 'n')" or "PartitionSpec(None, 'n')" depending on jax
        assert layout["Y"].endswith("(None, 'n')") and layout["Y_devices"] == sharded_cases.N_DEVICES, layout
        assert "'n'" not in layout["X"], layout


@pytest.mark.parametrize("case", [c[0] for c in sharded_cases.K_CLASS_CASES])
def test_sharded_k_class_fit_equals_unsharded(sharded_layout, case):
    """A K-class problem (rows m K, one-hot labels (K, n), both split along n and padded from 203
    to 208 columns) fitted on 8 devices is the single-device fit, in float64 to rounding."""
    row = sharded_layout[(case, "float64", "auto")]
    assert row["same_shapes"] and row["finite"], row
    for field in ("proba", "Y", "X", "total"):
        assert row[field] <= F64_TOL, (field, row)


def test_pad_instances_adds_absent_columns(key):
    problem = data.preset(key, "seed", n_instances=13).problem
    padded = sharding.pad_instances(problem, 8)
    assert padded.n_instances == 16
    for name, field in padded._asdict().items():
        np.testing.assert_array_equal(field[..., :13], getattr(problem, name))
        assert not np.any(np.asarray(field[..., 13:])), name
    assert sharding.pad_instances(problem, 13) is problem


def test_padding_changes_no_fit(key):
    problem = data.preset(key, "seed", n_instances=60).problem
    config = Config(method="als", latent_dim=3, max_iter=5)
    with jax.enable_x64(True):
        problem64 = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, problem)
        plain = cfjax.fit(key, problem64, config=config)
        padded = cfjax.fit(key, sharding.pad_instances(problem64, 8), config=config)
    np.testing.assert_allclose(padded.params.Y[:, :60], plain.params.Y, atol=1e-12)
    np.testing.assert_allclose(padded.params.Y[:, 60:], 0.0, atol=1e-12)
    np.testing.assert_allclose(padded.history.total, plain.history.total, rtol=1e-12)


def test_one_device_mesh_equals_plain_fit(key):
    problem = data.preset(key, "seed", n_instances=50).problem
    mesh = jax.make_mesh((1,), ("n",))
    config = Config(method="joint", formulation="fold_in", latent_dim=3, max_iter=5)
    plain = cfjax.fit(key, problem, config=config)
    sharded = cfjax.fit(key, problem, config=config, mesh=mesh)
    np.testing.assert_allclose(sharded.params.Y, plain.params.Y, atol=1e-6)
    grid = sweep.grid(rho=[0.3, 0.7])
    keys = jax.random.split(key, 2)
    np.testing.assert_allclose(
        sweep.run(keys, problem, grid, config, mesh=mesh).params.X,
        sweep.run(keys, problem, grid, config).params.X, atol=1e-6,
    )


def test_mesh_without_instance_axis_is_refused(key):
    problem = data.preset(key, "seed", n_instances=20).problem
    with pytest.raises(ValueError, match=r"mesh: needs an axis named 'n'"):
        cfjax.fit(key, problem, mesh=jax.make_mesh((1,), ("data",)))


def test_mesh_of_wrong_type_is_refused(key):
    problem = data.preset(key, "seed", n_instances=20).problem
    with pytest.raises(ValueError, match=r"mesh: expected a jax.sharding.Mesh"):
        cfjax.fit(key, problem, mesh="n")
    with pytest.raises(ValueError, match=r"mesh: expected a jax.sharding.Mesh"):
        sweep.run(jax.random.split(key, 1), problem, sweep.grid(rho=[0.5]), Config(max_iter=2), mesh=object())
