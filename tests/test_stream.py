"""Out-of-core fits (`cfjax.stream`): memmap blocks against the in-memory fit, prefetching,
validation of the files and of each block, and the command on a .npy input."""

import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cfjax
from cfjax import cli, data, io, stream
from cfjax.solvers import joint


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """A small ensemble with missing cells as R.npy (float32, NaN = missing) and labels.npy."""
    ens = data.synthetic(jax.random.key(0), n_classifiers=6, n_instances=250, labeled_fraction=0.3, missing_rate=0.1)
    R = np.asarray(ens.problem.R, np.float32).copy()
    R[~np.asarray(ens.problem.observed)] = np.nan
    labels = np.where(np.asarray(ens.problem.labeled), ens.y_true, -1).astype(np.float32)
    folder = tmp_path_factory.mktemp("stream")
    np.save(folder / "R.npy", R)
    np.save(folder / "labels.npy", labels)
    return folder, R, labels, ens


def _config(**changes):
    fields = dict(method="joint", latent_dim=3, max_iter=4, patience=0, options=(("batch_size", 32), ("shuffle", False)))
    return cfjax.Config(**{**fields, **changes})


@pytest.mark.parametrize("block_size", [10_000, 64])
def test_stream_fit_and_predictions_equal_the_in_memory_fit(on_disk, tmp_path, block_size):
    """In order (no shuffle), blocks of whole batches are the in-memory epoch's batches: the same
    trajectory from the same start, and the streamed probabilities are the in-memory ones."""
    folder, R, labels, _ = on_disk
    problem = cfjax.from_numpy(R, labels)
    hparams, config = joint.METHOD.hparams(), _config()
    start = cfjax.solvers.initial_params(jax.random.key(0), problem, hparams, config)
    memory = cfjax.fit(jax.random.key(0), problem, hparams, config, init=start)
    source = stream.open_columns(folder / "R.npy", labels=folder / "labels.npy")
    streamed = stream.fit_stream(jax.random.key(0), source, hparams, config, block_size=block_size, init=start)
    np.testing.assert_allclose(streamed.params.X, memory.params.X, rtol=2e-5, atol=2e-6)
    assert streamed.params.Y.shape == (3, 0) and int(streamed.n_iter) == 4
    out = stream.predict_stream(streamed.params, source, tmp_path / "p.npy", hparams, config, block_size=block_size)
    proba = np.load(out)
    assert proba.shape == (250,) and proba.dtype == np.float32
    want = np.asarray(cfjax.predict.proba(memory.params, config, problem))
    np.testing.assert_allclose(proba, want, rtol=1e-4, atol=1e-5)


def test_stream_svd_start_is_the_gram_start(on_disk):
    """Zero epochs' worth of change: the streamed start equals `leading_factors(gram=True)`."""
    folder, R, labels, _ = on_disk
    problem = cfjax.from_numpy(R, labels)
    hparams = joint.METHOD.hparams(lr=1e-12)
    config = _config(max_iter=1, options=(("batch_size", 250), ("schedule", "constant")))
    streamed = stream.fit_stream(jax.random.key(0), stream.open_columns(folder), hparams, config)
    X, _ = cfjax.solvers.base.leading_factors(problem.C * problem.R, 3, gram=True)
    np.testing.assert_allclose(np.abs(streamed.params.X), np.abs(X), rtol=1e-3, atol=1e-4)


def test_shuffled_stream_is_keyed(on_disk):
    folder = on_disk[0]
    config = _config(options=(("batch_size", 32),))
    source = stream.open_columns(folder)
    a = stream.fit_stream(jax.random.key(0), source, None, config, block_size=64, validation_fraction=0.2)
    b = stream.fit_stream(jax.random.key(0), source, None, config, block_size=64, validation_fraction=0.2)
    c = stream.fit_stream(jax.random.key(1), source, None, config, block_size=64, validation_fraction=0.2)
    np.testing.assert_array_equal(a.params.X, b.params.X)
    np.testing.assert_array_equal(a.history.valid_pr_auc, b.history.valid_pr_auc)
    assert not np.allclose(a.params.X, c.params.X)
    assert np.isfinite(np.asarray(a.history.valid_pr_auc)).all()


