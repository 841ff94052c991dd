"""The test infrastructure itself: the compilation cache, the tiers, the slow-tier selection."""

import os
import uuid

import jax
import jax.numpy as jnp
import pytest
from _pytest.mark import ParameterSet

from . import conftest as test_conftest
from . import tiers
from .monitoring import listening


class _CacheEvents:
    """Counts jax's persistent-cache hits and misses while active."""

    def __init__(self):
        self.hits = self.misses = 0

    def __call__(self, event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            self.hits += 1
        elif event == "/jax/compilation_cache/cache_misses":
            self.misses += 1


def _compile_and_run(fn, x):
    jax.clear_caches()  # forget the in-memory executable: the next call compiles or loads
    return float(jax.jit(fn)(x))


def test_compilation_cache_is_on_and_keyed_on_the_program():
    assert jax.config.jax_compilation_cache_dir == os.environ["JAX_COMPILATION_CACHE_DIR"]
    salt = float(uuid.uuid4().int % 10**6)  # a program no earlier run has compiled
    x = jnp.float32(1.0)
    events = _CacheEvents()
    with listening(events):
        assert _compile_and_run(lambda v: v + salt, x) == 1.0 + salt
        assert (events.hits, events.misses) == (0, 1)
        assert _compile_and_run(lambda v: v + salt, x) == 1.0 + salt  # same program: loaded
        assert (events.hits, events.misses) == (1, 1)
        # same shapes, same name, another body: another key, compiled, and its own result
        assert _compile_and_run(lambda v: v * salt, x) == salt
        assert (events.hits, events.misses) == (1, 2)


def test_tiers_mark_the_subset_fast_and_the_rest_slow():
    mark = tiers.parametrize("method", ["als", "joint", "mm_als"], only_fast=lambda m: m != "joint")
    params = mark.args[1]
    assert [p.values for p in params] == [("als",), ("joint",), ("mm_als",)]
    names = [{m.name for m in p.marks} for p in params]
    assert names == [{"only_fast"}, {"slow"}, {"only_fast"}]
    pairs = tiers.parametrize("a, b", [(1, 2), pytest.param(3, 4, id="x")], only_fast=[1]).args[1]
    assert all(isinstance(p, ParameterSet) for p in pairs)
    assert [(p.values, p.id, {m.name for m in p.marks}) for p in pairs] == [
        ((1, 2), None, {"slow"}),
        ((3, 4), "x", {"only_fast"}),
    ]
    with pytest.raises(ValueError, match="only_fast"):
        tiers.parametrize("m", [1, 2], only_fast=[2])
    with pytest.raises(ValueError, match="only_fast"):
        tiers.parametrize("m", [1, 2], only_fast=lambda m: False)


class _Config:
    def __init__(self, markexpr):
        self.markexpr = markexpr

    def getoption(self, name, default=None):
        assert name == "markexpr"
        return self.markexpr


@pytest.mark.parametrize(
    "markexpr, slow",
    [("not slow", False), ("slow", True), ("", False), ("slow or not slow", False), ("slow and not only_fast", True)],
)
def test_slow_tier_is_a_run_that_selects_only_slow_tests(markexpr, slow):
    assert test_conftest.slow_tier(_Config(markexpr)) is slow


def test_the_fast_tier_runs_the_fast_profile(request):
    from hypothesis import settings

    expected = test_conftest.SLOW_EXAMPLES if test_conftest.slow_tier(request.config) else test_conftest.FAST_EXAMPLES
    assert settings.default.max_examples == expected
