"""How the default pipeline was chosen for scarce labels (issue 17): the diagnosis and the ablations.

Part 1, diagnosis. Why does a supervised combiner lose to averaging with few labels? Per
(data set, labeled fraction, split) of the few-label panel: how well the labeled columns rank
the classifiers (Spearman correlation between each classifier's ROC-AUC on the labeled columns,
which hold out-of-fold predictions, and on the unlabeled test columns), and how far apart the
classifiers really are (the spread of their test ROC-AUCs).

Part 2, ablations, from the library's own `auto` machinery. For each cell, every candidate of
`POOL` is run by `cfjax.solvers.auto.run_candidate` (repeated stratified folds of the labeled
columns, 5 x 2, and the fit on all labels, at every point of its grid), keeping its fold scores
and the test PR-AUC of each point. Any `auto` (a list of options and a rule) is then emulated
exactly from these records, since the rule reads fold scores only; `SPECS` are the variants the
design compared. Printed per labeled fraction: panel mean, paired difference against averaging
and against the best baseline (averaging, stacking, Caruana, SML) with 95 % t intervals, and the
worst data set against averaging.

Part 3, the prior scale by evidence instead of cross-validation (`--evidence`). For each cell,
the default candidate's fit on all labels at every scale of `EVIDENCE_SCALES`, its test PR-AUC
and the Laplace approximation of its marginal likelihood (`laplace_log_evidence`): type-II
maximum likelihood picks the scale without folds. Emulated as rows of the ablation tables.

Part 4, stacking as a candidate (`--stacking`): scikit-learn-equivalent stacking
(`cfjax.baselines.stacking`) scored on the same held-out folds as the candidates
(`auto.held_out_masks`, same key), so that the rules that admit it, and a rule that admits it
only with enough labels per weight (events per variable, minority-class labels / m >= 10, the
logistic-regression rule of thumb of Peduzzi et al. 1996), are emulated exactly.

Part 5, a semi-supervised linear discriminant (`--lda`): the candidates of `LDA_POOL`, whose
aggregators (experiments/semisupervised_lda.py) read the classifiers' covariance from every
column (no labels) and their class means from the labeled ones, run by `auto.run_candidate` on
the same cells and keys as part 2 (records_lda.jsonl); `LDA_SPECS` combine them with the
default's recorded options, emulated exactly. `--lda` also writes lda.md, the goal's rows only.
`--lda-diagnosis` (no fits; a few minutes): per cell, on R itself (full-rank two_stage
reconstructs it closely), the LDA direction against its oracle (the same estimator given every
column's true label: an upper bound, not a method), the diagonal discriminant against its own,
the Ledoit-Wolf intensity, and the test PR-AUC of each direction's rule (lda_diagnosis.md).

Part 6, the prior's precision along its direction (`--along`; `aggregators._PRIOR_ALONG`, 1e-4
until 2026-11-28, 1e-2 since): the default's options (scales 0.1-3 at the mix centre, one-SE rule)
at each precision of `ALONG_VALUES`, emulated per cell on R with unobserved cells filled (what
the full-rank reconstruction gives back to within 0.006) by `logistic.fit_logistic_prior`, on
`run_candidate`'s folds (same key), scored as the library is, on the float32 probabilities, and
as a ranking of the logits: a free scale along the direction lets separable labeled columns push
the logits past float32's sigmoid, whose probabilities then tie at 1.

Part 7, averaging instead of choosing (`--blend`; exploratory, run after parts 1-6): is the
one-SE choice's noise what costs the 20 and 60 % cells, and does shrinking the choice towards
stacking recover them? Per cell, on the filled R as part 6 and at the library's precision along
the direction, the default's four options (`BLEND_SCALES`), stacking (`baselines.stacking`'s
on the training columns), each option's 50/50 blend of probabilities with stacking, the average of the four options
and the average of all five, each scored on `run_candidate`'s folds (same key) and on the test
columns (`_blend_cell`); `BLEND_SPECS` choose among them by the one-SE rule or fix one.
`--blend` also writes blend.md.

Part 8, a label-free switch (`--agreement`; exploratory, found on splits 0-9 after part 7, then
checked on fresh splits with `--first-split 10`): do the few labels rank the classifiers as the
unlabeled columns do? `label_agreement` is the Spearman correlation between each classifier's
ROC-AUC on the labeled columns and the spectral meta-learner's reliabilities (every column, no
label). Where it is high the labels look trustworthy and stacking is put first in the one-SE
order; elsewhere the default's order stands (`AGREEMENT_SPECS`, emulated from part 7's
predictors). Self-contained records (part 7's scores, the goal's baselines and the statistic per
cell), so it runs on any split range without part 2; writes agreement_<first split>.md.

Part 9, non-negative weights (`--nonnegative`; after part 8's switch failed on the held-out data
sets, `--holdout`: `panel.FEW_LABEL_HOLDOUT`, chosen by a rule in `cfjax.datasets`). There, with a
few dozen labels, every classifier's out-of-fold ROC-AUC on the labeled columns can be below 0.5
while the same models score 0.53-0.83 on the test columns, and the prior's fit turns the whole
ensemble around. Per cell: the default's options as fitted before (w free, on the filled R as in
part 6) and as the library's prior aggregator now fits them (w >= 0,
`cfjax.logistic.fit_logistic_prior_nonnegative`), each scored on `run_candidate`'s folds and the
test columns, and the goal's baselines; self-contained records like part 8's; writes
nonneg_<panel>_<first split>.md.

Writes results/scarce_design/ (records.jsonl, records_evidence.jsonl, records_stacking.jsonl, records_along.jsonl,
records_blend.jsonl, records_lda.jsonl, records_lda_em.jsonl, records_lda_diagnosis.jsonl, diagnosis.md, ablations.md, lda.md,
lda_diagnosis.md, along.md, blend.md, records_agreement.jsonl, agreement_*.md, config.json).

    python experiments/scarce_design.py [--splits 10] [--datasets ...] [--labeled 0.05 0.1 0.2 0.6]
        [--diagnosis-only] [--evidence] [--stacking] [--lda] [--lda-diagnosis] [--along]
        [--blend] [--agreement [--first-split 10]]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

import semisupervised_lda  # registers the aggregators of part 5
from common import provenance, results_dir, write_json
from panel import FEW_LABEL_FRACTIONS, FEW_LABEL_HOLDOUT, FEW_LABEL_PANEL

import cfjax
from cfjax import aggregators, baselines, benchmark, datasets, metrics, predict, validation
from cfjax.benchmark import t_interval
from cfjax.logistic import fit_logistic_prior
from cfjax.solvers import auto, driver
from cfjax.solvers.auto import Candidate

SCALES = (0.03, 0.1, 0.3, 1.0, 3.0)
#: The candidates compared: name -> Candidate (two_stage at full rank unless the name says d=4).
POOL = {
    "prior(mix)": Candidate("two_stage", full_rank=True, aggregator="prior", grid=(("agg_prior", SCALES),)),
    "prior(discriminant)": Candidate("two_stage", full_rank=True, aggregator="prior",
                                     grid=(("agg_prior_sml", (0.0,)), ("agg_prior", SCALES))),
    "prior(sml)": Candidate("two_stage", full_rank=True, aggregator="prior",
                            grid=(("agg_prior_sml", (1.0,)), ("agg_prior", SCALES))),
    "prior(mix), logit": Candidate("two_stage", space="logit", full_rank=True, aggregator="prior",
                                   grid=(("agg_prior", SCALES),)),
    "prior(mix), d=4": Candidate("two_stage", aggregator="prior", grid=(("agg_prior", SCALES),)),
    "weighted": Candidate("two_stage", full_rank=True, aggregator="weighted"),
    "weighted, logit": Candidate("two_stage", space="logit", full_rank=True, aggregator="weighted"),
}
ALL = list(range(len(SCALES)))
#: The emulated pipelines: name -> ([(pool name, grid points), ...], rule).
SPECS = {
    "prior(mix), agg_prior 0.3": ([("prior(mix)", [2])], "best"),
    "prior(discriminant), agg_prior 0.3": ([("prior(discriminant)", [2])], "best"),
    "prior(sml), agg_prior 0.3": ([("prior(sml)", [2])], "best"),
    "prior(mix), d=4, agg_prior 0.3": ([("prior(mix), d=4", [2])], "best"),
    "weighted (two_stage at full rank)": ([("weighted", [0])], "best"),
    "prior(mix) 0.1-3, best": ([("prior(mix)", [1, 2, 3, 4])], "best"),
    "default: prior(mix) 0.1-3, one_se": ([("prior(mix)", [1, 2, 3, 4])], "one_se"),
    "prior(mix) 0.03-3, one_se": ([("prior(mix)", ALL)], "one_se"),
    "+ logit, one_se": ([("prior(mix)", [1, 2, 3, 4]), ("prior(mix), logit", [2, 4])], "one_se"),
    "+ weighted, one_se": ([("prior(mix)", [1, 2, 3, 4]), ("weighted", [0]), ("weighted, logit", [0])], "one_se"),
    "prior(mix) 0.1-3, one_se at z = 0.5": ([("prior(mix)", [1, 2, 3, 4])], "one_se", 0.5),
}
#: The scales of part 3 (a wider grid than the candidates', so the evidence can reach either end).
EVIDENCE_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: Part 3's emulated pipelines: name -> indices into EVIDENCE_SCALES the evidence chooses among.
EVIDENCE_SPECS = {"evidence over 0.1-3": [2, 3, 4, 5], "evidence over 0.01-100": list(range(len(EVIDENCE_SCALES)))}
#: Part 4's emulated pipelines: name -> (where stacking goes among the default's options, rule,
#: least events per variable for stacking to be an option at all).
STACKING_SPECS = {
    "default + stacking last, one_se": ("last", "one_se", 0.0),
    "default + stacking last, best": ("last", "best", 0.0),
    "stacking first, then the default, one_se": ("first", "one_se", 0.0),
    "the default's one_se choice or stacking, best": ("pair", "best", 0.0),
    "stacking first if events per variable >= 10, one_se": ("first", "one_se", 10.0),
}
#: Part 5's candidates (fixed before any test score was seen): the prior at the default's scales
#: centred on the semi-supervised LDA blended with SML (replacing the diagonal discriminant), on
#: the LDA alone, on the LDA and the diagonal discriminant blended with SML; the calibrated LDA
#: rule; and the first and the rule in logit space (`Config(space="logit")`).
LDA_SCALES = (0.1, 0.3, 1.0, 3.0)
LDA_POOL = {
    "prior(lda mix)": Candidate("two_stage", full_rank=True, aggregator="prior_lda", grid=(("agg_prior", LDA_SCALES),)),
    "prior(lda)": Candidate("two_stage", full_rank=True, aggregator="prior_lda",
                            grid=(("agg_prior_sml", (0.0,)), ("agg_prior", LDA_SCALES))),
    "prior(lda+diag mix)": Candidate("two_stage", full_rank=True, aggregator="prior_lda_diag",
                                     grid=(("agg_prior", LDA_SCALES),)),
    "lda rule": Candidate("two_stage", full_rank=True, aggregator="lda"),
    "prior(lda mix), logit": Candidate("two_stage", space="logit", full_rank=True, aggregator="prior_lda",
                                       grid=(("agg_prior", LDA_SCALES),)),
    "lda rule, logit": Candidate("two_stage", space="logit", full_rank=True, aggregator="lda"),
}
#: Part 5's EM candidates (added after the first six were measured, and fixed before their own
#: test scores were seen): the prior centred on the EM semi-supervised LDA blended with SML, and
#: the calibrated EM rule (experiments/semisupervised_lda.py, `em_direction`).
EM_POOL = {
    "prior(em mix)": Candidate("two_stage", full_rank=True, aggregator="prior_em", grid=(("agg_prior", LDA_SCALES),)),
    "em rule": Candidate("two_stage", full_rank=True, aggregator="em"),
}
#: Part 6: the precisions along the prior's direction, and the scales (the default's) at each.
ALONG_VALUES = (1e-4, 1e-3, 1e-2, 0.1, 1.0)
ALONG_SCALES = (0.1, 0.3, 1.0, 3.0)
_DEFAULT = ("prior(mix)", [1, 2, 3, 4])  # the default's options in POOL (scales 0.1-3)
#: Part 7: the default's scales, and the predictors `_blend_cell` scores per cell, in its order.
BLEND_SCALES = ALONG_SCALES
BLEND_PREDICTORS = (*(f"scale {s:g}" for s in BLEND_SCALES), "stacking",
                    *(f"scale {s:g} + stacking" for s in BLEND_SCALES), "average of the scales",
                    "average of the scales and stacking")
_SCALES_7 = [f"scale {s:g}" for s in BLEND_SCALES]
_BLENDS_7 = [f"scale {s:g} + stacking" for s in BLEND_SCALES]
#: Part 7's emulated pipelines: name -> (predictors in the one-SE rule's order, and what is
#: returned for the chosen one: itself, or the predictor at the same place in the second list).
#: The first reproduces the default; the last three were added after the others were seen.
BLEND_SPECS = {
    "(7) default's options, one_se": (_SCALES_7, None),
    "(7) average of the default's options": (["average of the scales"], None),
    "(7) average of the default's options and stacking": (["average of the scales and stacking"], None),
    "(7) one_se choice, then 50/50 with stacking": (_SCALES_7, _BLENDS_7),
    "(7) average first, then the default's options, one_se": (["average of the scales", *_SCALES_7], None),
    "(7) the default's options, then stacking, one_se": ([*_SCALES_7, "stacking"], None),
    "(7) blends with stacking, one_se": (_BLENDS_7, None),
    "(7) scale 0.1, its blend, stacking, one_se": (["scale 0.1", "scale 0.1 + stacking", "stacking"], None),
    "(7) scale 0.1, every blend, stacking, one_se": (["scale 0.1", *_BLENDS_7, "stacking"], None),
    "(7) scale 0.1, average of all, stacking, one_se": (["scale 0.1", "average of the scales and stacking",
                                                         "stacking"], None),
}
#: Part 8's thresholds on `label_agreement`, and its pipelines: name -> (threshold or None for
#: the default, the predictors of `BLEND_PREDICTORS` in the one-SE order at or above it, rule).
AGREEMENT_THRESHOLDS = (0.3, 0.5, 0.7)
AGREEMENT_SPECS = {
    "(8) default's options, one_se": (None, _SCALES_7, "one_se"),
    **{name: spec for t in AGREEMENT_THRESHOLDS for name, spec in (
        (f"(8) agreement >= {t:g}: stacking first, then the options, one_se", (t, ["stacking", *_SCALES_7], "one_se")),
        (f"(8) agreement >= {t:g}: stacking", (t, ["stacking"], "best")),
        (f"(8) agreement >= {t:g}: the options and stacking, best", (t, [*_SCALES_7, "stacking"], "best")))},
}
#: Part 9: the default's scales, and its two pipelines: name -> w >= 0.
NONNEG_SCALES = BLEND_SCALES
NONNEG_SPECS = {"(9) the default's options, w free, one_se": False,
                "(9) the default's options, w >= 0, one_se": True}
_LDA_ALL = list(range(len(LDA_SCALES)))
#: Part 5's emulated pipelines (fixed before any test score was seen), as SPECS.
LDA_SPECS = {
    "(a) prior(lda mix) 0.1-3, one_se": ([("prior(lda mix)", _LDA_ALL)], "one_se"),
    "(a) prior(lda) 0.1-3, one_se": ([("prior(lda)", _LDA_ALL)], "one_se"),
    "(a) prior(lda+diag mix) 0.1-3, one_se": ([("prior(lda+diag mix)", _LDA_ALL)], "one_se"),
    "(a) prior(lda mix), agg_prior 0.3": ([("prior(lda mix)", [1])], "best"),
    "(b) lda rule alone": ([("lda rule", [0])], "best"),
    "(b) default + lda rule last, one_se": ([_DEFAULT, ("lda rule", [0])], "one_se"),
    "(b) lda rule first, then the default, one_se": ([("lda rule", [0]), _DEFAULT], "one_se"),
    "(c) prior(lda mix), logit 0.1-3, one_se": ([("prior(lda mix), logit", _LDA_ALL)], "one_se"),
    "(c) lda rule, logit alone": ([("lda rule, logit", [0])], "best"),
    "(c) default + lda rule, logit last, one_se": ([_DEFAULT, ("lda rule, logit", [0])], "one_se"),
    "(d) prior(em mix) 0.1-3, one_se": ([("prior(em mix)", _LDA_ALL)], "one_se"),
    "(d) em rule alone": ([("em rule", [0])], "best"),
    "(d) default + em rule last, one_se": ([_DEFAULT, ("em rule", [0])], "one_se"),
}
#: The rows of lda.md: the goal's baselines, the default, and part 5.
LDA_TABLE_ROWS = ("simple_average", "stacking", "caruana", "spectral_meta_learner", "default: prior(mix) 0.1-3, one_se",
                  *LDA_SPECS)
GOAL_BASELINES = ("simple_average", "stacking", "caruana", "spectral_meta_learner")
_run = jax.jit(auto.run_candidate, static_argnames=("config", "index"))


def diagnose(ens) -> dict:
    R = np.asarray(ens.problem.R)
    lab = np.asarray(ens.problem.labeled)
    y = ens.y_true
    test = np.asarray(ens.test)

    def auc(r, mask):
        return roc_auc_score(y[mask], r[mask]) if np.ptp(r[mask]) > 0 else 0.5

    a_lab = np.array([auc(r, lab) for r in R])
    a_test = np.array([auc(r, test) for r in R])
    rho = spearmanr(a_lab, a_test).statistic if np.ptp(a_lab) > 0 and np.ptp(a_test) > 0 else np.nan
    return {"rank_corr": float(rho), "test_auc_spread": float(a_test.max() - np.median(a_test)),
            "n_labeled": int(lab.sum()), "n_pos_labeled": int(y[lab].sum())}


def _each_cell(names, fractions, splits, out_path: Path, record, first: int = 0) -> list[dict]:
    """`record(ens, split)` -> dict for every (data set, fraction, split) cell of the panel,
    splits first .. first + splits - 1, appended to `out_path` as it goes; cells already there
    are kept and not refitted. Returns the records of the cells asked for (others in the file
    are kept there, not returned)."""
    records = []
    if out_path.exists():
        records = [json.loads(line) for line in out_path.read_text().splitlines()]
    done = {(r["dataset"], r["labeled_fraction"], r["split"]) for r in records}
    pairs, _ = benchmark.panel_pairs(names, fractions, first + splits)
    with open(out_path, "a") as fh:
        previous = None
        for name, fraction in pairs:
            if name != previous:  # as benchmark.run_panel: each data set's programs, then freed
                jax.clear_caches()
                previous = name
            for split in range(first, first + splits):
                if (name, fraction, split) in done:
                    continue
                ens = benchmark.load_ensemble(name, split, labeled_fraction=fraction)
                rec = {"dataset": name, "labeled_fraction": fraction, "split": split, **record(ens, split)}
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                records.append(rec)
                print(f"{out_path.stem}: {name} @ {fraction:g} split {split}", flush=True)
    wanted = {(name, fraction, split) for name, fraction in pairs for split in range(first, first + splits)}
    return [r for r in records if (r["dataset"], r["labeled_fraction"], r["split"]) in wanted]


def collect(names, fractions, splits, out_path: Path, pool: bool = True) -> list[dict]:
    """Parts 1 and 2's records: per cell, the diagnosis, the baselines' test PR-AUC and, with
    `pool`, every POOL candidate's fold scores and test PR-AUC per grid point."""

    def record(ens, split):
        rec = {"diagnosis": diagnose(ens), "baselines": _baseline_scores(ens, baselines.BASELINES)}
        rec["pool"] = _pool_records(ens, split, POOL if pool else {})
        return rec

    return _each_cell(names, fractions, splits, out_path, record)


