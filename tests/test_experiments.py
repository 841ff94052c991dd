"""The experiment scripts at smoke size: they run, write their files, and give finite tables."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from . import tiers

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _load(name):
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        spec = importlib.util.spec_from_file_location(f"experiments_{name}", EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXPERIMENTS))
    return module


def test_missing_data_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CFJAX_RESULTS", str(tmp_path))
    docs = tmp_path / "docs"
    module = _load("missing_data")
    # a baseline and a method: every code path, one compile each (the full set of rows compiles
    # eleven programs, over 30 s on a loaded 2-core machine)
    methods = ["simple_average", "joint"]
    module.main(["--smoke", "--methods", *methods, "--docs", str(docs)])
    out = tmp_path / "missing_data"
    text = (out / "table.md").read_text()
    assert text in capsys.readouterr().out
    tables = [b.splitlines() for b in text.split("\n\n") if b.startswith("| method")]
    assert len(tables) == 2  # PR-AUC, then the reconstruction of the hidden cells
    rows = tables[0][2:]
    assert [r.split("|")[1].strip() for r in rows] == methods
    hidden = [r.split("|")[1].strip() for r in tables[1][2:]]
    assert hidden == ["column mean of the observed cells (baselines)", "joint"]
    for row in tables[1][2:]:
        assert all(math.isfinite(float(c)) for c in row.strip("|").split("|")[1:3])
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        complete, missing = float(cells[1]), float(cells[2])
        assert 0.0 < complete <= 1.0 and 0.0 < missing <= 1.0
        assert math.isfinite(float(cells[3].split(" [")[0]))
        assert cells[4] in ("yes", "**no**")
    config = json.loads((out / "config.json").read_text())
    assert config["smoke"] and config["seeds"] == [0, 1] and config["rates"] == [0.0, 0.3]
    assert {e["method"] for e in config["summary"]} == set(methods)
    assert all(not e["errors"] and e["non_finite"] == 0 for e in config["summary"])
    assert 0.25 < config["realised_rates"]["0.3"] < 0.35
    assert not docs.exists()  # smoke runs never touch docs/results


@pytest.mark.slow
def test_lambda_panel_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CFJAX_RESULTS", str(tmp_path))
    docs = tmp_path / "docs"
    module = _load("lambda_panel")
    module.main(["--smoke", "--docs", str(docs)])
    text = (tmp_path / "lambda_panel" / "table.md").read_text()
    assert text in capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [r.split("|")[1].strip() for r in rows] == [name for name, _, _ in module.METHODS]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")[1:]]
        assert len(cells) == 2  # synthetic-seed, panel
        assert all(math.isfinite(float(c.split(" [")[0])) for c in cells)
    records = json.loads((tmp_path / "lambda_panel" / "records.json").read_text())["records"]
    assert len(records) == 2 * len(module.METHODS) * len(module.LAMBDAS)
    assert not docs.exists()


def test_peers_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CFJAX_RESULTS", str(tmp_path))
    module = _load("peers")
    module.main(["--smoke", "--no-peers"])
    text = (tmp_path / "peers" / "table.md").read_text()
    assert text in capsys.readouterr().out
    records = json.loads((tmp_path / "peers" / "records.json").read_text())["accuracy"]
    from cfjax import baselines

    assert [r["method"] for r in records] == list(baselines.BASELINES) * 2  # two presets, one split
    assert all(math.isfinite(r["pr_auc"]) for r in records)
    paired = text.split("against simple_average")[1]
    assert "| caruana | " in paired and "| simple_average |" not in paired


def test_build_ensembles_builds_once_and_skips_what_cannot_be_built(tmp_path, monkeypatch):
    from sklearn.naive_bayes import GaussianNB

    from cfjax import datasets

    monkeypatch.setattr(datasets, "base_models", lambda seed=0: {"naive_bayes": GaussianNB()})
    module = _load("build_ensembles")
    lines = []
    first = module.build(["synthetic-seed", "wine"], [0.05, 0.3], 2, str(tmp_path), log=lines.append)
    # wine at 5% labels 3 positives: skipped; at 30%, splits 0 and 1 built; synthetic: nothing to build
    assert [(b[0], b[1], b[2]) for b in first["built"]] == [("wine", 0.3, 0), ("wine", 0.3, 1)]
    assert [(s["dataset"], s["labeled_fraction"]) for s in first["skipped"]] == [("wine", 0.05)]
    assert any("synthetic-seed: synthetic, nothing to build" in line for line in lines)
    assert len(list(tmp_path.glob("wine_*.npz"))) == 2
    again = module.build(["wine"], [0.05, 0.3], 2, str(tmp_path), log=lines.append)
    assert again["built"] == [] and len(again["cached"]) == 2


def test_panel_tables_with_two_fractions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CFJAX_RESULTS", str(tmp_path))
    module = _load("panel")
    module.main(["--datasets", "synthetic-seed", "synthetic-imbalanced_5", "--labeled", "0.05", "0.3",
                 "--splits", "2", "--methods", "simple_average", "stacking"])
    text = (tmp_path / "panel" / "table.md").read_text()
    assert "Skipped synthetic-imbalanced_5 at 0.05" in text
    header = next(line for line in text.splitlines() if line.startswith("| method | synthetic-seed"))
    assert header.split(" | ")[1:4] == ["synthetic-seed @ 0.05", "synthetic-seed @ 0.3", "synthetic-imbalanced_5 @ 0.3"]
    assert "panel @ 0.05" in text and "panel @ 0.3" in text
    row = next(line for line in text.splitlines() if line.startswith("| stacking |") and "[" in line)
    assert all(math.isfinite(float(c.split(" [")[0])) for c in row.strip("|").split("|")[1:])
    config = json.loads((tmp_path / "panel" / "config.json").read_text())
    assert config["labeled_fractions"] == [0.05, 0.3] and len(config["skipped_pairs"]) == 1


def test_scarce_design_laplace_evidence_matches_quadrature():
    """The Laplace log evidence of part 3 against the integral of likelihood x prior on a grid
    (one feature and the bias: 2-d), at a proper prior whose log-determinant term is not zero."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from cfjax.logistic import fit_logistic_prior

    module = _load("scarce_design")
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.4).astype(float)
    f = rng.normal(loc=0.8 * y, scale=1.0)
    weights = np.ones(n)
    precision, bias_precision = 3.0, 0.5
    with jax.enable_x64(True):
        F = jnp.asarray(f[None, :])
        w, b = fit_logistic_prior(F, jnp.asarray(y), jnp.asarray(weights), jnp.array([[precision]]),
                                  bias_precision=bias_precision, n_steps=50)
        laplace = float(module.laplace_log_evidence(F, jnp.asarray(y), jnp.asarray(weights),
                                                    jnp.array([[precision]]), w, b, bias_precision))
    # brute force: a 401 x 401 grid over +-8 posterior standard deviations around the MAP
    s = np.linspace(-8, 8, 401)
    h = 8 / np.sqrt(n * 0.2)
    W, B = float(w[0]) + h * s[:, None], float(b) + h * s[None, :]
    logits = W[..., None] * f + B[..., None]
    loglik = (y * -np.logaddexp(0, -logits) + (1 - y) * -np.logaddexp(0, logits)).sum(-1)
    logprior = (-0.5 * precision * W**2 + 0.5 * np.log(precision / (2 * np.pi))
                - 0.5 * bias_precision * B**2 + 0.5 * np.log(bias_precision / (2 * np.pi)))
    joint = loglik + logprior
    top = joint.max()
    quadrature = top + np.log(np.exp(joint - top).sum() * (h * (s[1] - s[0])) ** 2)
    assert abs(laplace - quadrature) < 0.02, (laplace, quadrature)


