"""The jaxtyping shape annotations are checked under pytest, and only there.

The root conftest.py imports `CHECKED_MODULES` through jaxtyping's import hook with beartype.
These tests fail if that stops (a module imported before the hook, a renamed module, the hook
dropped), so the shape checks the rest of the suite relies on cannot silently switch off.
"""

import importlib
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

import cfjax
from cfjax import aggregators, baselines, data, logistic, losses, metrics, predict, ridge
from cfjax.structs import Config, Params

ROOT_CONFTEST = sys.modules["conftest"]


@pytest.fixture(scope="module")
def ensemble():
    return data.synthetic(jax.random.key(0), n_classifiers=4, n_instances=30)


def test_every_checked_module_went_through_the_hook():
    for name in ROOT_CONFTEST.CHECKED_MODULES:
        module = importlib.import_module(name)
        assert type(module.__spec__.loader).__name__ == "_JaxtypingLoader", name


def test_ridge_shapes_are_checked():
    X, R, C = jnp.ones((2, 3)), jnp.ones((3, 5)), jnp.ones((3, 5))
    assert ridge.update_Y(X, R, C, 0.1).shape == (2, 5)
    with pytest.raises(TypeCheckError, match="R"):
        ridge.update_Y(X, jnp.ones((4, 5)), jnp.ones((4, 5)), 0.1)  # m = 3 in X, 4 in R
    with pytest.raises(TypeCheckError, match="C"):
        ridge.update_X(jnp.ones((2, 5)), R, jnp.ones((3, 6)), 0.1)  # n = 5 in R, 6 in C
    with pytest.raises(TypeCheckError, match="lam"):
        ridge.solve_rows(X, jnp.ones((4, 3)), jnp.ones((4, 3)), jnp.ones(2))


def test_checks_run_while_tracing_jit_and_vmap():
    y, s = jnp.zeros(4), jnp.zeros(4)
    with pytest.raises(TypeCheckError, match="score"):
        jax.jit(metrics.roc_auc)(y, jnp.zeros(5))
    # vmap: the function sees one row of the batch, (n,), as annotated
    scores = jax.vmap(metrics.brier, in_axes=(None, 0))(y, jnp.zeros((3, 4)))
    assert scores.shape == (3,)
    with pytest.raises(TypeCheckError, match="proba"):
        jax.vmap(metrics.brier, in_axes=(None, 0))(y, jnp.zeros((3, 4, 2)))
    with pytest.raises(TypeCheckError, match="mask"):
        metrics.average_precision(y, s, jnp.ones(4))  # a float mask: the dtype is checked too


def test_problem_level_functions_are_checked(ensemble):
    problem = ensemble.problem
    n = problem.n_instances
    # The dims of a Problem's fields are not bound (a NamedTuple is not checked), so a
    # Problem-level function checks its array arguments' rank and dtype, and its result.
    assert losses.class_weights(problem, problem.labeled).shape == (n,)
    with pytest.raises(TypeCheckError, match="mask"):
        losses.class_weights(problem, jnp.ones((1, n), bool))
    with pytest.raises(TypeCheckError, match="n_labeled"):
        baselines.stacking_l2(jnp.ones(3))
    with pytest.raises(TypeCheckError, match="y"):
        logistic.fit_logistic(jnp.ones((2, n)), jnp.ones(n + 1), jnp.ones(n), 0.1)
    with pytest.raises(TypeCheckError, match="observed"):
        aggregators.inputs(Params(jnp.ones((2, 4)), jnp.ones((2, n)), None), observed=jnp.ones((4, n)))
    with pytest.raises(TypeCheckError, match="eps"):
        data.logit_space(problem, eps="0.1")
    config = Config(latent_dim=2)
    params = Params(jnp.ones((2, 4)), jnp.ones((2, n)), aggregators.get("weighted").init(jax.random.key(0), 4, None, jnp.float32))
    assert predict.proba(params, config).shape == (n,)
    with pytest.raises(TypeCheckError, match="problem"):
        predict.proba(params, config, problem=problem.R)
    with pytest.raises(TypeCheckError, match="hparams"):
        predict.fold_in(params, problem, {"lam": 0.1}, config)


def test_library_runs_without_beartype_and_unchecked_outside_pytest():
    """Outside pytest nothing is wrapped, and cfjax never imports beartype."""
    script = textwrap.dedent(
        """
        import inspect
        import sys
        sys.modules["beartype"] = None  # any `import beartype` now raises ImportError
        import jax, jax.numpy as jnp
        import cfjax
        from cfjax import aggregators, baselines, data, logistic, losses, metrics, predict, ridge
        modules = (aggregators, baselines, data, logistic, losses, metrics, predict, ridge.batched)
        functions = [f for m in modules for f in vars(m).values()
                     if inspect.isfunction(f) and f.__module__ == m.__name__]
        assert functions and not any(hasattr(f, "__wrapped__") for f in functions)
        print(float(metrics.roc_auc(jnp.array([0.0, 1.0]), jnp.array([0.2, 0.9]))))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(cfjax.__file__))}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip()) == 1.0


def test_without_type_checks_fixture_restores_them(without_type_checks):
    # inside the fixture, the library's own validation answers (a ValueError naming the argument)
    with pytest.raises(ValueError, match="score"):
        metrics.roc_auc(np.zeros(4), np.zeros((2, 4)))


def test_checks_are_back_after_the_fixture():
    with pytest.raises(TypeCheckError):
        metrics.roc_auc(np.zeros(4), np.zeros((2, 4)))
