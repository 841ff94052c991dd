"""cfjax.metrics against scikit-learn (the reference) and slow pairwise NumPy twins."""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given
from hypothesis import strategies as st

from cfjax import metrics

NAMES = ["pr_auc", "roc_auc", "brier", "log_loss"]
N = 40  # one length for most tests, so each jitted metric compiles once per dtype
JIT = {name: jax.jit(fn) for name, fn in metrics.METRICS.items()}


# ----- references -------------------------------------------------------------------------------


def sk_metric(name, y, s):
    """sklearn's value on an already-masked subset (labels=[0, 1] so one-class log_loss works)."""
    y = np.asarray(y).astype(int)
    if name == "pr_auc":
        return skm.average_precision_score(y, s)
    if name == "roc_auc":
        return skm.roc_auc_score(y, s)
    if name == "brier":
        return skm.brier_score_loss(y, s, labels=[0, 1])
    return skm.log_loss(y, s, labels=[0, 1])


def pairwise_auc(y, s):
    """O(n^2) Mann-Whitney twin: P(s_pos > s_neg) + 1/2 P(tie)."""
    pos, neg = s[y == 1], s[y == 0]
    wins = 0.0
    for a in pos:
        for b in neg:
            wins += 1.0 if a > b else 0.5 if a == b else 0.0
    return wins / (len(pos) * len(neg))


def definition_ap(y, s):
    """AP from its definition: each positive takes precision over all scores >= its own."""
    total = 0.0
    for i in np.flatnonzero(y == 1):
        admitted = s >= s[i]
        total += y[admitted].sum() / admitted.sum()
    return total / (y == 1).sum()


def make_case(rng, n, kind, masked):
    """Labels with both classes, scores in [0, 1], and a mask keeping both classes."""
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.random(n)
    if kind == "round1":
        s = np.round(s, 1)
    elif kind == "three":
        s = rng.choice(np.array([0.2, 0.5, 0.9]), n)
    mask = rng.random(n) < 0.6 if masked else np.ones(n, bool)
    mask[:2] = True
    return y, s, mask


# ----- agreement with sklearn -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["continuous", "round1", "three"])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_sklearn_float64(name, kind, masked):
    rng = np.random.default_rng([NAMES.index(name), len(kind), int(masked)])
    fn = JIT[name]
    with jax.enable_x64(True):
        for _ in range(3):
            y, s, mask = make_case(rng, N, kind, masked)
            got = fn(jnp.asarray(y), jnp.asarray(s), jnp.asarray(mask))
            assert got.dtype == jnp.float64
            np.testing.assert_allclose(
                float(got), sk_metric(name, y[mask], s[mask]), rtol=1e-6, atol=1e-9
            )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["continuous", "three"])
def test_matches_sklearn_float32(name, kind):
    rng = np.random.default_rng(7)
    y, s, mask = make_case(rng, N, kind, masked=True)
    s32 = s.astype(np.float32)
    got = JIT[name](jnp.asarray(y), jnp.asarray(s32), jnp.asarray(mask))
    assert got.dtype == jnp.float32
    # sklearn keeps float32 for log_loss (its clipping eps depends on it); compare in float64.
    want = sk_metric(name, y[mask], s32[mask])
    np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)


def test_twins_agree_with_sklearn_and_library():
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        for kind in ["continuous", "three"]:
            y, s, _ = make_case(rng, N, kind, masked=False)
            np.testing.assert_allclose(pairwise_auc(y, s), skm.roc_auc_score(y, s), rtol=1e-12)
            np.testing.assert_allclose(
                definition_ap(y, s), skm.average_precision_score(y, s), rtol=1e-12
            )
            np.testing.assert_allclose(float(JIT["roc_auc"](y, s)), pairwise_auc(y, s), rtol=1e-12)
            np.testing.assert_allclose(float(JIT["pr_auc"](y, s)), definition_ap(y, s), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_loss_clipping_matches_sklearn(dtype):
    """Probabilities at exactly 0 and 1 (both right and wrong) clip with the dtype's eps."""
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.0, 1.0, 1.0, 0.0, 0.5, 1e-9], dtype=dtype)
    with jax.enable_x64(True):
        got = JIT["log_loss"](jnp.asarray(y), jnp.asarray(p))
        assert got.dtype == dtype
        rtol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(float(got), skm.log_loss(y, p), rtol=rtol)
        # An explicit eps overrides the default.
        explicit = JIT["log_loss"](jnp.asarray(y), jnp.asarray(p), eps=1e-3)
        want = -np.mean(
            np.where(
                y == 1, np.log(np.clip(p, 1e-3, 1 - 1e-3)), np.log(np.clip(1 - p, 1e-3, 1 - 1e-3))
            )
        )
        np.testing.assert_allclose(float(explicit), want, rtol=1e-5)


