"""The Iterated-Amplification CPU targets: every task x mode at size 16, and permutation powering at size 8.

    python benchmarks/amplify.py                          # defaults: 15 min per run, store runs/oversight.db
    python benchmarks/amplify.py --minutes 4 --tasks permutation_powering,union_find --store runs/bench.db
    python benchmarks/run.py amplify                      # the same, from the one benchmark command

Runs go through the results store (a finished run is never repeated), so the table can be
printed again, or a sweep resumed, at no cost. Targets checked (on 2 CPU cores): amplify reaches
95% test accuracy at n=16 within 15 minutes, in at most 1.5x supervised's wall time to 95%;
amplify-learned reaches it with expert calls <= 1% of the labels supervised consumed; permutation
powering at n=8 passes 90% in amplify mode within 5 minutes. Wall time is training only
(evaluation excluded) and depends on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from oversight.amplification.cli import run_and_store, run_key
from oversight.amplification.report import time_ratio_at_common_accuracy
from oversight.amplification.train import MODES, AmplifyConfig, format_acc_by_level
from oversight.config import make_config
from oversight.progress import log
from oversight.store import DEFAULT_STORE, ResultsStore

ALL_TASKS = ("permutation_powering", "sequential_assignments", "wildcard_search", "shortest_path", "union_find")


def _reach(results: dict[str, Any], target: str) -> dict[str, Any] | None:
    return (results.get("reached") or {}).get(target)


def table(rows: list[dict[str, Any]]) -> str:
    header = ["task", "mode", "n", "acc n=16", "acc largest", "steps", "wall s", "s to 90%", "s to 95%",
              "steps to 95%", "expert calls", "GT labels", "stage reached", "acc by question level"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        res = r["results"]
        by_size = res["test_acc_by_size"]
        r90, r95 = _reach(res, "0.90"), _reach(res, "0.95")
        stage = res["final_stage"]
        cells = [r["config"]["task"], r["config"]["mode"], r["config"]["size"],
                 f"{by_size['16']:.3f}" if "16" in by_size else "-", f"{res['test_acc']:.3f}", res["steps"],
                 f"{res['seconds']:.0f}", f"{r90['seconds']:.0f}" if r90 else "-",
                 f"{r95['seconds']:.0f}" if r95 else "-", r95["step"] if r95 else "-",
                 f"{res['expert_calls']:,}", f"{res['gt_labels_used']:,}",
                 f"n={stage['size']} L{stage['level']}" + ("" if stage["final"] else " (not done)"),
                 format_acc_by_level(res.get("test_acc_by_level"))]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def target_checks(rows: list[dict[str, Any]]) -> list[str]:
    """One line per CPU target: met, missed (and by how much), or not measured."""
    by = {(r["config"]["task"], r["config"]["mode"], r["config"]["size"]): r["results"] for r in rows}
    out = []
    for task in sorted({r["config"]["task"] for r in rows}):
        amp, sup, learned = (by.get((task, m, 16)) for m in MODES[1:2] + MODES[0:1] + MODES[2:3])
        if amp is not None:
            hit = _reach(amp, "0.95")
            line = f"{task}: amplify n=16 " + (f"95% at {hit['seconds']:.0f}s" if hit else
                                                f"did not reach 95% (best final {amp['test_acc']:.3f})")
            sup_hit = _reach(sup, "0.95") if sup else None
            if hit and sup_hit:
                line += f"; {hit['seconds'] / max(sup_hit['seconds'], 1e-9):.2f}x supervised's time to 95%"
            common = time_ratio_at_common_accuracy(amp, sup, 16) if sup else None
            if common is not None:
                line += f"; {common[1]:.2f}x supervised's time to {common[0]:.3f} (the best accuracy both reached)"
            out.append(line)
        if learned is not None and sup is not None:
            hit = _reach(learned, "0.95")
            ratio = learned["expert_calls"] / max(sup["gt_labels_used"], 1)
            out.append(f"{task}: amplify-learned n=16 " + ("reached 95%" if hit else
                       f"did not reach 95% ({learned['test_acc']:.3f})")
                       + f"; expert calls = {ratio:.2%} of supervised's labels")
    small = by.get(("permutation_powering", "amplify", 8))
    if small is not None:
        hit = _reach(small, "0.90")
        out.append("permutation_powering n=8 amplify: " + (f"90% at {hit['seconds']:.0f}s" if hit else
                                                            f"did not reach 90% ({small['test_acc']:.3f})"))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(ALL_TASKS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall time per run")
    parser.add_argument("--small-minutes", type=float, default=5.0,
                        help="permutation powering at n=8 (amplify, supervised); 0 skips it")
    parser.add_argument("--small-modes", default="amplify,supervised", help="modes of the n=8 permutation-powering runs")
    parser.add_argument("--store", default=DEFAULT_STORE)
    parser.add_argument("--print-only", action="store_true",
                        help="run nothing: print the table of the runs already in the store (for a sweep split over processes)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv if argv is not None else [])
    store = ResultsStore(args.store)
    configs = []
    if args.small_minutes and "permutation_powering" in args.tasks:
        configs += [make_config(AmplifyConfig, task="permutation_powering", mode=mode, size=8,
                                minutes=args.small_minutes, threads=args.threads) for mode in args.small_modes.split(",")]
    configs += [make_config(AmplifyConfig, task=task, mode=mode, size=args.size, minutes=args.minutes, threads=args.threads)
                for task in args.tasks.split(",") for mode in args.modes.split(",")]
    rows = []
    for i, cfg in enumerate(configs, 1):
        if not args.print_only:
            log(f"[{i}/{len(configs)}] {cfg.task} {cfg.mode} n={cfg.size} ({cfg.minutes} min)")
            run_and_store(cfg, store)
        record = store.get(run_key(cfg))
        if record is None:
            log(f"  not in the store: {cfg.task} {cfg.mode} n={cfg.size}")
            continue
        rows.append(record)
    print(table(rows))
    print()
    for line in target_checks(rows):
        print("- " + line)


if __name__ == "__main__":
    main(sys.argv[1:])
