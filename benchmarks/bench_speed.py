"""Issue #6 speed harness: six workloads x three sizes x two dtypes, against three denominators.

Workloads, on a random problem (R uniform, C = 1 on 70% of the cells, 30% positive labels,
half the columns labeled; `_problem.random_problem`), each jitted at the outside with the
library defaults (automatic chunking, `method="auto"`):

* **ALS sweep**: `cfjax.ridge.als_sweep` (X then Y), lam = 0.1;
* **joint step**: one step of the joint solver: value and gradient of
  `cfjax.solvers.joint.objective` (free Y, weighted aggregator, class weights) and one Adam
  update (`joint.make_optimizer`, patience 0), parameters and Adam state donated;
* **joint step, unfused**: the same step on the objective as it was before issue 19's fused
  reconstruction term (`unfused_objective`: X^T Y formed in full, once, and both parts
  differentiated by autodiff), timed in the same run so the two compare under the same load;
* **MM-ALS sweep**: `cfjax.solvers.mm_als.mm_sweep` (theta, Y, X; curvature "bound");
* **whole fit / k steps**: the jitted `cfjax.fit` entry (`cfjax.fit_jit`, what `cfjax.fit`
  runs after its host checks) of the joint method at the joint step's settings (free Y,
  patience 0) with `max_iter = k` (`--fit-steps`, default 10) and tol = 0, so all k steps run;
  no validation columns. Reported against k joint steps: fit time / (k x the joint step's
  median), the driver's overhead (prepare, SVD init, the loss evaluated after every step, the
  history) on top of the steps; the target is <= 1.2. Timed at the default BLAS threads and
  at 1 thread, the faster used (the SVD init runs in LAPACK, see the reference loop below);
* **64-config sweep**: `cfjax.sweep.run` over 16 rho x 4 seeds of the joint method,
  `--sweep-iters` iterations each, random init (64 distinct fits); by default only at the
  small and middle sizes and in float32 (each skipped cell says why in the table).

Sizes (m, n, d): (10, 1e4, 8), (50, 1e5, 16), (100, 1e6, 32); float32 and float64.

Denominators, measured in the same run:

1. **the reference loop**: NumPy float64, one `np.linalg.solve` per row of an ALS sweep
   (the reference implementation's algorithm, `_problem.numpy_rows`). Instance rows: a subset
   of `--numpy-rows`, scaled to n. Classifier rows: all m when m * n <= 1e7, else
   `--numpy-x-rows` of them, scaled to m. Each part is timed with BLAS at its default threads
   and at 1 thread (threadpoolctl) and the faster is used: on a loaded machine OpenBLAS's
   threads made single rows up to 30x slower, which would flatter the speed-up;
2. **matmul throughput**: `jnp.dot` of two 4096 x 4096 float32 matrices (median of repeats,
   measured before and after the workloads; the mean of the two medians is used). The
   FLOP-bound limit of a workload is its FLOP count over this rate: an ALS sweep costs about
   4 m n d^2 (Grams) + (m + n) d^3 / 3 (Cholesky) FLOP (issue #6); an MM-ALS sweep the same
   plus 8 m n d; a joint step 6 m n d (X^T Y and its two adjoints); elementwise work is not
   counted, so the ratio "time / bound" is >= 1 and says how far from matmul speed a
   workload runs;
3. **memory bandwidth** (joint steps and ALS sweeps): STREAM's copy (a = s b, as "scale") and triad
   (a = b + s c) on float32 vectors of `STREAM_ELEMENTS` (256 MB each, far above the caches),
   jitted with the output's buffer donated so that no call pays for fresh pages (as STREAM
   reuses its arrays); bytes read plus written (STREAM's count: a write-allocate read of the
   output is not counted) over the median time, measured before and after
   the workloads, the mean of the two triad rates used. The memory-bound limit of a joint step
   is the bytes it must move over that rate: read R and C once (2 m n), read Y and write its
   gradient in that pass (2 d n), then Adam reads Y, the gradient and the two moments and writes
   Y and the moments (7 d n): (2 m n + 9 d n) x the item size, the (d, m) and (m,) arrays
   neglected. An ALS sweep reads R and C in each of its two steps and reads and writes Y:
   (4 m n + 2 d n) x the item size (its packed Grams stay in cache, chunk by chunk).
   "time / memory bound" >= 1 says how far from streaming speed a workload runs.

Steady-state times are medians of at least `--repeats` calls (at n >= 1e6 at most 3), repeated
until they add up to 1 s, each blocked with `block_until_ready`, after one warm-up call.

Also: compile time (ahead of time, `lower().compile()`; for the sweep entry point, which is
a host function, first call minus the steady median), peak memory of the ALS sweep at the
largest size (XLA's buffer assignment `compiled.memory_analysis()`: temporaries beyond the
arguments and outputs; and, with `--rss`, the peak resident set of a fresh process during a
steady-state sweep over its resident set just before it, from /proc/self/status VmHWM after
a reset through /proc/self/clear_refs and a glibc malloc_trim), and the PyTorch eager
comparison of the joint step
(`bench_torch_joint.py`, run by the interpreter that `--torch-python PATH` or the environment
variable `CFJAX_TORCH_PYTHON` names, else by this one when it can import torch; with none of
the three the script stops at once with a one-line message, unless `--no-torch` or the joint
workload is not selected).

Prints markdown tables and writes benchmarks/results/speed.json. Not part of the tests.

    python benchmarks/bench_speed.py                      # everything (about 20-30 min here)
    python benchmarks/bench_speed.py --quick              # tiny sizes, a smoke check
    python benchmarks/bench_speed.py --sizes 50,100000,16 --dtypes float32
    CFJAX_TORCH_PYTHON=torchvenv/bin/python python benchmarks/bench_speed.py  # torch elsewhere
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _harness as H
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _problem import JOINT, LAM, numpy_rows, random_problem

import cfjax
from cfjax import losses, ridge, sweep
from cfjax.aggregators import WeightedTheta
from cfjax.compilation import jit
from cfjax.solvers import joint, mm_als
from cfjax.structs import Config, Hparams, Params, Problem

SIZES = ["10,10000,8", "50,100000,16", "100,1000000,32"]
QUICK_SIZES = ["10,2000,4", "20,5000,8"]
WORKLOADS = ("als", "joint", "joint_unfused", "mm_als", "fit", "sweep")
LABELS = {
    "als": "ALS sweep",
    "joint": "joint Adam step",
    "joint_unfused": "joint Adam step, unfused",
    "mm_als": "MM-ALS sweep",
    "fit": "whole fit / k steps",
    "sweep": "64-config sweep",
}
TORCH_PYTHON_ENV = "CFJAX_TORCH_PYTHON"  # the PyTorch interpreter, when --torch-python is not given
# issue #6 targets, float32, at the three default sizes
TARGET_SPEEDUP = {(10, 10_000, 8): 70.0, (50, 100_000, 16): 16.0, (100, 1_000_000, 32): 7.0}
TARGET_BOUND, TARGET_MEMORY_GB, TARGET_COMPILE_S, TARGET_TORCH = 3.0, 2.0, 2.0, 4.5
TARGET_FIT_OVER_STEPS = 1.2  # a whole jitted fit of k steps over k joint steps, every size and dtype
LARGEST = (100, 1_000_000, 32)
MIN_TOTAL_S = 1.0  # fast workloads repeat until their calls add up to this (median of many)
STREAM_ELEMENTS = 2**26  # float32 elements per STREAM vector: 256 MB, 8x the 32 MB L3 here


# ----------------------------------------------------------------------------- denominators


def matmul_throughput(repeats: int) -> dict:
    """GFLOP/s of jnp.dot on two 4096 x 4096 float32 matrices (median of `repeats`)."""
    k = 4096
    a = jax.random.normal(jax.random.key(0), (k, k), jnp.float32)
    t = H.compile_and_time(jax.jit(jnp.dot), (a, a), None, repeats, min_total_s=MIN_TOTAL_S)
    return {"size": k, "median_s": t["run_s"], "gflops": 2 * k**3 / t["run_s"] / 1e9}


def stream_bandwidth(repeats: int) -> dict:
    """STREAM-like copy ("scale": a = s b) and triad (a = b + s c) in GB/s (bytes read plus
    written over the median time), float32 vectors of `STREAM_ELEMENTS`, output donated."""
    k = STREAM_ELEMENTS
    b = jax.random.uniform(jax.random.key(1), (k,), jnp.float32)
    c = jax.random.uniform(jax.random.key(2), (k,), jnp.float32)
    s = jnp.asarray(0.5, jnp.float32)  # traced, so XLA cannot fold the multiply away
    # keep_unused: jit drops an argument the function does not read, and with it the donation;
    # the result then lands in fresh pages, whose first-touch faults made a 256 MB triad read
    # 4-6 GB/s here instead of ~30.
    scale = jax.jit(lambda a, b, s: s * b, donate_argnums=0, keep_unused=True)
    triad = jax.jit(lambda a, b, c, s: b + s * c, donate_argnums=0, keep_unused=True)
    out, itemsize = {"elements": k}, 4
    for name, fn, args, n_arrays in (("copy", scale, (b, s), 2), ("triad", triad, (b, c, s), 3)):
        run_s = _donated_median(fn, jnp.zeros((k,), jnp.float32), args, max(repeats, 5))
        out[name] = {"median_s": run_s, "gbps": n_arrays * k * itemsize / run_s / 1e9}
    return out


def _donated_median(fn, first_out, args, repeats) -> float:
    """Median seconds of fn(out, *args), each call's result donated as the next call's `out`."""
    buffer = [first_out]

    def call():
        buffer[0] = fn(buffer[0], *args)
        return buffer[0]

    H.block(call())
    return H.median_time(call, repeats, MIN_TOTAL_S)[0]


def joint_bytes(m, n, d, itemsize):
    """Bytes a joint Adam step must move (see the module docstring): 2 m n + 9 d n items."""
    return (2 * m * n + 9 * d * n) * itemsize


def als_bytes(m, n, d, itemsize):
    """Bytes an ALS sweep must move (see the module docstring): 4 m n + 2 d n items."""
    return (4 * m * n + 2 * d * n) * itemsize


def memory_bytes(workload, m, n, d, itemsize):
    if workload in ("joint", "joint_unfused"):
        return joint_bytes(m, n, d, itemsize)
    if workload == "als":
        return als_bytes(m, n, d, itemsize)
    return None


def _best_over_threads(fn) -> tuple[float, str]:
    """(seconds, BLAS threads) of fn() at the default BLAS threads and at 1 thread, the faster."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, "default"
    best = (np.inf, "")
    for limit in (None, 1):
        with threadpool_limits(limits=limit):
            start = time.perf_counter()
            fn()
            best = min(best, (time.perf_counter() - start, "default" if limit is None else "1"))
    return best