def test_label_and_score_dtypes():
    """Bool / float labels and integer scores give the same values as int labels."""
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    s = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    base = JIT["roc_auc"](jnp.asarray(y), jnp.asarray(s))
    np.testing.assert_allclose(float(base), skm.roc_auc_score(y, s), rtol=1e-6)
    for labels in [y.astype(bool), y.astype(np.float32)]:
        assert float(JIT["roc_auc"](jnp.asarray(labels), jnp.asarray(s))) == float(base)
    np.testing.assert_allclose(
        float(JIT["pr_auc"](jnp.asarray(y.astype(bool)), jnp.asarray(s))),
        skm.average_precision_score(y, s),
        rtol=1e-6,
    )


# ----- masks, undefined cases --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_masked_entries_never_leak(name):
    """Garbage (NaN, inf, wrong labels) in masked-out entries does not change the value."""
    rng = np.random.default_rng(11)
    y, s, mask = make_case(rng, N, "round1", masked=True)
    fn = JIT[name]
    clean = fn(jnp.asarray(y), jnp.asarray(s), jnp.asarray(mask))
    s_bad = np.where(mask, s, np.where(rng.random(N) < 0.5, np.nan, np.inf))
    y_bad = np.where(mask, y, 1 - y)
    dirty = fn(jnp.asarray(y_bad), jnp.asarray(s_bad), jnp.asarray(mask))
    assert float(dirty) == float(clean)


def test_default_mask_is_all():
    rng = np.random.default_rng(5)
    y, s, _ = make_case(rng, N, "round1", masked=False)
    for name, fn in metrics.METRICS.items():
        # Two different programs: XLA may sum in another order, so not bit-equal.
        np.testing.assert_allclose(
            float(jax.jit(fn)(y, s)), float(JIT[name](y, s, np.ones(N, bool))), rtol=1e-6
        )


@pytest.mark.parametrize("name", NAMES)
def test_empty_mask_is_nan(name):
    y = jnp.array([0, 1, 0, 1])
    s = jnp.array([0.1, 0.2, 0.3, 0.4])
    assert jnp.isnan(JIT[name](y, s, jnp.zeros(4, bool)))


def test_one_class_cases():
    """No positive: both ranking metrics NaN. No negative: ROC NaN, AP = 1 (sklearn's value).

    Brier and log-loss stay defined for one class and match sklearn given labels=[0, 1].
    """
    s = np.array([0.1, 0.7, 0.4, 0.9])
    mask = np.array([True, True, False, True])
    for y in [np.zeros(4, int), np.ones(4, int)]:
        assert jnp.isnan(JIT["roc_auc"](y, s, mask))
        for name in ["brier", "log_loss"]:
            got = JIT[name](y, s, mask)
            np.testing.assert_allclose(float(got), sk_metric(name, y[mask], s[mask]), rtol=1e-6)
    assert jnp.isnan(JIT["pr_auc"](np.zeros(4, int), s, mask))
    ones = np.ones(4, int)
    assert float(JIT["pr_auc"](ones, s, mask)) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn returns 1 here without warning
        assert skm.average_precision_score(ones[mask], s[mask]) == 1.0
    # A mask that drops the only negative makes ROC undefined too.
    y = np.array([1, 0, 1, 1])
    assert jnp.isnan(JIT["roc_auc"](y, s, np.array([True, False, True, True])))


