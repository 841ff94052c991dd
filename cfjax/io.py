"""Fit results as files: one `.npz` holding the arrays, the `Config` as JSON, and a format tag.

`save(path, result, config, hparams, extra)` writes, under stable names,

====================  ==========================================================================
``params/X``          (..., d, m) classifier factors
``params/Y``          (..., d, n) instance factors
``params/theta/<f>``  each leaf of the aggregator's parameters by its field path, e.g.
                      ``params/theta/w`` and ``params/theta/b`` for the weighted aggregator
                      (the mean aggregator has none)
``history/<f>``       `History` fields: total, recon, sup, valid_pr_auc, (..., max_iter)
``n_iter``            iterations run; ``converged`` the flag
``info/<k>/...``      every array of `FitResult.info` by its key path, e.g. ``info/candidate``
                      and ``info/cv_mean`` for `auto`, ``info/confidence/classifier_weight``
                      for the calibration strategy
``hparams/<f>``       every `Hparams` field (scalars, or (G,) for a sweep's grid)
``extra/<k>``         the caller's `extra` arrays
``config_json``       the `Config` as a JSON string (a 0-d unicode array); `options` values that
                      are NamedTuples (auto's candidates) are tagged with their type
``meta_json``         format tag and version, cfjax and jax versions, JAX backend
====================  ==========================================================================

`FitResult.state` (what a fit continues from) is not written: continue from the loaded
`params` as a warm start, or checkpoint long runs (`cfjax.fit(..., checkpoint=folder)`).
The command `cfjax fit --output` writes this format too, with the probabilities in `extra`.

Leading batch axes are kept as they are, so a sweep's (G, S) `FitResult` round-trips too.
Only plain arrays are stored (no pickles): `load` reads with `allow_pickle=False`.
`load(path) -> (FitResult, Config, Hparams)` rebuilds the aggregator's pytree from the
registry (`cfjax.aggregators.get(config.aggregator).init`), so the structure comes from code,
the values from the file. A K-class fit (X of shape (d, m K)) round-trips too: its number of
classes is the K whose template's leaf shapes are the file's (K = 2 first; the file's
``meta_json`` records it as well). Host-side only.

`provenance()` is the record every result folder gets (versions, device, git commit, time).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cfjax import aggregators
from cfjax.structs import Config, FitResult, History, Hparams, Params

__all__ = ["FORMAT", "FORMAT_VERSION", "git_commit", "load", "load_extra", "provenance", "save"]

FORMAT = "cfjax.fit_result"
FORMAT_VERSION = 2  # 2: FitResult.info, Config.space and Config.options

PathLike = str | os.PathLike


def _npz_path(path: PathLike) -> Path:
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _key_name(entry: Any) -> str:
    """A path entry of `jax.tree_util` as a stable name: field, key or index."""
    for attr in ("name", "key", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    raise TypeError(f"unsupported pytree path entry {entry!r}")  # pragma: no cover


def _tree_arrays(prefix: str, tree: Any) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {prefix + "/".join(_key_name(k) for k in path): np.asarray(leaf) for path, leaf in leaves}


def _nested(flat: dict[str, np.ndarray], prefix: str) -> dict[str, Any]:
    """The nested dict of arrays stored under `prefix` (the inverse of `_tree_arrays` for dicts)."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        if not name.startswith(prefix):
            continue
        *parents, leaf = name[len(prefix):].split("/")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = jnp.asarray(value)
    return out


def _encode_option(value: Any) -> Any:
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {"__namedtuple__": type(value).__name__,
                "fields": {k: _encode_option(v) for k, v in value._asdict().items()}}
    if isinstance(value, (tuple, list)):
        return {"__tuple__": [_encode_option(v) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"config.options: cannot store a value of type {type(value).__name__} ({value!r})")


def _option_types() -> dict[str, type]:
    from cfjax.solvers.auto import Candidate

    return {"Candidate": Candidate}


def _decode_option(value: Any) -> Any:
    if isinstance(value, dict) and "__namedtuple__" in value:
        kind = _option_types().get(value["__namedtuple__"])
        if kind is None:
            raise ValueError(f"config.options: unknown stored type {value['__namedtuple__']!r}")
        return kind(**{k: _decode_option(v) for k, v in value["fields"].items()})
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_decode_option(v) for v in value["__tuple__"])
    return value


