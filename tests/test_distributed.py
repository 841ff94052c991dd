"""Several processes: a sharded fit and sweep across 2 processes equal the single-process result.

`tests/distributed_worker.py` is started twice on localhost, each process with 2 CPU devices,
joined by `jax.distributed.initialize` (a coordinator on a free port; jax's CPU collectives,
gloo over TCP), into one global mesh of 4 devices over which `cfjax.fit` and `sweep.run` split
the instances. Each process also computes the same fit and sweep without a mesh on one
device, and reports the deviations. It is the test of the multi-host path that the README's
"Many devices" section describes (launched there by a cluster's scheduler, one process per
host); on one host, each process stands for a host.

The fast tier launches the two processes once for an ALS fit; the slow tier launches them again
for an ALS sweep, a fold-in joint fit and a fold-in joint sweep.

The processes are killed after `TIMEOUT_S`, so a lost peer or a stuck collective fails the test
instead of hanging the run. Nothing is skipped: an environment without working CPU collectives
fails here, with both processes' stderr.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("distributed_worker.py")
N_PROCESSES = 2
LOCAL_DEVICES = 2
#: float64: sharding across processes only reorders sums.
TOL = 1e-6
#: A launch takes 15-70 s (start, join, compile, fits) on 2 cores, idle to loaded.
TIMEOUT_S = 300
#: One launch per tier. The fast tier fits ALS on n = 200 (all-reduced Grams, Y split over
#: the processes): ~15 s on 2 idle cores. The slow tier runs the rest (~25-40 s): an ALS sweep
#: and a fold-in joint fit on a padded n = 203 (all-reduced gradients, Y gathered), a fold-in
#: joint sweep on n = 200.
FAST_CASES = ("fit_als",)
SLOW_CASES = ("sweep_als", "fit_joint_fold_in", "sweep_joint_fold_in")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path, cases: tuple[str, ...]) -> tuple[list[dict], float]:
    """Every process's JSON rows and the wall time; fails with the logs on error or timeout."""
    coordinator = f"localhost:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    procs, logs = [], []
    start = time.perf_counter()
    for pid in range(N_PROCESSES):
        out, err = (
            (tmp_path / f"process{pid}.out").open("w"),
            (tmp_path / f"process{pid}.err").open("w"),
        )
        logs.append((out, err))
        cmd = [
            sys.executable,
            str(WORKER),
            "--coordinator",
            coordinator,
            "--num-processes",
            str(N_PROCESSES),
            "--process-id",
            str(pid),
            "--local-devices",
            str(LOCAL_DEVICES),
            "--init-timeout",
            "120",
            "--cases",
            *cases,
        ]
        procs.append(
            subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=WORKER.parent.parent)
        )
    timed_out = False
    try:
        for proc in procs:
            remaining = TIMEOUT_S - (time.perf_counter() - start)
            proc.wait(timeout=max(remaining, 1.0))
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for out, err in logs:
            out.close()
            err.close()
    seconds = time.perf_counter() - start

    def tail(pid):
        return (tmp_path / f"process{pid}.err").read_text()[-2000:]

    report = "\n".join(
        f"--- process {pid} (rc {p.returncode}) stderr:\n{tail(pid)}" for pid, p in enumerate(procs)
    )
    assert not timed_out, f"the processes did not finish in {TIMEOUT_S} s\n{report}"
    assert all(p.returncode == 0 for p in procs), report
    rows = [
        json.loads(line)
        for pid in range(N_PROCESSES)
        for line in (tmp_path / f"process{pid}.out").read_text().splitlines()
        if line.startswith("{")
    ]
    return rows, seconds


def _rows(tmp_path_factory, cases) -> dict:
    rows, seconds = _launch(tmp_path_factory.mktemp("distributed"), cases)
    print(f"{N_PROCESSES} processes, {cases}: {seconds:.1f} s")
    return {(r["case"], r["process"]): r for r in rows}


@pytest.fixture(scope="module")
def distributed_rows(tmp_path_factory) -> dict:
    return _rows(tmp_path_factory, FAST_CASES)


@pytest.fixture(scope="module")
def distributed_rows_slow(tmp_path_factory) -> dict:
    return _rows(tmp_path_factory, SLOW_CASES)


def _check(rows: dict, case: str) -> None:
    for pid in range(N_PROCESSES):
        row = rows.get((case, pid))
        assert row is not None, (case, pid, sorted(rows))
        for field in ("Y", "X", "total", "proba"):
            assert row[field] <= TOL, (field, row)


@pytest.mark.parametrize("case", FAST_CASES)
def test_two_processes_equal_one(distributed_rows, case):
    _check(distributed_rows, case)


@pytest.mark.slow  # a second launch of both processes
@pytest.mark.parametrize("case", SLOW_CASES)
def test_two_processes_equal_one_other_methods(distributed_rows_slow, case):
    _check(distributed_rows_slow, case)


def _layout_is_split(layout) -> bool:
    return (
        layout["processes"] == N_PROCESSES
        and layout["devices"] == N_PROCESSES * LOCAL_DEVICES
        and layout["spec"].endswith("'n')")
    )


def test_mesh_spans_both_processes(distributed_rows):
    # n = 200 is a multiple of the 4 devices: Y stays split, half on each process.
    layout = distributed_rows[("fit_als", 0)]["Y_layout"]
    assert _layout_is_split(layout), layout


@pytest.mark.slow  # the slow tier's launch
def test_padded_fits_come_back_gathered(distributed_rows_slow):
    # n = 203 is padded to 204; unpad gathers Y, so it comes back replicated on all 4 devices.
    for case in ("sweep_als", "fit_joint_fold_in"):
        layout = distributed_rows_slow[(case, 0)]["Y_layout"]
        assert layout["devices"] == N_PROCESSES * LOCAL_DEVICES, layout
        assert "'n'" not in layout["spec"], layout
    assert _layout_is_split(distributed_rows_slow[("sweep_joint_fold_in", 0)]["Y_layout"])
