"""Running the notebooks and comparing their stored outputs with a run (tests/test_notebooks.py).

The notebooks are committed with the outputs of a full-size run, so that a code host shows
their numbers and figures. After a change that moves them, store them again from the
repository root (about 75 s on a 2-core machine)::

    python -m tests.notebooks                      # every notebook in notebooks/
    python -m tests.notebooks notebooks/01_quickstart.ipynb

This executes each notebook at full size (CFJAX_SMOKE=0, whatever the environment says) in a
fresh kernel, in the notebook's folder, and writes it back in place without per-cell timing
metadata (timestamps would change the file on every run). CI executes the notebooks at smoke
size with `pytest --nbmake`, which works on a copy in memory and never rewrites the file.

`differences(stored, rerun)` is what the slow test checks: cell by cell, the printed text of
both runs (stream outputs, and the text/plain of results without a figure) with every number
taken out must be the same, and each number must agree with the stored one to the precision it
is printed with (one unit in its last printed digit; integers exactly).
"""

from __future__ import annotations

import os
import re
import sys
from decimal import Decimal
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 600

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def execute(path: Path, smoke: bool) -> nbformat.NotebookNode:
    """`path` executed in a fresh kernel of its kernelspec (CFJAX_SMOKE set from `smoke`); the
    file is not written."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env={**os.environ, "CFJAX_SMOKE": "1" if smoke else "0"})
    return nb


def printed(cell) -> str:
    """The text a code cell printed: its streams, and the text/plain of its results and
    displays that carry no figure (a figure's text/plain is only its repr)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            data = output.get("data", {})
            if "text/plain" in data and not any(k.startswith("image/") for k in data):
                parts.append(data["text/plain"] + "\n")
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}\n")
    return "".join(parts)


def _unit(token: str) -> Decimal:
    """One unit in the last printed digit of `token` (0 for an integer: it must match)."""
    mantissa, _, exponent = token.lower().partition("e")
    if "." not in mantissa and not exponent:
        return Decimal(0)
    decimals = len(mantissa.partition(".")[2])
    return Decimal(1).scaleb(-decimals + int(exponent or 0))


def _numbers_agree(stored: str, rerun: str) -> bool:
    return abs(Decimal(stored) - Decimal(rerun)) <= _unit(stored)


def differences(stored: nbformat.NotebookNode, rerun: nbformat.NotebookNode) -> list[str]:
    """Where the printed outputs of `rerun` differ from those of `stored` (empty when none)."""
    cells = [(i, c) for i, c in enumerate(stored.cells) if c.cell_type == "code"]
    again = [c for c in rerun.cells if c.cell_type == "code"]
    if len(cells) != len(again):
        return [f"{len(cells)} code cells stored, {len(again)} run"]
    found = []
    for (i, old_cell), new_cell in zip(cells, again):
        old, new = printed(old_cell), printed(new_cell)
        if NUMBER.sub("#", old) != NUMBER.sub("#", new):
            found.append(f"cell {i}: the text differs:\n--- stored\n{old}--- run\n{new}")
            continue
        for a, b in zip(NUMBER.findall(old), NUMBER.findall(new)):
            if not _numbers_agree(a, b):
                found.append(f"cell {i}: stored {a}, run {b}")
    return found


def main(argv: list[str]) -> int:
    paths = [Path(p).resolve() for p in argv] or NOTEBOOKS
    for path in paths:
        nb = execute(path, smoke=False)
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
