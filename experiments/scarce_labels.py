"""Where labels are scarce (issue 17): every method and every peer at 5, 10, 20 and 60 % labeled.

The few-label panel (`panel.FEW_LABEL_PANEL`: the synthetic presets, scikit-learn's
breast_cancer and wine, and the KEEL sets), 10 splits per (data set, labeled fraction), pairs
below the applicability rule skipped and listed. Pipelines: the baselines of
`cfjax.baselines.BASELINES` (simple average, best single, stacking, Caruana ensemble selection,
the spectral meta-learner, local competence), the hard-vote peers of `cfjax.baselines.PEERS`
(Dawid-Skene, Snorkel's label model) when the `peers` extra is installed, the default pipeline
(`auto`), the default's candidates under each choice rule named (`auto_one_se`, `auto_best`:
`cfjax.solvers.auto.choose`), the landed main's candidate list of `auto` (`auto_landed`, for the
comparison the issue started from) and every iterative method at its registry defaults. Test
PR-AUC on the unlabeled columns.

Prints and writes (results/scarce_labels/: records.csv, table.md, summary.md, config.json):
per labeled fraction, each pipeline's panel mean, its paired difference against simple
averaging, stacking and the best baseline of that fraction (the highest panel mean among
averaging, stacking, Caruana and SML) with 95 % t intervals over splits, its worst data set
against averaging, and its median seconds per fit; then the per-data-set tables of
`panel.means_table` / `panel.paired_table`.

    python experiments/scarce_labels.py [--splits 10] [--first-split 0] [--labeled 0.05 0.1 0.2 0.6]
        [--datasets ...] [--holdout] [--methods ...] [--no-peers] [--smoke]

`--first-split F` runs splits F..F+N-1 (fresh splits for a confirmation; build them first with
`build_ensembles.py --first-split F`). `--against NAME` adds a column: each pipeline paired
against NAME. `--from-records DIR` fits nothing: it redraws DIR's table.md and summary.md from
its records.csv and config.json (e.g. with another `--against`).

`--holdout` runs the held-out data sets (`panel.FEW_LABEL_HOLDOUT`, chosen by the rule in
`cfjax.datasets` after every design choice of the default was made) instead of the panel.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import only_named, provenance, results_dir, write_json
from panel import FEW_LABEL_FRACTIONS, FEW_LABEL_HOLDOUT, FEW_LABEL_PANEL, means_table, paired_table

import cfjax
from cfjax import baselines, benchmark, datasets
from cfjax.solvers.auto import Candidate

#: The candidates `auto` had on the landed main before issue 17 (3 folds, one repeat, best mean).
LANDED_AUTO = (
    ("candidates", (Candidate("als"), Candidate("two_stage"),
                    Candidate("joint", formulation="fold_in", grid=(("rho", (0.1, 0.5, 0.9)),)),
                    Candidate("two_stage", space="logit", full_rank=True))),
    ("folds", 3), ("repeats", 1), ("rule", "best"),
)
#: What the best baseline of a fraction is chosen among (the issue's goal).
GOAL_BASELINES = ("simple_average", "stacking", "caruana", "spectral_meta_learner")


def _peer_pipeline(name: str) -> benchmark.Pipeline:
    fn = baselines.PEERS[name]
    return benchmark.Pipeline(name, lambda ens, key: (np.asarray(fn(ens.problem)), None), True,
                              "hard-vote peer: " + fn.__doc__.splitlines()[0])


def pipelines(with_peers: bool, methods: list[str] | None) -> list[benchmark.Pipeline]:
    out = [benchmark.baseline_pipeline(b) for b in baselines.BASELINES]
    if with_peers:
        for name in baselines.PEERS:
            try:
                baselines.PEERS[name](cfjax.data.synthetic(jax.random.key(0), n_instances=40).problem)
            except ImportError as err:
                print(f"skipping {name}: {err}", flush=True)
                continue
            out.append(_peer_pipeline(name))
    out.append(benchmark.method_pipeline("auto"))
    for rule in cfjax.solvers.auto.RULES:
        out.append(benchmark.method_pipeline("auto", f"auto_{rule}", cfjax.Config(options=(("rule", rule),))))
    out.append(benchmark.method_pipeline("auto", "auto_landed", cfjax.Config(options=LANDED_AUTO)))
    for name, method in cfjax.solvers.METHODS.items():
        if method.fit is None:
            out.append(benchmark.method_pipeline(name))
    return only_named(out, methods)


def _panel_means(records: list[dict], method: str, fraction: float) -> dict[str, float]:
    by_set: dict[str, list[float]] = {}
    for r in records:
        if r["method"] == method and r["labeled_fraction"] == fraction:
            by_set.setdefault(r["dataset"], []).append(r["pr_auc"])
    return {name: float(np.mean(v)) for name, v in by_set.items()}


def _paired(records: list[dict], method: str, reference: str, fraction: float) -> dict:
    """The paired difference of panel means (mean over data sets of each split), with its t
    interval; the unit of pairing is the split, as in `benchmark.paired`."""
    sub = [r for r in records if r["labeled_fraction"] == fraction]
    return benchmark.paired(sub, method, reference, by_fraction=False).get("panel", {})


#: The issue's allowance: no data set's mean may fall this far below averaging's.
BELOW_AVERAGING = 0.01


def summary_table(records: list[dict], methods: list[str], against: str | None = None) -> str:
    """Per labeled fraction, a row per method: panel mean, paired differences (averaging,
    stacking, the best baseline and, if given, `against`), the worst data set against averaging
    and how many data sets fall more than `BELOW_AVERAGING` below it, the median seconds."""
    lines = []
    refs = ("simple_average", "stacking", None) + ((against,) if against else ())
    for fraction in sorted({r["labeled_fraction"] for r in records}):
        sets = sorted({r["dataset"] for r in records if r["labeled_fraction"] == fraction})
        panel = {m: float(np.mean(list(_panel_means(records, m, fraction).values()))) for m in methods}
        goal = [b for b in GOAL_BASELINES if b in methods]
        best = max(goal, key=panel.get) if goal else None
        lines += [
            (f"\n**{100 * fraction:g} % labeled** ({len(sets)} data sets; best baseline: {best}, "
            f"{panel.get(best, float('nan')):.4f})\n"),
            ("| method | panel mean | − averaging [95 % CI] | − stacking [95 % CI] | − best baseline [95 % CI] "
             + (f"| − {against} [95 % CI] " if against else "")
             + f"| worst data set − averaging | data sets > {BELOW_AVERAGING:g} below averaging | median s / fit |"),
            "|---|---|---|---|---|---|---|---|" + ("---|" if against else ""),
        ]
        average = _panel_means(records, "simple_average", fraction)
        for m in methods:
            cells = []
            for ref in refs:
                ref = ref or best
                d = _paired(records, m, ref, fraction) if ref in methods and ref != m else {}
                cells.append(f"{d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]" if d else "—")
            own = _panel_means(records, m, fraction)
            gaps = [(own[s] - average[s], s) for s in own if s in average]
            worst = min(gaps, default=(np.nan, "—"))
            below = sorted(s for gap, s in gaps if gap < -BELOW_AVERAGING)
            seconds = [r["seconds"] for r in records if r["method"] == m and r["labeled_fraction"] == fraction]
            lines.append(f"| {m} | {panel[m]:.4f} | " + " | ".join(cells)
                         + f" | {worst[0]:+.4f} ({worst[1]}) | {len(below)}{' (' + ', '.join(below) + ')' if below else ''}"
                         + f" | {np.median(seconds):.2f} |")
    return "\n".join(lines)


def _write_tables(out: Path, header: str, records: list[dict], methods: list[str], against: str | None) -> None:
    summary = summary_table(records, methods, against)
    text = header + summary + "\n\n" + means_table(records, methods) + "\n" + paired_table(records, methods) + "\n"
    print(header + summary)
    (out / "table.md").write_text(text)
    (out / "summary.md").write_text(header + summary + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--first-split", type=int, default=0, help="run splits FIRST..FIRST+N-1")
    parser.add_argument("--labeled", nargs="+", type=float, default=list(FEW_LABEL_FRACTIONS))
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=None, help="only these pipelines")
    parser.add_argument("--no-peers", action="store_true", help="leave out the hard-vote peers")
    parser.add_argument("--smoke", action="store_true", help="two synthetic sets, 2 splits, 10 and 60 %")
    parser.add_argument("--holdout", action="store_true",
                        help="the held-out data sets (panel.FEW_LABEL_HOLDOUT) instead of the few-label panel")
    parser.add_argument("--against", default=None, help="add a column: each pipeline paired against this one")
    parser.add_argument("--from-records", default=None, metavar="DIR",
                        help="fit nothing: redraw DIR's tables from its records.csv and config.json")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.from_records:
        folder = Path(args.from_records)
        config = json.loads((folder / "config.json").read_text())
        header = (folder / "summary.md").read_text().split("\n**")[0].rstrip("\n") + "\n"
        _write_tables(folder, header, benchmark.read_records(folder / "records.csv"), config["methods"], args.against)
        return
    panel = FEW_LABEL_HOLDOUT if args.holdout else FEW_LABEL_PANEL
    names = args.datasets or [n for n in panel if n.startswith("synthetic-") or n in datasets.available()]
    missing = [n for n in panel if n not in names] if args.datasets is None else []
    if args.smoke:
        names, args.splits, args.labeled = ["synthetic-seed", "synthetic-imbalanced_10"], 2, [0.1, 0.6]
    splits = list(range(args.first_split, args.first_split + args.splits))
    pipes = pipelines(not args.no_peers, args.methods)
    cfjax.api.enable_compilation_cache()
    where = provenance()  # taken before the run: the commit whose code ran
    start = time.perf_counter()
    records = benchmark.run_panel(names, pipes, splits=splits, progress=True, labeled_fractions=args.labeled)
    elapsed = time.perf_counter() - start
    methods = [p.name for p in pipes]
    skipped = "".join(f"Skipped {s['dataset']} at {s['labeled_fraction']:g}: split {s['split']}: {s['reason']}\n"
                      for s in records.skipped)
    header = (f"Few-label panel: {', '.join(names)}; labeled fractions {' '.join(f'{f:g}' for f in args.labeled)}; "
              f"{args.splits} splits ({splits[0]}-{splits[-1]}); PR-AUC on the unlabeled columns; {elapsed:.0f} s on {jax.devices()[0]}\n"
              + (f"Not installed, skipped: {', '.join(missing)}\n" if missing else "") + skipped)
    out = results_dir("scarce_labels", args.out)
    _write_tables(out, header, records, methods, args.against)
    benchmark.write_records(out / "records.csv", records)
    write_json(out / "config.json", dict(
        where, datasets=names, labeled_fractions=args.labeled, splits=args.splits, split_seeds=splits,
        methods=methods, seconds=elapsed, skipped=list(records.skipped),
        auto_candidates=[c._asdict() for c in cfjax.solvers.auto.CANDIDATES],
    ))


if __name__ == "__main__":
    main()
