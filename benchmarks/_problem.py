"""The random problems of the speed benchmarks, in NumPy only (shared with the PyTorch script,
whose environment has no JAX): the same seed gives the same arrays in both."""

from __future__ import annotations

import numpy as np

LAM = 0.1  # ridge of the ALS benchmarks (bench_als, bench_speed)
# the joint objective's hyperparameters in bench_speed and bench_torch_joint
JOINT = {"rho": 0.5, "lam": 0.01, "agg_l2": 1e-3, "focal_gamma": 0.0, "lr": 0.01}


def random_problem(m: int, n: int, d: int, seed: int = 0) -> dict[str, np.ndarray]:
    """R in [0, 1]; C = 1 on 70% of the cells, else 0 (unobserved); float64 factors.

    Also labels (30% positive), a labeled mask (half of the columns) and the weighted
    aggregator's initial (w, b) = (4/m, -2), as in `cfjax.aggregators.weighted.init`.
    """
    rng = np.random.default_rng(seed)
    R = rng.random((m, n))
    C = (rng.random((m, n)) > 0.3).astype(np.float64)
    X = rng.normal(size=(d, m)) / np.sqrt(d)
    Y = rng.normal(size=(d, n)) / np.sqrt(d)
    labels = (rng.random(n) < 0.3).astype(np.float64)
    labeled = rng.random(n) < 0.5
    w = np.full(m, 4.0 / m)
    b = np.asarray(-2.0)
    return {"R": R, "C": C, "X": X, "Y": Y, "labels": labels, "labeled": labeled, "w": w, "b": b}


def numpy_rows(F: np.ndarray, R: np.ndarray, C: np.ndarray, lam: float, rows) -> np.ndarray:
    """The reference implementation's algorithm: one np.linalg.solve per row (float64).

    Row j solves (F diag(C_j) F^T + lam I) z = F (C_j * R_j); F (d, k), R and C (rows, k).
    """
    d = F.shape[0]
    out = np.empty((d, len(rows)))
    eye = lam * np.eye(d)
    for t, j in enumerate(rows):
        Fc = F * C[j][None, :]
        out[:, t] = np.linalg.solve(Fc @ F.T + eye, Fc @ R[j])
    return out
