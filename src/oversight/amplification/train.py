"""Iterated Amplification: one training loop for the supervised baseline and both amplification modes.

    oversight amplify run --task permutation_powering --mode amplify --size 8 --minutes 5
    python -m oversight.amplification.train --task permutation_powering --mode supervised --steps 500

    from oversight.amplification.train import AmplifyConfig, train
    run = train(AmplifyConfig(task="permutation_powering", mode="amplify", size=8, steps=1500))
    run.results["test_acc"], run.results["expert_calls"], run.results["gt_labels_used"]

Each step draws ``contexts_per_step`` fresh instances at the curriculum's current size and
``questions_per_context`` questions from each (at the current question-difficulty level), makes a
target for every question, and trains X on them with cross-entropy (``target_passes`` > 1: that
many steps on each batch, which spreads the cost of amplified targets). The modes differ ONLY in
where the targets come from:

- ``supervised``: the ground truth (``task.truth_batch``), counted in ``gt_labels_used``;
- ``amplify``: Amplify^H(X): H (``task.expert``) decomposes each question; the environment answers
  the primitive subquestions and the teacher (an EMA copy of X, one batched no-grad pass per
  round over fact encodings computed once per step) answers the others. Every question costs one
  expert call;
- ``amplify-learned``: Amplify^{H'}(X): the learned expert H' (``expert.py``) decomposes instead of
  H. H runs only on a few questions per step to make H' training transcripts (under Amplify^H(X)),
  and fewer as H' gets accurate: ``hprime_calls_per_step`` while H''s loss (on new transcripts,
  scored before it trains on them) is above 0.1, a tenth of that below 0.1, a hundredth below 0.01.
  H' trains on the same falling schedule, and its decisions are cached between its updates. At the
  start and at every curriculum stage X waits (H and H' at the full rate) until H''s loss on the
  new questions is below ``hprime_ready_loss``.

The batch and its targets are made one step ahead in a second process (``TargetWorker``,
``--overlap-targets``, on by default), as the paper's collection and training loops ran
concurrently: while X takes step t, the worker draws batch t+1 and H (or H') and the teacher (as
they were after step t-1) answer it; in amplify-learned it also makes that batch's H transcripts,
which H' scores and trains on in the training process. On two cores an amplify step then costs
about what a supervised step does. Where making the targets costs more than X's step (H''s
decisions in amplify-learned), ``--target-workers 2`` has two workers take turns, two steps ahead.

Ground truth is read only through ``GroundTruthLedger``, which refuses non-primitive questions
in both amplify modes; the loop also asserts ``gt_labels_used == 0`` there at the end.

Curriculum: stages (size, level): question-difficulty levels 1..num_levels at ``start_size``, then
again at each size doubling up to ``size`` (``--no-relevel-each-size``: only the full distribution at
the larger sizes; amplification then collapsed on wildcard search when n went 8 -> 16, because the
teacher's answers at the new size were wrong at every level at once). The stage advances when X's
rolling accuracy against its own training targets (ground truth in ``supervised``, Amplify(X) in the
amplify modes, so no label is needed) passes ``curriculum_threshold`` after at least
``min_stage_steps`` steps. Test accuracy is always measured on FIXED held-out test sets of fresh
instances at several sizes (8, 16, 32, 64 up to ``size``, and ``size``), full question
distribution, whatever the curriculum stage.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from oversight.amplification.env import DONT_KNOW, Instance, Task, make_task, run_expert
from oversight.amplification.expert import (
    DecisionCache,
    LearnedExpert,
    RollingLoss,
    TranscriptBatch,
    TranscriptBuffer,
    encode_transcripts,
    run_learned_expert,
)
from oversight.amplification.learner import FactSetLearner, count_parameters, ema_update
from oversight.errors import ConfigError
from oversight.progress import log
from oversight.runtime import autocast, resolve_device, seed_everything, set_threads

MODES = ("supervised", "amplify", "amplify-learned")
STANDARD_TEST_SIZES = (8, 16, 32, 64)
IGNORE = -100  # targets X is not trained on
TEST_SEED = 20_181_003  # test sets depend only on (task, size): the same for every mode and seed


@dataclass
class AmplifyConfig:
    """One Iterated-Amplification run. Every field is a CLI flag of ``oversight amplify run``."""

    task: str = field(default="permutation_powering", metadata={"help": "environment (see oversight.amplification.tasks)"})
    mode: str = field(default="amplify", metadata={"help": "where X's targets come from", "choices": MODES})
    size: int = field(default=16, metadata={"help": "largest instance size n trained and tested (2..64)"})
    steps: int = field(default=0, metadata={"help": "stop after this many steps (0 = no step limit)"})
    minutes: float = field(default=15.0, metadata={"help": "stop after this much training wall time (0 = no limit); with --steps, whichever comes first"})
    seed: int = field(default=0, metadata={"help": "training seed (the test sets do not depend on it)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads (0 = all cores); 1 is as fast for this small model and immune to oversubscription on a shared machine"})
    stop_at_acc: float = field(default=0.99, metadata={"help": "stop once the curriculum is done and test accuracy at the largest size reaches this (0 = never)"})
    # curriculum
    start_size: int = field(default=8, metadata={"help": "curriculum: first instance size"})
    curriculum_threshold: float = field(default=0.85, metadata={"help": "curriculum: advance when rolling accuracy on the training targets passes this"})
    curriculum_window: int = field(default=20, metadata={"help": "curriculum: steps in the rolling accuracy"})
    min_stage_steps: int = field(default=30, metadata={"help": "curriculum: least steps spent in a stage"})
    mix_sizes_from: int = field(default=0, metadata={"help": "curriculum: draw each training instance's size uniformly from this size up to the stage's size (0 = all at the stage's size). A trade: on wildcard search at n=16, X trained at 16 only answered 0.45-0.47 at n=8; with 8, n=8 stayed at 0.98-0.99 but n=16 came slower (supervised 95% at 233 s vs 54 s; amplify 0.908 vs 0.994 at 15 minutes)", "key_neutral": 0})
    relevel_each_size: bool = field(default=True, metadata={"help": "curriculum: restart question difficulty at level 1 at every new size (amplification needs it: level 1 rests on primitives only, so X re-grounds at the new size before its answers become targets)"})
    # batch and optimiser
    contexts_per_step: int = field(default=32, metadata={"help": "instances drawn per step (facts encoded once each)"})
    questions_per_context: int = field(default=0, metadata={"help": "questions asked about each instance per step (0 = the task's own, task.questions_per_context: 16, and 32 for permutation powering, whose amplify run at n=16 reached 0.955 in 15 minutes with 32 against 0.906 with 16; shortest path's reached 0.897 with 32 against 0.910, in half the steps)"})
    target_passes: int = field(default=1, metadata={"help": "gradient steps X takes on each batch of targets before a fresh batch is drawn; above 1 the amplify modes spread the teacher's and H's cost over that many steps (the curriculum counts only the first pass, on unseen questions). At 2, 15-minute runs at n=16 were mixed: amplify reached 0.920 vs 0.881 on permutation powering but 0.822 vs 0.881 on shortest path; supervised permutation powering 0.955 vs 0.971. So it stays 1", "key_neutral": 1})
    overlap_targets: bool = field(default=True, metadata={"help": "a second process draws the next step's batch and makes its targets (the ground truth, or the teacher's passes with H or H', and in amplify-learned H's transcripts) while X trains on this one, as the paper's loops ran concurrently; that batch is answered by the teacher (and H') of one step earlier and drawn at the curriculum stage of one step earlier. Uses a second core: at n=16 an amplify step then costs about a supervised one (permutation powering 26 instead of 46 ms; 32,037 steps in 15 minutes instead of 19,168, 0.906 instead of 0.881)", "key_neutral": False})
    target_workers: int = field(default=0, metadata={"help": "with overlap_targets: processes that make batches and their targets, taking turns (k of them work k steps ahead, with the teacher of k steps earlier; above 1 each draws from a generator of its own, so the questions are not a one-process run's). 0 = the mode's own: 2 in amplify-learned, where H''s decisions make a batch's targets cost about twice X's step (permutation powering at n=16 in 15 minutes: 9,912 steps and 0.889 with 2, against 8,843 and 0.809 with 1; on union find and wildcard search, whose targets cost less, 2 made steps faster but needed more of them: 95% at 330 s vs 297 s and 858 s vs 800 s), 1 otherwise", "key_neutral": 1})
    lr: float = field(default=0.0, metadata={"help": "AdamW learning rate of X (0 = the task's own, task.learning_rate: 1e-3, and 3e-4 for sequential assignments, where at 1e-3 X stayed at depth 1 for 11,000 steps while at 3e-4 it passed depth 1 at n=8 in 3,700; at 3e-4 permutation powering's amplify run at n=16 reached only 0.643 in 15 minutes, against 0.881 at 1e-3)"})
    warmup_steps: int = field(default=100, metadata={"help": "linear learning-rate warm-up steps"})
    lr_decay_steps: int = field(default=0, metadata={"help": "after this many steps the learning rate falls as 1/sqrt(step) (0 = constant); it needs no step budget, so time-limited runs stay reproducible. At 3000, 15-minute amplify runs at n=16 showed no clear effect: shortest path 0.867 vs 0.850, permutation powering 0.832 vs 0.856", "key_neutral": 0})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    teacher_ema: float = field(default=0.97, metadata={"help": "decay of the teacher's EMA of X (0 = the current X); the averaged teacher's targets are less noisy. In 15-minute amplify runs at n=16, 0.97 vs 0.9: wildcard 99% at 320 s vs 517 s, permutation powering 0.856 vs 0.809, union find 99% at 448 s vs 468 s, shortest path 0.850 vs 0.859 (best 0.865 vs 0.863); 0.5 was worse still (wildcard 0.836)"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (not faster for this small model on CPU)"})
    # X
    d_model: int = field(default=64, metadata={"help": "X: width (64 learned faster per second of CPU than 96 or 128 in 3-minute A/B runs)"})
    n_heads: int = field(default=4, metadata={"help": "X: attention heads"})
    encoder_layers: int = field(default=3, metadata={"help": "X: self-attention layers over the facts (depth is what chained look-ups need: supervised permutation powering at n=16 in 15 minutes reached 0.971 with 3+3 layers, 0.926 with 2+4 and 0.891 with 2+2, in 13% fewer steps than 2+2; amplify 0.881 vs 0.856; shortest path supervised 0.928 vs 0.922, amplify 0.881 vs 0.850; sequential assignments stayed at depth 1 either way)"})
    decoder_layers: int = field(default=3, metadata={"help": "X: layers in which questions attend to the facts"})
    encoder_loops: int = field(default=1, metadata={"help": "X: times the encoder's layers are applied, with shared weights (depth without parameters, for look-ups chained once per level of a question). Sequential assignments at n=8, supervised, 5 minutes (two runs sharing 2 cores): 2 layers x 4 loops learned no faster per step than 3 layers x 1 (test accuracy 0.42 vs 0.41 at step 1,500) at half the steps per second; at n=16 in 15 minutes (supervised, alone) 2 x 4 reached 0.408 in 4,605 steps, still at n=8 depth 1, against 0.469 and n=8 depth 2 with 3 x 1. Off by default", "key_neutral": 1})
    # H'
    hprime_d_model: int = field(default=64, metadata={"help": "H': width (32 is cheaper per decision but imitated H worse: union find amplify-learned reached 0.762 instead of 0.971 in 15 minutes, with 6,907 instead of 3,842 H calls)"})
    hprime_layers: int = field(default=1, metadata={"help": "H': Transformer layers (one layer decides faster, so X makes more steps in the same time; amplify-learned at n=16 in 15 minutes, 1 vs 2 layers: permutation powering 0.789 vs 0.715, shortest path 0.813 vs 0.787, wildcard search 0.928 vs 0.912, union find 95% at 295 s vs 434 s but 0.986 at best vs 99% at 648 s)"})
    hprime_lr: float = field(default=1e-3, metadata={"help": "H': AdamW learning rate"})
    hprime_batch: int = field(default=128, metadata={"help": "H': transcripts per update"})
    hprime_updates_per_step: float = field(default=1.0, metadata={"help": "H': updates per X step while its loss > 0.1; like H's calls, x0.1 below 0.1 and x0.01 below 0.01 (it trains as fast as new transcripts arrive)"})
    hprime_calls_per_step: float = field(default=8.0, metadata={"help": "H transcripts per X step while H''s loss > 0.1 (x0.1 below, x0.01 below 0.01)"})
    hprime_loss_window: int = field(default=128, metadata={"help": "H''s loss is its mean loss on the newest this many H transcripts, each scored before H' trained on it"})
    hprime_ready_loss: float = field(default=0.02, metadata={"help": "H': X trains (at the start and, with hprime_rewarm_each_stage, at each stage) once H''s loss is below this; at 0.1 X resumed on a half-trained H' and the curriculum passed permutation-powering levels on its errors"})
    hprime_max_warmup_steps: int = field(default=1000, metadata={"help": "H': X starts after this many warm-up steps in any case"})
    hprime_rewarm_each_stage: bool = field(default=True, metadata={"help": "H': at every curriculum stage, measure H''s loss afresh and pause X until H' imitates H on the new questions (without it H' extrapolated to unseen levels, X agreed with its wrong decompositions, and the curriculum raced ahead: permutation powering stuck at 0.40)"})
    hprime_buffer: int = field(default=100_000, metadata={"help": "H': transcript buffer size"})
    # evaluation
    eval_every: int = field(default=100, metadata={"help": "steps between test-set evaluations"})
    test_contexts: int = field(default=64, metadata={"help": "instances per test set (one test set per size)"})
    test_questions: int = field(default=8, metadata={"help": "questions per test instance"})

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError("mode", f"{self.mode!r} is not one of {', '.join(MODES)}")
        if not 2 <= self.size <= 64:
            raise ConfigError("size", f"must be in 2..64, got {self.size}")
        if self.steps < 0 or self.minutes < 0:
            raise ConfigError("steps", "steps and minutes must be >= 0")
        if self.steps == 0 and self.minutes == 0:
            raise ConfigError("steps", "give --steps or --minutes (or both)")
        if self.d_model % self.n_heads or self.hprime_d_model % 4:
            raise ConfigError("d_model", "d_model must be divisible by n_heads, hprime_d_model by 4")
        if self.questions_per_context < 0:
            raise ConfigError("questions_per_context", "must be >= 1, or 0 for the task's own")
        if self.target_workers < 0:
            raise ConfigError("target_workers", "must be >= 1, or 0 for the mode's own")
        for name in ("contexts_per_step", "target_passes", "encoder_loops", "eval_every", "test_contexts",
                     "test_questions", "curriculum_window", "hprime_batch", "hprime_loss_window"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.mix_sizes_from and not 2 <= self.mix_sizes_from <= 64:
            raise ConfigError("mix_sizes_from", f"must be 0 (off) or in 2..64, got {self.mix_sizes_from}")
        if self.lr < 0:
            raise ConfigError("lr", f"must be > 0, or 0 for the task's own learning rate; got {self.lr}")
        if self.lr_decay_steps < 0:
            raise ConfigError("lr_decay_steps", "must be >= 0 (0 = constant learning rate)")
        if self.hprime_calls_per_step <= 0:
            raise ConfigError("hprime_calls_per_step", "must be > 0 (H' learns only from H's transcripts)")
        if self.hprime_updates_per_step < 0:
            raise ConfigError("hprime_updates_per_step", "must be >= 0")
        if not 0 <= self.teacher_ema < 1:
            raise ConfigError("teacher_ema", "must be in [0, 1)")

    def with_task_defaults(self, task: Task | None = None) -> AmplifyConfig:
        """This config with the fields left to the task (and mode) filled in (``lr`` 0 -> ``task.learning_rate``,
        ``questions_per_context`` 0 -> ``task.questions_per_context``, ``target_workers`` 0 -> 2 in
        amplify-learned, else 1): what the run actually uses, so it is what the results store keys and keeps."""
        if self.lr and self.questions_per_context and self.target_workers:
            return self
        task = task or make_task(self.task)
        return dataclasses.replace(self, lr=self.lr or task.learning_rate,
                                   questions_per_context=self.questions_per_context or task.questions_per_context,
                                   target_workers=self.target_workers or (2 if self.mode == "amplify-learned" else 1))

    @property
    def test_sizes(self) -> list[int]:
        return sorted({s for s in STANDARD_TEST_SIZES if min(self.start_size, self.size) <= s <= self.size} | {self.size})


# ----------------------------------------------------------------------------------------------
# Ground truth, accounting, curriculum, test sets
# ----------------------------------------------------------------------------------------------
class GroundTruthLedger:
    """The training loop's only way to ground truth; it counts labels and refuses them in amplify modes."""

    def __init__(self, task: Task, allow_non_primitive: bool) -> None:
        self.task, self.allow_non_primitive = task, allow_non_primitive
        self.non_primitive_labels = 0

    def labels(self, instances: Sequence[Instance], ctx_index: np.ndarray, questions: np.ndarray) -> np.ndarray:
        n = int((~self.task.primitive_mask(questions)).sum())
        if n and not self.allow_non_primitive:
            raise AssertionError(f"{n} ground-truth labels of non-primitive questions requested in an amplify mode")
        self.non_primitive_labels += n
        return self.task.truth_batch(instances, ctx_index, questions)


