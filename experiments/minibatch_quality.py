"""Does minibatch training lose accuracy? Minibatch against full-batch fold-in joint, paired.

Issue 18's claim: minibatch fold-in joint reaches full-batch fold-in joint's test PR-AUC within
0.002. Two settings, each method at joint's defaults (latent_dim 4, lam 1, Adam at lr 0.01,
reduce-on-plateau, early stopping with patience 50 on the training loss; max_iter 200 steps for
the full batch, 200 epochs for the minibatch):

* the seed setting (`synthetic-seed`: 10 classifiers of AUC 0.85, correlated errors, 50 %
  labeled) at n = 1e5 columns over `--seeds` seeds, minibatch with `--batch` columns (default
  1024: 98 steps an epoch);
* with `--long-steps` (default 2000), full-batch joint run that much longer, the reference at
  which it has converged (200 full-batch steps are fewer updates than 200 epochs of batches);
* the developers' panel (`experiments/panel.py`'s PANEL: the synthetic presets, breast_cancer,
  wine and the KEEL sets when installed) over `--splits` splits, minibatch with
  `--panel-batch` columns (default 64: every data set of the panel takes several batches).

Test PR-AUC on the unlabeled columns; the difference minibatch - full batch paired over seeds
(splits), with its 95 % t interval (`cfjax.benchmark.paired`). Writes results/minibatch_quality/
(results.csv, table.md, config.json).

    python experiments/minibatch_quality.py [--seeds 5] [--splits 5] [--n 100000] [--batch 1024]
        [--panel-batch 64] [--datasets ...] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import provenance, results_dir, write_json
from panel import PANEL

from cfjax import benchmark, data, datasets
from cfjax.structs import Config

FULL, LONG, MINI = "joint_fold_in", "joint_fold_in_long", "joint_minibatch"


def pipelines(batch: int, long_steps: int = 0, latent_dim: int = 4) -> list[benchmark.Pipeline]:
    """Full-batch fold-in joint (200 steps, the panel's), its minibatch twin (200 epochs), and
    with `long_steps` the full batch given that many steps (where it converges)."""
    base = Config(latent_dim=latent_dim, max_iter=200, formulation="fold_in")
    out = [benchmark.method_pipeline("joint", FULL, base),
           benchmark.method_pipeline("joint", MINI, base.replace(options=(("batch_size", batch),)))]
    if long_steps:
        out.append(benchmark.method_pipeline("joint", LONG, base.replace(max_iter=long_steps)))
    return out


def seed_setting(n: int, seeds: int, batch: int, long_steps: int) -> list[dict]:
    """Records of both pipelines on `synthetic-seed` at n columns, one per seed."""
    name = f"synthetic-seed@n={n:g}"
    records = []
    for seed in range(seeds):
        ens = data.preset(jax.random.key(seed), "seed", n_instances=n)
        for pipe in pipelines(batch, long_steps):
            start = time.perf_counter()
            proba, result = pipe.predict(ens, jax.random.key(seed))
            proba = jax.block_until_ready(proba)
            records.append(dict(dataset=name, labeled_fraction=benchmark.default_labeled_fraction("synthetic-seed"),
                                split=seed, method=pipe.name, baseline=False, batch=batch if pipe.name == MINI else n,
                                seconds=time.perf_counter() - start, n_iter=int(result.n_iter),
                                **benchmark.score_test_columns(ens.y_true, proba, ens.test)))
            print(f"{name} seed {seed} {pipe.name}: PR-AUC {records[-1]['pr_auc']:.4f} "
                  f"({records[-1]['n_iter']} iterations, {records[-1]['seconds']:.0f} s)", flush=True)
    return records


def table(records: list[dict], reference: str = FULL) -> str:
    """Minibatch against `reference`, per data set and over the panel (paired)."""
    lines = [(f"| data set | {reference} PR-AUC | minibatch PR-AUC | Δ minibatch − full [95% t interval] | wins/losses "
              "| reaches (lower bound ≥ −0.002) | within ±0.002 (whole interval) |"), "|---|---|---|---|---|---|---|"]
    seed = [r for r in records if "@n=" in r["dataset"]]
    diffs = {k: v for k, v in benchmark.paired(seed, MINI, reference, by_fraction=False).items() if k != "panel"} \
        if seed else {}
    diffs.update(benchmark.paired([r for r in records if "@n=" not in r["dataset"]], MINI, reference,
                                  by_fraction=False))
    for name, d in diffs.items():
        if name == "panel":
            full = mini = "—"
            name = "panel (the mean over its data sets, paired by split)"
        else:
            full = np.mean([r["pr_auc"] for r in records if r["dataset"] == name and r["method"] == reference])
            mini = np.mean([r["pr_auc"] for r in records if r["dataset"] == name and r["method"] == MINI])
            full, mini = f"{full:.4f}", f"{mini:.4f}"
        reaches = "yes" if d["lo"] >= -0.002 else ("mean only" if d["diff"] >= -0.002 else "no")
        within = "yes" if max(abs(d["lo"]), abs(d["hi"])) <= 0.002 else (
            "mean only" if abs(d["diff"]) <= 0.002 else "no")
        lines.append(f"| {name} | {full} | {mini} | {d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] | "
                     f"{d['wins']}/{d['losses']} | {reaches} | {within} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--panel-batch", type=int, default=64)
    parser.add_argument("--long-steps", type=int, default=2000,
                        help="also the full batch at this many steps (0: not run)")
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--no-seed-setting", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    names = args.datasets or [n for n in PANEL if n.startswith("synthetic-") or n in datasets.available()]
    if args.smoke:
        args.seeds, args.splits, args.n, names = 2, 2, 2000, ["synthetic-seed", "breast_cancer"]
    start = time.perf_counter()
    records: list[dict] = []
    if not args.no_seed_setting:
        records += seed_setting(args.n, args.seeds, args.batch, args.long_steps)
    seed_s = time.perf_counter() - start
    panel = benchmark.run_panel(names, pipelines(args.panel_batch, args.long_steps), splits=args.splits, progress=True)
    records += [{**r, "batch": args.panel_batch if r["method"] == MINI else "all"} for r in panel]
    elapsed = time.perf_counter() - start
    text = (f"Minibatch (batch {args.batch} at n = {args.n:g}; {args.panel_batch} on the panel) against full-batch "
            f"fold-in joint: test PR-AUC on the unlabeled columns, paired over {args.seeds} seeds / {args.splits} "
            f"splits; {elapsed:.0f} s ({seed_s:.0f} s the seed setting)\n\n**Against full-batch fold-in joint at 200 "
            f"steps (the panel's setting)**\n\n" + table(records) + "\n")
    if args.long_steps:
        text += (f"\n**Against full-batch fold-in joint at {args.long_steps} steps (early stopping, patience 50, "
                 f"as always)**\n\n" + table(records, LONG) + "\n")
    print(text)
    out = results_dir("minibatch_quality", args.out)
    (out / "table.md").write_text(text)
    benchmark.write_records(out / "results.csv", records)
    write_json(out / "config.json", provenance(
        n=args.n, seeds=args.seeds, splits=args.splits, batch=args.batch, panel_batch=args.panel_batch,
        long_steps=args.long_steps,
        datasets=names, skipped=[n for n in PANEL if n not in names], seconds=elapsed, skipped_pairs=panel.skipped))


if __name__ == "__main__":
    main()
