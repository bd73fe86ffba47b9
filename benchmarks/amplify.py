"""The amplification measurement: label-free against oracle curriculum, on step budgets.

    python benchmarks/amplify.py                               # the whole grid into runs/amplify-bench.db
    python benchmarks/amplify.py --jobs 14 --store /tmp/a.db    # runs in parallel, one core each
    python benchmarks/amplify.py --print-only                   # the table of what the store holds
    python benchmarks/run.py amplify                            # the same, from the one benchmark command

The grid, for every task: amplify with the label-free curriculum and with ``--curriculum oracle``,
3 seeds at n=8 (``--small-steps``) and one at n=16 (``--steps``); supervised and amplify-learned
with the label-free curriculum, one seed at n=16. Where a task's levels are read off the question
(permutation powering, wildcard search) the two curricula are one run. Each run is one process on
one core (``overlap_targets`` off, one torch thread), so ``--jobs`` runs share a machine fairly.
Runs go through the results store (a finished run is never repeated): the table can be printed
again, or the grid resumed, at no cost. Budgets are steps; wall times are reported, not used.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from oversight.amplification.cli import run_and_store
from oversight.amplification.config import AmplifyConfig
from oversight.amplification.env import make_task
from oversight.amplification.results import measurement_table
from oversight.amplification.runs import run_key
from oversight.config import make_config
from oversight.progress import log, set_quiet
from oversight.runtime import code_commit
from oversight.store import ResultsStore

ALL_TASKS = ("permutation_powering", "sequential_assignments", "wildcard_search", "shortest_path", "union_find")
DEFAULT_STORE = "runs/amplify-bench.db"


def grid(tasks: list[str], small_steps: int, steps: int, seeds: int = 3) -> list[AmplifyConfig]:
    """The measurement's configs in the order they matter: the n=8 curriculum comparison, then at
    n=16 amplify (both curricula), supervised, amplify-learned; a grid cut short keeps the comparison."""
    common = {"overlap_targets": False, "threads": 1, "minutes": 0}
    configs = []
    for task in tasks:
        curricula = ["label-free"] if make_task(task).levels_from_form else ["label-free", "oracle"]
        for curriculum in curricula:
            configs += [make_config(AmplifyConfig, task=task, mode="amplify", size=8, steps=small_steps, seed=seed,
                                    curriculum=curriculum, **common) for seed in range(seeds)]
            configs.append(make_config(AmplifyConfig, task=task, mode="amplify", size=16, steps=steps,
                                       curriculum=curriculum, **common))
        configs += [make_config(AmplifyConfig, task=task, mode=mode, size=16, steps=steps, **common)
                    for mode in ("supervised", "amplify-learned")]
    rank = {"amplify": 0, "supervised": 1, "amplify-learned": 2}  # the curriculum comparison, then the baselines
    return sorted(configs, key=lambda c: (c.size, rank[c.mode], c.task))


def _run_one(cfg: AmplifyConfig, store: str) -> str:
    set_quiet(True)
    results = run_and_store(cfg, ResultsStore(store))
    return f"{cfg.task} {cfg.mode} n={cfg.size} seed={cfg.seed} {cfg.curriculum}: test {results['test_acc']:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(ALL_TASKS), help="comma-separated tasks")
    parser.add_argument("--small-steps", type=int, default=4000, help="step budget of the n=8 runs")
    parser.add_argument("--steps", type=int, default=5000, help="step budget of the n=16 runs")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the n=8 amplify runs")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one core each")
    parser.add_argument("--store", default=DEFAULT_STORE, help="SQLite results store")
    parser.add_argument("--print-only", action="store_true", help="run nothing: print the table of the stored runs")
    args = parser.parse_args(argv if argv is not None else [])
    code_commit()  # recorded as each run's commit: the code imported now, whatever HEAD does meanwhile
    configs = grid(args.tasks.split(","), args.small_steps, args.steps, args.seeds)
    store = ResultsStore(args.store)
    todo = [] if args.print_only else [c for c in configs if store.get(run_key(c)) is None]
    log(f"{len(configs)} runs in the grid, {len(todo)} to run, {args.jobs} at a time")
    if todo and args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for done in as_completed([pool.submit(_run_one, cfg, args.store) for cfg in todo]):
                log(done.result())
    else:
        for cfg in todo:
            log(_run_one(cfg, args.store))
    records: list[dict[str, Any]] = [r for c in configs if (r := store.get(run_key(c))) is not None]
    print(measurement_table(records))


if __name__ == "__main__":
    main(sys.argv[1:])