def test_stream_early_stopping_returns_the_best_epoch(on_disk):
    folder = on_disk[0]
    config = _config(max_iter=30, patience=2, options=(("batch_size", 32),))
    hparams = joint.METHOD.hparams(lr=0.5)  # noisy enough to stop early
    result = stream.fit_stream(jax.random.key(0), stream.open_columns(folder), hparams, config, block_size=64,
                               validation_fraction=0.3)
    assert int(result.n_iter) < 30
    assert result.history.total.shape == (30,)


def test_prefetch_keeps_order_reads_ahead_and_raises_where_it_failed():
    reads, started = [], []

    def read(i):
        started.append(i)
        time.sleep(0.01)
        reads.append(i)
        return i * 10

    got = []
    for value in stream.prefetch(read, [3, 1, 2, 0]):
        got.append(value)
        time.sleep(0.03)
        assert len(started) >= min(len(got) + 1, 4)  # the next block was read while this one "computed"
    assert got == [30, 10, 20, 0] and reads == [3, 1, 2, 0]

    def failing(i):
        if i == 2:
            raise OSError("disk")
        return i

    seen = []
    with pytest.raises(OSError, match="disk"):
        seen.extend(stream.prefetch(failing, range(5)))
    assert seen == [0, 1]
    before = threading.active_count()
    for value in stream.prefetch(lambda i: i, range(1000)):
        if value == 3:
            break
    time.sleep(0.05)
    assert threading.active_count() <= before  # stopping early stops the reader


def test_memmap_reads_do_not_stay_resident(tmp_path):
    """A block is copied out of a map that is closed again: nothing of the file stays mapped."""
    np.save(tmp_path / "R.npy", np.full((4, 1000), 0.5, np.float32))
    np.save(tmp_path / "labels.npy", np.zeros(1000, np.float32))
    source = stream.open_columns(tmp_path)
    block = stream.read_block(source, 990, 64)
    assert block.valid == 10 and block.R.shape == (4, 64) and np.isnan(block.R[:, 10:]).all()
    assert (block.labels[10:] == -1).all()
    maps = Path("/proc/self/maps")
    assert not maps.exists() or str(tmp_path / "R.npy") not in maps.read_text()


@pytest.mark.parametrize("change, fragment", [
    (lambda R, y: (R[0], y), "R: expected an (m, n) or (m, K, n) array"),
    (lambda R, y: (R, y[:-1]), "labels: expected shape (250,)"),
])
def test_open_columns_checks_shapes(tmp_path, on_disk, change, fragment):
    _, R, labels, _ = on_disk
    R2, y2 = change(R, labels)
    np.save(tmp_path / "R.npy", R2)
    np.save(tmp_path / "y.npy", y2)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        stream.open_columns(tmp_path / "R.npy", labels=tmp_path / "y.npy")


def test_bad_values_are_found_in_the_block_that_holds_them(tmp_path, on_disk):
    _, R, labels, _ = on_disk
    bad = R.copy()
    bad[2, 200] = 1.5
    np.save(tmp_path / "R.npy", bad)
    np.save(tmp_path / "labels.npy", labels)
    source = stream.open_columns(tmp_path)
    with pytest.raises(ValueError, match=r"R: probabilities must lie in \[0, 1\].*columns 192\.\.249"):
        stream.fit_stream(jax.random.key(0), source, None, _config(), block_size=64)
    y = labels.copy()
    y[5] = 2
    np.save(tmp_path / "labels.npy", y)
    np.save(tmp_path / "R.npy", R)
    with pytest.raises(ValueError, match="labels: values must be 0, 1"):
        stream.fit_stream(jax.random.key(0), stream.open_columns(tmp_path), None, _config(), block_size=64)
    empty = R.copy()
    empty[:, 77] = np.nan
    np.save(tmp_path / "R.npy", empty)
    np.save(tmp_path / "labels.npy", labels)
    with pytest.raises(ValueError, match=r"column\(s\) \[77\] have no observed cell"):
        stream.fit_stream(jax.random.key(0), stream.open_columns(tmp_path), None, _config(), block_size=64)


