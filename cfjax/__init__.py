"""cfjax: CF-Ensemble in JAX, ensemble learning treated as collaborative filtering.

Submodules are namespaces (`cfjax.data`, `cfjax.losses`, `cfjax.solvers`, `cfjax.metrics`,
`cfjax.baselines`, ...); the headline names are re-exported here.
"""

from cfjax import (
    aggregators,
    als,
    baselines,
    confidence,
    data,
    io,
    logistic,
    losses,
    metrics,
    predict,
    sharding,
    solvers,
    sweep,
    validation,
)
from cfjax.api import fit, fit_jit
from cfjax.data import Ensemble, from_numpy
from cfjax.predict import proba
from cfjax.structs import Config, FitResult, History, Hparams, LossParts, Params, Problem

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Ensemble",
    "FitResult",
    "History",
    "Hparams",
    "LossParts",
    "Params",
    "Problem",
    "__version__",
    "aggregators",
    "als",
    "baselines",
    "confidence",
    "data",
    "fit",
    "fit_jit",
    "from_numpy",
    "io",
    "logistic",
    "losses",
    "metrics",
    "predict",
    "proba",
    "sharding",
    "solvers",
    "sweep",
    "validation",
]
