"""The README's first Python example runs as written: the default pipeline on a 5-classifier R."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _first_python_block() -> str:
    text = README.read_text()
    start = text.index("## Quick start")
    return re.search(r"```python\n(.*?)```", text[start:], flags=re.DOTALL).group(1)


def test_the_first_example_runs_the_default_pipeline():
    namespace: dict = {}
    exec(compile(_first_python_block(), str(README), "exec"), namespace)  # noqa: S102 (the README's own code)
    R, proba, result = namespace["R"], np.asarray(namespace["proba"]), namespace["result"]
    assert R.shape[0] == 5
    assert proba.shape == (R.shape[1],) and np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    assert "cv_mean" in result.info  # the default pipeline (auto) ran, not a single method
    # a few lines: from_numpy, fit with a key and the problem only, the probabilities
    code = [line for line in _first_python_block().splitlines() if line.strip() and not line.startswith("#")]
    assert len(code) <= 8
    assert any("cfjax.fit(jax.random.key(0), problem)" in line for line in code)
