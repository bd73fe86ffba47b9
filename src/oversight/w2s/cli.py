"""``oversight w2s run|sweep``: weak-to-strong experiments from the command line.

    oversight w2s run --dataset rotten_tomatoes --weak minilm-l6 --strong mpnet-base --loss xent,logconf --seeds 3
    oversight w2s run ... --json            # one JSON object per (dataset, weak, strong, loss) on stdout
    oversight w2s sweep --dataset rotten_tomatoes --models bow,minilm-l3,minilm-l6,mpnet-base --losses xent,logconf
    oversight w2s run ... --method direct,bootstrap --chain minilm-l3   # bootstrap: bow -> minilm-l3 -> strong
    oversight w2s run ... --strong smollm2-135m --method direct,genft   # genft: strong LM-finetuned first
    oversight w2s sweep --preset demo       # what `make demo` runs
    oversight w2s sweep --dataset rotten_tomatoes,tweet_sentiment --losses xent,logconf,product --method direct,bootstrap
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
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
from oversight.sweep import EXECUTORS, run_jobs
from oversight.w2s.active_cli import register as register_active
from oversight.w2s.aggregate import accuracy_text, aggregate, method_label, seed_configs
from oversight.w2s.config import W2SConfig, migrate_store, uses_chain
from oversight.w2s.files import FILE_HELP, file_path
from oversight.w2s.metrics import format_pgr
from oversight.w2s.pipeline import run_experiment

# Named sweeps; `make demo` runs "demo". Fields are W2SConfig fields plus models/losses/seeds.
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"dataset": "rotten_tomatoes", "models": "bow,minilm-l3,minilm-l6,mpnet-base",
             "losses": "xent,logconf", "seeds": 3, "mode": "head", "head": "mlp"},
    "geo-finetune": {"dataset": "geo_facts", "models": "minilm-l6,mpnet-base", "losses": "xent,logconf",
                     "seeds": 1, "mode": "finetune"},
    # random, rule and model errors at two equal accuracies, across a ladder of students: PGR and imitation
    "uncanny-valley": {"dataset": "rotten_tomatoes,tweet_sentiment", "models": "bow,minilm-l3,minilm-l6,mpnet-base",
                       "pairs": "weakest", "losses": "xent", "seeds": 3, "mode": "head", "head": "mlp",
                       "supervisor": "model,flip:random,flip:rule:length,flip:model",
                       "supervisor_accuracy": "0.65,0.7"},
    # the two-head student against naive and the confidence loss, with and without 100 trusted labels
    "mistake-theory": {"dataset": "rotten_tomatoes,tweet_sentiment", "models": "bow,mpnet-base", "losses": "xent,logconf",
                       "seeds": 3, "mode": "head", "head": "mlp", "student": "naive,two-head",
                       "truth_budget": "0,100", "supervisor": "model,flip:random,flip:rule:length",
                       "supervisor_accuracy": "0.7"},
}
LIST_FIELDS = ("dataset", "weak", "strong", "loss", "method", "supervisor", "supervisor_accuracy", "student",
               "truth_budget")
# what every cell of a sweep may vary beyond its ladder pair and loss
SWEEP_LISTS = ("dataset", "method", "supervisor", "supervisor_accuracy", "student", "truth_budget")
PAIRS = ("all", "weakest")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=count, default=None, action=StoreGiven,
                        help="number of seeds per cell (seed, seed+1, ...; default 3); more seeds narrow the intervals")
    add_output_flags(parser)
    parser.add_argument("--executor", default="local", choices=sorted(EXECUTORS),
                        help="where runs execute: local (in this process) or ray (a Ray cluster; `pip install ray`)")


def register(sub: argparse._SubParsersAction) -> None:
    w2s = sub.add_parser("w2s", help="weak-to-strong generalization experiments")
    w2s_sub = w2s.add_subparsers(dest="w2s_command", required=True)

    run = w2s_sub.add_parser("run", help="train weak, weak-to-strong and ceiling; print test metrics and PGR")
    add_arguments(run, W2SConfig, lists=LIST_FIELDS, notes={"dataset": FILE_HELP}, float_limit=FLOAT_LIMIT)
    _common(run)
    run.set_defaults(func=_cmd_run)

    sweep = w2s_sub.add_parser("sweep", help="every weak<strong pair of a model ladder, for every loss")
    add_arguments(sweep, W2SConfig, skip=("weak", "strong", "loss", "chain"), lists=SWEEP_LISTS,
                  notes={"dataset": FILE_HELP}, float_limit=FLOAT_LIMIT)
    sweep.add_argument("--pairs", default=None, action=StoreGiven, choices=PAIRS,
                       help="which pairs of the ladder run: all (every weak < strong) or weakest (the first model supervises each other)")
    sweep.add_argument("--models", default=None, action=StoreGiven,
                       help="comma-separated ladder, weakest first (default: the preset's)")
    sweep.add_argument("--losses", default=None, action=StoreGiven, help="comma-separated losses (default: xent,logconf)")
    sweep.add_argument("--preset", default=None, choices=sorted(PRESETS), help="a named sweep; flags given override it")
    _common(sweep)
    sweep.set_defaults(func=_cmd_sweep)
    register_active(w2s_sub)


def flag_list(args: argparse.Namespace, name: str) -> list[str]:
    """The comma list of ``--name``; an empty one is refused (it would run nothing and say nothing)."""
    values = split_list(getattr(args, name))
    if not values:
        raise ConfigError(name, f"--{name.replace('_', '-')} is empty; give at least one name")
    return values


def _grid(args: argparse.Namespace, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The product of the comma lists of ``names``, each value typed as its field, less the
    combinations that mean nothing: an accuracy for the weak model itself (it has its own), a
    two-head student with another loss than xent when xent is in the list (it has its own loss)."""
    types = {f.name: f.type for f in W2SConfig.__dataclass_fields__.values()}
    # an accuracy is optional (the weak model has its own): its empty default is one value
    lists = [[int(v) if types[name] in ("int", int) else v
              for v in (split_list(args.supervisor_accuracy) or [""] if name == "supervisor_accuracy"
                        else flag_list(args, name))] for name in names]
    grid, seen = [], set()
    for values in itertools.product(*lists):
        cell = dict(zip(names, values, strict=True))
        if cell.get("supervisor", "model") == "model" and "supervisor_accuracy" in cell:
            cell["supervisor_accuracy"] = ""
        if cell.get("student") == "two-head" and cell.get("loss", "xent") != "xent" and "xent" in lists[names.index("loss")]:
            continue
        key = tuple(sorted(cell.items()))
        if key not in seen:
            seen.add(key)
            grid.append(cell)
    return grid


