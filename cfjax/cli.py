"""The `cfjax` command: the panel benchmark, fitting a user's ensemble, listing methods.

    cfjax benchmark [--datasets ...] [--methods ...] [--splits N] [--labeled F ...] [--out DIR]
    cfjax fit INPUT.npz --method NAME [--rho X|auto] [--latent-dim D] [--seed S] [--batch-size B] --output OUT.npz
        (R (m, n) with 0/1 labels, or (m, K, n) class probabilities with labels 0..K-1: a K-class fit)
    cfjax fit R.npy|R.zarr|DIR --labels labels.npy [--batch-size B] [--block-size K] --output OUT.npz
    cfjax methods
    cfjax datasets

A user error (bad input file, bad value) exits with status 2 and one line on stderr naming the
problem; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]

_PROG = "cfjax"


class UserError(Exception):
    """A problem with what the user asked for: reported in one line, exit status 2."""


def _fail(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------------------------
# cfjax methods / datasets


def _cmd_methods(args: argparse.Namespace) -> int:
    from cfjax import Config, solvers

    width = max(len(n) for n in solvers.METHODS)
    for name, method in solvers.METHODS.items():
        default = "  (the default)" if name == Config().method else ""
        print(f"{name:<{width}}  {method.description}{default}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from cfjax import data, datasets
    from cfjax.benchmark import SYNTHETIC_PREFIX

    usable = set(datasets.available())
    for name in data.PRESETS:
        print(f"{SYNTHETIC_PREFIX + name:<24} synthetic preset {data.PRESETS[name]}")
    for name, desc in datasets.DATASETS.items():
        flag = "" if name in usable else "  [not installed]"
        print(f"{name:<24} {desc}{flag}")
    usable = set(datasets.available_multiclass())
    for name, desc in datasets.MULTICLASS_DATASETS.items():
        flag = "" if name in usable else "  [not installed]"
        print(f"{name:<24} K-class (cfjax benchmark, load_multiclass, experiments/multiclass_panel.py): {desc}{flag}")
    return 0


# ----------------------------------------------------------------------------------------------
# cfjax fit


def _read_input(path: str) -> tuple[np.ndarray, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"INPUT: no such file: {path}")
    try:
        loaded = np.load(p, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file loads as a bare array
            raise UserError(f"INPUT: {path} is a single array, not an .npz archive holding R and labels")
        with loaded as npz:
            keys = set(npz.files)
            missing = [k for k in ("R", "labels") if k not in keys]
            if missing:
                raise UserError(f"INPUT: {path} has no array named {' or '.join(missing)} (found: {sorted(keys)})")
            return np.asarray(npz["R"]), np.asarray(npz["labels"])
    except UserError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"INPUT: {path} is not a readable .npz file ({type(err).__name__})") from None


def _parse_rho(value: str | None) -> float | str | None:
    if value is None or value == "auto":
        return value
    try:
        rho = float(value)
    except ValueError:
        raise UserError(f"--rho: expected a number in [0, 1] or 'auto', got {value!r}") from None
    return rho


def _streams(path: str) -> bool:
    """Whether INPUT is read from disk in blocks: a .npy, a zarr array or a directory (not one
    named *.npz, which stays the error it was)."""
    p = Path(path)
    return p.suffix in (".npy", ".zarr") or (p.is_dir() and p.suffix != ".npz")


def _minibatch_options(args: argparse.Namespace, default_batch: int | None) -> tuple:
    batch = args.batch_size if args.batch_size is not None else default_batch
    if batch is None:
        if args.schedule is not None:
            raise UserError("--schedule: applies to minibatch training; give --batch-size too")
        return ()
    if batch < 1:
        raise UserError(f"--batch-size: must be >= 1, got {batch}")
    return (("batch_size", batch),) + ((("schedule", args.schedule),) if args.schedule is not None else ())


def _cmd_fit(args: argparse.Namespace) -> int:
    import jax

    import cfjax
    from cfjax import io, predict, selection, sweep
    from cfjax.api import prepare_inputs, settings

    if _streams(args.input):
        return _fit_stream(args)
    for flag, value in (("--labels", args.labels), ("--weights", args.weights), ("--block-size", args.block_size),
                        ("--validation", args.validation), ("--proba-output", args.proba_output)):
        if value is not None:
            raise UserError(f"{flag}: only with an INPUT read from disk in blocks (.npy, .zarr or a directory); "
                            "an .npz holds R and labels and is read whole")
    R, labels = _read_input(args.input)
    rho = _parse_rho(args.rho)
    hparams, config = settings(
        args.method, rho=None if rho == "auto" else rho, lam=args.lam, lr=args.lr, latent_dim=args.latent_dim,
        max_iter=args.max_iter, formulation=args.formulation, aggregator=args.aggregator,
        confidence=args.confidence, space=args.space,
    )
    options = _minibatch_options(args, None)
    if options:
        config = config.replace(options=options)
    method = cfjax.solvers.get(config.method)
    problem = cfjax.from_numpy(R, labels, require_labels=method.uses_labels)
    hparams, config = prepare_inputs(problem, hparams, config)
    key = jax.random.key(args.seed)
    extra: dict[str, Any] = {}
    if rho == "auto":
        if method.fit is not None:
            raise UserError(f"--rho auto: {config.method!r} chooses rho itself; leave --rho out")
        grid = sweep.grid(rho=list(sweep.DEFAULT_RHOS), **{k: [float(getattr(hparams, k))]
                                                             for k in ("lam", "lr") if k != "rho"}, method=config.method)
        chosen = selection.select(key, problem, grid, config)
        hparams, result = chosen.hparams, chosen.refit
        extra.update(rho_grid=np.asarray(sweep.DEFAULT_RHOS), cv_pr_auc=chosen.mean)
    else:
        result = cfjax.fit(key, problem, hparams, config, progress=not args.quiet)
    proba = np.asarray(predict.proba(result.params, config, problem))
    if not np.isfinite(proba).all():
        raise FloatingPointError("non-finite probabilities; please report this with your input")
    try:
        io.save(args.output, result, config, hparams, extra={"proba": proba, "seed": args.seed, **extra})
    except OSError as err:
        raise UserError(f"--output: cannot write {args.output} ({err.strerror or type(err).__name__})") from None
    labeled = int(np.asarray(problem.labeled).sum())
    if method.fit is not None:
        rows = cfjax.solvers.auto.describe(result, config, problem)
        chosen_row = next(r for r in rows if r["chosen"])
        score = "PR-AUC" if problem.n_classes == 2 else "macro PR-AUC"
        what = f"chose {chosen_row['option']} (cross-validated {score} {chosen_row['cv_mean']:.4f})"
    else:
        what = f"rho={float(hparams.rho):.3g}, {int(result.n_iter)} iterations"
    classes = f" x {problem.n_classes} classes" if problem.n_classes > 2 else ""
    print(f"{config.method}: fitted {problem.n_classifiers} classifiers{classes} x {problem.n_instances} instances "
          f"({labeled} labeled); {what}; wrote {args.output}")
    return 0


def _fit_stream(args: argparse.Namespace) -> int:
    """`cfjax fit` on R read from disk in blocks: minibatch fold-in joint (`cfjax.stream`)."""
    import jax

    from cfjax import io, stream
    from cfjax.api import settings

    if args.method not in (None, "joint"):
        raise UserError(f"--method: an INPUT read from disk in blocks is fitted by minibatch joint only "
                        f"(the other methods need every column at once), got {args.method!r}")
    rho = _parse_rho(args.rho)
    if rho == "auto":
        raise UserError("--rho auto: cross-validation needs the data in memory; give a value")
    source = stream.open_columns(args.input, labels=args.labels, C=args.weights)
    hparams, config = settings(
        "joint", rho=rho, lam=args.lam, lr=args.lr, latent_dim=args.latent_dim,
        max_iter=args.max_iter if args.max_iter is not None else STREAM_EPOCHS, formulation=args.formulation,
        aggregator=args.aggregator, confidence=args.confidence, space=args.space,
    )
    config = config.replace(options=_minibatch_options(args, stream.DEFAULT_BATCH_SIZE))
    block = args.block_size if args.block_size is not None else stream.DEFAULT_BLOCK_SIZE
    fraction = 0.0 if args.validation is None else args.validation
    key = jax.random.key(args.seed)
    result = stream.fit_stream(key, source, hparams, config, block_size=block, validation_fraction=fraction,
                               progress=not args.quiet)
    proba_path = Path(args.proba_output) if args.proba_output else _proba_path(args.output)
    try:
        stream.predict_stream(result.params, source, proba_path, hparams, config, key=key,
                              validation_fraction=fraction, block_size=block)
        io.save(args.output, result, config, hparams, extra={"seed": args.seed, "proba_file": str(proba_path)})
    except OSError as err:
        raise UserError(f"--output: cannot write {err.filename or args.output} "
                        f"({err.strerror or type(err).__name__})") from None
    m, n = source.shape
    classes = f" x {source.n_classes} classes" if source.n_classes > 2 else ""
    print(f"joint (minibatch, batch {config.option('batch_size')}): streamed {m} classifiers{classes} x {n} instances "
          f"from disk; rho={float(hparams.rho):.3g}, {int(result.n_iter)} epochs; wrote {args.output} and "
          f"{proba_path}")
    return 0


#: Epochs of `cfjax fit` on an input read from disk when --max-iter is not given.
STREAM_EPOCHS = 10


def _proba_path(output: str) -> Path:
    """OUT.npz -> OUT.proba.npy, beside it."""
    out = Path(output)
    stem = out.name.removesuffix(".npz")
    return out.with_name(stem + ".proba.npy")


# ----------------------------------------------------------------------------------------------
# cfjax benchmark


def _cmd_benchmark(args: argparse.Namespace) -> int:
    import jax

    from cfjax import Config, benchmark, datasets, solvers

    for name in args.datasets:
        if name in datasets.MULTICLASS_DATASETS:
            if name not in datasets.available_multiclass():
                raise UserError(f"--datasets: the K-class data set {name!r} needs the keel extra "
                                "(pip install cfjax[keel])")
        elif not name.startswith(benchmark.SYNTHETIC_PREFIX):
            datasets._check_name(name)
        elif name[len(benchmark.SYNTHETIC_PREFIX):] not in __import__("cfjax").data.PRESETS:
            raise UserError(f"--datasets: unknown synthetic preset {name!r}")
    methods = list(args.methods)
    for m in methods:
        solvers.get(m)
    if args.splits < 1:
        raise UserError(f"--splits: must be >= 1, got {args.splits}")
    fractions = None if args.labeled is None else [_parse_fraction(v) for v in args.labeled]
    pairs, skipped = benchmark.panel_pairs(args.datasets, fractions, args.splits)
    if not pairs:
        raise UserError(f"{'--labeled' if fractions else '--datasets'}: no (data set, labeled fraction) pair "
                        f"can be benchmarked on every split ({_skipped_text(skipped, '; ')})")
    run_name = args.run_name or time.strftime("benchmark-%Y%m%d-%H%M%S")
    out = Path(args.out) / run_name
    out.mkdir(parents=True, exist_ok=True)

    base = Config().replace(**{k: v for k, v in (("latent_dim", args.latent_dim), ("formulation", args.formulation))
                                 if v is not None})
    pipelines = benchmark.default_pipelines(methods, base=base)
    kept: dict[str, dict[str, Any]] = {}

    def keep(name, split, method, ens, proba, result):
        if split == 0 and ens.problem.n_classes == 2:  # the plots are of binary predictions
            entry = kept.setdefault(name, {"ens": ens, "proba": {}, "history": {}})
            if entry["ens"] is not ens:  # plots show a data set's first labeled fraction only
                return
            entry["proba"][method] = np.asarray(proba)
            if result is not None:
                entry["history"][method] = result.history

    start = time.perf_counter()
    records = benchmark.run_panel(args.datasets, pipelines, splits=args.splits, progress=not args.quiet,
                                  keep=keep, labeled_fractions=fractions)
    rows = benchmark.summarize(records, by_fraction=True)
    table = benchmark.markdown_table(rows)
    elapsed = time.perf_counter() - start
    used = {name: sorted({f for n, f in pairs if n == name}) for name in dict.fromkeys(n for n, _ in pairs)}
    if skipped:
        table += "\n\nSkipped (fewer than 5 labeled instances of a class on some split, or a base model's " \
                 "minimum):\n" + _skipped_text(skipped, "\n", "- ")
    if records.not_applicable:
        table += ("\n\nNot run on K-class data sets (binary only): "
                  + "; ".join(f"{e['method']} on {e['dataset']}" for e in records.not_applicable))
    if any(name in datasets.MULTICLASS_DATASETS for name in used):
        table += ("\n\nOn K-class data sets pr_auc and roc_auc are the macro one-vs-rest means over the "
                  "classes; their baselines are cfjax.multiclass's (multinomial stacking).")

    benchmark.write_records(out / "results.csv", records)
    benchmark.write_records(out / "summary.csv", rows)
    labeled_text = ", ".join(f"{name} at {' '.join(f'{f:g}' for f in fs)}" for name, fs in used.items())
    header = (f"cfjax benchmark: {labeled_text} labeled; {args.splits} splits; test = unlabeled columns; "
              f"{elapsed:.0f} s on {jax.devices()[0]}")
    (out / "table.md").write_text(header + "\n\n" + table + "\n")
    from cfjax.benchmark import provenance

    (out / "config.json").write_text(json.dumps(provenance(
        command=sys.argv, datasets=args.datasets, methods=[p.name for p in pipelines], splits=args.splits,
        split_seeds=list(range(args.splits)), seconds=elapsed,
        labeled_fractions=fractions if fractions is not None else "default", labeled_fractions_used=used,
        skipped=skipped,
    ), indent=2, default=str) + "\n")
    if not args.no_plots:
        _plots(out, kept, args)
    print(header)
    print()
    print(table)
    print(f"\nwrote {out}/ (results.csv, summary.csv, table.md, config.json{', plots' if not args.no_plots else ''})")
    return 0


def _parse_fraction(value: str) -> float:
    try:
        fraction = float(value)
    except ValueError:
        raise UserError(f"--labeled: expected fractions in (0, 1), got {value!r}") from None
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--labeled: each fraction must lie in (0, 1), got {value}")
    return fraction


def _skipped_text(skipped: list[dict[str, Any]], sep: str, bullet: str = "") -> str:
    return sep.join(f"{bullet}{s['dataset']} at {s['labeled_fraction']:g}: split {s['split']}: {s['reason']}"
                    for s in skipped)


def _plots(out: Path, kept: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    try:
        import matplotlib.pyplot as plt  # cfjax.plots imports it only when drawing

        from cfjax import plots
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install cfjax[plots])", file=sys.stderr)
        return
    import jax

    import cfjax
    from cfjax import baselines, metrics, sweep

    for name, entry in kept.items():
        ens = entry["ens"]
        fig = plots.pr_curves(ens.y_true, entry["proba"], ens.test)
        fig.axes[0].set_title(f"{name}, split 0, test columns")
        fig.savefig(out / f"pr_curves_{name}.png", dpi=100)
        plt.close(fig)
        histories = {k: v for k, v in entry["history"].items() if k != "auto"}  # auto's rho varies
        if histories:
            cols = min(4, len(histories))
            rows = -(-len(histories) // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows + 0.4), squeeze=False,
                                     layout="constrained")
            for ax, (method, history) in zip(axes.ravel(), histories.items()):
                rho = float(cfjax.solvers.get(method).hparams().rho)  # the benchmark's: the registry's
                plots.loss_curves(history, rho=rho, log=True, ax=ax)
                ax.set_title(f"{method} (rho {rho:g})")
                ax.get_legend().remove()  # one legend below the panels: in a 4 x 3 panel it hid curves
            for ax in axes.ravel()[len(histories):]:
                ax.set_visible(False)
            fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=3)
            fig.suptitle(f"{name}, split 0: the objective per iteration, each method at its defaults")
            fig.savefig(out / f"loss_curves_{name}.png", dpi=100)
            plt.close(fig)
    # the rho sweep: joint over the default rho grid and 3 seeds on split 0 of the first data set
    first = next(iter(kept), None)
    if first is None or "joint" not in cfjax.solvers.METHODS:
        return
    ens = kept[first]["ens"]
    m, n = ens.problem.R.shape
    config = cfjax.Config(method="joint", latent_dim=min(4, m, n), formulation="fold_in")
    rhos = list(sweep.DEFAULT_RHOS)
    result = sweep.run(jax.random.split(jax.random.key(0), 3), ens.problem, sweep.grid(rho=rhos), config)
    y = jax.numpy.asarray(ens.y_true, jax.numpy.float32)
    test = jax.numpy.asarray(ens.test)
    probas = jax.vmap(jax.vmap(lambda p: cfjax.predict.proba(p, config)))(result.params)
    scores = np.asarray(jax.vmap(jax.vmap(lambda p: metrics.average_precision(y, p, test)))(probas))
    base = {b: float(metrics.average_precision(y, fn(ens.problem), test)) for b, fn in baselines.BASELINES.items()}
    fig = plots.rho_sweep(rhos, scores, base)
    # two lines: on one, the title was wider than the figure and cut off at both ends
    fig.axes[0].set_title(f"joint (fold-in), {first}, split 0: test PR-AUC vs rho\n"
                          "(SVD init, so the 3 seeds coincide)")
    fig.savefig(out / f"rho_sweep_{first}.png", dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from cfjax import __version__

    parser = argparse.ArgumentParser(prog=_PROG, description="CF-Ensemble in JAX.")
    parser.add_argument("--version", action="version", version=f"cfjax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("benchmark", help="every method and baseline on a panel of ensembles (the main job)")
    bench.add_argument("--datasets", nargs="+", default=None,
                       help="synthetic-<preset> or a real data set (see `cfjax datasets`); "
                            "default: synthetic-seed breast_cancer")
    bench.add_argument("--methods", nargs="+", default=None, help="method names (default: every registered method, auto included)")
    bench.add_argument("--splits", type=int, default=5, help="repeated splits per data set (default 5)")
    bench.add_argument("--labeled", nargs="+", default=None, metavar="FRACTION",
                       help="labeled fractions in (0, 1), each a panel of its own, e.g. 0.05 0.1 0.2 0.6 "
                            "(default: each data set's own, 0.6 real, 0.5 synthetic); (data set, fraction) "
                            "pairs with fewer than 5 labeled instances of a class are skipped and listed")
    bench.add_argument("--out", default="results", help="results root (default results/)")
    bench.add_argument("--run-name", default=None, help="folder name under --out (default: a timestamp)")
    bench.add_argument("--latent-dim", type=int, default=None,
                       help="d of every method (default: each ensemble's min(4, m, n))")
    bench.add_argument("--formulation", default=None, choices=["free", "fold_in"], help="joint's (default fold_in)")
    bench.add_argument("--no-plots", action="store_true")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=_cmd_benchmark)

    fit = sub.add_parser("fit", help="fit your own ensemble from an .npz (R: m x n, or m x K x n for K classes; "
                                     "labels: n), or stream R from a .npy / zarr / directory")
    fit.add_argument("input", metavar="INPUT",
                     help="an .npz holding R and labels (read whole): R (m, n) of positive-class probabilities "
                          "with labels 0/1, or (m, K, n) of K class probabilities with labels 0..K-1 (the written "
                          "proba is then (K, n)); -1 or NaN marks an unlabeled column. Or R as a .npy "
                          "(memory-mapped), a .zarr, "
                          "or a directory with R.npy (or R.zarr), labels.npy and optionally C.npy: read in blocks "
                          "of columns and fitted by minibatch joint, so n is bounded by the disk")
    fit.add_argument("--method", default=None, help="a method name (default: the default pipeline, auto)")
    fit.add_argument("--rho", default=None,
                     help="a value in [0, 1], or 'auto' (cross-validated); default: the method's (auto: its own choice)")
    fit.add_argument("--latent-dim", type=int, default=None, help="d (default min(4, m, n); auto: its low-rank candidates')")
    fit.add_argument("--formulation", default=None, choices=["free", "fold_in"], help="joint's (default fold_in)")
    fit.add_argument("--max-iter", type=int, default=None,
                     help="iterations (default 200; auto: its candidates'); epochs with --batch-size (default "
                          f"{STREAM_EPOCHS} for an input read in blocks)")
    fit.add_argument("--aggregator", default=None, help="an aggregator name (default weighted; see cfjax.aggregators)")
    fit.add_argument("--confidence", default=None, help="a confidence strategy (default uniform)")
    fit.add_argument("--space", default=None, choices=["probability", "logit"],
                     help="factorize R or its logits (default probability; auto chooses)")
    fit.add_argument("--lr", type=float, default=None)
    fit.add_argument("--lam", type=float, default=None,
                     help="ridge lambda (default: the method's, 1 for joint and mm_als, else 0.01)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--batch-size", type=int, default=None,
                     help="minibatch training (joint, fold_in): columns per optimizer step, Y solved per batch "
                          "(default: full batch for an .npz; 2048 for an input read in blocks)")
    fit.add_argument("--schedule", default=None, choices=["plateau", "constant", "cosine"],
                     help="minibatch learning-rate schedule (default plateau: joint's reduce-on-plateau per epoch)")
    fit.add_argument("--labels", default=None, metavar="LABELS.npy",
                     help="labels (n,) for a .npy/zarr INPUT: 0/1, -1 or NaN unlabeled (a directory: labels.npy)")
    fit.add_argument("--weights", default=None, metavar="C.npy", help="optional base confidence C (m, n) for a "
                     ".npy/zarr INPUT (a directory: C.npy)")
    fit.add_argument("--block-size", type=int, default=None,
                     help="columns read from disk per block (default 65536; a multiple of the batch)")
    fit.add_argument("--validation", type=float, default=None, metavar="FRACTION",
                     help="for an input read in blocks: hold out this keyed fraction of the labeled columns "
                          "for early stopping (default 0: stop on the training objective)")
    fit.add_argument("--proba-output", default=None, metavar="PROBA.npy",
                     help="for an input read in blocks: where the probabilities go, written in blocks "
                          "(default OUT.proba.npy beside --output)")
    fit.add_argument("--output", required=True, metavar="OUT.npz")
    fit.add_argument("--quiet", action="store_true")
    fit.set_defaults(func=_cmd_fit)

    sub.add_parser("methods", help="list the training methods").set_defaults(func=_cmd_methods)
    sub.add_parser("datasets", help="list the data sets").set_defaults(func=_cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "datasets", None) is None and args.command == "benchmark":
        from cfjax.benchmark import DEFAULT_DATASETS

        args.datasets = list(DEFAULT_DATASETS)
    if getattr(args, "methods", None) is None and args.command == "benchmark":
        from cfjax import solvers

        args.methods = list(solvers.METHODS)
    if args.command in ("fit", "benchmark"):
        from cfjax.api import enable_compilation_cache

        enable_compilation_cache()
    try:
        return args.func(args)
    except (UserError, ValueError) as err:
        return _fail(str(err).splitlines()[0])
    except ImportError as err:
        return _fail(f"a dependency is missing: {err}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