def _pool_records(ens, split: int, pool: dict) -> dict:
    """Each candidate of `pool` run by `auto.run_candidate` (key: the split): its fold scores
    (J, P) and the test PR-AUC of its fit on all labels at each of its P grid points."""
    hp = cfjax.solvers.get("auto").hparams()
    out = {}
    for pname, cand in pool.items():
        config = validation.resolve_config(
            cfjax.Config(aggregator=cand.aggregator or "weighted", options=(("candidates", (cand,)),)), ens.problem)
        run = jax.block_until_ready(_run(jax.random.key(split), ens.problem, hp, config, 0))
        cfg = auto.candidate_config(cand, config, *ens.problem.R.shape)
        out[pname] = {"scores": np.asarray(run.scores).tolist(),
                      "test": _test_scores(ens, run.full.params, cfg, len(cand.points()))}
    return out


def collect_lda(names, fractions, splits, out_path: Path, pool: dict | None = None) -> list[dict]:
    """Part 5's records: per cell, every candidate of `pool` (LDA_POOL)'s fold scores and test
    PR-AUC per grid point (the same keys, hence the same folds, as part 2)."""
    pool = LDA_POOL if pool is None else pool
    return _each_cell(names, fractions, splits, out_path, lambda ens, split: {"pool": _pool_records(ens, split, pool)})


