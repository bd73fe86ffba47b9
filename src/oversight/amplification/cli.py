"""``oversight amplify run|sweep|show``: Iterated Amplification from the command line.

    oversight amplify run --task permutation_powering --mode amplify --size 8 --minutes 5
    oversight amplify run --task union_find --mode supervised --steps 2000 --json   # final JSON object on stdout
    oversight amplify sweep --size 16 --steps 4000          # all tasks x modes x 3 seeds into the store (resumes)
    oversight amplify show --task permutation_powering      # one question's decomposition tree
    oversight amplify bridge --task union_find --size 8 --weak budget:300   # six arms against a weak W (bridge.py)

Every run is keyed by the hash of its full config in the SQLite results store shared with the w2s
experiments (``--store``); a finished run is not repeated (``--force`` reruns it). X (and H') are
saved as artifacts beside the store, which is what ``show`` loads. A run in progress is checkpointed
there too (``--checkpoint-every``, ``<artifacts>/checkpoints/<key>.pt``): rerunning an interrupted
run resumes it to the numbers it would have reached unstopped. A stored run whose model file is
missing is trained again to rebuild it; ``show`` moves a damaged one aside and prints the command. Bad flags, an empty task or mode
list and an unwritable artifacts folder are refused before any run starts, in one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oversight.amplification.batches import make_answer_fn, stack_facts
from oversight.amplification.bridge import ARMS, bridge_configs, format_group, store_tables
from oversight.amplification.checkpoint import checkpoint_path
from oversight.amplification.config import BASE_MODES, MODES, W2S_LOSSES, WEAK_MODES, AmplifyConfig
from oversight.amplification.env import (
    TASKS,
    Instance,
    Task,
    detokenize,
    make_task,
    run_expert,
    token_to_str,
)
from oversight.amplification.evaluation import format_acc_by_level
from oversight.amplification.expert import LearnedExpert, run_learned_expert
from oversight.amplification.learner import FactSetLearner
from oversight.amplification.results import diverged_flag
from oversight.amplification.runs import KIND, migrate_store, run_key, stored_config
from oversight.amplification.train import TrainedRun, build_hprime, build_learner, train
from oversight.amplification.weak import weak_config
from oversight.config import (
    add_arguments,
    add_output_flags,
    config_to_dict,
    count,
    from_args,
    make_config,
    split_list,
)
from oversight.errors import ConfigError, DamagedArtifactError, OversightError, UnknownNameError
from oversight.progress import log, set_quiet
from oversight.store import DEFAULT_STORE, ResultsStore, artifacts_for, ensure_writable
from oversight.sweep import EXECUTORS, run_jobs

DEFAULT_SEEDS = 3  # seeds per sweep cell: a mean ± std over seeds, as w2s sweeps give
SUMMARY_FIELDS = ("task", "mode", "size", "steps", "seconds", "test_acc", "expert_calls", "gt_labels_used")


def _task_names() -> list[str]:
    import oversight.amplification.tasks  # noqa: F401  (registers the tasks)

    return TASKS.names()


def register(sub: argparse._SubParsersAction) -> None:
    amplify = sub.add_parser("amplify", help="Iterated Amplification on the algorithmic environments")
    amplify_sub = amplify.add_subparsers(dest="amplify_command", required=True)

    run = amplify_sub.add_parser("run", help="train X in one mode on one task; print the accounting and test accuracy")
    add_arguments(run, AmplifyConfig)
    _common(run)
    run.add_argument("--force", action="store_true", help="rerun even if this exact config is in the store")
    run.set_defaults(func=_cmd_run)

    sweep = amplify_sub.add_parser("sweep", help="every task x mode (x seed) into the results store; resumes")
    add_arguments(sweep, AmplifyConfig, skip=("task", "mode", "seed"))
    sweep.add_argument("--tasks", default="all", help="comma-separated tasks (default: all)")
    sweep.add_argument("--modes", default=",".join(BASE_MODES),
                       help=f"comma-separated modes; the weak ones ({','.join(WEAK_MODES)}) need --weak "
                            f"(default: {','.join(BASE_MODES)})")
    sweep.add_argument("--seeds", type=count, default=DEFAULT_SEEDS,
                       help=f"seeds per cell, 0..N-1 (at least 1; more = tighter means; default: {DEFAULT_SEEDS}, as w2s)")
    sweep.add_argument("--executor", default="local", choices=sorted(EXECUTORS), help="local or ray (default: local)")
    _common(sweep)
    sweep.set_defaults(func=_cmd_sweep)

    bridge = amplify_sub.add_parser("bridge", help="six arms on one task and size, from ground truth to a weak "
                                    "supervisor amplified by H; prints accuracy and PGR with intervals")
    add_arguments(bridge, AmplifyConfig, skip=("mode", "seed", "w2s_loss"))
    bridge.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms (default: all of {','.join(ARMS)})")
    bridge.add_argument("--w2s-losses", default="xent,logconf",
                        help="losses of the weak-to-strong arm, one row each (default: xent,logconf)")
    bridge.add_argument("--seeds", type=count, default=DEFAULT_SEEDS,
                        help=f"seeds per arm, 0..N-1 (more = tighter intervals; default: {DEFAULT_SEEDS})")
    bridge.add_argument("--executor", default="local", choices=sorted(EXECUTORS), help="local or ray (default: local)")
    _common(bridge)
    bridge.set_defaults(func=_cmd_bridge)

    show = amplify_sub.add_parser("show", help="print one question's decomposition tree with a stored X (and H')")
    show.add_argument("--task", required=True, help="environment name")
    show.add_argument("--size", type=int, default=None, help="instance size (default: the stored run's size)")
    show.add_argument("--mode", default=None, choices=MODES, help="which stored run (default: the latest, H' first)")
    show.add_argument("--depth", type=int, default=2, help="levels of the tree to expand (default: 2)")
    show.add_argument("--seed", type=int, default=0, help="seed of the instance and question (default: 0)")
    show.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default: {DEFAULT_STORE})")
    show.set_defaults(func=_cmd_show)


def _common(parser: argparse.ArgumentParser) -> None:
    add_output_flags(parser)


# ----------------------------------------------------------------------------------------------
# run / sweep
# ----------------------------------------------------------------------------------------------
def run_and_store(cfg: AmplifyConfig, store: ResultsStore, force: bool = False) -> dict[str, Any]:
    """Train ``cfg`` unless the store already holds it; store the results and the trained models."""
    migrate_store(store)
    key = run_key(cfg)
    existing = store.get(key)
    if existing is not None and not force:
        if artifacts_for(store).has(key):
            log(f"  already in the store ({key}); --force reruns")
            return existing["results"]
        log(f"  run {key} is in the store but its model file {artifacts_for(store).path(key)} is missing or was "
            "moved aside as damaged: training it again to rebuild it")
    check_writable(store, cfg)
    weak = trained_weak(cfg, store) if cfg.mode in WEAK_MODES else None
    checkpoint = checkpoint_path(artifacts_for(store).root, key)
    trained = train(cfg, checkpoint=checkpoint, weak=weak)  # resumes from the checkpoint of an interrupted run
    if weak is not None:  # what W cost and which run it is, for the bridge's W row
        weak_record = store.get(run_key(weak_config(cfg)))
        assert weak_record is not None
        trained.results["weak_run"] = {"key": weak_record["key"], "seed": weak_record["config"]["seed"],
                                       **{k: weak_record["results"][k] for k in ("steps", "gt_labels_used", "test_acc")}}
    save_models(store, key, trained)
    store.put(key, KIND, config_to_dict(cfg.with_task_defaults()), trained.results, seconds=trained.results["seconds"])
    checkpoint.unlink(missing_ok=True)  # the row is written: nothing left to resume
    return trained.results


def trained_weak(cfg: AmplifyConfig, store: ResultsStore) -> FactSetLearner:
    """The weak supervisor W of a weak-mode run: its own stored supervised run (``weak.weak_config``),
    trained first if the store does not hold it, loaded frozen."""
    weak_cfg = weak_config(cfg)
    log(f"  weak supervisor W = {cfg.weak} (a supervised run of its own, seed {weak_cfg.seed})")
    run_and_store(weak_cfg, store)
    record = store.get(run_key(weak_cfg))
    assert record is not None
    return load_models(store, record)[2].requires_grad_(False)


def check_writable(store: ResultsStore, cfg: AmplifyConfig | None = None) -> None:
    """Refuse, before any training, an artifacts folder (or its checkpoints folder) that cannot be written."""
    root = artifacts_for(store).root
    ensure_writable(root)
    if cfg is None or cfg.checkpoint_every:
        ensure_writable(checkpoint_path(root, "x").parent)


def save_models(store: ResultsStore, key: str, trained: TrainedRun) -> None:
    arrays = {f"x.{k}": v.detach().cpu().numpy() for k, v in trained.model.state_dict().items()}
    if trained.hprime is not None:
        arrays |= {f"hprime.{k}": v.detach().cpu().numpy() for k, v in trained.hprime.state_dict().items()}
    artifacts_for(store).save_arrays(key, arrays)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if k != "curve"}


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ["task", "mode", "size", "test acc", "acc by size", "acc by level", "steps", "seconds", "to 95% (s)",
              "expert calls", "gt labels"]
    lines = [header]
    for r in rows:
        hit = (r.get("reached") or {}).get("0.95")
        flag = diverged_flag([r.get("diverged_at_step")] if r.get("diverged") else [])
        lines.append([r["task"], r["mode"], str(r["size"]), f"{r['test_acc']:.3f}{flag}",
                      " ".join(f"{s}:{a:.2f}" for s, a in r["test_acc_by_size"].items()),
                      format_acc_by_level(r.get("test_acc_by_level")),
                      str(r["steps"]), f"{r['seconds']:.0f}", "-" if hit is None else f"{hit['seconds']:.0f}",
                      str(r["expert_calls"]), str(r["gt_labels_used"])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _print(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for r in rows:
            print(json.dumps(summary(r), sort_keys=True))
    else:
        print(format_table(rows))


def _cmd_run(args: argparse.Namespace) -> int:
    if args.quiet or args.json:
        set_quiet(args.quiet or not sys.stderr.isatty())
    cfg = from_args(AmplifyConfig, args)
    results = run_and_store(cfg, ResultsStore(args.store), force=args.force)
    _print([results], args.json)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    if args.quiet:
        set_quiet(True)
    configs = sweep_configs(args)
    check_writable(ResultsStore(args.store), configs[0])
    log(f"{len(configs)} runs; store {args.store}")
    results = run_jobs(run_and_store, configs, store_path=args.store, executor=args.executor)
    _print(results, args.json)
    return 0


def _cmd_bridge(args: argparse.Namespace) -> int:
    if args.quiet:
        set_quiet(True)
    arms = tuple(dict.fromkeys(split_list(args.arms)))
    unknown = [a for a in arms if a not in ARMS]
    if not arms or unknown:
        raise ConfigError("arms", f"{', '.join(unknown) or 'none given'}: give some of {', '.join(ARMS)}")
    if not args.weak:
        raise ConfigError("weak", "the bridge needs a weak supervisor, e.g. --weak budget:300 (axes: small-size:M, "
                                  "small-model:L[xD], budget:K)")
    base = {k: v for k, v in vars(args).items() if k in AmplifyConfig.__dataclass_fields__}
    losses = tuple(dict.fromkeys(split_list(args.w2s_losses)))
    if not losses or any(loss not in W2S_LOSSES for loss in losses):
        raise ConfigError("w2s_losses", f"{args.w2s_losses!r}: give some of {', '.join(W2S_LOSSES)}")
    shared = make_config(AmplifyConfig, mode="weak-to-strong", **base)
    configs = bridge_configs(shared, args.seeds, arms, losses)
    store = ResultsStore(args.store)
    check_writable(store, configs[0])
    log(f"bridge: {len(configs)} runs ({len(arms)} arms x {args.seeds} seeds) and {args.seeds} weak supervisors; "
        f"store {args.store}")
    # W is trained by the first weak arm of its seed that runs (with --executor ray, two may both train it: same numbers)
    run_jobs(run_and_store, configs, store_path=args.store, executor=args.executor)
    for group, rows in store_tables(store):
        if (group["task"], group["size"], group["weak"], group["steps"]) == (shared.task, shared.size, shared.weak,
                                                                             shared.steps):
            print(format_group(group, rows) if not args.json else json.dumps(rows, default=str))
    return 0


def sweep_configs(args: argparse.Namespace) -> list[AmplifyConfig]:
    """Every run of a sweep, built and validated before the first one starts: an unknown task or
    mode, an empty list, a seed count below 1 or a bad flag is refused up front, naming the flag."""
    tasks = _task_names() if args.tasks == "all" else list(dict.fromkeys(split_list(args.tasks)))
    if not tasks:
        raise ConfigError("tasks", f"no task given; give 'all' or some of {', '.join(_task_names())}")
    for t in tasks:
        try:
            TASKS.get(t)
        except UnknownNameError as err:
            raise ConfigError("tasks", str(err)) from None
    modes = list(dict.fromkeys(split_list(args.modes)))
    if not modes:
        raise ConfigError("modes", f"no mode given; give some of {', '.join(MODES)}")
    for mode in modes:
        if mode not in MODES:
            raise ConfigError("modes", f"{mode!r} is not one of {', '.join(MODES)}")
    if args.seeds < 1:
        raise ConfigError("seeds", f"must be >= 1 (runs per task and mode, seeds 0..N-1), got {args.seeds}")
    base = {k: v for k, v in vars(args).items() if k in AmplifyConfig.__dataclass_fields__}
    return [make_config(AmplifyConfig, task=t, mode=mode, seed=seed, **base)
            for t in tasks for mode in modes for seed in range(args.seeds)]


# ----------------------------------------------------------------------------------------------
# show
# ----------------------------------------------------------------------------------------------
def load_models(store: ResultsStore, record: dict[str, Any]) -> tuple[AmplifyConfig, Task, FactSetLearner,
                                                                      LearnedExpert | None]:
    """X (and H') of a stored run. A model file that cannot be read, or does not fit the run's
    models, is moved aside (``<file>.damaged``) and named in one line with the command that rebuilds it."""
    cfg = make_config(AmplifyConfig, **record["config"])
    task = make_task(cfg.task)
    arts = artifacts_for(store)
    try:
        arrays = arts.load_arrays(record["key"])
        model = build_learner(cfg, task)
        model.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("x.")})
        hprime = None
        if any(k.startswith("hprime.") for k in arrays):
            hprime = build_hprime(cfg, task)
            hprime.load_state_dict({k[7:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("hprime.")})
    except (DamagedArtifactError, RuntimeError, KeyError, ValueError) as err:
        path = arts.path(record["key"])
        aside = path.with_name(path.name + ".damaged")
        os.replace(path, aside)
        why = " ".join(str(err).split()) if isinstance(err, DamagedArtifactError) else f"{path} does not fit the run"
        raise OversightError(f"the model file of run {record['key']} cannot be used ({why}); moved aside to "
                             f"{aside}; rebuild it with: {run_command(record['config'], store.path)}") from None
    return cfg, task, model.eval(), hprime.eval() if hprime is not None else None


def run_command(config: dict[str, Any], store: str | Path) -> str:
    """The ``oversight amplify run`` command line of a stored config (its key's run): task, mode,
    size, steps and seed, and every other field that decides its numbers and is not at its default."""
    cfg, default = stored_config(config), AmplifyConfig()
    words = ["oversight", "amplify", "run"]
    for f in dataclasses.fields(AmplifyConfig):
        value = getattr(cfg, f.name)
        if f.metadata.get("identity") is False:
            continue
        if f.name not in ("task", "mode", "size", "steps", "seed") and value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + f.name.replace("_", "-"))
        else:
            words += [flag, str(value)]
    return shlex.join([*words, "--store", str(store)])


def _pick_record(store: ResultsStore, task_name: str, mode: str | None) -> dict[str, Any]:
    migrate_store(store)
    arts = artifacts_for(store)
    records = [r for r in store.records(kind=KIND) if r["config"]["task"] == task_name and arts.has(r["key"])
               and (mode is None or r["config"]["mode"] == mode)]
    if not records:
        raise OversightError(f"no trained X for task {task_name!r}{' in mode ' + mode if mode else ''} in "
                             f"{store.path}; train one first: oversight amplify run --task {task_name} "
                             f"--mode amplify-learned --size 8 --minutes 5")
    preference = {"amplify-learned": 0, "amplify": 1, "supervised": 2} | {m: 3 for m in WEAK_MODES}
    return sorted(records, key=lambda r: (preference[r["config"]["mode"]], -r["created"]))[0]


def decomposition_tree(task: Task, model: FactSetLearner, hprime: LearnedExpert | None, instance: Instance,
                       question: np.ndarray, depth: int, rng: np.random.Generator) -> list[str]:
    """Lines of the tree: the decomposer (H' if given, else H) splits the question; each subquestion is
    answered from the facts (primitive) or by X, and non-primitive ones are expanded ``depth - 1`` more."""
    facts = stack_facts([instance], "cpu")
    with torch.no_grad():
        memory = model.encode_facts(facts)
    x_answer = make_answer_fn(model, task, memory, facts, "cpu")
    decomposer = "H'" if hprime is not None else "H"

    def truth(q: np.ndarray) -> int:  # for display only
        return int(task.truth_batch([instance], np.zeros(1, dtype=np.int64), q[None])[0])

    def expand(q: np.ndarray, indent: str, levels: int) -> list[str]:
        if hprime is not None:
            answers, transcripts, _, _ = run_learned_expert(task, hprime, [instance], np.zeros(1, dtype=np.int64),
                                                            q[None], x_answer, rng, keep_transcripts=True)
        else:
            answers, transcripts = run_expert(task, [instance], np.zeros(1, dtype=np.int64), q[None], x_answer, rng)
        lines = []
        for r, (subqs, subans) in enumerate(transcripts[0].rounds, 1):
            for sq, a in zip(subqs, subans, strict=True):
                primitive = task.is_primitive(sq)
                who = "facts" if primitive else "X"
                t = truth(sq)
                mark = "ok" if a == t else "WRONG"
                lines.append(f"{indent}[round {r}] {detokenize(sq):<18} -> {token_to_str(a):<5} by {who:<5} "
                             f"(truth {token_to_str(t)}, {mark})")
                if not primitive and levels > 1:
                    lines += expand(sq, indent + "    ", levels - 1)
        t = truth(q)
        lines.append(f"{indent}=> {decomposer} answers {token_to_str(int(answers[0]))} "
                     f"(truth {token_to_str(t)}, {'ok' if answers[0] == t else 'WRONG'})")
        return lines

    direct = int(x_answer(np.zeros(1, dtype=np.int64), question[None])[0])
    t = truth(question)
    head = [f"Q: {detokenize(question)}   truth {token_to_str(t)};  X alone answers {token_to_str(direct)} "
            f"({'ok' if direct == t else 'WRONG'})",
            f"{decomposer} decomposes it (subquestions answered by the facts if primitive, else by X):"]
    return head + expand(question, "  ", depth)


def _check_show_args(args: argparse.Namespace) -> None:
    if args.size is not None and not 2 <= args.size <= 64:
        raise ConfigError("size", f"must be in 2..64, got {args.size}")
    if args.depth < 1:
        raise ConfigError("depth", f"must be >= 1 (levels of the tree to expand), got {args.depth}")
    if args.seed < 0:
        raise ConfigError("seed", f"must be >= 0, got {args.seed}")


def _cmd_show(args: argparse.Namespace) -> int:
    _check_show_args(args)
    if not Path(args.store).exists():  # opening it would make an empty store
        raise OversightError(f"no results store at {args.store}; train X first: oversight amplify run "
                             f"--task {args.task} --store {args.store}")
    store = ResultsStore(args.store)
    record = _pick_record(store, args.task, args.mode)
    cfg, task, model, hprime = load_models(store, record)
    size = args.size or cfg.size
    rng = np.random.default_rng(args.seed)
    instance = task.generate(size, rng)
    question = task.sample_questions(instance, 1, rng)[0]
    print(f"run {record['key']} (mode {cfg.mode}, trained at size {cfg.size}, test acc "
          f"{record['results']['test_acc']:.3f}); a fresh instance of size {size}:")
    facts = [detokenize(f) for f in instance.facts]
    print("facts: " + "; ".join(facts[:24]) + (f"; ... ({len(facts)} facts)" if len(facts) > 24 else ""))
    for line in decomposition_tree(task, model, hprime, instance, question, args.depth, rng):
        print(line)
    return 0
