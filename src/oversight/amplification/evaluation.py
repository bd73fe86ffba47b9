"""X's accuracy: the validation sets that steer and plot a run, the test sets read once at its end.

    from oversight.amplification.evaluation import accuracy_by_level, evaluate, make_eval_sets, reached
    sets = make_eval_sets(task, sizes=[8, 16], n_contexts=128, n_questions=8, split="validation")
    correct = evaluate(model, task, sets, "cpu")                # {size: bool per question}
    accuracy_with_se(sets[8], correct[8])                       # (accuracy, its standard error)
    accuracy_by_level(task, sets[8], correct[8])                # {"1": {"acc": 1.0, "n": 40}, ...}
    reached(results["curve"], 8)                                # the first validation point at 0.90, 0.95, 0.99

Both kinds are FIXED sets of fresh instances at several sizes (8, 16, 32, 64 up to ``size``, and
``size``), full question distribution, whatever the curriculum stage, and depend only on (task,
size, split): the same for every mode and seed. Validation (``SPLIT_SEEDS["validation"]``) drives
everything decided or plotted during training: the curve, stopping, "steps to 95%". Test is built and
read once, after the last step. Reading true answers here is allowed ("evaluation").

Test sets have versions (``TEST_SET``, stored in every row as ``results["test_set"]``, and part of a
run's key, ``runs.run_key``). ``v1`` was seed 20_181_003: runs once stopped on its accuracy and the
defaults were chosen on it, so it is no longer a clean test set. It is retired as a test set and
kept as a second validation split, ``validation2``, free for selection and analysis. ``v2`` (seed
20_261_207, drawn for nothing else) is the test set now. Rows stored without ``test_set`` were
measured on ``v1``: they keep their numbers under their own key and never merge with ``v2`` rows.
The standard error of an accuracy treats each instance as one draw (questions about one instance
are not independent): the std of the per-instance accuracies over sqrt(instances).
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
from oversight.amplification.truth import truth_allowed
from oversight.runtime import autocast

# by (task, size, split) only; "validation2" is the retired test set v1 (see the module docstring)
SPLIT_SEEDS = {"validation": 20_181_004, "validation2": 20_181_003, "test": 20_261_207}
TEST_SET = "v2"  # the test set in use: results["test_set"], and part of every run's key
RETIRED_TEST_SET = "v1"  # what a row stored without "test_set" was measured on


def stored_test_set(results: dict[str, Any]) -> str:
    """Which test set a stored row's test accuracy was measured on (rows before versions: ``v1``)."""
    return str(results.get("test_set", RETIRED_TEST_SET))


@dataclass
class EvalSet:
    size: int
    instances: list[Instance]
    ctx_index: np.ndarray
    questions: np.ndarray


def make_eval_sets(task: Task, sizes: Sequence[int], n_contexts: int, n_questions: int,
                   split: str = "test") -> dict[int, EvalSet]:
    """Fixed held-out sets of one split (``SPLIT_SEEDS``): fresh instances, full question distribution,
    seeded by (size, split) only, so no two splits share an instance's draw."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLIT_SEEDS)}")
    sets = {}
    for size in sizes:
        rng = np.random.default_rng([SPLIT_SEEDS[split], size])
        instances = [task.generate(size, rng) for _ in range(n_contexts)]
        questions = np.concatenate([task.sample_questions(inst, n_questions, rng) for inst in instances])
        sets[size] = EvalSet(size, instances, np.repeat(np.arange(n_contexts), n_questions), questions)
    return sets


@torch.no_grad()
def answered_correctly(model: FactSetLearner, task: Task, ts: EvalSet, device: str, bf16: bool = False) -> np.ndarray:
    """bool [questions of ``ts``]: X's greedy answer is correct (``task.correct_batch``: any correct answer counts)."""
    was_training = model.training
    model.eval()
    facts = stack_facts(ts.instances, device)
    with autocast(device, bf16):
        memory = model.encode_facts(facts)
    answers = make_answer_fn(model, task, memory, facts, device, bf16)(ts.ctx_index, ts.questions)
    model.train(was_training)
    with truth_allowed("evaluation"):
        return task.correct_batch(ts.instances, ts.ctx_index, ts.questions, answers)


def evaluate(model: FactSetLearner, task: Task, eval_sets: dict[int, EvalSet], device: str,
             bf16: bool = False) -> dict[int, np.ndarray]:
    """Which test questions X answers correctly, per size (their mean is the test accuracy)."""
    return {size: answered_correctly(model, task, ts, device, bf16) for size, ts in eval_sets.items()}


def accuracy_by_level(task: Task, ts: EvalSet, correct: np.ndarray) -> dict[str, dict[str, float]]:
    """Test accuracy per question difficulty (``task.question_level``) on one test set, given which of
    its questions were answered correctly: ``{level: {"acc": ..., "n": questions}}``, empty levels left out."""
    with truth_allowed("evaluation"):  # a level may be a true depth or distance
        levels = np.array([task.question_level(q, ts.instances[c])
                           for c, q in zip(ts.ctx_index, ts.questions, strict=True)])
    return {str(level): {"acc": round(float(correct[levels == level].mean()), 4), "n": int((levels == level).sum())}
            for level in np.unique(levels).tolist()}


def accuracy_with_se(ts: EvalSet, correct: np.ndarray) -> tuple[float, float]:
    """(accuracy, standard error) on one set, instances as the independent draws (clustered SE)."""
    per_instance = np.bincount(ts.ctx_index, weights=correct.astype(float)) / np.bincount(ts.ctx_index)
    se = float(per_instance.std(ddof=1) / np.sqrt(len(per_instance))) if len(per_instance) > 1 else float("nan")
    return float(correct.mean()), se


def curve_accuracy(point: dict[str, Any], size: int) -> float | None:
    """A curve point's validation accuracy at ``size`` (runs stored before validation sets: their
    test-set curve, ``acc``)."""
    return point.get("val_acc", point.get("acc", {})).get(str(size))


def format_acc_by_level(by_level: dict[str, dict[str, float]] | None) -> str:
    """``test_acc_by_level`` as "L1:1.00 L2:0.93 ..." ("-" for runs stored before it was measured)."""
    levels = sorted((by_level or {}).items(), key=lambda item: int(item[0]))  # JSON keys come back as strings, sorted
    return " ".join(f"L{level}:{a['acc']:.2f}" for level, a in levels) or "-"


def reached(curve: list[dict[str, Any]], size: int, targets: Sequence[float] = (0.9, 0.95, 0.99)) -> dict[str, Any]:
    """First evaluation at which validation accuracy at ``size`` reached each target: step, seconds, expert calls."""
    out: dict[str, Any] = {}
    for target in targets:
        hit = next((p for p in curve if (curve_accuracy(p, size) or 0.0) >= target), None)
        out[f"{target:.2f}"] = None if hit is None else {
            "step": hit["step"], "seconds": hit["seconds"], "expert_calls": hit["expert_calls"],
            "gt_labels": hit["gt_labels"]}
    return out