def numpy_reference(p: dict, x_rows: int, y_rows: int) -> dict:
    """Seconds of one float64 ALS sweep by the per-row loop (estimated from subsets)."""
    R, C, Y = p["R"], p["C"], p["Y"]
    m, n = R.shape
    rows_x = range(m) if m * n <= 10_000_000 else range(min(x_rows, m))
    t_x, threads_x = _best_over_threads(lambda: numpy_rows(Y, R, C, LAM, rows_x))
    X_new = numpy_rows(Y, R, C, LAM, range(min(m, 2)))  # any factors serve for the Y timing
    X_new = np.concatenate([X_new, p["X"][:, X_new.shape[1] :]], axis=1)
    sub = np.linspace(0, n - 1, min(y_rows, n)).astype(int)
    Rt, Ct = np.ascontiguousarray(R[:, sub].T), np.ascontiguousarray(C[:, sub].T)
    t_y, threads_y = _best_over_threads(lambda: numpy_rows(X_new, Rt, Ct, LAM, range(len(sub))))
    total = t_x * m / len(rows_x) + t_y * n / len(sub)
    return {
        "sweep_s": total,
        "x_rows_timed": len(rows_x),
        "x_s": t_x,
        "x_blas_threads": threads_x,
        "y_rows_timed": len(sub),
        "y_s": t_y,
        "y_blas_threads": threads_y,
    }