# ----- jit and vmap ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_vmap_and_jit_equal_loop(name):
    rng = np.random.default_rng(2)
    fn = metrics.METRICS[name]
    n, b = N, 5
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    scores = np.round(rng.random((b, n)), 1)
    masks = rng.random((b, n)) < 0.7
    masks[:, :2] = True
    masks[-1] = False  # one empty mask in the batch: NaN must stay local to its row
    shared = masks[0]
    y_j, s_j, m_j = jnp.asarray(y), jnp.asarray(scores), jnp.asarray(masks)

    over_scores = jax.jit(jax.vmap(fn, in_axes=(None, 0, None)))(y_j, s_j, jnp.asarray(shared))
    loop = np.array([float(fn(y_j, s_j[k], jnp.asarray(shared))) for k in range(b)])
    np.testing.assert_allclose(np.asarray(over_scores), loop, rtol=1e-6)

    over_masks = jax.vmap(fn, in_axes=(None, None, 0))(y_j, s_j[0], m_j)
    loop = np.array([float(fn(y_j, s_j[0], m_j[k])) for k in range(b)])
    np.testing.assert_allclose(np.asarray(over_masks), loop, rtol=1e-6)
    assert np.isnan(loop[-1]) and np.isfinite(loop[:-1]).all()

    both = jax.jit(jax.vmap(fn))(jnp.broadcast_to(y_j, (b, n)), s_j, m_j)
    loop = np.array([float(fn(y_j, s_j[k], m_j[k])) for k in range(b)])
    np.testing.assert_allclose(np.asarray(both), loop, rtol=1e-6)


def test_one_trace_across_masks_and_values():
    """Masks and scores are traced: new values reuse one compiled program."""

    @jax.jit
    @chex.assert_max_traces(n=1)
    def all_metrics(y, s, mask):
        return jnp.stack([fn(y, s, mask) for fn in metrics.METRICS.values()])

    rng = np.random.default_rng(4)
    for _ in range(3):
        y, s, mask = make_case(rng, 20, "continuous", masked=True)
        got = all_metrics(
            jnp.asarray(y, jnp.float32), jnp.asarray(s, jnp.float32), jnp.asarray(mask)
        )
        want = [sk_metric(name, y[mask], s[mask].astype(np.float32)) for name in NAMES]
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


# ----- registry and validation -------------------------------------------------------------------


def test_registry():
    assert list(metrics.METRICS) == NAMES
    assert metrics.higher_is_better("pr_auc") and metrics.higher_is_better("roc_auc")
    assert not metrics.higher_is_better("brier") and not metrics.higher_is_better("log_loss")
    assert metrics.get("roc_auc") is metrics.roc_auc
    with pytest.raises(ValueError, match="name"):
        metrics.higher_is_better("f1")
    with pytest.raises(ValueError, match="name"):
        metrics.get("f1")


@pytest.mark.usefixtures("without_type_checks")
def test_shape_validation():
    y, s = jnp.zeros(4), jnp.zeros(4)
    with pytest.raises(ValueError, match="y_true"):
        JIT["roc_auc"](jnp.zeros(3), s)
    with pytest.raises(ValueError, match="mask"):
        JIT["brier"](y, s, jnp.ones(5, bool))
    with pytest.raises(ValueError, match="score"):
        JIT["pr_auc"](jnp.zeros((2, 4)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="proba"):
        JIT["log_loss"](jnp.zeros((2, 4)), jnp.zeros((2, 4)))


# ----- property test -----------------------------------------------------------------------------


N_MAX = 10


@jax.jit
def _all_metrics(y, s, mask):
    return jnp.stack([fn(y, s, mask) for fn in metrics.METRICS.values()])


@st.composite
def small_problems(draw):
    """n <= 10, scores on a coarse grid (many ties), any mask; the case may be one-class or empty."""
    n = draw(st.integers(1, N_MAX))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    s = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=np.float64) / 4.0
    mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return y, s, mask


