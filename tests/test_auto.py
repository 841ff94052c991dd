"""`auto`, the default pipeline: a method like any other, a cross-validated choice among candidates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cfjax
from cfjax import aggregators, data, io, metrics, predict, selection, sweep
from cfjax.solvers import auto
from cfjax.solvers.auto import Candidate

from . import tiers

# Two cheap candidates keep compiles short; the default list is exercised by test_default_call.
TWO = (Candidate("als"), Candidate("two_stage", space="logit", full_rank=True, aggregator="prior",
                                   grid=(("agg_prior", (0.3, 3.0)),)))
OPTIONS = (("candidates", TWO), ("folds", 3), ("repeats", 2))


def _config(**changes):
    return cfjax.Config(method="auto", latent_dim=2, max_iter=6, options=OPTIONS, **changes)


@pytest.fixture(scope="module")
def ensemble():
    return data.synthetic(jax.random.key(3), n_classifiers=5, n_instances=150, positive_rate=0.3,
                          missing_rate=0.1)


@pytest.fixture(scope="module")
def fitted(ensemble):
    return cfjax.fit(jax.random.key(0), ensemble.problem, None, _config())


# ---------------------------------------------------------------------------------------------
# the logit space of the logit candidates


def test_logit_space_is_the_scaled_logit_on_observed_cells(ensemble):
    problem = ensemble.problem
    out = data.logit_space(problem, eps=1e-3)
    R = np.clip(np.asarray(problem.R, np.float64), 1e-3, 1 - 1e-3)
    want = np.where(np.asarray(problem.observed), 0.5 + 0.25 * np.log(R / (1 - R)), 0.0)
    np.testing.assert_allclose(np.asarray(out.R), want, rtol=1e-5, atol=1e-5)
    for field in ("C", "observed", "labels", "labeled", "validation"):
        np.testing.assert_array_equal(np.asarray(getattr(out, field)), np.asarray(getattr(problem, field)))


def test_weighted_init_on_logit_space_is_the_mean_base_logit(ensemble):
    # The reason for the 1/2 + logit / 4 scaling: the weighted aggregator's first point ranks by
    # (and equals) the mean of the base logits, instead of saturating.
    problem = ensemble.problem._replace(observed=jnp.ones_like(ensemble.problem.observed))
    out = data.logit_space(problem)
    m = problem.R.shape[0]
    theta = aggregators.initial_theta("weighted", jax.random.key(0), m, m, cfjax.Hparams.create(), out.R.dtype)
    inputs = aggregators.Inputs(R_hat=out.R, X=jnp.eye(m), Y=out.R)
    R = jnp.clip(problem.R, data.LOGIT_EPS, 1 - data.LOGIT_EPS)
    np.testing.assert_allclose(aggregators.weighted.logits(theta, inputs),
                               jnp.mean(jnp.log(R) - jnp.log1p(-R), axis=0), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# the folds and the choice


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folds_deal_each_class_round_robin_in_the_keyed_order(ensemble, seed):
    """The traced fold ids against a plain loop: walk the keyed permutation, deal each class's
    labeled columns to folds 0, 1, 2, 0, ...; the host masks of `selection` are the same."""
    key = jax.random.key(seed)
    labels, labeled = np.asarray(ensemble.problem.labels), np.asarray(ensemble.problem.labeled)
    want = np.full(labels.shape, -1)
    dealt = {False: 0, True: 0}
    for i in np.asarray(jax.random.permutation(key, labels.shape[0])):
        if labeled[i]:
            cls = bool(labels[i] > 0.5)
            want[i] = dealt[cls] % 3
            dealt[cls] += 1
    ids = np.asarray(auto.stratified_fold_ids(key, ensemble.problem.labels, ensemble.problem.labeled, 3))
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_array_equal(selection.stratified_folds(key, ensemble.problem, 3),
                                  want[None, :] == np.arange(3)[:, None])


def test_scores_are_the_folds_held_out_pr_auc(ensemble):
    """A candidate's fold score, recomputed by hand: fit on the fold's training columns only."""
    problem, config = ensemble.problem, cfjax.validation.resolve_config(_config(), ensemble.problem)
    hp = cfjax.solvers.get("auto").hparams()
    run = auto.run_candidate(jax.random.key(0), problem, hp, config, 1)
    assert run.scores.shape == (6, 2)  # 3 folds x 2 repeats, 2 grid points
    fold_key, fit_key = jax.random.split(jax.random.key(0))
    second_repeat = jax.random.split(fold_key, 2)[1]
    held = auto.stratified_fold_ids(second_repeat, problem.labels, problem.labeled, 3) == 2
    cfg = auto.candidate_config(TWO[1], config, *problem.R.shape)
    alone = cfjax.fit_jit(fit_key, problem._replace(labeled=problem.labeled & ~held),
                          hp._replace(agg_prior=jnp.asarray(3.0)), cfg)
    want = metrics.average_precision(problem.labels, predict.logits(alone.params, cfg, problem), held)
    np.testing.assert_allclose(float(run.scores[5, 1]), float(want), rtol=1e-5)


def test_the_choice_follows_the_rule(fitted, ensemble):
    info = jax.tree.map(np.asarray, fitted.info)
    assert info["cv_scores"].shape == (3, 6) and info["cv_mean"].shape == (3,)  # options: als, prior 0.3, prior 3
    np.testing.assert_allclose(info["cv_mean"], np.nanmean(info["cv_scores"], axis=1), rtol=1e-6)
    best = int(np.argmax(info["cv_mean"]))
    # one_se: the first option within one corrected standard error of the best
    d = info["cv_scores"][best][None, :] - info["cv_scores"]
    se = np.sqrt((1 / 6 + 1 / 2) * d.var(axis=1, ddof=1))
    np.testing.assert_allclose(info["cv_se"], se, rtol=1e-4, atol=1e-7)
    first = int(np.flatnonzero(info["cv_mean"] >= info["cv_mean"][best] - se)[0])
    assert int(info["option"]) == first
    assert int(info["candidate"]) == (0 if first == 0 else 1)
    assert int(info["space"]) == (0 if first == 0 else 1)
    assert int(info["latent_dim"]) == (2 if first == 0 else 5)
    # params padded to the largest rank, theta written in the config's aggregator
    assert fitted.params.X.shape == (5, 5) and fitted.params.Y.shape == (5, 150)
    assert isinstance(fitted.params.theta, aggregators.WeightedTheta)
    rows = auto.describe(fitted, cfjax.validation.resolve_config(_config(), ensemble.problem), ensemble.problem)
    assert [r["chosen"] for r in rows].count(True) == 1
    assert rows[0]["option"] == "R: als(d=2)" and rows[2]["option"] == "logit(R): two_stage(d=5, agg_prior=3) [prior]"


def test_the_best_rule_takes_the_highest_mean(ensemble):
    result = cfjax.fit(jax.random.key(0), ensemble.problem, None,
                       _config().replace(options=(*OPTIONS, ("rule", "best"))))
    assert int(result.info["option"]) == int(np.argmax(np.asarray(result.info["cv_mean"])))


def test_the_rule_against_a_numpy_twin():
    """`choose` equals its definition written out in NumPy, NaN folds included."""
    rng = np.random.default_rng(0)
    for trial in range(20):
        S = rng.uniform(0.5, 1.0, size=(5, 6))
        S[rng.uniform(size=S.shape) < 0.1] = np.nan
        z = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
        chosen, mean, se = auto.choose(jnp.asarray(S), "one_se", z, 3)
        m = np.array([np.nanmean(r) for r in S])
        np.testing.assert_allclose(np.asarray(mean), m, rtol=1e-6)
        b = int(np.nanargmax(m))
        want_se = []
        for o in range(5):
            ok = np.isfinite(S[b]) & np.isfinite(S[o])
            d = (S[b] - S[o])[ok]
            want_se.append(0.0 if o == b else np.sqrt((1 / d.size + 1 / 2) * d.var(ddof=1)))
        np.testing.assert_allclose(np.asarray(se), want_se, rtol=1e-5, atol=1e-7)
        assert int(chosen) == int(np.flatnonzero(m >= m[b] - z * np.asarray(want_se))[0]), trial


def test_ties_go_to_the_earlier_candidate(ensemble):
    same = (Candidate("als"), Candidate("als"))
    for rule in ("best", "one_se"):
        config = _config().replace(options=(("candidates", same), ("folds", 3), ("rule", rule)))
        assert int(cfjax.fit(jax.random.key(0), ensemble.problem, None, config).info["candidate"]) == 0


def test_never_reads_a_hidden_label(ensemble, fitted):
    p = ensemble.problem
    scrambled = p._replace(labels=jnp.where(p.labeled, p.labels, 1.0 - p.labels))
    again = cfjax.fit(jax.random.key(0), scrambled, None, _config())
    for a, b in zip(jax.tree.leaves(fitted), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fold_in_maps_new_columns_into_the_chosen_space(ensemble):
    only_logit = _config().replace(options=(("candidates", (TWO[1],)), ("folds", 3)))
    result = cfjax.fit(jax.random.key(0), ensemble.problem, None, only_logit)
    hp = cfjax.solvers.get("auto").hparams()
    # two_stage's Y is the ridge solve of its (logit) R: folding the training columns back in
    # reproduces it only if the new columns are mapped into logit space first
    Y = predict.fold_in(result, ensemble.problem, hp, only_logit)
    np.testing.assert_allclose(np.asarray(Y), np.asarray(result.params.Y), rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# a method like any other


def test_default_call_runs_the_default_pipeline_on_a_five_classifier_ensemble():
    """What the README's first example does."""
    R = np.random.default_rng(0).uniform(size=(5, 60))
    labels = np.r_[np.zeros(8), np.ones(8), -np.ones(44)]
    result = cfjax.fit(jax.random.key(0), cfjax.from_numpy(R, labels))
    proba = np.asarray(cfjax.proba(result.params, cfjax.Config()))
    assert proba.shape == (60,) and np.isfinite(proba).all()
    assert np.asarray(result.info["cv_mean"]).shape == (len(auto.options(cfjax.Config())),)
    # binary, the default candidates: the best mean (auto.choice_rule), not the one-SE rule
    assert int(result.info["option"]) == int(np.argmax(np.asarray(result.info["cv_mean"])))


