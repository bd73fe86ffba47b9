"""The two-head student: its loss by hand, and that it learns the truth through a supervisor's mistakes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oversight.errors import ConfigError
from oversight.w2s import pairs
from oversight.w2s.losses import soft_cross_entropy
from oversight.w2s.train import TrainSettings, train_head
from oversight.w2s.two_head import train_two_head, two_head_loss


class RowFeaturizer:
    """Text ``"t17"`` -> row 17 of a fixed matrix: synthetic frozen features."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def fit(self, texts: list[str]) -> RowFeaturizer:
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        return self.matrix[[int(t[1:]) for t in texts]]


def settings(head: str = "logistic", epochs: int = 20, lr: float = 1e-2) -> TrainSettings:
    return TrainSettings(mode="head", head=head, epochs=epochs, lr=lr, batch_size=64, bf16=False, device="cpu", seed=0)


def texts(n: int, start: int = 0) -> list[str]:
    return [f"t{i}" for i in range(start, start + n)]


def accuracy(probs: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((probs > 0.5) == (truth > 0.5)))


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_loss_matches_a_hand_computed_value() -> None:
    truth_logits = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    error_logit = torch.tensor([0.3, -1.0])
    targets = torch.tensor([1.0, 0.2])
    p_t = [sigmoid(1.0), sigmoid(-3.0)]
    e = [0.5 * sigmoid(0.3), 0.5 * sigmoid(-1.0)]
    p_s = [p * (1 - q) + (1 - p) * q for p, q in zip(p_t, e, strict=True)]
    supervised = -(math.log(p_s[0]) + 0.2 * math.log(p_s[1]) + 0.8 * math.log(1 - p_s[1])) / 2
    untrusted = torch.tensor([float("nan"), float("nan")])
    assert float(two_head_loss(truth_logits, error_logit, targets, untrusted)) == pytest.approx(supervised, rel=1e-5)
    # the second row's truth is 0: its cross-entropy, averaged over the one trusted row, times the weight
    trusted = torch.tensor([float("nan"), 0.0])
    expected = supervised + 2.0 * -math.log(1 - p_t[1])
    value = two_head_loss(truth_logits, error_logit, targets, trusted, trusted_weight=2.0)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_loss_is_finite_with_finite_gradients_at_extreme_logits() -> None:
    truth_logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4], [1e4, -1e4]], requires_grad=True)
    error_logit = torch.tensor([1e4, -1e4, -1e4], requires_grad=True)
    loss = two_head_loss(truth_logits, error_logit, torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, float("nan")]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(truth_logits.grad).all() and torch.isfinite(error_logit.grad).all()


def test_with_no_errors_the_loss_is_the_naive_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(0)
    truth_logits = torch.randn(8, 2, generator=generator) * 3
    targets = torch.rand(8, generator=generator)
    never = torch.full((8,), -1e4)  # e(x) = 0: the supervisor is always right
    loss = two_head_loss(truth_logits, never, targets, torch.full((8,), float("nan")))
    assert float(loss) == pytest.approx(float(soft_cross_entropy(truth_logits, targets)), rel=1e-6)


def test_random_label_noise_is_attributed_to_the_error_model() -> None:
    rng = np.random.default_rng(0)
    n, held_out, d = 2000, 1000, 10
    x = rng.normal(size=(n + held_out, d)).astype(np.float32)
    truth = (x @ rng.normal(size=d) > 0).astype(np.float32)
    supervisor = np.where(rng.random(n + held_out) < 0.25, 1 - truth, truth)
    # the truth head has to grow sharp before e(x) can take over the noise: a longer run than the default
    student = train_two_head(RowFeaturizer(x), texts(n), supervisor[:n], settings(epochs=40, lr=3e-2))
    assert accuracy(student.predict_proba(texts(held_out, n)), truth[n:]) >= 0.9
    assert abs(float(student.error_proba(texts(n)).mean()) - 0.25) <= 0.1


def test_a_truth_budget_beats_the_naive_student_under_systematic_errors() -> None:
    rng = np.random.default_rng(1)
    n, held_out, d = 2000, 1000, 10
    x = rng.normal(size=(n + held_out, d)).astype(np.float32)
    truth = (x[:, 0] > 0).astype(np.float32)
    flipped = x[:, 1] > 0.8  # about 21%: the supervisor is wrong on every one of them
    supervisor = np.where(flipped, 1 - truth, truth)
    featurizer = RowFeaturizer(x)
    trusted = {int(i): float(truth[i]) for i in rng.choice(n, 200, replace=False)}
    student = train_two_head(featurizer, texts(n), supervisor[:n], settings("mlp"), trusted=trusted)
    naive = train_head(featurizer, texts(n), supervisor[:n], settings("mlp"))
    two_head_acc = accuracy(student.predict_proba(texts(held_out, n)), truth[n:])
    naive_acc = accuracy(naive.predict_proba(texts(held_out, n)), truth[n:])
    assert two_head_acc >= naive_acc + 0.03
    errors = student.error_proba(texts(n))
    assert errors[flipped[:n]].mean() > errors[~flipped[:n]].mean()
    p_t, e = student.predict_proba(texts(n)), errors
    assert np.allclose(student.supervisor_proba(texts(n)), p_t * (1 - e) + (1 - p_t) * e, atol=1e-6)


def test_no_trusted_labels_is_the_same_as_an_empty_budget() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.float32)
    runs = [train_two_head(RowFeaturizer(x), texts(300), labels, settings(epochs=3), trusted=trusted)
            for trusted in (None, {})]
    assert np.array_equal(runs[0].predict_proba(texts(300)), runs[1].predict_proba(texts(300)))


def test_preference_pairs_are_refused() -> None:
    pair_texts = [pairs.pair_text("q", "a", "b"), pairs.pair_text("q", "c", "d")]
    with pytest.raises(ConfigError, match="student") as raised:
        train_two_head(RowFeaturizer(np.zeros((2, 3), dtype=np.float32)), pair_texts, np.array([1.0, 0.0]), settings())
    assert raised.value.field == "student"
