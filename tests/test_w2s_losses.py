"""The student losses against hand-computed values, the trainer-owned threshold, and run identity.

The hand batch ``_batch()``: three students with P(class 1) = 0.75, 0.5, 0.6 (logits [0, ln 3],
[0, 0], [0, ln 1.5]) and weak labels 0.5, 0.8, 1.0. With CE(w, p) = -(w ln p + (1 - w) ln(1 - p))
and H(p) = CE(p, p):
    xent     = mean(CE(.5, .75), CE(.8, .5), CE(1, .6)) = mean(0.836988, 0.693147, 0.510826) = 0.680320
    product  (β = 1) targets p·w / (p·w + (1-p)(1-w)) = 0.75, 0.8, 1.0
             = mean(H(.75), ln 2, -ln .6) = mean(0.562335, 0.693147, 0.510826) = 0.588769
    entropy  (α = 0.5) = 0.5·xent + 0.5·mean(H(.75), H(.5), H(.6)) = 0.5·0.680320 + 0.5·0.642831 = 0.661576
    window   (radius 0.15: top probability < 0.65 keeps rows 2 and 3) = mean(ln 2, -ln .6) = 0.601986
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from torch import nn

from oversight.config import config_hash, make_config
from oversight.errors import ConfigError
from oversight.w2s import losses, train
from oversight.w2s.config import W2SConfig, data_version, experiment_key, run_numerics
from oversight.w2s.losses import LossContext
from oversight.w2s.models import get_model_spec
from oversight.w2s.pipeline import _hashable, _settings
from oversight.w2s.train import TrainSettings, fit

NEW_LOSSES = ("product", "entropy", "window")
NEW_FIELDS = ("select", "warmup_frac", "threshold_window", "product_beta", "window_radius", "method", "chain",
              "supervisor", "supervisor_accuracy", "student", "truth_budget")


def _batch(requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0], [0.0, math.log(1.5)]], requires_grad=requires_grad)
    return logits, torch.tensor([0.5, 0.8, 1.0], requires_grad=requires_grad)


def _after_warmup(**kw) -> LossContext:
    return LossContext(total_steps=10, step=10, alpha_max=0.5, **kw)  # α = 0.5


# --------------------------------------------------------------------------- hand values

def test_xent_hand_value():
    assert losses.xent(*_batch()).item() == pytest.approx(0.680320, abs=1e-6)


def test_product_hand_values():
    assert losses.product(*_batch(), _after_warmup()).item() == pytest.approx(0.588769, abs=1e-6)
    # β = 2 on the first row: target 0.75²·0.5 / (0.75²·0.5 + 0.25²·0.5) = 0.9, CE(0.9, 0.75) = 0.397543
    logits, weak = _batch()
    got = losses.product(logits[:1], weak[:1], _after_warmup(product_beta=2.0)).item()
    assert got == pytest.approx(0.397543, abs=1e-6)
    # β = 0: the student has no say, the target is the weak label: xent
    assert losses.product(logits, weak, _after_warmup(product_beta=0.0)).item() == pytest.approx(0.680320, abs=1e-6)


def test_product_with_hard_weak_labels_is_finite():
    logits = torch.tensor([[0.0, 30.0], [0.0, -30.0]])
    value = losses.product(logits, torch.tensor([0.0, 1.0]), _after_warmup()).item()
    assert math.isfinite(value) and value == pytest.approx(30.0, abs=1e-4)  # each row: -ln(1 - σ(30)) ≈ 30


def test_entropy_hand_value_and_xent_at_step_zero():
    assert losses.entropy(*_batch(), _after_warmup()).item() == pytest.approx(0.661576, abs=1e-6)
    at_start = LossContext(total_steps=10, step=0, alpha_max=0.5)
    assert losses.entropy(*_batch(), at_start).item() == pytest.approx(0.680320, abs=1e-6)


def test_window_hand_values():
    logits, weak = _batch()
    assert losses.window(logits, weak, _after_warmup()).item() == pytest.approx(0.601986, abs=1e-6)
    # radius 0.05: only the 0.5 row is below 0.55 -> ln 2; radius 0.3: every row -> xent
    assert losses.window(logits, weak, _after_warmup(window_radius=0.05)).item() == pytest.approx(math.log(2), abs=1e-6)
    assert losses.window(logits, weak, _after_warmup(window_radius=0.3)).item() == pytest.approx(0.680320, abs=1e-6)


def test_window_with_nothing_selected_is_a_zero_that_backpropagates():
    logits, weak = _batch(requires_grad=True)
    loss = losses.window(logits, weak, _after_warmup(window_radius=0.0))  # nothing is below 0.5
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_median_radius_is_the_weak_labels_median_confidence():
    assert losses.median_radius(np.array([0.5, 0.8, 1.0])) == pytest.approx(0.3)  # median(0, 0.3, 0.5)
    assert losses.median_radius(np.array([0.1, 0.3, 0.6, 0.9])) == pytest.approx(0.3)  # median(.4, .2, .1, .4)


def test_logconf_with_a_prior_other_than_half():
    # P(class 1) = 0.1, 0.4, 0.6, 0.9; weak 0.1, 0.2, 0.3, 0.4 (mean 0.25)
    logits = torch.tensor([[0.0, math.log(p / (1 - p))] for p in (0.1, 0.4, 0.6, 0.9)])
    weak = torch.tensor([0.1, 0.2, 0.3, 0.4])
    probs = torch.softmax(logits, -1)[:, 1]
    # prior 0.25: the 0.75 quantile of (.1, .4, .6, .9) = .6 + .25·(.9 - .6) = 0.675, hardened (0, 0, 0, 1)
    threshold = losses.ThresholdBuffer(0).update(probs, prior=0.25)
    assert threshold == pytest.approx(0.675)
    # xent(weak) = mean(0.325083, 0.591919, 0.794651, 1.423695) = 0.783837
    # xent(hard) = mean(-ln .9, -ln .6, -ln .4, -ln .9) = 0.409459; α = 0.5 -> 0.596648
    ctx = _after_warmup(prior=0.25, threshold=threshold)
    assert losses.logconf(logits, weak, ctx).item() == pytest.approx(0.596648, abs=1e-6)
    # prior 0.5: threshold 0.5, hardened (0, 0, 1, 1), xent(hard) = 0.308093 -> 0.545965
    half = losses.ThresholdBuffer(0).update(probs, prior=0.5)
    assert losses.logconf(logits, weak, replace(ctx, prior=0.5, threshold=half)).item() == pytest.approx(0.545965, abs=1e-6)


def test_threshold_buffer_rolls_and_zero_means_the_batch():
    rolling = losses.ThresholdBuffer(4)
    assert rolling.update(torch.tensor([0.1, 0.2, 0.3]), prior=0.5) == pytest.approx(0.2)
    assert rolling.update(torch.tensor([0.4, 0.5]), prior=0.5) == pytest.approx(0.35)  # holds .2 .3 .4 .5
    batch = losses.ThresholdBuffer(0)
    batch.update(torch.tensor([0.1, 0.9]), prior=0.5)
    assert batch.update(torch.tensor([0.2, 0.4]), prior=0.5) == pytest.approx(0.3)
    assert losses.threshold_window(None, 64) == 256 and losses.threshold_window(None, 16) == 128
    assert losses.threshold_window(0, 64) == 0 and losses.threshold_window(10, 64) == 10


# --------------------------------------------------------------------------- purity and gradients

@pytest.mark.parametrize("name", losses.LOSSES.names())
def test_a_loss_called_twice_gives_the_same_value_and_leaves_its_context(name):
    loss_fn = losses.LOSSES.get(name)
    logits, weak = _batch()
    ctx = LossContext(total_steps=10, step=3, threshold=0.55, prior=0.4)
    before = asdict(ctx)
    first, second = loss_fn(logits, weak, ctx).item(), loss_fn(logits, weak, ctx).item()
    assert first == second
    assert asdict(ctx) == before
    assert torch.equal(logits, _batch()[0]) and torch.equal(weak, _batch()[1])


def _grads(name: str, ctx: LossContext) -> tuple[torch.Tensor, torch.Tensor | None]:
    logits, weak = _batch(requires_grad=True)
    losses.LOSSES.get(name)(logits, weak, ctx).backward()
    return logits.grad, weak.grad


def test_product_gradient_treats_its_target_as_a_constant():
    grad, weak_grad = _grads("product", _after_warmup())
    assert weak_grad is None
    # (softmax - target) / B with targets (.25, .75), (.2, .8), (0, 1): row 1 is already its target
    want = torch.tensor([[0.0, 0.0], [0.3, -0.3], [0.4, -0.4]]) / 3
    torch.testing.assert_close(grad, want, atol=1e-6, rtol=0)


def test_entropy_gradient_is_the_weak_term_alone():
    grad, weak_grad = _grads("entropy", _after_warmup())
    assert weak_grad is None
    xent_grad, _ = _grads("xent", _after_warmup())
    torch.testing.assert_close(grad, 0.5 * xent_grad)  # the detached soft self-target adds nothing


def test_window_gradient_reaches_only_the_selected_rows():
    grad, weak_grad = _grads("window", _after_warmup())
    assert weak_grad is None
    # (softmax - weak) / 2 on rows 2 and 3; row 1 (top 0.75) is left out
    want = torch.tensor([[0.0, 0.0], [0.15, -0.15], [0.2, -0.2]])
    torch.testing.assert_close(grad, want, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- the trainer

def _old_logconf(logits, targets, step, total_steps, recent: deque, prior: float, size: int) -> torch.Tensor:
    """logconf as it was before the trainer owned the threshold: the loss filled its own buffer."""
    alpha = losses.confidence_alpha(step, total_steps, 0.75, 0.2)
    probs = torch.softmax(logits.detach().float(), dim=-1)[:, 1]
    recent.extend(probs.detach().float().cpu().tolist())
    while len(recent) > size:
        recent.popleft()
    threshold = losses.hardening_threshold(np.fromiter(recent, dtype=np.float64), prior)
    hardened = (probs > threshold).to(logits.dtype)
    return (1 - alpha) * losses.soft_cross_entropy(logits, targets) + alpha * losses.soft_cross_entropy(logits, hardened)


def _spy_fit(monkeypatch, loss: str, **settings) -> tuple[list, np.ndarray]:
    """Train a linear head, recording each step's (logits, targets, ctx, loss value)."""
    calls = []
    real = losses.LOSSES.get(loss)

    def spy(logits, targets, ctx):
        value = real(logits, targets, ctx)
        calls.append((logits.detach().clone(), targets.clone(), replace(ctx), value.item()))
        return value

    monkeypatch.setattr(train.LOSSES, "get", lambda name: spy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    targets = np.clip(0.5 + 0.4 * np.tanh(x[:, 0]), 0, 1).astype(np.float32)
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    fit(model, lambda idx: model(torch.as_tensor(x[idx])), targets,
        TrainSettings(loss=loss, epochs=5, batch_size=8, lr=0.05, bf16=False, **settings))
    return calls, targets


def test_fit_logconf_threshold_equals_the_old_in_loss_buffer(monkeypatch):
    calls, targets = _spy_fit(monkeypatch, "logconf")
    assert len(calls) == 40  # 320 predictions: the 128-long buffer (max(4·8, 128)) rolls over
    recent: deque[float] = deque()
    prior = float(np.mean(targets))
    for logits, weak, ctx, value in calls:
        assert ctx.prior == prior
        old = _old_logconf(logits, weak, ctx.step, ctx.total_steps, recent, prior, size=128).item()
        assert value == old


def test_fit_threshold_window_zero_is_the_batch_quantile(monkeypatch):
    calls, targets = _spy_fit(monkeypatch, "logconf", threshold_window=0)
    for logits, _, ctx, _ in calls:
        probs = torch.softmax(logits, -1)[:, 1].double().numpy()
        assert ctx.threshold == pytest.approx(np.quantile(probs, 1 - np.mean(targets)), abs=1e-12)


def test_fit_window_radius_zero_uses_the_weak_median(monkeypatch):
    calls, targets = _spy_fit(monkeypatch, "window", window_radius=0.0)
    assert calls[0][2].window_radius == pytest.approx(float(np.median(np.abs(targets - 0.5))))


@pytest.mark.parametrize("name", NEW_LOSSES)
def test_a_student_learns_from_noisy_weak_labels(name):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(820, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    flipped = np.where(rng.random(len(y)) < 0.2, 1 - y, y)
    weak = (0.1 + 0.8 * flipped).astype(np.float32)  # soft: 0.9 toward the (20% wrong) label
    train_x, test_x, test_y = x[:320], x[320:], y[320:]
    torch.manual_seed(0)
    model = nn.Linear(5, 2)
    fit(model, lambda idx: model(torch.as_tensor(train_x[idx])), weak[:320],
        TrainSettings(loss=name, epochs=30, batch_size=32, lr=0.05, bf16=False))  # 300 steps
    with torch.no_grad():
        acc = float((model(torch.as_tensor(test_x)).argmax(-1).numpy() == test_y).mean())
    assert acc > 0.8, f"{name}: test accuracy {acc:.3f}"


# --------------------------------------------------------------------------- config and run identity

def _old_identity(cfg: W2SConfig) -> dict:
    """The identity runs were stored under before the new loss options existed."""
    values = {k: v for k, v in asdict(cfg).items() if k not in (*NEW_FIELDS, "device")}
    if cfg.mode != "finetune":
        values.pop("top_k_layers")
    if cfg.loss != "logconf":
        values.pop("alpha_max")
    return values


def _old_hashable(settings: TrainSettings) -> dict:
    values = {k: v for k, v in asdict(settings).items() if k not in (*NEW_FIELDS, "device")}
    if values["mode"] != "finetune":
        values.pop("top_k_layers")
    if values["loss"] != "logconf":
        values.pop("alpha_max")
    return values


@pytest.mark.parametrize("loss", ["xent", "logconf"])
@pytest.mark.parametrize("mode", ["head", "finetune"])
def test_todays_configs_keep_their_keys(loss, mode):
    cfg = W2SConfig(loss=loss, mode=mode, select="last")  # runs stored before selection kept their last weights
    assert experiment_key(cfg) == config_hash(_old_identity(cfg), kind="w2s", data_version=data_version(cfg.dataset),
                                              numerics=run_numerics(cfg))
    for model in ("bow", "minilm-l6", "mpnet-base"):
        for role_loss in ("xent", loss):
            settings = _settings(cfg, get_model_spec(model), role_loss, "cpu", student=True)
            assert _hashable(settings) == _old_hashable(settings)


@pytest.mark.parametrize("mode", ["head", "finetune"])
def test_select_changes_only_the_students_settings(mode):
    """--select is an ablation of the students' selection: weak models and ceilings keep one key (and
    one ground-truth selection) under every --select, so PGRs across selections share a denominator."""
    keys = {}
    for select in ("weak-val", "last", "oracle"):
        cfg = W2SConfig(loss="xent", mode=mode, select=select)
        for model in ("minilm-l6", "mpnet-base"):
            keys[(select, model, "supervisor")] = _hashable(_settings(cfg, get_model_spec(model), "xent", "cpu"))
            keys[(select, model, "student")] = _settings(cfg, get_model_spec(model), "xent", "cpu", student=True)
    for model in ("minilm-l6", "mpnet-base"):
        supervisors = [keys[(select, model, "supervisor")] for select in ("weak-val", "last", "oracle")]
        assert all(k == supervisors[0] for k in supervisors) and supervisors[0]["select"] == "val-truth"
        students = [keys[(select, model, "student")].select for select in ("weak-val", "last", "oracle")]
        assert students == ["val-weak", "last", "val-truth"]


def test_new_options_change_the_key_only_where_their_loss_reads_them():
    def key(**kw):
        return experiment_key(W2SConfig(**kw))

    assert key(loss="logconf", warmup_frac=0.1) != key(loss="logconf")
    assert key(loss="logconf", threshold_window=0) != key(loss="logconf")
    assert key(loss="logconf", threshold_window=256) != key(loss="logconf")  # a number, not "auto"
    assert key(loss="xent", threshold_window=0, warmup_frac=0.1, product_beta=2.0, window_radius=0.3) == key()
    assert key(loss="product", product_beta=2.0) != key(loss="product")
    assert key(loss="product", window_radius=0.3, threshold_window=0) == key(loss="product")
    assert key(loss="window", window_radius=0.3) != key(loss="window")
    assert key(loss="entropy", alpha_max=0.5) != key(loss="entropy")
    assert key(loss="entropy", threshold_window=0) == key(loss="entropy")
    spec = get_model_spec("mpnet-base")
    student = _hashable(_settings(W2SConfig(loss="window", window_radius=0.3), spec, "window", "cpu"))
    assert student["window_radius"] == 0.3 and "product_beta" not in student and "alpha_max" not in student
    weak = _hashable(_settings(W2SConfig(loss="window", window_radius=0.3), spec, "xent", "cpu"))
    assert not (set(NEW_FIELDS) - {"select"}) & set(weak)  # the weak model and the ceiling train with xent: shared


@pytest.mark.parametrize("bad", [{"warmup_frac": 1.5}, {"threshold_window": -1}, {"product_beta": -1.0},
                                 {"window_radius": 0.6}, {"strong": "bow", "weak": "minilm-l6", "loss": "product"}])
def test_bad_loss_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        make_config(W2SConfig, **bad)
