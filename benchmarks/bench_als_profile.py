"""Where an ALS sweep's time goes (issue 19 part 2): the sweep split into its pieces, each timed
alone against its own FLOP count and the machine's matmul rate and memory bandwidth.

`cfjax.ridge.als_sweep` solves X given Y (`update_X`: the m Grams and right-hand sides summed
over chunks of the n instances under `lax.scan`, then m small solves) and then Y given X
(`update_Y`: per chunk of instances, the packed Grams and right-hand sides by two GEMMs, then
the batch-last Cholesky solves, chunks under `lax.map`). The pieces, each jitted alone at the
library's chunk size and method, on `_problem.random_problem` (30 % of the cells unobserved,
so the per-instance path runs, as in `bench_speed.py`):

* **sweep**: `ridge.als_sweep`;
* **X step**: `ridge.update_X`;
* **Y step**: `ridge.update_Y`;
* **Y Grams**: the Y step's GEMMs alone, in its chunk loop (`y_step_grams`): each chunk's packed
  Grams and right-hand sides formed, the Grams summed over their entries (in cache, as the
  solves would read them) instead of solved;
* **Y solves**: the Y step's solves alone (`y_step_solves`): the ridge added and each chunk's
  systems solved by `batched._finish`, one chunk at a time under `lax.map`, from Grams computed
  beforehand and stored chunk by chunk (so each chunk reads its Grams from memory, which the
  fused step does not); with those Grams it reproduces `update_Y` (the largest relative
  difference is printed);
* **chunk loop**: the same loop over chunks with no work in it (each chunk returns its slice
  of C): slicing, the loop and the final concatenation.

The two Y pieces are not a partition of the Y step (each keeps the loop and its own reads),
so their times need not add up to it; what each shows is how far its own work runs from its
own limit.

FLOPs, counted as the kernels do them (packed Grams, d(d+1)/2 entries): X-step Grams
m n d(d+1) + 2 m n d, Y-step Grams the same, solves n (d^3/3 + 2 d^2) (and m of them in the
X step). These are the FLOPs the kernels do; `bench_speed.py` counts an ALS sweep's Grams as
full d x d matrices (4 m n d^2 in all), so its "time / FLOP bound" for the same sweep is about
half the one here. Memory: what each piece must at least move once (R and C for each step and for the
Grams, the stored Grams and right-hand sides for the solves, Y written). Limits from the same run:
`jnp.dot` of 4096 x 4096 float32 (`bench_speed.matmul_throughput`) and the STREAM-like triad
(`bench_speed.stream_bandwidth`).

Prints a markdown table and writes benchmarks/results/als_profile.json. Not part of the tests.

    python benchmarks/bench_als_profile.py [--sizes 10,10000,8 50,100000,16] [--repeats 7] [--smoke]
"""

from __future__ import annotations

import argparse

import _harness as H
import jax
import jax.numpy as jnp
import numpy as np
from _problem import LAM, random_problem
from bench_speed import MIN_TOTAL_S, als_bytes, matmul_throughput, stream_bandwidth
from jax import lax

from cfjax import ridge
from cfjax.compilation import jit
from cfjax.ridge import batched, cholesky

DEFAULT_SIZES = ("10,10000,8", "50,100000,16", "100,1000000,32")
PIECES = ("sweep", "X step", "Y step", "Y Grams", "Y solves", "chunk loop")


