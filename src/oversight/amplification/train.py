"""Iterated Amplification: one training loop for the supervised baseline and both amplification modes.

    oversight amplify run --task permutation_powering --mode amplify --size 8 --steps 3000
    python -m oversight.amplification.train --task permutation_powering --mode supervised --steps 500

    from oversight.amplification.train import AmplifyConfig, train
    run = train(AmplifyConfig(task="permutation_powering", mode="amplify", size=8, steps=1500))
    run.results["test_acc"], run.results["test_acc_se"], run.results["expert_calls"]

Each step takes a batch of fresh questions at the curriculum's stage (``curriculum.py``) with a
target for every one (``batches.py``: the modes differ ONLY in where the targets come from) and
trains X on them with cross-entropy (``target_passes`` > 1: that many steps on each batch). In
amplify-learned, H' and the pace at which H is called and H' trained are ``pacing.py``'s. The
batches are made ahead in other processes (``workers.py``, ``--overlap-targets``, on by default).

Measurement (``evaluation.py``): every ``eval_every`` steps X is evaluated on the validation sets,
which give the curve, stopping (``stop_at_acc``) and "steps to 95%"; the test sets are built and
read once, after the last step. In the amplify modes the loop runs under ``truth_denied``
(``truth.py``): a read of any true answer outside evaluation and the oracle curriculum raises, and
a run whose ``gt_labels_used`` is not 0 at the end raises ``GroundTruthLabelsUsed`` (not an
``assert``: the check holds under ``python -O``).

Divergence: a step whose loss or gradient norm is not finite (``--lr 1e300``) stops training there;
the row records ``diverged`` and ``diverged_at_step``, and every table flags it ``[DIVERGED]``.

Checkpoints: ``train(cfg, checkpoint=path)`` saves the whole run (``checkpoint.py``: models, optimisers,
generators, curriculum, H''s buffer, the workers' batches made ahead) every ``checkpoint_every``
steps and resumes from ``path`` when it is there, to exactly the steps, curve and weights of a run
never stopped; ``oversight amplify run`` keeps it beside the store and deletes it once the run is
stored.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from oversight.amplification.accounting import Accounting
from oversight.amplification.batches import (
    Batch,
    GroundTruthLedger,
    HPrimePlan,
    make_answer_fn,
    make_batch,
    stack_facts,
)
from oversight.amplification.config import MODES, WEAK_MODES, AmplifyConfig, fields_the_mode_uses
from oversight.amplification.curriculum import Curriculum
from oversight.amplification.env import DONT_KNOW, Task, make_task
from oversight.amplification.evaluation import (
    TEST_SET,
    EvalSet,
    accuracy_by_level,
    accuracy_with_se,
    evaluate,
    format_acc_by_level,
    make_eval_sets,
    reached,
)
from oversight.amplification.expert import LearnedExpert
from oversight.amplification.learner import FactSetLearner, count_parameters, ema_update
from oversight.amplification.losses import ALPHA_MAX, IGNORE, logconf_loss
from oversight.amplification.pacing import (
    HPrimePacing,
    build_hprime,
    hprime_call_rate,
    hprime_schedule,
    make_optimizer,
)
from oversight.amplification.truth import GroundTruthLabelsUsed, policy_for
from oversight.amplification.weak import self_consistency
from oversight.amplification.workers import TargetWorker
from oversight.progress import log
from oversight.runtime import (
    autocast,
    code_commit,
    numerics,
    provenance,
    resolve_device,
    seed_everything,
    set_threads,
)
from oversight.w2s.losses import confidence_alpha

# The loop's own names, and (second group) those tests and benchmarks import from here that live in
# the modules the loop uses; ``evaluate``, ``make_test_sets`` and ``accuracy_by_level`` are looked up
# here when the loop calls them, so a test patches them here.
__all__ = [
    "Accounting", "Curriculum", "TrainState", "TrainedRun", "advance_curriculum", "build_hprime",
    "build_learner", "checkpoint_identity", "hprime_call_rate", "hprime_schedule", "learning_rate_factor",
    "main", "make_optimizer", "new_state", "next_targets", "record_eval", "run_results", "train", "x_step",
    # re-exported
    "MODES", "AmplifyConfig", "GroundTruthLedger", "HPrimePlan", "TargetWorker", "accuracy_by_level",
    "evaluate", "fields_the_mode_uses", "format_acc_by_level", "make_answer_fn", "make_batch",
    "make_eval_sets", "stack_facts",
]

SWITCH_VOTES = 2  # amplified-weak+self: evaluations in a row X's teacher must out-compose W to take over


@dataclass
class TrainedRun:
    results: dict[str, Any]
    model: FactSetLearner
    hprime: LearnedExpert | None


def build_learner(cfg: AmplifyConfig, task: Task) -> FactSetLearner:
    return FactSetLearner(task.fact_len, task.question_len, cfg.d_model, cfg.n_heads,
                          cfg.encoder_layers, cfg.decoder_layers, encoder_loops=cfg.encoder_loops)


def learning_rate_factor(step: int, warmup_steps: int, decay_steps: int = 0) -> float:
    """X's learning rate at ``step`` (0-based) as a fraction of ``lr``: a linear warm-up, then constant,
    or with ``decay_steps`` > 0 falling as sqrt(decay_steps / step) past ``decay_steps``."""
    factor = min(1.0, (step + 1) / max(1, warmup_steps))
    if decay_steps > 0 and step > decay_steps:
        factor *= math.sqrt(decay_steps / step)
    return factor


@dataclass
class TrainState:
    """Everything ``train`` changes as it runs, so everything a checkpoint holds (``checkpoint.py``)."""

    model: FactSetLearner
    teacher: FactSetLearner  # EMA of X: answers the subquestions of Amplify(X)
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    rng: np.random.Generator  # the batches' generator in one process (one worker draws from a copy of it)
    ground_truth: GroundTruthLedger
    curriculum: Curriculum
    acct: Accounting = field(default_factory=Accounting)
    curve: list[dict[str, Any]] = field(default_factory=list)
    last_correct: dict[int, np.ndarray] = field(default_factory=dict)  # the latest evaluation, question by question
    pacing: HPrimePacing | None = None  # amplify-learned: H' and the pace of H and H'
    weak: FactSetLearner | None = None  # weak modes: the frozen weak supervisor W (never trained here)
    weak_consistency: float | None = None  # amplified-weak+self: W's self-consistency on validation
    passes_left: int = 0  # steps left on ``current`` (target_passes > 1)
    current: Batch | None = None  # the batch of targets X trains on
    wall_before: float = 0.0  # wall seconds the run had taken before it was resumed

    @property
    def hprime(self) -> LearnedExpert | None:
        return None if self.pacing is None else self.pacing.hprime

    @property
    def hprime_loss(self) -> float:
        return math.inf if self.pacing is None else self.pacing.loss


def new_state(cfg: AmplifyConfig, task: Task, device: str) -> TrainState:
    """A run's state at step 0 (X initialised from torch's generator as seeded)."""
    model = build_learner(cfg, task).to(device)
    optimizer = make_optimizer(model, cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: learning_rate_factor(s, cfg.warmup_steps, cfg.lr_decay_steps))
    state = TrainState(model=model, teacher=copy.deepcopy(model).requires_grad_(False), optimizer=optimizer,
                       schedule=schedule, rng=np.random.default_rng(cfg.seed),
                       ground_truth=GroundTruthLedger(task, allow_non_primitive=cfg.mode == "supervised"),
                       curriculum=Curriculum(cfg, task))
    if cfg.mode == "amplify-learned":
        state.pacing = HPrimePacing.build(cfg, task, device)
    return state


def checkpoint_identity(cfg: AmplifyConfig) -> dict[str, Any]:
    """The fields a checkpoint must share with the run that resumes it: those that decide its numbers."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.metadata.get("identity") is not False}
    return fields_the_mode_uses(values)


