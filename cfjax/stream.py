"""Out-of-core minibatch fits: R (and labels, optional C) read from disk in blocks of columns.

Minibatch fold-in joint (`cfjax.solvers.minibatch`) needs no instance factors in memory, so n is
bounded by the disk: `fit_stream` reads R in blocks of columns from a memory-mapped ``.npy``
(or a zarr array: ``pip install "cfjax[zarr]"``), a background thread reading the next block
while the current one computes (`prefetch`), and runs the same jitted `run_batches` on each
block; `predict_stream` folds in every column of the fitted X and writes the probabilities to
an ``.npy`` block by block (`np.lib.format.open_memmap`). The command takes such input:
``cfjax fit R.npy --labels labels.npy --output fit.npz`` (`cfjax.cli`).

**Input** (`open_columns`): R (m, n) probabilities, NaN = unobserved (zero confidence, as
everywhere in the library), or an (m, K, n) ensemble of K class probabilities (NaN in all K =
unobserved; read as `from_numpy` reads it: K = 2 as the binary R[:, 1, :], K >= 3 as the m K
class rows with one-hot labels); labels (n,) in {0, 1} (K classes: 0..K-1) and -1 or NaN for
unlabeled; an optional base confidence C (m, n). Each is an array in memory, a ``.npy`` path (memory-mapped; a block is
copied out of a fresh map that is closed again, so the pages read never accumulate in the
process's resident memory), a zarr array or its path, or a directory holding ``R.npy`` (or
``R.zarr``), ``labels.npy`` and optionally ``C.npy``. Shapes and the label file's length are
checked when opened; values (R in [0, 1] or NaN, a K-class cell NaN in all K or none and summing
to 1, labels in {0, 1, -1, NaN} (or 0..K-1), C finite and >= 0, no column without an observed
cell) block by block as they stream, with a ValueError naming the
array and the column.

**What differs from the in-memory fit.** A pass over the data first gathers the global
normalisers (`minibatch.Scale`), the Gram matrix of C * R (the "svd" start, through
`solvers.base.gram_factors`: the in-memory fit's start above `SVD_GRAM_CELLS`, up to signs)
and the held-out validation columns (option `validation_fraction`: a keyed fraction of the
labeled columns, kept in memory). Shuffling is two-level: a keyed order of the blocks and a
keyed permutation of the columns within each block, each epoch (a global permutation would
read the disk at random). Early stopping is the in-memory rule, per epoch, on the validation
columns' supervised loss, else on the epoch's mean batch objective (the history's "total"; the
in-memory fit evaluates the full objective instead, which here would cost another pass).
Confidence strategies that learn from the training data (calibration, ...) are refused: what
they learn needs its own pass. The returned params hold no Y ((d, 0)): `predict_stream` folds
it in.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfjax import aggregators, confidence, losses, metrics, ridge
from cfjax.compilation import jit
from cfjax.data import check_class_cells
from cfjax.solvers import driver, minibatch
from cfjax.solvers.base import gram_factors
from cfjax.structs import Config, FitResult, History, Hparams, Params, Problem

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BLOCK_SIZE",
    "Block",
    "ColumnSource",
    "fit_stream",
    "open_columns",
    "predict_stream",
    "prefetch",
    "read_block",
]

#: Columns per optimizer step when the command is given none. Per column, batches of 512 to 3840
#: cost the same at (m, d) = (100, 16) on 2 CPU cores (267-292 ms a block of 65536); 4096 cost
#: 439 ms, because its Y solve no longer fits one chunk of `cfjax.ridge.default_chunk_size`
#: (3840 at d = 16) and runs as two overlapping ones.
DEFAULT_BATCH_SIZE = 2048
#: Columns per block read from disk: at m = 100 in float32, 26 MB (twice that with the
#: prefetched block), large enough that a block's reads are long sequential runs.
DEFAULT_BLOCK_SIZE = 65536

_R_TOL = 1e-6  # as `cfjax.from_numpy`: values this far outside [0, 1] are clipped, beyond refused

PathLike = str | os.PathLike


class _Npy:
    """A 1-D or 2-D ``.npy`` read by column ranges through a memory map opened per read."""

    def __init__(self, path: Path, name: str):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{name}: {str(path)!r} is not a readable .npy file ({err})") from None
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{name}: {str(path)!r} is not a single .npy array")
        self.path, self.shape, self.dtype = path, arr.shape, arr.dtype
        del arr

    def read(self, start: int, stop: int) -> np.ndarray:
        arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        try:
            return np.array(arr[..., start:stop])
        finally:
            del arr  # unmaps: the pages read leave this process's resident set


class _Memory:
    """An array in memory (or a zarr array: anything with `shape`, `dtype` and slicing)."""

    def __init__(self, arr: Any):
        self.arr, self.shape, self.dtype = arr, tuple(arr.shape), np.dtype(arr.dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.arr[..., start:stop])


def _zarr(path: Path, name: str) -> _Memory:
    try:
        import zarr
    except ImportError:
        raise ImportError(f'{name}: reading {str(path)!r} needs zarr: pip install "cfjax[zarr]"') from None
    return _Memory(zarr.open(str(path), mode="r"))


def _reader(value: Any, name: str) -> _Npy | _Memory | None:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if path.suffix == ".zarr" or (path.is_dir() and ((path / ".zarray").exists() or (path / "zarr.json").exists())):
            return _zarr(path, name)
        if not path.is_file():
            raise ValueError(f"{name}: no such file {str(path)!r}")
        return _Npy(path, name)
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.ndarray):
        return _Memory(value)  # a zarr array
    arr = np.asarray(value)
    return _Memory(arr)


@dataclasses.dataclass(frozen=True)
class ColumnSource:
    """Where the columns come from (`open_columns`): readers of R, labels and C by column range."""

    R: Any
    labels: Any
    C: Any = None

    @property
    def shape(self) -> tuple[int, int]:
        """(m classifiers, n instances)."""
        return self.R.shape[0], self.R.shape[-1]

    @property
    def n_classes(self) -> int:
        """K: R's class axis for an (m, K, n) source, else 2."""
        return self.R.shape[1] if len(self.R.shape) == 3 else 2

    @property
    def rows(self) -> int:
        """The rows of the problem a block becomes: m, or m K for K >= 3 classes."""
        m, _ = self.shape
        return m if self.n_classes == 2 else m * self.n_classes