def _merge_pools(*record_lists: list[dict]) -> list[dict]:
    """One record per cell with the pools of every list merged (cells missing from any list dropped)."""
    def cell(r):
        return r["dataset"], r["labeled_fraction"], r["split"]

    by_cell = [{cell(r): r for r in records} for records in record_lists]
    common = set.intersection(*(set(b) for b in by_cell))
    return [{**by_cell[0][c], "pool": {k: v for b in by_cell for k, v in b[c]["pool"].items()}}
            for c in by_cell[0] if c in common]


def _baseline_scores(ens, names) -> dict[str, float]:
    """Test PR-AUC of each baseline of `baselines.BASELINES` named in `names`."""
    return {b: benchmark.score_test_columns(ens.y_true, baselines.BASELINES[b](ens.problem), ens.test)["pr_auc"]
            for b in names}


def _test_scores(ens, params, config, count: int) -> list[float]:
    """Test PR-AUC of each of `count` fits stacked on the leading axis of `params`."""
    return [benchmark.score_test_columns(ens.y_true, predict.proba(jax.tree.map(lambda x, k=k: x[k], params),
                                                                   config, ens.problem), ens.test)["pr_auc"]
            for k in range(count)]


def laplace_log_evidence(F, y, weights, precision, w, b, bias_precision: float = 1e-8) -> jax.Array:
    r"""Laplace approximation of log p(y | F, Lambda) for L2-prior logistic regression at its MAP.

    The model of `cfjax.logistic.fit_logistic_prior`: likelihood prod_i sigma(+-s_i)^{weights_i}
    with s = w^T f_i + b, prior N(0, Lambda^{-1}) on w and N(0, 1/bias_precision) on b. With
    E(theta) the negative log joint (the fit's objective) and H its Hessian at the MAP theta*,

        log Z ~= -E(theta*) + 1/2 log det(Lambda_full) - 1/2 log det(H),

    (the (2 pi)^{p/2} factors cancel). Exact for a Gaussian likelihood; a test checks it against
    quadrature. `w, b` must be the MAP (the fit's output).
    """
    p = F.shape[0]
    s = w @ F + b
    ce = -jax.nn.log_sigmoid(jnp.where(y > 0.5, s, -s))
    prior = jnp.zeros((p + 1, p + 1), F.dtype).at[:p, :p].set(precision).at[p, p].set(bias_precision)
    theta = jnp.concatenate([w, b[None]])
    energy = jnp.sum(weights * ce) + 0.5 * theta @ prior @ theta
    prob = jax.nn.sigmoid(s)
    Fa = jnp.concatenate([F, jnp.ones((1, F.shape[1]), F.dtype)], axis=0)
    H = (Fa * (weights * prob * (1.0 - prob))[None, :]) @ Fa.T + prior
    return -energy + 0.5 * jnp.linalg.slogdet(prior)[1] - 0.5 * jnp.linalg.slogdet(H)[1]


