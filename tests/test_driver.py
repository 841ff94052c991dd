"""The driver every iterative method runs under: continuation, warm starts, chunks, checkpoints."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import cfjax
from cfjax import data, predict, sweep
from cfjax.solvers import driver

from . import tiers

ITERATIVE = tuple(name for name, m in cfjax.solvers.METHODS.items() if m.fit is None)


@pytest.fixture(scope="module")
def small():
    return data.preset(jax.random.key(0), "seed", n_instances=120, n_classifiers=6)


def _assert_close(a, b, rtol=1e-5, atol=1e-6):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol)


# fast tier: a closed-form method and one whose state carries an optimizer; all: slow
@tiers.parametrize("method", ITERATIVE, only_fast=lambda m: m in ("als", "alternating"))
def test_continuing_a_fit_equals_one_longer_fit(small, method):
    """k steps, then l more from `result.state`, equal one fit of k + l steps."""
    hp = cfjax.solvers.get(method).hparams()
    base = cfjax.Config(method=method, latent_dim=3, tol=0.0, patience=4, damped_every=3)
    whole = cfjax.fit(jax.random.key(2), small.problem, hp, base.replace(max_iter=12))
    first = cfjax.fit(jax.random.key(2), small.problem, hp, base.replace(max_iter=7))
    rest = cfjax.fit(jax.random.key(2), small.problem, hp, base.replace(max_iter=5), init=first.state)
    _assert_close(rest.params, whole.params)
    _assert_close(rest.state, whole.state)
    assert int(rest.n_iter) == int(whole.n_iter)
    # the history is the concatenation, except the entry that described `first`'s returned params
    head = jax.tree.map(lambda h: np.asarray(h)[:6], first.history)
    _assert_close(head, jax.tree.map(lambda h: np.asarray(h)[:6], whole.history))
    _assert_close(rest.history, jax.tree.map(lambda h: np.asarray(h)[7:], whole.history))


def test_warm_start_from_params_starts_where_they_are(small):
    config = cfjax.Config(method="als", latent_dim=3, max_iter=30, tol=0.0)
    hp = cfjax.Hparams.create()
    done = cfjax.fit(jax.random.key(0), small.problem, hp, config)
    again = cfjax.fit(jax.random.key(0), small.problem, hp, config.replace(max_iter=1), init=done.params)
    # ALS from a (near) fixed point barely moves; from the SVD start it moved for 30 sweeps
    np.testing.assert_allclose(float(again.history.recon[0]), float(done.history.recon[-1]), rtol=1e-3)


def test_warm_start_from_a_saved_fit(small, tmp_path):
    config = cfjax.Config(method="joint", latent_dim=3, max_iter=10)
    hp = cfjax.solvers.get("joint").hparams()
    result = cfjax.fit(jax.random.key(0), small.problem, hp, config)
    cfjax.io.save(tmp_path / "fit", result, config, hp)
    loaded, config2, hp2 = cfjax.io.load(tmp_path / "fit.npz")
    more = cfjax.fit(jax.random.key(0), small.problem, hp2, config2, init=loaded.params)
    assert float(more.history.total[0]) <= float(result.history.total[0])


@pytest.mark.parametrize("bad, match", [
    ("state", "init: pass result.state"),
    ("shape", r"init: params.X has shape"),
    ("type", "init: expected None, cfjax.Params or a DriverState"),
])
def test_bad_init_is_refused_on_the_host(small, bad, match):
    config = cfjax.Config(method="als", latent_dim=3, max_iter=2)
    result = cfjax.fit(jax.random.key(0), small.problem, None, config)
    init = {"state": result, "shape": result.params._replace(X=result.params.X[:2]), "type": 3.0}[bad]
    with pytest.raises(ValueError, match=match):
        cfjax.fit(jax.random.key(0), small.problem, None, config, init=init)


@tiers.parametrize("method", ["joint", "mm_als", "two_stage"], only_fast=1)
def test_chunks_equal_one_scan(small, method):
    """The host loop over chunks of steps (progress, checkpoints) gives the one-scan result."""
    config = cfjax.Config(method=method, latent_dim=3, max_iter=23, tol=0.0)
    hp = cfjax.solvers.get(method).hparams()
    whole = cfjax.fit(jax.random.key(1), small.problem, hp, config)
    chunked = cfjax.fit(jax.random.key(1), small.problem, hp, config, progress=True, chunk_steps=5)
    _assert_close(chunked, whole)


def test_chunks_stop_early_like_the_scan(small):
    """A fit that converges after a few steps: the remaining chunks are skipped, the history
    repeats the last values exactly as the scan's does."""
    config = cfjax.Config(method="als", latent_dim=3, max_iter=200, tol=1e-4)
    whole = cfjax.fit(jax.random.key(0), small.problem, None, config)
    assert int(whole.n_iter) < 50
    chunked = cfjax.fit(jax.random.key(0), small.problem, None, config, progress=True, chunk_steps=10)
    _assert_close(chunked, whole)


def test_progress_bar_shows_steps(small, capsys):
    config = cfjax.Config(method="joint", latent_dim=3, max_iter=10)
    cfjax.fit(jax.random.key(0), small.problem, None, config, progress=True, chunk_steps=4)
    err = capsys.readouterr().err
    assert "joint" in err and "10/10" in err


