"""Losses for training a student on (soft) supervisor labels, as plain functions.

Every loss has the signature ``loss(logits, targets, ctx) -> scalar tensor`` where ``logits`` is
``[B, 2]``, ``targets`` is the supervisor's probability of class 1 (``[B]``, soft or hard) and
``ctx`` is a :class:`LossContext` the trainer owns and fills in before each call (step, the
hardening threshold of this batch). A loss only reads its context, so calling it twice on the
same inputs gives the same value. Add a loss by decorating a function with
``@LOSSES.register("name")`` and naming the settings it reads in :data:`LOSS_OPTIONS`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from oversight.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor, "LossContext"], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")

# The training settings each loss reads: the others do not tell its runs apart (run keys, labels),
# and the trainer keeps a threshold buffer only for a loss that reads ``threshold_window``.
LOSS_OPTIONS: dict[str, tuple[str, ...]] = {
    "xent": (),
    "logconf": ("alpha_max", "warmup_frac", "threshold_window"),
    "product": ("product_beta",),
    "entropy": ("alpha_max", "warmup_frac"),
    "window": ("window_radius",),
}


def loss_options(loss: str) -> tuple[str, ...]:
    """The settings ``loss`` reads (none for a loss registered without an entry)."""
    return LOSS_OPTIONS.get(loss, ())


def loss_specific_options() -> set[str]:
    """Every setting that some loss reads and another does not."""
    return {name for names in LOSS_OPTIONS.values() for name in names}


@dataclass
class LossContext:
    """What a loss may read, filled in by the trainer: progress through training, the weak labels'
    prior, this batch's hardening threshold and the loss-specific options."""

    total_steps: int
    step: int = 0
    alpha_max: float = 0.75
    warmup_frac: float = 0.2
    # Prior fraction of positives the hardened labels should have: the weak labels' mean.
    prior: float = 0.5
    # P(class 1) above which logconf hardens the student's prediction to 1 (trainer-computed).
    threshold: float = 0.5
    product_beta: float = 1.0
    window_radius: float = 0.15


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against a probability of class 1 (hard labels are the 0/1 special case).
    The targets are constants: no gradient reaches whatever produced them."""
    targets = targets.detach().to(logits.dtype)
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return -(targets * log_probs[:, 1] + (1 - targets) * log_probs[:, 0]).mean()


def confidence_alpha(step: int, total_steps: int, alpha_max: float, warmup_frac: float = 0.2) -> float:
    """Weight of the self-confidence term: ramps linearly from 0 to ``alpha_max`` over the first
    ``warmup_frac`` of training, then stays there (the public reference code jumps instead)."""
    warmup_steps = max(1.0, warmup_frac * total_steps)
    return alpha_max * min(1.0, step / warmup_steps)


def hardening_threshold(recent_probs: np.ndarray | list[float], prior: float) -> float:
    """Threshold t such that a ``prior`` fraction of recent predictions lies above t.

    Taken over a rolling buffer rather than the current batch: a batch quantile is noisy or
    meaningless for small batches (a batch of 1 always hardens to its own side)."""
    probs = np.asarray(recent_probs, dtype=np.float64)
    if probs.size == 0:
        return 0.5
    return float(np.quantile(probs, 1.0 - prior))


def threshold_window(window: int | None, batch_size: int) -> int:
    """How many recent predictions the hardening threshold spans: ``None`` = a few recent batches,
    enough for a stable quantile and short enough to follow the student as it changes; 0 = the
    current batch only (the reference code)."""
    return max(4 * batch_size, 128) if window is None else window


class ThresholdBuffer:
    """The trainer's rolling buffer of the student's recent P(class 1), from which it computes
    each batch's hardening threshold (the batch itself included)."""

    def __init__(self, size: int) -> None:
        self.size = size  # 0: the current batch only
        self.probs: deque[float] = deque(maxlen=size or None)

    def update(self, probs: torch.Tensor, prior: float) -> float:
        """Add this batch's predictions (detached) and return the threshold over the buffer."""
        if self.size == 0:
            self.probs.clear()
        self.probs.extend(probs.detach().float().cpu().tolist())
        return hardening_threshold(np.fromiter(self.probs, dtype=np.float64), prior)


