"""The seed document's diagnostic, reproduced with every method.

Synthetic seed setting (positive rate 0.5, base quality 0.85) with 30 base classifiers (latent_dim
20 needs m >= 20), latent_dim 20, lambda 0.01, rho 0.5. For each method: the reconstruction loss, the supervised loss and the test PR-AUC
(on the unlabeled columns) after 0, 20, 40, 60 and 100 iterations, beside simple averaging
and stacking; then the seed's two isolated checks (ALS alone at rho = 1; the aggregator alone on
fixed factors). Writes results/failure_modes/ (config.json, table.md, results.csv,
loss_curves.png) and prints the table.

    python experiments/failure_modes.py [--seeds 5] [--n 1000] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import provenance, results_dir, score_test_columns, write_json, write_records

import cfjax
from cfjax import baselines, data, losses, predict
from cfjax.solvers import METHODS
from cfjax.solvers.alternating import aggregator_gradient_step

CHECKPOINTS = (0, 20, 40, 60, 100)
ITERATIVE = tuple(name for name, m in METHODS.items() if m.fit is None)  # the iterations (not auto)
N_CLASSIFIERS = 30

#: learning rates per method: joint uses Adam; the aggregator steps of the alternation
#: methods are the seed's plain gradient steps (0.1), the damped one the seed's slow 0.001
LEARNING_RATES = {"joint": 0.01, "alternating": 0.1, "label_aware_als": 0.1, "damped": 0.001}


def run(seeds: int, n: int, out: Path) -> list[dict]:
    rows = []
    histories = {}
    for seed in range(seeds):
        ens = data.preset(jax.random.key(seed), "seed", n_instances=n, n_classifiers=N_CLASSIFIERS)
        problem = ens.problem
        for name in ("simple_average", "stacking"):
            scores = score_test_columns(ens.y_true, baselines.BASELINES[name](problem), ens.test)
            rows.append(dict(seed=seed, method=name, iteration="-", recon="-", sup="-", **scores))
        for method in ITERATIVE:
            hp = cfjax.Hparams.create(rho=0.5, lam=0.01, lr=LEARNING_RATES.get(method, 0.01))
            for it in CHECKPOINTS:
                cfg = cfjax.Config(method=method, formulation="free", latent_dim=20, max_iter=max(it, 1), patience=0,
                                   tol=0.0)
                if it == 0:
                    prepared, _ = cfjax.solvers.driver.prepare(problem, hp, cfg)
                    params = cfjax.solvers.initial_params(jax.random.key(seed), prepared, hp, cfg)
                else:
                    fit = cfjax.fit(jax.random.key(seed), problem, hp, cfg)
                    params = fit.params
                    if it == CHECKPOINTS[-1] and seed == 0:
                        histories[method] = fit.history
                parts = losses.loss_parts(params, cfjax.solvers.driver.prepare(problem, hp, cfg)[0], hp, cfg)
                scores = score_test_columns(ens.y_true, predict.proba(params, cfg), ens.test)
                rows.append(dict(seed=seed, method=method, iteration=it, recon=float(parts.recon),
                                 sup=float(parts.sup), **scores))
    _plot(histories, out / "loss_curves.png")
    return rows


def isolated_checks(n: int) -> dict[str, float]:
    """The seed's component tests: ALS alone (rho = 1), the aggregator alone on fixed factors."""
    ens = data.preset(jax.random.key(0), "seed", n_instances=n, n_classifiers=N_CLASSIFIERS)
    problem = ens.problem
    hp = cfjax.Hparams.create(rho=1.0, lam=0.01, lr=0.1)
    cfg = cfjax.Config(method="als", latent_dim=20, max_iter=100, tol=0.0)
    fit = cfjax.fit(jax.random.key(0), problem, hp, cfg)
    resid = (problem.R - losses.reconstruct(fit.params)) * problem.observed
    rmse = float(jnp.sqrt(jnp.sum(resid**2) / jnp.sum(problem.observed)))
    params = fit.params
    before = score_test_columns(ens.y_true, predict.proba(params, cfg), ens.test)["roc_auc"]
    sup_before = float(losses.supervised_parts(params, problem, hp, cfg)[0])
    step = jax.jit(aggregator_gradient_step, static_argnames="config")
    for _ in range(20):
        params = step(params, problem, hp, cfg)
    after = score_test_columns(ens.y_true, predict.proba(params, cfg), ens.test)["roc_auc"]
    sup_after = float(losses.supervised_parts(params, problem, hp, cfg)[0])
    return dict(als_rmse=rmse, aggregator_auc_before=before, aggregator_auc_after=after,
                aggregator_sup_before=sup_before, aggregator_sup_after=sup_after)


def _plot(histories, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for method, h in histories.items():
        for ax, field in zip(axes, ("total", "recon", "sup")):
            ax.plot(np.asarray(getattr(h, field)), label=method)
    for ax, field in zip(axes, ("total loss", "L_recon", "L_sup")):
        ax.set_title(field)
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    def agg(method, it, field):
        vals = [r[field] for r in rows if r["method"] == method and r["iteration"] == it]
        return np.mean(vals), np.std(vals)

    lines = ["| method | iter | L_recon | L_sup | test PR-AUC (mean ± sd) |", "|---|---|---|---|---|"]
    for name in ("simple_average", "stacking"):
        m, s = agg(name, "-", "pr_auc")
        lines.append(f"| {name} | - | - | - | {m:.3f} ± {s:.3f} |")
    for method in ITERATIVE:
        for it in CHECKPOINTS:
            r, _ = agg(method, it, "recon")
            su, _ = agg(method, it, "sup")
            m, s = agg(method, it, "pr_auc")
            lines.append(f"| {method} | {it} | {r:.4f} | {su:.4f} | {m:.3f} ± {s:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000, help="instances per synthetic ensemble")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    parser.add_argument("--out", default=None, help="results root (default results/)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.n = 1, 200
    out = results_dir("failure_modes", args.out)
    rows = run(args.seeds, args.n, out)
    checks = isolated_checks(args.n)
    text = table(rows)
    text += (
        f"\n\nIsolated checks (seed 0): ALS alone (rho = 1, 100 sweeps) reconstruction RMSE "
        f"{checks['als_rmse']:.4f}; aggregator alone on those fixed factors, 20 gradient steps: "
        f"L_sup {checks['aggregator_sup_before']:.4f} -> {checks['aggregator_sup_after']:.4f}, "
        f"test ROC-AUC {checks['aggregator_auc_before']:.3f} -> {checks['aggregator_auc_after']:.3f}\n"
    )
    print(text)
    (out / "table.md").write_text(text)
    write_records(out / "results.csv", rows, fields=list(rows[0]))
    write_json(out / "config.json", provenance(
        seeds=list(range(args.seeds)), n_instances=args.n, n_classifiers=N_CLASSIFIERS, preset="seed", latent_dim=20, lam=0.01,
        rho=0.5, learning_rates=LEARNING_RATES, checkpoints=CHECKPOINTS, isolated_checks=checks,
    ))


if __name__ == "__main__":
    main()