@pytest.mark.slow  # a chunked sweep of every grid point; the single fit in chunks stays fast
def test_sweep_in_chunks_equals_the_sweep(small, capsys):
    config = cfjax.Config(method="joint", latent_dim=3, max_iter=12, tol=0.0)
    grid = sweep.grid(rho=[0.2, 0.7], method="joint")
    keys = jax.random.split(jax.random.key(0), 2)
    whole = sweep.run(keys, small.problem, grid, config)
    chunked = sweep.run(keys, small.problem, grid, config, progress=True, chunk_steps=5)
    _assert_close(chunked, whole)
    assert "48/48" in capsys.readouterr().err  # 12 steps x 4 fits


def test_checkpoint_folder_of_another_run_is_refused(small, tmp_path):
    pytest.importorskip("orbax.checkpoint")
    config = cfjax.Config(method="als", latent_dim=3, max_iter=4, tol=0.0)
    cfjax.fit(jax.random.key(0), small.problem, None, config, checkpoint=tmp_path, chunk_steps=2)
    with pytest.raises(ValueError, match="checkpoint: .* holds checkpoints of another run"):
        cfjax.fit(jax.random.key(0), small.problem, None, config.replace(max_iter=6), checkpoint=tmp_path)


_RESUMABLE_SWEEP = textwrap.dedent(
    """
    import os, sys, time
    import jax, numpy as np
    import cfjax
    from cfjax import data, sweep
    from cfjax.solvers import chunks

    folder, out, slow = sys.argv[1], sys.argv[2], sys.argv[3] == "slow"
    if slow:  # give the parent time to kill us between checkpoints
        save = chunks._Checkpoints.save
        def slow_save(self, done, payload):
            save(self, done, payload)
            print("saved", done, flush=True)
            time.sleep(1.0)
        chunks._Checkpoints.save = slow_save
    ens = data.preset(jax.random.key(0), "seed", n_instances=120, n_classifiers=6)
    config = cfjax.Config(method="joint", latent_dim=3, max_iter=40, tol=0.0)
    grid = sweep.grid(rho=[0.2, 0.7], method="joint")
    keys = jax.random.split(jax.random.key(0), 2)
    result = sweep.run(keys, ens.problem, grid, config, checkpoint=folder, chunk_steps=5)
    np.savez(out, X=np.asarray(result.params.X), total=np.asarray(result.history.total),
             n_iter=np.asarray(result.n_iter))
    """
)


@pytest.mark.slow  # three subprocesses, one killed mid-sweep
def test_an_interrupted_sweep_resumes_to_the_same_result(tmp_path):
    """A sweep killed between checkpoints, run again with the same folder, ends where an
    uninterrupted sweep ends."""
    pytest.importorskip("orbax.checkpoint")
    script = tmp_path / "sweep.py"
    script.write_text(_RESUMABLE_SWEEP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    reference = tmp_path / "reference.npz"
    subprocess.run([sys.executable, script, tmp_path / "ref_ckpt", reference, "fast"], check=True, env=env,
                   timeout=600)
    folder, resumed = tmp_path / "ckpt", tmp_path / "resumed.npz"
    proc = subprocess.Popen([sys.executable, script, folder, resumed, "slow"], stdout=subprocess.PIPE, text=True,
                            env=env)
    saved = 0
    deadline = time.time() + 600
    while saved < 2 and time.time() < deadline:  # killed after the second checkpoint of eight
        line = proc.stdout.readline()
        if not line:
            break
        saved += line.startswith("saved")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert saved == 2 and not resumed.exists()
    subprocess.run([sys.executable, script, folder, resumed, "fast"], check=True, env=env, timeout=600)
    with np.load(reference) as a, np.load(resumed) as b:
        for name in ("X", "total", "n_iter"):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7)


def test_validation_score_is_nan_without_validation_columns(small):
    config = cfjax.Config(method="joint", latent_dim=3, max_iter=5)
    result = cfjax.fit(jax.random.key(0), small.problem, None, config)
    assert np.isnan(np.asarray(result.history.valid_pr_auc)).all()
    held = data.hold_out(jax.random.key(0), small.problem, 0.3)
    result = cfjax.fit(jax.random.key(0), held, None, config)
    assert np.isfinite(np.asarray(result.history.valid_pr_auc)).all()


def test_grid_shaped_hparams_point_to_the_sweep(small):
    grid = sweep.grid(rho=[0.2, 0.5], method="joint")
    with pytest.raises(ValueError, match=r"hparams: a single fit takes scalar fields.*cfjax.sweep.run"):
        cfjax.fit(jax.random.key(0), small.problem, grid, cfjax.Config(method="joint", max_iter=2))


def test_driver_pieces_compose_to_the_fit(small):
    """start + advance + finish is exactly `fit_traced`."""
    config = cfjax.validation.resolve_config(cfjax.Config(method="mm_als", max_iter=6), small.problem)
    method = cfjax.solvers.get("mm_als")
    hp = driver.method_hparams(method, method.hparams())
    prepared, stats = driver.prepare(small.problem, hp, config)
    state = driver.start(method, jax.random.key(0), prepared, hp, config)
    state, history = driver.advance(method, state, prepared, hp, config, 6)
    pieces = driver.finish(method, state, history, prepared, hp, config, stats)
    _assert_close(pieces, cfjax.fit(jax.random.key(0), small.problem, method.hparams(), config))
    assert predict.proba(pieces.params, config).shape == (120,)