def test_stream_refuses_what_it_cannot_do(on_disk):
    source = stream.open_columns(on_disk[0])
    with pytest.raises(ValueError, match="minibatch training: method 'joint'"):
        stream.fit_stream(jax.random.key(0), source, None, cfjax.Config(method="als"))
    with pytest.raises(ValueError, match="needs the full batch"):
        stream.fit_stream(jax.random.key(0), source, None, _config(formulation="free"))
    with pytest.raises(ValueError, match="calibration.*learns from the training data"):
        stream.fit_stream(jax.random.key(0), source, None, _config(confidence="calibration"))
    with pytest.raises(ValueError, match="labels: required"):
        stream.open_columns(on_disk[0] / "R.npy")


def test_zarr_input(tmp_path, on_disk):
    zarr = pytest.importorskip("zarr")
    folder, R, labels, _ = on_disk
    z = zarr.open(str(tmp_path / "R.zarr"), mode="w", shape=R.shape, chunks=(6, 64), dtype="f4")
    z[:] = R
    config = _config()
    a = stream.fit_stream(jax.random.key(0), stream.open_columns(tmp_path / "R.zarr", labels=labels), None, config)
    b = stream.fit_stream(jax.random.key(0), stream.open_columns(folder), None, config)
    np.testing.assert_array_equal(a.params.X, b.params.X)


def test_command_fits_a_npy_and_writes_probabilities_in_blocks(on_disk, tmp_path, capsys):
    folder = on_disk[0]
    out = tmp_path / "fit.npz"
    code = cli.main(["fit", str(folder / "R.npy"), "--labels", str(folder / "labels.npy"), "--batch-size", "32",
                     "--block-size", "64", "--max-iter", "3", "--latent-dim", "3", "--quiet", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "streamed 6 classifiers x 250 instances" in captured.out
    result, config, hparams = io.load(out)
    assert config.option("batch_size") == 32 and config.max_iter == 3
    proba = np.load(tmp_path / "fit.proba.npy")
    again = stream.predict_stream(result.params, stream.open_columns(folder), tmp_path / "again.npy", hparams, config,
                                  block_size=64)
    np.testing.assert_array_equal(proba, np.load(again))
    assert str(tmp_path / "fit.proba.npy") == str(io.load_extra(out)["proba_file"])
    # a directory is the same input
    code = cli.main(["fit", str(folder), "--batch-size", "32", "--block-size", "64", "--max-iter", "3",
                     "--latent-dim", "3", "--quiet", "--output", str(tmp_path / "dir.npz")])
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "dir.proba.npy"), proba)