def config_to_json(config: Config) -> str:
    fields = dataclasses.asdict(config)
    fields["options"] = _encode_option(tuple(config.options))
    return json.dumps(fields, sort_keys=True)


def config_from_json(text: str) -> Config:
    fields = json.loads(text)
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"config fields this cfjax does not know: {unknown}")
    if "options" in fields:
        fields["options"] = _decode_option(fields["options"])
    return Config(**fields)


def save(
    path: PathLike,
    result: FitResult,
    config: Config,
    hparams: Hparams,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Writes a fit to `path` (".npz" appended if missing) and returns the path written.

    Args:
      path: the file to write; parent directories are created.
      result: a `FitResult` (any leading batch axes).
      config: the `Config` it was fitted with.
      hparams: the `Hparams` it was fitted with.
      extra: optional name -> array-like (numbers, bools or strings; no objects) stored
        under ``extra/<name>``, e.g. predictions or the seed; read back with `load_extra`.

    Raises:
      ValueError: naming the argument whose type or content cannot be stored.
    """
    if not isinstance(result, FitResult):
        raise ValueError(f"result: expected cfjax.FitResult, got {type(result).__name__}")
    if not isinstance(config, Config):
        raise ValueError(f"config: expected cfjax.Config, got {type(config).__name__}")
    if not isinstance(hparams, Hparams):
        raise ValueError(f"hparams: expected cfjax.Hparams, got {type(hparams).__name__}")
    arrays: dict[str, np.ndarray] = {
        "params/X": np.asarray(result.params.X),
        "params/Y": np.asarray(result.params.Y),
        **_tree_arrays("params/theta/", result.params.theta),
        **_tree_arrays("info/", result.info or {}),
        **{f"history/{f}": np.asarray(getattr(result.history, f)) for f in History._fields},
        "n_iter": np.asarray(result.n_iter),
        "converged": np.asarray(result.converged),
        **{f"hparams/{f}": np.asarray(getattr(hparams, f)) for f in Hparams._fields},
    }
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"extra: keys must be non-empty strings without '/', got {name!r}")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufcUS":
            raise ValueError(
                f"extra[{name!r}]: cannot be stored as a plain array (dtype {arr.dtype})"
            )
        arrays[f"extra/{name}"] = arr
    meta = dict(
        n_classes=_n_classes_of(config, np.shape(result.params.X), arrays),
        format=FORMAT,
        format_version=FORMAT_VERSION,
        cfjax_version=_cfjax_version(),
        jax_version=jax.__version__,
        backend=jax.default_backend(),
    )
    arrays["config_json"] = np.asarray(config_to_json(config))
    arrays["meta_json"] = np.asarray(json.dumps(meta, sort_keys=True))
    target = _npz_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(target, **arrays)
    return target


def _cfjax_version() -> str:
    from cfjax import __version__

    return __version__


def _read(path: PathLike) -> tuple[Path, dict[str, np.ndarray], dict[str, Any]]:
    """All arrays of a cfjax result file and its metadata; ValueError naming the path otherwise."""
    target = Path(path)
    if not target.exists() and _npz_path(target).exists():
        target = _npz_path(target)
    if not target.is_file():
        raise FileNotFoundError(f"path: no such file {str(target)!r}")
    try:
        loaded = np.load(target, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with loaded as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"path: {str(target)!r} is not a cfjax result file ({err})") from None
    try:
        meta = json.loads(str(arrays["meta_json"]))
        if meta.get("format") != FORMAT:
            raise KeyError("format")
    except (KeyError, ValueError, TypeError, AttributeError):
        raise ValueError(
            f"path: {str(target)!r} is not a cfjax result file (no '{FORMAT}' format tag)"
        ) from None
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(
            f"path: {str(target)!r} has format version {meta['format_version']}, newer than this "
            f"cfjax reads ({FORMAT_VERSION}); upgrade cfjax"
        )
    return target, arrays, meta


def _theta_template(aggregator: str, x_shape: tuple[int, ...], n_classes: int) -> Any:
    """The aggregator's initial parameters (as shapes) for X of `x_shape` (..., d, rows) and K
    classes, rows = m (K = 2) or m K."""
    d, rows = x_shape[-2], x_shape[-1]
    m = rows if n_classes == 2 else rows // n_classes
    return jax.eval_shape(lambda: aggregators.initial_theta(aggregator, jax.random.key(0), m, d, Hparams.create(),
                                                            jnp.float32, n_classes=n_classes))


def _n_classes_of(config: Config, x_shape: tuple[int, ...], arrays: dict[str, np.ndarray]) -> int | None:
    """K of a fit from its stored aggregator parameters: the first K (2, then each K >= 3 that
    divides X's rows, for an aggregator that takes K classes) whose template has the stored
    leaf shapes (leading batch axes of a sweep allowed); None when none has."""
    batch = tuple(x_shape[:-2])
    agg = aggregators.get(config.aggregator)
    rows = x_shape[-1]
    candidates = [2] + ([k for k in range(3, rows + 1) if rows % k == 0] if agg.multiclass else [])
    for k in candidates:
        paths, _ = jax.tree_util.tree_flatten_with_path(_theta_template(config.aggregator, x_shape, k))
        names = ["params/theta/" + "/".join(_key_name(p) for p in path) for path, _ in paths]
        if all(name in arrays and np.shape(arrays[name]) == batch + tuple(leaf.shape)
               for name, (_, leaf) in zip(names, paths)):
            return k
    return None


def load(path: PathLike) -> tuple[FitResult, Config, Hparams]:
    """Reads a file written by `save`.

    Returns:
      (FitResult, Config, Hparams), arrays as `jax.Array` with the shapes and dtypes saved
      (float64 arrays come back as float64 only under `jax_enable_x64`, as any `jnp.asarray`).

    Raises:
      FileNotFoundError: no file at `path` (nor at `path` + ".npz").
      ValueError: naming the path, when the file is not a cfjax result (not an .npz, no format
        tag, a newer format, missing arrays, or a config this cfjax does not know).
    """
    target, arrays, _ = _read(path)
    where = f"path: {str(target)!r}"
    try:
        try:
            config = config_from_json(str(arrays["config_json"]))
        except ValueError as err:
            raise ValueError(f"{where} has {err}") from None
        if config.aggregator not in aggregators.AGGREGATORS:
            raise ValueError(
                f"{where} uses aggregator {config.aggregator!r}, unknown to this cfjax"
            )
        n_classes = _n_classes_of(config, arrays["params/X"].shape, arrays)
        if n_classes is None:
            raise ValueError(f"{where} holds aggregator parameters of shapes no {config.aggregator!r} fit of its "
                             f"X {arrays['params/X'].shape} has")
        template = _theta_template(config.aggregator, arrays["params/X"].shape, n_classes)
        paths, treedef = jax.tree_util.tree_flatten_with_path(template)
        theta_leaves = [
            jnp.asarray(arrays["params/theta/" + "/".join(_key_name(k) for k in p)])
            for p, _ in paths
        ]
        params = Params(
            X=jnp.asarray(arrays["params/X"]),
            Y=jnp.asarray(arrays["params/Y"]),
            theta=jax.tree_util.tree_unflatten(treedef, theta_leaves),
        )
        history = History(**{f: jnp.asarray(arrays[f"history/{f}"]) for f in History._fields})
        hparams = Hparams(**{f: jnp.asarray(arrays[f"hparams/{f}"]) for f in Hparams._fields})
        result = FitResult(
            params=params,
            history=history,
            n_iter=jnp.asarray(arrays["n_iter"]),
            converged=jnp.asarray(arrays["converged"]),
            info={"confidence": {}, **_nested(arrays, "info/")},
        )
    except KeyError as err:
        raise ValueError(f"{where} is not a complete cfjax result (missing array {err})") from None
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where} holds an unreadable config ({err})") from None
    return result, config, hparams


def load_extra(path: PathLike) -> dict[str, np.ndarray]:
    """The `extra` arrays a file was saved with (an empty dict when none)."""
    _, arrays, _ = _read(path)
    prefix = "extra/"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions, device, git commit and time: what a reviewer needs to reproduce a table."""
    import datetime
    import platform

    import optax

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cfjax": _cfjax_version(), "jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "device": str(jax.devices()[0]), "backend": jax.default_backend(), "git": git_commit(), **extra,
    }


def git_commit() -> str | None:
    """The short commit of the checkout cfjax runs from, "+dirty" when tracked files changed
    (a table made from uncommitted code says so); None outside a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=here).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except OSError:
        return None
    return (commit + ("+dirty" if dirty else "")) or None
