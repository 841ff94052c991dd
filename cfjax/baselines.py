"""The baselines CF-Ensemble must beat, and the peer systems researchers would compare it with.

Each baseline is a pure function `(problem) -> proba (n,)` for every column, using labels only
from the training columns (`problem.labeled`; never `validation`, never a hidden label). Missing
cells (unobserved) are handled as documented per baseline.

`BASELINES` (jnp, jit-able, no extra dependency):

* `simple_average`, `best_single`, `stacking`: the classic three.
* `caruana`: ensemble selection (Caruana et al., ICML 2004), forward stepwise with replacement.
* `spectral_meta_learner`: SML (Parisi et al., PNAS 2014), unsupervised, on soft scores.
* `local_competence`: dynamic weighting by local accuracy (Woods et al. 1997; the DES family).

`PEERS` (host-side, NumPy in and out, behind the optional `peers` extra): the weak-supervision
label models on hard votes `R > 0.5`, listed in `HARD_VOTE`: `dawid_skene` (crowd-kit) and
`snorkel_label_model` (snorkel). They import their library when called and raise an
ImportError naming the extra when it is missing; nothing else in cfjax imports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Real

from cfjax import metrics
from cfjax.compilation import jit
from cfjax.logistic import fit_logistic
from cfjax.structs import Problem

__all__ = [
    "BASELINES",
    "HARD_VOTE",
    "PEERS",
    "best_single",
    "caruana",
    "caruana_weights",
    "dawid_skene",
    "hard_votes",
    "local_competence",
    "simple_average",
    "sml_weights",
    "snorkel_label_model",
    "spectral_meta_learner",
    "stacking",
    "stacking_l2",
]


def _observed_mean(problem: Problem) -> jax.Array:
    w = problem.observed.astype(problem.R.dtype)
    return jnp.sum(w * problem.R, axis=0) / jnp.maximum(jnp.sum(w, axis=0), 1.0)


def simple_average(problem: Problem) -> Float[Array, " n"]:
    """Mean of the observed predictions in each column."""
    return _observed_mean(problem)


def _filled(problem: Problem) -> jax.Array:
    """R with each unobserved cell replaced by the column's observed mean."""
    return jnp.where(problem.observed, problem.R, _observed_mean(problem)[None, :])


def best_single(problem: Problem, metric: str = "pr_auc") -> Float[Array, " n"]:
    """The classifier with the best `metric` on the training columns where it is observed.

    Its unobserved cells are filled with the column mean of the other classifiers.
    """
    score = metrics.METRICS[metric]
    mask = problem.observed & problem.labeled[None, :]
    values = jax.vmap(score, in_axes=(None, 0, 0))(problem.labels, problem.R, mask)
    values = jnp.where(jnp.isnan(values), -jnp.inf, values)
    values = values if metrics.higher_is_better(metric) else -values
    return _filled(problem)[jnp.argmax(values)]


def stacking_l2(n_labeled: Real[ArrayLike, ""], C: Real[ArrayLike, ""] = 1.0) -> Float[ArrayLike, ""]:
    """The l2 of `fit_logistic` equal to scikit-learn's LogisticRegression(C) on n_labeled rows.

    scikit-learn minimises 0.5 ||w||^2 + C sum CE; dividing by C n gives mean CE + ||w||^2 / (2 C n).
    """
    return 0.5 / (C * n_labeled)


def stacking(problem: Problem, C: Real[ArrayLike, ""] = 1.0) -> Float[Array, " n"]:
    """L2 logistic regression on the training columns of R (unobserved cells: column mean).

    Matches scikit-learn's `LogisticRegression(C=C)` fitted on R[:, labeled].T with labels.
    `C` is traced (a new value does not recompile).
    """
    F = _filled(problem)
    omega = problem.labeled.astype(F.dtype)
    w, b = fit_logistic(F, problem.labels, omega, stacking_l2(jnp.sum(omega), C))
    return jax.nn.sigmoid(w @ F + b)


# --- ensemble selection (Caruana et al. 2004) --------------------------------------------------


