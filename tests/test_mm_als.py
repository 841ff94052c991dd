"""MM-ALS: monotone descent of the exact loss, closed-form blocks vs NumPy twins, agreement with joint."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cfjax
from cfjax import data, losses, metrics, validation
from cfjax.aggregators import WeightedTheta
from cfjax.predict import logits
from cfjax.solvers import mm_als
from cfjax.structs import Config, Hparams, Params, Problem

# --------------------------------------------------------------------------- helpers


def _random_problem(rng: np.random.Generator, m: int, n: int, missing: float, zero_conf: float) -> Problem:
    """A small float64 problem with NaN-missing cells, some zero confidence, both classes labeled."""
    R = rng.uniform(size=(m, n))
    observed = rng.uniform(size=(m, n)) >= missing
    observed[np.arange(n) % m, np.arange(n)] = True  # every column and row keeps a cell
    C = rng.uniform(0.2, 2.0, size=(m, n)) * observed
    C[rng.uniform(size=(m, n)) < zero_conf] = 0.0  # observed but zero confidence
    R = np.where(observed, R, 0.0)
    labels = (rng.uniform(size=n) < 0.5).astype(np.float64)
    labels[:2] = [0.0, 1.0]
    labeled = rng.uniform(size=n) < 0.6
    labeled[:2] = True
    validation = ~labeled & (rng.uniform(size=n) < 0.5)
    return Problem(
        R=jnp.asarray(R), C=jnp.asarray(C), observed=jnp.asarray(observed),
        labels=jnp.asarray(labels), labeled=jnp.asarray(labeled), validation=jnp.asarray(validation),
    )


def _random_params(rng: np.random.Generator, m: int, n: int, d: int) -> Params:
    return Params(
        X=jnp.asarray(rng.normal(scale=0.5, size=(d, m))),
        Y=jnp.asarray(rng.normal(scale=0.5, size=(d, n))),
        theta=WeightedTheta(w=jnp.asarray(rng.normal(size=m)), b=jnp.asarray(rng.normal())),
    )


def _hparams(rho, lam=0.05, agg_l2=1e-3) -> Hparams:
    return Hparams.create(rho=rho, lam=lam, agg_l2=agg_l2, focal_gamma=0.0)


#: Every curvature: "bound" and "sharp" descend by construction, "exact" by its guards.
MODES = ("bound", "sharp", "exact")


def _blocks(mode):
    """`mm_sweep`'s three blocks in its order, for `mode` (under "exact", the guarded ones)."""
    if mode == "exact":
        return (
            functools.partial(mm_als._guarded, mm_als.theta_step),
            mm_als._guarded_y,
            functools.partial(mm_als._guarded, mm_als.x_step),
        )
    return tuple(functools.partial(step, mode=mode) for step in (mm_als.theta_step, mm_als.y_step, mm_als.x_step))


@functools.partial(jax.jit, static_argnames=("config", "n_sweeps", "modes"))
def _block_losses(params, problem, hparams, config, n_sweeps, modes=MODES):
    """The exact loss before and after every block of `n_sweeps` sweeps, one row per mode in
    `modes` (one compiled program for all), (len(modes), 1 + 3 n_sweeps)."""

    def trace(mode):
        def sweep(p, _):
            out = []
            for step in _blocks(mode):
                p = step(p, problem, hparams, config)
                out.append(losses.loss(p, problem, hparams, config))
            return p, jnp.stack(out)

        _, values = jax.lax.scan(sweep, params, None, length=n_sweeps)
        return jnp.concatenate([losses.loss(params, problem, hparams, config)[None], values.ravel()])

    return jnp.stack([trace(mode) for mode in modes])


def _assert_non_increasing(values, rtol=1e-10):
    values = np.asarray(values)
    assert np.isfinite(values).all()
    rises = values[..., 1:] - values[..., :-1]
    assert (rises <= rtol * np.abs(values[..., :-1])).all(), f"loss rose: max rise {rises.max():.3e} in {values}"


# --------------------------------------------------------------------------- monotone descent


# Two fixed shapes (d = 1 and d = 3): each compiles once and is reused across examples.
_SHAPES = [(3, 12, 1), (6, 30, 3)]