@pytest.mark.parametrize("tail, fragment", [
    (["--labels", "missing.npy"], "labels: no such file"),
    (["--method", "als"], "--method: an INPUT read from disk"),
    (["--rho", "auto"], "--rho auto"),
])
def test_command_stream_errors_exit_2_with_one_line(on_disk, tmp_path, capsys, tail, fragment):
    folder = on_disk[0]
    labels = [] if tail[0] == "--labels" else ["--labels", str(folder / "labels.npy")]
    tail = [str(tmp_path / t) if t.endswith(".npy") else t for t in tail]
    code = cli.main(["fit", str(folder / "R.npy"), *labels, *tail, "--quiet", "--output", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_command_npz_with_batch_size_is_minibatch_joint(on_disk, tmp_path, capsys):
    _, R, labels, _ = on_disk
    path = tmp_path / "ens.npz"
    np.savez(path, R=R, labels=labels)
    code = cli.main(["fit", str(path), "--method", "joint", "--batch-size", "64", "--max-iter", "3", "--quiet",
                     "--output", str(tmp_path / "o.npz")])
    assert code == 0, capsys.readouterr().err
    _, config, _ = io.load(tmp_path / "o.npz")
    assert config.option("batch_size") == 64
    code = cli.main(["fit", str(path), "--method", "als", "--batch-size", "64", "--quiet",
                     "--output", str(tmp_path / "o2.npz")])
    err = capsys.readouterr().err
    assert code == 2 and "needs the full batch" in err
    code = cli.main(["fit", str(path), "--labels", "x.npy", "--quiet", "--output", str(tmp_path / "o3.npz")])
    assert code == 2 and "--labels: only with an INPUT read from disk" in capsys.readouterr().err


def test_stream_float_dtypes(on_disk):
    """float64 under x64: the stream computes in JAX's default float, as `from_numpy`."""
    with jax.enable_x64(True):
        result = stream.fit_stream(jax.random.key(0), stream.open_columns(on_disk[0]), None, _config(max_iter=1))
        assert result.params.X.dtype == jnp.float64


def test_every_block_runs_one_compiled_program(on_disk):
    """The last block is padded to the block size: one shape, one compile, for any n."""
    stream._train_block.clear_cache()
    config = _config(max_iter=2, options=(("batch_size", 32),))
    stream.fit_stream(jax.random.key(0), stream.open_columns(on_disk[0]), None, config, block_size=96)  # 3 blocks
    assert stream._train_block._cache_size() == 1


@pytest.fixture(scope="module")
def k_class_on_disk(tmp_path_factory):
    """A 3-class ensemble (m, K, n) with whole cells missing, as R.npy and labels.npy."""
    from tests.test_multiclass import ensemble

    R, labels, y = ensemble(6, m=4, K=3, n=150, labeled=0.5, missing=0.1)
    folder = tmp_path_factory.mktemp("stream_k")
    np.save(folder / "R.npy", R.astype(np.float32))
    np.save(folder / "labels.npy", labels.astype(np.float32))
    return folder, R.astype(np.float32), labels, y


@pytest.mark.parametrize("block_size", [10_000, 64])
def test_k_class_stream_equals_the_in_memory_minibatch_fit(k_class_on_disk, tmp_path, block_size):
    """K = 3 read in blocks: the in-memory minibatch trajectory (same start, no shuffle) and
    its (K, n) probabilities, as for binary input."""
    folder, R, labels, _ = k_class_on_disk
    problem = cfjax.from_numpy(R, labels)
    hparams, config = joint.METHOD.hparams(), _config()
    start = cfjax.solvers.initial_params(jax.random.key(0), problem, hparams, config)
    memory = cfjax.fit(jax.random.key(0), problem, hparams, config, init=start)
    source = stream.open_columns(folder)
    assert source.n_classes == 3 and source.rows == 12
    streamed = stream.fit_stream(jax.random.key(0), source, hparams, config, block_size=block_size, init=start)
    np.testing.assert_allclose(streamed.params.X, memory.params.X, rtol=2e-5, atol=2e-6)
    out = stream.predict_stream(streamed.params, source, tmp_path / "p.npy", hparams, config, block_size=block_size)
    proba = np.load(out)
    assert proba.shape == (3, 150)
    want = np.asarray(cfjax.predict.proba(memory.params, config, problem))
    np.testing.assert_allclose(proba, want, rtol=1e-4, atol=1e-5)


def test_k_class_stream_svd_start_and_validation(k_class_on_disk):
    """The "svd" start from the Gram of the m K class rows, and held-out columns monitored by the
    macro PR-AUC: a fit from no init runs and its history is finite."""
    folder, *_ = k_class_on_disk
    config = _config(max_iter=3, patience=2)
    result = stream.fit_stream(jax.random.key(1), stream.open_columns(folder), joint.METHOD.hparams(), config,
                               validation_fraction=0.3)
    assert result.params.X.shape == (3, 12) and result.params.theta.w.shape == (3, 12)
    history = np.asarray(result.history.valid_pr_auc)[: int(result.n_iter)]
    assert np.isfinite(history).all() and (history > 1 / 3).all()


@pytest.mark.parametrize("fault, fragment", [
    ("partial", "NaN in some classes only"),
    ("sum", "must sum to 1"),
    ("label", "classes 0..2"),
])
def test_k_class_bad_values_are_refused_in_their_block(k_class_on_disk, tmp_path, fault, fragment):
    _, R, labels, _ = k_class_on_disk
    R, labels = R.copy(), labels.astype(np.float32).copy()
    if fault == "partial":
        R[1, 0, 100] = np.nan
    elif fault == "sum":
        R[1, :, 100] = [0.5, 0.5, 0.5]
    else:
        labels[100] = 3
    np.save(tmp_path / "R.npy", R)
    np.save(tmp_path / "labels.npy", labels)
    with pytest.raises(ValueError, match=fragment):
        stream.fit_stream(jax.random.key(0), stream.open_columns(tmp_path), joint.METHOD.hparams(), _config())