def caruana_weights(
    problem: Problem, n_steps: int = 50, n_init: int = 0, metric: str = "log_loss"
) -> Float[Array, " m"]:
    """The weights (m,) of Caruana ensemble selection, summing to 1.

    Forward stepwise selection with replacement (Caruana, Niculescu-Mizil, Crew, Ksikes, ICML
    2004, section 2): the ensemble is a multiset of classifiers, its prediction the average of
    their rows of F (R with unobserved cells filled by the column's observed mean, as stacking).
    Starting from the `n_init` best single classifiers (the paper's "sorted initialisation";
    0, the default, starts from the empty ensemble), each of `n_steps` steps adds the
    classifier u whose addition gives the best `metric` on the labeled columns,

        u_t = argmin_u  loss( y_L, (S_{t-1} + F_u) / (|S_{t-1}| + 1) ),

    ties to the lowest index. As the paper prescribes, the returned ensemble is the best of
    the nested ensembles along the path (ties to the smallest), so a fixed `n_steps` also
    covers "until no improvement". weights_u = count_u / |S|.

    Args:
      problem: the ensemble; labels are read on `problem.labeled` only.
      n_steps: number of forward steps (static), 50 by default. With m = 9 or 10 classifiers
        the labeled log-loss keeps falling slowly as the weights get finer, so the best prefix
        is often near the end; but 20 or 200 steps moved no weight by more than 0.02 and the
        mean test PR-AUC by under 0.0005 on the synthetic presets and breast_cancer at 10 %
        labels (sorted initialisation with 3 models: within 0.001 too).
      n_init: size of the sorted initialisation (static), 0 <= n_init <= m.
      metric: a key of `cfjax.metrics.METRICS`: "log_loss" (default) or "pr_auc", "roc_auc",
        "brier"; the loss minimised is the metric, negated where higher is better.

    Returns:
      (m,) weights >= 0 summing to 1. Without a labeled column (every candidate's metric NaN)
      the uniform weights 1/m.
    """
    score = metrics.get(metric)
    sign = -1.0 if metrics.higher_is_better(metric) else 1.0
    if not 0 <= n_init <= problem.n_classifiers:
        raise ValueError(f"n_init: must lie in [0, m={problem.n_classifiers}], got {n_init}")
    if n_steps < 1:
        raise ValueError(f"n_steps: must be >= 1, got {n_steps}")
    F = _filled(problem)
    m = F.shape[0]
    dtype = F.dtype
    y, mask = problem.labels, problem.labeled

    def loss_of(proba):
        value = sign * score(y, proba, mask)
        return jnp.where(jnp.isnan(value), jnp.inf, value)

    candidate_losses = jax.vmap(loss_of)

    single = candidate_losses(F)
    # sorted initialisation: the n_init best singles, once each (a stable order: ties to index)
    chosen = jnp.argsort(single, stable=True)[:n_init]
    counts0 = jnp.zeros((m,), dtype).at[chosen].set(1.0)
    total0 = counts0 @ F
    loss0 = jnp.where(n_init > 0, loss_of(total0 / jnp.maximum(n_init, 1)), jnp.inf)

    def step(carry, _):
        counts, total = carry
        size = jnp.sum(counts)
        losses = candidate_losses((total[None, :] + F) / (size + 1.0))
        u = jnp.argmin(losses)
        counts = counts + jax.nn.one_hot(u, m, dtype=dtype)
        total = total + F[u]
        return (counts, total), (counts, losses[u])

    _, (path_counts, path_losses) = jax.lax.scan(step, (counts0, total0), None, length=n_steps)
    path_counts = jnp.concatenate([counts0[None, :], path_counts], axis=0)
    path_losses = jnp.concatenate([loss0[None], path_losses])
    best = jnp.argmin(path_losses)
    counts = path_counts[best]
    uniform = jnp.full((m,), 1.0 / m, dtype)
    return jnp.where(jnp.isfinite(path_losses[best]), counts / jnp.sum(counts), uniform)


def caruana(
    problem: Problem, n_steps: int = 50, n_init: int = 0, metric: str = "log_loss"
) -> Float[Array, " n"]:
    """Ensemble selection with replacement (Caruana et al. 2004), log-loss on the labeled columns.

    proba = w @ F with w = `caruana_weights(problem, n_steps, n_init, metric)` and F = R with
    unobserved cells filled by the column's observed mean. Defaults: empty start, 50 steps,
    the best ensemble along the path.
    """
    return caruana_weights(problem, n_steps, n_init, metric) @ _filled(problem)


# --- spectral meta-learner (Parisi et al. 2014) ------------------------------------------------


