"""`damped`: the seed's Solution 3, alternation with a slow aggregator.

As `alternating`, but the aggregator takes its gradient step only every `Config.damped_every`
iterations; pass a small `Hparams.lr` (the seed used 0.001) so the factors settle between
aggregator moves. Still two objectives, so still no descent guarantee.
"""

from __future__ import annotations

from cfjax.solvers.alternating import alternation
from cfjax.solvers.base import register

__all__ = ["METHOD"]


METHOD = register(
    alternation(
        "damped",
        "alternating with the aggregator stepped every k-th iteration",
        every=lambda config: config.damped_every,
        defaults=(("lr", 0.001),),
    )
)