def _prior_evidence(params, problem, scale) -> jax.Array:
    """The Laplace log evidence of a prior-aggregator fit: the model its exact fit maximises
    (every labeled column weighted 1, `aggregators.prior_precision`), at the fit's (w, b)."""
    theta = params.theta
    return laplace_log_evidence(params.X.T @ params.Y, problem.labels, problem.labeled.astype(problem.R.dtype),
                                aggregators.prior_precision(theta.center, scale), theta.w, theta.b)


@partial(jax.jit, static_argnames="config")
def _evidence_fits(key, problem, hparams, config):
    scales = jnp.asarray(EVIDENCE_SCALES, problem.R.dtype)

    def one(scale):
        fit = driver.fit_traced(key, problem, hparams._replace(agg_prior=scale), config)
        return fit.params, _prior_evidence(fit.params, problem, scale)

    return jax.vmap(one)(scales)


def collect_evidence(names, fractions, splits, out_path: Path) -> list[dict]:
    """Part 3's records: per cell, the default candidate's full fit at every EVIDENCE_SCALES point
    (the fit `auto.run_candidate` makes on all labels, same key), its log evidence and test PR-AUC."""
    hp = cfjax.solvers.get("auto").hparams()
    (default,) = auto.CANDIDATES

    def record(ens, split):
        config = validation.resolve_config(cfjax.Config(aggregator="prior"), ens.problem)
        cfg = auto.candidate_config(default, config, *ens.problem.R.shape)
        _, fit_key = jax.random.split(jax.random.key(split))  # as run_candidate's full fit
        params, evidence = _evidence_fits(fit_key, ens.problem, hp, cfg)
        return {"log_evidence": np.asarray(evidence).tolist(),
                "test": _test_scores(ens, params, cfg, len(EVIDENCE_SCALES))}

    return _each_cell(names, fractions, splits, out_path, record)


@jax.jit
def _stacking_fold_scores(key, problem):
    fold_key, _ = jax.random.split(key)  # as run_candidate
    held = auto.held_out_masks(fold_key, problem, cfjax.Config())

    def score(mask):
        proba = baselines.stacking(problem._replace(labeled=problem.labeled & ~mask))
        return metrics.average_precision(problem.labels, jnp.log(proba) - jnp.log1p(-proba), mask)

    return jax.vmap(score)(held)


def _prior_option_logits(problem, train, scales, alongs=None):
    """(V, n) logits of the default's candidate fitted on the `train` columns of R with its
    unobserved cells filled (what the full-rank reconstruction gives back to within 0.006), one
    row per scale (and precision along the direction; None: the library's)."""
    F = baselines._filled(problem)
    fixed = aggregators.Inputs(R_hat=F, X=None, Y=None, observed=problem.observed)
    weight_sml = cfjax.Hparams.create(dtype=F.dtype).agg_prior_sml  # the default's centre
    center = aggregators.prior_direction(fixed, problem.labels, train, weight_sml)

    def option(s, a):
        w, b = fit_logistic_prior(F, problem.labels, train.astype(F.dtype),
                                  aggregators.prior_precision(center, s, along=a))
        return w @ F + b

    scales = jnp.asarray(scales, F.dtype)
    if alongs is None:
        return jax.vmap(lambda s: option(s, None))(scales)
    return jax.vmap(option)(scales, jnp.asarray(alongs, F.dtype))


def _fold_scores_and_full(key, problem, predict):
    """`predict(train)` -> (V, n) scored on `run_candidate`'s held-out folds (same key): PR-AUC
    (V, J), and `predict` on every labeled column (V, n)."""
    fold_key, _ = jax.random.split(key)  # as run_candidate
    held = auto.held_out_masks(fold_key, problem, cfjax.Config())
    folds = jax.vmap(predict)(problem.labeled[None, :] & ~held)  # (J, V, n)
    scores = jax.vmap(lambda z, mask: jax.vmap(lambda zv: metrics.average_precision(problem.labels, zv, mask))(z))(
        folds, held)
    return scores.T, predict(problem.labeled)


@jax.jit
def _along_cell(key, problem, y_true, test):
    """Fold scores (V, J) and test PR-AUC (V,) of probabilities and of logits, and the largest
    |logit| (V,), for every (along, scale) of part 6 (along slowest), as `run_candidate` would
    fit the default's candidate on R with its unobserved cells filled."""
    grid = [(a, s) for a in ALONG_VALUES for s in ALONG_SCALES]
    scores, full = _fold_scores_and_full(
        key, problem, lambda train: _prior_option_logits(problem, train, [s for _, s in grid], [a for a, _ in grid]))
    y = y_true.astype(full.dtype)
    proba = jax.nn.sigmoid(full.astype(jnp.float32))
    return (scores, jax.vmap(lambda q: metrics.average_precision(y, q, test))(proba),
            jax.vmap(lambda z: metrics.average_precision(y, z, test))(full), jnp.max(jnp.abs(full), axis=1))


def collect_along(names, fractions, splits, out_path: Path) -> list[dict]:
    """Part 6's records: per cell, `_along_cell`'s fold scores, test PR-AUC (probabilities and
    logits) and largest |logit| for each (along, scale)."""

    def record(ens, split):
        scores, proba, logits, top = _along_cell(jax.random.key(split), ens.problem, jnp.asarray(ens.y_true),
                                                 jnp.asarray(ens.test))
        return {"scores": np.asarray(scores).tolist(), "test_proba": np.asarray(proba).tolist(),
                "test_logits": np.asarray(logits).tolist(), "max_logit": np.asarray(top).tolist()}

    return _each_cell(names, fractions, splits, out_path, record)


