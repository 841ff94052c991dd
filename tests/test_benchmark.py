"""The panel benchmark: the labeled fraction as an axis, the applicability rule, run_panel and
its summaries. (`auto` itself: tests/test_auto.py.)"""

import jax
import numpy as np
import pytest

from cfjax import benchmark, data

# ---------------------------------------------------------------------------------------------
# the labeled fraction as an axis: defaults, the applicability rule, run_panel and its summaries

CHEAP = ("simple_average", "stacking")


def _cheap_pipelines():
    return [benchmark.baseline_pipeline(name) for name in CHEAP]


def _built_counts(ens):
    labeled = ~ens.test
    return [int((ens.y_true[labeled] == c).sum()) for c in (0, 1)]


def test_default_fraction_reproduces_the_ensembles_of_before():
    assert benchmark.default_labeled_fraction("synthetic-seed") == 0.5
    assert benchmark.default_labeled_fraction("breast_cancer") == 0.6
    before = data.preset(jax.random.key(4), "imbalanced_10")
    for fraction in (None, 0.5):
        now = benchmark.load_ensemble("synthetic-imbalanced_10", 4, labeled_fraction=fraction)
        for a, b in zip(jax.tree.leaves(before.problem), jax.tree.leaves(now.problem)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(before.test, now.test)
    other = benchmark.load_ensemble("synthetic-imbalanced_10", 4, labeled_fraction=0.2)
    np.testing.assert_array_equal(other.y_true, before.y_true)  # same data, fewer labels
    assert (~other.test).sum() < (~before.test).sum()


@pytest.mark.parametrize("name", ["synthetic-seed", "synthetic-imbalanced_5", "synthetic-imbalanced_1"])
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.37])
def test_synthetic_counts_equal_the_built_ensemble(name, fraction):
    for split in (0, 3):
        ens = benchmark.load_ensemble(name, split, labeled_fraction=fraction)
        assert benchmark.labeled_counts(name, split, fraction).tolist() == _built_counts(ens)