def _cells(args: argparse.Namespace) -> list[list[W2SConfig]]:
    """Expand comma lists into the grid of cells; each cell is its list of per-seed configs."""
    base = {k: v for k, v in vars(args).items()
            if k in W2SConfig.__dataclass_fields__ and k not in (*LIST_FIELDS, "chain")}
    grid = _grid(args, LIST_FIELDS)
    if args.chain.strip() and not any(uses_chain(cell["method"]) for cell in grid):
        raise ConfigError("chain", "is used by --method bootstrap only; drop it or add --method bootstrap")
    cells = []
    for cell in grid:
        chain = args.chain if uses_chain(cell["method"]) else ""
        cfg = make_config(W2SConfig, chain=chain, **cell, **base)
        cells.append(_seeds(cfg, args.seeds or 3))
    return cells


def _seeds(cfg: W2SConfig, seeds: int) -> list[W2SConfig]:
    """The configs of seeds seed .. seed+seeds-1; one past numpy's seed range is refused, naming --seed."""
    last = cfg.seed + seeds - 1
    if last >= SEED_LIMIT:
        raise ConfigError("seed", f"--seed {cfg.seed} with --seeds {seeds} runs seeds up to {last}, and numpy seeds "
                                  f"are < 2**32; give --seed at most {SEED_LIMIT - seeds}")
    return seed_configs(cfg, seeds)


def _cmd_run(args: argparse.Namespace) -> int:
    return _execute(_cells(args), args)


