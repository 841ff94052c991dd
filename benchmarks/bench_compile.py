"""Issue 19 part 3: compile time of every kernel against the latent dimension, in CPU seconds.

Compile time on a shared machine is noisy in wall-clock terms: XLA compiles on one or a few
threads, and a load of 6 on 2 cores triples the wall time without changing the work. So each
compile is timed twice: wall clock and the process's CPU time (`time.process_time`, all
threads). On an idle machine the wall time of a compile is at most about its CPU time (more
threads only shorten it), so "CPU seconds <= 2" is a load-independent check of issue 19's
target (every kernel's compile under 2 s at d <= 32).

Kernels, jitted at the outside with the library's `cfjax.compilation.jit` (on CPU, XLA's
memory-optimised scheduler, as every cfjax program) as in `bench_speed.py` (same problem generator, float32):
the ALS sweep (`ridge.als_sweep`), one joint Adam step (free Y, the fused objective), one MM-ALS
sweep (`mm_als.mm_sweep` at the Config default curvature), and, for scale, the whole default
fit (`cfjax.fit_jit` with `Config()`, the `auto` pipeline a user's first call compiles; its
candidate factorises at full rank, so it is measured once). `--mm-pieces` measures the MM-ALS
sweep and its pieces instead (`MM_PIECES`: each block's step alone and guarded as the sweep runs
it, and one evaluation of the loss the guards compare), to say where its compile time goes. Each
is traced, lowered and compiled `--repeats` times from cleared caches (`jax.clear_caches`; the
persistent compilation cache is off); the medians are reported.

Prints a markdown table and writes benchmarks/results/compile.json.

    python benchmarks/bench_compile.py                    # d = 4, 8, 16, 32 at (50, 1e4)
    python benchmarks/bench_compile.py --dims 8 32 --kernels als joint --repeats 5
    python benchmarks/bench_compile.py --mm-pieces --dims 4 32 --out benchmarks/results/compile_mm_pieces.json
"""

from __future__ import annotations

import argparse
import time

import _harness as H
import jax
import jax.numpy as jnp
import numpy as np
from _problem import random_problem
from bench_speed import LAM, device_problem, joint_config, joint_hparams, make_joint_step

import cfjax
from cfjax import losses, ridge, validation
from cfjax.compilation import jit
from cfjax.solvers import joint, mm_als
from cfjax.structs import Config

KERNELS = ("als", "joint", "mm_als", "default_fit")
#: The MM-ALS sweep's pieces at the default curvature ("exact"), each jitted alone (`--mm-pieces`):
#: where its compile time goes. "guarded" is the step with its checks and fall-back, as the sweep
#: runs it; "exact" the step alone; "loss" one evaluation of the objective the guards compare.
MM_PIECES = ("mm_theta_exact", "mm_theta_guarded", "mm_y_exact", "mm_y_guarded", "mm_x_exact", "mm_x_guarded",
             "mm_loss")
TARGET_S = 2.0


def _timed(fn):
    """(result, wall seconds, CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def lowering(kernel: str, m: int, n: int, d: int):
    """The kernel's `jax.stages.Lowered` at (m, n, d), float32."""
    problem, params = device_problem(random_problem(m, n, d), jnp.float32)
    if kernel == "als":
        lam = jnp.asarray(LAM, jnp.float32)
        return jit(ridge.als_sweep).lower(params.X, params.Y, problem.R, problem.C, lam)
    if kernel == "joint":
        config, hparams = joint_config(d), joint_hparams(jnp.float32)
        opt_state = joint.make_optimizer(hparams, config).init(params)
        return make_joint_step(config).lower(params, opt_state, problem, hparams)
    if kernel == "mm_als":
        config = Config(method="mm_als", latent_dim=d)
        hparams = mm_als.mm_hparams(joint_hparams(jnp.float32))
        return jit(mm_als.mm_sweep, static_argnames="config").lower(params, problem, hparams, config=config)
    if kernel in MM_PIECES:
        config = Config(method="mm_als", latent_dim=d)
        hparams = mm_als.mm_hparams(joint_hparams(jnp.float32))
        block = kernel.split("_")[1]
        if kernel == "mm_loss":
            fn = losses.loss
        elif kernel.endswith("exact"):
            step = getattr(mm_als, f"{block}_step")
            fn = lambda p, pr, h, config: step(p, pr, h, config, mode="exact")
        elif block == "y":
            fn = mm_als._guarded_y
        else:
            step = getattr(mm_als, f"{block}_step")
            fn = lambda p, pr, h, config: mm_als._guarded(step, p, pr, h, config)
        return jit(fn, static_argnames="config").lower(params, problem, hparams, config=config)
    if kernel == "default_fit":  # its candidate factorises at full rank: d does not enter
        config = validation.resolve_config(Config(), problem)
        hparams = cfjax.solvers.get(config.method).hparams(dtype=jnp.float32)
        return cfjax.fit_jit.lower(jax.random.key(0), problem, hparams, config=config)
    raise ValueError(f"kernel: unknown {kernel!r}; choose from {KERNELS + MM_PIECES}")


