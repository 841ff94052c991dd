"""The `cfjax` command end to end on tiny inputs, including bad inputs (exit 2, one line)."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import cfjax
from cfjax import cli, data, io


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    ens = data.synthetic(jax.random.key(0), n_classifiers=5, n_instances=60, missing_rate=0.1)
    R = np.asarray(ens.problem.R, np.float64)
    R[~np.asarray(ens.problem.observed)] = np.nan
    labels = np.where(np.asarray(ens.problem.labeled), ens.y_true, -1)
    path = tmp_path_factory.mktemp("cli") / "ens.npz"
    np.savez(path, R=R, labels=labels)
    return path


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_methods_lists_every_method(capsys):
    from cfjax.solvers import METHODS

    code, out, _ = _run(["methods"], capsys)
    assert code == 0
    for name in METHODS:
        assert name in out
    assert "auto" in next(line for line in out.splitlines() if "(the default)" in line)


@pytest.mark.parametrize("method", ["joint", "als", "mm_als"])
def test_fit_writes_what_io_load_reads(tiny_npz, tmp_path, capsys, method):
    out = tmp_path / "out.npz"
    code, _, err = _run(["fit", tiny_npz, "--method", method, "--rho", "0.5", "--latent-dim", "2",
                         "--max-iter", "20", "--output", out, "--quiet"], capsys)
    assert code == 0, err
    result, config, hparams = io.load(out)
    proba = io.load_extra(out)["proba"]
    assert proba.shape == (60,) and np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba, np.asarray(cfjax.proba(result.params, config)), rtol=1e-6)
    assert result.params.X.shape == (2, 5) and result.params.Y.shape == (2, 60)
    assert result.history.total.shape == (20,)
    assert config.method == method and config.latent_dim == 2 and float(hparams.rho) == 0.5


def test_fit_rho_auto_selects_by_cross_validation(tiny_npz, tmp_path, capsys):
    out = tmp_path / "out.npz"
    code, _, err = _run(["fit", tiny_npz, "--method", "joint", "--rho", "auto", "--latent-dim", "2",
                         "--max-iter", "10", "--output", out, "--quiet"], capsys)
    assert code == 0, err
    _, _, hparams = io.load(out)
    extra = io.load_extra(out)
    assert 0 < float(hparams.rho) < 1 and np.isclose(extra["rho_grid"], float(hparams.rho)).any()
    assert extra["cv_pr_auc"].shape == extra["rho_grid"].shape


def test_the_three_front_doors_agree(tiny_npz, tmp_path, capsys):
    """`cfjax fit IN --output OUT`, `CFEnsembleClassifier()` and `cfjax.fit(key, problem)`, each
    with nothing else given: one default pipeline, the same probabilities."""
    from cfjax.sklearn import CFEnsembleClassifier

    out = tmp_path / "default.npz"
    code, stdout, err = _run(["fit", tiny_npz, "--output", out, "--quiet"], capsys)
    assert code == 0, err and "auto: fitted" in stdout and "chose" in stdout
    command = io.load_extra(out)["proba"]
    with np.load(tiny_npz) as f:
        R, labels = f["R"], f["labels"]
    library = np.asarray(cfjax.proba(cfjax.fit(jax.random.key(0), cfjax.from_numpy(R, labels)).params, cfjax.Config()))
    estimator = CFEnsembleClassifier().fit(R.T, labels).transductive_proba_
    np.testing.assert_array_equal(command, library)
    np.testing.assert_allclose(estimator, library, rtol=0, atol=0)


def test_fit_flags_with_auto_are_honoured_or_refused(tiny_npz, tmp_path, capsys):
    out = tmp_path / "auto.npz"
    code, _, err = _run(["fit", tiny_npz, "--latent-dim", "2", "--max-iter", "5", "--lam", "0.5",
                         "--output", out, "--quiet"], capsys)
    assert code == 0, err
    result, config, hparams = io.load(out)
    assert (config.method, config.latent_dim, config.max_iter) == ("auto", 2, 5)
    assert float(hparams.lam) == 0.5 and result.history.total.shape == (5,)
    for flag, value in (("--rho", "0.5"), ("--formulation", "free"), ("--space", "logit"), ("--rho", "auto")):
        code, _, err = _run(["fit", tiny_npz, flag, value, "--output", out], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "chooses" in err, (flag, err)


def test_fit_shows_progress_unless_quiet(tiny_npz, tmp_path, capsys):
    code, _, err = _run(["fit", tiny_npz, "--method", "joint", "--latent-dim", "2", "--max-iter", "30",
                         "--output", tmp_path / "o.npz"], capsys)
    assert code == 0 and "joint" in err and "30/30" in err


@pytest.mark.parametrize(
    "argv_tail, fragment",
    [
        (["--method", "nope"], "method: unknown"),
        (["--rho", "1.5"], "rho: must lie in"),
        (["--rho", "abc"], "--rho: expected a number"),
        (["--latent-dim", "0"], "latent_dim: must be positive"),
        (["--latent-dim", "99"], "latent_dim: must be <="),
    ],
    ids=["unknown_method", "rho_out_of_range", "rho_not_a_number", "latent_dim_zero", "latent_dim_too_big"],
)
def test_fit_bad_arguments_exit_2_with_one_line(tiny_npz, tmp_path, capsys, argv_tail, fragment):
    args = ["fit", tiny_npz, "--method", "joint", "--output", tmp_path / "o.npz"]
    code, _, err = _run(args + argv_tail, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_fit_input_not_an_npz(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    code, _, err = _run(["fit", bad, "--output", tmp_path / "o.npz"], capsys)
    assert code == 2 and "is not a readable .npz" in err and len(err.strip().splitlines()) == 1


def test_fit_input_missing_arrays(tmp_path, capsys):
    path = tmp_path / "x.npz"
    np.savez(path, R=np.full((3, 4), 0.5))
    code, _, err = _run(["fit", path, "--output", tmp_path / "o.npz"], capsys)
    assert code == 2 and "has no array named labels" in err


def test_fit_input_missing_file(tmp_path, capsys):
    code, _, err = _run(["fit", tmp_path / "nope.npz", "--output", tmp_path / "o.npz"], capsys)
    assert code == 2 and "no such file" in err


def test_fit_bad_values_in_input(tmp_path, capsys):
    path = tmp_path / "x.npz"
    np.savez(path, R=np.full((3, 4), 1.5), labels=np.array([0, 1, -1, -1]))
    code, _, err = _run(["fit", path, "--method", "joint", "--output", tmp_path / "o.npz"], capsys)
    assert code == 2 and "R: probabilities must lie in [0, 1]" in err


def test_benchmark_tiny_run_writes_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CFJAX_CACHE", str(tmp_path / "cache"))
    code, out, err = _run(["benchmark", "--datasets", "synthetic-seed", "--methods", "als", "two_stage",
                           "--splits", "2", "--out", tmp_path, "--run-name", "t", "--no-plots", "--quiet"], capsys)
    assert code == 0, err
    folder = tmp_path / "t"
    for name in ("results.csv", "summary.csv", "table.md", "config.json"):
        assert (folder / name).is_file()
    assert "two_stage" in out and "stacking" in out
    config = json.loads((folder / "config.json").read_text())
    assert config["split_seeds"] == [0, 1] and config["jax"]


def test_benchmark_unknown_dataset_exits_2(tmp_path, capsys):
    code, _, err = _run(["benchmark", "--datasets", "nope", "--out", tmp_path], capsys)
    assert code == 2 and "nope" in err


def test_benchmark_runs_a_k_class_dataset(tmp_path, capsys):
    """wine3 (K = 3): the K-class baselines and methods, macro scores, the binary-only baselines
    listed as not run; a binary set beside it keeps its plots."""
    code, out, err = _run(["benchmark", "--datasets", "wine3", "--splits", "1", "--methods", "two_stage",
                           "--out", tmp_path, "--run-name", "k", "--quiet", "--no-plots"], capsys)
    assert code == 0, err
    assert "| wine3 | 0.6 | stacking |" in out and "| wine3 | 0.6 | two_stage |" in out
    assert "Not run on K-class data sets (binary only): caruana on wine3" in out
    assert "macro one-vs-rest" in out


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "cfjax", "methods"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and "joint" in proc.stdout


@pytest.mark.slow  # a benchmark run with its figures (their layout: test_plots)
def test_benchmark_writes_plots(tmp_path, capsys):
    code, _, err = _run(["benchmark", "--datasets", "synthetic-seed", "--methods", "als", "--splits", "1",
                         "--out", tmp_path, "--run-name", "p", "--quiet"], capsys)
    assert code == 0, err
    for name in ("pr_curves_synthetic-seed.png", "loss_curves_synthetic-seed.png", "rho_sweep_synthetic-seed.png"):
        path = tmp_path / "p" / name
        assert path.is_file() and path.stat().st_size > 1000, name


def test_benchmark_labeled_fractions_end_to_end(tmp_path, capsys):
    import csv

    code, out, err = _run(["benchmark", "--datasets", "synthetic-seed", "synthetic-imbalanced_5", "--methods", "als",
                           "--labeled", "0.05", "0.5", "--splits", "2", "--out", tmp_path, "--run-name", "lf",
                           "--no-plots", "--quiet"], capsys)
    assert code == 0, err
    folder = tmp_path / "lf"
    want = {("synthetic-seed", 0.05), ("synthetic-seed", 0.5), ("synthetic-imbalanced_5", 0.5)}
    with open(folder / "results.csv") as f:
        results = list(csv.DictReader(f))
    assert {(r["dataset"], float(r["labeled_fraction"])) for r in results} == want
    from cfjax import baselines

    assert len(results) == len(want) * 2 * (len(baselines.BASELINES) + 1)  # the baselines and als, 2 splits
    with open(folder / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {(r["dataset"], float(r["labeled_fraction"])) for r in summary} == want
    table = (folder / "table.md").read_text()
    assert "| synthetic-seed | 0.05 | als |" in table and "| synthetic-seed | 0.5 | als |" in table
    assert "Skipped" in table and "synthetic-imbalanced_5 at 0.05" in table
    config = json.loads((folder / "config.json").read_text())
    assert config["labeled_fractions"] == [0.05, 0.5]
    assert config["labeled_fractions_used"] == {"synthetic-seed": [0.05, 0.5], "synthetic-imbalanced_5": [0.5]}
    (skip,) = config["skipped"]
    assert (skip["dataset"], skip["labeled_fraction"]) == ("synthetic-imbalanced_5", 0.05)
    assert "| 0.05 |" in out


@pytest.mark.parametrize("value, fragment", [("1.5", "must lie in (0, 1), got 1.5"), ("0", "must lie in (0, 1)"),
                                             ("half", "expected fractions in (0, 1)")])
def test_benchmark_bad_labeled_fraction_exits_2_with_one_line(tmp_path, capsys, value, fragment):
    code, _, err = _run(["benchmark", "--datasets", "synthetic-seed", "--labeled", "0.2", value,
                         "--out", tmp_path, "--run-name", "bad"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--labeled" in err and fragment in err
    assert not (tmp_path / "bad").exists()  # refused before anything ran


def test_benchmark_no_applicable_pair_exits_2(tmp_path, capsys):
    code, _, err = _run(["benchmark", "--datasets", "synthetic-imbalanced_5", "--labeled", "0.01",
                         "--out", tmp_path], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "synthetic-imbalanced_5 at 0.01" in err


# ----- K classes: R (m, K, n) in the .npz ---------------------------------------------------------


@pytest.fixture(scope="module")
def k_class_npz(tmp_path_factory):
    from tests.test_multiclass import ensemble

    R, labels, _ = ensemble(6, n=48, missing=0.1)
    path = tmp_path_factory.mktemp("cli_k") / "ens3.npz"
    np.savez(path, R=R, labels=labels)
    return path, R, labels


def _fit_k_class_npz(path, out, capsys, *options):
    """`cfjax fit` of the K-class npz with `options`; (stdout, proba), proba checked to be (K, n)
    columns summing to 1."""
    code, stdout, err = _run(["fit", path, *options, "--latent-dim", "3", "--max-iter", "5", "--output", out,
                              "--quiet"], capsys)
    assert code == 0, err
    proba = io.load_extra(out)["proba"]
    assert proba.shape == (3, 48) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=0), 1.0, rtol=1e-5)
    return stdout, proba


def test_fit_k_class_npz_writes_k_by_n_probabilities(k_class_npz, tmp_path, capsys):
    """`cfjax fit` of an (m, K, n) R is the K-class fit of `from_numpy(R, labels)`: (K, n) probabilities."""
    path, R, labels = k_class_npz
    out = tmp_path / "out.npz"
    stdout, proba = _fit_k_class_npz(path, out, capsys, "--method", "two_stage", "--rho", "0.5")
    assert "4 classifiers x 3 classes x 48 instances" in stdout
    result, config, hparams = io.load(out)
    direct = cfjax.fit(jax.random.key(0), cfjax.from_numpy(R, labels), hparams, config)
    np.testing.assert_allclose(proba, np.asarray(cfjax.proba(direct.params, config)), rtol=1e-5, atol=1e-7)
    assert result.params.X.shape == (3, 12) and result.params.theta.b.shape == (3,)


def test_fit_k_class_in_minibatches(k_class_npz, tmp_path, capsys):
    _fit_k_class_npz(k_class_npz[0], tmp_path / "out.npz", capsys, "--method", "joint", "--batch-size", "16")


@pytest.mark.slow  # the K-class npz path is in the fast tier without --rho auto
def test_fit_k_class_rho_auto(k_class_npz, tmp_path, capsys):
    path, _, _ = k_class_npz
    out = tmp_path / "out.npz"
    code, _, err = _run(["fit", path, "--method", "two_stage", "--rho", "auto", "--latent-dim", "3",
                         "--max-iter", "5", "--output", out, "--quiet"], capsys)
    assert code == 0, err
    extra = io.load_extra(out)
    assert extra["proba"].shape == (3, 48) and np.isfinite(extra["cv_pr_auc"]).all()


@pytest.mark.parametrize(
    "argv_tail, fragment",
    [
        (["--method", "two_stage", "--aggregator", "attention"], "aggregator: 'attention' combines two classes only"),
        (["--method", "als", "--confidence", "agreement"], "confidence: 'agreement' is binary only"),
    ],
)
def test_fit_k_class_refusals_exit_2_with_one_line(k_class_npz, tmp_path, capsys, argv_tail, fragment):
    path, _, _ = k_class_npz
    code, _, err = _run(["fit", path, *argv_tail, "--output", tmp_path / "o.npz", "--quiet"], capsys)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_fit_k_class_from_disk_in_blocks(k_class_npz, tmp_path, capsys):
    """An (m, K, n) R.npy streams: minibatch joint, (K, n) probabilities written block by block."""
    _, R, labels = k_class_npz
    np.save(tmp_path / "R.npy", R)
    np.save(tmp_path / "labels.npy", labels)
    code, out, err = _run(["fit", tmp_path / "R.npy", "--labels", tmp_path / "labels.npy", "--batch-size", "16",
                           "--max-iter", "3", "--latent-dim", "3", "--output", tmp_path / "o.npz", "--quiet"], capsys)
    assert code == 0, err
    assert "streamed 4 classifiers x 3 classes x 48 instances" in out
    proba = np.load(tmp_path / "o.proba.npy")
    assert proba.shape == (3, 48) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=0), 1.0, rtol=1e-5)
