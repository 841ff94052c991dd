"""Missing predictions: every method on the seed setting with cells of R missing at random.

A missing cell (a base model that did not score an instance) is NaN in R: `cfjax.from_numpy`
makes it unobserved, with zero confidence, for every method; the baselines average (or, for
stacking and best_single, fill with the column mean of) the observed cells only.

For each seed (the seed draws the synthetic ensemble and the labeled split, as in
`cfjax.benchmark.load_ensemble("synthetic-seed", seed)`) and each missing rate, the ensemble
is `data.preset(key(seed), "seed", missing_rate=rate)`: the same R, labels and split as the
complete one, with cells dropped by an independent key (Bernoulli(rate) per cell; a row or column
left empty gets one cell back). The draws are nested: the cells missing at 10 % are also missing
at 30 % and 50 % (up to the odd cell given back).

Rows: the three baselines; every method of `cfjax.solvers.METHODS` at its registry defaults
(`solvers.get(name).defaults`) with the panel's Config (latent_dim 4, max_iter 200); joint with
fold-in factors; then joint, joint_fold_in and mm_als again with another ridge (`--extra-lam`,
default 0.01, the library-wide default before these two methods moved to lam = 1): with ~7
observed cells per column, lam = 0.01 leaves the per-column least squares of the factor model
nearly singular. Scores: PR-AUC on the unlabeled
(test) columns, and the paired difference (missing - complete) per seed with its 95 % t interval.

Writes results/missing_data/ (config.json with provenance, results.csv, table.md) and, unless
--smoke or --methods, docs/results/missing_data.md and docs/results/missing_data_config.json.

    python experiments/missing_data.py [--seeds 5] [--n 1000] [--rates 0.1 0.3 0.5] [--methods ...]
                                       [--smoke] [--out results]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import provenance, results_dir, score_test_columns, write_json, write_records

from cfjax import benchmark, data, losses, solvers
from cfjax.structs import Config

REPO = Path(__file__).resolve().parent.parent
#: the rate the issue's goal is stated at, and the allowance on the mean paired difference
HEADLINE_RATE = 0.3
TOLERANCE = 0.02


#: methods re-run with another ridge (`--extra-lam`): the ones the issue's goal names
EXTRA_LAM_METHODS = ("joint", "joint_fold_in", "mm_als")


def pipelines(latent_dim: int, max_iter: int, extra_lam: float = 0.0) -> list[benchmark.Pipeline]:
    """Baselines, every registered method at its defaults, joint with fold-in factors, and
    (if `extra_lam` > 0) `EXTRA_LAM_METHODS` again with lam = extra_lam, other defaults kept."""
    base = Config(latent_dim=latent_dim, max_iter=max_iter, formulation="free")  # "joint" rows are free-Y
    fold_in = base.replace(formulation="fold_in")
    out = benchmark.default_pipelines(base=base)
    out.append(benchmark.method_pipeline("joint", "joint_fold_in", fold_in))
    if extra_lam > 0:
        for name in EXTRA_LAM_METHODS:
            method, cfg = ("joint", fold_in) if name == "joint_fold_in" else (name, base)
            out.append(benchmark.method_pipeline(method, f"{name}, lam={extra_lam:g}", cfg, lam=extra_lam))
    return out


def load(seed: int, n: int, rate: float) -> data.Ensemble:
    return data.preset(jax.random.key(seed), "seed", n_instances=n, missing_rate=rate)


def check_same_data(complete: data.Ensemble, ens: data.Ensemble) -> None:
    """The missing-data ensemble must be the complete one with cells hidden, nothing else."""
    obs = np.asarray(ens.problem.observed)
    assert np.array_equal(np.asarray(complete.problem.R)[obs], np.asarray(ens.problem.R)[obs])
    assert np.array_equal(np.asarray(complete.problem.labeled), np.asarray(ens.problem.labeled))
    assert np.array_equal(complete.y_true, ens.y_true)
    assert not np.asarray(ens.problem.C)[~obs].any()


def hidden_cells(recon: np.ndarray, complete: data.Ensemble, ens: data.Ensemble) -> dict[str, float]:
    """How a fit reconstructs the cells it never saw: RMSE against their true probabilities, on
    the test (unlabeled) and the labeled columns, and the range of the reconstructed values."""
    hidden = ~np.asarray(ens.problem.observed)
    test = np.broadcast_to(np.asarray(ens.test)[None, :], hidden.shape)
    sq = (recon - np.asarray(complete.problem.R)) ** 2
    return {
        "rmse_hidden_test": float(np.sqrt(sq[hidden & test].mean())),
        "rmse_hidden_labeled": float(np.sqrt(sq[hidden & ~test].mean())),
        "hidden_min": float(recon[hidden].min()),
        "hidden_max": float(recon[hidden].max()),
    }


def column_mean_fill(problem) -> np.ndarray:
    """What the baselines put in a missing cell: the column's observed mean (`baselines._filled`)."""
    obs = np.asarray(problem.observed)
    R = np.asarray(problem.R)
    mean = (R * obs).sum(axis=0) / np.maximum(obs.sum(axis=0), 1)
    return np.where(obs, R, mean[None, :])


