"""The ALS sweep's time against its chunk size and Cholesky back-end, on whatever device runs it.

`cfjax.ridge.als_sweep` (float32, lam 0.1, `_problem.random_problem`) at each size, for each
`--methods` back-end of `cfjax.ridge.cholesky` and each `--chunks` value (0: the library's
default for this backend, `ridge.default_chunk_size`; a value >= n: one chunk). Compile time
ahead of time, then the median of `--repeats` blocked calls. Written for the device check
(issue 18/19): on a GPU the CPU-sized chunks made one sweep at (100, 1e6, 32) take 1.78 s.

Prints a markdown table and writes benchmarks/results/als_chunks.json.

    python benchmarks/bench_als_chunks.py --sizes 50,100000,16 100,1000000,32 \\
        --chunks 0 16384 1000000 --methods looped lapack
"""

from __future__ import annotations

import argparse

import _harness as H
import jax
import jax.numpy as jnp
from _problem import LAM, random_problem

from cfjax import ridge


def measure(m: int, n: int, d: int, chunk: int, method: str, repeats: int) -> dict:
    p = random_problem(m, n, d)
    X, Y, R, C = (jnp.asarray(p[k], jnp.float32) for k in ("X", "Y", "R", "C"))
    lam = jnp.asarray(LAM, jnp.float32)
    fn = jax.jit(ridge.als_sweep, static_argnames=("chunk_size", "method"))
    resolved = chunk if chunk else ridge.default_chunk_size(d, n, jnp.float32)
    t = H.compile_and_time(fn, (X, Y, R, C, lam), {"chunk_size": chunk, "method": method}, repeats)
    t.pop("compiled")
    return {"m": m, "n": n, "d": d, "chunk_size": chunk, "chunk_resolved": min(resolved, n),
            "chunks": -(-n // min(resolved, n)), "method": method, **t}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["50,100000,16", "100,1000000,32"], help="m,n,d triples")
    parser.add_argument("--chunks", nargs="+", type=int, default=[0, 16384, 1_000_000])
    parser.add_argument("--methods", nargs="+", default=["looped", "lapack"],
                        choices=["auto", "looped", "unrolled", "lapack"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(H.RESULTS / "als_chunks.json"))
    args = parser.parse_args(argv)
    meta = H.provenance()
    print(H.header_line(meta), flush=True)
    rows = []
    for size in args.sizes:
        m, n, d = (int(float(x)) for x in size.split(","))
        for method in args.methods:
            for chunk in args.chunks:
                rows.append(measure(m, n, d, chunk, method, args.repeats))
                r = rows[-1]
                print(f"({m}, {n}, {d}) {method} chunk {r['chunk_resolved']} x {r['chunks']}: "
                      f"{1e3 * r['run_s']:.2f} ms (compile {r['compile_s']:.1f} s)", flush=True)
    table = H.markdown_table(
        ["(m, n, d)", "method", "chunk", "chunks", "sweep (ms)", "compile (s)"],
        [[f"({r['m']}, {r['n']}, {r['d']})", r["method"], r["chunk_resolved"], r["chunks"],
          f"{1e3 * r['run_s']:.2f}", f"{r['compile_s']:.1f}"] for r in rows])
    print("\n" + table)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    H.write_json(args.out, {"rows": rows, "args": settings}, meta)


if __name__ == "__main__":
    main()
