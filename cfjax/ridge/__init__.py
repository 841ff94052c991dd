"""Batched closed-form ridge solves, the inner step of every ALS-type solver.

`batched`: the normal equations of all rows at once (`update_X`, `update_Y`, `solve_rows`),
Grams by GEMMs over chunks of instances. `cholesky`: the batch-last packed Cholesky back-ends
they solve with. The public names are re-exported here: `cfjax.ridge.update_Y(X, R, C, lam)`.
"""

from cfjax.ridge import batched, cholesky
from cfjax.ridge.batched import (
    ACCELERATOR_CHUNK_BYTES,
    CHUNK_BYTES,
    als_sweep,
    default_chunk_size,
    gram_packed,
    objective,
    solve_rows,
    update_X,
    update_Y,
)
from cfjax.ridge.cholesky import JITTER, LOOP_BLOCK, METHODS, UNROLL_MAX_DIM, UNROLL_MIN_ROWS

__all__ = [
    "ACCELERATOR_CHUNK_BYTES",
    "CHUNK_BYTES",
    "JITTER",
    "LOOP_BLOCK",
    "METHODS",
    "UNROLL_MAX_DIM",
    "UNROLL_MIN_ROWS",
    "als_sweep",
    "batched",
    "cholesky",
    "default_chunk_size",
    "gram_packed",
    "objective",
    "solve_rows",
    "update_X",
    "update_Y",
]