def emulate_along(rec: dict, along: float, field: str) -> float:
    """The `field` test PR-AUC of the one-SE choice among the default's scales at `along`."""
    start = ALONG_VALUES.index(along) * len(ALONG_SCALES)
    options = slice(start, start + len(ALONG_SCALES))
    chosen, _, _ = auto.choose(jnp.asarray(np.asarray(rec["scores"], float)[options]), "one_se", 1.0,
                               auto.DEFAULT_FOLDS)
    return rec[field][start + int(chosen)]


def blend_predictions(problem, train):
    """(V, n) float32 probabilities of every predictor of `BLEND_PREDICTORS` fitted on the
    `train` columns: the default's options as part 6 fits them (on the filled R, at the
    library's precision along the direction), stacking as `baselines.stacking`, and their blends
    and averages."""
    P = jax.nn.sigmoid(_prior_option_logits(problem, train, BLEND_SCALES).astype(jnp.float32))
    S = baselines.stacking(problem._replace(labeled=train)).astype(jnp.float32)[None]
    return jnp.concatenate([P, S, 0.5 * (P + S), P.mean(0, keepdims=True),
                            (P.sum(0, keepdims=True) + S) / (len(BLEND_SCALES) + 1)])


@jax.jit
def _blend_cell(key, problem, y_true, test):
    """Fold scores (V, J) and test PR-AUC (V,) of every predictor of `BLEND_PREDICTORS`
    (`blend_predictions`), on `run_candidate`'s folds, scored on the float32 probabilities as the
    library's are."""
    return _scored_cell(key, problem, y_true, test, blend_predictions)


def _scored_cell(key, problem, y_true, test, predict):
    """Fold scores (V, J) on `run_candidate`'s folds and test PR-AUC (V,) of the (V, n) float32
    probabilities `predict(problem, train)`."""
    scores, full = _fold_scores_and_full(key, problem, lambda train: predict(problem, train))
    y = y_true.astype(jnp.float32)
    return scores, jax.vmap(lambda q: metrics.average_precision(y, q, test))(full)


def collect_blend(names, fractions, splits, out_path: Path) -> list[dict]:
    """Part 7's records: per cell, `_blend_cell`'s fold scores and test PR-AUC."""

    def record(ens, split):
        scores, test = _blend_cell(jax.random.key(split), ens.problem, jnp.asarray(ens.y_true),
                                   jnp.asarray(ens.test))
        return {"scores": np.asarray(scores).tolist(), "test": np.asarray(test).tolist()}

    return _each_cell(names, fractions, splits, out_path, record)


def emulate_blend(rec: dict, chosen_from: list[str], returned: list[str] | None) -> float:
    """The test PR-AUC of a `BLEND_SPECS` pipeline on one cell of part 7."""
    index = [BLEND_PREDICTORS.index(p) for p in chosen_from]
    chosen, _, _ = auto.choose(jnp.asarray(np.asarray(rec["scores"], float)[index]), "one_se", 1.0,
                               auto.DEFAULT_FOLDS)
    name = (returned or chosen_from)[int(chosen)]
    return rec["test"][BLEND_PREDICTORS.index(name)]


def label_agreement(problem) -> float:
    """Spearman correlation between each classifier's ROC-AUC on the labeled columns (R with
    unobserved cells filled, as stacking reads it) and the spectral meta-learner's reliabilities,
    which read every column and no label: whether the few labels rank the classifiers as the
    unlabeled columns do. NaN when the labeled columns hold one class or a ranking is constant."""
    F = np.asarray(baselines._filled(problem))
    labeled, y = np.asarray(problem.labeled), np.asarray(problem.labels)[np.asarray(problem.labeled)]
    if len(set(y.tolist())) < 2:
        return float("nan")
    auc = [roc_auc_score(y, F[u, labeled]) for u in range(F.shape[0])]
    reliabilities, _ = baselines.sml_weights(problem)
    return float(spearmanr(auc, np.asarray(reliabilities)).correlation)


def collect_agreement(names, fractions, splits, out_path: Path, first: int = 0) -> list[dict]:
    """Part 8's records: per cell, part 7's fold scores and test PR-AUC (`_blend_cell`), the
    goal's baselines' test PR-AUC and `label_agreement`."""

    def record(ens, split):
        scores, test = _blend_cell(jax.random.key(split), ens.problem, jnp.asarray(ens.y_true),
                                   jnp.asarray(ens.test))
        return {"scores": np.asarray(scores).tolist(), "test": np.asarray(test).tolist(),
                "agreement": label_agreement(ens.problem),
                "baselines": _baseline_scores(ens, GOAL_BASELINES)}

    return _each_cell(names, fractions, splits, out_path, record, first)


def emulate_agreement(rec: dict, threshold: float | None, chosen_from: list[str], rule: str) -> float:
    """The test PR-AUC of an `AGREEMENT_SPECS` pipeline on one cell of part 8: the default's
    one-SE choice unless the cell's agreement is at least `threshold`."""
    if threshold is None or not rec["agreement"] >= threshold:  # NaN: the default
        chosen_from, rule = _SCALES_7, "one_se"
    index = [BLEND_PREDICTORS.index(p) for p in chosen_from]
    chosen, _, _ = auto.choose(jnp.asarray(np.asarray(rec["scores"], float)[index]), rule, 1.0, auto.DEFAULT_FOLDS)
    return rec["test"][index[int(chosen)]]


def _self_contained_tables(records: list[dict], pipelines: dict, note=None, **table) -> str:
    """Per fraction, the goal's baselines (stored in each record) and `pipelines` ({name:
    record -> test PR-AUC}) as `_fraction_table`s; `note(records of the fraction)` -> str, and
    `table`, its keyword arguments."""
    lines = []
    for fraction in sorted({r["labeled_fraction"] for r in records}):
        recs = [r for r in records if r["labeled_fraction"] == fraction]
        rows = {b: {(r["dataset"], r["split"]): r["baselines"][b] for r in recs} for b in GOAL_BASELINES}
        for name, emulated in pipelines.items():
            rows[name] = {(r["dataset"], r["split"]): emulated(r) for r in recs}
        lines += _fraction_table(rows, recs, fraction, note=note(recs) if note else "", **table)
    return "\n".join(lines)


def agreement_table(records: list[dict]) -> str:
    """Per fraction, part 8's pipelines against the goal's baselines (`_fraction_table`)."""
    top = max(AGREEMENT_THRESHOLDS)
    return _self_contained_tables(
        records, {name: partial(emulate_agreement, threshold=spec[0], chosen_from=spec[1], rule=spec[2])
                  for name, spec in AGREEMENT_SPECS.items()},
        note=lambda recs: f"; agreement >= {top:g} in {100 * np.mean([r['agreement'] >= top for r in recs]):.0f} % of cells")


def nonnegative_predictions(problem, train):
    """(2 V, n) float32 probabilities of the default's options fitted on the `train` columns of
    the filled R: with w free (`_prior_option_logits`), then as the library's prior aggregator
    fits them (w >= 0), V = the default's scales."""
    F = baselines._filled(problem)
    fixed = aggregators.Inputs(R_hat=F, X=None, Y=None, observed=problem.observed)
    hp = cfjax.Hparams.create(dtype=F.dtype)
    theta0 = aggregators.prior.init(jax.random.key(0), F.shape[0], hp, F.dtype)

    def constrained(scale):
        theta = aggregators.prior.exact_fit(theta0, fixed, problem.labels, train.astype(F.dtype),
                                            hp._replace(agg_prior=scale))
        return theta.w @ F + theta.b

    free = _prior_option_logits(problem, train, NONNEG_SCALES)
    held = jax.vmap(constrained)(jnp.asarray(NONNEG_SCALES, F.dtype))
    return jax.nn.sigmoid(jnp.concatenate([free, held]).astype(jnp.float32))


