"""Repository-wide pytest setup, loaded before any test module imports cfjax.

* Notebooks run at smoke size unless told otherwise (CFJAX_SMOKE).
* Shape and type checks: the modules in `CHECKED_MODULES` are imported through jaxtyping's
  import hook, which wraps every function in them with ``jaxtyped(typechecker=beartype)``, so
  their jaxtyping annotations (``Float[Array, "m n"]`` ...) are checked on every call made
  under pytest, including while jit and vmap trace them (a vmapped function sees per-example
  shapes, which is what its annotations state). Outside pytest nothing is wrapped: the library
  needs jaxtyping for its annotations but never beartype. `tests/test_typecheck.py` shows the
  checks are live, so they cannot silently stop (JAXTYPING_DISABLE=1 makes it fail).
* JAX's persistent compilation cache for the tests (see tests/conftest.py), set here through
  the environment before jax is imported, so that subprocesses (notebook kernels, the CLI)
  share it.
"""

import os
import sys
from pathlib import Path

from jaxtyping import install_import_hook

os.environ.setdefault("CFJAX_SMOKE", "1")

CHECKED_MODULES = (
    "cfjax.aggregators",
    "cfjax.baselines",
    "cfjax.data",
    "cfjax.logistic",
    "cfjax.losses",
    "cfjax.metrics",
    "cfjax.multiclass",
    "cfjax.predict",
    "cfjax.ridge.batched",
)
"""The modules whose annotations are checked under pytest (every function in each)."""

# PEP 484's numeric tower: an int is accepted where a float is annotated, as static checkers do.
TYPECHECKER = "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))"

COMPILATION_CACHE = Path(
    os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "cfjax", "jax-compilation-cache-tests"
)
"""The tests' persistent compilation cache; safe to delete at any time."""

_loaded = sorted(name for name in CHECKED_MODULES if name in sys.modules)
if _loaded:
    raise RuntimeError(f"conftest: {_loaded} were imported before the type-check hook")
install_import_hook(list(CHECKED_MODULES), TYPECHECKER)

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(COMPILATION_CACHE))
# Every program, however quick to compile: the suite compiles thousands of small ones.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