@given(
    shape=st.sampled_from(_SHAPES),
    rho=st.sampled_from([0.01, 0.5, 0.99]),
    lam=st.floats(1e-3, 1.0),
    agg_l2=st.sampled_from([0.0, 1e-3, 0.1]),
    missing=st.floats(0.0, 0.4),
    zero_conf=st.floats(0.0, 0.2),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_block_never_increases_the_exact_loss(shape, rho, lam, agg_l2, missing, zero_conf, seed):
    m, n, d = shape
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        problem = _random_problem(rng, m, n, missing, zero_conf)
        params = _random_params(rng, m, n, d)
        config = Config(method="mm_als", latent_dim=d)
        trace = _block_losses(params, problem, _hparams(rho, lam, agg_l2), config, n_sweeps=10)
        _assert_non_increasing(trace)


def test_monotone_without_any_ridge():
    """lam = 0 and agg_l2 = 0 with 60% missing cells: systems near singular, still monotone, finite."""
    with jax.enable_x64(True):
        for seed in range(3):
            rng = np.random.default_rng(seed)
            problem = _random_problem(rng, 6, 30, missing=0.6, zero_conf=0.2)
            params = _random_params(rng, 6, 30, 3)
            config = Config(method="mm_als", latent_dim=3)  # same program as the property test
            trace = _block_losses(params, problem, _hparams(0.5, lam=0.0, agg_l2=0.0), config, n_sweeps=10)
            _assert_non_increasing(trace)


_fit = jax.jit(cfjax.solvers.fit_traced, static_argnames="config")


#: The library's default curvature (what a fit without `mm_curvature` runs), one of `MODES`.
DEFAULT_MODE = Config().mm_curvature


def _history_config(curvature=DEFAULT_MODE):
    return Config(method="mm_als", latent_dim=2, max_iter=15, tol=0.0, mm_curvature=curvature)


@pytest.mark.parametrize("curvature", MODES)
def test_fit_history_is_monotone_and_matches_the_loss(curvature):
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        problem = _random_problem(rng, 5, 25, missing=0.2, zero_conf=0.1)
        hparams = _hparams(0.5)
        config = _history_config(curvature)
        result = _fit(jax.random.key(0), problem, hparams, config)
        _assert_non_increasing(result.history.total)
        final = losses.loss(result.params, problem, hparams, config)
        np.testing.assert_allclose(result.history.total[-1], final, rtol=1e-12)


def test_default_guard_keeps_a_near_singular_float32_fit_finite_and_monotone():
    """A hostile float32 problem that hypothesis found (`tests/test_robustness.py`): R zero but
    one cell, 3 labels, lam = 1e-8, rho = 0.055, random start. There even the "sharp" bound step
    of the X block raised L 1e6-fold (rounding in a near-singular solve), and "exact", which
    took that fallback unguarded, reached NaN by the third sweep. A fallback that is not finite
    and no worse is now refused too, and the block left as it is."""
    R = np.zeros((5, 30))
    R[0, 6] = 0.54138344
    R[0, [2, 3, 24]] = np.nan
    labels = np.full(30, -1.0)
    labels[[0, 1, 24]] = [0.0, 1.0, 1.0]
    problem = cfjax.from_numpy(R, labels)
    config = Config(method="mm_als", latent_dim=5, max_iter=12, init="random")  # default curvature
    hparams = cfjax.solvers.get("mm_als").hparams(rho=0.054554893573640066, lam=1e-8)
    result = cfjax.fit(jax.random.key(1335), problem, hparams, config)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(result.params))
    _assert_non_increasing(result.history.total, rtol=1e-6)


def test_focal_gamma_is_ignored():
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        problem = _random_problem(rng, 5, 25, missing=0.0, zero_conf=0.0)
        config = _history_config()  # same shapes and config as above: no new compile
        plain = _fit(jax.random.key(0), problem, _hparams(0.5), config)
        focal = _fit(jax.random.key(0), problem, _hparams(0.5)._replace(focal_gamma=jnp.float64(2.0)), config)
        np.testing.assert_allclose(plain.history.total, focal.history.total, rtol=1e-12)


