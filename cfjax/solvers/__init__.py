"""Training methods: one module each, one signature, one registry.

Every method is `fit(key, problem, hparams, config) -> FitResult`, pure and traceable; choose
one by name with `Config.method`. `cfjax.fit` is the validated, jitted front door.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

from cfjax.solvers import als, alternating, damped, joint, label_aware_als, mm_als, two_stage
from cfjax.structs import Config, FitResult, Hparams, Problem

__all__ = ["METHODS", "Method", "fit_traced", "get"]


class Method(NamedTuple):
    """A registered method. `defaults` are the Hparams values it is run with unless told otherwise
    (the alternation methods use the seed's plain gradient steps for theta, lr 0.1 / 0.001;
    joint and mm_als a ridge lam = 1, see below). `cfjax.fit(..., hparams=None)`, the CLI, the
    scikit-learn estimator and the benchmark pipelines all start from them."""

    name: str
    fit: Callable[[jax.Array, Problem, Hparams, Config], FitResult]
    description: str
    uses_labels: bool
    defaults: tuple = ()

    def hparams(self, **overrides) -> Hparams:
        return Hparams.create(**{**dict(self.defaults), **overrides})


_ALL = [
    Method("als", als.fit, "ALS on the reconstruction alone (rho = 1); aggregator left at its init", False),
    Method("alternating", alternating.fit,
           "the seed's original loop: ALS for X, Y then a gradient step on theta (the failure mode)", True,
           (("lr", 0.1),)),
    Method("label_aware_als", label_aware_als.fit,
           "ALS with label-aware confidence, alpha scaled by (1 - rho) / rho, plus aggregator steps", True,
           (("lr", 0.1),)),
    Method("two_stage", two_stage.fit, "ALS to convergence, then the aggregator fitted exactly (Newton)", True),
    Method("damped", damped.fit, "alternating with the aggregator stepped every k-th iteration", True,
           (("lr", 0.001),)),
    # lam = 1 for the two methods that bend the reconstruction most: with 30 % of R missing,
    # lam = 0.01 left the column solves nearly singular (joint -0.084, mm_als -0.168 test
    # PR-AUC against complete data; experiments/missing_data.py), lam = 1 keeps both within
    # 0.02, and on the complete panel it costs nothing measurable (experiments/lambda_panel.py).
    Method("joint", joint.fit, "Adam on the exact combined loss, X, Y and theta together", True,
           (("lam", 1.0),)),
    Method("mm_als", mm_als.fit,
           "majorize-minimize ALS: closed-form steps on the exact loss, never increasing", True,
           (("lam", 1.0),)),
]

METHODS: dict[str, Method] = {m.name: m for m in _ALL}


def get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"method: unknown {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]


def fit_traced(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    """Dispatches on `config.method` without validation: for use inside jit / vmap."""
    return get(config.method).fit(key, problem, hparams, config)