def _chunks(n: int, d: int) -> tuple[int, np.ndarray]:
    """The Y step's chunk size (`batched._resolve_chunk`) and chunk starts (as
    `batched._chunk_starts`: chunk i starts at min(i chunk, n - chunk))."""
    chunk = batched._resolve_chunk(0, d, n, jnp.float32)
    return chunk, np.minimum(np.arange(-(-n // chunk)) * chunk, n - chunk)


def _stack(A, d):
    """(n_chunks, rows, chunk): the Y step's chunks of the last axis of A, stacked."""
    chunk, starts = _chunks(A.shape[-1], d)
    return jnp.stack([A[:, s:s + chunk] for s in starts])


def _unstack(Z, n):
    """(rows, n) from chunks stacked as `_stack` makes them (the last one overlaps its neighbour)."""
    head = jnp.moveaxis(Z[:-1], 0, 1).reshape(Z.shape[1], -1)
    return jnp.concatenate([head, Z[-1][:, head.shape[1] - n:]], axis=1)


def _grams(KR, X, R_c, C_c):
    hi = batched._HIGHEST
    return jnp.matmul(KR, C_c, precision=hi), jnp.matmul(X, C_c * R_c, precision=hi)


def y_step_grams(X, R, C):
    """The Y step's GEMMs alone in its chunk loop (`batched._solve_per_row`): every instance's
    packed Gram X C_i X^T and right-hand side X C_i r_i, each chunk's Grams reduced to one row
    in cache (what the solves would read) instead of solved. (d, n)."""
    KR = batched._khatri_rao_packed(X)
    d = X.shape[0]

    def one(R_c, C_c, scale, erhs):
        G, rhs = _grams(KR, X, R_c, C_c)
        return rhs + jnp.sum(G, axis=0, keepdims=True)

    return batched._solve_per_row(one, R, C, None, None, d, R.shape[1], R.dtype, 0)


def stacked_grams(X, R, C):
    """Every chunk's packed Grams (n_chunks, d(d+1)/2, chunk) and right-hand sides
    (n_chunks, d, chunk), the input of `y_step_solves`."""
    KR = batched._khatri_rao_packed(X)
    return jax.vmap(lambda R_c, C_c: _grams(KR, X, R_c, C_c))(_stack(R, X.shape[0]), _stack(C, X.shape[0]))


def y_step_solves(G, B, lam):
    """The Y step's solves alone: the ridge added and each chunk's systems solved as `update_Y`
    does (`batched._finish`), one chunk at a time under `lax.map`, reading each chunk's
    precomputed Grams from memory. (n_chunks, d, chunk)."""
    return lax.map(lambda GB: batched._finish(GB[0], GB[1], lam, None, None, None, "auto"), (G, B))


def chunk_loop(R, C, d):
    """The Y step's chunk loop with no work: each chunk returns its first d rows of C."""
    return batched._solve_per_row(lambda R_c, C_c, s, e: C_c[:d], R, C, None, None, d, R.shape[1], R.dtype, 0)


def counts(m: int, n: int, d: int, itemsize: int) -> dict[str, tuple[float, float]]:
    """(FLOPs, bytes that must move) per piece; see the module docstring."""
    p = d * (d + 1) // 2
    grams = m * n * d * (d + 1) + 2 * m * n * d
    solves = d**3 / 3 + 2 * d**2
    rc = 2 * m * n * itemsize  # R and C, read once
    x_step = (grams + m * solves, rc + d * n * itemsize)
    y_grams = (grams, rc + d * n * itemsize)
    y_solves = (n * solves, (p + 2 * d) * n * itemsize)  # Grams and rhs read, Y written
    y_step = (grams + n * solves, rc + 2 * d * n * itemsize)
    sweep = (x_step[0] + y_step[0], als_bytes(m, n, d, itemsize))
    return {"sweep": sweep, "X step": x_step, "Y step": y_step, "Y Grams": y_grams,
            "Y solves": y_solves, "chunk loop": (0.0, 2 * d * n * itemsize)}


def measure(m: int, n: int, d: int, repeats: int) -> list[dict]:
    p = random_problem(m, n, d)
    X, Y, R, C = (jnp.asarray(p[k], jnp.float32) for k in ("X", "Y", "R", "C"))
    lam = jnp.asarray(LAM, jnp.float32)
    G, B = jit(stacked_grams)(X, R, C)
    twin = _unstack(jit(y_step_solves)(G, B, lam), n)
    reference = jit(ridge.update_Y)(X, R, C, lam)
    gap = float(jnp.max(jnp.abs(twin - reference)) / jnp.max(jnp.abs(reference)))
    calls = {
        "sweep": (jit(ridge.als_sweep), (X, Y, R, C, lam), None),
        "X step": (jit(ridge.update_X), (Y, R, C, lam), None),
        "Y step": (jit(ridge.update_Y), (X, R, C, lam), None),
        "Y Grams": (jit(y_step_grams), (X, R, C), None),
        "Y solves": (jit(y_step_solves), (G, B, lam), None),
        "chunk loop": (jit(chunk_loop, static_argnames="d"), (R, C), {"d": d}),
    }
    rows = []
    for piece in PIECES:
        fn, args, kwargs = calls[piece]
        t = H.compile_and_time(fn, args, kwargs, repeats, min_total_s=MIN_TOTAL_S)
        t.pop("compiled")
        t.pop("compile_s")  # the persistent cache has some pieces already: see bench_compile.py
        rows.append({"m": m, "n": n, "d": d, "piece": piece, "split_vs_update_Y": gap, **t})
        print(f"({m}, {n:.0e}, {d}) {piece}: {t['run_s'] * 1e3:.2f} ms", flush=True)
    return rows


def derive(rows: list[dict], gflops: float, gbps: float) -> None:
    sweep = {(r["m"], r["n"], r["d"]): r["run_s"] for r in rows if r["piece"] == "sweep"}
    for r in rows:
        f, b = counts(r["m"], r["n"], r["d"], 4)[r["piece"]]
        r.update(flops=f, bytes=b, flop_bound_s=f / (gflops * 1e9), mem_bound_s=b / (gbps * 1e9),
                 gflops=f / r["run_s"] / 1e9, share_of_sweep=r["run_s"] / sweep[(r["m"], r["n"], r["d"])])
        r["time_over_flop_bound"] = r["run_s"] / r["flop_bound_s"] if f else None
        r["time_over_mem_bound"] = r["run_s"] / r["mem_bound_s"]


def table(rows: list[dict]) -> str:
    headers = ["(m, n, d)", "piece", "median (ms)", "share of sweep", "GFLOP/s", "time / FLOP bound",
               "time / memory bound"]
    body = [[f"({r['m']}, {r['n']:.0e}, {r['d']})", r["piece"], f"{r['run_s'] * 1e3:.2f}",
             f"{r['share_of_sweep']:.2f}", f"{r['gflops']:.1f}" if r["flops"] else "-",
             f"{r['time_over_flop_bound']:.1f}" if r["flops"] else "-", f"{r['time_over_mem_bound']:.1f}"]
            for r in rows]
    return H.markdown_table(headers, body)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="m,n,d triples")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--out", default=str(H.RESULTS / "als_profile.json"))
    args = parser.parse_args(argv)
    sizes = ["5,3000,4", "8,3000,12"] if args.smoke else args.sizes
    meta = H.provenance()
    print(H.header_line(meta), flush=True)
    mm, stream = matmul_throughput(args.repeats), stream_bandwidth(args.repeats)
    rows = []
    for size in sizes:
        m, n, d = (int(float(x)) for x in size.split(","))
        rows += measure(m, n, d, 3 if n >= 1_000_000 else args.repeats)
    mm_after, stream_after = matmul_throughput(args.repeats), stream_bandwidth(args.repeats)
    gflops = (mm["gflops"] + mm_after["gflops"]) / 2
    gbps = (stream["triad"]["gbps"] + stream_after["triad"]["gbps"]) / 2
    derive(rows, gflops, gbps)
    text = table(rows)
    gaps = {f"({r['m']}, {r['n']}, {r['d']})": r["split_vs_update_Y"] for r in rows}
    print(f"\nmatmul {gflops:.0f} GFLOP/s, triad {gbps:.1f} GB/s (mean of before and after); Y Grams then "
          f"Y solves against update_Y, largest relative difference: {gaps}\n\n{text}")
    out = H.write_json(args.out, {"settings": {"sizes": sizes, "repeats": args.repeats, "lam": LAM,
                                               "chunk_bytes": ridge.CHUNK_BYTES,
                                               "unroll_max_dim": cholesky.UNROLL_MAX_DIM},
                                  "matmul": {"before": mm, "after": mm_after, "gflops_used": gflops},
                                  "stream": {"before": stream, "after": stream_after, "triad_gbps_used": gbps},
                                  "rows": rows, "table": text}, meta)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
