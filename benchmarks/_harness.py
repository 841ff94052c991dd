"""What every benchmark script shares: timing, compile time, markdown tables, JSON provenance.

Not part of the library and not a test. The scripts import it as `_harness` (they run as
`python benchmarks/<script>.py`, so this folder is on `sys.path`).

Conventions (README "Speed"):

* steady-state time is the **median** over repeats, each blocked with
  `jax.block_until_ready`, after one untimed warm-up call;
* compile time is measured **separately**, ahead of time: `jit(f).lower(...).compile()`
  (tracing, lowering and XLA compilation), which a loaded machine perturbs far less than
  "first call minus a steady call";
* every JSON records where and when it was measured (date, versions, device, CPU count and
  model, git commit) and the load average before and after: on a shared machine the load
  inflates absolute times, so compare ratios measured within one run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def median_time(
    fn: Callable[[], Any], repeats: int, min_total_s: float = 0.0, max_repeats: int = 200
) -> tuple[float, list[float]]:
    """(median seconds, all seconds) of blocked calls of `fn()` (no warm-up).

    At least `repeats` calls, and more (up to `max_repeats`) until they add up to
    `min_total_s`: a millisecond workload then gets enough samples for a stable median.
    """
    times: list[float] = []
    while len(times) < max(int(repeats), 1) or (
        sum(times) < min_total_s and len(times) < max_repeats
    ):
        start = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def compile_time(jitted: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, compiled) of `jitted.lower(*args, **kwargs).compile()`."""
    start = time.perf_counter()
    compiled = jitted.lower(*args, **kwargs).compile()
    return time.perf_counter() - start, compiled


def compile_and_time(
    jitted: Any,
    args: Sequence[Any],
    kwargs: dict[str, Any] | None,
    repeats: int,
    call: Callable[[], Any] | None = None,
    min_total_s: float = 0.0,
) -> dict[str, Any]:
    """Compile ahead of time (timed), warm up once, then time `repeats` steady calls.

    `call` defaults to the compiled executable applied to `args` (static keyword arguments are
    baked into it); pass another callable (e.g. a host-side entry point that dispatches to
    `jitted`) to time that instead: it is warmed up first, because ahead-of-time executables do
    not fill the jit cache.

    Returns a dict with compile_s, run_s (median), runs_s and `compiled`.
    """
    kwargs = kwargs or {}
    compile_s, compiled = compile_time(jitted, *args, **kwargs)
    if call is None:

        def call():
            return compiled(*args)

    block(call())
    run_s, runs = median_time(call, repeats, min_total_s)
    return {"compile_s": compile_s, "run_s": run_s, "runs_s": runs, "compiled": compiled}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def provenance() -> dict[str, Any]:
    """Where and when: `cfjax.io.provenance` (date, versions, device, git commit) plus the
    CPU model, platform, XLA flags and the load average now."""
    import jaxlib

    from cfjax.io import provenance as library_provenance

    return library_provenance(
        jaxlib=jaxlib.__version__,
        cpu=cpu_model(),
        platform=platform.platform(),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        load_average_before=load_average(),
    )


def write_json(path: str | Path, payload: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write `{**meta, **payload, load_average_after}` as indented JSON; returns the path.

    `meta` is the `provenance()` taken before the measurements.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**meta, **payload, "load_average_after": load_average()}
    path.write_text(json.dumps(body, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are formatted with `str` (format them before)."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def header_line(meta: dict[str, Any]) -> str:
    """One line for the console: device, versions, CPUs, load."""
    return (
        f"{meta['date']}  device {meta['device']} ({meta['cpu']}, {meta['cpu_count']} CPUs), "
        f"jax {meta['jax']}, load average {meta['load_average_before']}"
    )