def maybe_switch_to_self(state: TrainState, cfg: AmplifyConfig, task: Task, val_set: EvalSet, device: str) -> None:
    """amplified-weak+self: X's teacher takes over from W, for good, once the curriculum is at its
    final stage and at SWITCH_VOTES evaluations in a row its answers composed under H more often than
    W's did (``weak.self_consistency`` on the validation instances at the target size: no true answer
    read, H's work counted). Before the final stage X has not trained on the questions it is scored on."""
    if cfg.mode != "amplified-weak+self" or state.acct.self_from_step or not state.curriculum.final \
            or state.acct.steps == 0:
        return
    assert state.weak is not None
    if state.weak_consistency is None:  # W is frozen: once (H's own draws, apart from the batches', the same after a resume)
        state.weak_consistency = self_consistency(state.weak, task, val_set, device, np.random.default_rng([cfg.seed, 0]),
                                                  cfg.bf16)
        state.acct.switch_expert_calls += len(val_set.questions)
    own = self_consistency(state.teacher, task, val_set, device, np.random.default_rng([cfg.seed, state.acct.steps]),
                           cfg.bf16)
    state.acct.switch_expert_calls += len(val_set.questions)
    state.acct.switch_votes = state.acct.switch_votes + 1 if own > state.weak_consistency else 0
    if state.acct.switch_votes >= SWITCH_VOTES:
        state.acct.self_from_step = state.acct.steps
        log(f"  step {state.acct.steps:6d}  X's teacher answers the subquestions from now on (self-consistency "
            f"{own:.3f} > W's {state.weak_consistency:.3f})")