def test_the_rule_by_default_and_when_named():
    default = cfjax.Config(method="auto")
    assert auto.choice_rule(default, 2) == "best"
    assert auto.choice_rule(default.replace(options=(("candidates", auto.CANDIDATES),)), 2) == "best"
    assert auto.choice_rule(default, 3) == "one_se"  # K classes: the prior's fit keeps w free
    assert auto.choice_rule(default.replace(options=(("candidates", auto.WITH_ATTENTION),)), 2) == "one_se"
    assert auto.choice_rule(_config(), 2) == "one_se"
    for rule in auto.RULES:
        assert auto.choice_rule(default.replace(options=(("rule", rule),)), 2) == rule
        assert auto.choice_rule(default.replace(options=(("rule", rule),)), 4) == rule


@tiers.parametrize("m", [1, 2], only_fast=0)
def test_any_number_of_classifiers(m):
    rng = np.random.default_rng(m)
    y = np.r_[np.zeros(20), np.ones(20)]
    R = np.clip(0.5 + 0.3 * (y - 0.5)[None, :] + 0.2 * rng.normal(size=(m, 40)), 0, 1)
    labels = np.where(np.arange(40) % 2 == 0, y, -1)
    result = cfjax.fit(jax.random.key(0), cfjax.from_numpy(R, labels), None, _config().replace(latent_dim=None))
    assert np.isfinite(np.asarray(cfjax.proba(result.params, _config()))).all()


