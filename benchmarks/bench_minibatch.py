"""Out-of-core minibatch fold-in joint: one epoch over R on disk, its time and peak resident memory.

Writes a synthetic ensemble R (m, n) float32 to an ``.npy`` file (in blocks of columns with
``os.pwrite``, never whole in memory; 30 % positives, each classifier a noisy logistic score of
the label with its own skill, 2 % of the cells missing as NaN) and its labels (10 % labeled, -1
elsewhere), then runs the fit in a fresh child process, so that the peak resident set it
reports (``ru_maxrss`` of that process: the JAX runtime, the blocks in flight, and any page of
the memory map counted as resident) is the fit's alone:

* the first pass (`cfjax.stream.fit_stream`'s normalisers, Gram and validation draw);
* `--epochs` epochs of minibatch fold-in joint (`--batch` columns a step, `--block` columns a
  block read from disk, the next block prefetched by a thread);
* the probabilities written block by block (`cfjax.stream.predict_stream`), and their PR-AUC
  on the unlabeled columns (against the mean of the base scores).

Default: n = 1e5 (seconds). `--big`: n = 1e7, m = 100, d = 16, R 4 GB on disk (issue 18's
benchmark). R's pages are evicted from the page cache after writing (`--warm` keeps them), so
the first pass reads from the disk. The data files are deleted at the end (`--keep` keeps them). Prints a table and
writes benchmarks/results/minibatch[_big].json. Not part of the tests.

    python benchmarks/bench_minibatch.py [--big] [--n N] [--m 100] [--d 16] [--batch 2048] [--block 65536]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import _harness as H
import numpy as np

GEN_BLOCK = 1 << 18  # columns per block written when generating R


def generate(folder: Path, m: int, n: int, seed: int = 0, evict: bool = True) -> dict:
    """R.npy (m, n) float32 and labels.npy (n,) in `folder`, R written block by block; with
    `evict`, R's pages are then dropped from the page cache (fsync + POSIX_FADV_DONTNEED on this
    file only), so the fit reads it from the disk rather than from memory."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "R.npy"
    y = (rng.uniform(size=n) < 0.3).astype(np.float32)
    labels = np.where(rng.uniform(size=n) < 0.1, y, -1.0).astype(np.float32)
    skill = rng.uniform(0.0, 0.3, size=(m, 1)).astype(np.float32)
    bias = rng.normal(0.0, 0.3, size=(m, 1)).astype(np.float32)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (m, n)})
        offset = f.tell()
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, offset + 4 * m * n)
        for start in range(0, n, GEN_BLOCK):
            stop = min(start + GEN_BLOCK, n)
            shared = rng.normal(size=(1, stop - start)).astype(np.float32)  # correlated errors
            z = skill * (2 * y[start:stop] - 1) + bias + 1.0 * shared + rng.normal(size=(m, stop - start)).astype(
                np.float32)
            block = 1.0 / (1.0 + np.exp(-z))
            block[rng.uniform(size=block.shape) < 0.02] = np.nan
            block[:, np.isnan(block).all(axis=0)] = 0.5
            for u in range(m):
                os.pwrite(fd, np.ascontiguousarray(block[u]).tobytes(), offset + 4 * (u * n + start))
        if evict:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    np.save(folder / "labels.npy", labels)
    np.save(folder / "y_true.npy", y)
    return {"R_bytes": path.stat().st_size}


def child(args: argparse.Namespace) -> None:
    """The measured process: stream fit + predictions; prints one JSON line."""
    import jax

    import cfjax
    from cfjax import metrics, stream

    folder = Path(args.folder)
    source = stream.open_columns(folder)
    m, n = source.shape
    config = cfjax.Config(method="joint", latent_dim=args.d, max_iter=args.epochs, patience=0,
                          options=(("batch_size", args.batch), ("schedule", "constant")))
    hparams = cfjax.solvers.get("joint").hparams()
    timings: dict = {}
    start = time.perf_counter()
    result = stream.fit_stream(jax.random.key(0), source, hparams, config, block_size=args.block, timings=timings)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    out = stream.predict_stream(result.params, source, folder / "proba.npy", hparams, config, block_size=args.block)
    predict_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the fit's and the prediction's
    proba = np.load(out, mmap_mode="r")
    y = np.load(folder / "y_true.npy", mmap_mode="r")
    unlabeled = np.load(folder / "labels.npy", mmap_mode="r") == -1
    take = np.flatnonzero(unlabeled)[:1_000_000]  # PR-AUC on up to 1e6 unlabeled columns
    mean = np.nanmean(source.R.read(0, n)[:, take], axis=0) if n <= 1_000_000 else None  # after the peak
    score = float(metrics.average_precision(np.asarray(y[take]), np.asarray(proba[take])))
    print(json.dumps(dict(
        m=m, n=n, d=args.d, batch=args.batch, block=args.block, epochs=int(result.n_iter),
        stats_pass_s=timings["stats_s"], epoch_s=timings["epoch_s"], fit_s=fit_s, predict_s=predict_s,
        peak_rss_bytes=peak, test_pr_auc=score,
        mean_pr_auc=None if mean is None else float(metrics.average_precision(np.asarray(y[take]), mean)),
        history_total=np.asarray(result.history.total).tolist(),
    )))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="n = 1e7 (R: 4 GB on disk at m = 100)")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--block", type=int, default=65536)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--dir", default="/tmp/cfjax_bench_minibatch")
    parser.add_argument("--keep", action="store_true", help="keep the data files")
    parser.add_argument("--out", default=None,
                        help="the JSON (default benchmarks/results/minibatch.json, minibatch_big.json with --big)")
    parser.add_argument("--warm", action="store_true",
                        help="leave R in the page cache after writing it (default: evicted, read from disk)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    n = args.n or (10_000_000 if args.big else 100_000)
    meta = H.provenance()
    print(H.header_line(meta))
    folder = Path(args.dir) / f"n{n}_m{args.m}"
    start = time.perf_counter()
    written = generate(folder, args.m, n, evict=not args.warm)
    generate_s = time.perf_counter() - start
    print(f"wrote {folder}/R.npy ({written['R_bytes'] / 2**30:.2f} GiB) in {generate_s:.0f} s")
    try:
        cmd = [sys.executable, __file__, "--child", "--folder", str(folder), "--d", str(args.d), "--batch",
               str(args.batch), "--block", str(args.block), "--epochs", str(args.epochs)]
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise SystemExit(f"the measured process failed:\n{run.stderr[-4000:]}")
        res = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep:
            for name in ("R.npy", "labels.npy", "y_true.npy", "proba.npy"):
                (folder / name).unlink(missing_ok=True)
            try:
                folder.rmdir()
            except OSError:
                pass
    res.update(generate_s=generate_s, R_bytes=written["R_bytes"], page_cache="warm" if args.warm else "evicted")
    rows = [[f"{res['m']} x {res['n']:.0e}", res["d"], res["batch"], res["block"],
             f"{res['R_bytes'] / 2**30:.2f}", f"{res['stats_pass_s']:.1f}",
             " ".join(f"{t:.1f}" for t in res["epoch_s"]), f"{res['predict_s']:.1f}",
             f"{res['peak_rss_bytes'] / 2**30:.2f}", f"{res['test_pr_auc']:.4f}"]]
    print(H.markdown_table(["m x n", "d", "batch", "block", "R GiB", "first pass s", "epoch s", "predict s",
                            "peak RSS GiB", "test PR-AUC"], rows))
    path = H.write_json(args.out or H.RESULTS / f"minibatch{'_big' if args.big else ''}.json", res, meta)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
