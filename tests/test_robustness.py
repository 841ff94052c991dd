"""Hostile inputs through every entry point, and numerical robustness (issue 8, parts 1 and 3).

Part 1, the battery. Each bad input goes through the three front doors: the Python API
(`cfjax.from_numpy`, then `cfjax.fit`), the CLI (`cfjax fit INPUT.npz`) and the scikit-learn
estimator (`CFEnsembleClassifier().fit(R.T, y)`). It must either raise a ValueError that names
the argument and the fault (the CLI: exit status 2 and one line on stderr), or be handled as
documented (README "Input and validation", `cfjax.from_numpy`); a handled input must give, at
every door, the probabilities the Python API gives on the cleaned input. One test per fault,
parametrized by door; a door that cannot receive an input (the CLI has no lambda and reads no
confidence) is left out of that test and the test says so.

Part 3, numerics: float32 fits of every method at extreme hyperparameters, and hypothesis
properties over random small problems: finite outputs and loss, probabilities in [0, 1],
determinism, and equivariance under permutations of the classifiers and of the instances.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cfjax
from cfjax import cli, losses, solvers
from cfjax import io as cfjax_io
from cfjax.sklearn import CFEnsembleClassifier
from cfjax.solvers import driver

DOORS = ("api", "cli", "sklearn")
#: The iterative methods (auto is a choice among them).
METHOD_NAMES = tuple(name for name, method in solvers.METHODS.items() if method.fit is None)

# The battery's fits: small, and one static setting shared by the three doors (the CLI and the
# estimator build this very Config), so each input shape compiles once for all of them. Their
# latent_dim is 4 = min(m, n) of `_ensemble`, which is also what the estimator clips 5 to.
BATTERY_METHOD = "joint"
BATTERY_ITER = 3


def _ensemble(m: int = 4, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A valid (m, n) R strictly inside (0, 1) and labels with both classes and unlabeled columns."""
    rng = np.random.default_rng(seed)
    R = rng.uniform(0.05, 0.95, size=(m, n))
    labels = np.full(n, -1.0)
    labels[:4] = [0.0, 1.0, 0.0, 1.0]
    return R, labels


def _transpose(R):
    """R -> X = R^T in the caller's own form (a list stays a list, an array view stays a view)."""
    if isinstance(R, list):
        return [list(column) for column in zip(*R, strict=True)]
    return R.T


def _fit_via(door: str, R, labels, *, rho: float = 0.5, lam: float | None = None, latent_dim: int = 4,
             max_iter: int = BATTERY_ITER, confidence=None) -> np.ndarray:
    """The probability of every column after a fit through `door`.

    Raises the door's ValueError; for the CLI, exit status 2 with exactly one line on stderr is
    turned into a ValueError carrying that line (anything else fails the test).
    """
    if door == "api":
        problem = cfjax.from_numpy(R, labels, confidence)
        config = cfjax.Config(method=BATTERY_METHOD, formulation="fold_in", latent_dim=latent_dim,
                              max_iter=max_iter)
        hparams = solvers.get(BATTERY_METHOD).hparams(rho=rho, **({} if lam is None else {"lam": lam}))
        result = cfjax.fit(jax.random.key(0), problem, hparams, config)
        return np.asarray(cfjax.proba(result.params, config), np.float64)
    if door == "sklearn":
        assert confidence is None, "the estimator takes no confidence"
        est = CFEnsembleClassifier(method=BATTERY_METHOD, rho=rho, lam=lam, latent_dim=latent_dim,
                                   max_iter=max_iter)
        return est.fit(_transpose(R), labels).transductive_proba_
    assert door == "cli" and confidence is None, "the CLI reads R and labels only"
    options = ["--rho", rho, "--latent-dim", latent_dim, "--max-iter", max_iter]
    options += [] if lam is None else ["--lam", lam]
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.npz", Path(folder) / "out.npz"
        np.savez(source, R=R, labels=labels)
        return _cli_fit(source, target, *options)


def _cli_fit(source, target, *options) -> np.ndarray:
    argv = ["fit", source, "--method", BATTERY_METHOD, "--output", target, "--quiet", *options]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main([str(a) for a in argv])
    lines = err.getvalue().strip().splitlines()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("cfjax: error: "), lines
        raise ValueError(lines[0])
    assert code == 0, lines
    return cfjax_io.load_extra(target)["proba"]


