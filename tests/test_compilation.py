"""cfjax.compilation: every program cfjax compiles for the CPU uses the scheduler that does not wedge.

The regression test runs the fit that hung (the K-class `auto` pipeline over 4 x 11 vmapped fits
of a 9-classifier, 7-class ensemble) in a fresh process under a time limit: with XLA's default
CPU scheduler that process waited forever, idle, on a 2-core machine (and finished when pinned
to one core); with `CPU_COMPILER_OPTIONS` it finishes in about 12 s there.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cfjax
from cfjax import compilation

_WEDGED_FIT = textwrap.dedent(
    """
    import jax, numpy as np
    import cfjax
    from cfjax.solvers.auto import Candidate

    m, K, n = 9, 7, 200
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, n)
    logits = rng.normal(size=(m, K, n)) + 2.0 * (np.arange(K)[None, :, None] == y[None, None, :])
    R = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.where(rng.random(n) < 0.1, y, -1)
    problem = cfjax.from_numpy(R.astype(np.float32), labels)
    candidates = (Candidate("als", full_rank=True, aggregator="weighted", grid=(("lam", (0.1, 0.3, 1.0, 3.0)),)),)
    result = cfjax.fit(jax.random.key(0), problem, config=cfjax.Config(options=(("candidates", candidates),)))
    jax.block_until_ready(result.params)
    print("finished")
    """
)


def test_the_fit_that_wedged_xla_cpu_finishes():
    # 300 s: the fit takes ~12 s on the 2-core machine; only a wedged process reaches the limit
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    try:
        done = subprocess.run([sys.executable, "-c", _WEDGED_FIT], capture_output=True, text=True, timeout=300,
                              env=env, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the K-class auto fit did not finish in 300 s: XLA's CPU runtime wedged again")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finished" in done.stdout


def test_top_level_call_uses_the_cpu_options_and_a_nested_call_the_plain_jit():
    double = compilation.jit(lambda x: 2.0 * x)
    assert jax.default_backend() == "cpu"
    assert compilation._cpu_options_known()
    assert double._chosen() is double._on_cpu
    # compiler options are refused on a nested jit: inside a trace the plain one must be called
    np.testing.assert_allclose(jax.jit(lambda x: double(x) + 1.0)(jnp.ones(3)), 3.0)
    np.testing.assert_allclose(jax.vmap(double)(jnp.arange(3.0)), [0.0, 2.0, 4.0])
    np.testing.assert_allclose(jax.grad(lambda x: double(x).sum())(jnp.ones(2)), 2.0)


def test_attributes_are_the_jitted_functions():
    lowered = cfjax.logistic.fit_logistic.lower(jnp.ones((2, 5)), jnp.ones(5), jnp.ones(5), 0.1)
    assert "stablehlo" in lowered.as_text() or "func.func" in lowered.as_text()
    assert cfjax.logistic.fit_logistic.__name__ == "fit_logistic"
    with pytest.raises(TypeError, match="static_argnames|unexpected"):
        compilation.jit(lambda x: x, no_such_argument=1)


def test_every_jit_in_the_library_is_this_one():
    root = pathlib.Path(cfjax.__file__).parent
    offenders = [str(path.relative_to(root)) for path in root.rglob("*.py")
                 if path.name != "compilation.py" and "jax.jit" in path.read_text()]
    assert offenders == []
