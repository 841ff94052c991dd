"""Builds, and caches on disk, the real ensembles of a few-label panel before anyone benchmarks.

For each applicable (data set, labeled fraction) pair (`cfjax.benchmark.applicable` on splits
the splits: at least 5 labeled instances of each class on every split) and each split, calls
`cfjax.datasets.load(name, seed=split, labeled_fraction=...)`, which fits the nine base models
by the out-of-fold protocol and writes the `.npz` cache entry (`$CFJAX_CACHE` or
`~/.cache/cfjax` unless --cache-dir). Entries already cached are only checked, not rebuilt.
Synthetic data sets (`synthetic-*`) need no build and are passed over. Splits run outermost, so
a partial build holds complete panels for the first splits. Prints the seconds of every build,
then per pair and in total.

    python experiments/build_ensembles.py [--datasets ... | --holdout] [--labeled 0.05 0.1 0.2 0.6] [--splits 10] [--first-split 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panel import FEW_LABEL_FRACTIONS, FEW_LABEL_HOLDOUT, FEW_LABEL_PANEL

from cfjax import benchmark, datasets


def build(names: list[str], fractions: list[float], splits: int | list[int], cache_dir: str | None = None,
          log=print) -> dict:
    """Builds every missing entry on `splits` (an int n: splits 0..n-1, or a list); returns
    {"built": [...], "cached": [...], "skipped": [...], "seconds": total} with (name, fraction,
    split, seconds) per built entry."""
    real = [n for n in names if not n.startswith(benchmark.SYNTHETIC_PREFIX)]
    for name in names:
        if name not in real:
            log(f"{name}: synthetic, nothing to build")
    pairs, skipped = benchmark.panel_pairs(real, fractions, splits)
    for s in skipped:
        log(f"{s['dataset']} @ {s['labeled_fraction']:g}: skipped, split {s['split']}: {s['reason']}")
    built, cached = [], []
    start = time.perf_counter()
    for split in benchmark.split_list(splits):
        for name, fraction in pairs:
            if datasets.is_cached(name, split, fraction, cache_dir):
                cached.append((name, fraction, split))
                continue
            t0 = time.perf_counter()
            datasets.load(name, seed=split, labeled_fraction=fraction, cache_dir=cache_dir)
            seconds = time.perf_counter() - t0
            built.append((name, fraction, split, seconds))
            log(f"{name} @ {fraction:g} split {split}: built in {seconds:.1f} s "
                f"(total {time.perf_counter() - start:.0f} s)")
    total = time.perf_counter() - start
    log(f"\n{len(built)} built, {len(cached)} already cached, {len(skipped)} pairs skipped; "
        f"{total:.0f} s in total")
    for name, fraction in pairs:
        times = [b[3] for b in built if b[:2] == (name, fraction)]
        if times:
            log(f"  {name} @ {fraction:g}: {len(times)} built, {sum(times):.0f} s "
                f"({sum(times) / len(times):.1f} s each)")
    return dict(built=built, cached=cached, skipped=skipped, seconds=total)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="default: the real data sets of panel.FEW_LABEL_PANEL that are installed")
    parser.add_argument("--labeled", nargs="+", type=float, default=list(FEW_LABEL_FRACTIONS),
                        help=f"labeled fractions (default {' '.join(map(str, FEW_LABEL_FRACTIONS))})")
    parser.add_argument("--splits", type=int, default=10, help="splits (seeds) 0..N-1 (default 10)")
    parser.add_argument("--first-split", type=int, default=0,
                        help="the first split: builds FIRST..FIRST+N-1 (fresh splits for a confirmation)")
    parser.add_argument("--holdout", action="store_true",
                        help="the held-out data sets (panel.FEW_LABEL_HOLDOUT) instead of the few-label panel's")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    panel = FEW_LABEL_HOLDOUT if args.holdout else FEW_LABEL_PANEL
    names = args.datasets or [n for n in panel if n in datasets.available()]
    splits = list(range(args.first_split, args.first_split + args.splits))
    print(f"building {', '.join(names)} at labeled fractions {args.labeled}, splits {splits[0]}..{splits[-1]}",
          flush=True)
    build(names, args.labeled, splits, args.cache_dir, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
