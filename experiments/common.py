"""Helpers the experiment scripts share: result folders with provenance, evaluation on test columns."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

import cfjax
from cfjax import metrics
from cfjax.benchmark import provenance  # noqa: F401  (re-exported for the scripts)


def results_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    root = Path(root or os.environ.get("CFJAX_RESULTS", "results"))
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


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