@dataclass
class Accounting:
    steps: int = 0
    seconds: float = 0.0  # training wall time (evaluation excluded)
    questions_trained: int = 0
    expert_calls: int = 0  # questions H (the scripted expert) answered, each one transcript
    gt_labels_used: int = 0  # ground-truth answers of non-primitive questions used for training
    primitive_answers: int = 0  # subquestions answered by the environment from the facts
    teacher_answers: int = 0  # subquestions answered by X's teacher copy
    hprime_updates: int = 0
    hprime_warmup_steps: int = 0  # amplify-learned: steps spent training H' before X started
    dont_know_targets: int = 0  # amplify modes: questions Amplify(X) answered DONT_KNOW (not trained on)
    decisions_cached: int = 0  # amplify-learned: H' decisions looked up in the cache / computed
    decisions_computed: int = 0


class Curriculum:
    """Stages (size, level); advance when the rolling training accuracy passes the threshold."""

    def __init__(self, cfg: AmplifyConfig, num_levels: int) -> None:
        sizes, s = [], min(cfg.start_size, cfg.size)
        while s < cfg.size:
            sizes.append(s)
            s *= 2
        sizes.append(cfg.size)
        self.stages = [(sizes[0], level) for level in range(1, num_levels + 1)]
        for size in sizes[1:]:
            levels = range(1, num_levels + 1) if cfg.relevel_each_size else [num_levels]
            self.stages += [(size, level) for level in levels]
        self.threshold, self.min_steps = cfg.curriculum_threshold, cfg.min_stage_steps
        self.recent: deque[float] = deque(maxlen=cfg.curriculum_window)
        self.index, self.steps_in_stage = 0, 0
        self.history: list[dict[str, int]] = []

    @property
    def size(self) -> int:
        return self.stages[self.index][0]

    @property
    def level(self) -> int:
        return self.stages[self.index][1]

    @property
    def final(self) -> bool:
        return self.index == len(self.stages) - 1

    @property
    def rolling_accuracy(self) -> float:
        return float(np.mean(self.recent)) if self.recent else 0.0

    def update(self, accuracy: float, step: int) -> bool:
        self.recent.append(accuracy)
        self.steps_in_stage += 1
        ready = (len(self.recent) == self.recent.maxlen and self.steps_in_stage >= self.min_steps
                 and self.rolling_accuracy >= self.threshold)
        if ready and not self.final:
            self.index += 1
            self.steps_in_stage = 0
            self.recent.clear()
            self.history.append({"step": step, "size": self.size, "level": self.level})
            return True
        return False


