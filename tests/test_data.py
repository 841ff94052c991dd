"""from_numpy validation, masks and the synthetic generator."""

import jax
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cfjax import data


def _valid(m=4, n=6, seed=0):
    rng = np.random.default_rng(seed)
    R = rng.uniform(size=(m, n))
    labels = np.array([0, 1] + [-1] * (n - 2), float)
    return R, labels


def test_from_numpy_builds_masks_and_zero_fills_missing():
    R, labels = _valid()
    R[1, 3] = np.nan
    labels[2] = np.nan
    p = data.from_numpy(R, labels)
    assert not bool(p.observed[1, 3]) and float(p.C[1, 3]) == 0.0 and float(p.R[1, 3]) == 0.0
    assert np.isfinite(np.asarray(p.R)).all()
    assert np.asarray(p.labeled).tolist() == [True, True] + [False] * 4
    assert not np.asarray(p.validation).any()


@pytest.mark.parametrize(
    "dtype", [np.int64, np.bool_, np.float16, np.float32, np.float64, "list"]
)
def test_from_numpy_accepts_any_numeric_dtype(dtype):
    R, labels = _valid()
    R = (R > 0.5) if dtype in (np.int64, np.bool_) else R
    R = R.tolist() if dtype == "list" else np.asarray(R).astype(dtype)
    p = data.from_numpy(R, labels.tolist())
    assert p.R.shape == (4, 6)


def test_from_numpy_accepts_non_contiguous_arrays():
    R, _ = _valid(m=4, n=12)
    labels = np.array([0, -1, 1] + [-1] * 9, float)
    p = data.from_numpy(R[:, ::2], labels[::2])
    np.testing.assert_allclose(np.asarray(p.R), R[:, ::2], rtol=1e-6)


def test_values_within_tolerance_are_clipped():
    R, labels = _valid()
    R[0, 0] = 1 + 5e-7
    assert float(data.from_numpy(R, labels).R[0, 0]) == 1.0


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda R, y: (R[0], y), "R: expected a 2-D"),
        (lambda R, y: (R, y[:-1]), "labels: expected shape"),
        (lambda R, y: (R * 2.0, y), r"R: probabilities must lie in \[0, 1\]"),
        (lambda R, y: (R - 1.0, y), r"R: probabilities must lie in \[0, 1\]"),
        (lambda R, y: (np.where(np.arange(R.size).reshape(R.shape) == 3, np.inf, R), y), "R: contains infinite"),
        (lambda R, y: (R, np.where(np.arange(y.size) == 3, 2.0, y)), "labels: values must be 0, 1"),
        (lambda R, y: (R, np.where(np.arange(y.size) == 3, np.inf, y)), "labels: contains infinite"),
        (lambda R, y: (R, np.full_like(y, -1.0)), "labels: no labeled instance"),
        (lambda R, y: (R, np.where(y == 1, 0.0, y)), "labels: labeled instances are all of class 0"),
        (lambda R, y: (R[:0], y), "R: needs at least one classifier"),
        (lambda R, y: (R[:, :1], y[:1]), "R: needs at least two instances"),
        (lambda R, y: (np.where(np.arange(R.shape[0])[:, None] == 2, np.nan, R), y), r"R: classifier row\(s\) \[2\]"),
        (lambda R, y: (np.where(np.arange(R.shape[1])[None, :] == 4, np.nan, R), y), r"R: instance column\(s\) \[4\]"),
        (lambda R, y: ("not numbers", y), "R: cannot be read"),
    ],
    ids=[
        "R_not_2d", "labels_wrong_length", "R_above_one", "R_below_zero", "R_infinite",
        "labels_outside_set", "labels_infinite", "empty_labeled_set", "single_class_labels",
        "no_classifier", "fewer_than_two_instances", "row_all_missing", "column_all_missing",
        "R_not_numeric",
    ],
)
def test_bad_inputs_raise_value_error_naming_argument(mutate, match):
    R, labels = _valid()
    R_bad, labels_bad = mutate(R, labels)
    with pytest.raises(ValueError, match=match):
        data.from_numpy(R_bad, labels_bad)


@pytest.mark.parametrize(
    "confidence, match",
    [
        (-np.ones((4, 6)), "confidence: must be >= 0"),
        (np.full((4, 6), np.nan), "confidence: contains NaN"),
        (np.ones((3, 6)), "confidence: expected shape"),
        (np.zeros((4, 6)), "confidence: some instance column has zero total"),
    ],
    ids=["negative", "nan", "wrong_shape", "zero_column"],
)
def test_bad_confidence_raises(confidence, match):
    R, labels = _valid()
    with pytest.raises(ValueError, match=match):
        data.from_numpy(R, labels, confidence=confidence)


def test_labels_not_required_for_unsupervised_use():
    R, _ = _valid()
    p = data.from_numpy(R, -np.ones(6), require_labels=False)
    assert not np.asarray(p.labeled).any()


def test_hold_out_is_stratified_and_disjoint(key):
    ens = data.preset(key, "seed", n_instances=400)
    p = data.hold_out(jax.random.key(1), ens.problem, 0.25)
    train, valid = np.asarray(p.labeled), np.asarray(p.validation)
    assert not (train & valid).any()
    assert (train | valid).sum() == np.asarray(ens.problem.labeled).sum()
    y = np.asarray(p.labels)
    assert set(np.unique(y[valid])) == {0.0, 1.0} and set(np.unique(y[train])) == {0.0, 1.0}
    assert abs(valid.sum() / (train | valid).sum() - 0.25) < 0.02


