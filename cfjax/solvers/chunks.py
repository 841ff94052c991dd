"""Long fits in chunks of steps, from the host: progress bars, checkpoints and resuming.

The driver's `advance` can run any number of steps on a state, so a fit of T steps is the same
as `advance` called on chunks of c steps one after another. `run_in_chunks` does that from the
host: between chunks it updates a tqdm bar, saves a checkpoint (orbax-checkpoint, an optional
extra: `pip install "cfjax[checkpoint]"`) and stops early once every fit has stopped (the rest
of the history then repeats the last values, exactly what the scan would have recorded). A run
given a checkpoint folder that already holds a checkpoint of the same run resumes from it, so
an interrupted fit or sweep ends with the same result as an uninterrupted one.

It serves `cfjax.fit` and `cfjax.sweep.run` alike: the caller passes jitted `start`, `advance`
and `finish` closures (for a sweep, batched over the grid), and a `fingerprint` describing the
run, which a checkpoint must match to be resumed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from cfjax.structs import FitResult, History

__all__ = ["DEFAULT_CHUNK", "run_in_chunks"]

#: Steps per chunk when the caller gives none: a bar that moves, without many dispatches.
DEFAULT_CHUNK = 25

_FINGERPRINT = "cfjax_run.json"


def _progress_bar(total: int, desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the dev extra
        raise ImportError('progress bars need tqdm: pip install "cfjax[progress]"') from None
    return tqdm(total=total, desc=desc, unit="step")


class _Checkpoints:
    """One folder of orbax checkpoints of one run (state, history so far, steps done)."""

    def __init__(self, folder: str | os.PathLike, fingerprint: dict[str, Any]):
        try:
            import orbax.checkpoint as ocp
        except ImportError:
            raise ImportError('checkpoints need orbax-checkpoint: pip install "cfjax[checkpoint]"') from None
        self._ocp = ocp
        self.folder = Path(folder).absolute()
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / _FINGERPRINT
        text = json.dumps(fingerprint, sort_keys=True, default=str)
        if marker.exists() and marker.read_text() != text:
            raise ValueError(
                f"checkpoint: {str(self.folder)!r} holds checkpoints of another run "
                "(different problem shapes, config, hyperparameters or length); use a new folder"
            )
        marker.write_text(text)
        self.manager = ocp.CheckpointManager(
            self.folder / "steps", options=ocp.CheckpointManagerOptions(max_to_keep=2)
        )

    def latest(self, template: Any) -> Any | None:
        step = self.manager.latest_step()
        if step is None:
            return None
        return self.manager.restore(step, args=self._ocp.args.StandardRestore(template))

    def save(self, done: int, payload: Any) -> None:
        self.manager.save(done, args=self._ocp.args.StandardSave(payload))
        self.manager.wait_until_finished()


def run_in_chunks(
    start: Callable[[], Any],
    advance: Callable[[Any, int], tuple[Any, History]],
    finish: Callable[[Any, History], FitResult],
    total: int,
    *,
    chunk: int | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    fingerprint: dict[str, Any] | None = None,
    n_fits: int = 1,
    desc: str = "fit",
) -> FitResult:
    """Runs `total` steps as chunks of `advance`, then `finish`.

    Args:
      start: () -> the driver state before the first step (batched for a sweep).
      advance: (state, length) -> (state, History of that many steps, iteration axis last).
      finish: (state, full History) -> the FitResult.
      total: the number of steps (Config.max_iter).
      chunk: steps per chunk (default `DEFAULT_CHUNK`); the last chunk may be shorter.
      progress: show a tqdm bar over steps x fits.
      checkpoint: a folder: a checkpoint is written after every chunk, and a run that finds
        one of the same `fingerprint` there resumes from it.
      fingerprint: a JSON-able description of the run (shapes, config, hparams, total).
      n_fits: fits advanced together (the bar counts steps x fits).
    """
    chunk = DEFAULT_CHUNK if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk_steps: must be a positive int, got {chunk}")
    state = start()
    history = None
    done = 0
    store = None
    if checkpoint is not None:
        store = _Checkpoints(checkpoint, {**(fingerprint or {}), "total": total, "chunk": chunk})
        template = {"state": state, "history": _empty_history(state, advance, total), "done": np.zeros((), np.int64)}
        restored = store.latest(template)
        if restored is not None:
            state, history, done = restored["state"], restored["history"], int(restored["done"])
    bar = _progress_bar(total * n_fits, desc) if progress else None
    if bar is not None and done:
        bar.update(done * n_fits)
    try:
        while done < total:
            if bool(np.all(np.asarray(state.stopped))) and history is not None:
                history = _repeat_last(history, done, total)
                if bar is not None:
                    bar.update((total - done) * n_fits)
                done = total
                break
            length = min(chunk, total - done)
            state, part = advance(state, length)
            part = jax.tree.map(np.asarray, part)
            history = _place(history, part, done, total)
            done += length
            if store is not None:
                store.save(done, {"state": state, "history": history, "done": np.asarray(done, np.int64)})
            if bar is not None:
                bar.update(length * n_fits)
    finally:
        if bar is not None:
            bar.close()
    return finish(state, jax.tree.map(np.asarray, history))


def _empty_history(state: Any, advance: Callable, total: int) -> History:
    """A zero History of the full length, shaped like `advance`'s output (for restoring)."""
    shapes = jax.eval_shape(lambda s: advance(s, 1)[1], state)
    return jax.tree.map(lambda s: np.zeros(s.shape[:-1] + (total,), s.dtype), shapes)


def _place(history: History | None, part: History, done: int, total: int) -> History:
    if history is None:
        history = jax.tree.map(lambda p: np.zeros(p.shape[:-1] + (total,), p.dtype), part)

    def put(h, p):
        h = np.array(h)
        h[..., done : done + p.shape[-1]] = p
        return h

    return jax.tree.map(put, history, part)


def _repeat_last(history: History, done: int, total: int) -> History:
    def fill(h):
        h = np.array(h)
        h[..., done:total] = h[..., done - 1 : done]
        return h

    return jax.tree.map(fill, history)
