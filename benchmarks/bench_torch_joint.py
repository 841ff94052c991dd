"""One eager PyTorch CPU step of cfjax's joint objective: the comparison of issue #6 part 3.

Runs in its own environment, never the library's (torch is not a cfjax dependency); from the
repository root, with the venv anywhere you like (here `torchvenv/`, which git ignores):

    python3 -m venv torchvenv
    torchvenv/bin/pip install torch==2.13.0 numpy
    torchvenv/bin/python benchmarks/bench_torch_joint.py [--sizes m,n,d ...]

`benchmarks/bench_speed.py` runs this script itself, with the interpreter named by its
`--torch-python PATH` or by the environment variable `CFJAX_TORCH_PYTHON` (else its own, if it
can import torch), and reads its JSON.

The step is what `cfjax.solvers.joint` does per iteration with `formulation="free"`,
`aggregator="weighted"`, `class_weight=True`, `optimizer="adam"` and no plateau schedule
(patience 0): forward loss, backward, `torch.optim.Adam.step` (the defaults b1 = 0.9,
b2 = 0.999, eps = 1e-8 are optax's). The loss is `cfjax.losses.loss`, written out:

    L_recon = (sum C (R - X^T Y)^2 + lam (|X|^2 + |Y|^2)) / sum C
    s = w^T (X^T Y) + b,  s_t = s if y = 1 else -s
    L_sup = sum_i omega_i exp(gamma log sigmoid(-s_t)) (-log sigmoid(s_t)) / sum omega
            + agg_l2 |w|^2,   omega = labeled * (|L| / (2 |L_y|))   (inverse class frequency)
    L = rho L_recon + (1 - rho) L_sup

`--check` prints this loss and its gradient norms on a small float64 problem and writes them
into the JSON, so bench_speed.py can put cfjax's values beside them (the same computation).

Timing: median of `--repeats` steps after one warm-up step, each a full step, once with
torch's default intra-op threads (all CPUs) and once with 1 thread; `step_s` is the faster of
the two (on a loaded 2-core machine torch's multi-threaded CPU kernels were up to 70x slower
than one thread, and the comparison should be with torch at its best). Writes
benchmarks/results/torch_joint.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit(
        f"bench_torch_joint.py: torch cannot be imported by {sys.executable}; run this script "
        "with a Python that has torch (see its docstring)"
    )

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _problem import JOINT, random_problem

HERE = Path(__file__).resolve().parent
SIZES = ["10,10000,8", "50,100000,16", "100,1000000,32"]


def tensors(m: int, n: int, d: int, dtype: torch.dtype, seed: int = 0):
    p = random_problem(m, n, d, seed)
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in p.items()}
    data = {k: t[k].to(dtype) for k in ("R", "C", "labels")}
    data["labeled"] = t["labeled"]
    params = [t[k].to(dtype).clone().requires_grad_(True) for k in ("X", "Y", "w", "b")]
    return data, params


def loss_fn(X, Y, w, b, R, C, labels, labeled, hp=JOINT):
    R_hat = X.T @ Y
    resid = R - R_hat
    recon = ((C * resid**2).sum() + hp["lam"] * ((X**2).sum() + (Y**2).sum())) / C.sum().clamp_min(
        1e-30
    )
    maskf = labeled.to(R.dtype)
    n_pos = (maskf * labels).sum()
    total = maskf.sum()
    n_neg = total - n_pos
    w_pos = total / (2.0 * n_pos.clamp_min(1.0))
    w_neg = total / (2.0 * n_neg.clamp_min(1.0))
    omega = maskf * torch.where(labels > 0.5, w_pos, w_neg)
    logits = w @ R_hat + b
    signed = torch.where(labels > 0.5, logits, -logits)
    ce = torch.exp(hp["focal_gamma"] * F.logsigmoid(-signed)) * (-F.logsigmoid(signed))
    sup = (omega * ce).sum() / omega.sum().clamp_min(1e-30) + hp["agg_l2"] * (w**2).sum()
    return hp["rho"] * recon + (1.0 - hp["rho"]) * sup


def step_timer(m, n, d, dtype, repeats):
    data, params = tensors(m, n, d, dtype)
    opt = torch.optim.Adam(params, lr=JOINT["lr"])

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(*params, **data)
        loss.backward()
        opt.step()
        return loss

    step()  # warm-up: allocates Adam's state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def check():
    """Loss and gradient norms on a small float64 problem (compared by bench_speed.py)."""
    data, params = tensors(6, 40, 3, torch.float64, seed=1)
    loss = loss_fn(*params, **data)
    loss.backward()
    return {
        "m": 6,
        "n": 40,
        "d": 3,
        "seed": 1,
        "loss": float(loss),
        "grad_norms": {k: float(p.grad.norm()) for k, p in zip(("X", "Y", "w", "b"), params)},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=SIZES, help="m,n,d triples")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="only the small loss check")
    parser.add_argument("--out", default=str(HERE / "results" / "torch_joint.json"))
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    payload = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "hparams": JOINT,
        "check": check(),
        "rows": [],
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, check {payload['check']}")
    if not args.check:
        for size in args.sizes:
            m, n, d = (int(v) for v in size.split(","))
            for name in args.dtypes:
                repeats = args.repeats if n < 1_000_000 else min(args.repeats, 3)
                by_threads = {}
                for threads in sorted({default_threads, 1}, reverse=True):
                    torch.set_num_threads(threads)
                    med, times = step_timer(m, n, d, getattr(torch, name), repeats)
                    by_threads[threads] = {"step_s": med, "steps_s": times}
                torch.set_num_threads(default_threads)
                best = min(by_threads, key=lambda t: by_threads[t]["step_s"])
                row = {"m": m, "n": n, "d": d, "dtype": name, "threads": best}
                row.update(step_s=by_threads[best]["step_s"], by_threads=by_threads)
                payload["rows"].append(row)
                times_ms = ", ".join(
                    f"{t} threads {1e3 * v['step_s']:.1f} ms" for t, v in by_threads.items()
                )
                print(f"  ({m}, {n}, {d}) {name}: {times_ms}", flush=True)
    payload["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
