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

Checkpoints: ``train(cfg, checkpoint=path)`` saves the whole run (``checkpoint.py``: models, optimisers,
generators, curriculum, H''s buffer, the workers' batches made ahead) every ``checkpoint_every``
steps and resumes from ``path`` when it is there, to exactly the steps, curve and weights of a run
never stopped; ``oversight amplify run`` keeps it beside the store and deletes it once the run is
stored. Target workers exit when the training process dies (kill -9 included).

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
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
from oversight.config import check_finite
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
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N", "identity": False})
    threads: int = field(default=1, metadata={"help": "torch CPU threads (0 = all cores); 1 is as fast for this small model and immune to oversubscription on a shared machine", "identity": False})
    checkpoint_every: int = field(default=500, metadata={"help": "steps between checkpoints beside the results store (0 = none); an interrupted run (kill, crash, Ctrl-C) rerun with the same flags resumes from its last checkpoint to the numbers it would have reached unstopped, and the checkpoint is deleted once the run is stored", "identity": False})
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
        """Refuse a config that cannot run as asked, naming the field (the CLI prints it as one line)."""
        check_finite(self)  # nan / inf in any float field (a config built without make_config too)
        if self.mode not in MODES:
            raise ConfigError("mode", f"{self.mode!r} is not one of {', '.join(MODES)}")
        for name in ("size", "start_size"):
            if not 2 <= getattr(self, name) <= 64:
                raise ConfigError(name, f"must be in 2..64, got {getattr(self, name)}")
        if self.steps < 0:
            raise ConfigError("steps", f"must be >= 0 (0 = no step limit), got {self.steps}")
        if self.minutes < 0:
            raise ConfigError("minutes", f"must be >= 0 (0 = no time limit), got {self.minutes}")
        if self.steps == 0 and self.minutes == 0:
            raise ConfigError("steps", "give --steps or --minutes (or both)")
        self._validate_counts()
        self._validate_rates()

    def _validate_counts(self) -> None:
        if self.n_heads < 1:
            raise ConfigError("n_heads", f"must be >= 1, got {self.n_heads}")
        if self.d_model < 1 or self.d_model % self.n_heads:
            raise ConfigError("n_heads", f"d_model ({self.d_model}) must be a positive multiple of n_heads ({self.n_heads})")
        if self.hprime_d_model < 4 or self.hprime_d_model % 4:
            raise ConfigError("hprime_d_model", f"must be a positive multiple of 4 (H' has 4 heads), got {self.hprime_d_model}")
        for name, least, meaning in (("seed", 0, ""), ("threads", 0, ", or 0 for all cores"),
                                     ("questions_per_context", 0, ", or 0 for the task's own"),
                                     ("target_workers", 0, ", or 0 for the mode's own"),
                                     ("checkpoint_every", 0, ", or 0 for no checkpoints"),
                                     ("warmup_steps", 0, ""), ("min_stage_steps", 0, ""), ("encoder_layers", 0, ""),
                                     ("hprime_layers", 0, ""), ("hprime_max_warmup_steps", 0, ""),
                                     ("contexts_per_step", 1, ""), ("target_passes", 1, ""), ("encoder_loops", 1, ""),
                                     ("decoder_layers", 1, ""), ("eval_every", 1, ""), ("test_contexts", 1, ""),
                                     ("test_questions", 1, ""), ("curriculum_window", 1, ""), ("hprime_batch", 1, ""),
                                     ("hprime_loss_window", 1, ""), ("hprime_buffer", 1, "")):
            if getattr(self, name) < least:
                raise ConfigError(name, f"must be >= {least}{meaning}, got {getattr(self, name)}")
        if self.mix_sizes_from and not 2 <= self.mix_sizes_from <= 64:
            raise ConfigError("mix_sizes_from", f"must be 0 (off) or in 2..64, got {self.mix_sizes_from}")
        if self.lr_decay_steps < 0:
            raise ConfigError("lr_decay_steps", "must be >= 0 (0 = constant learning rate)")

    def _validate_rates(self) -> None:
        if self.lr < 0:
            raise ConfigError("lr", f"must be > 0, or 0 for the task's own learning rate; got {self.lr}")
        for name in ("hprime_lr", "grad_clip", "hprime_calls_per_step"):
            if getattr(self, name) <= 0:
                why = " (H' learns only from H's transcripts)" if name == "hprime_calls_per_step" else ""
                raise ConfigError(name, f"must be > 0{why}, got {getattr(self, name)}")
        if self.hprime_updates_per_step < 0:
            raise ConfigError("hprime_updates_per_step", "must be >= 0")
        if self.hprime_ready_loss < 0:
            raise ConfigError("hprime_ready_loss", f"must be >= 0, got {self.hprime_ready_loss}")
        if not 0 <= self.teacher_ema < 1:
            raise ConfigError("teacher_ema", "must be in [0, 1)")
        for name in ("stop_at_acc", "curriculum_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(name, f"must be in [0, 1] (an accuracy), got {getattr(self, name)}")

    def unused_fields(self, values: dict[str, Any]) -> set[str]:
        """The fields this config's mode ignores (for ``oversight.config.run_identity``): H''s
        (``hprime_*``) outside amplify-learned, and the teacher's EMA in supervised mode."""
        return unused_by_mode(self.mode, values)

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

    A worker exits when the training process dies, however it dies (``_die_with_parent``).
    ``state()`` (for a checkpoint) receives the batches the workers are making and reads each
    worker's generator and decision cache after them; ``resume=`` that state starts workers that
    hand those batches over first and then go on from those generators, as the old ones would have.
    """

    def __init__(self, cfg: AmplifyConfig, task: Task, teacher: FactSetLearner, device: str,
                 hprime: LearnedExpert | None = None, resume: dict[str, Any] | None = None,
                 hprime_version: int = 0) -> None:
        # fork on CPU (as DataLoader workers do; spawn would re-run an unguarded calling script);
        # CUDA cannot be forked once initialised, so there the worker is spawned
        methods = torch.multiprocessing.get_all_start_methods()
        context = torch.multiprocessing.get_context("fork" if device == "cpu" and "fork" in methods else "spawn")
        saved = resume["workers"] if resume is not None else [None] * cfg.target_workers
        if len(saved) != cfg.target_workers:
            raise ValueError(f"a checkpoint of {len(saved)} target workers cannot resume {cfg.target_workers}")
        self.workers: list[_Worker] = []
        try:
            for index in range(cfg.target_workers):
                seed = cfg.seed if cfg.target_workers == 1 else [cfg.seed, index]
                self.workers.append(_Worker(context, cfg, task, teacher, hprime, seed, saved[index], hprime_version))
        except BaseException:
            self.close()
            raise
        self.turn = 0 if resume is None else resume["turn"]  # the worker whose batch X trains on next
        self.started = False if resume is None else resume["started"]

    def next_batch(self, size: int, level: int, teacher: FactSetLearner, device: str,
                   hprime: LearnedExpert | None = None, plan: HPrimePlan | None = None) -> Batch:
        """The batch asked for k steps ago (at first: asked for now, from every worker), and a request
        to the same worker for the batch k steps ahead."""
        if not self.started:
            for worker in self.workers:
                worker.request(size, level, teacher, hprime, plan)
            self.started = True
        worker = self.workers[self.turn]
        batch = worker.take()
        worker.request(size, level, teacher, hprime, plan)
        self.turn = (self.turn + 1) % len(self.workers)
        return dataclasses.replace(batch, facts=torch.from_numpy(batch.facts).to(device))

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the workers: whose turn it is, and per worker the batch it made
        ahead (received now, handed over as usual later) and its generator and decision cache after it."""
        return {"turn": self.turn, "started": self.started, "workers": [w.state() for w in self.workers]}

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class _Worker:
    """One process of ``TargetWorker``, with its own snapshots of the teacher and H'."""

    def __init__(self, context: Any, cfg: AmplifyConfig, task: Task, teacher: FactSetLearner,
                 hprime: LearnedExpert | None, seed: int | list[int], saved: dict[str, Any] | None = None,
                 hprime_version: int = 0) -> None:
        self.snapshot = copy.deepcopy(teacher).cpu().share_memory()
        self.hprime_snapshot = None if hprime is None else copy.deepcopy(hprime).cpu().share_memory()
        self.hprime_version = hprime_version  # the H' weights in the snapshot (H' is updated rarely once it imitates H)
        self.pending: Batch | None = None if saved is None else saved["pending"]  # made ahead, not handed over yet
        generator = None if saved is None else {"rng": saved["rng"], "decisions": saved["decisions"]}
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_target_worker,
                                       args=(cfg, task, self.snapshot, self.hprime_snapshot, seed, child,
                                             os.getpid(), generator, hprime_version),
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

    def take(self) -> Batch:
        """The batch asked for last: made ahead before a checkpoint, or received now."""
        if self.pending is not None:
            batch, self.pending = self.pending, None
            return batch
        return self.receive()

    def state(self) -> dict[str, Any]:
        if self.in_flight:
            self.pending = self.receive()
        self.conn.send("state")
        generator = self.receive()
        return {"pending": self.pending, **generator}

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


def _die_with_parent(parent: int) -> None:
    """Make this worker exit when the training process ``parent`` dies, kill -9 included (a forked
    worker holds its own pipe's other end too, so it would never see the pipe close): the kernel's
    PR_SET_PDEATHSIG on Linux, and everywhere a thread that watches for the parent pid to change."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError, TypeError):  # not Linux: the watch below does it
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)
    threading.Thread(target=watch, name="oversight-parent-watch", daemon=True).start()


def _target_worker(cfg: AmplifyConfig, task: Task, teacher: FactSetLearner, hprime: LearnedExpert | None,
                   seed: int | list[int], conn: Any, parent: int, saved: dict[str, Any] | None = None,
                   hprime_version: int = 0) -> None:
    """The worker process of ``TargetWorker``: answers (size, level, plan) requests with batches,
    "state" with its generator and decision cache (for a checkpoint), None stops it."""
    import traceback

    from oversight.amplification.checkpoint import cache_state, load_cache_state

    _die_with_parent(parent)
    try:
        set_threads(cfg.threads or None)
        device = resolve_device(cfg.device)
        # with one worker, the generator train() would draw from in one process: the same questions, made ahead
        rng = np.random.default_rng(seed)
        ground_truth = GroundTruthLedger(task, allow_non_primitive=cfg.mode == "supervised")
        decisions = DecisionCache()  # H''s decisions, kept while its snapshot's version stays the same
        if saved is not None:  # resumed from a checkpoint: go on where the worker before it stopped
            rng.bit_generator.state = saved["rng"]
            load_cache_state(decisions, saved["decisions"])
        local = teacher if device == "cpu" else copy.deepcopy(teacher).to(device)
        local_hprime = hprime if device == "cpu" or hprime is None else copy.deepcopy(hprime).to(device)
        loaded_version = hprime_version  # H''s updates reflected in local_hprime
        conn.send("ready")
        while (request := conn.recv()) is not None:
            if request == "state":
                conn.send({"rng": rng.bit_generator.state, "decisions": cache_state(decisions)})
                continue
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
    unused = unused_by_mode(fields.get("mode"), fields)
    return {k: v for k, v in fields.items() if k not in unused}


def unused_by_mode(mode: str | None, names: Iterable[str]) -> set[str]:
    """Those of ``names`` (AmplifyConfig fields) that ``mode`` ignores."""
    unused = {k for k in names if k.startswith("hprime_")} if mode != "amplify-learned" else set()
    if mode == "supervised":
        unused.add("teacher_ema")
    return unused


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
    hprime_recent_loss: RollingLoss
    acct: Accounting = field(default_factory=Accounting)
    curve: list[dict[str, Any]] = field(default_factory=list)
    last_correct: dict[int, np.ndarray] = field(default_factory=dict)  # the latest evaluation, question by question
    hprime: LearnedExpert | None = None
    hprime_optimizer: torch.optim.Optimizer | None = None
    buffer: TranscriptBuffer | None = None
    decisions: DecisionCache = field(default_factory=DecisionCache)
    hprime_loss: float = math.inf
    expert_credit: float = 0.0  # H calls owed (a fraction per step)
    update_credit: float = 0.0  # H' updates owed
    hprime_ready: bool = False  # amplify-learned: H' imitates H well enough for X to train on its targets
    warmup_in_stage: int = 0
    passes_left: int = 0  # steps left on ``current`` (target_passes > 1)
    current: Batch | None = None  # the batch of targets X trains on
    wall_before: float = 0.0  # wall seconds the run had taken before it was resumed


def new_state(cfg: AmplifyConfig, task: Task, device: str) -> TrainState:
    """A run's state at step 0 (X initialised from torch's generator as seeded)."""
    model = build_learner(cfg, task).to(device)
    optimizer = make_optimizer(model, cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: learning_rate_factor(s, cfg.warmup_steps, cfg.lr_decay_steps))
    state = TrainState(model=model, teacher=copy.deepcopy(model).requires_grad_(False), optimizer=optimizer,
                       schedule=schedule, rng=np.random.default_rng(cfg.seed),
                       ground_truth=GroundTruthLedger(task, allow_non_primitive=cfg.mode == "supervised"),
                       curriculum=Curriculum(cfg, task.num_levels),
                       hprime_recent_loss=RollingLoss(cfg.hprime_loss_window))
    if cfg.mode == "amplify-learned":
        state.hprime = build_hprime(cfg, task).to(device)
        state.hprime_optimizer = make_optimizer(state.hprime, cfg.hprime_lr)
        state.buffer = TranscriptBuffer(cfg.hprime_buffer, np.random.default_rng([cfg.seed, 1]))
    return state


def checkpoint_identity(cfg: AmplifyConfig) -> dict[str, Any]:
    """The fields a checkpoint must share with the run that resumes it: those that decide its numbers."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.metadata.get("identity") is not False}
    return fields_the_mode_uses(values)


def record_eval(state: TrainState, cfg: AmplifyConfig, task: Task, test_sets: dict[int, TestSet], device: str,
                on_eval: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """Test X on every test set; append the point to the learning curve (and log it)."""
    acct, curriculum, hprime_loss = state.acct, state.curriculum, state.hprime_loss
    state.last_correct.update(evaluate(state.model, task, test_sets, device, cfg.bf16))
    acc = {size: float(correct.mean()) for size, correct in state.last_correct.items()}
    point = {"step": acct.steps, "seconds": round(acct.seconds, 3), "questions": acct.questions_trained,
             "expert_calls": acct.expert_calls, "gt_labels": acct.gt_labels_used,
             "stage_size": curriculum.size, "stage_level": curriculum.level,
             "train_acc": round(curriculum.rolling_accuracy, 4),
             "hprime_loss": None if not math.isfinite(hprime_loss) else round(hprime_loss, 5),
             "acc": {str(s): round(a, 4) for s, a in acc.items()}}
    state.curve.append(point)
    log(f"  step {acct.steps:6d}  {acct.seconds:7.1f}s  stage n={curriculum.size} L{curriculum.level}  "
        f"train {curriculum.rolling_accuracy:.3f}  test " + " ".join(f"n{s}:{a:.3f}" for s, a in acc.items())
        + (f"  H' loss {hprime_loss:.4f} H calls {acct.expert_calls}" if state.hprime is not None else ""))
    if on_eval is not None:
        on_eval(point)
    return point


def _plan_hprime(state: TrainState, cfg: AmplifyConfig) -> tuple[HPrimePlan, float]:
    """amplify-learned: how many H transcripts this batch gets (fewer as H' improves) and whether H'
    makes X's targets; with the loss that paces H and H' (while X waits for H', both run at the full rate)."""
    pace_loss = state.hprime_loss if state.hprime_ready else math.inf
    state.expert_credit += hprime_call_rate(cfg, pace_loss)
    n_calls = min(int(state.expert_credit), cfg.contexts_per_step)
    state.expert_credit -= n_calls
    return HPrimePlan(n_calls, make_targets=state.hprime_ready, hprime_version=state.acct.hprime_updates), pace_loss


def _count_batch(acct: Accounting, batch: Batch) -> None:
    acct.expert_calls += batch.expert_calls
    acct.primitive_answers += batch.primitive_answers
    acct.teacher_answers += batch.teacher_answers
    acct.gt_labels_used += batch.gt_labels
    acct.decisions_cached += batch.decisions_cached
    acct.decisions_computed += batch.decisions_computed


def _learn_hprime(state: TrainState, cfg: AmplifyConfig, task: Task, device: str, batch: Batch,
                  pace_loss: float) -> None:
    """Score H' on the batch's new H transcripts, then train it on the buffer at the paced rate."""
    hprime, buffer, optimizer = state.hprime, state.buffer, state.hprime_optimizer
    assert hprime is not None and buffer is not None and optimizer is not None
    if batch.transcripts is not None:
        # H' is scored on new transcripts before it trains on them: its loss on the current distribution
        with torch.no_grad():
            state.hprime_recent_loss.add(float(hprime.loss(batch.transcripts, task, device)[0]), len(batch.transcripts))
        state.hprime_loss = state.hprime_recent_loss.value
        buffer.add(batch.transcripts)
    # H' learns from them, at a rate that falls with H's calls (few new transcripts arrive)
    state.update_credit += cfg.hprime_updates_per_step * hprime_schedule(pace_loss)
    while state.update_credit >= 1:
        state.update_credit -= 1
        sample = buffer.sample(cfg.hprime_batch)
        if sample is None:
            break
        loss_h, _ = hprime.loss(sample, task, device)
        optimizer.zero_grad(set_to_none=True)
        loss_h.backward()
        optimizer.step()
        state.acct.hprime_updates += 1
    if not state.hprime_ready:
        # warm-up: X waits until H' imitates H on this stage's questions (otherwise X learns H''s
        # noise); enough fresh transcripts must have scored it
        state.hprime_ready = ((state.hprime_loss <= cfg.hprime_ready_loss
                               and state.hprime_recent_loss.count >= min(64, cfg.hprime_loss_window))
                              or state.warmup_in_stage >= cfg.hprime_max_warmup_steps)
        state.warmup_in_stage += 1


def next_targets(state: TrainState, cfg: AmplifyConfig, task: Task, device: str,
                 worker: TargetWorker | None) -> Batch:
    """A fresh batch at the current curriculum stage with its targets (from the worker, made ahead, or
    made now), counted; in amplify-learned H' learns from its H transcripts. ``targets`` is None while
    X waits for H'."""
    plan = pace_loss = None
    if state.hprime is not None:
        plan, pace_loss = _plan_hprime(state, cfg)
    curriculum = state.curriculum
    if worker is not None:
        batch = worker.next_batch(curriculum.size, curriculum.level, state.teacher, device, state.hprime, plan)
    else:
        batch = make_batch(task, cfg, curriculum.size, curriculum.level, state.teacher, state.ground_truth,
                           state.rng, device, state.hprime, plan, state.decisions)
    _count_batch(state.acct, batch)
    if pace_loss is not None:
        _learn_hprime(state, cfg, task, device, batch, pace_loss)
    return batch


def x_step(state: TrainState, cfg: AmplifyConfig, task: Task, device: str, fresh_batch: bool) -> float:
    """One gradient step of X on the current batch's targets, the teacher's EMA update and the
    accounting; returns X's accuracy against the targets (a DONT_KNOW target counts as wrong)."""
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
    loss = F.nll_loss(log_probs.float(), target_t, ignore_index=IGNORE)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
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
    if state.hprime is not None and cfg.hprime_rewarm_each_stage:
        # new questions: H''s loss so far says nothing about them; H is called at the full rate
        # again and X waits until the fresh transcripts show H' imitates H
        state.hprime_recent_loss, state.hprime_loss = RollingLoss(cfg.hprime_loss_window), math.inf
        state.hprime_ready, state.warmup_in_stage = False, 0


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
          checkpoint: str | Path | None = None) -> TrainedRun:
    """Train X in ``cfg.mode``; returns the results (accounting, learning curve, test accuracy) and models.

    ``checkpoint``: a file to save the run to every ``cfg.checkpoint_every`` steps and, if it is there
    when the run starts, to resume from (to the same numbers as a run never stopped)."""
    cfg.validate()
    wall_start = time.perf_counter()
    task = task or make_task(cfg.task)
    cfg = cfg.with_task_defaults(task)
    device = resolve_device(cfg.device)
    set_threads(cfg.threads or None)
    seed_everything(cfg.seed)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    state, saved = _resume(new_state(cfg, task, device), cfg, task, device, checkpoint)
    test_sets = make_test_sets(task, cfg.test_sizes, cfg.test_contexts, cfg.test_questions)
    acct, largest = state.acct, cfg.size
    log(f"amplify: task={cfg.task} mode={cfg.mode} size={cfg.size} device={device} "
        f"X params={count_parameters(state.model):,} stages={len(state.curriculum.stages)}")
    if saved is None:
        record_eval(state, cfg, task, test_sets, device, on_eval)
    # the batches and their targets are made ahead on another core
    worker = (TargetWorker(cfg, task, state.teacher, device, state.hprime, resume=saved and saved["workers"],
                           hprime_version=acct.hprime_updates) if cfg.overlap_targets else None)
    try:
        while not (cfg.steps and acct.steps >= cfg.steps) and not (cfg.minutes and acct.seconds >= cfg.minutes * 60):
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
            # a repeated batch is partly memorised: only the first pass says how well X answers new questions
            if fresh_batch:
                advance_curriculum(state, cfg, train_accuracy)
            if acct.steps % cfg.eval_every == 0:
                point = record_eval(state, cfg, task, test_sets, device, on_eval)
                if cfg.stop_at_acc and state.curriculum.final and point["acc"][str(largest)] >= cfg.stop_at_acc:
                    break
            if checkpoint is not None and cfg.checkpoint_every and acct.steps % cfg.checkpoint_every == 0:
                _save(checkpoint, state, cfg, worker, wall_start)
    finally:
        if worker is not None:
            worker.close()
    if not state.curve or state.curve[-1]["step"] != acct.steps:
        record_eval(state, cfg, task, test_sets, device, on_eval)
    results = run_results(state, cfg, task, test_sets, device)
    results["wall_seconds"] = round(state.wall_before + time.perf_counter() - wall_start, 2)  # with evaluation, setup
    return TrainedRun(results, state.model, state.hprime)


def run_results(state: TrainState, cfg: AmplifyConfig, task: Task, test_sets: dict[int, TestSet],
                device: str) -> dict[str, Any]:
    """The results row of a finished run (``wall_seconds`` is added by ``train``)."""
    acct, curve, largest = state.acct, state.curve, cfg.size
    if cfg.mode != "supervised":
        assert acct.gt_labels_used == 0 and state.ground_truth.non_primitive_labels == 0, \
            "amplification used ground-truth labels of non-primitive questions"
    final = curve[-1]
    return {
        "task": cfg.task, "mode": cfg.mode, "size": cfg.size, "seed": cfg.seed,
        "steps": acct.steps, "seconds": round(acct.seconds, 2), "wall_seconds": None,
        "steps_per_second": round(acct.steps / max(acct.seconds, 1e-9), 2),
        "test_acc": final["acc"][str(largest)],
        "test_acc_by_size": final["acc"],
        # where X fails: accuracy at the largest size per question difficulty (curriculum level)
        "test_acc_by_level": accuracy_by_level(task, test_sets[largest], state.last_correct[largest]),
        "questions_trained": acct.questions_trained, "expert_calls": acct.expert_calls,
        "gt_labels_used": acct.gt_labels_used, "primitive_answers": acct.primitive_answers,
        "teacher_answers": acct.teacher_answers, "hprime_updates": acct.hprime_updates,
        "hprime_warmup_steps": acct.hprime_warmup_steps, "dont_know_targets": acct.dont_know_targets,
        "hprime_loss": None if not math.isfinite(state.hprime_loss) else state.hprime_loss,
        "hprime_cached_decisions": round(acct.decisions_cached / max(1, acct.decisions_cached + acct.decisions_computed), 4),
        "final_stage": {"size": state.curriculum.size, "level": state.curriculum.level,
                        "final": state.curriculum.final},
        "curriculum": state.curriculum.history,
        "reached": reached(curve, largest),
        "curve": curve,
        "x_parameters": count_parameters(state.model),
        "device": device,
    }


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