def _pairwise_covariance(problem: Problem) -> tuple[jax.Array, jax.Array]:
    """(Q, mu): the m x m covariance of the rows of R over co-observed columns, and row means.

    Q_uv = sum_i o_ui o_vi (r_ui - a_uv)(r_vi - a_vu) / (N_uv - 1), where N_uv counts the columns
    both classifiers scored and a_uv is u's mean over them (pairwise-complete covariance; the
    plain sample covariance when nothing is missing). Rows are centred on their observed mean
    mu_u first, which changes nothing exactly and keeps float32 cancellation small.
    """
    O = problem.observed.astype(problem.R.dtype)
    mu = jnp.sum(O * problem.R, axis=1) / jnp.maximum(jnp.sum(O, axis=1), 1.0)
    Z = O * (problem.R - mu[:, None])
    N = O @ O.T
    S = Z @ O.T  # S_uv: sum of u's centred scores over the columns v also scored
    Q = (Z @ Z.T - S * S.T / jnp.maximum(N, 1.0)) / jnp.maximum(N - 1.0, 1.0)
    return jnp.where(N >= 2, Q, 0.0), mu


def _leading_eigenpair(M: jax.Array) -> tuple[jax.Array, jax.Array]:
    values, vectors = jnp.linalg.eigh(M)
    return values[-1], vectors[:, -1]


def sml_weights(problem: Problem, n_iter: int = 100) -> tuple[Float[Array, " m"], Float[Array, ""]]:
    """The SML eigenvector v (m,) (unit norm, sign fixed) and its eigenvalue lambda.

    Under conditional independence of the classifiers given the class, the covariance of their
    soft scores is, off the diagonal, exactly rank one:

        Q_uv = pi (1 - pi) (E[r_u | y=1] - E[r_u | y=0]) (E[r_v | y=1] - E[r_v | y=0]),  u != v,

    so Q_uv = lambda v_u v_v with v_u proportional to classifier u's class separation (for hard
    +-1 votes, 2 x balanced accuracy - 1, as in Parisi, Strino, Nadler, Kluger, PNAS 2014). The
    diagonal of Q is not of that form, so it is re-estimated: the rank-one fit of the
    off-diagonal entries, min_{lambda, v} sum_{u != v} (Q_uv - lambda v_u v_v)^2, is solved by
    the iteration of the paper's completion idea (as in hard-impute): fill the diagonal with the
    current fit lambda v_u^2, take the leading eigenpair, repeat `n_iter` (static) times from
    the sample covariance. Each pass never increases the off-diagonal residual. The sign of v
    is fixed so that most entries are positive (most classifiers beat chance; ties: positive
    sum). `Q` is the pairwise-complete covariance over co-observed columns; every column is
    used and no label is read.

    Returns:
      (v, lambda): v (m,) with ||v|| = 1, lambda >= 0 (clipped).
    """
    if n_iter < 0:
        raise ValueError(f"n_iter: must be >= 0, got {n_iter}")
    Q, _ = _pairwise_covariance(problem)
    off = Q - jnp.diag(jnp.diag(Q))

    def refit(diagonal, _):
        lam, v = _leading_eigenpair(off + jnp.diag(diagonal))
        return jnp.maximum(lam, 0.0) * v**2, None

    diagonal, _ = jax.lax.scan(refit, jnp.diag(Q), None, length=n_iter)
    lam, v = _leading_eigenpair(off + jnp.diag(diagonal))
    positives = jnp.sum(v > 0) - jnp.sum(v < 0)
    flip = (positives < 0) | ((positives == 0) & (jnp.sum(v) < 0))
    return jnp.where(flip, -v, v), jnp.maximum(lam, 0.0)


def spectral_meta_learner(problem: Problem, n_iter: int = 100) -> Float[Array, " n"]:
    """SML on soft scores (Parisi et al. 2014): unsupervised, every column, no label read.

    With v from `sml_weights` and mu_u classifier u's observed mean, each column gets the score

        s_i = sum_u o_ui v_u (r_ui - mu_u) / sum_u o_ui v_u^2,

    the least-squares fit of column i's centred scores to the direction v over its observed
    cells (o: observed). With every cell observed and ||v|| = 1 this is exactly the SML
    combination sum_u v_u (r_u - mu_u); with missing cells it keeps a column with fewer
    scores on the same scale instead of shrinking it toward 0. Variant and why: the paper's
    SML is the weighted vote sign(sum_u v_u f_u) on hard +-1 predictions; on probabilities the
    same covariance argument makes v_u proportional to the difference of u's class means, and
    the soft score keeps the ranking that PR-AUC needs (a hard vote ties most columns).

    The probability is sigmoid((s - mean s) / sd s), a monotone map of the score: it ranks like
    s, but it is not calibrated (nothing here sees a label). A constant score gives 0.5.
    """
    v, _ = sml_weights(problem, n_iter)
    _, mu = _pairwise_covariance(problem)
    O = problem.observed.astype(problem.R.dtype)
    centred = O * (problem.R - mu[:, None])
    num = v @ centred
    den = (v**2) @ O
    s = num / jnp.maximum(den, jnp.finfo(problem.R.dtype).tiny)
    sd = jnp.std(s)
    z = (s - jnp.mean(s)) / jnp.where(sd > 0, sd, 1.0)
    return jax.nn.sigmoid(z)