def median_radius(targets: np.ndarray) -> float:
    """The weak labels' median confidence above 0.5, median(|p - 0.5|): ``window``'s radius when
    ``--window-radius 0``, so the student trains where it is less sure than the typical weak label."""
    return float(np.median(np.abs(np.asarray(targets, dtype=np.float64) - 0.5))) if len(targets) else 0.0


def _student_p1(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.detach().float(), dim=-1)[:, 1]


@LOSSES.register("xent")
def xent(logits: torch.Tensor, targets: torch.Tensor, ctx: LossContext | None = None) -> torch.Tensor:
    """Naive finetuning: cross-entropy against the supervisor's soft labels."""
    return soft_cross_entropy(logits, targets)


@LOSSES.register("logconf")
def logconf(logits: torch.Tensor, targets: torch.Tensor, ctx: LossContext) -> torch.Tensor:
    """Auxiliary confidence loss (Burns et al. 2023):
    (1 - α)·CE(f(x), f_w(x)) + α·CE(f(x), f̂_t(x)), f̂_t = the student's own prediction hardened at
    ``ctx.threshold`` (the trainer's quantile of recent predictions at 1 - prior).

    Defaults: α_max 0.75, the paper's for its largest students (0.5 below them); α ramps over the
    first 20% of training, as the paper says, so the self-target only counts once the student has
    learnt something from the weak labels; the threshold window (see :func:`threshold_window`)."""
    alpha = confidence_alpha(ctx.step, ctx.total_steps, ctx.alpha_max, ctx.warmup_frac)
    hardened = (_student_p1(logits) > ctx.threshold).to(logits.dtype)
    return (1 - alpha) * soft_cross_entropy(logits, targets) + alpha * soft_cross_entropy(logits, hardened)


@LOSSES.register("product")
def product(logits: torch.Tensor, targets: torch.Tensor, ctx: LossContext) -> torch.Tensor:
    """Cross-entropy against target ∝ p_student^β · p_weak (the student's part detached), the
    reference code's product loss: a weak label the student disagrees with counts less.

    Defaults as the reference code's: β = 1 and weak exponent 1 (both sources weighted alike), no
    ramp (an untrained student is near uniform, so the target starts as the weak labels). Computed
    in log space so that a hard weak label (p_weak = 0 for a class) gives a finite target."""
    weak = targets.detach().float()
    log_target = ctx.product_beta * F.log_softmax(logits.detach().float(), dim=-1) + torch.log(
        torch.stack([1 - weak, weak], dim=1))
    return soft_cross_entropy(logits, torch.softmax(log_target, dim=-1)[:, 1])


@LOSSES.register("entropy")
def entropy(logits: torch.Tensor, targets: torch.Tensor, ctx: LossContext) -> torch.Tensor:
    """The confidence loss with the student's own *soft* prediction (detached) as the self-target,
    no hardening (EleutherAI/w2s's variant): (1 - α)·CE(f(x), f_w(x)) + α·CE(f(x), sg(f(x))).

    The self-term's value is the student's entropy, but its gradient is zero (the target is the
    prediction itself), so the gradient is (1 - α) times xent's: it tests whether hardening is what
    logconf's gain comes from. Defaults: α_max and its ramp as logconf's, so that hardening is the
    only difference between the two."""
    alpha = confidence_alpha(ctx.step, ctx.total_steps, ctx.alpha_max, ctx.warmup_frac)
    return (1 - alpha) * soft_cross_entropy(logits, targets) + alpha * soft_cross_entropy(logits, _student_p1(logits))


@LOSSES.register("window")
def window(logits: torch.Tensor, targets: torch.Tensor, ctx: LossContext) -> torch.Tensor:
    """Cross-entropy on the weak labels only where the student is still uncertain: its top
    probability below 0.5 + radius (EleutherAI/w2s's confidence window). Once the student is
    confident on an example, the weak label stops pulling it back.

    Default radius 0.15, EleutherAI/w2s's; ``--window-radius 0`` uses the weak labels' median
    confidence (:func:`median_radius`). The mean is over the selected examples (EleutherAI divides
    by the batch), so the step size does not shrink as the student grows confident; with none
    selected it is 0, as a graph-connected zero so ``backward`` still runs."""
    p1 = _student_p1(logits)
    uncertain = torch.maximum(p1, 1 - p1) < 0.5 + ctx.window_radius
    if not bool(uncertain.any()):
        return logits.float().sum() * 0.0
    return soft_cross_entropy(logits[uncertain], targets[uncertain.to(targets.device)])
