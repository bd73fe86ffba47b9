"""The standard error of amplification test accuracy treats an instance as one draw: questions about
one instance are correlated, so it is larger than the naive per-question standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oversight.amplification.evaluation import EvalSet, accuracy_with_se


def _eval_set(ctx_index: np.ndarray) -> EvalSet:
    return EvalSet(size=8, instances=[], ctx_index=np.asarray(ctx_index), questions=np.zeros((len(ctx_index), 3)))


def test_the_clustered_se_of_a_tiny_example_is_the_hand_computed_one() -> None:
    # three instances, two questions each: per-instance accuracies 1, 0, 0.5
    ts = _eval_set(np.array([0, 0, 1, 1, 2, 2]))
    acc, se = accuracy_with_se(ts, np.array([True, True, False, False, True, False]))
    # mean 0.5; sample std of (1, 0, 0.5) = sqrt(((0.5)^2 + (0.5)^2 + 0) / 2) = 0.5; SE = 0.5 / sqrt(3)
    assert acc == 0.5
    assert se == pytest.approx(0.5 / math.sqrt(3))


def test_the_clustered_se_exceeds_the_naive_one_under_within_instance_correlation() -> None:
    rng = np.random.default_rng(0)
    instances, per_instance = 200, 8
    ctx_index = np.repeat(np.arange(instances), per_instance)
    # every question about an instance is answered alike (X knows the instance or it does not), with a
    # little noise: within-instance correlation near 1
    knows = rng.random(instances) < 0.6
    correct = np.repeat(knows, per_instance) ^ (rng.random(instances * per_instance) < 0.02)
    acc, clustered = accuracy_with_se(_eval_set(ctx_index), correct)
    naive = correct.std(ddof=1) / math.sqrt(len(correct))
    assert acc == pytest.approx(correct.mean())
    assert clustered > 2 * naive  # ~ sqrt(8) = 2.8 times with perfectly correlated questions
    # the clustered SE is the SE of the mean of the per-instance accuracies
    per = correct.reshape(instances, per_instance).mean(1)
    assert clustered == pytest.approx(per.std(ddof=1) / math.sqrt(instances))


def test_independent_questions_give_about_the_naive_se() -> None:
    rng = np.random.default_rng(1)
    ctx_index = np.repeat(np.arange(400), 8)
    correct = rng.random(len(ctx_index)) < 0.7
    _, clustered = accuracy_with_se(_eval_set(ctx_index), correct)
    naive = correct.std(ddof=1) / math.sqrt(len(correct))
    assert clustered == pytest.approx(naive, rel=0.15)
