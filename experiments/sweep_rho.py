"""Test PR-AUC against rho: the joint method (and two_stage for reference) beside the baselines.

For each setting (the synthetic seed preset, and scikit-learn's breast_cancer ensemble when
`cfjax.datasets` can build it) and each seed, one `cfjax.sweep.run` fits every rho of the grid
(11 values, small ones included, never 0: see `cfjax.sweep.DEFAULT_RHOS`) in one compiled
program; every seed reuses it. The seed draws the ensemble (synthetic) or the labeled split and
the base models (breast_cancer), so the band over seeds shows data variation: with the default
SVD initialisation the fits themselves are deterministic. Scores are on the unlabeled (`test`)
columns against `Ensemble.y_true`, from the transductive probabilities. Simple averaging,
stacking and the best single model are drawn as horizontal lines (mean over seeds).

Writes results/sweep_rho/: config.json (seeds, versions, git hash, device), results.csv,
table.md, sweep_rho.png.

    python experiments/sweep_rho.py [--seeds 5] [--n 1000] [--smoke] [--out results]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import provenance, results_dir, score_test_columns, write_json, write_records

import cfjax
from cfjax import baselines, data, predict, sweep

METHODS = ("joint", "two_stage")
BASELINE_NAMES = ("simple_average", "stacking", "best_single")
#: Fixed hyperparameters besides rho (lr: Adam's step for joint; two_stage ignores lr and rho).
FIXED = dict(lam=0.01, lr=0.01)


def configs(max_iter: int, latent_dim: int) -> dict[str, cfjax.Config]:
    # formulation "free": the free-Y joint of the issue-4 study (the default is now fold_in)
    return {m: cfjax.Config(method=m, formulation="free", latent_dim=latent_dim, max_iter=max_iter) for m in METHODS}


def load_setting(name: str, seed: int, n: int) -> cfjax.Ensemble:
    if name == "synthetic_seed":
        return data.preset(jax.random.key(seed), "seed", n_instances=n)
    from cfjax import datasets

    return datasets.load(name, seed=seed)


def run_setting(name: str, seeds: list[int], n: int, rhos, cfgs) -> list[dict]:
    rows = []
    grid = sweep.grid(rho=rhos, **{k: [v] for k, v in FIXED.items()})
    for seed in seeds:
        ens = load_setting(name, seed, n)
        problem = ens.problem
        for base in BASELINE_NAMES:
            scores = score_test_columns(ens.y_true, baselines.BASELINES[base](problem), ens.test)
            rows.append(dict(setting=name, method=base, rho="", seed=seed, **scores))
        keys = jax.random.key(seed)[None]
        for method, cfg in cfgs.items():
            start = time.perf_counter()
            result = sweep.run(keys, problem, grid, cfg)
            first_seed = jax.tree.map(lambda x: x[:, 0], result.params)
            probas = np.asarray(jax.vmap(predict.proba, in_axes=(0, None))(first_seed, cfg))
            for g, rho in enumerate(rhos):
                scores = score_test_columns(ens.y_true, probas[g], ens.test)
                rows.append(dict(setting=name, method=method, rho=float(rho), seed=seed, **scores))
            print(
                f"  {name} seed {seed} {method}: {len(rhos)} rhos "
                f"in {time.perf_counter() - start:.1f}s",
                flush=True,
            )
    return rows


def paired(rows: list[dict], setting: str, method: str, rho: float, baseline: str) -> np.ndarray:
    """Per-seed differences method(rho) - baseline: the ensemble-to-ensemble variation cancels."""

    def by_seed(name, r):
        return {
            x["seed"]: x["pr_auc"]
            for x in rows
            if x["setting"] == setting and x["method"] == name and x["rho"] == r
        }

    a, b = by_seed(method, rho), by_seed(baseline, "")
    return np.array([a[s] - b[s] for s in sorted(a)])


def summarise(rows: list[dict], settings: list[str], rhos) -> str:
    def stats(setting, method, rho=""):
        vals = [
            r["pr_auc"]
            for r in rows
            if r["setting"] == setting and r["method"] == method and r["rho"] == rho
        ]
        return np.mean(vals), np.std(vals, ddof=1) if len(vals) > 1 else 0.0

    lines = []
    for setting in settings:
        lines += [f"### {setting}: test PR-AUC (mean ± sd over seeds)", ""]
        lines += ["| rho | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
        for rho in rhos:
            cells = [
                f"{m:.3f} ± {s:.3f}"
                for m, s in (stats(setting, meth, float(rho)) for meth in METHODS)
            ]
            lines.append(f"| {float(rho):g} | " + " | ".join(cells) + " |")
        lines += ["", "| baseline | PR-AUC |", "|---|---|"]
        for base in BASELINE_NAMES:
            m, s = stats(setting, base)
            lines.append(f"| {base} | {m:.3f} ± {s:.3f} |")
        lines += [
            "",
            "Paired difference joint - stacking over seeds (same ensemble, mean ± sd):",
            "",
            "| rho | joint - stacking |",
            "|---|---|",
        ]
        for rho in rhos:
            diff = paired(rows, setting, "joint", float(rho), "stacking")
            sd = diff.std(ddof=1) if diff.size > 1 else 0.0
            lines.append(f"| {float(rho):g} | {diff.mean():+.4f} ± {sd:.4f} |")
        joint = [stats(setting, "joint", float(r))[0] for r in rhos]
        best = int(np.argmax(joint))
        best_line = (
            f"Best joint rho: {float(rhos[best]):g} ({joint[best]:.3f}); "
            f"stacking {stats(setting, 'stacking')[0]:.3f}."
        )
        lines += ["", best_line, ""]
    return "\n".join(lines)


def plot(rows: list[dict], settings: list[str], rhos, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4), squeeze=False)
    colors = {"simple_average": "tab:gray", "stacking": "tab:red", "best_single": "tab:green"}
    x = np.asarray(rhos, float)
    for ax, setting in zip(axes[0], settings, strict=True):
        for method, color in zip(METHODS, ("tab:blue", "tab:orange"), strict=True):
            vals = np.array(
                [
                    [
                        r["pr_auc"]
                        for r in rows
                        if r["setting"] == setting
                        and r["method"] == method
                        and r["rho"] == float(rho)
                    ]
                    for rho in rhos
                ]
            )  # (G, seeds)
            mean, sd = vals.mean(axis=1), vals.std(axis=1)
            ax.plot(x, mean, "o-", color=color, label=method, ms=3)
            ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.2)
        for base, color in colors.items():
            vals = [r["pr_auc"] for r in rows if r["setting"] == setting and r["method"] == base]
            ax.axhline(np.mean(vals), color=color, ls="--", lw=1, label=base)
        ax.set_xlabel("rho")
        ax.set_ylabel("test PR-AUC")
        ax.set_title(f"{setting} (band: mean ± sd over seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000, help="instances of the synthetic ensemble")
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--latent-dim", type=int, default=6)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    parser.add_argument("--out", default=None, help="results root (default results/)")
    args = parser.parse_args(argv)
    rhos = np.asarray(sweep.DEFAULT_RHOS)
    if args.smoke:
        args.seeds, args.n, args.max_iter = 2, 200, 20
        rhos = rhos[[0, 5, -1]]
    seeds = list(range(args.seeds))
    cfgs = configs(args.max_iter, args.latent_dim)
    out = results_dir("sweep_rho", args.out)

    settings, skipped, rows = [], {}, []
    for setting in ("synthetic_seed", "breast_cancer"):
        try:
            rows += run_setting(setting, seeds, args.n, rhos, cfgs)
            settings.append(setting)
        except ImportError as err:  # breast_cancer needs scikit-learn
            skipped[setting] = str(err)
            print(f"skipped {setting}: {err}")
    text = summarise(rows, settings, rhos)
    if skipped:
        text += "\nSkipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "\n"
    print(text)
    (out / "table.md").write_text(text)
    write_records(out / "results.csv", rows, fields=list(rows[0]))
    plotted = plot(rows, settings, rhos, out / "sweep_rho.png")
    write_json(
        out / "config.json",
        provenance(
            seeds=seeds,
            settings=settings,
            skipped=skipped,
            rhos=[float(r) for r in rhos],
            fixed_hparams=FIXED,
            configs={m: vars(c) for m, c in cfgs.items()},
            n_instances_synthetic=args.n,
            smoke=args.smoke,
            strategy=sweep.resolve_strategy("auto"),
            plotted=plotted,
        ),
    )


if __name__ == "__main__":
    main()
