"""Which candidates should `auto` choose from? Every candidate once, then any subset emulated.

For each (data set, split) of the panel, every candidate of `POOL` is cross-validated on folds
of the labeled columns and refit on all labels (`auto` with that single candidate, one key per
split, so every candidate sees the same folds), and its refit is scored on the unlabeled
columns. A pipeline "auto over subset S" picks the candidate of S with the best cross-validated
score (ties: the earlier), exactly as `auto` does, so its test score can be read off these records
for any S without refitting: selection uses only the cross-validated scores, never the test
labels. Baselines (simple average, stacking on R, and stacking on logit(R) as an extra
reference) are scored on the same splits.

Writes results/auto_candidates/ (records.csv, table.md, config.json).

    python experiments/auto_candidates.py [--splits 5] [--first-split 0] [--datasets ...] [--candidates ...]
    python experiments/auto_candidates.py --records results/auto_candidates/records.csv   # re-tabulate
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import provenance, results_dir, write_json, write_records
from panel import PANEL

import cfjax
from cfjax import baselines, benchmark, data, datasets, predict
from cfjax.logistic import fit_logistic
from cfjax.solvers.auto import Candidate

RHOS = (0.1, 0.5, 0.9)
#: (latent_dim given to auto, candidate). Keys are short names used by SUBSETS.
POOL: dict[str, tuple[int, Candidate]] = {
    "R_als4": (4, Candidate("als", "probability", "free")),
    "R_two4": (4, Candidate("two_stage", "probability", "free")),
    "R_fi4": (4, Candidate("joint", "probability", "fold_in", RHOS)),
    "R_twoM": (4, Candidate("two_stage", "probability", "free", full_rank=True)),
    "L_als4": (4, Candidate("als", "logit", "free")),
    "L_two4": (4, Candidate("two_stage", "logit", "free")),
    "L_twoM": (4, Candidate("two_stage", "logit", "free", full_rank=True)),
    "L_fi4": (4, Candidate("joint", "logit", "fold_in", RHOS)),
    "L_two2": (2, Candidate("two_stage", "logit", "free")),
    "L_two8": (8, Candidate("two_stage", "logit", "free")),
    "R_two8": (8, Candidate("two_stage", "probability", "free")),
}

#: Pipelines emulated from the records: name -> candidates, in tie-breaking order.
SUBSETS: dict[str, tuple[str, ...]] = {
    "auto_before": ("R_als4", "R_two4", "R_fi4"),
    "auto_new": ("R_als4", "R_two4", "R_fi4", "L_twoM"),  # = auto's candidates after issue 10
    "+L_two4,L_twoM,L_fi4": ("R_als4", "R_two4", "R_fi4", "L_two4", "L_twoM", "L_fi4"),
    "+R_twoM": ("R_als4", "R_two4", "R_fi4", "R_twoM"),
    "+L_fi4": ("R_als4", "R_two4", "R_fi4", "L_fi4"),
    "+L_two4,L_fi4": ("R_als4", "R_two4", "R_fi4", "L_two4", "L_fi4"),
    "+R_twoM,L_twoM": ("R_als4", "R_two4", "R_fi4", "R_twoM", "L_twoM"),
    "+R_twoM,L_twoM,L_fi4": ("R_als4", "R_two4", "R_fi4", "R_twoM", "L_twoM", "L_fi4"),
    "+L_twoM,L_two8": ("R_als4", "R_two4", "R_fi4", "L_two8", "L_twoM"),
    "+L_all_d": ("R_als4", "R_two4", "R_fi4", "L_two2", "L_two4", "L_two8", "L_twoM", "L_fi4"),
    "+R_d8,L_d8": ("R_als4", "R_two4", "R_fi4", "R_two8", "L_two4", "L_two8", "L_twoM", "L_fi4"),
    "logit_only": ("L_als4", "L_two4", "L_twoM", "L_fi4"),
    "all": tuple(POOL),
}

REFERENCES = ("simple_average", "stacking", "stacking_logit")


def stacking_logit(problem, eps: float = data.LOGIT_EPS) -> jax.Array:
    """Stacking (scikit-learn C = 1 equivalent) on logit(clip(R, eps)): an extra reference."""
    F = baselines._filled(problem)
    F = jnp.log(jnp.clip(F, eps, 1 - eps)) - jnp.log1p(-jnp.clip(F, eps, 1 - eps))
    omega = problem.labeled.astype(F.dtype)
    w, b = fit_logistic(F, problem.labels, omega, baselines.stacking_l2(jnp.sum(omega)))
    return jax.nn.sigmoid(w @ F + b)


def collect(names, splits, keys, progress=True, first_split=0) -> list[dict]:
    records = []
    for name in names:
        for split in range(first_split, first_split + splits):
            ens = benchmark.load_ensemble(name, split)

            def score(proba, ens=ens):
                return benchmark.score_test_columns(ens.y_true, proba, ens.test)["pr_auc"]

            for ref, fn in (("simple_average", baselines.simple_average), ("stacking", baselines.stacking),
                            ("stacking_logit", stacking_logit)):
                records.append({"dataset": name, "split": split, "candidate": ref, "cv": np.nan,
                                "pr_auc": score(fn(ens.problem)), "seconds": 0.0, "label": ref})
            for key in keys:
                d, cand = POOL[key]
                start = time.perf_counter()
                config = cfjax.Config(method="auto", latent_dim=min(d, *ens.problem.R.shape),
                                      options=(("candidates", (cand,)),))
                fit = cfjax.fit(jax.random.key(split), ens.problem, None, config)
                cv = float(fit.info["cv_mean"][0])
                label = cfjax.solvers.auto.describe(fit, config, ens.problem)[0]["candidate"]
                proba = jax.block_until_ready(predict.proba(fit.params, config))
                records.append({"dataset": name, "split": split, "candidate": key, "cv": cv, "pr_auc": score(proba),
                                "seconds": time.perf_counter() - start, "label": label})
            if progress:
                row = {r["candidate"]: round(r["pr_auc"], 4) for r in records[-(len(keys) + 3):]}
                print(name, split, row, flush=True)
    return records


def emulate(records: list[dict], subset: tuple[str, ...], name: str) -> list[dict]:
    """The records of 'auto over subset': per (data set, split), the test score of the
    candidate with the best cross-validated score (ties: earliest in `subset`)."""
    out = []
    groups: dict[tuple, dict[str, dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["split"]), {})[r["candidate"]] = r
    for (dataset, split), by in groups.items():
        if not all(k in by for k in subset):
            continue
        cvs = np.array([by[k]["cv"] for k in subset], float)
        best = subset[int(np.argmax(np.where(np.isnan(cvs), -np.inf, cvs)))]
        out.append({"dataset": dataset, "split": split, "method": name, "pr_auc": by[best]["pr_auc"],
                    "chosen": best, "seconds": sum(by[k]["seconds"] for k in subset)})
    return out


def summary(rows: list[dict], names: list[str], methods: list[str]) -> str:
    """One line per pipeline: panel mean, paired Δ vs stacking and vs averaging, worst data set."""
    header = ("| pipeline | panel mean | Δ vs stacking, panel [95% t] W/L | Δ vs averaging, panel [95% t] | "
              "worst data set vs averaging | s per split |")
    lines = [header, "|---|---|---|---|---|---|"]
    for m in methods:
        if m in ("simple_average", "stacking"):
            continue
        means = [np.mean([r["pr_auc"] for r in rows if r["dataset"] == n and r["method"] == m] or [np.nan])
                 for n in names]
        if np.isnan(means).any():
            continue
        ds = benchmark.paired([r for r in rows if r["method"] in (m, "stacking")], m, "stacking")["panel"]
        pa = benchmark.paired([r for r in rows if r["method"] in (m, "simple_average")], m, "simple_average")
        worst = min(names, key=lambda n: pa[n]["diff"])
        sec = np.mean([r["seconds"] for r in rows if r["method"] == m])
        lines.append(f"| {m} | {np.mean(means):.4f} | {ds['diff']:+.4f} [{ds['lo']:+.4f}, {ds['hi']:+.4f}] "
                     f"{ds['wins']}/{ds['losses']} | {pa['panel']['diff']:+.4f} [{pa['panel']['lo']:+.4f}, "
                     f"{pa['panel']['hi']:+.4f}] | {worst} {pa[worst]['diff']:+.4f} | {sec:.1f} |")
    return "\n".join(lines)


def tables(records: list[dict]) -> str:
    rows = [{"dataset": r["dataset"], "split": r["split"], "method": r["candidate"], "pr_auc": r["pr_auc"],
             "seconds": r["seconds"]} for r in records]
    for name, subset in SUBSETS.items():
        rows += emulate(records, subset, name)
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [summary(rows, names, methods), "",
             "| method | " + " | ".join(names) + " | panel | s/fit |", "|---" * (len(names) + 3) + "|"]
    for m in methods:
        vals = [np.mean([r["pr_auc"] for r in rows if r["dataset"] == n and r["method"] == m] or [np.nan])
                for n in names]
        sec = np.mean([r["seconds"] for r in rows if r["method"] == m])
        lines.append(f"| {m} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {np.mean(vals):.4f} | {sec:.1f} |")
    for ref in ("simple_average", "stacking", "stacking_logit"):
        lines += [f"\n**Δ pr_auc = method − {ref}** (mean [95% t], wins/losses)\n",
                  "| method | " + " | ".join(names) + " | panel |", "|---" * (len(names) + 2) + "|"]
        for m in methods:
            if m == ref:
                continue
            d = benchmark.paired([r for r in rows if r["method"] in (m, ref)], m, ref)
            cells = [f"{d[n]['diff']:+.4f} [{d[n]['lo']:+.4f}, {d[n]['hi']:+.4f}] {d[n]['wins']}/{d[n]['losses']}"
                     if n in d else "—" for n in names + ["panel"]]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    chosen = {}
    for name, subset in SUBSETS.items():
        for r in emulate(records, subset, name):
            chosen.setdefault(name, {}).setdefault(r["dataset"], []).append(r["chosen"])
    lines.append("\nChosen candidate per split:\n")
    for name, by in chosen.items():
        lines.append(f"- {name}: " + "; ".join(f"{n}: {', '.join(v)}" for n, v in by.items()))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--first-split", type=int, default=0,
                        help="splits first_split .. first_split + splits - 1 (5 for a held-out check)")
    parser.add_argument("--candidates", nargs="+", default=list(POOL), choices=list(POOL))
    parser.add_argument("--records", nargs="*", default=None,
                        help="re-tabulate existing records.csv files instead of fitting")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.records:
        records = []
        for path in args.records:
            with open(path) as f:
                for r in csv.DictReader(f):
                    records.append(dict(r, split=int(r["split"]), cv=float(r["cv"]), pr_auc=float(r["pr_auc"]),
                                        seconds=float(r["seconds"])))
        names = list(dict.fromkeys(r["dataset"] for r in records))
    else:
        names = args.datasets or [n for n in PANEL if n.startswith("synthetic-") or n in datasets.available()]
        records = collect(names, args.splits, args.candidates, first_split=args.first_split)
    elapsed = time.perf_counter() - start
    out = results_dir("auto_candidates", args.out)
    if not args.records:  # the records first: tables can always be redone from them
        write_records(out / "records.csv", records, fields=list(records[0]))
        write_json(out / "config.json", provenance(datasets=names, splits=args.splits, first_split=args.first_split,
                                                   candidates=args.candidates, seconds=elapsed))
    text = tables(records)
    print(text)
    (out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
