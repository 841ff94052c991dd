"""Instance-dependent trust (issue 16): the attention aggregator and learned reliability.

Two studies, one command:

1. **Regional experts** (`cfjax.data.PRESETS["regional_experts"]`: 3 latent regions, each of the
   12 classifiers an expert on one and near chance, shifted and overconfident, on the others),
   `--seeds` draws at each of `--synthetic-labeled`; and its control without the systematic
   shift (`region_bias=0`), where a region shows only in which classifiers agree. The figure
   `alpha.png` shows the trust the attention aggregator learned on draw 0 against the true
   regions (`cfjax.plots.attention_by_region`).
2. **The real panel** (the real data sets of `panel.FEW_LABEL_PANEL` that are available),
   `--splits` splits at each of `--labeled`.

Pipelines: simple averaging and stacking; the default pipeline (`auto`); two_stage with the
weighted aggregator (the same factors as the attention rows: the registry defaults, d = 4);
two_stage, fold-in joint and free-Y joint with the attention aggregator; two_stage and `auto`
with the learned reliability confidence; and `auto` choosing between its default candidate and
the attention aggregator (`auto.WITH_ATTENTION`). Test PR-AUC on the unlabeled columns; paired
differences over draws / splits with 95 % t intervals.

Writes results/instance_trust/: records.csv, summary.md, alpha.png, config.json.

    python experiments/instance_trust.py [--seeds 5] [--splits 5] [--labeled 0.6 0.1]
        [--synthetic-labeled 0.5 0.1] [--datasets ...] [--methods ...] [--no-panel] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import only_named, provenance, results_dir, write_json, write_records
from panel import FEW_LABEL_PANEL, means_table, paired_table

import cfjax
from cfjax import benchmark, data, datasets
from cfjax.solvers import auto
from cfjax.structs import Config

#: The synthetic settings: the preset, and its control without the systematic shift.
SYNTHETIC = {"regional_experts": {}, "regional_experts_unshifted": {"region_bias": 0.0}}
#: The comparisons the issue asks for: (method, reference).
CLAIMS = (("two_stage_attention", "stacking"), ("two_stage_attention", "two_stage"),
          ("joint_attention", "stacking"), ("joint_attention", "two_stage"),
          ("two_stage_learned", "stacking"), ("two_stage_learned", "two_stage"),
          ("auto_learned", "stacking"), ("auto_learned", "auto"), ("auto", "stacking"),
          ("auto_attention", "stacking"), ("auto_attention", "auto"))


def pipelines(methods: list[str] | None = None) -> list[benchmark.Pipeline]:
    out = [benchmark.baseline_pipeline("simple_average"), benchmark.baseline_pipeline("stacking"),
           benchmark.method_pipeline("auto"),
           benchmark.method_pipeline("two_stage"),
           benchmark.method_pipeline("two_stage", "two_stage_attention", Config(aggregator="attention")),
           benchmark.method_pipeline("joint", "joint_attention", Config(aggregator="attention")),
           benchmark.method_pipeline("joint", "joint_free_attention", Config(aggregator="attention",
                                                                             formulation="free")),
           benchmark.method_pipeline("two_stage", "two_stage_learned", Config(confidence="learned")),
           benchmark.method_pipeline("auto", "auto_learned", Config(confidence="learned")),
           benchmark.method_pipeline("auto", "auto_attention", Config(aggregator="attention", options=(
               ("candidates", auto.WITH_ATTENTION),)))]
    return only_named(out, methods)


def synthetic_records(pipes: list[benchmark.Pipeline], seeds: int, fractions: list[float],
                      settings: dict[str, dict] = SYNTHETIC) -> list[dict]:
    """One record per (setting, labeled fraction, draw, pipeline), in `benchmark.run_panel`'s
    format; the draw is keyed by its index, the fit by the same key."""
    records = []
    for setting, overrides in settings.items():
        for fraction in fractions:
            for seed in range(seeds):
                ens = data.preset(jax.random.key(seed), "regional_experts", labeled_fraction=fraction, **overrides)
                for pipe in pipes:
                    start = time.perf_counter()
                    proba, _ = pipe.predict(ens, jax.random.key(seed))
                    proba = np.asarray(jax.block_until_ready(proba))
                    records.append(dict(dataset=setting, labeled_fraction=fraction, split=seed, method=pipe.name,
                                        seconds=time.perf_counter() - start,
                                        **benchmark.score_test_columns(ens.y_true, proba, ens.test)))
                print(f"{setting} @ {fraction:g}, draw {seed}: "
                      + ", ".join(f"{r['method']} {r['pr_auc']:.4f}" for r in records[-len(pipes):]), flush=True)
            jax.clear_caches()
    return records


def claims_table(records: list[dict], methods: list[str]) -> str:
    """The issue's comparisons, per data set and fraction and over the panel."""
    units = list(dict.fromkeys((r["dataset"], r["labeled_fraction"]) for r in records))
    lines = ["| method − reference | " + " | ".join(f"{d} @ {f:g}" for d, f in units) + " | panel @ each fraction |",
             "|---" * (len(units) + 2) + "|"]
    for method, reference in CLAIMS:
        if method not in methods or reference not in methods:
            continue
        d = benchmark.paired(records, method, reference, by_fraction=True)
        cells = [f"{d[u]['diff']:+.4f} [{d[u]['lo']:+.4f}, {d[u]['hi']:+.4f}]" if u in d else "—" for u in units]
        panels = [f"{f:g}: {d[k]['diff']:+.4f} [{d[k]['lo']:+.4f}, {d[k]['hi']:+.4f}]"
                  for k in d if isinstance(k, tuple) and k[0] == "panel" for f in [k[1]]]
        lines.append(f"| {method} − {reference} | " + " | ".join(cells) + " | " + "; ".join(panels) + " |")
    return "\n".join(lines)


