"""Training methods: one module each, one protocol (`base.Method`), one registry, one driver.

Every method is a set of pure functions run by `driver.fit_traced(key, problem, hparams,
config)`; choose one by name with `Config.method`. `cfjax.fit` is the validated, jitted front
door. Importing this package registers the built-in methods; `register` adds yours
(docs/extending.md).
"""

from __future__ import annotations

# isort: off
# Importing a method's module registers it; this order is the registry's (and `cfjax methods`').
from cfjax.solvers import als, alternating, label_aware_als, two_stage, damped, joint, mm_als  # noqa: F401
from cfjax.solvers import auto, driver
# isort: on
from cfjax.solvers.base import METHODS, Method, get, initial_params, register
from cfjax.solvers.driver import DriverState, fit_traced

__all__ = [
    "METHODS",
    "DriverState",
    "Method",
    "auto",
    "driver",
    "fit_traced",
    "get",
    "initial_params",
    "register",
]