def open_columns(R: Any, labels: Any = None, C: Any = None) -> ColumnSource:
    """Opens R (m, n) or (m, K, n), labels (n,) and the optional confidence C (m, n) for reading
    in blocks.

    Args:
      R: an array, a ``.npy`` path (memory-mapped), a zarr array or path, or a directory with
        ``R.npy`` or ``R.zarr`` and, unless given here, ``labels.npy`` and ``C.npy``. (m, K, n):
        K class probabilities per classifier and instance.
      labels: (n,) 0 / 1 (K classes: 0..K-1), -1 or NaN for unlabeled; an array or a ``.npy``
        path. Required.
      C: optional base confidence (m, n), one per classifier and instance.

    Raises:
      ValueError: naming `R`, `labels` or `C`: missing or unreadable file, R not 2-D or 3-D (or
        K < 2) or not numeric, labels of another length than R's columns, C of another shape
        than (m, n).
    """
    if isinstance(R, (str, os.PathLike)) and Path(R).is_dir() and Path(R).suffix != ".zarr":
        folder = Path(R)
        R = next((folder / f for f in ("R.npy", "R.zarr") if (folder / f).exists()), None)
        if R is None:
            raise ValueError(f"R: the directory {str(folder)!r} holds no R.npy or R.zarr")
        if labels is None and (folder / "labels.npy").exists():
            labels = folder / "labels.npy"
        if C is None and (folder / "C.npy").exists():
            C = folder / "C.npy"
    r = _reader(R, "R")
    if len(r.shape) not in (2, 3):
        raise ValueError(f"R: expected an (m, n) or (m, K, n) array, got shape {r.shape}")
    if len(r.shape) == 3 and r.shape[1] < 2:
        raise ValueError(f"R: an (m, K, n) ensemble needs K >= 2 classes, got K={r.shape[1]}")
    if r.dtype.kind not in "fiu":
        raise ValueError(f"R: expected a numeric array, got dtype {r.dtype}")
    m, n = r.shape[0], r.shape[-1]
    if m < 1 or n < 2:
        raise ValueError(f"R: needs m >= 1 classifiers and n >= 2 instances, got shape {tuple(r.shape)}")
    if labels is None:
        raise ValueError("labels: required (an (n,) array or .npy file; -1 or NaN marks an unlabeled column)")
    y = _reader(labels, "labels")
    if tuple(y.shape) != (n,):
        raise ValueError(f"labels: expected shape ({n},) to match R's n={n} columns, got {tuple(y.shape)}")
    c = _reader(C, "C")
    if c is not None and tuple(c.shape) != (m, n):
        raise ValueError(f"C: expected shape {(m, n)} to match R, got {tuple(c.shape)}")
    return ColumnSource(R=r, labels=y, C=c)