@dataclass
class TestSet:
    size: int
    instances: list[Instance]
    ctx_index: np.ndarray
    questions: np.ndarray


def make_test_sets(task: Task, sizes: Sequence[int], n_contexts: int, n_questions: int) -> dict[int, TestSet]:
    """Fixed held-out test sets: fresh instances, full question distribution, seeded by size only."""
    sets = {}
    for size in sizes:
        rng = np.random.default_rng([TEST_SEED, size])
        instances = [task.generate(size, rng) for _ in range(n_contexts)]
        questions = np.concatenate([task.sample_questions(inst, n_questions, rng) for inst in instances])
        sets[size] = TestSet(size, instances, np.repeat(np.arange(n_contexts), n_questions), questions)
    return sets


def stack_facts(instances: Sequence[Instance], device: str) -> torch.Tensor:
    """[C, n, fact_len]; instances with fewer facts are padded with all-PAD rows (ignored by X)."""
    n = max(len(inst.facts) for inst in instances)
    out = np.zeros((len(instances), n, instances[0].facts.shape[1]), dtype=np.int64)
    for i, inst in enumerate(instances):
        out[i, : len(inst.facts)] = inst.facts
    return torch.from_numpy(out).to(device)


def make_answer_fn(model: FactSetLearner, task: Task, memory: torch.Tensor, facts: torch.Tensor,
                   device: str, bf16: bool = False) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """X (or its teacher) as an ``answer_fn`` for ``run_expert``: one batched no-grad pass per call,
    reusing the fact encodings ``memory`` computed once for this batch of contexts.

    A (context, question) pair asked several times in one call is answered once (X's greedy answer
    is a function of the pair): H often asks the same subquestion for several questions of a
    context, and this halves the teacher's work on sequential assignments, shortest path and union find.
    """

    def answer(ctx_index: np.ndarray, questions: np.ndarray) -> np.ndarray:
        ctx_index = np.asarray(ctx_index, dtype=np.int64)
        pairs, inverse = np.unique(np.column_stack([ctx_index, questions]), axis=0, return_inverse=True)
        ctx_u, questions_u = np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1:])
        with torch.no_grad(), autocast(device, bf16):
            logp = model.answer_log_probs(
                memory, facts, torch.from_numpy(ctx_u).to(device),
                torch.from_numpy(questions_u).to(device), torch.from_numpy(task.answer_mask(questions_u)).to(device))
        return logp.argmax(1).cpu().numpy()[inverse.reshape(-1)]

    return answer