# --- dynamic weighting by local competence (Woods et al. 1997) ---------------------------------

COMPETENCES = ("accuracy", "likelihood")


def local_competence(
    problem: Problem, k: int = 15, competence: str = "accuracy", chunk_size: int = 1024
) -> Float[Array, " n"]:
    """Dynamic weighting by local accuracy (Woods, Kegelmeyer, Bowyer 1997; DES, e.g. KNORA).

    F is R with unobserved cells filled by the column's observed mean. For each column i, its
    neighbourhood N(i) is the k labeled columns j != i nearest to it in Euclidean distance
    between the m-vectors F[:, i] and F[:, j] (a labeled column never counts itself; ties to
    the lower index). Classifier u's competence there is

        "accuracy" (default):  c_ui = 1 - mean_{j in N(i)} |F_uj - y_j|   (soft local accuracy),
        "likelihood":          c_ui = exp(mean_{j in N(i)} log p_uj(y_j))  (geometric mean of
                               the likelihood of the true labels; probabilities clipped to eps),

    and proba_i = sum_u c_ui F_ui / sum_u c_ui. Fewer than k labeled columns: all of them; none:
    equal competences (the mean of F). If every competence is 0, the mean of F.

    Distances are computed in chunks of `chunk_size` columns (static) against all n columns,
    non-labeled ones masked to +inf, so memory is O(chunk_size n + m n), whatever |L| is.
    k = 15 by default: Woods et al. and the DES literature use k between 5 and 15; with soft
    competences a larger neighbourhood averages out the noise of single labels.

    Args:
      problem: the ensemble; labels read on `problem.labeled` only.
      k: neighbourhood size (static), >= 1.
      competence: "accuracy" or "likelihood" (static).
      chunk_size: columns per distance block (static), >= 1.
    """
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    if competence not in COMPETENCES:
        raise ValueError(f"competence: must be one of {COMPETENCES}, got {competence!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: must be >= 1, got {chunk_size}")
    F = _filled(problem)
    n = F.shape[1]
    dtype = F.dtype
    k = min(k, n)
    chunk = min(chunk_size, n)
    n_chunks = math.ceil(n / chunk)
    y = problem.labels
    if competence == "accuracy":
        gain = 1.0 - jnp.abs(F - y[None, :])
    else:
        eps = jnp.finfo(dtype).eps
        gain = jnp.log(jnp.clip(jnp.where(y[None, :] > 0.5, F, 1.0 - F), eps, 1.0))
    sq = jnp.sum(F**2, axis=0)
    everyone = jnp.arange(n)
    # the last chunk is padded with copies of column n - 1; their outputs are dropped
    columns = jnp.minimum(jnp.arange(n_chunks * chunk), n - 1).reshape(n_chunks, chunk)

    def block(cols):
        Fc = F[:, cols]  # (m, c)
        d = sq[cols][:, None] + sq[None, :] - 2.0 * (Fc.T @ F)  # (c, n)
        allowed = problem.labeled[None, :] & (cols[:, None] != everyone[None, :])
        d = jnp.where(allowed, d, jnp.inf)
        neg, nb = jax.lax.top_k(-d, k)  # (c, k), nearest first
        valid = jnp.isfinite(neg).astype(dtype)
        count = jnp.sum(valid, axis=1)  # (c,)
        mean_gain = jnp.sum(valid[None, :, :] * gain[:, nb], axis=2) / jnp.maximum(count, 1.0)[None, :]
        comp = mean_gain if competence == "accuracy" else jnp.exp(mean_gain)
        comp = jnp.where(count[None, :] > 0, comp, 1.0)  # (m, c)
        total = jnp.sum(comp, axis=0)
        weighted = jnp.sum(comp * Fc, axis=0) / jnp.where(total > 0, total, 1.0)
        return jnp.where(total > 0, weighted, jnp.mean(Fc, axis=0))

    return jax.lax.map(block, columns).reshape(-1)[:n]


# --- hard-vote peers (optional `peers` extra) --------------------------------------------------

_PEERS_INSTALL = 'pip install "cfjax[peers]"'


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{package} is not installed; the hard-vote peers need the optional extra: {_PEERS_INSTALL}"
        ) from err


