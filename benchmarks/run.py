"""One command for the speed tables: ``python benchmarks/run.py [w2s|demo|amplify-speed|amplify|chess|all]``.

- ``w2s``: examples/s of feature extraction and finetuning per rung, fp32 and bf16 (w2s_speed.py)
- ``demo``: wall time of the demo sweep (`oversight w2s sweep --preset demo`) into a fresh store
- ``amplify-speed``: milliseconds per part of an amplification / supervised step, per task (amplify_speed.py)
- ``amplify``: the Iterated Amplification CPU targets per task and mode (amplify.py; 15-minute runs)
- ``chess``: chess puzzles generated per second with Stockfish at the dataset's depth (chess_speed.py)
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def demo_wall_time() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.db"
        cmd = [sys.executable, "-m", "oversight.cli", "w2s", "sweep", "--preset", "demo", "--store", str(store), "--quiet"]
        start = time.time()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        seconds = time.time() - start
    print(out.stdout)
    print("| benchmark | wall time (s) |\n|---|---|")
    print(f"| demo sweep (fresh store, features included) | {seconds:.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", nargs="?", default="all", choices=["w2s", "demo", "amplify-speed", "amplify", "chess", "all"])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.which in ("w2s", "all"):
        importlib.import_module("w2s_speed").main([])
    if args.which in ("demo", "all"):
        demo_wall_time()
    if args.which in ("amplify-speed", "all"):
        importlib.import_module("amplify_speed").main([])
    if args.which in ("amplify", "all"):
        importlib.import_module("amplify").main([])
    if args.which in ("chess", "all"):
        importlib.import_module("chess_speed").main([])


if __name__ == "__main__":
    main()