def als_flops(m, n, d):
    return 4 * m * n * d**2 + (m + n) * d**3 / 3


def flops(workload, m, n, d):
    if workload == "als":
        return als_flops(m, n, d)
    if workload == "mm_als":
        return als_flops(m, n, d) + 8 * m * n * d
    if workload in ("joint", "joint_unfused"):
        return 6 * m * n * d
    return None


# ----------------------------------------------------------------------------- workloads


def device_problem(p: dict, dtype) -> tuple[Problem, Params]:
    cast = lambda x: jnp.asarray(x, dtype)
    C = cast(p["C"])
    n = C.shape[1]
    problem = Problem(
        R=cast(p["R"]),
        C=C,
        observed=C > 0,
        labels=cast(p["labels"]),
        labeled=jnp.asarray(p["labeled"]),
        validation=jnp.zeros(n, bool),
    )
    params = Params(
        X=cast(p["X"]), Y=cast(p["Y"]), theta=WeightedTheta(w=cast(p["w"]), b=cast(p["b"]))
    )
    return problem, params


def bench_als(problem, params, dtype, repeats):
    lam = jnp.asarray(LAM, dtype)
    args = (params.X, params.Y, problem.R, problem.C, lam)
    t = H.compile_and_time(jit(ridge.als_sweep), args, None, repeats, min_total_s=MIN_TOTAL_S)
    mem = t.pop("compiled").memory_analysis()
    t["memory"] = {
        "temp_bytes": int(mem.temp_size_in_bytes),
        "argument_bytes": int(mem.argument_size_in_bytes),
        "output_bytes": int(mem.output_size_in_bytes),
    }
    return t


def joint_config(d):
    return Config(method="joint", formulation="free", latent_dim=d, patience=0, tol=0.0)


def joint_hparams(dtype):
    return Hparams.create(
        rho=JOINT["rho"], lam=JOINT["lam"], agg_l2=JOINT["agg_l2"], lr=JOINT["lr"],
        focal_gamma=JOINT["focal_gamma"], dtype=dtype,
    )  # fmt: skip


def unfused_objective(params, problem, hparams, config):
    """The joint objective (free Y) as it was before issue 19: X^T Y formed in full, once, and
    read by both parts; autodiff then writes its (m, n) cotangent and reads it twice."""
    R_hat = losses.reconstruct(params)
    recon = losses.reconstruction_parts(params, problem, hparams, R_hat)[0]
    sup = losses.supervised_parts(params, problem, hparams, config, R_hat=R_hat)[0]
    return hparams.rho * recon + (1.0 - hparams.rho) * sup


def make_joint_step(config, objective=joint.objective):
    def step(params, opt_state, problem, hparams):
        value, grads = jax.value_and_grad(objective)(params, problem, hparams, config)
        optimizer = joint.make_optimizer(hparams, config)
        updates, opt_state = optimizer.update(grads, opt_state, params, value=value)
        return optax.apply_updates(params, updates), opt_state, value

    return jit(step, donate_argnums=(0, 1))


