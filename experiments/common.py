"""Helpers the experiment scripts share: result folders with provenance, evaluation on test columns."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import jax
import numpy as np

import cfjax
from cfjax import metrics


def results_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    root = Path(root or os.environ.get("CFJAX_RESULTS", "results"))
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions, device, git hash and time: what a reviewer needs to reproduce a table."""
    try:
        git = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None
    except OSError:
        git = None
    import optax
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cfjax": cfjax.__version__,
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "git": git,
        **extra,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def test_scores(y_true: np.ndarray, proba: Any, test: np.ndarray) -> dict[str, float]:
    """PR-AUC and ROC-AUC of `proba` on the test columns."""
    y = jax.numpy.asarray(y_true, jax.numpy.float32)
    p = jax.numpy.asarray(proba)
    mask = jax.numpy.asarray(test)
    return {
        "pr_auc": float(metrics.average_precision(y, p, mask)),
        "roc_auc": float(metrics.roc_auc(y, p, mask)),
    }
