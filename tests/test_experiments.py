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


def test_scarce_labels_on_later_splits_and_redrawn_from_its_records(tmp_path, monkeypatch, capsys):
    """--first-split runs those splits; the below-averaging count is the per-data-set means'
    (a loop here); --from-records redraws the same tables from records.csv alone."""
    import numpy as np

    from cfjax import benchmark

    monkeypatch.setenv("CFJAX_RESULTS", str(tmp_path))
    module = _load("scarce_labels")
    module.main(["--datasets", "synthetic-seed", "synthetic-imbalanced_10", "--labeled", "0.1", "0.6",
                 "--splits", "2", "--first-split", "3", "--no-peers",
                 "--methods", "simple_average", "best_single", "stacking", "--against", "stacking"])
    out = tmp_path / "scarce_labels"
    records = benchmark.read_records(out / "records.csv")
    assert sorted({r["split"] for r in records}) == [3, 4]
    assert all(isinstance(r["pr_auc"], float) and isinstance(r["baseline"], bool) for r in records)
    assert json.loads((out / "config.json").read_text())["split_seeds"] == [3, 4]
    summary = (out / "summary.md").read_text()
    blocks = summary.split("\n**")[1:]
    assert len(blocks) == 2 and "| − stacking [95 % CI] | worst" in blocks[0]  # the --against column
    for block, fraction in zip(blocks, (0.1, 0.6)):
        row = next(line for line in block.splitlines() if line.startswith("| best_single |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        below = 0
        for name in ("synthetic-seed", "synthetic-imbalanced_10"):
            mine = [r["pr_auc"] for r in records if r["dataset"] == name and r["labeled_fraction"] == fraction
                    and r["method"] == "best_single"]
            average = [r["pr_auc"] for r in records if r["dataset"] == name and r["labeled_fraction"] == fraction
                       and r["method"] == "simple_average"]
            below += np.mean(mine) - np.mean(average) < -0.01
        assert int(cells[-2].split(" ")[0]) == below
        assert cells[5] == cells[3]  # --against stacking repeats the stacking column
    capsys.readouterr()
    (out / "summary.md").unlink()
    (out / "summary.md").write_text(summary.split("\n**")[0] + "\n")
    module.main(["--from-records", str(out), "--against", "stacking"])
    assert (out / "summary.md").read_text() == summary
    assert capsys.readouterr().out.strip() == summary.strip()


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


def _lda_direction_loops(R, y, labeled):
    """Slow obvious twin of semisupervised_lda.lda_direction: explicit sums over columns."""
    import numpy as np

    m, n = R.shape
    pos = [i for i in range(n) if labeled[i] and y[i] > 0.5]
    neg = [i for i in range(n) if labeled[i] and y[i] <= 0.5]
    delta = np.array([sum(R[u, i] for i in pos) / len(pos) - sum(R[u, i] for i in neg) / len(neg)
                      for u in range(m)])
    pi = len(pos) / (len(pos) + len(neg))
    mean = [sum(R[u]) / n for u in range(m)]
    x = [[R[u, k] - mean[u] for k in range(n)] for u in range(m)]
    w = np.array([[[x[i][k] * x[j][k] for k in range(n)] for j in range(m)] for i in range(m)])  # (m, m, n)
    total = w.sum(-1) / (n - 1)
    s = n / (n - 1) * w.mean(-1)
    var_s = n / (n - 1) ** 3 * ((w - w.mean(-1, keepdims=True)) ** 2).sum(-1)
    off = ~np.eye(m, dtype=bool)
    gamma = min(max(var_s[off].sum() / (s[off] ** 2).sum(), 0.0), 1.0)
    within = total - pi * (1 - pi) * np.outer(delta, delta)
    evals, evecs = np.linalg.eigh(within)
    evals = np.maximum(evals, 1e-6 * np.mean(np.diag(total)))
    within = evecs @ np.diag(evals) @ evecs.T
    shrunk = (1 - gamma) * within + gamma * np.diag(np.diag(within))
    direction = np.linalg.solve(shrunk, delta)
    return direction / np.linalg.norm(direction), gamma


def test_scarce_design_lda_direction_matches_numpy_loops():
    """Part 5's semi-supervised LDA direction and its Ledoit-Wolf intensity against explicit
    loops, on correlated scores whose between-class term makes the total-minus-between
    covariance need the PSD floor in one case; the calibrated rule's weights lie along it."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from cfjax import aggregators

    _load("scarce_design")  # registers the aggregators
    lda = _load("semisupervised_lda")
    rng = np.random.default_rng(0)
    m, n = 5, 120
    y = (rng.random(n) < 0.3).astype(float)
    common = rng.normal(size=n)
    R = 1 / (1 + np.exp(-(0.9 * common + 0.3 * rng.normal(size=(m, n)) + np.linspace(0.5, 1.5, m)[:, None] * y)))
    labeled = rng.random(n) < 0.25
    cases = [(R, labeled), (np.vstack([R[:4], R[3:4] + 1e-9 * rng.normal(size=(1, n))]), labeled)]
    with jax.enable_x64(True):
        for Rc, lab in cases:
            want, gamma = _lda_direction_loops(Rc, y, lab)
            got = np.asarray(lda.lda_direction(jnp.asarray(Rc), jnp.asarray(y), jnp.asarray(lab)))
            got_gamma = float(lda.diagonal_shrinkage_intensity(jnp.asarray(Rc)))
            np.testing.assert_allclose(got_gamma, gamma, rtol=1e-8)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
        fixed = aggregators.Inputs(R_hat=jnp.asarray(R), X=jnp.eye(m), Y=jnp.asarray(R))
        hp = __import__("cfjax").Hparams.create()
        theta0 = aggregators.initial_theta("lda", jax.random.key(0), m, m, hp, jnp.float64)
        theta = aggregators.get("lda").exact_fit(theta0, fixed, jnp.asarray(y), jnp.asarray(labeled, float), hp)
        c = np.asarray(theta.center)
        np.testing.assert_allclose(c, _lda_direction_loops(R, y, labeled)[0], rtol=1e-6, atol=1e-8)
        scale = float(np.asarray(theta.w) @ c)
        assert scale > 0
        np.testing.assert_allclose(np.asarray(theta.w), scale * c, rtol=1e-8, atol=1e-12)


def _em_direction_loops(R, y, labeled, n_steps):
    """Slow obvious twin of semisupervised_lda.em_direction: EM with a column loop per step."""
    import numpy as np

    n = R.shape[1]
    pos = [i for i in range(n) if labeled[i] and y[i] > 0.5]
    neg = [i for i in range(n) if labeled[i] and y[i] <= 0.5]
    pi = len(pos) / (len(pos) + len(neg))
    mu1, mu0 = R[:, pos].mean(1), R[:, neg].mean(1)
    total = np.cov(R)
    _, gamma = _lda_direction_loops(R, y, labeled)
    floor = 1e-6 * np.mean(np.diag(total))

    def regularised(S):
        evals, evecs = np.linalg.eigh(S)
        S = evecs @ np.diag(np.maximum(evals, floor)) @ evecs.T
        return (1 - gamma) * S + gamma * np.diag(np.diag(S))

    S = regularised(total - pi * (1 - pi) * np.outer(mu1 - mu0, mu1 - mu0))
    for _ in range(n_steps):
        w = np.linalg.solve(S, mu1 - mu0)
        tau = np.empty(n)
        for i in range(n):
            if labeled[i]:
                tau[i] = float(y[i] > 0.5)
            else:
                s = w @ (R[:, i] - (mu1 + mu0) / 2) + np.log(pi / (1 - pi))
                tau[i] = 1 / (1 + np.exp(-s))
        mu1 = sum(tau[i] * R[:, i] for i in range(n)) / tau.sum()
        mu0 = sum((1 - tau[i]) * R[:, i] for i in range(n)) / (n - tau.sum())
        S = sum(tau[i] * np.outer(R[:, i] - mu1, R[:, i] - mu1)
                + (1 - tau[i]) * np.outer(R[:, i] - mu0, R[:, i] - mu0) for i in range(n)) / n
        S = regularised(S)
    w = np.linalg.solve(S, mu1 - mu0)
    return w / np.linalg.norm(w)


def test_scarce_design_em_direction_matches_numpy_loops():
    """Part 5's EM semi-supervised LDA (labeled classes fixed, pi fixed) against a column loop."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    lda = _load("semisupervised_lda")
    rng = np.random.default_rng(1)
    m, n = 4, 90
    y = (rng.random(n) < 0.35).astype(float)
    common = rng.normal(size=n)
    R = 1 / (1 + np.exp(-(0.8 * common + 0.4 * rng.normal(size=(m, n)) + np.linspace(0.6, 1.4, m)[:, None] * y)))
    labeled = rng.random(n) < 0.3
    with jax.enable_x64(True):
        for steps in (0, 1, 7):
            got = np.asarray(lda.em_direction(jnp.asarray(R), jnp.asarray(y), jnp.asarray(labeled), n_steps=steps))
            np.testing.assert_allclose(got, _em_direction_loops(R, y, labeled, steps), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(np.asarray(lda.em_direction(jnp.asarray(R), jnp.asarray(y), jnp.asarray(labeled),
                                                               n_steps=0)),
                                   np.asarray(lda.lda_direction(jnp.asarray(R), jnp.asarray(y), jnp.asarray(labeled))),
                                   rtol=1e-10)


def test_scarce_design_along_emulation_is_the_library_prior_fit():
    """Part 6's emulated fit at the library's own precision along the direction is the default
    candidate's exact prior fit on the filled R: the same test PR-AUC at every scale, on data
    where no weight comes out negative (so the prior's w >= 0, part 9, does not bind)."""
    import jax
    import jax.numpy as jnp

    from cfjax import aggregators, baselines, data
    from cfjax.benchmark import score_test_columns
    from cfjax.structs import Hparams

    module = _load("scarce_design")
    ens = data.synthetic(jax.random.key(3), n_classifiers=6, n_instances=300, missing_rate=0.1,
                         labeled_fraction=0.3)
    problem = ens.problem
    _, proba_scores, _, _ = module._along_cell(jax.random.key(0), problem, jnp.asarray(ens.y_true),
                                               jnp.asarray(ens.test))
    F = baselines._filled(problem)
    fixed = aggregators.Inputs(R_hat=F, X=jnp.eye(6), Y=F, observed=problem.observed)
    start = module.ALONG_VALUES.index(aggregators._PRIOR_ALONG) * len(module.ALONG_SCALES)
    for k, scale in enumerate(module.ALONG_SCALES):
        hp = Hparams.create(agg_prior=scale)
        theta0 = aggregators.prior.init(jax.random.key(0), 6, hp, F.dtype)
        theta = aggregators.prior.exact_fit(theta0, fixed, problem.labels, problem.labeled.astype(F.dtype), hp)
        want = score_test_columns(ens.y_true, jax.nn.sigmoid(theta.w @ F + theta.b), ens.test)["pr_auc"]
        assert abs(float(proba_scores[start + k]) - want) < 1e-6, (scale, float(proba_scores[start + k]), want)


def test_scarce_design_blend_cell_is_part_6_and_stacking():
    """Part 7's predictors are part 6's fits at the library's precision along the direction
    (the same fold scores and test PR-AUC, so its first pipeline is the default's one-SE choice)
    and `baselines.stacking`; its blends and averages are those of the probabilities."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from cfjax import aggregators, baselines, data
    from cfjax.benchmark import score_test_columns

    module = _load("scarce_design")
    ens = data.synthetic(jax.random.key(3), n_classifiers=6, n_instances=300, missing_rate=0.1,
                         labeled_fraction=0.3)
    args = (jax.random.key(0), ens.problem, jnp.asarray(ens.y_true), jnp.asarray(ens.test))
    scores, test = (np.asarray(x) for x in module._blend_cell(*args))
    along_scores, along_proba, _, _ = (np.asarray(x) for x in module._along_cell(*args))
    assert module.ALONG_SCALES == module.BLEND_SCALES
    start = module.ALONG_VALUES.index(aggregators._PRIOR_ALONG) * len(module.ALONG_SCALES)
    k = len(module.BLEND_SCALES)
    np.testing.assert_allclose(scores[:k], along_scores[start:start + k], atol=1e-6)
    np.testing.assert_allclose(test[:k], along_proba[start:start + k], atol=1e-6)
    stacking = module.BLEND_PREDICTORS.index("stacking")
    want = score_test_columns(ens.y_true, baselines.stacking(ens.problem), ens.test)["pr_auc"]
    assert abs(test[stacking] - want) < 1e-6
    record = {"scores": scores.tolist(), "test": test.tolist()}
    along_record = {"scores": along_scores.tolist(), "test_proba": along_proba.tolist()}
    default = module.BLEND_SPECS["(7) default's options, one_se"]
    chosen = module.emulate_along(along_record, aggregators._PRIOR_ALONG, "test_proba")
    assert abs(module.emulate_blend(record, *default) - chosen) < 1e-6
    assert module.emulate_blend(record, ["stacking"], None) == test[stacking]
    P = np.asarray(module.blend_predictions(ens.problem, ens.problem.labeled))
    names = module.BLEND_PREDICTORS
    options, S = P[:k], P[stacking]
    for j, scale in enumerate(module.BLEND_SCALES):
        np.testing.assert_allclose(P[names.index(f"scale {scale:g} + stacking")], (options[j] + S) / 2, rtol=1e-6)
    np.testing.assert_allclose(P[names.index("average of the scales")], options.mean(0), rtol=1e-6)
    np.testing.assert_allclose(P[names.index("average of the scales and stacking")],
                               (options.sum(0) + S) / (k + 1), rtol=1e-6)


def test_scarce_design_nonnegative_cell_is_the_free_fit_and_the_library_fit():
    """Part 9's first V options are part 7's (w free), its last V the library's prior fit (w >= 0)
    at the same scales. Where the labeled columns are turned around (every classifier below chance
    there, as out-of-fold predictions from a few dozen rows can be) the free fit turns the test
    ranking around too, and the library's does not."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from cfjax import aggregators, baselines, data
    from cfjax.benchmark import score_test_columns
    from cfjax.structs import Hparams

    module = _load("scarce_design")
    ens = data.synthetic(jax.random.key(3), n_classifiers=6, n_instances=300, missing_rate=0.1,
                         labeled_fraction=0.3)
    args = (jax.random.key(0), ens.problem, jnp.asarray(ens.y_true), jnp.asarray(ens.test))
    scores, test = (np.asarray(x) for x in module._nonnegative_cell(*args))
    blend_scores, blend_test = (np.asarray(x) for x in module._blend_cell(*args))
    k = len(module.NONNEG_SCALES)
    assert module.NONNEG_SCALES == module.BLEND_SCALES
    np.testing.assert_allclose(scores[:k], blend_scores[:k], atol=1e-6)
    np.testing.assert_allclose(test[:k], blend_test[:k], atol=1e-6)

    problem = ens.problem
    turned = problem._replace(R=jnp.where(problem.labeled[None, :], 1.0 - problem.R, problem.R))
    args = (jax.random.key(0), turned, jnp.asarray(ens.y_true), jnp.asarray(ens.test))
    scores, test = (np.asarray(x) for x in module._nonnegative_cell(*args))
    F = baselines._filled(turned)
    fixed = aggregators.Inputs(R_hat=F, X=None, Y=None, observed=turned.observed)
    for j, scale in enumerate(module.NONNEG_SCALES):
        hp = Hparams.create(agg_prior=scale)
        theta0 = aggregators.prior.init(jax.random.key(0), 6, hp, F.dtype)
        theta = aggregators.prior.exact_fit(theta0, fixed, turned.labels, turned.labeled.astype(F.dtype), hp)
        assert (np.asarray(theta.w) > 0).all()  # held at 0, each keeps a trace of the direction
        want = score_test_columns(ens.y_true, jax.nn.sigmoid(theta.w @ F + theta.b), ens.test)["pr_auc"]
        # every weight held: logits spread by the trace alone (~1e-4), so float32 rounding may
        # swap near-equal columns between this fit and the cell's vmapped one
        assert abs(float(test[k + j]) - want) < 1e-4
    rate = float(np.mean(ens.y_true[ens.test]))
    average = score_test_columns(ens.y_true, baselines.simple_average(turned), ens.test)["pr_auc"]
    assert (test[:k] < rate).all()  # the free fit: below a random ranking
    assert (test[k:] > average - 0.02).all()  # w >= 0: about as good as averaging
    record = {"scores": scores.tolist(), "test": test.tolist()}
    assert module.emulate_nonnegative(record, True) in test[k:].tolist()
    assert module.emulate_nonnegative(record, False) in test[:k].tolist()


def test_scarce_design_label_agreement_reads_no_unlabeled_label():
    """Part 8's statistic: the Spearman correlation of the classifiers' ROC-AUCs on the labeled
    columns with the SML reliabilities, computed here by a plain loop; the labels of unlabeled
    columns never enter, and one labeled class gives NaN. The switch falls back to the default's
    choice below its threshold and on NaN."""
    import jax
    import numpy as np

    from cfjax import baselines, data

    module = _load("scarce_design")
    ens = data.synthetic(jax.random.key(5), n_classifiers=7, n_instances=260, missing_rate=0.1,
                         labeled_fraction=0.3)
    problem = ens.problem
    F = np.asarray(baselines._filled(problem))
    labeled, y = np.asarray(problem.labeled), np.asarray(problem.labels)

    def ranks(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        return r

    auc = []
    for u in range(F.shape[0]):  # ROC-AUC as the probability that a positive outranks a negative
        pos, neg = F[u, labeled & (y > 0.5)], F[u, labeled & (y <= 0.5)]
        auc.append(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))
    v = np.asarray(baselines.sml_weights(problem)[0])
    want = np.corrcoef(ranks(np.asarray(auc)), ranks(v))[0, 1]
    got = module.label_agreement(problem)
    assert abs(got - want) < 1e-9
    flipped = problem._replace(labels=problem.labels.at[~problem.labeled].set(1 - problem.labels[~problem.labeled]))
    assert module.label_agreement(flipped) == got
    one_class = problem._replace(labels=problem.labels.at[problem.labeled].set(1.0))
    assert np.isnan(module.label_agreement(one_class))

    scores = np.random.default_rng(0).uniform(size=(len(module.BLEND_PREDICTORS), 10))
    record = {"scores": scores.tolist(), "test": list(range(len(module.BLEND_PREDICTORS))),
              "agreement": 0.2}
    default = module.AGREEMENT_SPECS["(8) default's options, one_se"]
    stacking = module.AGREEMENT_SPECS["(8) agreement >= 0.7: stacking"]
    assert module.emulate_agreement(record, *stacking) == module.emulate_agreement(record, *default)
    assert module.emulate_agreement({**record, "agreement": float("nan")}, *stacking) == \
        module.emulate_agreement(record, *default)
    assert module.emulate_agreement({**record, "agreement": 0.9}, *stacking) == \
        module.BLEND_PREDICTORS.index("stacking")


def test_held_out_panel_is_registered_and_disjoint_from_the_panel():
    """The held-out data sets are data sets of `cfjax.datasets`, none of them on the few-label
    panel, and the scripts' --holdout flags read them."""
    from cfjax import datasets

    panel = _load("panel")
    assert set(panel.FEW_LABEL_HOLDOUT) <= set(datasets.DATASETS)
    assert not set(panel.FEW_LABEL_HOLDOUT) & set(panel.FEW_LABEL_PANEL)
    for script in ("scarce_labels", "scarce_design", "build_ensembles"):
        assert "FEW_LABEL_HOLDOUT if args.holdout" in (EXPERIMENTS / f"{script}.py").read_text(), script
