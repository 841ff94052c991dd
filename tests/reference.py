"""Slow, obvious twins of the library's numerical routines (NumPy loops, float64)."""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def combined_loss(X, Y, w, b, R, C, labels, labeled, rho, lam, agg_l2, focal_gamma=0.0, class_weight=True):
    """L = rho L_recon + (1 - rho) L_sup for the weighted aggregator, by explicit loops."""
    d, m = X.shape
    n = Y.shape[1]
    sq, csum = 0.0, 0.0
    for u in range(m):
        for i in range(n):
            if C[u, i] > 0:
                pred = sum(X[k, u] * Y[k, i] for k in range(d))
                sq += C[u, i] * (R[u, i] - pred) ** 2
                csum += C[u, i]
    recon = (sq + lam * ((X**2).sum() + (Y**2).sum())) / csum
    idx = [i for i in range(n) if labeled[i]]
    n_pos = sum(labels[i] for i in idx)
    n_neg = len(idx) - n_pos
    ce, wsum = 0.0, 0.0
    for i in idx:
        r_hat = [sum(X[k, u] * Y[k, i] for k in range(d)) for u in range(m)]
        s = sum(w[u] * r_hat[u] for u in range(m)) + b
        p_true = sigmoid(s) if labels[i] == 1 else sigmoid(-s)
        omega = (len(idx) / (2 * (n_pos if labels[i] == 1 else n_neg))) if class_weight else 1.0
        ce += omega * (1 - p_true) ** focal_gamma * -np.log(p_true)
        wsum += omega
    sup = ce / wsum + agg_l2 * (w**2).sum()
    return rho * recon + (1 - rho) * sup, recon, sup