def alpha_figure(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from cfjax import plots

    ens = data.preset(jax.random.key(0), "regional_experts")
    hparams, config = benchmark.prepare_inputs(ens.problem, cfjax.solvers.get("two_stage").hparams(),
                                               Config(method="two_stage", aggregator="attention"))
    result = cfjax.fit(jax.random.key(0), ens.problem, hparams, config)
    plots.attention_by_region(result.params, ens.regions, ens.experts, ens.names, path=path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="draws of each synthetic setting")
    parser.add_argument("--synthetic-labeled", nargs="+", type=float, default=[0.5, 0.1])
    parser.add_argument("--splits", type=int, default=5, help="splits of each real data set")
    parser.add_argument("--labeled", nargs="+", type=float, default=[0.6, 0.1])
    parser.add_argument("--datasets", nargs="+", default=None, help="real data sets (default: the few-label panel's)")
    parser.add_argument("--methods", nargs="+", default=None, help="only these pipelines")
    parser.add_argument("--no-panel", action="store_true", help="the synthetic study only")
    parser.add_argument("--smoke", action="store_true", help="2 draws, 10 %% labeled, 2 small real sets, 2 splits")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    real = args.datasets or [n for n in FEW_LABEL_PANEL if not n.startswith("synthetic-") and n in datasets.available()]
    if args.smoke:
        args.seeds, args.synthetic_labeled, args.splits, args.labeled = 2, [0.1], 2, [0.6]
        real = ["breast_cancer", "wine"]
    pipes = pipelines(args.methods)
    names = [p.name for p in pipes]
    cfjax.api.enable_compilation_cache()
    where = provenance()
    out = results_dir("instance_trust", args.out)
    start = time.perf_counter()
    alpha_figure(out / "alpha.png")
    records = synthetic_records(pipes, args.seeds, args.synthetic_labeled)
    skipped = []
    if not args.no_panel:
        panel = benchmark.run_panel(real, pipes, splits=args.splits, progress=True, labeled_fractions=args.labeled)
        records += list(panel)
        skipped = panel.skipped
    seconds = time.perf_counter() - start
    write_records(out / "records.csv", records, fields=list(dict.fromkeys(k for r in records for k in r)))
    synthetic = [r for r in records if r["dataset"] in SYNTHETIC]
    real_records = [r for r in records if r["dataset"] not in SYNTHETIC]
    parts = ["## Regional experts (synthetic)\n", means_table(synthetic, names), "\n", claims_table(synthetic, names)]
    if real_records:
        for fraction in sorted({r["labeled_fraction"] for r in real_records}, reverse=True):
            sub = [r for r in real_records if r["labeled_fraction"] == fraction]
            parts += [f"\n## Real panel, {100 * fraction:g} % labeled ({len({r['dataset'] for r in sub})} data sets)\n",
                      means_table(sub, names), "\n", claims_table(sub, names), paired_table(sub, names)]
    if skipped:
        parts.append("\nSkipped (too few labels of a class): " + ", ".join(f"{s['dataset']} @ {s['labeled_fraction']:g}"
                                                                           for s in skipped))
    summary = "\n".join(parts) + f"\n\n{len(records)} fits in {seconds:.0f} s.\n"
    (out / "summary.md").write_text(summary)
    write_json(out / "config.json", dict(args=vars(args), real=real, pipelines=names, seconds=seconds, **where))
    print(summary)


if __name__ == "__main__":
    main()