class Block(NamedTuple):
    """Columns [start, start + valid) of the source, padded to the block size (host arrays).

    R (m, size) (or (m, K, size) for K >= 3 classes) with NaN in the padding, C (m, size) or
    None, labels (size,) with -1 there."""

    start: int
    valid: int
    R: np.ndarray
    C: np.ndarray | None
    labels: np.ndarray


def read_block(source: ColumnSource, start: int, size: int, dtype: Any = None) -> Block:
    """Reads and validates columns [start, min(start + size, n)), padded to `size` columns."""
    dtype = np.dtype(dtype or jnp.result_type(float))
    m, n = source.shape
    K = source.n_classes
    stop = min(start + size, n)
    k = stop - start
    values = source.R.read(start, stop)
    if len(source.R.shape) == 3:
        check_class_cells(values, start, f" in columns {start}..{stop - 1}")
        if K == 2:  # as `from_numpy`: the class-1 probabilities are the binary ensemble
            values = values[:, 1, :]
    R = np.full((m, size) if K == 2 else (m, K, size), np.nan, dtype)
    R[..., :k] = values
    labels = np.full((size,), -1.0, dtype)
    labels[:k] = source.labels.read(start, stop)
    C = None
    if source.C is not None:
        C = np.zeros((m, size), dtype)
        C[:, :k] = source.C.read(start, stop)
    _check_block(R[..., :k], None if C is None else C[:, :k], labels[:k], start, K)
    return Block(start=start, valid=k, R=R, C=C, labels=labels)


def _check_block(R: np.ndarray, C: np.ndarray | None, labels: np.ndarray, start: int, n_classes: int = 2) -> None:
    where = f"columns {start}..{start + R.shape[-1] - 1}"
    observed = ~np.isnan(R)
    if R.ndim == 3:
        observed = observed.all(axis=1)
    empty = np.flatnonzero(~observed.any(axis=0))
    if empty.size:
        raise ValueError(f"R: instance column(s) {(empty[:5] + start).tolist()} have no observed cell")
    if observed.any():
        low, high = np.nanmin(R), np.nanmax(R)
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"R: contains infinite values in {where} (use NaN for a missing prediction)")
        if low < -_R_TOL or high > 1 + _R_TOL:
            raise ValueError(f"R: probabilities must lie in [0, 1]; found values in [{low:.6g}, {high:.6g}] in {where}")
    unlabeled = np.isnan(labels) | (labels == -1)
    bad = ~unlabeled & ~_has_label(labels, n_classes)
    if bad.any():
        allowed = "0, 1" if n_classes == 2 else f"classes 0..{n_classes - 1}"
        raise ValueError(f"labels: values must be {allowed}, or -1/NaN for unlabeled; found "
                         f"{np.unique(labels[bad])[:5].tolist()} in {where}")
    if C is not None:
        values = C[observed]
        if not np.isfinite(values).all():
            raise ValueError(f"C: contains NaN or infinite values on observed cells in {where}")
        if (values < 0).any():
            raise ValueError(f"C: must be >= 0 (found a negative value in {where})")


