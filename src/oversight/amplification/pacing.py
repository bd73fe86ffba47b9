"""amplify-learned: H' and the pace at which H is called and H' trained, as one object.

    from oversight.amplification.pacing import HPrimePacing
    pacing = HPrimePacing.build(cfg, task, device)
    plan, pace_loss = pacing.plan(cfg, hprime_updates=acct.hprime_updates)   # before a batch is made
    pacing.learn(cfg, task, device, batch, pace_loss, acct)                # after: score H', train it
    pacing.rewarm(cfg)                                                     # at a new curriculum stage

H makes ``hprime_calls_per_step`` transcripts per X step while H''s loss (on new transcripts, scored
before it trains on them) is above 0.1, a tenth of that below 0.1, a hundredth below 0.01; H' trains
on the same falling schedule (it learns as fast as new transcripts arrive), and its decisions are
cached between its updates. At the start and at every curriculum stage X waits (H and H' at the
full rate) until H''s loss on the new questions is below ``hprime_ready_loss``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from oversight.amplification.batches import Batch, HPrimePlan
from oversight.amplification.config import AmplifyConfig
from oversight.amplification.env import Task
from oversight.amplification.expert import DecisionCache, LearnedExpert, RollingLoss, TranscriptBuffer

if TYPE_CHECKING:
    from oversight.amplification.accounting import Accounting


def hprime_schedule(hprime_loss: float) -> float:
    """The fraction of the full rate at which H is called and H' trained: 1, 0.1 below loss 0.1, 0.01 below 0.01."""
    if hprime_loss > 0.1:
        return 1.0
    return 0.1 if hprime_loss > 0.01 else 0.01


def hprime_call_rate(cfg: AmplifyConfig, hprime_loss: float) -> float:
    """H transcripts per X step: falls as H' gets accurate."""
    return cfg.hprime_calls_per_step * hprime_schedule(hprime_loss)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW; the fused kernel (one call for all parameters) is much cheaper per step than the default on CPU."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, foreach=True)


def build_hprime(cfg: AmplifyConfig, task: Task) -> LearnedExpert:
    return LearnedExpert(task, cfg.hprime_d_model, 4, cfg.hprime_layers)


@dataclass
class HPrimePacing:
    """H', its optimiser, H''s transcripts and decision cache, and the pacing of H and H'."""

    hprime: LearnedExpert
    optimizer: torch.optim.Optimizer
    buffer: TranscriptBuffer
    recent_loss: RollingLoss
    decisions: DecisionCache = field(default_factory=DecisionCache)
    loss: float = math.inf  # H''s mean loss on the newest transcripts, each scored before it trained on them
    expert_credit: float = 0.0  # H calls owed (a fraction per step)
    update_credit: float = 0.0  # H' updates owed
    ready: bool = False  # H' imitates H well enough for X to train on its targets
    warmup_in_stage: int = 0

    @classmethod
    def build(cls, cfg: AmplifyConfig, task: Task, device: str) -> HPrimePacing:
        hprime = build_hprime(cfg, task).to(device)
        return cls(hprime, make_optimizer(hprime, cfg.hprime_lr),
                   TranscriptBuffer(cfg.hprime_buffer, np.random.default_rng([cfg.seed, 1])),
                   RollingLoss(cfg.hprime_loss_window))

    def plan(self, cfg: AmplifyConfig, hprime_updates: int) -> tuple[HPrimePlan, float]:
        """How many H transcripts the next batch gets (fewer as H' improves) and whether H' makes X's
        targets; with the loss that paces H and H' (while X waits for H', both run at the full rate)."""
        pace_loss = self.loss if self.ready else math.inf
        self.expert_credit += hprime_call_rate(cfg, pace_loss)
        n_calls = min(int(self.expert_credit), cfg.contexts_per_step)
        self.expert_credit -= n_calls
        return HPrimePlan(n_calls, make_targets=self.ready, hprime_version=hprime_updates), pace_loss

    def learn(self, cfg: AmplifyConfig, task: Task, device: str, batch: Batch, pace_loss: float,
              acct: Accounting) -> None:
        """Score H' on the batch's new H transcripts, then train it on the buffer at the paced rate."""
        if batch.transcripts is not None:
            # H' is scored on new transcripts before it trains on them: its loss on the current distribution
            with torch.no_grad():
                self.recent_loss.add(float(self.hprime.loss(batch.transcripts, task, device)[0]), len(batch.transcripts))
            self.loss = self.recent_loss.value
            self.buffer.add(batch.transcripts)
        self.update_credit += cfg.hprime_updates_per_step * hprime_schedule(pace_loss)
        while self.update_credit >= 1:
            self.update_credit -= 1
            sample = self.buffer.sample(cfg.hprime_batch)
            if sample is None:
                break
            loss, _ = self.hprime.loss(sample, task, device)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            acct.hprime_updates += 1
        if not self.ready:
            # warm-up: X waits until H' imitates H on this stage's questions (otherwise X learns H''s
            # noise); enough fresh transcripts must have scored it
            self.ready = ((self.loss <= cfg.hprime_ready_loss and self.recent_loss.count >= min(64, cfg.hprime_loss_window))
                          or self.warmup_in_stage >= cfg.hprime_max_warmup_steps)
            self.warmup_in_stage += 1

    def rewarm(self, cfg: AmplifyConfig) -> None:
        """New questions: H''s loss so far says nothing about them; H is called at the full rate again
        and X waits until the fresh transcripts show H' imitates H."""
        self.recent_loss, self.loss = RollingLoss(cfg.hprime_loss_window), math.inf
        self.ready, self.warmup_in_stage = False, 0

    SCALARS = ("loss", "expert_credit", "update_credit", "ready", "warmup_in_stage")

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (``checkpoint.py``)."""
        from oversight.amplification.checkpoint import cache_state

        return {"hprime": self.hprime.state_dict(), "hprime_optimizer": self.optimizer.state_dict(),
                "buffer": {"data": self.buffer.data, "rng": self.buffer.rng.bit_generator.state},
                "hprime_recent_loss": list(self.recent_loss.batches), "decisions": cache_state(self.decisions),
                "scalars": {name: getattr(self, name) for name in self.SCALARS}}

    def load_state(self, saved: dict[str, Any]) -> None:
        from oversight.amplification.checkpoint import load_cache_state

        self.hprime.load_state_dict(saved["hprime"])
        self.optimizer.load_state_dict(saved["hprime_optimizer"])
        self.buffer.data = saved["buffer"]["data"]
        self.buffer.rng.bit_generator.state = saved["buffer"]["rng"]
        self.recent_loss.batches = list(saved["hprime_recent_loss"])
        load_cache_state(self.decisions, saved["decisions"])
        for name in self.SCALARS:
            setattr(self, name, saved["scalars"][name])
