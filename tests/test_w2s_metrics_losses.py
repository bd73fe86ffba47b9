"""PGR, metrics and losses against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from oversight.w2s import losses, metrics


def test_pgr_hand_values():
    assert metrics.pgr(0.70, 0.76, 0.80) == pytest.approx(0.6)
    assert metrics.pgr(0.70, 0.65, 0.80) == pytest.approx(-0.5)
    assert metrics.pgr(0.70, 0.85, 0.80) == pytest.approx(1.5)


@pytest.mark.parametrize("ceiling", [0.70, 0.69])
def test_pgr_undefined_without_gap(ceiling):
    assert math.isnan(metrics.pgr(0.70, 0.72, ceiling))
    assert metrics.format_pgr(metrics.pgr(0.70, 0.72, ceiling)) == "undefined"


def test_accuracy_auroc_hand_values():
    probs = np.array([0.9, 0.2, 0.6, 0.4])
    labels = np.array([1, 0, 0, 1])
    assert metrics.accuracy(probs, labels) == 0.5
    # positives score 0.9, 0.4; negatives 0.2, 0.6 -> pairs (0.9>0.2, 0.9>0.6, 0.4>0.2, 0.4<0.6) = 3/4
    assert metrics.auroc(probs, labels) == pytest.approx(0.75)
    assert math.isnan(metrics.auroc(probs, np.ones(4)))


def test_agreement_split_by_supervisor_correctness():
    labels = np.array([1, 1, 0, 0])
    supervisor = np.array([0.9, 0.1, 0.2, 0.8])  # right, wrong, right, wrong
    student = np.array([0.8, 0.9, 0.1, 0.7])  # agrees, disagrees, agrees, agrees
    out = metrics.agreement(student, supervisor, labels)
    assert out["agreement"] == 0.75
    assert out["agreement_supervisor_right"] == 1.0
    assert out["agreement_supervisor_wrong"] == 0.5


def test_paired_bootstrap_contains_point_estimate_and_is_deterministic():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)

    def noisy(acc):
        right = rng.random(2000) < acc
        return np.where(right, y, 1 - y).astype(float)

    weak, w2s, ceil = noisy(0.7), noisy(0.8), noisy(0.9)
    point = metrics.pgr(metrics.accuracy(weak, y), metrics.accuracy(w2s, y), metrics.accuracy(ceil, y))
    ci = metrics.paired_bootstrap_pgr([y], [weak], [w2s], [ceil], n_boot=300, seed=1)
    assert ci["pgr_ci_low"] < point < ci["pgr_ci_high"]
    assert 0.2 < ci["pgr_ci_low"] and ci["pgr_ci_high"] < 0.8
    assert ci == metrics.paired_bootstrap_pgr([y], [weak], [w2s], [ceil], n_boot=300, seed=1)


def test_paired_bootstrap_reports_undefined_when_no_gap():
    y = np.array([0, 1] * 200)
    same = y.astype(float)
    ci = metrics.paired_bootstrap_pgr([y], [same], [same], [same], n_boot=100)
    assert ci["pgr_undefined_frac"] == 1.0 and math.isnan(ci["pgr_ci_low"])


def test_mean_std_skips_undefined():
    mean, std, n = metrics.mean_std([0.5, float("nan"), 0.7])
    assert (mean, n) == (pytest.approx(0.6), 2) and std == pytest.approx(math.sqrt(0.02))


def test_soft_cross_entropy_hand_value():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # P(class 1) = 0.75
    target = torch.tensor([0.5])
    expected = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))
    assert losses.xent(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_confidence_alpha_ramps_linearly_over_first_20_percent():
    a = [losses.confidence_alpha(s, total_steps=100, alpha_max=0.75) for s in (0, 5, 10, 20, 50, 100)]
    assert a == pytest.approx([0.0, 0.1875, 0.375, 0.75, 0.75, 0.75])


def test_hardening_threshold_matches_prior():
    probs = np.linspace(0, 1, 101)
    t = losses.hardening_threshold(probs, prior=0.3)
    assert np.mean(probs > t) == pytest.approx(0.3, abs=0.011)
    assert losses.hardening_threshold([], 0.3) == 0.5


def test_logconf_is_xent_at_step_zero_and_hardens_at_the_given_threshold():
    logits = torch.tensor([[0.0, 2.0], [0.0, -1.0], [0.0, 0.5]])  # P(class 1) = 0.881, 0.269, 0.622
    weak = torch.tensor([0.6, 0.4, 0.5])
    ctx = losses.LossContext(total_steps=10, alpha_max=0.5, prior=0.5, threshold=0.7)
    assert losses.logconf(logits, weak, ctx).item() == pytest.approx(losses.xent(logits, weak).item())
    # after warm-up alpha = 0.5; threshold 0.7 hardens the predictions to (1, 0, 0)
    ctx.step = 10
    want = 0.5 * losses.xent(logits, weak).item() + 0.5 * losses.xent(logits, torch.tensor([1.0, 0.0, 0.0])).item()
    assert losses.logconf(logits, weak, ctx).item() == pytest.approx(want, rel=1e-6)


def test_loss_registry_unknown_name_lists_losses():
    with pytest.raises(KeyError, match="unknown loss 'nope'; available: xent, logconf, product, entropy, window"):
        losses.LOSSES.get("nope")


def test_bootstrap_gap_ci_flags_noise_gaps():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    weak = np.where(rng.random(500) < 0.75, y, 1 - y).astype(float)
    ceiling = weak.copy()
    ceiling[:4] = y[:4]  # at most 4 more right answers of 500: a gap of noise
    ci = metrics.paired_bootstrap_pgr([y], [weak], [weak], [ceiling], n_boot=200)
    assert ci["gap_ci_low"] <= 0 < ci["gap_ci_high"] or ci["gap_ci_high"] <= 0.01
    assert metrics.format_pgr(0.5, 0.1, 0.9, gap_low=ci["gap_ci_low"]).endswith("*")
    assert metrics.format_pgr(0.5, 0.1, 0.9, gap_low=0.05) == "0.50 [0.10, 0.90]"
