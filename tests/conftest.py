"""Test-wide settings: strict rank promotion, hypothesis profile sized for 2-core CI."""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("CFJAX_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("ci")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops jax's compiled programs after each test module.

    Every XLA:CPU executable keeps its own memory mappings. The full suite compiles thousands
    of programs, and in one process their mappings reached Linux's vm.max_map_count (65530),
    after which a compile segfaulted (seen at ~95 % of the suite, whichever test came there).
    Tests within a module still share the cache (the trace-count tests rely on that).
    """
    yield
    jax.clear_caches()