def _two_cheap_base_models(monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    from cfjax import datasets

    monkeypatch.setattr(datasets, "base_models", lambda seed=0: {"naive_bayes": GaussianNB(),
                                                                 "logistic": LogisticRegression(max_iter=1000)})


def test_multiclass_panel_smoke(tmp_path, monkeypatch, capsys):
    """The K-class panel's baselines at smoke size (wine3 at 60 %, 2 splits) with two cheap base
    models: every baseline scored, every table written, nothing left in float64 mode."""
    import jax

    monkeypatch.setenv("CFJAX_RESULTS", str(tmp_path))
    _two_cheap_base_models(monkeypatch)
    module = _load("multiclass_panel")
    module.main(["--smoke", "--no-cf", "--cache-dir", str(tmp_path / "cache")])
    out = tmp_path / "multiclass_panel"
    text = (out / "table.md").read_text()
    assert text in capsys.readouterr().out
    for metric in module.TABLE_METRICS:
        assert f"## {metric}" in text
    assert "## Baselines" in text and "| 60% | log_loss | 1 |" in text and "## CF-Ensemble" not in text
    records = json.loads((out / "results.json").read_text())["records"]
    assert len(records) == 2 * 3  # splits x baselines
    assert {r["method"] for r in records} == {"simple_average", "best_single", "stacking"}
    assert all(math.isfinite(r[m]) for r in records for m in ("log_loss", "accuracy", "pr_auc", "roc_auc"))
    assert (out / "results.csv").is_file() and (out / "config.json").is_file()
    assert not jax.config.jax_enable_x64


@tiers.parametrize("rows", [("two_stage_K", "als_K"), ("cf_auto", "two_stage_full", "joint_fold_in_K")], only_fast=0)
def test_multiclass_panel_cf_rows_smoke(tmp_path, monkeypatch, capsys, rows):
    """The panel's CF-Ensemble rows end to end at smoke size (wine3 at 60 %, 2 splits, two base
    models): fitted, scored in float64 and tabled against averaging and stacking, with fit times;
    the tables rebuilt from results.json (`--tables-from`) are the same. The fast tier runs two
    rows, the slow tier the rest (auto's compile alone takes ~20 s on 2 cores)."""
    import jax

    monkeypatch.setenv("CFJAX_RESULTS", str(tmp_path))
    _two_cheap_base_models(monkeypatch)
    module = _load("multiclass_panel")
    module.main(["--smoke", "--cf", *rows, "--cache-dir", str(tmp_path / "cache")])
    out = tmp_path / "multiclass_panel"
    text = (out / "table.md").read_text()
    capsys.readouterr()
    assert "## CF-Ensemble against averaging and stacking" in text and "### 60% labeled" in text
    records = json.loads((out / "results.json").read_text())["records"]
    assert len(records) == 2 * (3 + len(rows))  # splits x (baselines + CF rows)
    for row in rows:
        mine = [r for r in records if r["method"] == row]
        assert [r["compiled"] for r in mine] == [True, False]  # the first call compiles
        assert all(r["finite"] and r["seconds"] > 0 for r in mine)
        assert all(math.isfinite(r[m]) and r[m] >= 0 for r in mine for m in ("log_loss", "accuracy", "pr_auc"))
        assert all(r["accuracy"] > 0.5 for r in mine)  # wine3: three well separated cultivars
        assert f"| {row} | accuracy | " in text and f"{row}, log_loss:" in text
    if "cf_auto" in rows:
        assert "auto's choices" in text
    config = json.loads((out / "config.json").read_text())
    assert set(config["cf_rows"]) == set(rows) and config["cf_dtype"] == "float32"
    module.main(["--tables-from", str(out / "results.json"), "--out", str(tmp_path / "again")])
    again = (tmp_path / "again" / "multiclass_panel" / "table.md").read_text()
    assert again.split("## CF-Ensemble", 1)[1] == text.split("## CF-Ensemble", 1)[1]
    assert not jax.config.jax_enable_x64
