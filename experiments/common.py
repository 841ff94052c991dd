"""Helpers the experiment scripts share: result folders with provenance, evaluation on test columns."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cfjax.benchmark import provenance, score_test_columns, write_records  # noqa: F401  (re-exported for the scripts)


def results_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    root = Path(root or os.environ.get("CFJAX_RESULTS", "results"))
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def only_named(pipes: list, names: list[str] | None) -> list:
    """The pipelines named in `names` (all when None), in their own order; an unknown name exits
    with the list to choose from (the scripts' --methods)."""
    if names is None:
        return pipes
    unknown = sorted(set(names) - {p.name for p in pipes})
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {[p.name for p in pipes]}")
    return [p for p in pipes if p.name in names]