@pytest.mark.slow  # auto again, in chunks
def test_progress_gives_the_same_result(ensemble, fitted, capsys):
    shown = cfjax.fit(jax.random.key(0), ensemble.problem, None, _config(), progress=True)
    for a, b in zip(jax.tree.leaves(fitted), jax.tree.leaves(shown)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert "2/2" in capsys.readouterr().err  # one step per candidate


@pytest.mark.slow  # auto under a sweep: every candidate, fold and rho, per grid point
def test_in_a_sweep(ensemble, fitted):
    grid = sweep.grid(lam=[0.01, 0.5], method="auto")
    result = sweep.run(jax.random.key(0)[None], ensemble.problem, grid, _config())  # the fixture's key
    assert np.asarray(result.info["candidate"]).shape == (2, 1)
    np.testing.assert_allclose(np.asarray(result.info["cv_mean"][0, 0]), np.asarray(fitted.info["cv_mean"]),
                               rtol=1e-5)


def test_save_and_load_keep_the_choice(fitted, tmp_path):
    config = _config()
    hp = cfjax.solvers.get("auto").hparams()
    io.save(tmp_path / "auto", fitted, config, hp)
    loaded, config2, _ = io.load(tmp_path / "auto.npz")
    assert config2 == config and config2.option("candidates") == TWO
    for name in ("option", "candidate", "cv_mean", "cv_se", "cv_scores", "space", "lam", "latent_dim"):
        np.testing.assert_array_equal(np.asarray(loaded.info[name]), np.asarray(fitted.info[name]))
    np.testing.assert_array_equal(np.asarray(loaded.info["hparams"]["agg_prior"]),
                                  np.asarray(fitted.info["hparams"]["agg_prior"]))


def test_what_auto_refuses(ensemble):
    for options, match in (((("folds", 1),), "folds"), ((("repeats", 0),), "repeats"),
                           ((("rule", "worst"),), "rule"), ((("z", -1.0),), "'z'"),
                           ((("candidates", ()),), "candidates"),
                           ((("candidates", (Candidate("auto"),)),), "iterative"),
                           ((("candidates", (Candidate("als", grid=(("rho", (2.0,)),)),)),), "rho values"),
                           ((("candidates", (Candidate("als", grid=(("nope", (1.0,)),)),)),), "not an Hparams field"),
                           ((("candidates", (Candidate("als", aggregator="mean"),)),), "so it must be logit-linear")):
        with pytest.raises(ValueError, match=match):
            cfjax.fit(jax.random.key(0), ensemble.problem, None, cfjax.Config(method="auto", options=options))
    with pytest.raises(ValueError, match="cannot express a logit-linear rule"):
        cfjax.fit(jax.random.key(0), ensemble.problem, None,
                  cfjax.Config(method="auto", aggregator="mean",
                               options=(("candidates", (Candidate("als", aggregator="weighted"),)),)))
    with pytest.raises(ValueError, match="init: method 'auto' has no state"):
        cfjax.fit(jax.random.key(0), ensemble.problem, None, _config(),
                  init=cfjax.Params(X=jnp.zeros((2, 5)), Y=jnp.zeros((2, 150)), theta=()))


def test_a_global_rule_and_attention_are_candidates_of_one_choice(ensemble):
    """With the attention aggregator as the config's, a logit-linear candidate (the prior, at full
    rank) is returned at A = 0 and an attention candidate at a lower rank is zero-padded: both
    with exactly the logits of their own fit."""
    cands = (Candidate("two_stage", full_rank=True, aggregator="prior", grid=(("agg_prior", (0.3,)),)),
             Candidate("two_stage", grid=(("agg_l2", (0.1,)),)))
    for rule_first in (0, 1):  # force each candidate to be chosen in turn: z huge picks the first
        order = cands if rule_first == 0 else cands[::-1]
        config = cfjax.Config(method="auto", aggregator="attention", latent_dim=2, max_iter=6,
                              options=(("candidates", order), ("folds", 3), ("repeats", 1), ("z", 1e9)))
        result = cfjax.fit(jax.random.key(0), ensemble.problem, None, config)
        assert isinstance(result.params.theta, aggregators.AttentionTheta)
        assert result.params.theta.A.shape == (5, 5) and int(result.info["candidate"]) == 0
        m, n = ensemble.problem.R.shape
        own = auto.candidate_config(order[0], config, m, n)
        hparams = cfjax.solvers.get("auto").hparams()._replace(**{k: jnp.asarray(v[0], jnp.float32)
                                                                 for k, v in order[0].grid})
        single = cfjax.fit(jax.random.key(0), ensemble.problem, hparams, own)
        np.testing.assert_allclose(np.asarray(cfjax.proba(result.params, config)),
                                   np.asarray(cfjax.proba(single.params, own)), rtol=2e-4, atol=2e-5)
