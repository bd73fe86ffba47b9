"""``oversight w2s active`` on the command line: its flags, presets, and the plain-text table.

    oversight w2s active --preset active                    # both datasets, every strategy, +-100 truth
    oversight w2s active --dataset rotten_tomatoes --strategy random,uncertainty --budget 600 --rounds 3

The experiment itself (a run, its keys, aggregation over seeds) is :mod:`oversight.w2s.active`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from oversight.config import (
    FLOAT_LIMIT,
    SEED_LIMIT,
    StoreGiven,
    add_arguments,
    add_output_flags,
    count,
    given_flags,
    make_config,
    split_list,
)
from oversight.errors import ConfigError
from oversight.progress import log, set_quiet
from oversight.runtime import resolve_device
from oversight.store import ResultsStore, artifacts_for, ensure_writable
from oversight.w2s import active_select as select
from oversight.w2s import metrics
from oversight.w2s.active import STRATEGIES, ActiveConfig, Context, aggregate, run_active
from oversight.w2s.files import FILE_HELP


def table(rows: list[dict[str, Any]]) -> str:
    """Plain text: each arm's rounds, the frontier, where each arm matches labelling everything."""
    lines = [["dataset", "arm", "round", "labels", "truth", "test acc", "PGR [95% CI]", "n"]]
    for r in rows:
        lines.append([r["dataset"], r["arm"], str(r["round"]), str(r["labels"]), str(r["truth_labels"]),
                      metrics.format_accuracy(r["test_acc"], r["test_acc_std"], r["seeds"], sep="±"),
                      metrics.format_pgr(r["pgr"], r["pgr_ci_low"], r["pgr_ci_high"], r["gap_ci_low"]), str(r["seeds"])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out += ["", "Frontier (best arm at each label count):"]
    out += [f"  {f['dataset']}  {f['labels']} labels" + (f" +{f['truth_labels']} truth" if f["truth_labels"] else "")
            + f": {f['best']} ({f['test_acc']:.3f})" for f in select.frontier(rows)]
    out += ["", f"Labels at which an arm first matches labelling everything (mean test acc >= all's - {select.MATCH_MARGIN}):"]
    out += [f"  {m['dataset']}  {m['arm']}: " + (f"{m['labels']} of {m['pool']}" if m["labels"] is not None else "never")
            + (f" +{m['truth_labels']} truth" if m["truth_labels"] else "") + f" (all: {m['all_acc']:.3f})"
            for m in select.matches_all(rows)]
    return "\n".join(out + ["", caption(rows)])


def caption(rows: list[dict[str, Any]]) -> str:
    covers = "; ".join(sorted({r["ci_covers"] for r in rows}))
    return ("test acc: mean±std over seeds. PGR = (student - supervisor) / (ceiling - supervisor) on test: the weak\n"
            "end is the supervisor's own test accuracy, the ceiling the strong model trained on the pool's ground truth.\n"
            f"PGR [95% CI]: {covers}; '*': the gap's CI reaches 0.\n"
            "Students keep their last weights: no validation label is read; the test split only measures.\n"
            "labels: supervisor labels bought; truth: ground-truth labels read (counted).")


# --------------------------------------------------------------------------- command line

ACTIVE_PRESETS: dict[str, dict[str, Any]] = {
    "active": {"dataset": "rotten_tomatoes,tweet_sentiment", "weak": "bow", "strong": "mpnet-base", "budget": 0,
               "rounds": 6, "strategy": ",".join(STRATEGIES), "seeds": 3,
               # (truth_budget, truth_placement) passes; each truth pass extends the stored runs without truth
               "truth_passes": ((0, "random"), (100, "random"), (100, "targeted"))},
}


def register(w2s_sub: argparse._SubParsersAction) -> None:
    """Add ``w2s active`` to the ``w2s`` subcommands."""
    parser = w2s_sub.add_parser("active", help="a student that chooses what its supervisor labels: test accuracy per label bought")
    add_arguments(parser, ActiveConfig, lists=("dataset",), notes={"dataset": FILE_HELP}, float_limit=FLOAT_LIMIT)
    parser.add_argument("--seeds", type=count, default=None, action=StoreGiven,
                        help="number of seeds per arm (seed, seed+1, ...; default 3); more seeds narrow the intervals")
    parser.add_argument("--preset", default=None, choices=sorted(ACTIVE_PRESETS),
                        help="a named set of arms (active: both datasets, every strategy, 0/100 truth); flags given override it")
    add_output_flags(parser)
    parser.set_defaults(func=cmd_active)


def arms(args: argparse.Namespace, passes: tuple[tuple[int, str], ...]) -> list[ActiveConfig]:
    """Every (dataset, truth pass, strategy) config of parsed flags, at the first seed."""
    base = {k: v for k, v in vars(args).items() if k in ActiveConfig.__dataclass_fields__
            and k not in ("dataset", "strategy", "truth_budget", "truth_placement")}
    datasets, strategies = split_list(args.dataset), split_list(args.strategy)
    for name, values in (("dataset", datasets), ("strategy", strategies)):
        if not values:
            raise ConfigError(name, f"--{name} is empty; give at least one")
    return [make_config(ActiveConfig, dataset=d, strategy=s, truth_budget=k, truth_placement=place, **base)
            for d in datasets for k, place in passes for s in strategies]


def apply_preset(args: argparse.Namespace) -> tuple[tuple[int, str], ...]:
    """Fill the flags the user did not give from ``--preset``; returns the (truth_budget,
    truth_placement) passes to run: the preset's, unless a truth flag was given."""
    given = given_flags(args)
    preset = dict(ACTIVE_PRESETS[args.preset]) if args.preset else {}
    passes = preset.pop("truth_passes", None)
    for key, value in preset.items():
        if key not in given:  # a flag the user gave wins over the preset
            setattr(args, key, value)
    if passes is None or given & {"truth_budget", "truth_placement"}:
        passes = ((args.truth_budget, args.truth_placement),)
    return tuple(passes)


def cmd_active(args: argparse.Namespace) -> int:
    """``w2s active``: run (or fetch) every arm and seed, then print the table or JSON rows."""
    passes = apply_preset(args)
    if args.quiet or (args.json and not sys.stderr.isatty()):
        set_quiet(True)
    seeds = args.seeds or 3
    if args.seed + seeds - 1 >= SEED_LIMIT:
        raise ConfigError("seed", f"--seed {args.seed} with --seeds {seeds} passes numpy's seed limit 2**32")
    resolve_device(args.device)
    configs = arms(args, passes)
    for cfg in {c.dataset: c for c in configs}.values():  # every name looked up before the first run
        cfg.resolve_names()
    store = ResultsStore(args.store)
    ensure_writable(artifacts_for(store).root)
    log(f"{len(configs)} arms x {seeds} seeds; store {args.store}")
    records: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(configs))}
    for s in range(seeds):
        contexts: dict[str, Context] = {}  # one seed's data and models, shared by its arms
        for i, cfg in enumerate(configs):
            records[i].append(run_active(replace(cfg, seed=cfg.seed + s), store, contexts))
    rows = [row for i in records for row in aggregate(records[i], store)]
    if args.json:
        for row in rows:
            print(json.dumps({"kind": "round", **row}, sort_keys=True))
        for kind, items in (("frontier", select.frontier(rows)), ("matches_all", select.matches_all(rows))):
            for item in items:
                print(json.dumps({"kind": kind, **item}, sort_keys=True))
    else:
        print(table(rows))
    return 0