def hard_votes(problem: Problem) -> Int[np.ndarray, "n m"]:
    """(n, m) int votes for the label models: 1 where R > 0.5, 0 where R <= 0.5, -1 unobserved."""
    R = np.asarray(problem.R)
    observed = np.asarray(problem.observed)
    return np.where(observed, (R > 0.5).astype(np.int64), -1).T


def _labeled_classes(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    labeled = np.asarray(problem.labeled)
    return labeled, np.asarray(problem.labels)[labeled].astype(np.int64)


def dawid_skene(problem: Problem, n_iter: int = 100, tol: float = 1e-5) -> Float[np.ndarray, " n"]:
    """Dawid-Skene (crowd-kit's `DawidSkene`) on hard votes; P(class 1) for every column.

    Each classifier is a worker, each column a task, its vote `R > 0.5` a label; unobserved
    cells are absent from the data (abstentions). The labeled columns enter as gold: they are
    passed as `true_labels`, which crowd-kit (>= 1.2) uses to fix those tasks' posteriors to
    their labels in every EM step, so the confusion matrices and priors are fitted with them.
    Host-side: NumPy out, (n,) float64. Needs the `peers` extra.
    """
    _require("crowdkit", "crowd-kit")
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    votes = hard_votes(problem)
    task, worker = np.nonzero(votes >= 0)
    frame = pd.DataFrame({"task": task, "worker": worker, "label": votes[task, worker]})
    labeled, classes = _labeled_classes(problem)
    gold = pd.Series(classes, index=np.flatnonzero(labeled))
    model = DawidSkene(n_iter=n_iter, tol=tol)
    model.fit(frame, true_labels=gold)
    probas = model.probas_.reindex(index=range(votes.shape[0]))
    return np.asarray(probas.get(1, pd.Series(0.0, index=probas.index)).fillna(0.0), np.float64)


def snorkel_label_model(
    problem: Problem, n_epochs: int = 500, seed: int = 0
) -> Float[np.ndarray, " n"]:
    """Snorkel's `LabelModel` (Ratner et al.) on hard votes; P(class 1) for every column.

    The label matrix is `hard_votes(problem)` (abstain = -1 on unobserved cells). The model is
    fitted on every column, with the class balance [1 - p, p] taken from the labeled columns
    (p: their share of positives); no other label is used (LabelModel takes no gold labels).
    Host-side: NumPy out, (n,) float64. Needs the `peers` extra (snorkel, which needs torch).
    """
    _require("snorkel", "snorkel")
    from snorkel.labeling.model import LabelModel

    votes = hard_votes(problem)
    _, classes = _labeled_classes(problem)
    p = float(np.mean(classes)) if classes.size else 0.5
    model = LabelModel(cardinality=2, verbose=False)
    model.fit(votes, class_balance=np.array([1.0 - p, p]), n_epochs=n_epochs, seed=seed, progress_bar=False)
    return np.asarray(model.predict_proba(votes)[:, 1], np.float64)


# Jitted here so that eager calls compile once per shape, not once per call (the lax loops
# inside close over per-call functions; why that matters: tests/test_compiles_once.py).
simple_average = jit(simple_average)
best_single = jit(best_single, static_argnames="metric")
stacking = jit(stacking)
caruana_weights = jit(caruana_weights, static_argnames=("n_steps", "n_init", "metric"))
caruana = jit(caruana, static_argnames=("n_steps", "n_init", "metric"))
sml_weights = jit(sml_weights, static_argnames="n_iter")
spectral_meta_learner = jit(spectral_meta_learner, static_argnames="n_iter")
local_competence = jit(local_competence, static_argnames=("k", "competence", "chunk_size"))


BASELINES: dict[str, Callable[[Problem], jax.Array]] = {
    "simple_average": simple_average,
    "best_single": best_single,
    "stacking": stacking,
    "caruana": caruana,
    "spectral_meta_learner": spectral_meta_learner,
    "local_competence": local_competence,
}
"""The jnp baselines (no extra dependency), in the order tables list them."""

PEERS: dict[str, Callable[[Problem], np.ndarray]] = {
    "dawid_skene": dawid_skene,
    "snorkel_label_model": snorkel_label_model,
}
"""The host-side peer systems of the optional `peers` extra; not part of the default benchmark."""

HARD_VOTE = frozenset({"dawid_skene", "snorkel_label_model"})
"""The methods that see only the hard votes R > 0.5 (unobserved cells abstain)."""