def record_eval(state: TrainState, cfg: AmplifyConfig, task: Task, val_sets: dict[int, EvalSet], device: str,
                on_eval: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """Evaluate X on every validation set; append the point to the learning curve (and log it)."""
    acct, curriculum, hprime_loss = state.acct, state.curriculum, state.hprime_loss
    state.last_correct.update(evaluate(state.model, task, val_sets, device, cfg.bf16))
    with policy_for(cfg.mode):  # the switch reads no true answer
        maybe_switch_to_self(state, cfg, task, val_sets[cfg.size], device)
    acc = {size: float(correct.mean()) for size, correct in state.last_correct.items()}
    point = {"step": acct.steps, "seconds": round(acct.seconds, 3), "questions": acct.questions_trained,
             "expert_calls": acct.expert_calls, "gt_labels": acct.gt_labels_used,
             "stage_size": curriculum.size, "stage_level": curriculum.level,
             "train_acc": round(curriculum.rolling_accuracy, 4),
             "hprime_loss": None if not math.isfinite(hprime_loss) else round(hprime_loss, 5),
             "val_acc": {str(s): round(a, 4) for s, a in acc.items()}}
    state.curve.append(point)
    log(f"  step {acct.steps:6d}  {acct.seconds:7.1f}s  stage n={curriculum.size} L{curriculum.level}  "
        f"train {curriculum.rolling_accuracy:.3f}  val " + " ".join(f"n{s}:{a:.3f}" for s, a in acc.items())
        + (f"  H' loss {hprime_loss:.4f} H calls {acct.expert_calls}" if state.hprime is not None else ""))
    if on_eval is not None:
        on_eval(point)
    return point


def _count_batch(acct: Accounting, batch: Batch) -> None:
    acct.expert_calls += batch.expert_calls
    acct.primitive_answers += batch.primitive_answers
    acct.teacher_answers += batch.teacher_answers
    acct.weak_answers += batch.weak_answers
    acct.gt_labels_used += batch.gt_labels
    acct.decisions_cached += batch.decisions_cached
    acct.decisions_computed += batch.decisions_computed


def next_targets(state: TrainState, cfg: AmplifyConfig, task: Task, device: str,
                 worker: TargetWorker | None) -> Batch:
    """A fresh batch at the current curriculum stage with its targets (from the worker, made ahead, or
    made now), counted; in amplify-learned H' learns from its H transcripts. ``targets`` is None while
    X waits for H'."""
    pacing, curriculum = state.pacing, state.curriculum
    plan = pace_loss = None
    if pacing is not None:
        plan, pace_loss = pacing.plan(cfg, state.acct.hprime_updates)
    hprime = None if pacing is None else pacing.hprime
    use_self = state.acct.self_from_step > 0
    if worker is not None:
        batch = worker.next_batch(curriculum.size, curriculum.level, state.teacher, device, hprime, plan, use_self)
    else:
        batch = make_batch(task, cfg, curriculum.size, curriculum.level, state.teacher, state.ground_truth,
                           state.rng, device, hprime, plan, None if pacing is None else pacing.decisions,
                           state.weak, use_self)
    _count_batch(state.acct, batch)
    if pacing is not None and pace_loss is not None:
        pacing.learn(cfg, task, device, batch, pace_loss, state.acct)
    return batch


def x_step(state: TrainState, cfg: AmplifyConfig, task: Task, device: str, fresh_batch: bool) -> float:
    """One gradient step of X on the current batch's targets, the teacher's EMA update and the
    accounting; returns X's accuracy against the targets (a DONT_KNOW target counts as wrong). A
    non-finite gradient norm, or loss on a batch with targets, sets ``acct.diverged_at_step`` and
    leaves X as it was."""
    batch, acct = state.current, state.acct
    assert batch is not None and batch.targets is not None
    questions, targets = batch.questions, batch.targets
    with autocast(device, cfg.bf16):
        log_probs = state.model(batch.facts, torch.from_numpy(batch.ctx_index).to(device),
                                torch.from_numpy(questions).to(device),
                                torch.from_numpy(task.answer_mask(questions)).to(device))
    target_t = torch.from_numpy(targets).to(device)
    if cfg.mode != "supervised":  # "don't know" (a malformed decomposition) carries nothing to imitate
        target_t = torch.where(target_t == DONT_KNOW, IGNORE, target_t)
        acct.dont_know_targets += int((targets == DONT_KNOW).sum()) if fresh_batch else 0
    if cfg.mode == "weak-to-strong" and cfg.w2s_loss == "logconf":  # X's own confident answers, mixed in
        loss = logconf_loss(log_probs.float(), target_t, confidence_alpha(acct.steps, cfg.steps, ALPHA_MAX))
    else:
        loss = F.nll_loss(log_probs.float(), target_t, ignore_index=IGNORE)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    # diverged: no update, the loop stops (a batch with no target to train on has a nan loss and zero gradients)
    if not bool(torch.isfinite(grad_norm) & (torch.isfinite(loss) | (target_t == IGNORE).all())):
        acct.diverged_at_step = acct.steps + 1
        log(f"amplify: step {acct.diverged_at_step}: training loss {float(loss.detach())}, gradient norm "
            f"{float(grad_norm)}: X diverged; training stops and the run is flagged diverged")
        return 0.0
    state.optimizer.step()
    state.schedule.step()
    ema_update(state.teacher, state.model, cfg.teacher_ema)
    acct.steps += 1
    acct.questions_trained += len(questions)
    train_accuracy = float((log_probs.argmax(1) == target_t).float().mean())  # IGNORE counts as wrong
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return train_accuracy


def advance_curriculum(state: TrainState, cfg: AmplifyConfig, train_accuracy: float) -> None:
    """Feed the curriculum a first pass's accuracy; at a new stage H' is re-warmed (``hprime_rewarm_each_stage``)."""
    if not state.curriculum.update(train_accuracy, state.acct.steps):
        return
    log(f"  step {state.acct.steps:6d}  curriculum -> size {state.curriculum.size}, level {state.curriculum.level}")
    if state.pacing is not None and cfg.hprime_rewarm_each_stage:
        state.pacing.rewarm(cfg)


def _resume(state: TrainState, cfg: AmplifyConfig, task: Task, device: str,
            checkpoint: Path | None) -> tuple[TrainState, dict[str, Any] | None]:
    """``state`` with the checkpoint at ``checkpoint`` restored, if there is a usable one."""
    from oversight.amplification.checkpoint import read_checkpoint, restore

    saved = read_checkpoint(checkpoint, checkpoint_identity(cfg)) if checkpoint is not None else None
    if saved is None:
        return state, None
    try:
        restore(state, saved, device)
    except Exception as err:  # noqa: BLE001 - a checkpoint that loads but does not fit: start over
        log(f"amplify: checkpoint {checkpoint} does not fit this run ({type(err).__name__}: {err}); starting over")
        seed_everything(cfg.seed)
        return new_state(cfg, task, device), None
    log(f"amplify: resumed from checkpoint {checkpoint} at step {state.acct.steps}")
    return state, saved


def _save(checkpoint: Path, state: TrainState, cfg: AmplifyConfig, worker: TargetWorker | None,
          wall_start: float) -> None:
    from oversight.amplification.checkpoint import capture, write_checkpoint

    wall = state.wall_before + time.perf_counter() - wall_start
    payload = capture(state, checkpoint_identity(cfg), worker, wall)
    try:
        size = write_checkpoint(checkpoint, payload)
    except OSError as err:  # a full disk must not end the run: it goes on, resumable from the last checkpoint
        log(f"amplify: checkpoint {checkpoint} could not be written ({err}); the run goes on without it")
        return
    log(f"  step {state.acct.steps:6d}  checkpoint {checkpoint} ({size / 1e6:.1f} MB)")


def train(cfg: AmplifyConfig, task: Task | None = None, on_eval: Callable[[dict[str, Any]], None] | None = None,
          checkpoint: str | Path | None = None, weak: FactSetLearner | None = None) -> TrainedRun:
    """Train X in ``cfg.mode``; returns the results (accounting, validation curve, final test
    accuracy) and models. In the amplify modes no true answer is read outside evaluation and the
    oracle curriculum (``truth.py``: any other read raises).

    ``checkpoint``: a file to save the run to every ``cfg.checkpoint_every`` steps and, if it is there
    when the run starts, to resume from (to the same numbers as a run never stopped). ``weak``: the
    trained weak supervisor W of a weak mode (``weak.py``), frozen."""
    cfg.validate()
    code_commit()  # the commit this run's code came from, before HEAD can move
    wall_start = time.perf_counter()
    task = task or make_task(cfg.task)
    cfg = cfg.with_task_defaults(task)
    device = resolve_device(cfg.device)
    set_threads(cfg.threads or None)
    seed_everything(cfg.seed)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if (cfg.mode in WEAK_MODES) != (weak is not None):
        raise ValueError(f"mode {cfg.mode}: weak= must be given exactly in the weak modes ({', '.join(WEAK_MODES)})")
    state, saved = _resume(new_state(cfg, task, device), cfg, task, device, checkpoint)
    state.weak = None if weak is None else weak.to(device).eval().requires_grad_(False)
    val_sets = make_eval_sets(task, cfg.test_sizes, cfg.val_contexts, cfg.test_questions, split="validation")
    log(f"amplify: task={cfg.task} mode={cfg.mode} size={cfg.size} device={device} curriculum={cfg.curriculum} "
        f"X params={count_parameters(state.model):,} stages={len(state.curriculum.stages)}")
    if saved is None:
        record_eval(state, cfg, task, val_sets, device, on_eval)
    with policy_for(cfg.mode):
        stopped_by = _loop(state, cfg, task, device, val_sets, on_eval, checkpoint, saved, wall_start)
    if not state.curve or state.curve[-1]["step"] != state.acct.steps:
        record_eval(state, cfg, task, val_sets, device, on_eval)
    results = run_results(state, cfg, task, device, stopped_by)
    results["wall_seconds"] = round(state.wall_before + time.perf_counter() - wall_start, 2)  # with evaluation, setup
    return TrainedRun(results, state.model, state.hprime)


def _loop(state: TrainState, cfg: AmplifyConfig, task: Task, device: str, val_sets: dict[int, EvalSet],
          on_eval: Callable[[dict[str, Any]], None] | None, checkpoint: Path | None,
          saved: dict[str, Any] | None, wall_start: float) -> str:
    """The training loop, from step 0 or where a checkpoint left off; returns what stopped it
    ("steps", "minutes", "stop_at_acc" or "diverged": a non-finite loss or gradient)."""
    acct, largest = state.acct, str(cfg.size)
    # the batches and their targets are made ahead on another core
    worker = (TargetWorker(cfg, task, state.teacher, device, state.hprime, resume=saved and saved["workers"],
                           hprime_version=acct.hprime_updates, weak=state.weak) if cfg.overlap_targets else None)
    try:
        while True:
            if cfg.steps and acct.steps >= cfg.steps:
                return "steps"
            if cfg.minutes and acct.seconds >= cfg.minutes * 60:
                return "minutes"
            step_start = time.perf_counter()
            fresh_batch = state.passes_left == 0  # (with target_passes > 1 a batch and its targets serve several steps)
            if fresh_batch:
                batch = next_targets(state, cfg, task, device, worker)
                if batch.targets is None:  # H' was not ready when this batch was asked for: X waits
                    acct.seconds += time.perf_counter() - step_start
                    acct.hprime_warmup_steps += 1
                    continue
                state.current, state.passes_left = batch, cfg.target_passes
            state.passes_left -= 1
            train_accuracy = x_step(state, cfg, task, device, fresh_batch)
            acct.seconds += time.perf_counter() - step_start
            if acct.diverged_at_step:
                return "diverged"
            # a repeated batch is partly memorised: only the first pass says how well X answers new questions
            if fresh_batch:
                advance_curriculum(state, cfg, train_accuracy)
            if acct.steps % cfg.eval_every == 0:
                point = record_eval(state, cfg, task, val_sets, device, on_eval)
                if cfg.stop_at_acc and state.curriculum.final and point["val_acc"][largest] >= cfg.stop_at_acc:
                    return "stop_at_acc"
            if checkpoint is not None and cfg.checkpoint_every and acct.steps % cfg.checkpoint_every == 0:
                _save(checkpoint, state, cfg, worker, wall_start)
    finally:
        if worker is not None:
            worker.close()


def final_test(model: FactSetLearner, cfg: AmplifyConfig, task: Task, device: str) -> dict[str, Any]:
    """The test sets, built and read once, after the last step: accuracy (with its standard error)
    per size, and at the largest size per question difficulty."""
    test_sets = make_eval_sets(task, cfg.test_sizes, cfg.test_contexts, cfg.test_questions, split="test")
    correct = evaluate(model, task, test_sets, device, cfg.bf16)
    by_size = {size: accuracy_with_se(test_sets[size], correct[size]) for size in test_sets}
    acc, se = by_size[cfg.size]
    return {"test_set": TEST_SET, "test_acc": round(acc, 4), "test_acc_se": round(se, 4),
            "test_acc_by_size": {str(s): round(a, 4) for s, (a, _) in by_size.items()},
            "test_acc_se_by_size": {str(s): round(e, 4) for s, (_, e) in by_size.items()},
            "test_questions": int(len(correct[cfg.size])),
            # question by question at the largest size (test_questions per instance, in order): intervals
            # over instances and seeds (``bridge.py``), as bits
            "test_correct_hex": np.packbits(correct[cfg.size]).tobytes().hex(),
            # where X fails: accuracy at the largest size per question difficulty (curriculum level)
            "test_acc_by_level": accuracy_by_level(task, test_sets[cfg.size], correct[cfg.size])}


def weak_test(weak: FactSetLearner | None, cfg: AmplifyConfig, task: Task, device: str) -> dict[str, Any]:
    """A weak mode's W on the same test set at the target size (``weak_`` fields; none outside the weak modes)."""
    if weak is None:
        return {}
    scores = final_test(weak, cfg, task, device)
    return {f"weak_{k}": scores[k] for k in ("test_acc", "test_acc_se", "test_correct_hex")}


def run_results(state: TrainState, cfg: AmplifyConfig, task: Task, device: str, stopped_by: str) -> dict[str, Any]:
    """The results row of a finished run (``wall_seconds`` is added by ``train``)."""
    acct, curve, largest = state.acct, state.curve, cfg.size
    if cfg.mode != "supervised" and (acct.gt_labels_used or state.ground_truth.non_primitive_labels):
        raise GroundTruthLabelsUsed(
            f"{cfg.mode} used ground-truth labels of non-primitive questions ({acct.gt_labels_used} in its "
            f"batches, {state.ground_truth.non_primitive_labels} from its ledger): the run is not stored")
    return {
        "task": cfg.task, "mode": cfg.mode, "size": cfg.size, "seed": cfg.seed,
        "curriculum": cfg.curriculum, "oracle_curriculum": cfg.oracle_curriculum,
        "steps": acct.steps, "seconds": round(acct.seconds, 2), "wall_seconds": None,
        "steps_per_second": round(acct.steps / max(acct.seconds, 1e-9), 2),
        "stopped_by": stopped_by,
        # a non-finite loss or gradient stopped training: every table flags the row [DIVERGED]
        "diverged": bool(acct.diverged_at_step), "diverged_at_step": acct.diverged_at_step or None,
        # a wall-clock budget depends on the machine's load: such a run is not reproducible
        "reproducible": not cfg.minutes,
        **final_test(state.model, cfg, task, device),
        **weak_test(state.weak, cfg, task, device),
        "val_acc": curve[-1]["val_acc"][str(largest)],
        "questions_trained": acct.questions_trained, "expert_calls": acct.expert_calls,
        "gt_labels_used": acct.gt_labels_used, "primitive_answers": acct.primitive_answers,
        "teacher_answers": acct.teacher_answers, "hprime_updates": acct.hprime_updates,
        "weak": cfg.weak or None, "weak_answers": acct.weak_answers, "self_from_step": acct.self_from_step or None,
        "switch_expert_calls": acct.switch_expert_calls,
        "hprime_warmup_steps": acct.hprime_warmup_steps, "dont_know_targets": acct.dont_know_targets,
        "hprime_loss": None if not math.isfinite(state.hprime_loss) else state.hprime_loss,
        "hprime_cached_decisions": round(acct.decisions_cached / max(1, acct.decisions_cached + acct.decisions_computed), 4),
        "final_stage": {"size": state.curriculum.size, "level": state.curriculum.level,
                        "final": state.curriculum.final},
        "curriculum_history": state.curriculum.history,
        "reached": reached(curve, largest),  # on validation
        "curve": curve,
        "x_parameters": count_parameters(state.model),
        "device": device,
        "numerics": numerics(device, cfg.bf16),
        "provenance": provenance(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    import json

    from oversight.config import add_arguments, from_args

    parser = argparse.ArgumentParser(description="Train X by Iterated Amplification (no results store).")
    add_arguments(parser, AmplifyConfig)
    cfg = from_args(AmplifyConfig, parser.parse_args(argv))
    results = train(cfg).results
    print(json.dumps({k: v for k, v in results.items() if k != "curve"}, indent=1))


if __name__ == "__main__":
    main()