@dataclass
class Batch:
    """One step's training questions with their targets, and what making the targets cost."""

    facts: torch.Tensor  # [C, n, fact_len] (a numpy array while it crosses from the worker process)
    ctx_index: np.ndarray  # [Q] the context of each question
    questions: np.ndarray  # [Q, question_len]
    targets: np.ndarray | None  # [Q] answer tokens (DONT_KNOW where Amplify(X) had none); None: H' warm-up, X waits
    instances: list[Instance]  # empty when the batch was made in the worker process
    expert_calls: int = 0
    primitive_answers: int = 0
    teacher_answers: int = 0
    gt_labels: int = 0  # ground-truth answers of non-primitive questions
    transcripts: TranscriptBatch | None = None  # amplify-learned: H's transcripts, for H' to learn from
    decisions_cached: int = 0  # amplify-learned: H' decisions looked up / computed
    decisions_computed: int = 0


@dataclass(frozen=True)
class HPrimePlan:
    """What amplify-learned asks of one batch: how many H transcripts, and whether H' makes X's targets."""

    expert_calls: int  # H decomposes the first question of this many contexts (under Amplify^H(X))
    make_targets: bool  # False while X waits for H' to imitate H (warm-up)
    hprime_version: int  # H''s updates so far: decisions cached under other weights are stale


def draw_questions(task: Task, cfg: AmplifyConfig, size: int, level: int,
                   rng: np.random.Generator) -> tuple[list[Instance], np.ndarray, np.ndarray]:
    """Fresh instances at curriculum stage (size, level), ``questions_per_context`` questions from each."""
    sizes = [size] * cfg.contexts_per_step
    if cfg.mix_sizes_from:
        sizes = rng.integers(min(cfg.mix_sizes_from, size), size + 1, size=cfg.contexts_per_step).tolist()
    instances = [task.generate(n, rng) for n in sizes]
    m = cfg.questions_per_context
    questions = np.concatenate([task.sample_questions(inst, m, rng, level=level) for inst in instances])
    return instances, np.repeat(np.arange(cfg.contexts_per_step), m), questions


