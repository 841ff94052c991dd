"""cfjax: CF-Ensemble in JAX, ensemble learning treated as collaborative filtering.

    problem = cfjax.from_numpy(R, labels)            # R: (m, n), NaN = missing; labels: -1 = unlabeled
    result = cfjax.fit(jax.random.key(0), problem)   # the default pipeline
    proba = cfjax.proba(result.params, cfjax.Config())

Submodules are namespaces (`cfjax.data`, `cfjax.losses`, `cfjax.solvers`, `cfjax.metrics`,
`cfjax.baselines`, ...); the headline names are re-exported here.
"""

from cfjax import (
    aggregators,
    baselines,
    confidence,
    data,
    io,
    logistic,
    losses,
    metrics,
    multiclass,
    predict,
    ridge,
    selection,
    sharding,
    solvers,
    stream,
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
    "multiclass",
    "predict",
    "proba",
    "ridge",
    "selection",
    "sharding",
    "solvers",
    "stream",
    "sweep",
    "validation",
]
