"""The one JSON of `benchmarks/device_check.sh`: device, versions, stages, figures, targets.

`device_check.sh` runs each stage under a time limit and appends a line per stage to
OUTDIR/stages.tsv (name, return code or "absent", seconds, limit, result file). This script
reads those lines and the stages' own result files and writes OUTDIR/device_check.json:

* ``device``, ``jax``, ``jaxlib``, ``python``, ``git``, ``date`` (`cfjax.io.provenance`);
* ``stages``: per stage its return code, seconds, limit, whether it timed out, the tail of its
  log when it failed, and its figures: the tests' counts and failures (JUnit XML), the speed
  harness's rows, the sweep benchmark's rows with the loop's time over each sweep's, the
  minibatch benchmark's JSON as it wrote it (or ``"absent"``);
* ``targets``: the issue's GPU targets, each ``met``, ``missed`` or ``not measured``: an ALS
  sweep at (100, 1e6, 32) in float32 within 12 ms, and a 64-config sweep at least 30x faster
  than the loop of single fits (the best strategy of each method).

    python benchmarks/device_check_report.py OUTDIR [--smoke 0|1] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

#: The ALS-sweep target: (m, n, d), dtype, seconds.
ALS_TARGET = ((100, 1_000_000, 32), "float32", 0.012)
#: The sweep target: the loop of single fits over the sweep's time, at least this, at this many fits.
SWEEP_TARGET, SWEEP_CONFIGS = 30.0, 64
LOG_TAIL = 3000
STAGE_FIELDS = ("name", "rc", "seconds", "limit_s", "result")


def read_stages(path: Path) -> list[dict[str, Any]]:
    """The lines of stages.tsv as dicts; rc is an int, or "absent" for a stage not in the tree."""
    stages = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(STAGE_FIELDS):
            raise ValueError(
                f"{path}: expected {len(STAGE_FIELDS)} tab-separated fields, got {line!r}"
            )
        stage = dict(zip(STAGE_FIELDS, fields))
        stage["rc"] = stage["rc"] if stage["rc"] == "absent" else int(stage["rc"])
        stage["seconds"], stage["limit_s"] = int(stage["seconds"]), int(stage["limit_s"])
        stages.append(stage)
    return stages


def junit_figures(path: Path) -> dict[str, Any]:
    """Counts and the failing tests' names from pytest's JUnit XML."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {
        key: sum(int(s.get(key, 0)) for s in suites)
        for key in ("tests", "failures", "errors", "skipped")
    }
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return {
        **counts,
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": failed,
    }


def speed_figures(payload: dict[str, Any]) -> list[dict[str, Any]]:
    keep = (
        "workload",
        "m",
        "n",
        "d",
        "dtype",
        "compile_s",
        "run_s",
        "time_over_bound",
        "speedup",
        "skipped",
    )
    return [{k: r[k] for k in keep if k in r} for r in payload["rows"]]


def sweep_figures(payload: dict[str, Any]) -> dict[str, Any]:
    """The number of fits, the settings, and each row with ``loop_over_sweep``: the loop's time
    over this runner's (1 for the loop)."""
    settings = payload["settings"]
    rows = [
        {k: r[k] for k in ("method", "runner", "compile_s", "run_s", "per_fit_ms")}
        | {"loop_over_sweep": 1.0 / r["ratio"]}
        for r in payload["rows"]
    ]
    return {"configs": settings["rhos"] * settings["seeds"], "settings": settings, "rows": rows}


def figures(name: str, result: Path) -> Any:
    """The stage's figures from its result file, or None when it wrote none."""
    if not result.is_file():
        return None
    if name == "tests":
        return junit_figures(result)
    payload = json.loads(result.read_text())
    if name == "speed":
        return speed_figures(payload)
    if name == "sweep":
        return sweep_figures(payload)
    return payload


def targets(by_name: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's two GPU targets against this run's figures."""
    (m, n, d), dtype, limit = ALS_TARGET
    als = {
        "target": f"ALS sweep at ({m}, {n}, {d}) {dtype} <= {limit * 1e3:g} ms",
        "status": "not measured",
    }
    for row in by_name.get("speed", {}).get("figures") or []:
        if (row["workload"], row["m"], row["n"], row["d"], row["dtype"]) == (
            "als",
            m,
            n,
            d,
            dtype,
        ) and "run_s" in row:
            als |= {
                "ms": row["run_s"] * 1e3,
                "status": "met" if row["run_s"] <= limit else "missed",
            }
    sweep = {
        "target": f"64-config sweep >= {SWEEP_TARGET:g}x faster than a loop of single fits",
        "status": "not measured",
    }
    figures = by_name.get("sweep", {}).get("figures") or {"configs": None, "rows": []}
    rows = [r for r in figures["rows"] if r["runner"].startswith("sweep.run")]
    if rows and figures["configs"] != SWEEP_CONFIGS:
        sweep["status"] = f"not measured ({figures['configs']} configs)"
    elif rows:
        best = {}
        for r in rows:
            if (
                r["method"] not in best
                or r["loop_over_sweep"] > best[r["method"]]["loop_over_sweep"]
            ):
                best[r["method"]] = r
        sweep["best"] = {
            method: {"runner": r["runner"], "speedup": r["loop_over_sweep"]}
            for method, r in best.items()
        }
        sweep["status"] = (
            "met" if all(r["loop_over_sweep"] >= SWEEP_TARGET for r in best.values()) else "missed"
        )
    return {"als_sweep": als, "sweep_vs_loop": sweep}


def report(outdir: Path, smoke: bool, seconds: float | None) -> dict[str, Any]:
    """The report's body (also written to OUTDIR/device_check.json by `main`)."""
    import jax
    import jaxlib

    from cfjax.io import provenance

    stages_file = outdir / "stages.tsv"
    if not stages_file.is_file():
        raise ValueError(f"outdir: no stages.tsv in {outdir} (run benchmarks/device_check.sh)")
    stages = []
    for stage in read_stages(stages_file):
        name = stage["name"]
        if stage["rc"] == "absent":
            stages.append({"name": name, "rc": "absent", "figures": "absent"})
            continue
        stage["timed_out"] = stage["rc"] in (124, 137)
        stage["figures"] = figures(name, Path(stage["result"])) if stage["result"] else None
        log = outdir / f"{name}.log"
        if stage["rc"] != 0 and log.is_file():
            stage["log_tail"] = log.read_text(errors="replace")[-LOG_TAIL:]
        stages.append(stage)
    by_name = {s["name"]: s for s in stages}
    return {
        **provenance(jaxlib=jaxlib.__version__, python=sys.version.split()[0]),
        "devices": [str(dev) for dev in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "smoke": smoke,
        "seconds": seconds,
        "all_passed": all(s["rc"] in (0, "absent") for s in stages),
        "stages": stages,
        "targets": targets(by_name),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--smoke", type=int, choices=[0, 1], default=0)
    parser.add_argument("--seconds", type=float, default=None, help="the stages' total wall time")
    args = parser.parse_args(argv)
    body = report(args.outdir, bool(args.smoke), args.seconds)
    path = args.outdir / "device_check.json"
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    for name, target in body["targets"].items():
        print(f"{name}: {target['status']} ({target['target']})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