def make_batch(task: Task, cfg: AmplifyConfig, size: int, level: int, teacher: FactSetLearner,
               ground_truth: GroundTruthLedger, rng: np.random.Generator, device: str,
               hprime: LearnedExpert | None = None, plan: HPrimePlan | None = None,
               decisions: DecisionCache | None = None) -> Batch:
    """A fresh batch at stage (size, level) with its targets: the ground truth (supervised),
    Amplify^H(X) (amplify: H decomposes, the facts answer primitive subquestions, the teacher the rest),
    or Amplify^{H'}(X) (amplify-learned, as ``plan`` says: H transcripts for H' to learn from, and
    H' decomposing every question unless X is waiting for H')."""
    instances, ctx_index, questions = draw_questions(task, cfg, size, level, rng)
    facts = stack_facts(instances, device)
    if cfg.mode == "supervised":
        before = ground_truth.non_primitive_labels
        targets = ground_truth.labels(instances, ctx_index, questions)
        return Batch(facts, ctx_index, questions, targets, instances,
                     gt_labels=ground_truth.non_primitive_labels - before)
    with torch.no_grad(), autocast(device, cfg.bf16):
        teacher_memory = teacher.encode_facts(facts)  # once per context, shared by all of H's rounds
    teacher_answers = make_answer_fn(teacher, task, teacher_memory, facts, device, cfg.bf16)
    if cfg.mode == "amplify":
        run = run_expert(task, instances, ctx_index, questions, teacher_answers, rng)
        return Batch(facts, ctx_index, questions, run.answers, instances, expert_calls=len(questions),
                     primitive_answers=run.n_primitive, teacher_answers=run.n_learner_questions)
    assert hprime is not None and plan is not None and decisions is not None
    batch = Batch(facts, ctx_index, questions, None, instances, expert_calls=plan.expert_calls)
    if plan.expert_calls:
        rows = np.arange(plan.expert_calls) * cfg.questions_per_context  # the first question of each context
        run = run_expert(task, instances, ctx_index[rows], questions[rows], teacher_answers, rng)
        batch.transcripts = encode_transcripts(task, run.transcripts)
        batch.primitive_answers, batch.teacher_answers = run.n_primitive, run.n_learner_questions
    if plan.make_targets:
        decisions.use_version(plan.hprime_version)
        hits, misses = decisions.hits, decisions.misses
        batch.targets, _, n_primitive, n_teacher = run_learned_expert(
            task, hprime, instances, ctx_index, questions, teacher_answers, rng, device, cache=decisions)
        batch.primitive_answers += n_primitive
        batch.teacher_answers += n_teacher
        batch.decisions_cached, batch.decisions_computed = decisions.hits - hits, decisions.misses - misses
    return batch


class TargetWorker:
    """``make_batch`` in ``cfg.target_workers`` other processes, ahead of X (``overlap_targets``).

    With one worker, while X trains on batch t the worker makes batch t+1 with snapshots of the
    teacher (and, in amplify-learned, of H') taken after step t-1, at the curriculum stage of then.
    With k workers they take turns: batch t+k is asked for as batch t is handed over, so it is made
    with the models after step t-1 while X takes steps t..t+k-1. Each worker's snapshots are written
    only while it is idle. One worker draws from the generator a one-process run would use, so a run
    is as reproducible as in one process (and, in supervised and amplify mode, trains on the same
    questions); worker j of k > 1 draws from a generator of its own, seeded with (seed, j), so the
    run is reproducible but its questions are not those of a one-process run.
    """

    def __init__(self, cfg: AmplifyConfig, task: Task, teacher: FactSetLearner, device: str,
                 hprime: LearnedExpert | None = None) -> None:
        # fork on CPU (as DataLoader workers do; spawn would re-run an unguarded calling script);
        # CUDA cannot be forked once initialised, so there the worker is spawned
        methods = torch.multiprocessing.get_all_start_methods()
        context = torch.multiprocessing.get_context("fork" if device == "cpu" and "fork" in methods else "spawn")
        self.workers: list[_Worker] = []
        try:
            for index in range(cfg.target_workers):
                seed = cfg.seed if cfg.target_workers == 1 else [cfg.seed, index]
                self.workers.append(_Worker(context, cfg, task, teacher, hprime, seed))
        except BaseException:
            self.close()
            raise
        self.turn = 0  # the worker whose batch X trains on next
        self.started = False

    def next_batch(self, size: int, level: int, teacher: FactSetLearner, device: str,
                   hprime: LearnedExpert | None = None, plan: HPrimePlan | None = None) -> Batch:
        """The batch asked for k steps ago (at first: asked for now, from every worker), and a request
        to the same worker for the batch k steps ahead."""
        if not self.started:
            for worker in self.workers:
                worker.request(size, level, teacher, hprime, plan)
            self.started = True
        worker = self.workers[self.turn]
        batch = worker.receive()
        worker.request(size, level, teacher, hprime, plan)
        self.turn = (self.turn + 1) % len(self.workers)
        return dataclasses.replace(batch, facts=torch.from_numpy(batch.facts).to(device))

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class _Worker:
    """One process of ``TargetWorker``, with its own snapshots of the teacher and H'."""

    def __init__(self, context: Any, cfg: AmplifyConfig, task: Task, teacher: FactSetLearner,
                 hprime: LearnedExpert | None, seed: int | list[int]) -> None:
        self.snapshot = copy.deepcopy(teacher).cpu().share_memory()
        self.hprime_snapshot = None if hprime is None else copy.deepcopy(hprime).cpu().share_memory()
        self.hprime_version = 0  # the H' weights in the snapshot (H' is updated rarely once it imitates H)
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_target_worker,
                                       args=(cfg, task, self.snapshot, self.hprime_snapshot, seed, child),
                                       name="oversight-targets", daemon=True)
        self.process.start()
        child.close()
        self.in_flight = False
        self.receive()  # "ready": the worker's start-up is setup time, not training time

    def request(self, size: int, level: int, teacher: FactSetLearner, hprime: LearnedExpert | None,
                plan: HPrimePlan | None) -> None:
        ema_update(self.snapshot, teacher, 0.0)  # decay 0: a copy
        if self.hprime_snapshot is not None and hprime is not None and plan is not None \
                and plan.hprime_version != self.hprime_version:
            ema_update(self.hprime_snapshot, hprime, 0.0)
            self.hprime_version = plan.hprime_version
        self.conn.send((size, level, plan))
        self.in_flight = True

    def receive(self) -> Any:
        try:
            message = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"the target worker died (exit code {self.process.exitcode})") from None
        self.in_flight = False
        if isinstance(message, str) and message != "ready":
            raise RuntimeError(f"the target worker failed:\n{message}")
        return message

    def close(self) -> None:
        """Stop the worker, reading the batch it made ahead first (it may be blocked sending it)."""
        try:
            if self.in_flight and self.conn.poll(60):
                self.conn.recv()
            self.conn.send(None)
        except (EOFError, BrokenPipeError, OSError):  # it has stopped already (Ctrl-C reaches it too)
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()


