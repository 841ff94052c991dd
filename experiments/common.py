"""Helpers the experiment scripts share: result folders with provenance, evaluation on test columns."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cfjax.benchmark import provenance, score_test_columns  # noqa: F401  (re-exported for the scripts)


def results_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    root = Path(root or os.environ.get("CFJAX_RESULTS", "results"))
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
