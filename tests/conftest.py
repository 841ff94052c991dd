"""Test-wide settings: strict rank promotion, the compilation cache, hypothesis tiers, fixtures.

**Two tiers.** `python -m pytest` runs the fast tier (addopts deselect ``-m slow``, and spread
the tests over the cores with pytest-xdist); `python -m pytest -m slow` runs the slow tier: the
full parametrized products whose fast-tier subsets are marked `only_fast` (`tests/tiers.py`),
the long checks, and every hypothesis property test again with more examples (`SLOW_EXAMPLES`;
the fast tier runs `FAST_EXAMPLES`). Both counts come from the "ci" / "ci-slow" profiles below; no test
sets its own `max_examples`.

**Compilation cache.** JAX's persistent compilation cache is on for the tests (the folder is
`conftest.COMPILATION_CACHE`, set through the environment in the root conftest.py so that
notebook kernels and CLI subprocesses share it). Its key is a hash of the compiled program
(the StableHLO module), the compile options, the backend and the jax/jaxlib versions and XLA
flags: a changed program can never load a stale executable, and tracing (with every Python
check and the jaxtyping checks) runs as without it. Only the XLA compilation is skipped.
"""

import os

import jax
import pytest
from _pytest.mark.expression import Expression
from hypothesis import HealthCheck, is_hypothesis_test, settings

jax.config.update("jax_numpy_rank_promotion", "raise")
# Off CPU, float32 matrix products at JAX's default precision may run reduced-precision passes
# (TF32 on NVIDIA GPUs since Ampere); the float32 tolerances here were set on CPU, where
# products are exact to float32. The one GPU run (H200, README "Speed") failed seven float32
# comparisons between two routes to one fit; the tests compare at full precision everywhere
# (a no-op on CPU). Whether the library itself should ask for it is open (issue 19's notes).
if jax.default_backend() != "cpu":
    jax.config.update("jax_default_matmul_precision", "highest")
# The root conftest.py sets these in the environment before jax is imported; repeated here in
# case a plugin imported jax first.
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)
jax.config.update(
    "jax_persistent_cache_min_entry_size_bytes",
    int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]),
)

FAST_EXAMPLES = int(os.environ.get("CFJAX_HYPOTHESIS_EXAMPLES", "25"))
SLOW_EXAMPLES = int(os.environ.get("CFJAX_HYPOTHESIS_SLOW_EXAMPLES", "200"))

settings.register_profile(
    "ci",
    max_examples=FAST_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile("ci-slow", settings.get_profile("ci"), max_examples=SLOW_EXAMPLES)
settings.load_profile("ci")


def _selects(config, **marks) -> bool:
    """Whether the run's ``-m`` expression selects a test carrying exactly `marks`."""
    markexpr = config.getoption("markexpr", "")
    if not markexpr:
        return True
    return Expression.compile(markexpr).evaluate(lambda name, /, **kwargs: marks.get(name, False))


def slow_tier(config) -> bool:
    """True for a run that selects the slow tests and not the others (``-m slow``)."""
    return _selects(config, slow=True) and not _selects(config)


def pytest_configure(config):
    # Before any test module is imported: a `settings(...)` object reads the default profile
    # when it is created (at decoration time).
    if slow_tier(config):
        settings.load_profile("ci-slow")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """In a slow-tier run, the fast-tier tests that the slow tier repeats get the `slow` mark.

    These are every hypothesis property test (run again with `SLOW_EXAMPLES` examples) and the
    `only_fast` subsets of the products of `tiers.parametrize` (so ``-m slow`` runs each whole
    product). This runs before ``-m`` deselects anything, and only in a slow-tier run: the fast
    tier keeps these tests as they are.
    """
    if not slow_tier(config):
        return
    for item in items:
        hypothesis = isinstance(item, pytest.Function) and is_hypothesis_test(item.obj)
        if hypothesis or item.get_closest_marker("only_fast") is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def without_type_checks():
    """Switches the jaxtyping/beartype checks off for one test.

    For the tests of the library's own host-side validation (the ValueError naming the argument
    that a user without beartype gets): under pytest the annotation check would fire first.
    """
    import jaxtyping

    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", before)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops jax's compiled programs after each test module (in each xdist worker).

    Every XLA:CPU executable keeps its own memory mappings. The full suite compiles thousands
    of programs, and in one process their mappings reached Linux's vm.max_map_count (65530),
    after which a compile segfaulted (seen at ~95 % of the suite, whichever test came there).
    An xdist worker runs about 1/workers of the suite, but a run with fewer workers (-n 0, -p
    no:xdist) is the single process again, so the release stays. Tests within a module still
    share the cache while one worker runs them in a row; a test that counts traces does so
    within itself, so it does not depend on which worker ran the module's other tests. A
    program compiled again after the release loads from the persistent compilation cache.
    """
    yield
    jax.clear_caches()