def _target_worker(cfg: AmplifyConfig, task: Task, teacher: FactSetLearner, hprime: LearnedExpert | None,
                   seed: int | list[int], conn: Any) -> None:
    """The worker process of ``TargetWorker``: answers (size, level, plan) requests with batches, None stops it."""
    import traceback

    try:
        set_threads(cfg.threads or None)
        device = resolve_device(cfg.device)
        # with one worker, the generator train() would draw from in one process: the same questions, made ahead
        rng = np.random.default_rng(seed)
        ground_truth = GroundTruthLedger(task, allow_non_primitive=cfg.mode == "supervised")
        decisions = DecisionCache()  # H''s decisions, kept while its snapshot's version stays the same
        local = teacher if device == "cpu" else copy.deepcopy(teacher).to(device)
        local_hprime = hprime if device == "cpu" or hprime is None else copy.deepcopy(hprime).to(device)
        loaded_version = 0  # H''s updates reflected in local_hprime
        conn.send("ready")
        while (request := conn.recv()) is not None:
            size, level, plan = request
            if local is not teacher:
                local.load_state_dict(teacher.state_dict())
            if local_hprime is not hprime and plan.hprime_version != loaded_version:
                local_hprime.load_state_dict(hprime.state_dict())
                loaded_version = plan.hprime_version
            batch = make_batch(task, cfg, size, level, local, ground_truth, rng, device, local_hprime, plan, decisions)
            # numpy, not a tensor: torch would pass a tensor through a shared-memory file per batch
            conn.send(dataclasses.replace(batch, facts=batch.facts.cpu().numpy(), instances=[]))
    except KeyboardInterrupt:
        pass
    except BaseException:  # noqa: BLE001 - whatever it was, the trainer must hear of it
        conn.send(traceback.format_exc())
    finally:
        conn.close()


@torch.no_grad()
def answered_correctly(model: FactSetLearner, task: Task, ts: TestSet, device: str, bf16: bool = False) -> np.ndarray:
    """bool [questions of ``ts``]: X's greedy answer is correct (``task.correct_batch``: any correct answer counts)."""
    was_training = model.training
    model.eval()
    facts = stack_facts(ts.instances, device)
    with autocast(device, bf16):
        memory = model.encode_facts(facts)
    answers = make_answer_fn(model, task, memory, facts, device, bf16)(ts.ctx_index, ts.questions)
    model.train(was_training)
    return task.correct_batch(ts.instances, ts.ctx_index, ts.questions, answers)


def evaluate(model: FactSetLearner, task: Task, test_sets: dict[int, TestSet], device: str,
             bf16: bool = False) -> dict[int, np.ndarray]:
    """Which test questions X answers correctly, per size (their mean is the test accuracy)."""
    return {size: answered_correctly(model, task, ts, device, bf16) for size, ts in test_sets.items()}


def accuracy_by_level(task: Task, ts: TestSet, correct: np.ndarray) -> dict[str, dict[str, float]]:
    """Test accuracy per question difficulty (``task.question_level``) on one test set, given which of
    its questions were answered correctly: ``{level: {"acc": ..., "n": questions}}``, empty levels left out."""
    levels = np.array([task.question_level(q, ts.instances[c]) for c, q in zip(ts.ctx_index, ts.questions, strict=True)])
    return {str(level): {"acc": round(float(correct[levels == level].mean()), 4), "n": int((levels == level).sum())}
            for level in np.unique(levels).tolist()}


def format_acc_by_level(by_level: dict[str, dict[str, float]] | None) -> str:
    """``test_acc_by_level`` as "L1:1.00 L2:0.93 ..." ("-" for runs stored before it was measured)."""
    levels = sorted((by_level or {}).items(), key=lambda item: int(item[0]))  # JSON keys come back as strings, sorted
    return " ".join(f"L{level}:{a['acc']:.2f}" for level, a in levels) or "-"


# ----------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainedRun:
    results: dict[str, Any]
    model: FactSetLearner
    hprime: LearnedExpert | None