@jax.jit
def _nonnegative_cell(key, problem, y_true, test):
    """Fold scores (2 V, J) and test PR-AUC (2 V,) of `nonnegative_predictions`."""
    return _scored_cell(key, problem, y_true, test, nonnegative_predictions)


def collect_nonnegative(names, fractions, splits, out_path: Path, first: int = 0) -> list[dict]:
    """Part 9's records: per cell, `_nonnegative_cell`'s fold scores and test PR-AUC and the
    goal's baselines' test PR-AUC."""

    def record(ens, split):
        scores, test = _nonnegative_cell(jax.random.key(split), ens.problem, jnp.asarray(ens.y_true),
                                         jnp.asarray(ens.test))
        return {"scores": np.asarray(scores).tolist(), "test": np.asarray(test).tolist(),
                "baselines": _baseline_scores(ens, GOAL_BASELINES)}

    return _each_cell(names, fractions, splits, out_path, record, first)


def emulate_nonnegative(rec: dict, constrained: bool) -> float:
    """The test PR-AUC of the one-SE choice among the default's scales, w free or w >= 0."""
    V = len(NONNEG_SCALES)
    options = slice(V, 2 * V) if constrained else slice(0, V)
    chosen, _, _ = auto.choose(jnp.asarray(np.asarray(rec["scores"], float)[options]), "one_se", 1.0,
                               auto.DEFAULT_FOLDS)
    return rec["test"][options][int(chosen)]


def nonnegative_table(records: list[dict]) -> str:
    """Per fraction, part 9's two pipelines against the goal's baselines (`_fraction_table`)."""
    return _self_contained_tables(
        records, {name: partial(emulate_nonnegative, constrained=c) for name, c in NONNEG_SPECS.items()},
        below=0.01, against="(9) the default's options, w free, one_se")


def collect_stacking(names, fractions, splits, out_path: Path) -> list[dict]:
    """Part 4's records: per cell, stacking's PR-AUC on each of the candidates' held-out folds,
    and the events per variable (labeled columns of the smaller class / m)."""

    def record(ens, split):
        labels, labeled = np.asarray(ens.problem.labels), np.asarray(ens.problem.labeled)
        minority = min(int(np.sum(labeled & (labels > 0.5))), int(np.sum(labeled & (labels <= 0.5))))
        return {"scores": np.asarray(_stacking_fold_scores(jax.random.key(split), ens.problem)).tolist(),
                "events_per_variable": minority / ens.problem.R.shape[0]}

    return _each_cell(names, fractions, splits, out_path, record)


def diagnose_lda(ens) -> dict:
    """Part 5's diagnosis of one cell (module docstring): cosines of the labeled directions with
    their all-labels oracles, the shrinkage intensity, and test PR-AUC of the rules on R."""
    from sklearn.metrics import average_precision_score

    p = ens.problem
    y, test = ens.y_true.astype(float), np.asarray(ens.test)
    every = jnp.ones_like(p.labeled)
    dirs = {"lda": semisupervised_lda.lda_direction(p.R, p.labels, p.labeled),
            "lda_oracle": semisupervised_lda.lda_direction(p.R, jnp.asarray(y, p.R.dtype), every),
            "em": semisupervised_lda.em_direction(p.R, p.labels, p.labeled),
            "diag": aggregators.discriminant_direction(p.R, p.labels, p.labeled),
            "diag_oracle": aggregators.discriminant_direction(p.R, jnp.asarray(y, p.R.dtype), every)}
    dirs = {k: np.asarray(v, float) / np.linalg.norm(np.asarray(v, float)) for k, v in dirs.items()}
    R = np.asarray(p.R, float)
    pr = {k: float(average_precision_score(y[test], (v @ R)[test])) for k, v in dirs.items()}
    pr["average"] = float(average_precision_score(y[test], R.mean(axis=0)[test]))
    return {"cos_lda_oracle": float(dirs["lda"] @ dirs["lda_oracle"]),
            "cos_diag_oracle": float(dirs["diag"] @ dirs["diag_oracle"]),
            "cos_lda_diag": float(dirs["lda"] @ dirs["diag"]),
            "cos_em_oracle": float(dirs["em"] @ dirs["lda_oracle"]),
            "intensity": float(semisupervised_lda.diagonal_shrinkage_intensity(p.R)), "pr_auc": pr}


def collect_lda_diagnosis(names, fractions, splits, out_path: Path) -> list[dict]:
    return _each_cell(names, fractions, splits, out_path, lambda ens, split: diagnose_lda(ens))


def lda_diagnosis_table(records: list[dict]) -> str:
    rules = ("average", "diag", "lda", "em", "lda_oracle")
    lines = [("| labeled | cells | Ledoit-Wolf intensity (median) | cos(LDA, its oracle) (median) | "
              "cos(EM, LDA's oracle) (median) | cos(diagonal, its oracle) (median) | cos(LDA, diagonal) (median) | "
              + " | ".join(f"PR-AUC: {r}" for r in rules) + " |"), "|---" * (7 + len(rules)) + "|"]
    for fraction in sorted({r["labeled_fraction"] for r in records}):
        recs = [r for r in records if r["labeled_fraction"] == fraction]
        sets = sorted({r["dataset"] for r in recs})

        def panel(rule, recs=recs, sets=sets):
            return np.mean([np.mean([r["pr_auc"][rule] for r in recs if r["dataset"] == s]) for s in sets])

        med = {k: np.median([r[k] for r in recs]) for k in ("intensity", "cos_lda_oracle", "cos_em_oracle",
                                                             "cos_diag_oracle", "cos_lda_diag")}
        lines.append(f"| {100 * fraction:g} % | {len(recs)} | {med['intensity']:.4f} | {med['cos_lda_oracle']:.2f} | "
                     f"{med['cos_em_oracle']:.2f} | "
                     f"{med['cos_diag_oracle']:.2f} | {med['cos_lda_diag']:.2f} | "
                     + " | ".join(f"{panel(r):.4f}" for r in rules) + " |")
    return "\n".join(lines)


def emulate(rec: dict, spec: list, rule: str, z: float = 1.0) -> float:
    scores, tests = [], []
    for pname, points in spec:
        S = np.asarray(rec["pool"][pname]["scores"], float)
        for p in points:
            scores.append(S[:, p])
            tests.append(rec["pool"][pname]["test"][p])
    chosen, _, _ = auto.choose(jnp.asarray(np.stack(scores)), rule, z, auto.DEFAULT_FOLDS)
    return tests[int(chosen)]


