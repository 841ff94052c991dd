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


# --- baselines: ensemble selection, SML, local competence (float64 loops) ----------------------


def filled(R, observed):
    """R with each unobserved cell replaced by the column's observed mean."""
    R = np.array(R, np.float64)
    out = R.copy()
    for i in range(R.shape[1]):
        seen = [u for u in range(R.shape[0]) if observed[u, i]]
        mean = sum(R[u, i] for u in seen) / max(len(seen), 1)
        for u in range(R.shape[0]):
            if not observed[u, i]:
                out[u, i] = mean
    return out


def labeled_log_loss(proba, y, labeled):
    eps = np.finfo(np.float64).eps
    terms = []
    for i in range(len(y)):
        if labeled[i]:
            p = proba[i] if y[i] == 1 else 1.0 - proba[i]
            terms.append(-np.log(min(max(p, eps), 1.0 - eps)))
    return sum(terms) / len(terms)


def caruana_weights(F, y, labeled, n_steps, n_init=0):
    """Caruana et al. 2004: forward selection with replacement, the best ensemble on the path."""
    m = F.shape[0]
    singles = [labeled_log_loss(F[u], y, labeled) for u in range(m)]
    ensemble = sorted(range(m), key=lambda u: (singles[u], u))[:n_init]
    path = [(list(ensemble), labeled_log_loss(F[ensemble].mean(axis=0), y, labeled) if ensemble else np.inf)]
    for _ in range(n_steps):
        best_u, best_loss = None, np.inf
        for u in range(m):
            loss = labeled_log_loss(F[[*ensemble, u]].mean(axis=0), y, labeled)
            if loss < best_loss:
                best_u, best_loss = u, loss
        ensemble.append(best_u)
        path.append((list(ensemble), best_loss))
    chosen = min(range(len(path)), key=lambda t: (path[t][1], t))
    counts = np.bincount(path[chosen][0], minlength=m).astype(np.float64)
    return counts / counts.sum()


def pairwise_covariance(R, observed):
    """Covariance of each pair of rows over the columns both observed (ddof 1)."""
    m = R.shape[0]
    Q = np.zeros((m, m))
    for u in range(m):
        for v in range(m):
            both = [i for i in range(R.shape[1]) if observed[u, i] and observed[v, i]]
            if len(both) >= 2:
                a, b = R[u, both], R[v, both]
                Q[u, v] = sum((a - a.mean()) * (b - b.mean())) / (len(both) - 1)
    return Q


def leading_eigenpair(M, n_power=5000, tol=1e-15):
    """Largest (algebraic) eigenpair by power iteration on M + ||M||_F I (positive semidefinite)."""
    shift = np.sqrt((M**2).sum())
    A = M + shift * np.eye(M.shape[0])
    x = np.ones(M.shape[0]) / np.sqrt(M.shape[0])
    for _ in range(n_power):
        x_new = A @ x
        x_new /= np.linalg.norm(x_new)
        if np.linalg.norm(x_new - x) < tol:
            x = x_new
            break
        x = x_new
    return float(x @ M @ x), x


def sml_weights(R, observed, n_iter):
    """SML's eigenvector: diagonal re-estimated by the rank-one fit of the off-diagonal."""
    Q = pairwise_covariance(R, observed)
    off = Q - np.diag(np.diag(Q))
    diagonal = np.diag(Q).copy()
    for _ in range(n_iter):
        lam, v = leading_eigenpair(off + np.diag(diagonal))
        diagonal = max(lam, 0.0) * v**2
    lam, v = leading_eigenpair(off + np.diag(diagonal))
    if (v > 0).sum() < (v < 0).sum() or ((v > 0).sum() == (v < 0).sum() and v.sum() < 0):
        v = -v
    return v, max(lam, 0.0)


def spectral_meta_learner(R, observed, n_iter):
    v, _ = sml_weights(R, observed, n_iter)
    m, n = R.shape
    mu = [np.mean([R[u, i] for i in range(n) if observed[u, i]]) for u in range(m)]
    s = np.zeros(n)
    for i in range(n):
        seen = [u for u in range(m) if observed[u, i]]
        s[i] = sum(v[u] * (R[u, i] - mu[u]) for u in seen) / sum(v[u] ** 2 for u in seen)
    return sigmoid((s - s.mean()) / s.std())


def local_competence(F, y, labeled, k, competence="accuracy"):
    """Woods et al. 1997 with soft competences: the k nearest labeled columns of each column."""
    m, n = F.shape
    eps = np.finfo(np.float64).eps
    out = np.zeros(n)
    for i in range(n):
        candidates = [j for j in range(n) if labeled[j] and j != i]
        dist = [np.sqrt(((F[:, i] - F[:, j]) ** 2).sum()) for j in candidates]
        order = np.argsort(dist, kind="stable")[:k]
        neighbours = [candidates[t] for t in order]
        comp = np.zeros(m)
        for u in range(m):
            if competence == "accuracy":
                comp[u] = 1.0 - np.mean([abs(F[u, j] - y[j]) for j in neighbours])
            else:
                logs = [np.log(min(max(F[u, j] if y[j] == 1 else 1.0 - F[u, j], eps), 1.0)) for j in neighbours]
                comp[u] = np.exp(np.mean(logs))
        out[i] = (comp * F[:, i]).sum() / comp.sum()
    return out


def minibatch_objective(X, w, b, R, C, labels, labeled, columns, scale, rho, lam, agg_l2):
    """Minibatch fold-in joint's estimate of the objective from the batch `columns` (weighted
    aggregator, class weights from the global counts in `scale`): a loop over the columns, each
    y_i by np.linalg.solve, then the column sums scaled by n / |batch|."""
    d = X.shape[0]
    error = ce = 0.0
    total = scale["pos"] + scale["neg"]
    w_pos, w_neg = total / (2 * scale["pos"]), total / (2 * scale["neg"])
    for i in columns:
        c, r = C[:, i], R[:, i]
        y = np.linalg.solve(X @ np.diag(c) @ X.T + lam * np.eye(d), X @ (c * r))
        error += np.sum(c * (r - X.T @ y) ** 2) + lam * y @ y
        if labeled[i]:
            s = w @ (X.T @ y) + b
            omega = w_pos if labels[i] == 1 else w_neg
            ce += omega * (np.logaddexp(0, -s) if labels[i] == 1 else np.logaddexp(0, s))
    factor = scale["n"] / len(columns)
    recon = (factor * error + lam * np.sum(X**2)) / scale["C"]
    sup = factor * ce / total + agg_l2 * np.sum(w**2)
    return rho * recon + (1 - rho) * sup