def test_real_counts_equal_the_built_ensemble(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from sklearn.naive_bayes import GaussianNB

    from cfjax import datasets

    monkeypatch.setattr(datasets, "base_models", lambda seed=0: {"naive_bayes": GaussianNB()})
    for name, fraction, split in [("wine", 0.1, 0), ("wine", 0.33, 2), ("breast_cancer", 0.05, 1)]:
        ens = benchmark.load_ensemble(name, split, tmp_path, labeled_fraction=fraction)
        assert benchmark.labeled_counts(name, split, fraction).tolist() == _built_counts(ens)


def test_applicability_rule_at_and_below_five_per_class():
    # imbalanced_1 (5000 columns, 1% positive), split 0: 0.1 labels exactly 5 positives, 0.05 three
    assert benchmark.labeled_counts("synthetic-imbalanced_1", 0, 0.1).tolist() == [495, 5]
    assert benchmark.labeled_counts("synthetic-imbalanced_1", 0, 0.05).tolist() == [247, 3]
    assert benchmark.skip_reason("synthetic-imbalanced_1", 0, 0.1) is None
    assert benchmark.applicable("synthetic-imbalanced_1", 0.1, splits=[0])
    assert "[247, 3]" in benchmark.skip_reason("synthetic-imbalanced_1", 0, 0.05)
    assert not benchmark.applicable("synthetic-imbalanced_1", 0.05, splits=[0])
    # one failing split is enough: 0.1 labels 4 positives on some split in 0..9
    counts = [benchmark.labeled_counts("synthetic-imbalanced_1", s, 0.1).min() for s in range(10)]
    assert min(counts) < 5 and not benchmark.applicable("synthetic-imbalanced_1", 0.1, splits=10)


def test_applicability_rule_on_real_data_sets(tmp_path):
    pytest.importorskip("sklearn")
    from cfjax import datasets

    # wine at 5%: 3 positives; at 10%: 17 labeled, 13 per training fold, fewer than the kNN's 15
    assert "[5, 3]" in benchmark.skip_reason("wine", 0, 0.05)
    assert "knn" in benchmark.skip_reason("wine", 0, 0.1)
    assert benchmark.applicable("wine", 0.2, splits=3) and benchmark.applicable("wine", None, splits=3)
    for fraction in (0.05, 0.1):  # load refuses the same pairs before fitting anything
        with pytest.raises(ValueError, match="labeled_fraction"):
            datasets.load("wine", 0, labeled_fraction=fraction, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())
    if "yeast4" in datasets.available():  # 51 positives: 5 labeled at 10%, 3 at 5%
        assert benchmark.labeled_counts("yeast4", 0, 0.1).tolist() == [143, 5]
        assert benchmark.applicable("yeast4", 0.1, splits=2)
        assert not benchmark.applicable("yeast4", 0.05, splits=2)


def test_smallest_training_fold_formula_matches_stratified_kfold():
    # the kNN rule relies on StratifiedKFold's training sets holding total - ceil(total / 5)
    pytest.importorskip("sklearn")
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(0)
    for total in range(10, 60):
        positives = int(rng.integers(5, total - 4))
        y = rng.permutation(np.r_[np.ones(positives), np.zeros(total - positives)])
        folds = StratifiedKFold(5, shuffle=True, random_state=int(rng.integers(100)))
        smallest = min(len(train) for train, _ in folds.split(np.zeros((total, 1)), y))
        assert smallest == total - -(-total // 5)


def test_run_panel_two_fractions_and_skipped_pairs():
    records = benchmark.run_panel(["synthetic-seed", "synthetic-imbalanced_5"], _cheap_pipelines(), splits=2,
                                  labeled_fractions=[0.05, 0.3])
    pairs = {(r["dataset"], r["labeled_fraction"]) for r in records}
    assert pairs == {("synthetic-seed", 0.05), ("synthetic-seed", 0.3), ("synthetic-imbalanced_5", 0.3)}
    assert len(records) == 3 * 2 * len(CHEAP)
    (skip,) = records.skipped
    assert (skip["dataset"], skip["labeled_fraction"]) == ("synthetic-imbalanced_5", 0.05)
    assert min(skip["labeled_counts"]) < 5 and skip["reason"]
    # each record's ensemble has the fraction it names
    r = next(r for r in records if r["dataset"] == "synthetic-seed" and r["labeled_fraction"] == 0.05)
    ens = benchmark.load_ensemble("synthetic-seed", r["split"], labeled_fraction=0.05)
    assert abs((~ens.test).mean() - 0.05) < 0.002

    rows = benchmark.summarize(records)
    assert {(r["dataset"], r["labeled_fraction"], r["method"]) for r in rows} == {
        p + (m,) for p in pairs for m in CHEAP}
    for row in rows:
        want = [x["pr_auc"] for x in records if (x["dataset"], x["labeled_fraction"], x["method"])
                == (row["dataset"], row["labeled_fraction"], row["method"])]
        assert row["n_splits"] == 2 and row["pr_auc_mean"] == pytest.approx(np.mean(want))
    table = benchmark.markdown_table(rows)
    assert "| labeled |" in table and "| synthetic-seed | 0.05 |" in table

    diff = benchmark.paired(records, "stacking", "simple_average")
    assert set(diff) == pairs | {("panel", 0.05), ("panel", 0.3)}
    for (name, fraction), d in diff.items():
        if name == "panel":
            continue
        a = {x["split"]: x["pr_auc"] for x in records if (x["dataset"], x["labeled_fraction"], x["method"])
             == (name, fraction, "stacking")}
        b = {x["split"]: x["pr_auc"] for x in records if (x["dataset"], x["labeled_fraction"], x["method"])
             == (name, fraction, "simple_average")}
        assert d["diff"] == pytest.approx(np.mean([a[s] - b[s] for s in a]))
    # the panel at 0.3 is the mean over its two data sets, at 0.05 the one data set left
    assert diff[("panel", 0.05)]["diff"] == pytest.approx(diff[("synthetic-seed", 0.05)]["diff"])
    assert diff[("panel", 0.3)]["diff"] == pytest.approx(
        (diff[("synthetic-seed", 0.3)]["diff"] + diff[("synthetic-imbalanced_5", 0.3)]["diff"]) / 2)


def test_one_fraction_per_data_set_keeps_the_summaries_of_before():
    records = benchmark.run_panel(["synthetic-seed", "synthetic-imbalanced_10"], _cheap_pipelines(), splits=2)
    assert {r["labeled_fraction"] for r in records} == {0.5} and records.skipped == []
    legacy = [{k: v for k, v in r.items() if k != "labeled_fraction"} for r in records]
    assert benchmark.summarize(records) == benchmark.summarize(legacy)
    assert "labeled_fraction" not in benchmark.summarize(records)[0]
    assert benchmark.paired(records, "stacking", "simple_average").keys() == {
        "synthetic-seed", "synthetic-imbalanced_10", "panel"}
    assert benchmark.markdown_table(benchmark.summarize(records)) == benchmark.markdown_table(
        benchmark.summarize(legacy))
    # asked for, the fraction comes along even with one per data set
    rows = benchmark.summarize(records, by_fraction=True)
    assert {r["labeled_fraction"] for r in rows} == {0.5}


def test_labeled_fraction_arguments_are_checked():
    for bad in (0.0, 1.0, 1.5, "0.2", True):
        with pytest.raises(ValueError, match="labeled_fraction"):
            benchmark.labeled_counts("synthetic-seed", 0, bad)
    with pytest.raises(ValueError, match="name"):
        benchmark.applicable("synthetic-nope", 0.1)
    with pytest.raises(ValueError, match="labeled_fractions"):
        benchmark.run_panel(["synthetic-seed"], _cheap_pipelines(), splits=1, labeled_fractions=[])


def test_k_class_panel_scores_the_multiclass_baselines_and_methods(tmp_path):
    """A K-class data set in `run_panel`: its baselines are `cfjax.multiclass`'s (scored by the
    macro one-vs-rest metrics against a direct computation), a binary-only baseline is listed
    as not applicable, and a method fits the K-class problem."""
    import jax.numpy as jnp

    from cfjax import datasets, metrics, multiclass

    pipes = [benchmark.baseline_pipeline("stacking"), benchmark.baseline_pipeline("caruana"),
             benchmark.method_pipeline("two_stage")]
    records = benchmark.run_panel(["wine3"], pipes, splits=1, cache_dir=tmp_path)
    assert [r["method"] for r in records] == ["stacking", "two_stage"]
    assert records.not_applicable == [dict(dataset="wine3", method="caruana", reason="binary only")]
    ens = datasets.load_multiclass("wine3", seed=0, labeled_fraction=0.6, cache_dir=tmp_path)
    P = multiclass.stacking(ens.R.astype(np.float32), ens.labels)
    y, test = jnp.asarray(ens.y_true), jnp.asarray(ens.test)
    assert records[0]["pr_auc"] == pytest.approx(float(metrics.macro_pr_auc(y, P, test)), abs=1e-6)
    assert records[0]["roc_auc"] == pytest.approx(float(metrics.macro_roc_auc(y, P, test)), abs=1e-6)
    assert records[1]["pr_auc"] > 0.9


def test_class_arrays_invert_from_numpy():
    from tests.test_multiclass import ensemble

    R, labels, _ = ensemble(2, missing=0.2)
    got_R, got_labels = benchmark.class_arrays(data.from_numpy(R, labels))
    np.testing.assert_allclose(got_R, R, rtol=1e-6)  # NaN in the same places
    np.testing.assert_array_equal(got_labels, labels)