def bench_joint(problem, params, dtype, repeats, objective=joint.objective):
    d = params.X.shape[0]
    config, hparams = joint_config(d), joint_hparams(dtype)
    opt_state = joint.make_optimizer(hparams, config).init(params)
    step = make_joint_step(config, objective)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    compile_s, compiled = H.compile_time(step, params, opt_state, problem, hparams)
    state = [copy(params), copy(opt_state)]

    def call():
        state[0], state[1], value = compiled(state[0], state[1], problem, hparams)
        return value

    H.block(call())
    run_s, runs = H.median_time(call, repeats, MIN_TOTAL_S)
    return {"compile_s": compile_s, "run_s": run_s, "runs_s": runs}


def bench_mm_als(problem, params, dtype, repeats):
    d = params.X.shape[0]
    config = Config(method="mm_als", latent_dim=d, mm_curvature="bound")
    hparams = mm_als.mm_hparams(joint_hparams(dtype))
    fn = jit(mm_als.mm_sweep, static_argnames="config")
    args = (params, problem, hparams)
    compile_s, compiled = H.compile_time(fn, *args, config=config)
    call = lambda: compiled(*args)
    H.block(call())
    run_s, runs = H.median_time(call, repeats, MIN_TOTAL_S)
    return {"compile_s": compile_s, "run_s": run_s, "runs_s": runs}


