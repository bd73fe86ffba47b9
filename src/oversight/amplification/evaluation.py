"""X's test accuracy: the fixed held-out test sets, which of their questions X answers, and summaries.

    from oversight.amplification.evaluation import accuracy_by_level, evaluate, make_test_sets, reached
    test_sets = make_test_sets(task, cfg.test_sizes, cfg.test_contexts, cfg.test_questions)
    correct = evaluate(model, task, test_sets, "cpu")           # {size: bool per test question}
    accuracy_by_level(task, test_sets[8], correct[8])           # {"1": {"acc": 1.0, "n": 40}, ...}
    format_acc_by_level(results["test_acc_by_level"])           # "L1:1.00 L2:0.93 ..."
    reached(results["curve"], 8)                                # the first evaluation at 0.90, 0.95, 0.99

Test accuracy is always measured on FIXED held-out test sets of fresh instances at several sizes
(8, 16, 32, 64 up to ``size``, and ``size``), full question distribution, whatever the curriculum
stage. The test sets depend only on (task, size) (``TEST_SEED``): the same for every mode and seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from oversight.amplification.batches import make_answer_fn, stack_facts
from oversight.amplification.env import Instance, Task
from oversight.amplification.learner import FactSetLearner
from oversight.runtime import autocast

TEST_SEED = 20_181_003  # test sets depend only on (task, size): the same for every mode and seed


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


def reached(curve: list[dict[str, Any]], size: int, targets: Sequence[float] = (0.9, 0.95, 0.99)) -> dict[str, Any]:
    """First evaluation at which test accuracy at ``size`` reached each target: step, seconds, expert calls."""
    out: dict[str, Any] = {}
    for target in targets:
        hit = next((p for p in curve if p["acc"].get(str(size), 0.0) >= target), None)
        out[f"{target:.2f}"] = None if hit is None else {
            "step": hit["step"], "seconds": hit["seconds"], "expert_calls": hit["expert_calls"],
            "gt_labels": hit["gt_labels"]}
    return out
