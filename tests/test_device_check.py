"""`benchmarks/device_check.sh` and its JSON (`benchmarks/device_check_report.py`).

The fast tier checks that the script is there, executable and parses (``bash -n``), and runs
the report writer on stage outputs made up here: the figures and the two targets it derives
from them, a timed-out stage, an absent one. The slow tier runs the whole script in smoke mode
(a few minutes on 2 cores) and reads the JSON it wrote.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def _report_module():
    path = ROOT / "benchmarks" / "device_check_report.py"
    spec = importlib.util.spec_from_file_location("_device_check_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_is_executable_and_parses():
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    # The stage limits and the report's must leave the script under 8 minutes (480 s).
    text = SCRIPT.read_text()
    limits = [  # the GPU run's: "${BUDGET_TESTS:-$((SCALE * 120))}" with SCALE = 1
        int(text.split(f"BUDGET_{name}:-$((SCALE * ")[1].split(")")[0])
        for name in ("TESTS", "SPEED", "SWEEP", "MINIBATCH")
    ]
    report_limit = int(text.split("timeout --kill-after=5 ")[-1].split()[0])
    assert sum(limits) + report_limit + 5 * (len(limits) + 1) < 480, limits


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
failures="1" skipped="1" tests="4"><testcase classname="tests.test_ridge" name="test_a"/>
<testcase classname="tests.test_ridge" name="test_b"><failure message="x"/></testcase>
<testcase classname="tests.test_ridge" name="test_c"/><testcase classname="tests.test_ridge"
name="test_d"><skipped/></testcase></testsuite></testsuites>"""


def _stage(name, rc, seconds, limit, result):
    return f"{name}\t{rc}\t{seconds}\t{limit}\t{result}\n"


def _write_stages(tmp_path: Path, als_s: float | None, sweep_ratio: float, rhos: int = 16) -> None:
    (tmp_path / "tests.xml").write_text(JUNIT)
    (tmp_path / "tests.log").write_text("1 failed, 2 passed, 1 skipped\n")
    rows = [
        {
            "workload": "als",
            "m": 10,
            "n": 10000,
            "d": 8,
            "dtype": "float32",
            "compile_s": 1.0,
            "run_s": 1e-4,
        }
    ]
    if als_s is not None:
        rows.append(
            {
                "workload": "als",
                "m": 100,
                "n": 1_000_000,
                "d": 32,
                "dtype": "float32",
                "compile_s": 2.0,
                "run_s": als_s,
            }
        )
    (tmp_path / "speed.json").write_text(json.dumps({"rows": rows}))
    sweep_rows = [
        {
            "method": method,
            "runner": runner,
            "compile_s": 1.0,
            "run_s": 1.0,
            "per_fit_ms": 1.0,
            "ratio": ratio,
        }
        for method in ("joint", "als")
        for runner, ratio in (
            ("python loop of fit_jit", 1.0),
            ("sweep.run map", 0.9),
            ("sweep.run vmap", sweep_ratio),
        )
    ]
    (tmp_path / "sweep.json").write_text(
        json.dumps({"settings": {"rhos": rhos, "seeds": 4}, "rows": sweep_rows})
    )
    speed_rc = 0 if als_s is not None else 124
    (tmp_path / "speed.log").write_text("killed\n")
    (tmp_path / "stages.tsv").write_text(
        _stage("tests", 1, 30, 140, tmp_path / "tests.xml")
        + _stage("speed", speed_rc, 60, 130, tmp_path / "speed.json")
        + _stage("sweep", 0, 20, 90, tmp_path / "sweep.json")
        + _stage("minibatch", "absent", 0, 60, "")
    )


def test_report_reads_every_stage_and_checks_the_targets(tmp_path):
    module = _report_module()
    _write_stages(tmp_path, als_s=0.010, sweep_ratio=1 / 40)
    module.main([str(tmp_path), "--smoke", "1", "--seconds", "110"])
    body = json.loads((tmp_path / "device_check.json").read_text())
    assert body["smoke"] is True and body["seconds"] == 110 and body["device_kind"] and body["jax"]
    stages = {s["name"]: s for s in body["stages"]}
    assert stages["tests"]["figures"] | {"failed": None} == {
        "tests": 4,
        "failures": 1,
        "errors": 0,
        "skipped": 1,
        "passed": 2,
        "failed": None,
    }
    assert stages["tests"]["figures"]["failed"] == ["tests.test_ridge::test_b"]
    assert "1 failed" in stages["tests"]["log_tail"] and not stages["tests"]["timed_out"]
    assert stages["minibatch"] == {"name": "minibatch", "rc": "absent", "figures": "absent"}
    assert body["all_passed"] is False  # the tests stage returned 1
    targets = body["targets"]
    assert targets["als_sweep"]["status"] == "met" and targets["als_sweep"]["ms"] == pytest.approx(
        10.0
    )
    assert targets["sweep_vs_loop"]["status"] == "met"
    assert targets["sweep_vs_loop"]["best"]["joint"] == {
        "runner": "sweep.run vmap",
        "speedup": pytest.approx(40.0),
    }


def test_report_says_missed_and_not_measured(tmp_path):
    module = _report_module()
    _write_stages(tmp_path, als_s=None, sweep_ratio=1 / 20)
    (tmp_path / "speed.json").unlink()  # a stage killed by its time limit writes nothing
    body = module.report(tmp_path, smoke=False, seconds=None)
    stages = {s["name"]: s for s in body["stages"]}
    assert (
        stages["speed"]["timed_out"]
        and stages["speed"]["figures"] is None
        and "killed" in stages["speed"]["log_tail"]
    )
    assert body["targets"]["als_sweep"]["status"] == "not measured"
    assert body["targets"]["sweep_vs_loop"]["status"] == "missed"
    # A sweep of another size (the smoke run's 4 rho x 2 seeds) does not count for the target.
    _write_stages(tmp_path, als_s=None, sweep_ratio=1 / 40, rhos=2)
    body = module.report(tmp_path, smoke=True, seconds=None)
    assert body["targets"]["sweep_vs_loop"]["status"] == "not measured (8 configs)"


def test_report_refuses_a_folder_without_stages(tmp_path):
    with pytest.raises(ValueError, match="outdir: no stages.tsv"):
        _report_module().report(tmp_path, smoke=True, seconds=None)


@pytest.mark.slow  # the whole script at smoke sizes: ~2.5 min on 2 cores
def test_smoke_run_writes_one_json(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        [str(SCRIPT), "--smoke", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=900,
    )
    body = json.loads((tmp_path / "device_check.json").read_text())
    assert proc.returncode == 0, (proc.stdout[-3000:], json.dumps(body["stages"], indent=1)[-3000:])
    stages = {s["name"]: s for s in body["stages"]}
    assert stages["tests"]["figures"]["passed"] > 0 and stages["tests"]["figures"]["failures"] == 0
    assert {r["workload"] for r in stages["speed"]["figures"]} == {"als", "mm_als", "joint"}
    assert {r["method"] for r in stages["sweep"]["figures"]["rows"]} == {"joint", "als"}
    assert body["all_passed"] and body["smoke"]