def prefetch(read: Callable[[Any], Any], items: Iterable[Any], depth: int = 1) -> Iterator[Any]:
    """Yields `read(item)` for each item, in order, with up to `depth` reads done ahead by a
    background thread (the next block is read while the caller computes on the current one).

    An exception in `read` is raised here, at the item that failed. Stopping early (break, an
    exception in the caller) stops the thread after the read in progress.
    """
    done = object()
    results: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
    halt = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if halt.is_set():
                    return
                results.put((True, read(item)))
        except BaseException as err:  # noqa: BLE001  (handed to the consumer, raised there)
            results.put((False, err))
            return
        results.put((True, done))

    thread = threading.Thread(target=work, name="cfjax-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = results.get()
            if not ok:
                raise value
            if value is done:
                return
            yield value
    finally:
        halt.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                results.get_nowait()
            except queue.Empty:
                thread.join(0.01)


# ----------------------------------------------------------------------------------------------
# jitted per-block programs


def _heldout(key: jax.Array, start: jax.Array, size: int, fraction: jax.Array) -> jax.Array:
    """The validation draw of a block's columns: keyed by the block's first column."""
    return jax.random.uniform(jax.random.fold_in(key, start), (size,)) < fraction


def _block_problem(block: tuple, heldout: jax.Array, hparams: Hparams, config: Config) -> Problem:
    """The prepared `Problem` of a padded block: `from_numpy`'s conventions, then `driver.prepare`
    (space and confidence; the strategies allowed here learn nothing)."""
    R, C, labels, valid = block
    size = R.shape[-1]
    real = jnp.arange(size) < valid
    if R.ndim == 3:  # K classes: the m K class rows of `from_numpy`, one-hot labels
        m, K, _ = R.shape
        cell = ~jnp.isnan(R).any(axis=1) & real[None, :]  # (m, size)
        observed = jnp.repeat(cell, K, axis=0)
        values = jnp.where(observed, jnp.clip(jnp.nan_to_num(R), 0.0, 1.0).reshape(m * K, size), 0.0)
        C = None if C is None else jnp.repeat(C, K, axis=0)
        has_label = _has_label(labels, K) & real
        targets = jax.nn.one_hot(jnp.where(has_label, labels, -1).astype(jnp.int32), K, dtype=R.dtype, axis=0)
    else:
        observed = ~jnp.isnan(R) & real[None, :]
        values = jnp.where(observed, jnp.clip(jnp.nan_to_num(R), 0.0, 1.0), 0.0)
        has_label = ((labels == 0) | (labels == 1)) & real
        targets = jnp.where(has_label, labels, 0.0)
    base = observed.astype(R.dtype) if C is None else jnp.where(observed, C, 0.0)
    problem = Problem(R=values, C=base, observed=observed, labels=targets,
                      labeled=has_label & ~heldout, validation=has_label & heldout)
    return driver.prepare(problem, hparams, config, stats={})[0]


def _stats(block, key, start, fraction, hparams, config):
    """(sum C, (C R)(C R)^T, training columns per class (K,), held-out mask) of one block."""
    heldout = _heldout(key, start, block[0].shape[-1], fraction)
    problem = _block_problem(block, heldout, hparams, config)
    A = problem.C * problem.R
    gram = jnp.matmul(A, A.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.sum(problem.C), gram, losses.class_counts(problem, problem.labeled), heldout


_stats = jit(_stats, static_argnames="config")


def _validation_loss(trainable, validation, hparams, config):
    """(supervised loss, PR-AUC) of the held-out columns, their Y folded in."""
    Y = ridge.update_Y(trainable.X, validation.R, validation.C, hparams.lam, chunk_size=config.chunk_size)
    params = Params(X=trainable.X, Y=Y, theta=trainable.theta)
    loss = losses.supervised_parts(params, validation, hparams, config, mask=validation.validation)[0]
    score = metrics.pr_auc_of_logits(validation.labels, aggregators.logits(params, config, validation.observed),
                                     validation.validation)
    return loss, score


_validation_loss = jit(_validation_loss, static_argnames="config")


def _train_block(trainable, opt_state, block, key, vkey, start, fraction, scale, hparams, config, steps):
    """`minibatch.run_batches` over one block's columns, in a keyed order within the block."""
    size = block[0].shape[-1]
    heldout = _heldout(vkey, start, size, fraction)
    problem = _block_problem(block, heldout, hparams, config)
    index = minibatch.batch_indices(key, size, block[3], minibatch.batch_size(config, size),
                                    config.option("shuffle", True))
    return minibatch.run_batches(trainable, opt_state, problem, index, scale, hparams, config, steps)


_train_block = jit(_train_block, static_argnames=("config", "steps"))


def _proba_block(trainable, block, vkey, start, fraction, hparams, config):
    heldout = _heldout(vkey, start, block[0].shape[-1], fraction)
    problem = _block_problem(block, heldout, hparams, config)
    Y = ridge.update_Y(trainable.X, problem.R, problem.C, hparams.lam, chunk_size=config.chunk_size)
    params = Params(X=trainable.X, Y=Y, theta=trainable.theta)
    z = aggregators.logits(params, config, problem.observed)
    return jax.nn.sigmoid(z) if z.ndim == 1 else jax.nn.softmax(z, axis=0)


_proba_block = jit(_proba_block, static_argnames="config")


# ----------------------------------------------------------------------------------------------
# the front doors


def _check(source: ColumnSource, hparams: Hparams | None, config: Config | None,
           block_size: int) -> tuple[Hparams, Config]:
    from cfjax import solvers
    from cfjax.validation import (
        check_config,
        check_multiclass,
        check_scalar_hparams,
        default_latent_dim,
    )

    if not isinstance(source, ColumnSource):
        raise ValueError(f"source: expected a cfjax.stream.ColumnSource (open_columns), got {type(source).__name__}")
    _, n = source.shape
    rows, K = source.rows, source.n_classes
    config = Config(method="joint", options=(("batch_size", DEFAULT_BATCH_SIZE),)) if config is None else config
    if not isinstance(config, Config):
        raise ValueError(f"config: expected cfjax.Config, got {type(config).__name__}")
    if config.method != "joint" or config.option("batch_size") is None:
        raise ValueError(f"config: streaming from disk is minibatch training: method 'joint' with the option "
                         f"batch_size (got method {config.method!r}, options {config.options!r})")
    if config.latent_dim is None:
        config = config.replace(latent_dim=default_latent_dim(rows, n, K))
    check_config(config)
    if K > 2:
        check_multiclass(config, K)
    if config.latent_dim > min(rows, n):
        raise ValueError(f"latent_dim: must be <= min(rows of R, n) = {min(rows, n)}, got {config.latent_dim}")
    strategy = confidence.get(config.confidence)
    if strategy.learns_from_labels or _learns(strategy, rows, config):
        raise ValueError(f"config.confidence: {config.confidence!r} learns from the training data, which a "
                         "stream would need another pass for; use uniform, certainty or label_aware")
    hparams = solvers.get("joint").hparams() if hparams is None else hparams
    check_scalar_hparams(hparams)
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size: expected an int >= 1, got {block_size!r}")
    return hparams, config


def _learns(strategy: confidence.Strategy, m: int, config: Config) -> bool:
    """Whether the strategy's `learn` returns anything (shapes only, nothing computed)."""
    dtype = jnp.result_type(float)
    tiny = Problem(R=jnp.zeros((m, 2), dtype), C=jnp.ones((m, 2), dtype), observed=jnp.ones((m, 2), bool),
                   labels=jnp.zeros((2,), dtype), labeled=jnp.ones((2,), bool), validation=jnp.zeros((2,), bool))
    return bool(jax.tree.leaves(jax.eval_shape(strategy.learn, tiny, Hparams.create())))


def _block_size(config: Config, block_size: int, n: int) -> int:
    """Columns per block, a multiple of the batch (so only the last block has a partial batch)."""
    batch = minibatch.batch_size(config, n)
    return max(batch, min(block_size, n) // batch * batch)


def _device_block(block: Block) -> tuple:
    return (jnp.asarray(block.R), None if block.C is None else jnp.asarray(block.C), jnp.asarray(block.labels),
            jnp.asarray(block.valid, jnp.int32))


def fit_stream(
    key: jax.Array,
    source: ColumnSource,
    hparams: Hparams | None = None,
    config: Config | None = None,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    validation_fraction: float = 0.0,
    init: Params | None = None,
    progress: bool = False,
    timings: dict | None = None,
) -> FitResult:
    """Minibatch fold-in joint on columns read from disk, one block in memory at a time (+ one
    prefetched).

    Args:
      key: typed PRNG key: the start, the validation draw, and the shuffling of every epoch.
      source: `open_columns(...)`.
      hparams: traced (default: joint's registry defaults). config: method "joint" with the
        option batch_size (default: `DEFAULT_BATCH_SIZE`); `max_iter` epochs; `patience` epochs.
      block_size: columns per block read from disk (rounded down to a multiple of the batch).
      validation_fraction: in [0, 1): this keyed fraction of the labeled columns is held out
        (kept in memory) for early stopping; 0: early stopping on the training objective.
      init: `Params` to start from (X and theta; Y is not read), instead of the "svd" or
        "random" start.
      progress: a tqdm bar over blocks. timings: a dict that receives "stats_s" (the first pass)
        and "epoch_s" (a list, seconds per epoch).

    Returns:
      `FitResult` with params (X, an empty (d, 0) Y, theta), the per-epoch `History` (total,
      recon, sup: the epoch's mean batch estimates; valid_pr_auc on the held-out columns), the
      epochs run, and converged = False (epochs stop on patience or max_iter).
    """
    hparams, config = _check(source, hparams, config, block_size)
    if not (isinstance(validation_fraction, (int, float)) and 0.0 <= validation_fraction < 1.0):
        raise ValueError(f"validation_fraction: must lie in [0, 1), got {validation_fraction!r}")
    m, n = source.shape
    rows, K = source.rows, source.n_classes
    dtype = jnp.result_type(float)
    size = _block_size(config, block_size, n)
    starts = list(range(0, n, size))
    steps = minibatch.steps_per_epoch(config, n)
    k_init, k_valid, k_shuffle = jax.random.split(key, 3)
    fraction = jnp.asarray(validation_fraction, dtype)
    timings = {} if timings is None else timings

    # pass 1: normalisers, the Gram of the start, the held-out columns
    t0 = time.perf_counter()
    totals = [jnp.zeros((), dtype), jnp.zeros((rows, rows), dtype), jnp.zeros((K,), dtype)]
    held: list[Block] = []
    for block in prefetch(lambda s: read_block(source, s, size, dtype), starts):
        *parts, heldout = _stats(_device_block(block), k_valid, jnp.asarray(block.start), fraction, hparams, config)
        totals = [a + b for a, b in zip(totals, parts)]
        picked = np.flatnonzero(np.asarray(heldout)[: block.valid] & _has_label(block.labels[: block.valid], K))
        if picked.size:
            held.append(Block(block.start, picked.size, block.R[..., picked],
                              None if block.C is None else block.C[:, picked], block.labels[picked]))
    confidence_sum, gram, counts = totals
    if K == 2 and (float(counts[1]) < 1 or float(counts[0]) < 1):
        raise ValueError(f"labels: the training columns need both classes, got {int(counts[1])} positives "
                         f"and {int(counts[0])} negatives")
    if K > 2 and int(np.sum(np.asarray(counts) >= 1)) < 2:
        raise ValueError(f"labels: the training columns need at least two classes, got class counts "
                         f"{np.asarray(counts).astype(int).tolist()}")
    scale = minibatch.Scale(n=jnp.asarray(n, dtype), confidence=confidence_sum, class_counts=counts)
    validation = _validation_problem(held, hparams, config) if held else None
    trainable = _start(k_init, gram, m, hparams, config, dtype, K) if init is None else minibatch.Trainable(
        jnp.asarray(init.X, dtype), init.theta)
    opt_state = minibatch.make_optimizer(hparams, config, steps).init(trainable)
    timings["stats_s"] = time.perf_counter() - t0

    # epochs
    history: list[tuple[float, float, float, float]] = []
    best, best_monitor, bad = trainable, np.inf, 0
    epoch_s = timings.setdefault("epoch_s", [])
    bar = _bar(config.max_iter * len(starts)) if progress else None
    for epoch in range(config.max_iter):
        t0 = time.perf_counter()
        e_key = jax.random.fold_in(k_shuffle, epoch)
        order = np.asarray(jax.random.permutation(e_key, len(starts))) if config.option("shuffle", True) else \
            np.arange(len(starts))
        sums = np.zeros(3)
        for i, block in zip(order, prefetch(lambda i: read_block(source, starts[i], size, dtype), order)):
            trainable, opt_state, values = _train_block(
                trainable, opt_state, _device_block(block), jax.random.fold_in(e_key, int(i) + 1), k_valid,
                jnp.asarray(block.start), fraction, scale, hparams, config, steps)
            counted = np.asarray(values)[: math.ceil(block.valid / minibatch.batch_size(config, n))]
            sums += counted.sum(axis=0)
            if bar is not None:
                bar.update()
        total, recon, sup = sums / steps
        if validation is not None:
            loss, score = (float(v) for v in _validation_loss(trainable, validation, hparams, config))
        else:
            loss, score = total, float("nan")
        history.append((total, recon, sup, score))
        epoch_s.append(time.perf_counter() - t0)
        if loss < best_monitor:
            best, best_monitor, bad = jax.tree.map(jnp.copy, trainable), loss, 0
        else:
            bad += 1
        if 0 < config.patience <= bad:
            break
    if bar is not None:
        bar.close()
    final = best if config.patience > 0 else trainable
    return _result(final, history, config, dtype)


def _has_label(labels: Any, n_classes: int = 2) -> Any:
    """Which entries are a class label 0..K-1 (NaN and -1 are not); NumPy or jnp arrays."""
    xp = jnp if isinstance(labels, jax.Array) else np
    return (labels >= 0) & (labels <= n_classes - 1) & (labels == xp.floor(labels))


def _validation_problem(held: list[Block], hparams: Hparams, config: Config) -> Problem:
    """The held-out columns as one in-memory problem (every column a validation column)."""
    R = np.concatenate([b.R for b in held], axis=-1)
    C = None if held[0].C is None else np.concatenate([b.C for b in held], axis=1)
    labels = np.concatenate([b.labels for b in held])
    block = (jnp.asarray(R), None if C is None else jnp.asarray(C), jnp.asarray(labels),
             jnp.asarray(R.shape[1], jnp.int32))
    return _block_problem(block, jnp.ones(R.shape[-1], bool), hparams, config)


def _start(key: jax.Array, gram: jax.Array, m: int, hparams: Hparams, config: Config, dtype,
           n_classes: int = 2) -> minibatch.Trainable:
    """X of the "svd" start from the accumulated Gram of R's rows (or keyed random), theta as
    `initial_params` (m classifiers, `n_classes` classes)."""
    d = config.latent_dim
    if config.init == "svd":
        X = gram_factors(gram, d)[0]
    else:
        X = config.init_scale * jax.random.normal(jax.random.split(key)[0], (d, gram.shape[0]), dtype)
    theta = aggregators.initial_theta(config.aggregator, jax.random.fold_in(key, 1), m, d, hparams, dtype,
                                      n_classes=n_classes)
    return minibatch.Trainable(X=X.astype(dtype), theta=theta)


def _result(trainable: minibatch.Trainable, history: list, config: Config, dtype) -> FitResult:
    rows = np.asarray(history, np.float64).reshape(-1, 4)
    full = np.concatenate([rows, np.repeat(rows[-1:], config.max_iter - len(rows), axis=0)])
    hist = History(*(jnp.asarray(full[:, j], dtype) for j in range(4)))
    params = Params(X=trainable.X, Y=jnp.zeros((config.latent_dim, 0), dtype), theta=trainable.theta)
    return FitResult(params=params, history=hist, n_iter=jnp.asarray(len(rows), jnp.int32),
                     converged=jnp.zeros((), bool), state=None, info={"confidence": {}})


def _bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the dev extra
        raise ImportError('progress bars need tqdm: pip install "cfjax[progress]"') from None
    return tqdm(total=total, desc="blocks", unit="block")


def predict_stream(
    params: Params,
    source: ColumnSource,
    output: PathLike,
    hparams: Hparams | None = None,
    config: Config | None = None,
    *,
    key: jax.Array | None = None,
    validation_fraction: float = 0.0,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Path:
    """Writes the probability of every column of `source` to the ``.npy`` `output` (n,), or the
    class probabilities (K, n) of a K-class source, block by block: each block's Y is folded in from the fitted X on the same system as the fit (the
    fit's `key` and `validation_fraction` reproduce its held-out columns, which matters only to
    a confidence strategy that reads the labels). Returns the path written."""
    hparams, config = _check(source, hparams, config, block_size)
    n = source.shape[1]
    dtype = jnp.result_type(float)
    size = _block_size(config, block_size, n)
    k_valid = jax.random.split(jax.random.key(0) if key is None else key, 3)[1]
    fraction = jnp.asarray(validation_fraction, dtype)
    trainable = minibatch.Trainable(jnp.asarray(params.X, dtype), params.theta)
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    shape = (n,) if source.n_classes == 2 else (source.n_classes, n)
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.dtype(dtype), shape=shape)
    try:
        for block in prefetch(lambda s: read_block(source, s, size, dtype), range(0, n, size)):
            proba = _proba_block(trainable, _device_block(block), k_valid, jnp.asarray(block.start), fraction,
                                 hparams, config)
            out[..., block.start: block.start + block.valid] = np.asarray(proba)[..., : block.valid]
        out.flush()
    finally:
        del out
    return target