def _assert_proba(proba: np.ndarray, n: int) -> None:
    assert proba.shape == (n,) and np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()


def _assert_same_as_api(door: str, proba: np.ndarray, reference: np.ndarray) -> None:
    # every door runs the same compiled program on the same float32 problem
    np.testing.assert_allclose(proba, reference, rtol=1e-6, atol=1e-7, err_msg=door)


# =============================================================================================
# Part 1: the battery


@pytest.mark.parametrize("door", DOORS)
def test_nan_in_R_is_a_missing_prediction(door):
    """Handled: a NaN cell is unobserved, which is the same as any value with zero confidence."""
    R, labels = _ensemble()
    cells = (np.array([0, 2, 3]), np.array([1, 5, 6]))
    holes = R.copy()
    holes[cells] = np.nan
    weights = np.ones_like(R)
    weights[cells] = 0.0
    filled = R.copy()
    filled[cells] = 0.9  # any value: its confidence is 0
    reference = _fit_via("api", filled, labels, confidence=weights)
    proba = _fit_via(door, holes, labels)
    _assert_proba(proba, R.shape[1])
    _assert_same_as_api(door, proba, reference)


INF_MESSAGE = {"api": "R: contains infinite", "cli": "R: contains infinite", "sklearn": "X contains infinity"}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_in_R(door, value):
    R, labels = _ensemble()
    R[1, 2] = value
    with pytest.raises(ValueError, match=INF_MESSAGE[door]):
        _fit_via(door, R, labels)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("value", [1.5, -0.2, 1 + 1e-4])
def test_R_outside_unit_interval(door, value):
    R, labels = _ensemble()
    R[2, 3] = value
    name = "X .*" if door == "sklearn" else "R: "
    with pytest.raises(ValueError, match=name + r"probabilities must lie in \[0, 1\]"):
        _fit_via(door, R, labels)


def test_R_within_rounding_of_unit_interval_is_clipped():
    """Handled (from_numpy's docstring): values within 1e-6 outside [0, 1] are clipped."""
    R, labels = _ensemble()
    R[0, 0], R[1, 1] = 1 + 5e-7, -5e-7
    problem = cfjax.from_numpy(R, labels)
    assert float(problem.R[0, 0]) == 1.0 and float(problem.R[1, 1]) == 0.0


LABEL_MESSAGE = {
    "api": "labels: values must be 0, 1, or -1/NaN",
    "cli": "labels: values must be 0, 1, or -1/NaN",
    # the estimator takes any K classes (strings too): a third value makes y 3-class, and then
    # X's 4 columns cannot be 3-class probabilities (n, m K); 0.5 makes y continuous
    "sklearn": r"X: has 4 columns, not a multiple of the K = 3 classes of y's labeled rows|y: Unknown label type",
}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("value", [2.0, 0.5, -2.0])
def test_labels_outside_the_label_set(door, value):
    R, labels = _ensemble()
    labels[5] = value
    with pytest.raises(ValueError, match=LABEL_MESSAGE[door]):
        _fit_via(door, R, labels)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # sklearn's
def test_labels_inf(door):
    R, labels = _ensemble()
    labels[5] = np.inf
    match = "labels: contains infinite" if door != "sklearn" else "y: "
    with pytest.raises(ValueError, match=match):
        _fit_via(door, R, labels)


LENGTH_MESSAGE = {
    "api": r"labels: expected shape \(8,\)",
    "cli": r"labels: expected shape \(8,\)",
    "sklearn": "inconsistent numbers of samples",  # scikit-learn's own wording: X and y disagree
}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("change", [-1, 1])
def test_wrong_lengths(door, change):
    R, labels = _ensemble()
    labels = np.concatenate([labels, [-1.0]]) if change > 0 else labels[:-1]
    with pytest.raises(ValueError, match=LENGTH_MESSAGE[door]):
        _fit_via(door, R, labels)