def test_mask_columns_hides_labels(key):
    p = data.preset(key, "seed", n_instances=50).problem
    cols = np.flatnonzero(np.asarray(p.labeled))[:5]
    q = data.mask_columns(p, cols)
    assert not np.asarray(q.labeled)[cols].any()
    assert q.labeled.shape == p.labeled.shape


def test_synthetic_is_deterministic_given_key():
    a = data.preset(jax.random.key(3), "seed", n_instances=200)
    b = data.preset(jax.random.key(3), "seed", n_instances=200)
    c = data.preset(jax.random.key(4), "seed", n_instances=200)
    np.testing.assert_array_equal(np.asarray(a.problem.R), np.asarray(b.problem.R))
    assert not np.array_equal(np.asarray(a.problem.R), np.asarray(c.problem.R))


@pytest.mark.parametrize("quality", [0.7, 0.85, 0.95])
def test_synthetic_quality_is_the_mean_base_auc(quality):
    ens = data.synthetic(jax.random.key(0), n_instances=20000, quality=quality)
    R = np.asarray(ens.problem.R)
    aucs = [roc_auc_score(ens.y_true, r) for r in R]
    assert abs(np.mean(aucs) - quality) < 0.02


def test_averaging_is_not_trivially_perfect_on_seed_setting():
    ens = data.preset(jax.random.key(0), "seed", n_instances=20000)
    mean = np.asarray(ens.problem.R).mean(axis=0)
    assert average_precision_score(ens.y_true, mean) < 0.98


@pytest.mark.parametrize("name, rate", [("imbalanced_10", 0.10), ("imbalanced_5", 0.05), ("imbalanced_1", 0.01)])
def test_imbalanced_presets_have_their_positive_rate(name, rate):
    ens = data.preset(jax.random.key(0), name, n_instances=20000)
    assert abs(ens.y_true.mean() - rate) < 0.25 * rate + 0.002
    labeled = np.asarray(ens.problem.labeled)
    assert set(np.unique(ens.y_true[labeled])) == {0, 1}


def test_synthetic_missing_cells_are_unobserved():
    ens = data.synthetic(jax.random.key(0), n_instances=500, missing_rate=0.3)
    observed = np.asarray(ens.problem.observed)
    assert abs(1 - observed.mean() - 0.3) < 0.03
    assert observed.any(axis=0).all() and observed.any(axis=1).all()
    assert (np.asarray(ens.problem.C)[~observed] == 0).all()


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="name: unknown preset"):
        data.preset(jax.random.key(0), "nope")


def test_synthetic_without_regions_draws_as_before_regions_existed():
    # the sum of R of this draw on the main branch before n_regions existed
    R = np.asarray(data.preset(jax.random.key(7), "seed", n_instances=300, missing_rate=0.1).problem.R)
    np.testing.assert_allclose(R.sum(), 1262.52099609375, rtol=1e-6)


def test_regional_experts_are_experts_on_their_region_only():
    ens = data.preset(jax.random.key(0), "regional_experts", n_instances=30000)
    R, y, regions, experts = np.asarray(ens.problem.R), ens.y_true, ens.regions, ens.experts
    assert experts.shape == (12, 3) and (experts.sum(axis=0) == 4).all() and (experts.sum(axis=1) == 1).all()
    assert set(np.unique(regions)) == {0, 1, 2}
    auc = np.array([[roc_auc_score(y[regions == k], R[u, regions == k]) for k in range(3)] for u in range(12)])
    # within a region the systematic shift is a constant, so the AUCs are those specified
    assert abs(auc[experts].mean() - 0.9) < 0.02 and abs(auc[~experts].mean() - 0.55) < 0.02
    # and over all instances no classifier is as good as it is on its own region
    overall = np.array([roc_auc_score(y, r) for r in R])
    assert (overall < auc.max(axis=1) - 0.05).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_regions=0), "n_regions"), (dict(n_regions=11), "n_regions"),
    (dict(n_regions=2, off_region_quality=1.0), "off_region_quality"),
    (dict(n_regions=2, region_bias=-1.0), "region_bias"), (dict(n_regions=2, region_bias=np.nan), "region_bias"),
])
def test_bad_region_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.synthetic(jax.random.key(0), n_classifiers=10, n_instances=50, **kwargs)


def test_ensembles_without_regions_say_so():
    ens = data.preset(jax.random.key(0), "seed", n_instances=50)
    assert ens.regions is None and ens.experts is None


def test_class_cells_against_a_loop():
    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(3), size=(4, 5)).transpose(0, 2, 1)  # (m, K, n)
    P[0, :, 1] = np.nan  # missing
    P[2, 1, 3] = np.nan  # partial
    P[1, :, 4] *= 1.5  # off the simplex
    partial, sums = data.class_cells(P, axis=1)
    for u in range(4):
        for i in range(5):
            cell = P[u, :, i]
            assert partial[u, i] == (np.isnan(cell).any() and not np.isnan(cell).all())
            if np.isnan(cell).all():
                assert np.isnan(sums[u, i])
            else:
                np.testing.assert_allclose(sums[u, i], np.nansum(cell))
