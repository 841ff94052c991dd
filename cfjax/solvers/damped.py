"""`damped`: the seed's Solution 3, alternation with a slow aggregator.

As `alternating`, but the aggregator takes its gradient step only every `Config.damped_every`
iterations; pass a small `Hparams.lr` (the seed used 0.001) so the factors settle between
aggregator moves. Still two objectives, so still no descent guarantee.
"""

from __future__ import annotations

import jax

from cfjax.solvers.alternating import alternate
from cfjax.structs import Config, FitResult, Hparams, Problem


def fit(key: jax.Array, problem: Problem, hparams: Hparams, config: Config) -> FitResult:
    return alternate(key, problem, hparams, config, every=config.damped_every)