def fields_the_mode_uses(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` of an AmplifyConfig less those its mode ignores: H''s (``hprime_*``) outside
    amplify-learned, and the teacher's EMA in supervised mode."""
    mode = fields.get("mode")
    unused = {k for k in fields if k.startswith("hprime_")} if mode != "amplify-learned" else set()
    if mode == "supervised":
        unused.add("teacher_ema")
    return {k: v for k, v in fields.items() if k not in unused}


def build_learner(cfg: AmplifyConfig, task: Task) -> FactSetLearner:
    return FactSetLearner(task.fact_len, task.question_len, cfg.d_model, cfg.n_heads,
                          cfg.encoder_layers, cfg.decoder_layers, encoder_loops=cfg.encoder_loops)


def build_hprime(cfg: AmplifyConfig, task: Task) -> LearnedExpert:
    return LearnedExpert(task, cfg.hprime_d_model, 4, cfg.hprime_layers)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW; the fused kernel (one call for all parameters) is much cheaper per step than the default on CPU."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, foreach=True)


def learning_rate_factor(step: int, warmup_steps: int, decay_steps: int = 0) -> float:
    """X's learning rate at ``step`` (0-based) as a fraction of ``lr``: a linear warm-up, then constant,
    or with ``decay_steps`` > 0 falling as sqrt(decay_steps / step) past ``decay_steps``."""
    factor = min(1.0, (step + 1) / max(1, warmup_steps))
    if decay_steps > 0 and step > decay_steps:
        factor *= math.sqrt(decay_steps / step)
    return factor


def hprime_schedule(hprime_loss: float) -> float:
    """The fraction of the full rate at which H is called and H' trained: 1, 0.1 below loss 0.1, 0.01 below 0.01."""
    if hprime_loss > 0.1:
        return 1.0
    return 0.1 if hprime_loss > 0.01 else 0.01


def hprime_call_rate(cfg: AmplifyConfig, hprime_loss: float) -> float:
    """H transcripts per X step: falls as H' gets accurate."""
    return cfg.hprime_calls_per_step * hprime_schedule(hprime_loss)


def train(cfg: AmplifyConfig, task: Task | None = None,
          on_eval: Callable[[dict[str, Any]], None] | None = None) -> TrainedRun:
    """Train X in ``cfg.mode``; returns the results (accounting, learning curve, test accuracy) and models."""
    cfg.validate()
    wall_start = time.perf_counter()
    task = task or make_task(cfg.task)
    cfg = cfg.with_task_defaults(task)
    device = resolve_device(cfg.device)
    set_threads(cfg.threads or None)
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    amplifying = cfg.mode != "supervised"

    model = build_learner(cfg, task).to(device)
    teacher = copy.deepcopy(model).requires_grad_(False)
    optimizer = make_optimizer(model, cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: learning_rate_factor(s, cfg.warmup_steps, cfg.lr_decay_steps))
    hprime = hprime_optimizer = buffer = None
    hprime_loss, expert_credit, update_credit, hprime_ready = math.inf, 0.0, 0.0, False
    hprime_recent_loss, decisions, warmup_in_stage = RollingLoss(cfg.hprime_loss_window), DecisionCache(), 0
    if cfg.mode == "amplify-learned":
        hprime = build_hprime(cfg, task).to(device)
        hprime_optimizer = make_optimizer(hprime, cfg.hprime_lr)
        buffer = TranscriptBuffer(cfg.hprime_buffer, np.random.default_rng([cfg.seed, 1]))

    ground_truth = GroundTruthLedger(task, allow_non_primitive=not amplifying)
    acct = Accounting()
    curriculum = Curriculum(cfg, task.num_levels)
    test_sets = make_test_sets(task, cfg.test_sizes, cfg.test_contexts, cfg.test_questions)
    curve: list[dict[str, Any]] = []
    largest = cfg.size
    log(f"amplify: task={cfg.task} mode={cfg.mode} size={cfg.size} device={device} "
        f"X params={count_parameters(model):,} stages={len(curriculum.stages)}")

    last_correct: dict[int, np.ndarray] = {}  # the latest evaluation, question by question

    def record_eval() -> dict[str, Any]:
        last_correct.update(evaluate(model, task, test_sets, device, cfg.bf16))
        acc = {size: float(correct.mean()) for size, correct in last_correct.items()}
        point = {"step": acct.steps, "seconds": round(acct.seconds, 3), "questions": acct.questions_trained,
                 "expert_calls": acct.expert_calls, "gt_labels": acct.gt_labels_used,
                 "stage_size": curriculum.size, "stage_level": curriculum.level,
                 "train_acc": round(curriculum.rolling_accuracy, 4),
                 "hprime_loss": None if not math.isfinite(hprime_loss) else round(hprime_loss, 5),
                 "acc": {str(s): round(a, 4) for s, a in acc.items()}}
        curve.append(point)
        log(f"  step {acct.steps:6d}  {acct.seconds:7.1f}s  stage n={curriculum.size} L{curriculum.level}  "
            f"train {curriculum.rolling_accuracy:.3f}  test " + " ".join(f"n{s}:{a:.3f}" for s, a in acc.items())
            + (f"  H' loss {hprime_loss:.4f} H calls {acct.expert_calls}" if hprime is not None else ""))
        if on_eval is not None:
            on_eval(point)
        return point

    record_eval()
    passes_left = 0  # steps left on the current batch of targets
    # the supervised and amplify targets can be made one step ahead on a second core
    worker = TargetWorker(cfg, task, teacher, device, hprime) if cfg.overlap_targets else None
    try:
        while True:
            if cfg.steps and acct.steps >= cfg.steps:
                break
            if cfg.minutes and acct.seconds >= cfg.minutes * 60:
                break
            step_start = time.perf_counter()

            fresh_batch = passes_left == 0  # (with target_passes > 1 a batch and its targets serve several steps)
            if fresh_batch:
                # 1-2. a fresh batch at the current curriculum stage, and its targets
                plan = None
                if hprime is not None:
                    # H makes a few transcripts (one question per context), fewer as H' improves.
                    # While X waits for H', both run at the full rate: H' should catch up as fast as it can
                    pace_loss = hprime_loss if hprime_ready else math.inf
                    expert_credit += hprime_call_rate(cfg, pace_loss)
                    n_calls = min(int(expert_credit), cfg.contexts_per_step)
                    expert_credit -= n_calls
                    plan = HPrimePlan(n_calls, make_targets=hprime_ready, hprime_version=acct.hprime_updates)
                if worker is not None:
                    batch = worker.next_batch(curriculum.size, curriculum.level, teacher, device, hprime, plan)
                else:
                    batch = make_batch(task, cfg, curriculum.size, curriculum.level, teacher, ground_truth, rng,
                                       device, hprime, plan, decisions)
                acct.expert_calls += batch.expert_calls
                acct.primitive_answers += batch.primitive_answers
                acct.teacher_answers += batch.teacher_answers
                acct.gt_labels_used += batch.gt_labels
                acct.decisions_cached += batch.decisions_cached
                acct.decisions_computed += batch.decisions_computed
                if hprime is not None:
                    assert buffer is not None and hprime_optimizer is not None
                    if batch.transcripts is not None:
                        # H' is scored on new transcripts before it trains on them: its loss on the current distribution
                        with torch.no_grad():
                            hprime_recent_loss.add(float(hprime.loss(batch.transcripts, task, device)[0]),
                                                   len(batch.transcripts))
                        hprime_loss = hprime_recent_loss.value
                        buffer.add(batch.transcripts)
                    # H' learns from them, at a rate that falls with H's calls (few new transcripts arrive)
                    update_credit += cfg.hprime_updates_per_step * hprime_schedule(pace_loss)
                    while update_credit >= 1:
                        update_credit -= 1
                        sample = buffer.sample(cfg.hprime_batch)
                        if sample is None:
                            break
                        loss_h, _ = hprime.loss(sample, task, device)
                        hprime_optimizer.zero_grad(set_to_none=True)
                        loss_h.backward()
                        hprime_optimizer.step()
                        acct.hprime_updates += 1
                    if not hprime_ready:
                        # warm-up: X waits until H' imitates H on this stage's questions (otherwise X
                        # learns H''s noise); enough fresh transcripts must have scored it
                        hprime_ready = ((hprime_loss <= cfg.hprime_ready_loss
                                         and hprime_recent_loss.count >= min(64, cfg.hprime_loss_window))
                                        or warmup_in_stage >= cfg.hprime_max_warmup_steps)
                        warmup_in_stage += 1
                if batch.targets is None:  # H' was not ready when this batch was asked for: X waits
                    acct.seconds += time.perf_counter() - step_start
                    acct.hprime_warmup_steps += 1
                    continue
                facts, ctx_index, questions, targets = batch.facts, batch.ctx_index, batch.questions, batch.targets
                passes_left = cfg.target_passes
            passes_left -= 1

            # 3. one gradient step of X on (questions, targets)
            with autocast(device, cfg.bf16):
                log_probs = model(facts, torch.from_numpy(ctx_index).to(device), torch.from_numpy(questions).to(device),
                                  torch.from_numpy(task.answer_mask(questions)).to(device))
            target_t = torch.from_numpy(targets).to(device)
            if amplifying:  # "don't know" (a malformed decomposition) carries nothing to imitate
                target_t = torch.where(target_t == DONT_KNOW, IGNORE, target_t)
                acct.dont_know_targets += int((targets == DONT_KNOW).sum()) if fresh_batch else 0
            loss = F.nll_loss(log_probs.float(), target_t, ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            ema_update(teacher, model, cfg.teacher_ema)

            # 4. accounting and curriculum
            acct.steps += 1
            acct.questions_trained += len(questions)
            train_accuracy = float((log_probs.argmax(1) == target_t).float().mean())  # IGNORE counts as wrong
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            acct.seconds += time.perf_counter() - step_start
            # a repeated batch is partly memorised: only the first pass says how well X answers new questions
            if fresh_batch and curriculum.update(train_accuracy, acct.steps):
                log(f"  step {acct.steps:6d}  curriculum -> size {curriculum.size}, level {curriculum.level}")
                if hprime is not None and cfg.hprime_rewarm_each_stage:
                    # new questions: H''s loss so far says nothing about them; H is called at the full
                    # rate again and X waits until the fresh transcripts show H' imitates H
                    hprime_recent_loss, hprime_loss = RollingLoss(cfg.hprime_loss_window), math.inf
                    hprime_ready, warmup_in_stage = False, 0

            if acct.steps % cfg.eval_every == 0:
                point = record_eval()
                if cfg.stop_at_acc and curriculum.final and point["acc"][str(largest)] >= cfg.stop_at_acc:
                    break
    finally:
        if worker is not None:
            worker.close()
    if not curve or curve[-1]["step"] != acct.steps:
        record_eval()

    if amplifying:
        assert acct.gt_labels_used == 0 and ground_truth.non_primitive_labels == 0, \
            "amplification used ground-truth labels of non-primitive questions"
    final = curve[-1]
    results = {
        "task": cfg.task, "mode": cfg.mode, "size": cfg.size, "seed": cfg.seed,
        "steps": acct.steps, "seconds": round(acct.seconds, 2),
        "wall_seconds": round(time.perf_counter() - wall_start, 2),  # with evaluation and setup
        "steps_per_second": round(acct.steps / max(acct.seconds, 1e-9), 2),
        "test_acc": final["acc"][str(largest)],
        "test_acc_by_size": final["acc"],
        # where X fails: accuracy at the largest size per question difficulty (curriculum level)
        "test_acc_by_level": accuracy_by_level(task, test_sets[largest], last_correct[largest]),
        "questions_trained": acct.questions_trained, "expert_calls": acct.expert_calls,
        "gt_labels_used": acct.gt_labels_used, "primitive_answers": acct.primitive_answers,
        "teacher_answers": acct.teacher_answers, "hprime_updates": acct.hprime_updates,
        "hprime_warmup_steps": acct.hprime_warmup_steps, "dont_know_targets": acct.dont_know_targets,
        "hprime_loss": None if not math.isfinite(hprime_loss) else hprime_loss,
        "hprime_cached_decisions": round(acct.decisions_cached / max(1, acct.decisions_cached + acct.decisions_computed), 4),
        "final_stage": {"size": curriculum.size, "level": curriculum.level, "final": curriculum.final},
        "curriculum": curriculum.history,
        "reached": reached(curve, largest),
        "curve": curve,
        "x_parameters": count_parameters(model),
        "device": device,
    }
    return TrainedRun(results, model, hprime)


def reached(curve: list[dict[str, Any]], size: int, targets: Sequence[float] = (0.9, 0.95, 0.99)) -> dict[str, Any]:
    """First evaluation at which test accuracy at ``size`` reached each target: step, seconds, expert calls."""
    out: dict[str, Any] = {}
    for target in targets:
        hit = next((p for p in curve if p["acc"].get(str(size), 0.0) >= target), None)
        out[f"{target:.2f}"] = None if hit is None else {
            "step": hit["step"], "seconds": hit["seconds"], "expert_calls": hit["expert_calls"],
            "gt_labels": hit["gt_labels"]}
    return out


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