def emulate_stacking(rec: dict, stack: dict, where: str, rule: str, min_events: float) -> float:
    """The test PR-AUC of the default's options with stacking added `where` ("first", "last",
    or "pair": the default's own one-SE choice against stacking alone), chosen by `rule`; the
    default alone below `min_events` events per variable."""
    (default,) = [spec for name, (spec, *_) in SPECS.items() if name.startswith("default")]
    if stack["events_per_variable"] < min_events:
        return emulate(rec, default, "one_se")
    ((pname, points),) = default
    S = np.asarray(rec["pool"][pname]["scores"], float)
    scores, tests = [S[:, p] for p in points], [rec["pool"][pname]["test"][p] for p in points]
    if where == "pair":
        chosen, _, _ = auto.choose(jnp.asarray(np.stack(scores)), "one_se", 1.0, auto.DEFAULT_FOLDS)
        scores, tests = [scores[int(chosen)]], [tests[int(chosen)]]
    position = 0 if where == "first" else len(scores)
    scores.insert(position, np.asarray(stack["scores"], float))
    tests.insert(position, rec["baselines"]["stacking"])
    chosen, _, _ = auto.choose(jnp.asarray(np.stack(scores)), rule, 1.0, auto.DEFAULT_FOLDS)
    return tests[int(chosen)]


def emulate_evidence(rec: dict, points: list[int]) -> float:
    """The test PR-AUC of the scale with the highest log evidence among `points`."""
    evidence = np.asarray(rec["log_evidence"])[points]
    return rec["test"][points[int(np.argmax(evidence))]]


def _paired(rows: dict, a: str, b: str, cells: list) -> tuple[float, float, float]:
    """Mean over data sets per split of a - b, then the t interval over splits."""
    by_split: dict[int, list[float]] = {}
    for (name, _, split) in cells:
        by_split.setdefault(split, []).append(rows[a][(name, split)] - rows[b][(name, split)])
    full = max(len(v) for v in by_split.values())
    return t_interval([np.mean(v) for v in by_split.values() if len(v) == full])


def ablation_tables(records: list[dict], evidence: list[dict] = (), stacking: list[dict] = (),
                    lda: list[dict] = (), only: tuple[str, ...] | None = None, along: list[dict] = (),
                    blend: list[dict] = ()) -> str:
    """Per fraction, a table of every pipeline (baselines, SPECS, and the specs of parts 3-7
    whose records cover every cell); `only`: the rows to print (all by default)."""
    def cell(r):
        return r["dataset"], r["labeled_fraction"], r["split"]

    by_cell = {cell(r): r for r in evidence}
    stack_by_cell = {cell(r): r for r in stacking}
    lda_by_cell = {cell(r): r for r in lda}
    along_by_cell = {cell(r): r for r in along}
    blend_by_cell = {cell(r): r for r in blend}
    lines = []
    for fraction in sorted({r["labeled_fraction"] for r in records}):
        recs = [r for r in records if r["labeled_fraction"] == fraction]
        rows = {b: {(r["dataset"], r["split"]): r["baselines"][b] for r in recs} for b in baselines.BASELINES}
        for name, (spec, rule, *z) in SPECS.items():
            rows[name] = {(r["dataset"], r["split"]): emulate(r, spec, rule, *z) for r in recs}
        if all(cell(r) in by_cell for r in recs) and by_cell:
            for name, points in EVIDENCE_SPECS.items():
                rows[name] = {(r["dataset"], r["split"]): emulate_evidence(by_cell[cell(r)], points) for r in recs}
        if all(cell(r) in stack_by_cell for r in recs) and stack_by_cell:
            for name, args in STACKING_SPECS.items():
                rows[name] = {(r["dataset"], r["split"]): emulate_stacking(r, stack_by_cell[cell(r)], *args)
                              for r in recs}
        if all(cell(r) in lda_by_cell for r in recs) and lda_by_cell:
            merged = [{**r, "pool": {**r["pool"], **lda_by_cell[cell(r)]["pool"]}} for r in recs]
            for name, (spec, rule, *z) in LDA_SPECS.items():
                rows[name] = {(r["dataset"], r["split"]): emulate(r, spec, rule, *z) for r in merged}
        if all(cell(r) in along_by_cell for r in recs) and along_by_cell:
            for value in ALONG_VALUES:
                for field, scored in (("test_proba", "probabilities"), ("test_logits", "logits")):
                    rows[f"default's options, precision {value:g} along, {scored}"] = {
                        (r["dataset"], r["split"]): emulate_along(along_by_cell[cell(r)], value, field) for r in recs}
        if all(cell(r) in blend_by_cell for r in recs) and blend_by_cell:
            for name, spec in BLEND_SPECS.items():
                rows[name] = {(r["dataset"], r["split"]): emulate_blend(blend_by_cell[cell(r)], *spec) for r in recs}
        lines += _fraction_table(rows, recs, fraction, only)
    return "\n".join(lines)


def _fraction_table(rows: dict, recs: list[dict], fraction: float, only: tuple[str, ...] | None = None,
                    note: str = "", below: float | None = None, against: str | None = None) -> list[str]:
    """One fraction's table: each pipeline of `rows` ({name: {(data set, split): test PR-AUC}})
    against averaging and the best of `GOAL_BASELINES`, paired over splits; `only`: the rows.
    `below`: a column counting the data sets more than this below averaging (the goal's 0.01);
    `against`: a column of each pipeline's paired difference from that row."""
    cells = [(r["dataset"], fraction, r["split"]) for r in recs]
    sets = sorted({c[0] for c in cells})

    def panel(m):
        return np.mean([np.mean([v for (d, _), v in rows[m].items() if d == s]) for s in sets])

    best = max(GOAL_BASELINES, key=panel)
    extra = ([f"data sets > {below:g} below averaging"] if below is not None else []) + (
        [f"− {against} [95 % CI]"] if against is not None else [])
    lines = [(f"\n**{100 * fraction:g} % labeled** ({len(sets)} data sets x {len(recs) // len(sets)} splits; "
              f"best baseline {best}{note})\n"),
             "| pipeline | panel mean | − averaging [95 % CI] | − best baseline [95 % CI] | worst data set − averaging |"
             + "".join(f" {e} |" for e in extra),
             "|---|---|---|---|---|" + "---|" * len(extra)]
    for m, scores in rows.items():
        if only is not None and m not in only:
            continue
        d1 = _paired(rows, m, "simple_average", cells)
        d2 = _paired(rows, m, best, cells)
        per_set = [(np.mean([scores[(s, k)] - rows["simple_average"][(s, k)] for (d, k) in scores if d == s]), s)
                   for s in sets]
        worst = min(per_set)
        line = (f"| {m} | {panel(m):.4f} | {d1[0]:+.4f} [{d1[1]:+.4f}, {d1[2]:+.4f}] | "
                f"{d2[0]:+.4f} [{d2[1]:+.4f}, {d2[2]:+.4f}] | {worst[0]:+.4f} ({worst[1]}) |")
        if below is not None:
            bad = [s for v, s in per_set if v < -below]
            line += f" {len(bad)}{' (' + ', '.join(bad) + ')' if bad else ''} |"
        if against is not None:
            d3 = _paired(rows, m, against, cells) if m != against else (0.0, 0.0, 0.0)
            line += f" {d3[0]:+.4f} [{d3[1]:+.4f}, {d3[2]:+.4f}] |"
        lines.append(line)
    return lines