def run(seeds: list[int], n: int, rates: list[float], pipes) -> list[dict]:
    rows = []
    for seed in seeds:
        complete = load(seed, n, 0.0)
        for rate in rates:
            ens = complete if rate == 0 else load(seed, n, rate)
            check_same_data(complete, ens)
            realised = 1.0 - float(np.asarray(ens.problem.observed).mean())
            for pipe in pipes:
                start = time.perf_counter()
                row = {"seed": seed, "rate": rate, "realised_rate": realised, "method": pipe.name,
                       "error": ""}
                try:
                    proba, result = pipe.predict(ens, jax.random.key(seed))
                    proba = np.asarray(jax.block_until_ready(proba))
                except Exception as err:  # noqa: BLE001  (a crash on missing cells is a finding, not a stop)
                    row.update(pr_auc=math.nan, roc_auc=math.nan, finite=False, error=repr(err))
                else:
                    finite = bool(np.isfinite(proba).all())
                    scores = score_test_columns(ens.y_true, proba, ens.test)
                    row.update(finite=finite, **scores)
                    if result is not None:
                        row.update(n_iter=int(result.n_iter), converged=bool(result.converged))
                    if rate > 0:
                        recon = (column_mean_fill(ens.problem) if result is None
                                 else np.asarray(losses.reconstruct(result.params)))
                        row.update(hidden_cells(recon, complete, ens))
                row["seconds"] = time.perf_counter() - start
                rows.append(row)
            print(f"  seed {seed} rate {rate:g} (realised {realised:.3f}): {len(pipes)} fits", flush=True)
    return rows


def summarise(rows: list[dict], rates: list[float], methods: list[str]) -> list[dict]:
    """Per method: mean PR-AUC at each rate, the paired difference at each rate vs complete."""

    def by_seed(method, rate):
        return {r["seed"]: r["pr_auc"] for r in rows if r["method"] == method and r["rate"] == rate}

    out = []
    for method in methods:
        ref = by_seed(method, 0.0)
        entry = {"method": method, "mean": {}, "diff": {}}
        for rate in rates:
            vals = by_seed(method, rate)
            entry["mean"][rate] = float(np.mean(list(vals.values())))
            if rate == 0:
                continue
            diffs = np.array([vals[s] - ref[s] for s in sorted(ref)])
            mean, lo, hi = benchmark.t_interval(diffs)
            entry["diff"][rate] = {"mean": mean, "lo": lo, "hi": hi, "worst": float(diffs.min()),
                                   "within": bool(abs(mean) <= TOLERANCE)}
            cells = [r for r in rows if r["method"] == method and r["rate"] == rate and "hidden_min" in r]
            if cells:
                entry.setdefault("hidden", {})[rate] = {
                    "rmse_test": float(np.mean([r["rmse_hidden_test"] for r in cells])),
                    "rmse_labeled": float(np.mean([r["rmse_hidden_labeled"] for r in cells])),
                    "min": float(min(r["hidden_min"] for r in cells)),
                    "max": float(max(r["hidden_max"] for r in cells)),
                }
        entry["errors"] = sorted({r["error"] for r in rows if r["method"] == method and r["error"]})
        entry["non_finite"] = sum(1 for r in rows if r["method"] == method and not r["finite"])
        out.append(entry)
    return out


def _fmt(x: float, sign: bool = False) -> str:
    if not np.isfinite(x):
        return "nan"
    return f"{x:+.4f}" if sign else f"{x:.4f}"


