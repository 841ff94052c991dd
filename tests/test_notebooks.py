"""The notebooks' shape and their stored outputs (CI also executes them at smoke size with
`pytest --nbmake`, in memory).

Thin notebooks: a first cell tagged "parameters" that honours CFJAX_SMOKE, and imports of the
library and its plotting stack only (no library logic copied inside). They are committed with
the outputs of a full-size run (`python -m tests.notebooks` writes them; see tests/notebooks.py),
so that a code host shows their numbers and figures: the fast tests check that every code cell
ran, in order, without errors or warnings, and that each `plt.show()` left its PNG; the slow
test executes each notebook again at full size and compares the printed numbers with the
stored ones.
"""

import ast
import base64

import pytest

nbformat = pytest.importorskip("nbformat")

from tests import notebooks

NOTEBOOKS = notebooks.NOTEBOOKS
ALLOWED_IMPORTS = {"cfjax", "jax", "numpy", "matplotlib", "os", "tempfile", "pathlib"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_PER_CELL = 4000  # characters a cell may print: a table, not a dump


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def test_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {
        "01_quickstart.ipynb",
        "02_failure_modes.ipynb",
        "03_rho_sweep.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    assert "CFJAX_SMOKE" in first.source
    for _, cell in _code_cells(nb):
        source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        tree = ast.parse(source)
        assert not any(
            isinstance(node, (ast.FunctionDef, ast.ClassDef)) for node in ast.walk(tree)
        ), "library logic belongs in cfjax, not in a notebook"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, roots


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_are_one_clean_run(path):
    """Every code cell executed once, top to bottom, in one kernel (execution counts 1, 2, ...),
    with no error, nothing on stderr (a warning would also carry this machine's paths), no
    per-cell timestamps, and no cell printing more than a table."""
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    assert [c.execution_count for _, c in cells] == list(range(1, len(cells) + 1)), (
        "outputs missing or not from one run in order: python -m tests.notebooks"
    )
    for i, cell in cells:
        kinds = [(o.output_type, o.get("name")) for o in cell.outputs]
        assert ("error", None) not in kinds, f"cell {i} raised"
        assert ("stream", "stderr") not in kinds, f"cell {i} wrote to stderr"
        assert "execution" not in cell.metadata, f"cell {i} stores timestamps"
        assert len(notebooks.printed(cell)) <= MAX_TEXT_PER_CELL, f"cell {i} prints too much"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_show_the_figures(path):
    """Each `plt.show()` of a cell left one PNG in its stored outputs (what a code host shows)."""
    nb = nbformat.read(path, as_version=4)
    shown = 0
    for i, cell in _code_cells(nb):
        pngs = [o.data["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == cell.source.count("plt.show()"), f"cell {i}"
        for png in pngs:
            assert base64.b64decode(png).startswith(PNG_SIGNATURE), f"cell {i}"
        shown += len(pngs)
    assert shown >= 1


def test_comparison_of_printed_numbers():
    """`notebooks.differences` itself: numbers agree to their printed precision, the words
    around them must match exactly."""

    def nb_printing(*texts):
        cells = [
            nbformat.v4.new_code_cell(
                "print()",
                execution_count=1,
                outputs=[nbformat.v4.new_output("stream", name="stdout", text=t)],
            )
            for t in texts
        ]
        return nbformat.v4.new_notebook(cells=cells)

    stored = nb_printing("PR-AUC 0.9825 (n 2000), rise -3.93e-04 | same: True\n")
    assert notebooks.differences(stored, stored) == []
    # one unit in the last printed digit (a rounding flip on another machine) is the same
    assert notebooks.differences(stored, nb_printing(
        "PR-AUC 0.9826 (n 2000), rise -3.94e-04 | same: True\n")) == []  # fmt: skip
    assert notebooks.differences(stored, nb_printing(
        "PR-AUC 0.9828 (n 2000), rise -3.93e-04 | same: True\n")) == ["cell 0: stored 0.9825, run 0.9828"]  # fmt: skip
    assert notebooks.differences(stored, nb_printing(
        "PR-AUC 0.9825 (n 2001), rise -3.93e-04 | same: True\n")) == ["cell 0: stored 2000, run 2001"]  # fmt: skip
    assert notebooks.differences(stored, nb_printing(
        "PR-AUC 0.9825 (n 2000), rise -3.93e-03 | same: True\n")) == ["cell 0: stored -3.93e-04, run -3.93e-03"]  # fmt: skip
    changed = notebooks.differences(stored, nb_printing(
        "PR-AUC 0.9825 (n 2000), rise -3.93e-04 | same: False\n"))  # fmt: skip
    assert len(changed) == 1 and changed[0].startswith("cell 0: the text differs")
    assert notebooks.differences(stored, nb_printing("a\n", "b\n")) == ["1 code cells stored, 2 run"]


@pytest.mark.slow  # about 25 s a notebook on 2 cores
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_match_a_full_size_run(path):
    """Executing the notebook again at full size prints the stored numbers (to their printed
    precision): the outputs a reader sees are those of the code as it is."""
    stored = nbformat.read(path, as_version=4)
    rerun = notebooks.execute(path, smoke=False)
    assert notebooks.differences(stored, rerun) == [], (
        "stored outputs are stale: python -m tests.notebooks " + path.relative_to(notebooks.ROOT).as_posix()
    )