def test_wrong_lengths_of_confidence():
    """The API alone takes a confidence matrix (the CLI and the estimator do not)."""
    R, labels = _ensemble()
    with pytest.raises(ValueError, match=r"confidence: expected shape \(4, 8\)"):
        _fit_via("api", R, labels, confidence=np.ones((4, 7)))


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("unlabeled", [-1.0, np.nan])
def test_empty_labeled_set(door, unlabeled):
    R, labels = _ensemble()
    labels[:] = unlabeled
    match = "y: .*got 0 class" if door == "sklearn" else "labels: no labeled instance"
    with pytest.raises(ValueError, match=match):
        _fit_via(door, R, labels)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("cls", [0.0, 1.0])
def test_single_class_labels(door, cls):
    R, labels = _ensemble()
    labels[labels >= 0] = cls
    match = "y: .*got 1 class" if door == "sklearn" else f"labels: labeled instances are all of class {int(cls)}"
    with pytest.raises(ValueError, match=match):
        _fit_via(door, R, labels)


@pytest.mark.parametrize("door", DOORS)
def test_single_classifier(door):
    """Handled: m = 1 is a valid, degenerate ensemble whose only latent_dim is 1."""
    R, labels = _ensemble(m=1)
    reference = _fit_via("api", R, labels, latent_dim=1)
    proba = _fit_via(door, R, labels, latent_dim=1)
    _assert_proba(proba, R.shape[1])
    _assert_same_as_api(door, proba, reference)


def test_no_classifier():
    R, labels = _ensemble()
    with pytest.raises(ValueError, match="R: needs at least one classifier"):
        _fit_via("api", R[:0], labels)


N_MESSAGE = {
    "api": "R: needs at least two instances",
    "cli": "R: needs at least two instances",
    "sklearn": "1 sample.* minimum of 2 is required",  # scikit-learn's wording for X
}


@pytest.mark.parametrize("door", DOORS)
def test_fewer_than_two_instances(door):
    R, labels = _ensemble()
    with pytest.raises(ValueError, match=N_MESSAGE[door]):
        _fit_via(door, R[:, :1], labels[:1])


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("latent_dim", [0, -1])
def test_latent_dim_not_positive(door, latent_dim):
    R, labels = _ensemble()
    with pytest.raises(ValueError, match="latent_dim: must be positive"):
        _fit_via(door, R, labels, latent_dim=latent_dim)


@pytest.mark.parametrize("door", DOORS)
def test_latent_dim_above_min_m_n(door):
    """Refused by every door (the default, latent_dim=None, is min(4, m, n))."""
    R, labels = _ensemble()  # m = 4 < n
    with pytest.raises(ValueError, match=r"latent_dim: must be <= min\(m, n\) = 4, got 5"):
        _fit_via(door, R, labels, latent_dim=5)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("rho, match", [(-0.1, "rho: must lie in"), (1.5, "rho: must lie in"),
                                        (np.nan, "rho: must be finite"), (np.inf, "rho: must be finite")])
def test_rho_outside_unit_interval(door, rho, match):
    R, labels = _ensemble()
    with pytest.raises(ValueError, match=match):
        _fit_via(door, R, labels, rho=rho)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("lam, match", [(-1e-3, "lam: must lie in"), (np.nan, "lam: must be finite")])
def test_lambda_negative_or_nan(door, lam, match):
    R, labels = _ensemble()
    with pytest.raises(ValueError, match=match):
        _fit_via(door, R, labels, lam=lam)


@pytest.mark.parametrize("value, match", [(-0.5, "must be >= 0"), (np.nan, "contains NaN or infinite"),
                                          (np.inf, "contains NaN or infinite")])
def test_confidence_negative_or_nan(value, match):
    """API only: from_numpy, and cfjax.fit on a hand-built Problem (the CLI and estimator take none)."""
    R, labels = _ensemble()
    weights = np.ones_like(R)
    weights[1, 1] = value
    with pytest.raises(ValueError, match="confidence: " + match):
        _fit_via("api", R, labels, confidence=weights)
    problem = cfjax.from_numpy(R, labels)
    bad = problem._replace(C=problem.C.at[1, 1].set(value))
    config = cfjax.Config(latent_dim=2, max_iter=2)
    with pytest.raises(ValueError, match="problem.C: confidence must be >= 0|problem.R / problem.C: must be finite"):
        cfjax.fit(jax.random.key(0), bad, cfjax.Hparams.create(), config)


