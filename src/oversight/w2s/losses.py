"""Losses for training a student on (soft) supervisor labels, as plain functions.

Every loss has the signature ``loss(logits, targets, ctx) -> scalar tensor`` where ``logits`` is
``[B, 2]``, ``targets`` is the supervisor's probability of class 1 (``[B]``, soft or hard) and
``ctx`` is a :class:`LossContext` the trainer owns (step counter, recent predictions). Add a loss
by decorating a function with ``@LOSSES.register("name")``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from oversight.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor, "LossContext"], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")


@dataclass
class LossContext:
    """Training state a loss may read: progress through training and a buffer of recent predictions."""

    total_steps: int
    step: int = 0
    alpha_max: float = 0.75
    warmup_frac: float = 0.2
    # Prior fraction of positives the hardened labels should have: the weak labels' mean.
    prior: float = 0.5
    buffer_size: int = 1024
    recent_probs: deque[float] = field(default_factory=deque)

    def observe(self, probs: torch.Tensor) -> None:
        """Record the student's latest P(class 1) so the threshold tracks a rolling window."""
        self.recent_probs.extend(probs.detach().float().cpu().tolist())
        while len(self.recent_probs) > self.buffer_size:
            self.recent_probs.popleft()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against a probability of class 1 (hard labels are the 0/1 special case)."""
    targets = targets.to(logits.dtype)
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


@LOSSES.register("xent")
def xent(logits: torch.Tensor, targets: torch.Tensor, ctx: LossContext | None = None) -> torch.Tensor:
    """Naive finetuning: cross-entropy against the supervisor's soft labels."""
    return soft_cross_entropy(logits, targets)


@LOSSES.register("logconf")
def logconf(logits: torch.Tensor, targets: torch.Tensor, ctx: LossContext) -> torch.Tensor:
    """Auxiliary confidence loss (Burns et al. 2023):
    (1 - α)·CE(f(x), f_w(x)) + α·CE(f(x), f̂_t(x)), f̂_t = the student's own prediction hardened at t.
    """
    alpha = confidence_alpha(ctx.step, ctx.total_steps, ctx.alpha_max, ctx.warmup_frac)
    probs = torch.softmax(logits.detach().float(), dim=-1)[:, 1]
    ctx.observe(probs)
    threshold = hardening_threshold(np.fromiter(ctx.recent_probs, dtype=np.float64), ctx.prior)
    hardened = (probs > threshold).to(logits.dtype)
    return (1 - alpha) * soft_cross_entropy(logits, targets) + alpha * soft_cross_entropy(logits, hardened)