def _cmd_sweep(args: argparse.Namespace) -> int:
    given = given_flags(args)
    for key, value in (PRESETS[args.preset] if args.preset else {}).items():
        if key not in given:  # a flag the user gave wins over the preset, whatever its value
            setattr(args, key, value)
    args.models = "bow,minilm-l3,minilm-l6,mpnet-base" if args.models is None else args.models
    models = flag_list(args, "models")
    if len(models) < 2:
        raise ConfigError("models", "a sweep needs at least two models, weakest first")
    args.losses = "xent,logconf" if args.losses is None else args.losses
    losses = flag_list(args, "losses")
    base = {k: v for k, v in vars(args).items() if k in W2SConfig.__dataclass_fields__ and k not in LIST_FIELDS}
    cells = []
    pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))
             if i == 0 or (args.pairs or "all") == "all"]
    args.loss = ",".join(losses)
    rest = tuple(name for name in SWEEP_LISTS if name != "dataset")
    for dataset, (i, j), cell in itertools.product(flag_list(args, "dataset"), pairs, _grid(args, ("loss", *rest))):
        # bootstrap climbs the ladder's rungs between weak and strong; adjacent pairs have none
        chain = ",".join(models[i + 1:j]) if uses_chain(cell["method"]) else ""
        if uses_chain(cell["method"]) and not chain:
            continue
        cfg = make_config(W2SConfig, dataset=dataset, weak=models[i], strong=models[j], chain=chain, **cell, **base)
        cells.append(_seeds(cfg, args.seeds or 3))
    if not cells:
        raise ConfigError("method", "bootstrap needs a rung between weak and strong: give --models with 3 or more")
    return _execute(cells, args)


def _execute(cells: list[list[W2SConfig]], args: argparse.Namespace) -> int:
    if args.quiet or (args.json and not sys.stderr.isatty()):
        set_quiet(True)
    jobs = [cfg for cell in cells for cfg in cell]
    for device in sorted({cfg.device for cfg in jobs}):  # before the store: a stored run would skip the check
        resolve_device(device)
    resolved: set[tuple[str, str, str, str]] = set()
    for cfg in jobs:  # every name of the sweep is looked up before the first run starts
        if (cfg.dataset, cfg.weak, cfg.strong, cfg.chain) not in resolved:
            if cfg.dataset.startswith("file:"):
                file_path(cfg.dataset)  # a folder is said to be one (resolve_names would call it missing)
            cfg.resolve_names()
            resolved.add((cfg.dataset, cfg.weak, cfg.strong, cfg.chain))
    store = ResultsStore(args.store)
    ensure_writable(artifacts_for(store).root)  # found now, not after the first model has trained
    migrate_store(store)
    log(f"{len(cells)} cells x seeds = {len(jobs)} runs; store {args.store}")
    run_jobs(run_experiment, jobs, store_path=args.store, executor=args.executor)
    rows = [aggregate(cell, store) for cell in cells]
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
    else:
        print(format_table(rows))
    return 0


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ["dataset", "weak", "strong", "method", "weak", "w2s", "ceiling", "gap", "PGR [95% CI]",
              "[test only]", "PGR seeds", "n"]
    lines = [header]

    for r in rows:
        seed_pgr = (f"{r['pgr_seed_mean']:.2f}±{r['pgr_seed_std']:.2f} ({r['pgr_defined_seeds']}/{r['seeds']})"
                    if r["pgr_seed_mean"] is not None else "undefined")
        examples = format_pgr(r["pgr"], r.get("pgr_ci_examples_low"), r.get("pgr_ci_examples_high"),
                              r.get("gap_ci_examples_low"))
        lines.append([r["dataset"], r["weak"], r["strong"], method_label(r),
                      *(accuracy_text(r, role, sep="±") for role in ("weak", "w2s", "ceiling")), f"{r['gap']:+.3f}",
                      format_pgr(r["pgr"], r["pgr_ci_low"], r["pgr_ci_high"], r["gap_ci_low"]),
                      examples.split(" ", 1)[1] if " " in examples else "-", seed_pgr, str(r["seeds"])])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out + ["", table_note(rows)])


def table_note(rows: list[dict[str, Any]]) -> str:
    """The caption of a PGR table: what its intervals cover, and the 'undefined' and '*' rules."""
    one_seed = any(r["seeds"] == 1 for r in rows)
    selects = sorted({r.get("select", "last") for r in rows})
    oracle = ("\n[ORACLE]: ground-truth validation labels selected the student's weights, an upper bound, not a"
              " method." if any(r.get("oracle") for r in rows) else "")
    return ("PGR = (w2s - weak) / (ceiling - weak); mean±std over seeds (n=1: SE over test groups). PGR [95% CI]:\n"
            "bootstrap over seeds, then test groups within each (drawn whole, paired across weak / w2s /\n"
            "ceiling); [test only]: test groups resampled, seeds kept."
            + (" Rows with n=1: both cover test sampling only." if one_seed else "")
            + "\n'undefined': the ceiling is not above weak (not averaged). '*': the gap's 95% CI reaches 0, so the\n"
            f"PGR is a ratio of noise. Weights kept: --select {', '.join(selects)}." + oracle)

