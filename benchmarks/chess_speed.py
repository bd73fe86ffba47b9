"""Speed of chess puzzle generation (Stockfish, multipv=2 at a fixed depth): positions/s.

    python benchmarks/chess_speed.py                          # 200 puzzles at depth 8, 1 engine process
    python benchmarks/chess_speed.py --depth 8 10 --workers 1 2 --count 400

Each row generates into a fresh temporary cache (nothing cached is reused). ``candidates/s`` counts the
random positions tried (skipped ones included), ``puzzles/s`` the ones kept (best move ahead of the
second by at least GAP_CP). On a shared machine the numbers move with other people's load.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from oversight.progress import set_quiet
from oversight.w2s.chess_puzzles import DEFAULT_DEPTH, GAP_CP, engine_version, generate_puzzles


def measure(count: int, depth: int, workers: int, seed: int = 0) -> dict[str, float]:
    """Generate ``count`` puzzles without a cache; return the counts and rates."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        puzzles = generate_puzzles(seed, count, depth, workers=workers, cache_dir=tmp)
        seconds = time.perf_counter() - start
    candidates = puzzles[-1].index + 1
    return {"depth": depth, "workers": workers, "puzzles": count, "candidates": candidates, "seconds": seconds,
            "candidates/s": candidates / seconds, "puzzles/s": count / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--depth", type=int, nargs="+", default=[DEFAULT_DEPTH])
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    args = parser.parse_args(argv)
    set_quiet(True)
    print(f"{engine_version()}, gap >= {GAP_CP} cp\n")
    print("| depth | engine processes | puzzles | candidates | seconds | candidates/s | puzzles/s |")
    print("|---|---|---|---|---|---|---|")
    for depth in args.depth:
        for workers in args.workers:
            r = measure(args.count, depth, workers)
            print(f"| {depth} | {workers} | {r['puzzles']} | {r['candidates']} | {r['seconds']:.1f} | "
                  f"{r['candidates/s']:.1f} | {r['puzzles/s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