@given(small_problems())
def test_property_matches_sklearn(case):
    """Padded to N_MAX with masked-out garbage, so one compiled program serves every example."""
    y, s, mask = case
    ys, ss = y[mask], s[mask]
    n_pos, n_neg = int(ys.sum()), int((1 - ys).sum())
    pad = N_MAX - len(y)
    with jax.enable_x64(True):
        got_all = _all_metrics(
            jnp.asarray(np.concatenate([y, np.ones(pad, int)])),
            jnp.asarray(np.concatenate([s, np.full(pad, np.nan)])),
            jnp.asarray(np.concatenate([mask, np.zeros(pad, bool)])),
        )
    defined = {
        "pr_auc": n_pos > 0,
        "roc_auc": n_pos > 0 and n_neg > 0,
        "brier": mask.any(),
        "log_loss": mask.any(),
    }
    for name, got in zip(NAMES, np.asarray(got_all)):
        if not defined[name]:
            assert np.isnan(got)
            continue
        if metrics.higher_is_better(name):
            assert 0.0 <= got <= 1.0
        np.testing.assert_allclose(got, sk_metric(name, ys, ss), rtol=1e-9, atol=1e-12)


# ----- K classes ---------------------------------------------------------------------------------

MC_NAMES = ["log_loss", "accuracy", "pr_auc", "roc_auc"]
MC_JIT = {name: jax.jit(fn) for name, fn in metrics.MULTICLASS_METRICS.items()}


def mc_case(rng, K, n, kind="continuous"):
    """Labels with every class, probabilities (K, n) whose columns sum to 1, a mask keeping
    every class; kind "round" rounds the logits so that scores tie within a class."""
    y = rng.integers(0, K, n)
    y[:K] = np.arange(K)
    logits = rng.normal(size=(K, n)) + 1.5 * (np.arange(K)[:, None] == y[None, :])
    if kind == "round":
        logits = np.round(logits)
    p = np.exp(logits)
    p /= p.sum(axis=0, keepdims=True)
    mask = rng.random(n) < 0.7
    mask[:K] = True
    return y, p, mask


def sk_multiclass(name, y, p, K):
    """sklearn on an already-masked subset (y (n,), p (K, n))."""
    if name == "log_loss":
        return skm.log_loss(y, p.T, labels=list(range(K)))
    if name == "accuracy":
        return skm.accuracy_score(y, p.argmax(axis=0))
    if name == "pr_auc":
        present = [k for k in range(K) if (y == k).any()]
        return np.mean([skm.average_precision_score(y == k, p[k]) for k in present])
    return skm.roc_auc_score(y, p.T, multi_class="ovr", average="macro", labels=list(range(K)))


@pytest.mark.parametrize("name", MC_NAMES)
@pytest.mark.parametrize("kind", ["continuous", "round"])
def test_multiclass_matches_sklearn(name, kind):
    rng = np.random.default_rng([MC_NAMES.index(name), len(kind)])
    with jax.enable_x64(True):
        for K in (3, 5):
            y, p, mask = mc_case(rng, K, N, kind)
            got = MC_JIT[name](jnp.asarray(y), jnp.asarray(p), jnp.asarray(mask))
            assert got.dtype == jnp.float64
            np.testing.assert_allclose(float(got), sk_multiclass(name, y[mask], p[:, mask], K), rtol=1e-9)


def test_macro_pr_auc_is_sklearns_macro_average():
    """With every class present, macro_pr_auc is sklearn's average="macro" over the binarised labels."""
    rng = np.random.default_rng(21)
    y, p, _ = mc_case(rng, 4, N)
    with jax.enable_x64(True):
        want = skm.average_precision_score(np.eye(4)[y], p.T, average="macro")
        np.testing.assert_allclose(float(MC_JIT["pr_auc"](y, p)), want, rtol=1e-12)