def diagnosis_table(records: list[dict]) -> str:
    lines = [("| labeled | labeled columns (median) | positives labeled (median) | rank correlation of "
             "classifier AUCs, labeled vs test (median) | best minus median classifier test AUC (median) |"),
             "|---|---|---|---|---|"]
    for fraction in sorted({r["labeled_fraction"] for r in records}):
        d = [r["diagnosis"] for r in records if r["labeled_fraction"] == fraction]
        lines.append(f"| {100 * fraction:g} % | {np.median([x['n_labeled'] for x in d]):.0f} | "
                     f"{np.median([x['n_pos_labeled'] for x in d]):.0f} | "
                     f"{np.nanmedian([x['rank_corr'] for x in d]):.2f} | "
                     f"{np.median([x['test_auc_spread'] for x in d]):.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--labeled", nargs="+", type=float, default=list(FEW_LABEL_FRACTIONS))
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--diagnosis-only", action="store_true",
                        help="part 1 only (no fits; a minute): writes diagnosis.md")
    parser.add_argument("--evidence", action="store_true",
                        help="part 3 as well: the prior scale by Laplace evidence (minutes)")
    parser.add_argument("--stacking", action="store_true",
                        help="part 4 as well: stacking as a candidate (minutes)")
    parser.add_argument("--lda", action="store_true",
                        help="part 5 as well: the semi-supervised LDA candidates (minutes)")
    parser.add_argument("--lda-diagnosis", action="store_true",
                        help="part 5's diagnosis only (no fits; minutes): writes lda_diagnosis.md")
    parser.add_argument("--along", action="store_true",
                        help="part 6 as well: the prior's precision along its direction (minutes); writes along.md")
    parser.add_argument("--blend", action="store_true",
                        help="part 7 as well: averaging the options, blending with stacking (minutes); writes blend.md")
    parser.add_argument("--agreement", action="store_true",
                        help="part 8 only (minutes; no part-2 records needed): writes agreement_<first split>.md")
    parser.add_argument("--nonnegative", action="store_true",
                        help="part 9: the default's options with w >= 0 against w free (self-contained)")
    parser.add_argument("--holdout", action="store_true",
                        help="the held-out data sets (panel.FEW_LABEL_HOLDOUT) instead of the few-label panel")
    parser.add_argument("--first-split", type=int, default=0, help="parts 8 and 9: the first split (splits from here)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    panel = FEW_LABEL_HOLDOUT if args.holdout else FEW_LABEL_PANEL
    names = args.datasets or [n for n in panel if n.startswith("synthetic-") or n in datasets.available()]
    if args.smoke:
        names, args.splits, args.labeled = ["synthetic-seed", "synthetic-imbalanced_10"], 2, [0.1]
    out = results_dir("scarce_design", args.out)
    start = time.perf_counter()
    if args.nonnegative:
        tag = f"{'holdout' if args.holdout else 'panel'}_{args.first_split}"
        table = nonnegative_table(collect_nonnegative(names, args.labeled, args.splits,
                                                      out / f"records_nonneg_{'holdout' if args.holdout else 'panel'}.jsonl",
                                                      args.first_split))
        print(f"Part 9, {tag}\n" + table)
        (out / f"nonneg_{tag}.md").write_text(table + "\n")
        write_json(out / f"config_nonneg_{tag}.json",
                   provenance(datasets=names, labeled_fractions=args.labeled, splits=args.splits,
                              first_split=args.first_split, seconds=time.perf_counter() - start,
                              nonneg_scales=NONNEG_SCALES, nonneg_specs=NONNEG_SPECS))
        return
    if args.agreement:
        table = agreement_table(collect_agreement(names, args.labeled, args.splits, out / "records_agreement.jsonl",
                                                  args.first_split))
        last = args.first_split + args.splits - 1
        print(f"Part 8, splits {args.first_split}-{last}\n" + table)
        (out / f"agreement_{args.first_split}.md").write_text(table + "\n")
        write_json(out / f"config_agreement_{args.first_split}.json",
                   provenance(datasets=names, labeled_fractions=args.labeled, splits=args.splits,
                              first_split=args.first_split, seconds=time.perf_counter() - start,
                              agreement_specs={k: [v[0], list(v[1]), v[2]] for k, v in AGREEMENT_SPECS.items()}))
        return
    if args.lda_diagnosis:
        table = lda_diagnosis_table(collect_lda_diagnosis(names, args.labeled, args.splits,
                                                          out / "records_lda_diagnosis.jsonl"))
        print("Part 5's diagnosis\n\n" + table)
        (out / "lda_diagnosis.md").write_text(table + "\n")
        return
    if args.diagnosis_only:
        records = collect(names, args.labeled, args.splits, out / "records_diagnosis.jsonl", pool=False)
        diag = diagnosis_table(records)
        print("Diagnosis\n\n" + diag)
        (out / "diagnosis.md").write_text(diag + "\n")
        return
    records = collect(names, args.labeled, args.splits, out / "records.jsonl")
    evidence = (collect_evidence(names, args.labeled, args.splits, out / "records_evidence.jsonl")
                if args.evidence else [])
    stacking = (collect_stacking(names, args.labeled, args.splits, out / "records_stacking.jsonl")
                if args.stacking else [])
    lda = (_merge_pools(collect_lda(names, args.labeled, args.splits, out / "records_lda.jsonl"),
                        collect_lda(names, args.labeled, args.splits, out / "records_lda_em.jsonl", EM_POOL))
           if args.lda else [])
    along = collect_along(names, args.labeled, args.splits, out / "records_along.jsonl") if args.along else []
    blend = collect_blend(names, args.labeled, args.splits, out / "records_blend.jsonl") if args.blend else []
    elapsed = time.perf_counter() - start
    diag, abl = diagnosis_table(records), ablation_tables(records, evidence, stacking, lda, along=along, blend=blend)
    print("Diagnosis\n\n" + diag + "\n\nAblations (test PR-AUC on the unlabeled columns)\n" + abl)
    (out / "diagnosis.md").write_text(diag + "\n")
    (out / "ablations.md").write_text(abl + "\n")
    if args.along:
        table = ablation_tables(records, along=along,
                                only=(*GOAL_BASELINES, "default: prior(mix) 0.1-3, one_se",
                                      *(f"default's options, precision {v:g} along, {s}" for v in ALONG_VALUES
                                        for s in ("probabilities", "logits"))))
        print("\nPart 6, the prior's precision along its direction\n" + table)
        (out / "along.md").write_text(table + "\n")
    if args.blend:
        table = ablation_tables(records, blend=blend, only=(*GOAL_BASELINES, *BLEND_SPECS))
        print("\nPart 7, averaging instead of choosing\n" + table)
        (out / "blend.md").write_text(table + "\n")
    if args.lda:
        table = ablation_tables(records, lda=lda, only=LDA_TABLE_ROWS)
        print("\nPart 5, the semi-supervised LDA (the goal's rows)\n" + table)
        (out / "lda.md").write_text(table + "\n")
    write_json(out / "config.json", provenance(datasets=names, labeled_fractions=args.labeled, splits=args.splits,
                                               seconds=elapsed, pool={k: c._asdict() for k, c in POOL.items()},
                                               specs={k: list(v) for k, v in SPECS.items()},
                                               evidence_scales=EVIDENCE_SCALES if args.evidence else None,
                                               stacking_specs=STACKING_SPECS if args.stacking else None,
                                               lda_pool=({k: c._asdict() for k, c in {**LDA_POOL, **EM_POOL}.items()}
                                                         if args.lda else None),
                                               lda_specs={k: list(v) for k, v in LDA_SPECS.items()} if args.lda else None,
                                               along_values=ALONG_VALUES if args.along else None,
                                               along_scales=ALONG_SCALES if args.along else None,
                                               blend_predictors=BLEND_PREDICTORS if args.blend else None,
                                               blend_specs=({k: [list(v[0]), v[1] and list(v[1])]
                                                             for k, v in BLEND_SPECS.items()} if args.blend else None)))


if __name__ == "__main__":
    main()
