"""X's losses, as plain functions over one-token answers.

    from oversight.amplification.losses import IGNORE, logconf_loss
    loss = logconf_loss(log_probs, targets, alpha)   # weak-to-strong --w2s-loss logconf

The training loop (``train.x_step``) uses cross-entropy on its targets (``IGNORE`` where there is
none to imitate), or in weak-to-strong mode with ``--w2s-loss logconf`` Burns et al.'s confidence loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # targets X is not trained on
ALPHA_MAX = 0.75  # weak-to-strong --w2s-loss logconf: the weight X's own answers reach (the w2s family's default)


def logconf_loss(log_probs: torch.Tensor, targets: torch.Tensor, alpha: float) -> torch.Tensor:
    """Burns et al.'s auxiliary confidence loss for one-token answers: (1 - alpha) x cross-entropy on
    the supervisor's answers (IGNORE left out) + alpha x cross-entropy on X's own greedy answers."""
    own = log_probs.detach().argmax(1)
    return (1 - alpha) * F.nll_loss(log_probs, targets, ignore_index=IGNORE) + alpha * F.nll_loss(log_probs, own)