def test_confidence_on_missing_cells_is_ignored():
    """Handled: a NaN cell gets zero confidence whatever confidence the caller gives it."""
    R, labels = _ensemble()
    R[2, 3] = np.nan
    weights = np.full_like(R, 2.0)
    weights[2, 3] = np.nan  # not an error: the cell is unobserved
    problem = cfjax.from_numpy(R, labels, weights)
    assert float(problem.C[2, 3]) == 0.0 and float(problem.C[0, 0]) == 2.0


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("axis", ["row", "column"])
def test_row_or_column_all_missing(door, axis):
    R, labels = _ensemble()
    if axis == "row":
        R[2, :] = np.nan
        match = r"classifier row\(s\) \[2\] have no observed cell"
    else:
        R[:, 5] = np.nan
        match = r"instance column\(s\) \[5\] have no observed cell"
    if door == "sklearn":
        match = r"X \(read as R = X.T.*" + match
    with pytest.raises(ValueError, match=match):
        _fit_via(door, R, labels)


def _as_kind(R: np.ndarray, labels: np.ndarray, kind: str):
    """R and labels as a user might hold them; int and bool R are hard 0/1 votes."""
    if kind in ("int", "bool"):
        votes = R > 0.5
        return votes.astype(np.int64 if kind == "int" else np.bool_), labels.astype(np.int64)
    if kind == "list":
        return R.tolist(), labels.tolist()
    return R.astype(kind), labels.astype(kind)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("kind", ["int", "bool", "float16", "float32", "float64", "list"])
def test_int_bool_float16_float64_and_list_inputs_are_converted(door, kind):
    """Handled: read as float64 (float16 values are exact in it), then cast to JAX's float."""
    R, labels = _ensemble()
    R_in, labels_in = _as_kind(R, labels, kind)
    reference = _fit_via("api", np.asarray(R_in, np.float64), np.asarray(labels_in, np.float64))
    proba = _fit_via(door, R_in, labels_in)
    _assert_proba(proba, R.shape[1])
    _assert_same_as_api(door, proba, reference)


@pytest.mark.parametrize("door", DOORS)
def test_non_contiguous_arrays_are_copied(door):
    """Handled: strided and Fortran-ordered inputs give the result of their contiguous copy."""
    wide, labels = _ensemble(n=16)
    labels[:8] = [0, 0, 1, 1, 0, 0, 1, 1]  # every other one: both classes
    R, labels_in = wide[:, ::2], labels[::2]  # every other column: strided views
    if door == "cli":
        R = np.asfortranarray(R)  # np.savez keeps Fortran order and np.load returns it as such
    assert not R.flags.c_contiguous  # the input is hostile, or this test tests nothing
    reference = _fit_via("api", np.ascontiguousarray(R), np.ascontiguousarray(labels_in))
    proba = _fit_via(door, R, labels_in)
    _assert_same_as_api(door, proba, reference)


@pytest.mark.parametrize("door", DOORS)
def test_max_iter_not_positive(door):
    R, labels = _ensemble()
    with pytest.raises(ValueError, match="max_iter: must be positive"):
        _fit_via(door, R, labels, max_iter=0)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"tol": -1.0}, "tol: must be finite and >= 0"),
        ({"tol": float("nan")}, "tol: must be finite and >= 0"),
        ({"patience": -1}, "patience: must be >= 0"),
        ({"chunk_size": -1}, "chunk_size: must be >= 0"),
        ({"damped_every": 0}, "damped_every: must be >= 1"),
        ({"init_scale": 0.0}, "init_scale: must be finite and > 0"),
        ({"init_scale": float("inf")}, "init_scale: must be finite and > 0"),
        ({"plateau_factor": float("nan")}, "plateau_factor: must lie in"),
        ({"latent_dim": 2.0}, "latent_dim: expected an int"),
        ({"max_iter": True}, "max_iter: expected an int"),
        ({"tol": "small"}, "tol: expected a number"),
    ],
    ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) if isinstance(v, dict) else None,
)
def test_config_field_out_of_range(change, match):
    """Config fields the CLI and estimator never set are the API's alone."""
    R, labels = _ensemble()
    config = cfjax.Config(latent_dim=2, max_iter=2).replace(**change)
    with pytest.raises(ValueError, match=match):
        cfjax.fit(jax.random.key(0), cfjax.from_numpy(R, labels), cfjax.Hparams.create(), config)