def test_multiclass_ties_and_clipping():
    """Tied probabilities (argmax to the lowest class, as sklearn's predict) and exact 0 / 1."""
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([[0.5, 0.5, 0.0, 1 / 3, 0.0, 1.0],
                  [0.5, 0.5, 0.0, 1 / 3, 1.0, 0.0],
                  [0.0, 0.0, 1.0, 1 / 3, 0.0, 0.0]])
    with jax.enable_x64(True):
        np.testing.assert_allclose(float(MC_JIT["accuracy"](y, p)), skm.accuracy_score(y, p.argmax(0)))
        assert float(MC_JIT["accuracy"](y, p)) == 4 / 6  # columns 1 and 3: ties go to class 0
        for name in ["log_loss", "pr_auc", "roc_auc"]:
            np.testing.assert_allclose(float(MC_JIT[name](y, p)), sk_multiclass(name, y, p, 3), rtol=1e-12)
        p32 = p.astype(np.float32)
        np.testing.assert_allclose(float(MC_JIT["log_loss"](y, p32)),
                                   skm.log_loss(y, p32.T, labels=[0, 1, 2]), rtol=1e-6)


def test_class_absent_from_the_mask_is_skipped():
    """A class with no selected positive: its one-vs-rest AP and AUC are undefined and left out
    of the macro mean (sklearn warns or raises there); log-loss and accuracy do not care."""
    rng = np.random.default_rng(22)
    K = 4
    y, p, mask = mc_case(rng, K, N)
    mask = mask & (y != 2)
    with jax.enable_x64(True):
        per_class = np.asarray(metrics.one_vs_rest(metrics.average_precision, y, p, mask))
        assert np.isnan(per_class[2]) and np.isfinite(np.delete(per_class, 2)).all()
        ys, ps = y[mask], p[:, mask]
        present = [0, 1, 3]
        want_ap = np.mean([skm.average_precision_score(ys == k, ps[k]) for k in present])
        want_auc = np.mean([skm.roc_auc_score(ys == k, ps[k]) for k in present])
        np.testing.assert_allclose(float(MC_JIT["pr_auc"](y, p, mask)), want_ap, rtol=1e-12)
        np.testing.assert_allclose(float(MC_JIT["roc_auc"](y, p, mask)), want_auc, rtol=1e-12)
        np.testing.assert_allclose(float(MC_JIT["log_loss"](y, p, mask)),
                                   skm.log_loss(ys, ps.T, labels=list(range(K))), rtol=1e-12)
        # one selected class only: no negative anywhere, so ROC is NaN; AP of that class is 1
        only = mask & (y == 1)
        assert np.isnan(float(MC_JIT["roc_auc"](y, p, only)))
        assert float(MC_JIT["pr_auc"](y, p, only)) == 1.0
        for name in MC_NAMES:
            assert np.isnan(float(MC_JIT[name](y, p, np.zeros(N, bool))))


@pytest.mark.parametrize("name", MC_NAMES)
def test_multiclass_masked_entries_never_leak(name):
    """NaN probabilities and -1 labels (an unlabeled column) outside the mask change nothing."""
    rng = np.random.default_rng(23)
    y, p, mask = mc_case(rng, 3, N)
    clean = MC_JIT[name](y, p, mask)
    dirty = MC_JIT[name](np.where(mask, y, -1), np.where(mask[None, :], p, np.nan), mask)
    assert float(dirty) == float(clean)


def test_binary_case_agrees_with_the_binary_metrics():
    """K = 2 on [1 - r, r]: log-loss and ROC-AUC equal the binary ones on r, accuracy is r > 0.5,
    and the one-vs-rest AP of class 1 is the binary AP."""
    rng = np.random.default_rng(24)
    y, s, mask = make_case(rng, N, "round1", masked=True)
    p = np.stack([1.0 - s, s])
    with jax.enable_x64(True):
        np.testing.assert_allclose(float(MC_JIT["log_loss"](y, p, mask)), float(JIT["log_loss"](y, s, mask)),
                                   rtol=1e-12)
        np.testing.assert_allclose(float(MC_JIT["roc_auc"](y, p, mask)), float(JIT["roc_auc"](y, s, mask)),
                                   rtol=1e-12)
        assert float(MC_JIT["accuracy"](y, p, mask)) == np.mean((s[mask] > 0.5) == y[mask])
        ap = np.asarray(metrics.one_vs_rest(metrics.average_precision, y, p, mask))
        np.testing.assert_allclose(ap[1], float(JIT["pr_auc"](y, s, mask)), rtol=1e-12)