def table(summary: list[dict], rates: list[float]) -> str:
    missing = [r for r in rates if r > 0]
    head = HEADLINE_RATE if HEADLINE_RATE in missing else missing[0]
    pct = {r: f"{100 * r:g} %" for r in rates}
    cols = ["method", "complete"] + [pct[r] for r in missing]
    cols += [f"Δ at {pct[head]} [95% CI]", f"\\|Δ\\| ≤ {TOLERANCE}"]
    cols += [f"Δ at {pct[r]}" for r in missing if r != head]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for e in summary:
        d = e["diff"][head]
        cells = [e["method"], _fmt(e["mean"][0.0])] + [_fmt(e["mean"][r]) for r in missing]
        cells.append(f"{_fmt(d['mean'], True)} [{_fmt(d['lo'], True)}, {_fmt(d['hi'], True)}]")
        cells.append("yes" if d["within"] else "**no**")
        cells += [_fmt(e["diff"][r]["mean"], True) for r in missing if r != head]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hidden_table(summary: list[dict], rate: float) -> str:
    """Reconstruction of the hidden cells at `rate`; the baselines share the column-mean fill."""
    lines = [
        (f"Reconstruction of the cells hidden at {100 * rate:g} % (RMSE against their true "
         "probabilities, mean over seeds; range over all seeds):"),
        "",
        "| method | RMSE, test columns | RMSE, labeled columns | range |",
        "|---|---|---|---|",
    ]
    done_fill = False
    for e in summary:
        h = e.get("hidden", {}).get(rate)
        if h is None:
            continue
        if e["method"] in benchmark.BASELINE_NAMES:
            if done_fill:
                continue
            name, done_fill = "column mean of the observed cells (baselines)", True
        else:
            name = e["method"]
        lines.append(f"| {name} | {h['rmse_test']:.3f} | {h['rmse_labeled']:.3f} | "
                     f"[{h['min']:.2f}, {h['max']:.2f}] |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000, help="instances of the synthetic ensemble")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.3, 0.5],
                        help="missing rates besides 0 (complete)")
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--extra-lam", type=float, default=0.01,
                        help=f"also run {', '.join(EXTRA_LAM_METHODS)} with this lam (0: skip)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="a subset of the rows (baselines, registered methods, joint_fold_in)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (no docs/ output)")
    parser.add_argument("--out", default=None, help="results root (default $CFJAX_RESULTS or results/)")
    parser.add_argument("--docs", default=str(REPO / "docs" / "results"),
                        help="where the markdown and config go (ignored with --smoke)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.n, args.max_iter, args.latent_dim = 2, 120, 5, 2
        args.rates = [HEADLINE_RATE]
    rates = [0.0] + sorted({float(r) for r in args.rates if r > 0})
    seeds = list(range(args.seeds))
    pipes = pipelines(args.latent_dim, args.max_iter, args.extra_lam)
    if args.methods is not None:
        unknown = set(args.methods) - {p.name for p in pipes}
        if unknown:
            parser.error(f"--methods: unknown {sorted(unknown)}; choose from {[p.name for p in pipes]}")
        pipes = [p for p in pipes if p.name in args.methods]
    methods = [p.name for p in pipes]
    out = results_dir("missing_data", args.out)

    start = time.perf_counter()
    rows = run(seeds, args.n, rates, pipes)
    elapsed = time.perf_counter() - start
    summary = summarise(rows, rates, methods)
    realised = {r: float(np.mean([x["realised_rate"] for x in rows if x["rate"] == r])) for r in rates}

    text = (
        f"Missing predictions: seed preset (10 classifiers x {args.n} instances, 50 % labeled), "
        f"{len(seeds)} seeds, latent_dim {args.latent_dim}, max_iter {args.max_iter}, registry "
        f"defaults; test PR-AUC on the unlabeled columns (mean over seeds); Δ = missing − complete, "
        f"paired by seed, 95 % t interval; {elapsed:.0f} s on {jax.devices()[0]}.\n"
        f"Realised missing fractions: "
        + ", ".join(f"{100 * r:g} % -> {100 * realised[r]:.2f} %" for r in rates if r > 0)
        + "\n\n" + table(summary, rates) + "\n"
    )
    head = HEADLINE_RATE if HEADLINE_RATE in rates else rates[-1]
    if len(rates) > 1:
        text += "\n" + hidden_table(summary, head) + "\n"
    problems = [e for e in summary if e["errors"] or e["non_finite"]]
    if problems:
        text += "\nFailures: " + "; ".join(
            f"{e['method']}: {e['non_finite']} non-finite/crashed fits {e['errors']}" for e in problems
        ) + "\n"
    print(text)
    (out / "table.md").write_text(text)
    write_records(out / "results.csv", rows)
    write_json(out / "config.json", provenance(
        command=["python", "experiments/missing_data.py", *(argv if argv is not None else sys.argv[1:])],
        seeds=seeds, preset="seed", n_instances=args.n, rates=rates, realised_rates=realised,
        latent_dim=args.latent_dim, max_iter=args.max_iter, extra_lam=args.extra_lam,
        smoke=args.smoke, seconds=elapsed,
        defaults={m: dict(solvers.get(m).defaults) for m in solvers.METHODS},
        tolerance=TOLERANCE, headline_rate=HEADLINE_RATE, summary=summary,
    ))
    if not args.smoke and args.methods is None:
        docs = Path(args.docs)
        docs.mkdir(parents=True, exist_ok=True)
        (docs / "missing_data.md").write_text(text)
        shutil.copyfile(out / "config.json", docs / "missing_data_config.json")


if __name__ == "__main__":
    main()