def test_tol_zero_runs_every_iteration():
    """tol = 0 is the documented way to switch the convergence stop off: no change is below 0.

    A step that leaves the state unchanged gives a loss change of exactly 0, which is where
    "change <= tol" would have stopped the loop at tol = 0.
    """
    R, labels = _ensemble()
    problem = cfjax.from_numpy(R, labels)
    hparams = cfjax.Hparams.create()
    config = cfjax.Config(method="als", latent_dim=2, max_iter=5, tol=0.0)
    standing_still = cfjax.solvers.Method(
        name="standing_still", init=cfjax.solvers.get("als").init, step=lambda state, *args: state
    )
    state = driver.start(standing_still, jax.random.key(0), problem, hparams, config)
    state, history = driver.advance(standing_still, state, problem, hparams, config, 5)
    assert (np.diff(np.asarray(history.total)) == 0).all()  # the case "<= 0" stopped on
    assert int(state.n_iter) == 5 and not bool(state.converged)


@pytest.mark.parametrize("missing", ["R", "labels"])
def test_input_npz_without_R_or_labels(tmp_path, missing):
    R, labels = _ensemble()
    arrays = {"R": R, "labels": labels}
    del arrays[missing]
    np.savez(tmp_path / "in.npz", **arrays)
    with pytest.raises(ValueError, match=f"INPUT: .* has no array named {missing}"):
        _cli_fit(tmp_path / "in.npz", tmp_path / "out.npz")


@pytest.mark.parametrize("kind", ["text", "npy", "pickled_objects", "directory"])
def test_input_not_an_npz(tmp_path, kind):
    path = tmp_path / "in.npz"
    if kind == "text":
        path.write_text("R,labels\n0.5,1\n")
        match = "is not a readable .npz"
    elif kind == "npy":  # a valid NumPy file, but one bare array
        with open(path, "wb") as f:
            np.save(f, _ensemble()[0])
        match = "is a single array, not an .npz archive"
    elif kind == "pickled_objects":  # needs pickle to read: refused, never unpickled
        np.savez(path, R=np.array([[0.5, None]], dtype=object), labels=np.array([0, 1]))
        match = "is not a readable .npz"
    else:
        path.mkdir()
        match = "no such file"
    with pytest.raises(ValueError, match="INPUT: .*" + match):
        _cli_fit(path, tmp_path / "out.npz")


def test_unwritable_output(tmp_path):
    R, labels = _ensemble()
    np.savez(tmp_path / "in.npz", R=R, labels=labels)
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(ValueError, match="--output: cannot write"):  # missing folders are created
        _cli_fit(tmp_path / "in.npz", tmp_path / "a_file" / "out.npz",
                 "--latent-dim", 4, "--max-iter", BATTERY_ITER)  # the battery's compiled fit


# =============================================================================================
# Part 3: numerics

M, N = 5, 30

#: float32 fits: latent_dim = min(m, n), random init (so that the key matters for determinism).
#: The extreme-hyperparameter test and the property test share it: one compile per method.
FLOAT32_CONFIG = {"latent_dim": min(M, N), "max_iter": 12, "init": "random", "damped_every": 3}


def _config32(method: str) -> cfjax.Config:
    return cfjax.Config(method=method, **FLOAT32_CONFIG)


def _assert_finite_fit(result, problem, hparams, config) -> None:
    for leaf in jax.tree.leaves(result.params):
        assert np.isfinite(np.asarray(leaf)).all()
    for field in ("total", "recon", "sup"):
        assert np.isfinite(np.asarray(getattr(result.history, field))).all(), field
    assert 1 <= int(result.n_iter) <= config.max_iter
    _assert_proba(np.asarray(cfjax.proba(result.params, config)), problem.n_instances)
    parts = losses.loss_parts(result.params, problem, hparams, config)
    assert all(np.isfinite(float(v)) for v in parts)