def measure(kernel: str, m: int, n: int, d: int, repeats: int) -> dict:
    # A `Lowered` keeps its executable, and JAX keeps executables in memory by program: every
    # repeat starts from cleared caches and lowers afresh, so each compile is a real one.
    walls, cpus, lower_walls, lower_cpus = [], [], [], []
    for _ in range(repeats):
        jax.clear_caches()
        lowered, wall, cpu = _timed(lambda: lowering(kernel, m, n, d))
        lower_walls.append(wall)
        lower_cpus.append(cpu)
        _, wall, cpu = _timed(lowered.compile)
        walls.append(wall)
        cpus.append(cpu)
    return {"kernel": kernel, "m": m, "n": n, "d": d, "lower_wall_s": float(np.median(lower_walls)),
            "lower_cpu_s": float(np.median(lower_cpus)),
            "compile_wall_s": float(np.median(walls)), "compile_cpu_s": float(np.median(cpus)),
            "compile_walls_s": walls, "compile_cpus_s": cpus}


def table(rows: list[dict]) -> str:
    headers = ["kernel", "d", "trace + lower, CPU (s)", "compile, CPU (s)", "compile, wall (s)",
               f"trace + lower + compile, CPU <= {TARGET_S:g} s"]
    cells = []
    for r in rows:
        total = r["lower_cpu_s"] + r["compile_cpu_s"]
        cells.append([r["kernel"], "full rank" if r["kernel"] == "default_fit" else r["d"], f"{r['lower_cpu_s']:.2f}", f"{r['compile_cpu_s']:.2f}",
                      f"{r['compile_wall_s']:.2f}", f"{'yes' if total <= TARGET_S else '**no**'} ({total:.2f})"])
    return H.markdown_table(headers, cells)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=KERNELS + MM_PIECES)
    parser.add_argument("--mm-pieces", action="store_true",
                        help="the MM-ALS sweep's pieces (MM_PIECES) instead of --kernels")
    parser.add_argument("--dims", nargs="+", type=int, default=[4, 8, 16, 32])
    parser.add_argument("--m", type=int, default=50)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(H.RESULTS / "compile.json"))
    args = parser.parse_args(argv)
    if args.mm_pieces:
        args.kernels = ["mm_als", *MM_PIECES]
    jax.config.update("jax_enable_compilation_cache", False)  # every compile is a real one
    meta = H.provenance()
    print(H.header_line(meta))
    rows = []
    for kernel in args.kernels:
        for d in args.dims[:1] if kernel == "default_fit" else args.dims:
            rows.append(measure(kernel, args.m, args.n, d, args.repeats))
            r = rows[-1]
            print(f"{kernel} d={d}: lower {r['lower_cpu_s']:.2f} s CPU, compile {r['compile_cpu_s']:.2f} s CPU "
                  f"({r['compile_wall_s']:.2f} s wall)", flush=True)
    text = table(rows)
    print("\n" + text)
    settings = {k: v for k, v in vars(args).items() if k != "out"}  # no path of this machine
    H.write_json(args.out, {"rows": rows, "target_s": TARGET_S, "args": settings}, meta)


if __name__ == "__main__":
    main()
