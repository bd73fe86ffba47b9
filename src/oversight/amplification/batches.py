"""One training step's batch: fresh questions and a target for each, and what making the targets cost.

    from oversight.amplification.batches import GroundTruthLedger, make_batch
    ground_truth = GroundTruthLedger(task, allow_non_primitive=cfg.mode == "supervised")
    batch = make_batch(task, cfg, size, level, teacher, ground_truth, rng, "cpu")
    batch.questions, batch.targets, batch.expert_calls, batch.gt_labels

A batch is ``contexts_per_step`` fresh instances at the curriculum's current size and
``questions_per_context`` questions from each (at the current question-difficulty level), with a
target for every question. The modes differ ONLY in where the targets come from:

- ``supervised``: the ground truth (``task.truth_batch``), counted in ``gt_labels``;
- ``amplify``: Amplify^H(X): H (``task.expert``) decomposes each question; the environment answers
  the primitive subquestions and the teacher (an EMA copy of X, one batched no-grad pass per
  round over fact encodings computed once per batch) answers the others. Every question costs one
  expert call;
- ``weak-to-strong``: the weak supervisor W's own answers (``weak.py``), counted in ``weak_answers``;
- ``amplified-weak``: Amplify^H(W): as ``amplify`` with the frozen W answering the subquestions;
  ``amplified-weak+self``: the same until the loop switches to X's teacher (``use_self``);
- ``amplify-learned``: Amplify^{H'}(X): the learned expert H' (``expert.py``) decomposes instead of
  H. H runs only on the few questions the loop's ``HPrimePlan`` asks for, to make H' training
  transcripts (under Amplify^H(X)); while X waits for H' the batch has no targets.

Ground truth is read only through ``GroundTruthLedger`` (``truth.py``), which refuses non-primitive
questions in both amplify modes; there the whole run is under ``truth_denied``, so any other read of
a true answer (a curriculum choosing questions by their depth, say) raises. ``stack_facts`` and ``make_answer_fn`` give X (or its teacher) as one batched
pass over a batch of contexts; the test-set evaluation answers through them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from oversight.amplification.config import WEAK_MODES, AmplifyConfig
from oversight.amplification.curriculum import question_access
from oversight.amplification.env import Instance, Task, run_expert
from oversight.amplification.expert import (
    DecisionCache,
    LearnedExpert,
    TranscriptBatch,
    encode_transcripts,
    run_learned_expert,
)
from oversight.amplification.learner import FactSetLearner
from oversight.amplification.truth import GroundTruthLedger
from oversight.runtime import autocast

__all__ = ["Batch", "GroundTruthLedger", "HPrimePlan", "draw_questions", "make_answer_fn", "make_batch", "stack_facts"]


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
    weak_answers: int = 0  # questions the weak supervisor W answered (a target or a subquestion)
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
    with question_access(cfg, task):
        questions = np.concatenate([task.sample_questions(inst, m, rng, level=level) for inst in instances])
    return instances, np.repeat(np.arange(cfg.contexts_per_step), m), questions


def make_batch(task: Task, cfg: AmplifyConfig, size: int, level: int, teacher: FactSetLearner,
               ground_truth: GroundTruthLedger, rng: np.random.Generator, device: str,
               hprime: LearnedExpert | None = None, plan: HPrimePlan | None = None,
               decisions: DecisionCache | None = None, weak: FactSetLearner | None = None,
               use_self: bool = False) -> Batch:
    """A fresh batch at stage (size, level) with its targets: the ground truth (supervised),
    Amplify^H(X) (amplify: H decomposes, the facts answer primitive subquestions, the teacher the rest),
    Amplify^{H'}(X) (amplify-learned, as ``plan`` says: H transcripts for H' to learn from, and
    H' decomposing every question unless X is waiting for H'), W's answers (weak-to-strong) or
    Amplify^H(W) (amplified-weak; with ``use_self``, Amplify^H(X) in amplified-weak+self)."""
    instances, ctx_index, questions = draw_questions(task, cfg, size, level, rng)
    facts = stack_facts(instances, device)
    if cfg.mode == "supervised":
        before = ground_truth.non_primitive_labels
        targets = ground_truth.labels(instances, ctx_index, questions)
        return Batch(facts, ctx_index, questions, targets, instances,
                     gt_labels=ground_truth.non_primitive_labels - before)
    answerer = teacher
    if cfg.mode in WEAK_MODES and not use_self:
        if weak is None:
            raise ValueError(f"mode {cfg.mode} makes its targets with a weak supervisor: pass weak=")
        answerer = weak
    with torch.no_grad(), autocast(device, cfg.bf16):
        teacher_memory = answerer.encode_facts(facts)  # once per context, shared by all of H's rounds
    teacher_answers = make_answer_fn(answerer, task, teacher_memory, facts, device, cfg.bf16)
    if cfg.mode == "weak-to-strong":
        return Batch(facts, ctx_index, questions, teacher_answers(ctx_index, questions), instances,
                     weak_answers=len(questions))
    if cfg.mode in WEAK_MODES:
        run = run_expert(task, instances, ctx_index, questions, teacher_answers, rng)
        by_weak = 0 if use_self else run.n_learner_questions
        return Batch(facts, ctx_index, questions, run.answers, instances, expert_calls=len(questions),
                     primitive_answers=run.n_primitive, teacher_answers=run.n_learner_questions - by_weak,
                     weak_answers=by_weak)
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