def _random_problem_arrays(seed: int, missing: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    R = rng.uniform(size=(M, N))
    drop = rng.uniform(size=(M, N)) < missing
    drop[np.arange(N) % M, np.arange(N)] = False  # every row and column keeps a cell
    labels = np.where(rng.uniform(size=N) < 0.5, rng.integers(0, 2, N), -1).astype(np.float64)
    labels[:2] = [0.0, 1.0]
    return np.where(drop, np.nan, R), labels


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_extreme_hyperparameters_float32(method):
    """lam in {1e-8, 1e3} x rho in {1e-3, 1} at latent_dim = min(m, n): every output finite.

    lam = 1e-8 with d = m leaves the Grams of columns with fewer than d observed cells
    singular (the ALS kernel's jitter must act); lam = 1e3 shrinks the factors to ~0 (logits
    near the aggregator's bias); rho = 1e-3 divides by rho in label_aware_als and mm_als.
    """
    R, labels = _random_problem_arrays(0)
    problem = cfjax.from_numpy(R, labels)
    assert problem.R.dtype == np.float32
    config = _config32(method)
    for lam in (1e-8, 1e3):
        for rho in (1e-3, 1.0):
            hparams = solvers.get(method).hparams(lam=lam, rho=rho)
            result = cfjax.fit(jax.random.key(0), problem, hparams, config)
            _assert_finite_fit(result, problem, hparams, config)


@st.composite
def hostile_problems(draw) -> tuple[np.ndarray, np.ndarray]:
    """(R, labels) of shape (M, N): values anywhere in [0, 1] (hypothesis favours 0, 1 and long
    runs of one value, i.e. rank-deficient R), any pattern of NaN cells that leaves each row and
    column one observed cell, labels in {0, 1, -1, NaN} with both classes labeled."""
    R = draw(hnp.arrays(np.float64, (M, N), elements=st.floats(0.0, 1.0)))
    drop = draw(hnp.arrays(np.bool_, (M, N)))
    drop[np.arange(N) % M, np.arange(N)] = False
    labels = draw(hnp.arrays(np.float64, (N,), elements=st.sampled_from([0.0, 1.0, -1.0, np.nan])))
    labels[:2] = [0.0, 1.0]
    return np.where(drop, np.nan, R), labels


@pytest.mark.parametrize("method", METHOD_NAMES)
@given(arrays=hostile_problems(), rho=st.floats(1e-3, 1.0), log_lam=st.floats(-8.0, 3.0),
       seed=st.integers(0, 2**31 - 1))
def test_random_problems_give_finite_deterministic_fits(method, arrays, rho, log_lam, seed):
    """float32: outputs and loss finite, probabilities in [0, 1], and the same key twice gives
    bit-identical results."""
    problem = cfjax.from_numpy(*arrays)
    config = _config32(method)
    hparams = solvers.get(method).hparams(rho=rho, lam=10.0**log_lam)
    first = cfjax.fit(jax.random.key(seed), problem, hparams, config)
    second = cfjax.fit(jax.random.key(seed), problem, hparams, config)
    _assert_finite_fit(first, problem, hparams, config)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------------------------------------
# permutation equivariance (float64)

#: SVD init: a random init draws X[:, u] and Y[:, i] by position, so permuting the inputs does
#: not permute the start; the SVD of a permuted matrix is the permuted SVD up to the sign of
#: each component, to which every method is equivariant (X and Y flip together, X^T Y does not).
#: tol = 0: a relative change near tol may fall on either side after reordered sums, and stop
#: the two fits at different iterations. d = 2 < m, so the truncation is a real choice.
PERM_CONFIG = {"latent_dim": 2, "max_iter": 10, "init": "svd", "tol": 0.0, "damped_every": 3}
PERM_TOL = {"rtol": 1e-6, "atol": 1e-6}
#: Each float64 method costs a compile (~5 s on a busy 2-core machine), so the two variants of
#: `alternating` are left out: label_aware_als only rescales each cell's confidence by a
#: function of that cell (which permutes with R), and damped masks the same step by iteration.
PERM_METHODS = ("als", "alternating", "two_stage", "joint", "mm_als")


@st.composite
def generic_problems(draw) -> tuple[np.ndarray, np.ndarray]:
    """(R, labels) of shape (M, N) with values drawn from a seeded uniform, not by hypothesis.

    Equivariance is exact in exact arithmetic; in floating point it needs a fit that does not
    amplify rounding. Hypothesis' own arrays shrink to exactly structured R (mostly zeros, a
    few ones), where a coordinate that is 0 by symmetry in one ordering is 1e-17 in another
    and Adam, whose step is O(lr) once a gradient exceeds its eps, grows that noise to 1e-3
    within three steps (joint failed so, rightly: the input is the problem, not the method).
    Likewise the truncated SVD is not unique when singular values d and d + 1 (nearly) tie,
    which the `assume` below excludes.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    R = rng.uniform(size=(M, N))
    drop = rng.uniform(size=(M, N)) < draw(st.sampled_from([0.0, 0.1, 0.3]))
    drop[np.arange(N) % M, np.arange(N)] = False  # every row and column keeps a cell
    labels = np.where(rng.uniform(size=N) < 0.6, rng.integers(0, 2, N), -1).astype(np.float64)
    labels[:2] = [0.0, 1.0]
    s = np.linalg.svd(np.where(drop, 0.0, R), compute_uv=False)
    d = PERM_CONFIG["latent_dim"]
    assume(s[d - 1] - s[d] > 1e-2 * s[0])
    return np.where(drop, np.nan, R), labels


def _fit64(method: str, R: np.ndarray, labels: np.ndarray, rho: float, lam: float):
    config = cfjax.Config(method=method, **PERM_CONFIG)
    hparams = solvers.get(method).hparams(rho=rho, lam=lam)
    result = cfjax.fit(jax.random.key(0), cfjax.from_numpy(R, labels), hparams, config)
    proba = np.asarray(cfjax.proba(result.params, config))
    return result.params, proba


def _signs(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per latent row k, the sign s_k with actual[k] ~ s_k expected[k] (rows: the factors)."""
    s = np.sign(np.sum(actual * expected, axis=1))
    return np.where(s == 0, 1.0, s)[:, None]


@pytest.mark.parametrize("method", PERM_METHODS)
@given(arrays=generic_problems(), order=st.permutations(range(M)), rho=st.floats(0.05, 1.0),
       lam=st.floats(1e-3, 1.0))
def test_permuting_classifiers_permutes_X_and_keeps_probabilities(method, arrays, order, rho, lam):
    R, labels = arrays
    perm = np.asarray(order)
    with jax.enable_x64(True):
        params, proba = _fit64(method, R, labels, rho, lam)
        params_p, proba_p = _fit64(method, R[perm], labels, rho, lam)
    np.testing.assert_allclose(proba_p, proba, **PERM_TOL)
    X, X_p = np.asarray(params.X)[:, perm], np.asarray(params_p.X)
    signs = _signs(X_p, X)
    np.testing.assert_allclose(X_p, signs * X, **PERM_TOL)
    np.testing.assert_allclose(np.asarray(params_p.Y), signs * np.asarray(params.Y), **PERM_TOL)
    np.testing.assert_allclose(np.asarray(params_p.theta.w), np.asarray(params.theta.w)[perm], **PERM_TOL)
    np.testing.assert_allclose(np.asarray(params_p.theta.b), np.asarray(params.theta.b), **PERM_TOL)


@pytest.mark.parametrize("method", PERM_METHODS)
@given(arrays=generic_problems(), order=st.permutations(range(N)), rho=st.floats(0.05, 1.0),
       lam=st.floats(1e-3, 1.0))
def test_permuting_instances_permutes_probabilities_and_Y(method, arrays, order, rho, lam):
    R, labels = arrays
    perm = np.asarray(order)
    with jax.enable_x64(True):
        params, proba = _fit64(method, R, labels, rho, lam)
        params_p, proba_p = _fit64(method, R[:, perm], labels[perm], rho, lam)
    np.testing.assert_allclose(proba_p, proba[perm], **PERM_TOL)
    Y, Y_p = np.asarray(params.Y)[:, perm], np.asarray(params_p.Y)
    signs = _signs(Y_p, Y)
    np.testing.assert_allclose(Y_p, signs * Y, **PERM_TOL)
    np.testing.assert_allclose(np.asarray(params_p.X), signs * np.asarray(params.X), **PERM_TOL)
    np.testing.assert_allclose(np.asarray(params_p.theta.w), np.asarray(params.theta.w), **PERM_TOL)