def test_sharp_curvature_majorizes_cross_entropy():
    """CE(s) <= CE(s0) + g (s - s0) + kappa(s0) / 2 (s - s0)^2 for all s, tight at s0 and -s0."""
    with jax.enable_x64(True):
        s0 = jnp.concatenate([jnp.linspace(-30.0, 30.0, 601), jnp.asarray([0.0, 1e-5, -1e-5])])
        s = jnp.linspace(-40.0, 40.0, 801)
        kappa = mm_als.curvature(s0, "sharp")
        assert bool(jnp.all(kappa <= 0.25)) and bool(jnp.all(kappa > 0))
        for label in (0.0, 1.0):
            ce = losses.cross_entropy(jnp.full(s.shape, label), s, jnp.zeros(()))
            ce0 = losses.cross_entropy(jnp.full(s0.shape, label), s0, jnp.zeros(()))
            g = jax.nn.sigmoid(s0) - label
            gap = s[None, :] - s0[:, None]
            bound = ce0[:, None] + g[:, None] * gap + 0.5 * kappa[:, None] * gap**2
            assert float(jnp.min(bound - ce[None, :])) >= -1e-12
            mirror = losses.cross_entropy(jnp.full(s0.shape, label), -s0, jnp.zeros(()))
            at_mirror = ce0 + g * (-2.0 * s0) + 0.5 * kappa * (2.0 * s0) ** 2
            np.testing.assert_allclose(at_mirror, mirror, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- closed forms vs NumPy


def _np_curvature(s, mode):
    if mode == "bound":
        return np.full(s.shape, 0.25)
    if mode == "sharp":  # Jaakkola-Jordan: (sigma(s) - 1/2) / s
        return np.array([0.25 if abs(t) < 1e-4 else (1 / (1 + np.exp(-t)) - 0.5) / t for t in s])
    p = 1 / (1 + np.exp(-s))
    return p * (1 - p)


def _np_terms(params, problem, hparams, config, mode="bound"):
    """a, beta (n,), logits s0 (n,), g (n,), kappa (n,) by explicit loops."""
    X, Y = np.asarray(params.X), np.asarray(params.Y)
    w, b = np.asarray(params.theta.w), float(params.theta.b)
    C, labels, labeled = np.asarray(problem.C), np.asarray(problem.labels), np.asarray(problem.labeled)
    m, n = C.shape
    rho = float(hparams.rho)
    idx = [i for i in range(n) if labeled[i]]
    n_pos = sum(labels[i] for i in idx)
    omega = np.zeros(n)
    for i in idx:
        omega[i] = len(idx) / (2 * (n_pos if labels[i] == 1 else len(idx) - n_pos)) if config.class_weight else 1.0
    a = rho / C.sum()
    beta = (1 - rho) * omega / omega.sum()
    s0 = np.array([sum(w[u] * X[:, u] @ Y[:, i] for u in range(m)) + b for i in range(n)])
    p = 1 / (1 + np.exp(-s0))
    g = p - labels
    return a, beta, s0, g, _np_curvature(s0, mode)


def _np_ridge_column(X, R, C, a, lam, i):
    """(Hessian, right-hand side) of column i's reconstruction part a [sum_u c_ui (r_ui - x_u^T y)^2
    + lam |y|^2] in y, by a loop over the rows of R."""
    hess = 2 * a * lam * np.eye(X.shape[0])
    rhs = np.zeros(X.shape[0])
    for u in range(X.shape[1]):
        hess += 2 * a * C[u, i] * np.outer(X[:, u], X[:, u])
        rhs += 2 * a * C[u, i] * R[u, i] * X[:, u]
    return hess, rhs


def _np_ridge_blocks(Y, R, C, a, lam):
    """(Hessian, right-hand side) of the reconstruction part in vec(X) = (x_1; ...; x_rows): block
    diagonal, by loops over rows and columns."""
    d, n = Y.shape
    rows = C.shape[0]
    hess = 2 * a * lam * np.eye(d * rows)
    rhs = np.zeros(d * rows)
    for u in range(rows):
        for i in range(n):
            hess[u * d:(u + 1) * d, u * d:(u + 1) * d] += 2 * a * C[u, i] * np.outer(Y[:, i], Y[:, i])
            rhs[u * d:(u + 1) * d] += 2 * a * C[u, i] * R[u, i] * Y[:, i]
    return hess, rhs


def _np_y_step(params, problem, hparams, config, mode):
    """Per column: minimise a[sum_u c (r - x_u^T y)^2 + lam |y|^2] + beta[g (s - s0) + kappa/2 (s - s0)^2]."""
    a, beta, s0, g, kappa = _np_terms(params, problem, hparams, config, mode)
    X, w, b = np.asarray(params.X), np.asarray(params.theta.w), float(params.theta.b)
    R, C = np.asarray(problem.R), np.asarray(problem.C)
    v = X @ w  # s(y) = v^T y + b
    Y = np.zeros((X.shape[0], R.shape[1]))
    for i in range(R.shape[1]):
        hess, rhs = _np_ridge_column(X, R, C, a, float(hparams.lam), i)
        hess += beta[i] * kappa[i] * np.outer(v, v)
        rhs -= beta[i] * (g[i] - kappa[i] * (s0[i] - b)) * v  # Q = y^T hess y / 2 - rhs^T y + const
        Y[:, i] = np.linalg.solve(hess, rhs)
    return Y


def _np_x_step(params, problem, hparams, config, mode):
    """The dense (d m) majorized quadratic in vec(X) = (x_1; ...; x_m), solved directly."""
    a, beta, s0, g, kappa = _np_terms(params, problem, hparams, config, mode)
    Y, w, b = np.asarray(params.Y), np.asarray(params.theta.w), float(params.theta.b)
    R, C = np.asarray(problem.R), np.asarray(problem.C)
    d, n = Y.shape
    m = C.shape[0]
    hess, rhs = _np_ridge_blocks(Y, R, C, a, float(hparams.lam))
    for i in range(n):
        phi = np.concatenate([w[u] * Y[:, i] for u in range(m)])  # s_i = phi^T vec(X) + b
        hess += beta[i] * kappa[i] * np.outer(phi, phi)
        rhs -= beta[i] * (g[i] - kappa[i] * (s0[i] - b)) * phi
    return np.linalg.solve(hess, rhs).reshape(m, d).T


def _np_theta_step(params, problem, hparams, config, mode):
    """Majorized Newton: H = F_a diag(omega kappa) F_a^T / W + 2 agg_l2 diag(1..1, 0) (+ the ridge)."""
    X, Y = np.asarray(params.X), np.asarray(params.Y)
    w, b = np.asarray(params.theta.w), float(params.theta.b)
    _, beta, _, g, kappa = _np_terms(params, problem, hparams, config, mode)
    l2 = float(hparams.agg_l2)
    m = w.size
    weights = beta / beta.sum()  # omega / W
    Fa = np.vstack([X.T @ Y, np.ones((1, Y.shape[1]))])
    grad = Fa @ (weights * g) + 2 * l2 * np.append(w, 0.0)
    H = Fa @ np.diag(weights * kappa) @ Fa.T + np.diag(np.append(np.full(m, 2 * l2), 0.0))
    H += np.sqrt(np.finfo(np.float64).eps) * np.mean(np.diag(H)) * np.eye(m + 1)
    delta = np.linalg.solve(H, grad)
    return w - delta[:m], b - delta[m]


@pytest.mark.parametrize("mode", ["bound", "sharp", "exact"])
@pytest.mark.parametrize("class_weight", [True, False])
def test_y_step_matches_numpy_loop(mode, class_weight):
    rng = np.random.default_rng(11)
    with jax.enable_x64(True):
        problem = _random_problem(rng, 5, 14, missing=0.3, zero_conf=0.1)
        params = _random_params(rng, 5, 14, 3)
        hparams = _hparams(0.3, lam=0.1)
        config = Config(method="mm_als", latent_dim=3, class_weight=class_weight)
        got = mm_als.y_step(params, problem, hparams, config, mode).Y
        want = _np_y_step(params, problem, hparams, config, mode)
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mode", ["bound", "sharp", "exact"])
def test_x_step_matches_dense_joint_system(mode):
    rng = np.random.default_rng(12)
    with jax.enable_x64(True):
        problem = _random_problem(rng, 6, 16, missing=0.2, zero_conf=0.1)
        params = _random_params(rng, 6, 16, 3)
        hparams = _hparams(0.2, lam=0.1)
        config = Config(method="mm_als", latent_dim=3)
        got = mm_als.x_step(params, problem, hparams, config, mode).X
        want = _np_x_step(params, problem, hparams, config, mode)
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mode", ["bound", "sharp"])
@pytest.mark.parametrize("agg_l2", [0.0, 0.01])
def test_theta_step_matches_numpy(agg_l2, mode):
    rng = np.random.default_rng(13)
    with jax.enable_x64(True):
        problem = _random_problem(rng, 5, 20, missing=0.0, zero_conf=0.0)
        params = _random_params(rng, 5, 20, 2)
        hparams = _hparams(0.5, agg_l2=agg_l2)
        config = Config(method="mm_als", latent_dim=2)
        got = mm_als.theta_step(params, problem, hparams, config, mode).theta
        w, b = _np_theta_step(params, problem, hparams, config, mode)
        F = np.asarray(params.X.T @ params.Y)
        # the logits are well determined; w itself only up to the conditioning of H (agg_l2 = 0)
        np.testing.assert_allclose(got.w @ F + got.b, w @ F + b, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got.w, w, rtol=1e-6)
        np.testing.assert_allclose(got.b, b, rtol=1e-6)


def test_rho_one_is_plain_als():
    """With rho = 1 the supervised terms vanish: the X and Y steps are ALS's ridge solves."""
    rng = np.random.default_rng(14)
    with jax.enable_x64(True):
        problem = _random_problem(rng, 4, 15, missing=0.2, zero_conf=0.0)
        params = _random_params(rng, 4, 15, 2)
        hparams = _hparams(1.0, lam=0.1)
        config = Config(method="mm_als", latent_dim=2)
        X = mm_als.x_step(params, problem, hparams, config).X
        Y = mm_als.y_step(params, problem, hparams, config).Y
        np.testing.assert_allclose(X, cfjax.ridge.update_X(params.Y, problem.R, problem.C, hparams.lam), rtol=1e-9)
        np.testing.assert_allclose(Y, cfjax.ridge.update_Y(params.X, problem.R, problem.C, hparams.lam), rtol=1e-9)


# --------------------------------------------------------------------------- API


def test_refuses_non_logit_linear_aggregator():
    ens = data.preset(jax.random.key(0), "seed", n_instances=40, n_classifiers=4)
    config = Config(method="mm_als", latent_dim=2, aggregator="mean")
    with pytest.raises(ValueError, match="aggregator"):
        validation.check_config(config, ens.problem)
    with pytest.raises(ValueError, match="aggregator"):
        cfjax.fit(jax.random.key(0), ens.problem, Hparams.create(), config)
    with pytest.raises(ValueError, match="aggregator"):  # the trace-time check, without the host's
        jax.eval_shape(functools.partial(cfjax.solvers.fit_traced, config=config), jax.random.key(0), ens.problem,
                       Hparams.create())


def test_registered():
    assert cfjax.solvers.get("mm_als").step is mm_als.mm_sweep
    assert cfjax.solvers.get("mm_als").uses_labels


# --------------------------------------------------------------------------- agreement with joint GD


@pytest.mark.slow  # 3000 Adam steps: a statistical comparison
def test_agrees_with_joint_gradient_descent():
    """Seed setting: MM-ALS's final loss within 1% of (or below) long-run Adam, test PR-AUC within 0.01."""
    ens = data.preset(jax.random.key(0), "seed", n_instances=500, n_classifiers=10)
    hparams = Hparams.create(rho=0.5, lr=0.03)
    mm_config = Config(method="mm_als", latent_dim=4, max_iter=200, tol=0.0)
    joint_config = Config(method="joint", formulation="free", latent_dim=4, max_iter=3000, tol=0.0, patience=0)
    mm = cfjax.fit(jax.random.key(0), ens.problem, hparams, mm_config)
    joint = cfjax.fit(jax.random.key(0), ens.problem, hparams, joint_config)
    mm_loss = float(losses.loss(mm.params, ens.problem, hparams, mm_config))
    joint_loss = float(losses.loss(joint.params, ens.problem, hparams, joint_config))
    assert mm_loss <= 1.01 * joint_loss, (mm_loss, joint_loss)
    y_true = jnp.asarray(ens.y_true, jnp.float32)
    test = jnp.asarray(ens.test)
    mm_ap = metrics.average_precision(y_true, logits(mm.params, mm_config), test)
    joint_ap = metrics.average_precision(y_true, logits(joint.params, joint_config), test)
    assert abs(float(mm_ap) - float(joint_ap)) <= 0.01, (float(mm_ap), float(joint_ap))


# --------------------------------------------------------------------------- K classes


#: The K-class curvatures: Jaakkola-Jordan's "sharp" bound is binary only.
K_MODES = ("bound", "exact")


def _random_k_problem(rng: np.random.Generator, m: int, n: int, K: int, missing: float) -> Problem:
    """A float64 K-class problem (call under x64): Dirichlet probabilities, whole cells missing,
    every class labeled, about 40 % of the columns unlabeled."""
    P = rng.dirichlet(np.ones(K), size=(m, n)).transpose(0, 2, 1)  # (m, K, n)
    gone = rng.uniform(size=(m, n)) < missing
    gone[np.arange(n) % m, np.arange(n)] = False  # every column and row keeps a cell
    P[np.repeat(gone[:, None, :], K, axis=1)] = np.nan
    labels = rng.integers(0, K, size=n)
    labels[rng.uniform(size=n) < 0.4] = -1
    labels[:K] = np.arange(K)
    return cfjax.from_numpy(P, labels, dtype=np.float64)


def _random_k_params(rng: np.random.Generator, rows: int, n: int, d: int, K: int) -> Params:
    return Params(
        X=jnp.asarray(rng.normal(scale=0.5, size=(d, rows))),
        Y=jnp.asarray(rng.normal(scale=0.5, size=(d, n))),
        theta=WeightedTheta(w=jnp.asarray(rng.normal(size=(K, rows))), b=jnp.asarray(rng.normal(size=K))),
    )


def _np_softmax_curvature(s, mode):
    """The K x K curvature of CE at logits s (K,): the Hessian, or Bohning's bound."""
    K = s.size
    if mode == "bound":
        return 0.5 * (np.eye(K) - np.ones((K, K)) / K)
    p = np.exp(s - s.max())
    p /= p.sum()
    return np.diag(p) - np.outer(p, p)


def _np_k_terms(params, problem, hparams, config, mode):
    """a, beta (n,), logits S0 (K, n), gradients G (K, n), curvatures (n, K, K) by loops."""
    X, Y = np.asarray(params.X), np.asarray(params.Y)
    W, b = np.asarray(params.theta.w), np.asarray(params.theta.b)
    C, onehot, labeled = np.asarray(problem.C), np.asarray(problem.labels), np.asarray(problem.labeled)
    K, n = onehot.shape
    rho = float(hparams.rho)
    classes = onehot.argmax(0)
    idx = [i for i in range(n) if labeled[i]]
    omega = np.zeros(n)
    for i in idx:  # class_weight: each class carries 1/K of the weight
        omega[i] = len(idx) / (K * sum(classes[j] == classes[i] for j in idx)) if config.class_weight else 1.0
    a = rho / C.sum()
    beta = (1 - rho) * omega / omega.sum()
    S0 = np.stack([W @ (X.T @ Y[:, i]) + b for i in range(n)], axis=1)
    P = np.exp(S0 - S0.max(0))
    P /= P.sum(0)
    return a, beta, S0, P - onehot, np.stack([_np_softmax_curvature(S0[:, i], mode) for i in range(n)])


def _np_k_y_step(params, problem, hparams, config, mode):
    """Per column: minimise a[sum_u c (r - x_u^T y)^2 + lam |y|^2] + beta[g^T (s - s0) + (s - s0)^T K (s - s0) / 2]
    with s = V^T y + b, V = X W^T."""
    a, beta, S0, G, curv = _np_k_terms(params, problem, hparams, config, mode)
    X, W, b = np.asarray(params.X), np.asarray(params.theta.w), np.asarray(params.theta.b)
    R, C = np.asarray(problem.R), np.asarray(problem.C)
    V = X @ W.T
    Y = np.zeros((X.shape[0], R.shape[1]))
    for i in range(R.shape[1]):
        hess, rhs = _np_ridge_column(X, R, C, a, float(hparams.lam), i)
        hess += beta[i] * V @ curv[i] @ V.T
        rhs -= beta[i] * V @ (G[:, i] - curv[i] @ (S0[:, i] - b))
        Y[:, i] = np.linalg.solve(hess, rhs)
    return Y


def _np_k_x_step(params, problem, hparams, config, mode):
    """The dense (d m K) majorized quadratic in vec(X), solved directly: s_i = Phi_i^T vec(X) + b
    with Phi_i's block (u, k) = W[k, u] y_i."""
    a, beta, S0, G, curv = _np_k_terms(params, problem, hparams, config, mode)
    Y, W, b = np.asarray(params.Y), np.asarray(params.theta.w), np.asarray(params.theta.b)
    R, C = np.asarray(problem.R), np.asarray(problem.C)
    d, n = Y.shape
    rows = C.shape[0]
    hess, rhs = _np_ridge_blocks(Y, R, C, a, float(hparams.lam))
    for i in range(n):
        Phi = np.concatenate([np.outer(Y[:, i], W[:, u]) for u in range(rows)])  # (d rows, K)
        hess += beta[i] * Phi @ curv[i] @ Phi.T
        rhs -= beta[i] * Phi @ (G[:, i] - curv[i] @ (S0[:, i] - b))
    return np.linalg.solve(hess, rhs).reshape(rows, d).T


def _np_k_theta_step(params, problem, hparams, config, mode):
    """Majorized multinomial Newton over theta = [W, b] (K, rows + 1), raveled row-major."""
    _, beta, _, G, curv = _np_k_terms(params, problem, hparams, config, mode)
    X, Y = np.asarray(params.X), np.asarray(params.Y)
    W, b = np.asarray(params.theta.w), np.asarray(params.theta.b)
    K, rows = W.shape
    weights = beta / beta.sum()
    l2 = float(hparams.agg_l2)
    Fa = np.vstack([X.T @ Y, np.ones((1, Y.shape[1]))])
    grad = sum(weights[i] * np.kron(G[:, i], Fa[:, i]) for i in range(Fa.shape[1]))
    grad += 2 * l2 * np.hstack([W, np.zeros((K, 1))]).ravel()
    H = sum(weights[i] * np.kron(curv[i], np.outer(Fa[:, i], Fa[:, i])) for i in range(Fa.shape[1]))
    H += np.diag(np.tile(np.append(np.full(rows, 2 * l2), 0.0), K))
    H += np.sqrt(np.finfo(np.float64).eps) * np.mean(np.diag(H)) * np.eye(K * (rows + 1))
    theta = np.hstack([W, b[:, None]]) - np.linalg.solve(H, grad).reshape(K, rows + 1)
    return theta[:, :rows], theta[:, rows]


def test_bohning_bound_majorizes_the_softmax_hessian_and_exact_is_the_hessian():
    """(I - 1 1^T / K) / 2 - (diag(p) - p p^T) is positive semi-definite at any logits, and the
    "exact" curvature is jax's Hessian of the K-class cross-entropy."""
    rng = np.random.default_rng(20)
    with jax.enable_x64(True):
        for K in (3, 5):
            S = jnp.asarray(rng.normal(scale=4.0, size=(K, 40)))
            a, z = mm_als.curvature_parts(S, "exact")
            exact = jax.vmap(lambda ai, zi: jnp.diag(ai) - jnp.outer(zi, zi), in_axes=1)(a, z)
            a, z = mm_als.curvature_parts(S, "bound")
            bound = jax.vmap(lambda ai, zi: jnp.diag(ai) - jnp.outer(zi, zi), in_axes=1)(a, z)
            assert float(np.linalg.eigvalsh(np.asarray(bound - exact)).min()) >= -1e-12
            onehot = jnp.eye(K)[:, 0]
            hessian = jax.vmap(jax.hessian(lambda s, onehot=onehot: -jax.nn.log_softmax(s) @ onehot), in_axes=1)(S)
            np.testing.assert_allclose(exact, hessian, atol=1e-12)
        with pytest.raises(ValueError, match="sharp"):
            mm_als.curvature_parts(S, "sharp")


@pytest.mark.parametrize("mode", K_MODES)
@pytest.mark.parametrize("class_weight", [True, False])
def test_k_class_y_step_matches_numpy_loop(mode, class_weight):
    rng = np.random.default_rng(24)  # labeled class counts 1, 2, 2: class weights matter
    with jax.enable_x64(True):
        problem = _random_k_problem(rng, 3, 14, 3, missing=0.3)
        params = _random_k_params(rng, 9, 14, 3, 3)
        hparams = _hparams(0.3, lam=0.1)
        config = Config(method="mm_als", latent_dim=3, class_weight=class_weight)
        got = mm_als.y_step(params, problem, hparams, config, mode).Y
        np.testing.assert_allclose(got, _np_k_y_step(params, problem, hparams, config, mode), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mode", K_MODES)
def test_k_class_x_step_matches_dense_joint_system(mode):
    rng = np.random.default_rng(24)  # labeled class counts 1, 3, 6
    with jax.enable_x64(True):
        problem = _random_k_problem(rng, 3, 16, 3, missing=0.2)
        params = _random_k_params(rng, 9, 16, 2, 3)
        hparams = _hparams(0.2, lam=0.1)
        config = Config(method="mm_als", latent_dim=2)
        got = mm_als.x_step(params, problem, hparams, config, mode).X
        np.testing.assert_allclose(got, _np_k_x_step(params, problem, hparams, config, mode), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mode", K_MODES)
@pytest.mark.parametrize("agg_l2", [0.0, 0.01])
def test_k_class_theta_step_matches_numpy(agg_l2, mode):
    rng = np.random.default_rng(23)
    with jax.enable_x64(True):
        problem = _random_k_problem(rng, 3, 30, 3, missing=0.0)
        params = _random_k_params(rng, 9, 30, 2, 3)
        hparams = _hparams(0.5, agg_l2=agg_l2)
        config = Config(method="mm_als", latent_dim=2)
        got = mm_als.theta_step(params, problem, hparams, config, mode).theta
        W, b = _np_k_theta_step(params, problem, hparams, config, mode)
        F = np.asarray(params.X.T @ params.Y)
        # the logits are well determined up to the softmax's common shift; W only up to H's conditioning
        logits = np.asarray(got.w @ F + got.b[:, None])
        want = W @ F + b[:, None]
        np.testing.assert_allclose(logits - logits.mean(0), want - want.mean(0), rtol=1e-7, atol=1e-9)
        if agg_l2 > 0:
            np.testing.assert_allclose(got.w, W, rtol=1e-6, atol=1e-9)


@given(
    rho=st.sampled_from([0.01, 0.5, 0.99]),
    lam=st.floats(1e-3, 1.0),
    agg_l2=st.sampled_from([0.0, 1e-3, 0.1]),
    missing=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**31 - 1),
)
def test_k_class_blocks_never_increase_the_exact_loss(rho, lam, agg_l2, missing, seed):
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        problem = _random_k_problem(rng, 3, 20, 3, missing)
        params = _random_k_params(rng, 9, 20, 3, 3)
        config = Config(method="mm_als", latent_dim=3)
        trace = _block_losses(params, problem, _hparams(rho, lam, agg_l2), config, n_sweeps=8, modes=K_MODES)
        _assert_non_increasing(trace)


@pytest.mark.parametrize("aggregator", ["weighted", "prior"])
def test_k_class_fit_is_monotone_and_beats_chance(aggregator):
    """A K-class fit from the library's start (default curvature): the history never rises and
    ends at the loss of the returned params; the unlabeled columns are classified above chance."""
    from tests.test_multiclass import ensemble

    R, labels, y = ensemble(9, n=90)
    with jax.enable_x64(True):
        problem = cfjax.from_numpy(R, labels, dtype=np.float64)
        hparams = cfjax.solvers.get("mm_als").hparams(rho=0.5, agg_l2=1e-2)
        config = Config(method="mm_als", latent_dim=3, max_iter=20, tol=0.0, aggregator=aggregator)
        result = cfjax.fit(jax.random.key(0), problem, hparams, config)
        _assert_non_increasing(result.history.total)
        np.testing.assert_allclose(result.history.total[-1], losses.loss(result.params, problem, hparams, config),
                                   rtol=1e-10)
        S = np.asarray(logits(result.params, config))
        test = labels < 0
        K = S.shape[0]
        assert (S[:, test].argmax(0) == y[test]).mean() > 1.5 / K


def test_k_class_refuses_the_binary_sharp_bound():
    from tests.test_multiclass import ensemble

    R, labels, _ = ensemble(9)
    with pytest.raises(ValueError, match="mm_curvature"):
        cfjax.fit(jax.random.key(0), cfjax.from_numpy(R, labels),
                  config=Config(method="mm_als", latent_dim=2, mm_curvature="sharp"))