@jax.jit
@chex.assert_max_traces(n=1)
def _mc_per_classifier(y, R, mask):
    """Every K-class metric of every classifier of R (m, K, n): (4, m), one vmap per metric."""
    return jnp.stack([jax.vmap(fn, in_axes=(None, 0, None))(y, R, mask) for fn in metrics.MULTICLASS_METRICS.values()])


def test_multiclass_vmap_over_classifiers_equals_loop():
    """The metrics of each classifier of an (m, K, n) ensemble: vmapped, one trace for new values."""
    for seed in (25, 26):
        rng = np.random.default_rng(seed)
        y, _, mask = mc_case(rng, 3, N)
        R = np.stack([mc_case(rng, 3, N)[1] for _ in range(4)]).astype(np.float32)
        got = np.asarray(_mc_per_classifier(jnp.asarray(y), jnp.asarray(R), jnp.asarray(mask)))
        loop = [[float(fn(y, R[u], mask)) for u in range(4)] for fn in metrics.MULTICLASS_METRICS.values()]
        np.testing.assert_allclose(got, loop, rtol=1e-5)


def test_multiclass_registry():
    assert list(metrics.MULTICLASS_METRICS) == MC_NAMES
    assert metrics.higher_is_better("accuracy") and not metrics.higher_is_better("log_loss")
    assert metrics.get_multiclass("pr_auc") is metrics.macro_pr_auc
    with pytest.raises(ValueError, match="name"):
        metrics.get_multiclass("brier")


@pytest.mark.usefixtures("without_type_checks")
def test_multiclass_shape_validation():
    with pytest.raises(ValueError, match="proba"):
        metrics.accuracy(jnp.zeros(4, int), jnp.zeros(4))
    with pytest.raises(ValueError, match="K >= 2"):
        metrics.multiclass_log_loss(jnp.zeros(4, int), jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="y_true"):
        metrics.macro_pr_auc(jnp.zeros(3, int), jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="mask"):
        metrics.macro_roc_auc(jnp.zeros(4, int), jnp.zeros((3, 4)), jnp.ones(5, bool))


@jax.jit
def _all_multiclass(y, p, mask):
    return jnp.stack([fn(y, p, mask) for fn in metrics.MULTICLASS_METRICS.values()])


@st.composite
def small_multiclass(draw):
    """K = 3, n <= 10, probabilities from a coarse grid (ties within and across classes), any mask."""
    n = draw(st.integers(1, N_MAX))
    y = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    w = np.array(draw(st.lists(st.integers(1, 4), min_size=3 * n, max_size=3 * n)), dtype=np.float64)
    p = w.reshape(3, n) / w.reshape(3, n).sum(axis=0)
    mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return y, p, mask


@given(small_multiclass())
def test_property_multiclass_matches_sklearn(case):
    """Padded to N_MAX with masked-out garbage (NaN, label -1): one program for every example.
    The macro means skip the classes sklearn cannot score; NaN when none is left."""
    y, p, mask = case
    pad = N_MAX - len(y)
    with jax.enable_x64(True):
        got = np.asarray(_all_multiclass(
            jnp.asarray(np.concatenate([y, -np.ones(pad, int)])),
            jnp.asarray(np.concatenate([p, np.full((3, pad), np.nan)], axis=1)),
            jnp.asarray(np.concatenate([mask, np.zeros(pad, bool)])),
        ))
    ys, ps = y[mask], p[:, mask]
    if not mask.any():
        assert np.isnan(got).all()
        return
    ap = [skm.average_precision_score(ys == k, ps[k]) for k in range(3) if (ys == k).any()]
    auc = [skm.roc_auc_score(ys == k, ps[k]) for k in range(3) if 0 < (ys == k).sum() < len(ys)]
    want = [skm.log_loss(ys, ps.T, labels=[0, 1, 2]), skm.accuracy_score(ys, ps.argmax(0)),
            np.mean(ap), np.mean(auc) if auc else np.nan]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
