r"""`label_aware_als`: the seed's Solution 1, ALS with label-aware confidence.

The ALS sweep minimises a reconstruction whose confidence is raised on training cells that agree
with the label:  c~_ui = c_ui (1 + alpha_rho a_ui),  a_ui = r_ui if y_i = 1 else 1 - r_ui.

**How rho enters.** In L = rho L_recon + (1 - rho) L_sup the supervised part weighs
(1 - rho) / rho as much as the reconstruction. The label-aware boost is this method's stand-in
for the supervised part, so its strength scales the same way:
alpha_rho = alpha (1 - rho) / rho. At rho = 1 the sweep is plain ALS; at rho = 1/2 it is the
seed's rule with alpha; as rho -> 0 the labeled cells dominate (rho is floored at 1e-6).
After each sweep the aggregator takes one gradient step on L_sup, as in `alternating`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cfjax import confidence
from cfjax.solvers.alternating import alternation
from cfjax.solvers.base import register
from cfjax.structs import Hparams, Problem

__all__ = ["METHOD", "label_aware_confidence", "rho_scaled_alpha"]


def rho_scaled_alpha(hparams: Hparams) -> jax.Array:
    return hparams.alpha * (1.0 - hparams.rho) / jnp.maximum(hparams.rho, 1e-6)


def label_aware_confidence(problem: Problem, hparams: Hparams) -> jax.Array:
    return confidence.label_aware(problem, hparams._replace(alpha=rho_scaled_alpha(hparams)))


METHOD = register(
    alternation(
        "label_aware_als",
        "ALS with label-aware confidence, alpha scaled by (1 - rho) / rho, plus aggregator steps",
        every=lambda config: 1,
        reconstruction_confidence=label_aware_confidence,
        defaults=(("lr", 0.1),),
    )
)
