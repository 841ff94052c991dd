"""The `auto` pipeline's pieces: the logit space, candidate scoring and the choice among them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfjax import aggregators, benchmark, data, losses, predict
from cfjax.benchmark import AutoCandidate


@pytest.fixture(scope="module")
def ensemble():
    return data.synthetic(jax.random.key(3), n_classifiers=5, n_instances=120, positive_rate=0.3,
                          missing_rate=0.1)


def test_logit_space_is_the_scaled_logit_on_observed_cells(ensemble):
    problem = ensemble.problem
    out = benchmark.logit_space(problem, eps=1e-3)
    R = np.clip(np.asarray(problem.R, np.float64), 1e-3, 1 - 1e-3)
    want = np.where(np.asarray(problem.observed), 0.5 + 0.25 * np.log(R / (1 - R)), 0.0)
    np.testing.assert_allclose(np.asarray(out.R), want, rtol=1e-5, atol=1e-5)
    for field in ("C", "observed", "labels", "labeled", "validation"):
        np.testing.assert_array_equal(np.asarray(getattr(out, field)), np.asarray(getattr(problem, field)))


def test_weighted_init_on_logit_space_is_the_mean_base_logit(ensemble):
    # The reason for the 1/2 + logit / 4 scaling: the weighted aggregator's first point ranks by
    # (and equals) the mean of the base logits, instead of saturating.
    problem = ensemble.problem._replace(observed=jnp.ones_like(ensemble.problem.observed))
    out = benchmark.logit_space(problem)
    m = problem.R.shape[0]
    theta = aggregators.weighted.init(m, out.R.dtype)
    R = jnp.clip(problem.R, benchmark.LOGIT_EPS, 1 - benchmark.LOGIT_EPS)
    np.testing.assert_allclose(aggregators.weighted.logits(theta, out.R),
                               jnp.mean(jnp.log(R) - jnp.log1p(-R), axis=0), rtol=1e-4, atol=1e-4)


def test_auto_fit_chooses_the_best_cross_validated_candidate(ensemble):
    candidates = (AutoCandidate("probability", "als", "free"),
                  AutoCandidate("logit", "two_stage", "free", full_rank=True))
    key = jax.random.key(0)
    scored = benchmark.score_candidates(key, ensemble.problem, candidates, latent_dim=2, max_iter=5)
    chosen = benchmark.auto_fit(key, ensemble.problem, latent_dim=2, max_iter=5, candidates=candidates)
    scores = [s for _, s, _ in scored]
    best = int(np.argmax(scores))
    assert chosen.info["candidates"] == {label: s for label, s, _ in scored}
    assert chosen.info["label"] == scored[best][0]
    assert chosen.space == candidates[best].space == chosen.info["space"]
    # the full-rank candidate fits at latent_dim = m, the other at the given latent_dim
    assert scored[0][2].config.latent_dim == 2 and scored[1][2].config.latent_dim == 5
    proba = predict.proba(chosen.result.params, chosen.config)
    assert proba.shape == (120,) and bool(jnp.all(jnp.isfinite(proba)))
    # a logit-space fit reconstructs logit_space(R), so transform() is what new columns need
    logit_fit = scored[1][2]
    assert logit_fit.space == "logit"
    recon = losses.reconstruct(logit_fit.result.params)
    target = logit_fit.transform(ensemble.problem)
    obs = np.asarray(target.observed)
    assert np.abs(np.asarray(recon - target.R))[obs].mean() < np.abs(np.asarray(recon - ensemble.problem.R))[obs].mean()


def test_score_candidates_rejects_an_unknown_space(ensemble):
    with pytest.raises(ValueError, match="space"):
        benchmark.score_candidates(jax.random.key(0), ensemble.problem, [AutoCandidate("odds", "als", "free")])


def test_default_candidates_keep_the_previous_auto_first():
    previous = [(c.space, c.method, c.formulation) for c in benchmark.AUTO_CANDIDATES[:3]]
    assert previous == [("probability", "als", "free"), ("probability", "two_stage", "free"),
                        ("probability", "joint", "fold_in")]