def _blas_limits():
    """(label, context manager) per BLAS thread setting: the default, and 1 thread when
    threadpoolctl is there."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return [("default", contextlib.nullcontext)]
    return [("default", contextlib.nullcontext), ("1", lambda: threadpool_limits(limits=1))]


def bench_fit(problem, params, dtype, repeats, steps):
    """The jitted fit (`cfjax.fit_jit`) of `steps` joint iterations at the joint step's config.

    Timed at the default BLAS threads and at 1 thread, the faster used: the SVD init calls
    LAPACK (scipy's OpenBLAS), whose threads made it up to 200x slower on a loaded machine.
    """
    d = params.X.shape[0]
    config, hparams = joint_config(d).replace(max_iter=steps), joint_hparams(dtype)
    key = jax.random.key(0)
    compile_s, compiled = H.compile_time(cfjax.fit_jit, key, problem, hparams, config=config)
    call = lambda: compiled(key, problem, hparams)
    n_iter = int(H.block(call()).n_iter)
    by_threads = {}
    for label, limit in _blas_limits():
        with limit():
            by_threads[label] = H.median_time(call, repeats, MIN_TOTAL_S)
    threads = min(by_threads, key=lambda t: by_threads[t][0])
    run_s, runs = by_threads[threads]
    return {
        "compile_s": compile_s, "run_s": run_s, "runs_s": runs, "steps": steps, "n_iter": n_iter,
        "blas_threads": threads, "run_s_by_blas_threads": {t: v[0] for t, v in by_threads.items()},
    }  # fmt: skip


def bench_sweep(problem, params, dtype, repeats, iters):
    d = params.X.shape[0]
    config = Config(method="joint", formulation="free", latent_dim=d, max_iter=iters, tol=0.0, patience=0)
    config = config.replace(init="random")
    grid = sweep.grid(rho=np.linspace(0.05, 0.95, 16), dtype=dtype)
    keys = jax.random.split(jax.random.key(1), 4)
    call = lambda: sweep.run(keys, problem, grid, config)
    start = time.perf_counter()
    H.block(call())
    first_s = time.perf_counter() - start
    run_s, runs = H.median_time(call, repeats)
    return {
        "compile_s": max(first_s - run_s, 0.0),
        "run_s": run_s,
        "runs_s": runs,
        "fits": 64,
        "iters": iters,
        "compile_note": "first call minus steady median",
    }


# ----------------------------------------------------------------------------- peak RSS


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc malloc_trim), so that the RSS before a sweep
    does not already hold buffers the allocator kept from earlier work."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def rss_child(m: int, n: int, d: int, dtype: str) -> None:
    """Run in a fresh process: peak resident memory of an ALS sweep above what it had before.

    The program is compiled ahead of time first, and freed heap memory is returned to the OS
    (malloc_trim) before each measured sweep, so the peak counts the sweep's own buffers
    (temporaries and outputs).
    """
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    k = jax.random.split(jax.random.key(0), 4)
    R = jax.random.uniform(k[0], (m, n), dtype)
    C = (jax.random.uniform(k[1], (m, n), dtype) > 0.3).astype(dtype)
    X = jax.random.normal(k[2], (d, m), dtype)
    Y = jax.random.normal(k[3], (d, n), dtype)
    lam = jnp.asarray(LAM, dtype)
    compiled = jit(ridge.als_sweep).lower(X, Y, R, C, lam).compile()
    result = {"inputs_bytes": int(sum(a.nbytes for a in (R, C, X, Y)))}
    for name in ("first", "steady"):
        _release_free_memory()
        before = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the RSS now
        out = H.block(compiled(X, Y, R, C, lam))
        peak = _status_kb("VmHWM")
        result[f"{name}_rss_before_bytes"] = before * 1024
        result[f"{name}_extra_bytes"] = (peak - before) * 1024
        result["outputs_bytes"] = int(sum(o.nbytes for o in out))
        del out
    # The first sweep's baseline still holds memory from making the inputs that malloc_trim
    # could not return; the steady sweep's is clean (it matched XLA's temporaries + outputs).
    result["extra_bytes"] = result["steady_extra_bytes"]
    print(json.dumps(result))


def measure_rss(m, n, d, dtype) -> dict:
    cmd = [sys.executable, __file__, "--_rss", f"{m},{n},{d},{dtype}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        return {"error": (out.stderr or out.stdout)[-500:]}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- torch


def torch_python(flag: str | None) -> str:
    """The interpreter that runs bench_torch_joint.py: --torch-python, else $CFJAX_TORCH_PYTHON,
    else this one if it can import torch.

    Raises:
      SystemExit: with a one-line message when none is usable (checked before any timing, so a
        long run does not end without its comparison).
    """
    python = flag or os.environ.get(TORCH_PYTHON_ENV)
    if python:
        source = "--torch-python" if flag else TORCH_PYTHON_ENV
        if not Path(python).is_file():
            raise SystemExit(f"bench_speed.py: {source}: no interpreter at {python!r}")
        return python
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    raise SystemExit(
        "bench_speed.py: torch cannot be imported here and no PyTorch interpreter was given: "
        f"pass --torch-python PATH or set {TORCH_PYTHON_ENV}=PATH (a Python with torch), "
        "or --no-torch"
    )


def run_torch(python: str, sizes, dtypes, repeats, out: Path) -> dict:
    cmd = [
        python,
        str(H.HERE / "bench_torch_joint.py"),
        "--repeats",
        str(repeats),
        "--out",
        str(out),
    ]
    cmd += ["--sizes", *[f"{m},{n},{d}" for m, n, d in sizes], "--dtypes", *dtypes]
    print("running", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    print(proc.stdout[-3000:], flush=True)
    if proc.returncode:
        return {"status": f"torch script failed: {proc.stderr[-1000:]}"}
    return {"status": "ok", **json.loads(out.read_text())}


def cfjax_check(check: dict) -> dict:
    """cfjax's loss and gradient norms on the torch script's small check problem."""
    with jax.enable_x64(True):
        p = random_problem(check["m"], check["n"], check["d"], seed=check["seed"])
        problem, params = device_problem(p, jnp.float64)
        config, hparams = joint_config(check["d"]), joint_hparams(jnp.float64)
        value, grads = jax.value_and_grad(joint.objective)(params, problem, hparams, config)
        norms = {
            "X": float(jnp.linalg.norm(grads.X)),
            "Y": float(jnp.linalg.norm(grads.Y)),
            "w": float(jnp.linalg.norm(grads.theta.w)),
            "b": float(jnp.abs(grads.theta.b)),
        }
    return {"loss": float(value), "grad_norms": norms}


# ----------------------------------------------------------------------------- main


def skip_reason(workload, size, dtype, args) -> str | None:
    n = size[1]
    if workload == "sweep":
        if dtype != "float32":
            return "float32 only (time budget)"
        if n > args.sweep_max_n:
            return f"n > {args.sweep_max_n:.0e}: 64 fits x {args.sweep_iters} steps (time budget)"
    return None


def fmt_ms(s):
    if s is None:
        return "-"
    return f"{1e3 * s:.2f}" if s < 1e-3 else f"{1e3 * s:.1f}" if s < 10 else f"{1e3 * s:.0f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=None, help="m,n,d triples")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--repeats", type=int, default=5, help="(at n >= 1e6: at most 3)")
    parser.add_argument("--numpy-rows", type=int, default=2000, help="instance rows timed")
    parser.add_argument("--numpy-x-rows", type=int, default=3, help="classifier rows timed")
    parser.add_argument("--sweep-iters", type=int, default=5)
    parser.add_argument("--sweep-max-n", type=int, default=100_000)
    parser.add_argument(
        "--fit-steps", type=int, default=10, help="k: iterations of the whole-fit workload"
    )
    parser.add_argument(
        "--torch-python", default=None, metavar="PATH",
        help=f"a Python with torch for the joint-step comparison (default: ${TORCH_PYTHON_ENV}, "
             "else this interpreter if it has torch)",
    )  # fmt: skip
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument(
        "--rss", choices=["auto", "yes", "no"], default="auto",
        help="peak-RSS subprocess for the ALS sweep (auto: at n >= 1e6)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats: a smoke run")
    parser.add_argument("--out", default=str(H.RESULTS / "speed.json"))
    parser.add_argument("--_rss", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fit_steps < 1:
        parser.error(f"--fit-steps: must be a positive int, got {args.fit_steps}")
    if args._rss:
        m, n, d, dtype = args._rss.split(",")
        return rss_child(int(m), int(n), int(d), dtype)
    if args.quick:
        args.sizes = args.sizes or QUICK_SIZES
        args.repeats, args.numpy_rows, args.sweep_iters = 2, 300, 2
    sizes = [tuple(int(v) for v in s.split(",")) for s in (args.sizes or SIZES)]
    if not args.no_torch and "joint" in args.workloads:
        args.torch_python = torch_python(args.torch_python)  # now, not after the timings

    meta = H.provenance()
    print(H.header_line(meta), flush=True)
    mm_before = matmul_throughput(args.repeats)
    print(f"matmul 4096^2 float32: {mm_before['gflops']:.1f} GFLOP/s", flush=True)
    stream_before = stream_bandwidth(args.repeats)
    print(f"STREAM: {_stream_text(stream_before)}", flush=True)

    rows, references, memory = [], {}, {}
    for size in sizes:
        m, n, d = size
        repeats = args.repeats if n < 1_000_000 else min(args.repeats, 3)
        p = random_problem(m, n, d)
        ref = numpy_reference(p, args.numpy_x_rows, args.numpy_rows)
        references[f"{m},{n},{d}"] = ref
        print(f"({m}, {n}, {d}): NumPy loop {ref['sweep_s']:.2f} s (est.)", flush=True)
        for dtype_name in args.dtypes:
            with jax.enable_x64(dtype_name == "float64"):
                dtype = jnp.dtype(dtype_name)
                problem, params = device_problem(p, dtype)
                for workload in args.workloads:
                    row = {"workload": workload, "m": m, "n": n, "d": d, "dtype": dtype_name}
                    reason = skip_reason(workload, size, dtype_name, args)
                    if reason:
                        rows.append({**row, "skipped": reason})
                        print(f"  {dtype_name} {workload}: skipped ({reason})", flush=True)
                        continue
                    if workload == "als":
                        t = bench_als(problem, params, dtype, repeats)
                        if size == max(sizes, key=lambda s: s[1]):
                            memory[f"{m},{n},{d},{dtype_name}"] = {"xla": t["memory"]}
                    elif workload == "joint":
                        t = bench_joint(problem, params, dtype, repeats)
                    elif workload == "joint_unfused":
                        t = bench_joint(problem, params, dtype, repeats, unfused_objective)
                    elif workload == "mm_als":
                        t = bench_mm_als(problem, params, dtype, repeats)
                    elif workload == "fit":
                        t = bench_fit(problem, params, dtype, repeats, args.fit_steps)
                    else:
                        t = bench_sweep(problem, params, dtype, min(repeats, 2), args.sweep_iters)
                    row.update(t)
                    rows.append(row)
                    print(
                        f"  {dtype_name} {workload}: compile {t['compile_s']:.2f} s, "
                        f"median {1e3 * t['run_s']:.1f} ms, load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                del problem, params
        del p

    mm_after = matmul_throughput(args.repeats)
    gflops = 0.5 * (mm_before["gflops"] + mm_after["gflops"])
    print(f"matmul after: {mm_after['gflops']:.1f} GFLOP/s; using {gflops:.1f}", flush=True)
    stream_after = stream_bandwidth(args.repeats)
    gbps = 0.5 * (stream_before["triad"]["gbps"] + stream_after["triad"]["gbps"])
    print(f"STREAM after: {_stream_text(stream_after)}; using triad {gbps:.1f} GB/s", flush=True)

    for key, mem in memory.items():
        m, n, d, dtype_name = key.split(",")
        if args.rss == "yes" or (args.rss == "auto" and int(n) >= 1_000_000):
            mem["rss"] = measure_rss(int(m), int(n), int(d), dtype_name)
            print(f"peak RSS {key}: {mem['rss']}", flush=True)

    # derived columns
    by_key = {(r["workload"], r["m"], r["n"], r["d"], r["dtype"]): r for r in rows}
    for r in rows:
        if "skipped" in r:
            continue
        f = flops(r["workload"], r["m"], r["n"], r["d"])
        if f is not None:
            r["flops"] = f
            r["bound_s"] = f / (gflops * 1e9)
            r["time_over_bound"] = r["run_s"] / r["bound_s"]
        moved = memory_bytes(r["workload"], r["m"], r["n"], r["d"], np.dtype(r["dtype"]).itemsize)
        if moved is not None:
            r["bytes"] = moved
            r["mem_bound_s"] = r["bytes"] / (gbps * 1e9)
            r["time_over_mem_bound"] = r["run_s"] / r["mem_bound_s"]
        if r["workload"] == "als":
            r["numpy_s"] = references[f"{r['m']},{r['n']},{r['d']}"]["sweep_s"]
            r["speedup"] = r["numpy_s"] / r["run_s"]
        step = by_key.get(("joint", r["m"], r["n"], r["d"], r["dtype"]))
        if r["workload"] == "sweep" and step and "run_s" in step:
            r["vs_64_x_iters_steps"] = r["run_s"] / (64 * r["iters"] * step["run_s"])
        if r["workload"] == "fit" and step and "run_s" in step:
            r["fit_over_k_steps"] = r["run_s"] / (r["steps"] * step["run_s"])
        if r["workload"] == "joint_unfused" and step and "run_s" in step:
            r["unfused_over_fused"] = r["run_s"] / step["run_s"]

    torch_result = {"status": "skipped (--no-torch)"}
    if not args.no_torch and "joint" in args.workloads:
        torch_out = Path(args.out).with_name("torch_joint.json")  # beside --out
        torch_result = run_torch(args.torch_python, sizes, args.dtypes, args.repeats, torch_out)
        if torch_result.get("status") == "ok":
            torch_result["cfjax_check"] = cfjax_check(torch_result["check"])
            for t in torch_result["rows"]:
                r = by_key.get(("joint", t["m"], t["n"], t["d"], t["dtype"]))
                if r and "run_s" in r:
                    r["torch_s"] = t["step_s"]
                    r["torch_over_cfjax"] = t["step_s"] / r["run_s"]

    table = speed_table(rows)
    denominators = denominator_table(references, mm_before, mm_after, gflops, stream_before, stream_after, gbps)
    extra = extra_tables(rows, memory, torch_result)
    targets = check_targets(rows, memory)
    print("\n" + denominators + "\n\n" + table + "\n\n" + extra + "\n\n" + targets)
    payload = {
        "cfjax": cfjax.__version__,
        "settings": {
            "sizes": sizes,
            "dtypes": args.dtypes,
            "workloads": args.workloads,
            "repeats": args.repeats,
            "numpy_rows": args.numpy_rows,
            "numpy_x_rows": args.numpy_x_rows,
            "sweep_iters": args.sweep_iters,
            "fit_steps": args.fit_steps,
            "quick": args.quick,
            "lam": LAM,
            "joint_hparams": JOINT,
            "chunk_bytes": ridge.CHUNK_BYTES,
            "unroll_max_dim": ridge.UNROLL_MAX_DIM,
            "command": "python benchmarks/bench_speed.py " + " ".join(argv or sys.argv[1:]),
        },
        "matmul": {"before": mm_before, "after": mm_after, "gflops_used": gflops},
        "stream": {"before": stream_before, "after": stream_after, "triad_gbps_used": gbps},
        "numpy_reference": references,
        "rows": rows,
        "memory": memory,
        "torch": torch_result,
        "tables": {
            "denominators": denominators,
            "speed": table,
            "extra": extra,
            "targets": targets,
        },
    }
    out = H.write_json(args.out, payload, meta)
    print(f"wrote {out}")


# ----------------------------------------------------------------------------- tables


def speed_table(rows) -> str:
    headers = [
        "workload", "m", "n", "d", "dtype", "compile (s)", "median (ms)",
        "NumPy loop (ms)", "speed-up", "FLOP-bound (ms)", "time / bound",
        "memory-bound (ms)", "time / memory bound", "note",
    ]  # fmt: skip
    out = []
    for r in rows:
        head = [LABELS[r["workload"]], r["m"], f"{r['n']:.0e}", r["d"], r["dtype"]]
        if "skipped" in r:
            out.append(head + ["-"] * 8 + [f"skipped: {r['skipped']}"])
            continue
        note = ""
        if r["workload"] == "sweep":
            note = f"{r['iters']} steps x 64 fits"
            if "vs_64_x_iters_steps" in r:
                note += f"; {r['vs_64_x_iters_steps']:.2f}x 64 x {r['iters']} joint steps"
        if r["workload"] == "fit":
            note = f"{r['n_iter']} of {r['steps']} steps run ({r['blas_threads']} BLAS threads)"
            if "fit_over_k_steps" in r:
                note += (
                    f"; {r['fit_over_k_steps']:.2f}x {r['steps']} joint steps "
                    f"(target <= {TARGET_FIT_OVER_STEPS:g})"
                )
            else:
                note += "; no joint step measured (add the joint workload for the ratio)"
        if "torch_over_cfjax" in r:
            note = (
                f"torch eager {fmt_ms(r['torch_s'])} ms: cfjax {r['torch_over_cfjax']:.1f}x faster"
            )
        if "unfused_over_fused" in r:
            note = f"the fused step is {r['unfused_over_fused']:.2f}x faster"
        out.append(
            head
            + [
                f"{r['compile_s']:.2f}",
                fmt_ms(r["run_s"]),
                fmt_ms(r.get("numpy_s")),
                f"{r['speedup']:.0f}x" if "speedup" in r else "-",
                fmt_ms(r.get("bound_s")),
                f"{r['time_over_bound']:.1f}" if "time_over_bound" in r else "-",
                fmt_ms(r.get("mem_bound_s")),
                f"{r['time_over_mem_bound']:.1f}" if "time_over_mem_bound" in r else "-",
                note,
            ]
        )
    return H.markdown_table(headers, out)


def _stream_text(stream: dict) -> str:
    return f"copy {stream['copy']['gbps']:.1f} GB/s, triad {stream['triad']['gbps']:.1f} GB/s"


def denominator_table(references, mm_before, mm_after, gflops, stream_before, stream_after, gbps) -> str:
    lines = [
        (
            f"matmul (jnp.dot 4096 x 4096 float32): {mm_before['gflops']:.1f} GFLOP/s before, "
            f"{mm_after['gflops']:.1f} after; FLOP-bound limits use {gflops:.1f} GFLOP/s."
        ),
        "",
        (
            f"memory (STREAM-like, float32 vectors of {stream_before['elements']:.2e}): "
            f"{_stream_text(stream_before)} before, {_stream_text(stream_after)} after; "
            f"memory-bound limits use triad {gbps:.1f} GB/s."
        ),
        "",
    ]
    rows = []
    for key, ref in references.items():
        m, n, d = (int(v) for v in key.split(","))
        rows.append(
            [
                m, f"{n:.0e}", d, f"{ref['sweep_s']:.2f}",
                f"{ref['x_rows_timed']} of {m} ({ref['x_blas_threads']} BLAS threads)",
                f"{ref['y_rows_timed']} of {n} ({ref['y_blas_threads']})",
            ]
        )  # fmt: skip
    headers = ["m", "n", "d", "NumPy loop, one sweep (s, est.)", "X rows timed", "Y rows timed"]
    return "\n".join(lines) + H.markdown_table(headers, rows)


def extra_tables(rows, memory, torch_result) -> str:
    parts = []
    if memory:
        mrows = []
        for key, mem in memory.items():
            x = mem["xla"]
            rss = mem.get("rss", {})
            rss_cell = (
                f"{rss['extra_bytes'] / 2**30:.2f}"
                if "extra_bytes" in rss
                else rss.get("error", "-")
            )
            mrows.append(
                [
                    key.replace(",", ", "),
                    f"{x['argument_bytes'] / 2**30:.2f}",
                    f"{x['output_bytes'] / 2**30:.2f}",
                    f"{x['temp_bytes'] / 2**30:.2f}",
                    rss_cell,
                ]
            )
        parts.append(
            "Peak memory of the ALS sweep (GiB): XLA buffer assignment (arguments R, C, X, Y; "
            "outputs X, Y; temporaries) and the peak RSS of a fresh process during a steady-state "
            "sweep above its RSS just before it (freed memory returned to the OS first; "
            "outputs included).\n\n"
            + H.markdown_table(
                ["m, n, d, dtype", "arguments", "outputs", "temporaries (XLA)", "peak RSS extra"],
                mrows,
            )
        )
    status = torch_result.get("status")
    if status == "ok":
        chk, mine = torch_result["check"], torch_result["cfjax_check"]
        trows = [
            [f"({t['m']}, {t['n']:.0e}, {t['d']})", t["dtype"], fmt_ms(t["step_s"]), t["threads"]]
            for t in torch_result["rows"]
        ]
        parts.append(
            f"PyTorch {torch_result['torch']} eager CPU joint step (faster of default threads "
            f"and 1 thread). Same objective, small float64 check: torch loss {chk['loss']:.15g}, "
            f"cfjax loss {mine['loss']:.15g}; gradient norms torch {chk['grad_norms']} vs "
            f"cfjax {mine['grad_norms']}.\n\n"
            + H.markdown_table(["(m, n, d)", "dtype", "torch step (ms)", "threads"], trows)
        )
    else:
        parts.append(f"PyTorch comparison: {status}")
    return "\n\n".join(parts)


def check_targets(rows, memory) -> str:
    lines = ["Targets (ratios from this run; issue #6's in float32):"]
    for r in rows:
        if r["workload"] == "fit" and "fit_over_k_steps" in r:
            ok = r["fit_over_k_steps"] <= TARGET_FIT_OVER_STEPS
            lines.append(
                f"- whole fit {(r['m'], r['n'], r['d'])} {r['dtype']}: {r['fit_over_k_steps']:.2f}x "
                f"{r['steps']} joint steps (target <= {TARGET_FIT_OVER_STEPS:g}): "
                f"{'met' if ok else 'MISSED'}"
            )
        if r.get("dtype") != "float32" or "skipped" in r:
            continue
        size = (r["m"], r["n"], r["d"])
        if r["workload"] == "als":
            if size in TARGET_SPEEDUP:
                want = TARGET_SPEEDUP[size]
                ok = r["speedup"] >= want
                lines.append(
                    f"- ALS sweep {size}: {r['speedup']:.1f}x the NumPy loop "
                    f"(target >= {want:g}x): {'met' if ok else 'MISSED'}"
                )
            lines.append(
                f"- ALS sweep {size}: compile {r['compile_s']:.2f} s (target <= "
                f"{TARGET_COMPILE_S:g} s): {'met' if r['compile_s'] <= TARGET_COMPILE_S else 'MISSED'}"
            )
            if size == LARGEST:
                ok = r["time_over_bound"] <= TARGET_BOUND
                lines.append(
                    f"- ALS sweep {size}: {r['time_over_bound']:.2f}x the FLOP-bound limit "
                    f"(target <= {TARGET_BOUND:g}x): {'met' if ok else 'MISSED'}"
                )
        if r["workload"] == "joint_unfused" and "unfused_over_fused" in r:
            lines.append(
                f"- joint step {size}: fused {r['unfused_over_fused']:.2f}x faster than unfused "
                f"(same run); fused {r['run_s'] / r['unfused_over_fused'] / r['mem_bound_s']:.1f}x, "
                f"unfused {r['time_over_mem_bound']:.1f}x the memory-bound limit"
            )
        if r["workload"] == "joint" and size == LARGEST and "torch_over_cfjax" in r:
            ok = r["torch_over_cfjax"] >= TARGET_TORCH
            lines.append(
                f"- joint step {size}: {r['torch_over_cfjax']:.2f}x faster than PyTorch eager "
                f"(target >= {TARGET_TORCH:g}x): {'met' if ok else 'MISSED'}"
            )
    for key, mem in memory.items():
        if key.startswith("100,1000000,32,float32"):
            temp = mem["xla"]["temp_bytes"] / 1e9
            lines.append(
                f"- ALS sweep memory {key}: {temp:.2f} GB of XLA temporaries above R, C and the "
                f"factors (target <= {TARGET_MEMORY_GB:g} GB): "
                f"{'met' if temp <= TARGET_MEMORY_GB else 'MISSED'}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
