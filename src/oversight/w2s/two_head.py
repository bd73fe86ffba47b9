"""A weak-to-strong student with a theory of its supervisor's mistakes: a truth head and an error model.

Usage::

    from oversight.w2s.train import TrainSettings
    from oversight.w2s.two_head import train_two_head

    student = train_two_head(featurizer, texts, weak_probs, TrainSettings(head="mlp"),
                             trusted={3: 1.0, 17: 0.0})   # optional: a few ground-truth labels
    student.predict_proba(test_texts)     # P(truth = 1 | x): what the student is scored on
    student.error_proba(test_texts)       # e(x): where it thinks the supervisor errs
    student.supervisor_proba(test_texts)  # P(supervisor says 1 | x)

The student predicts both the truth and its supervisor's label::

    P(supervisor says 1 | x) = p_t(x) * (1 - e(x)) + (1 - p_t(x)) * e(x)

``p_t(x) = P(truth = 1 | x)`` comes from the truth head, the usual student head
(:class:`~oversight.w2s.train.Head`, logistic or MLP). ``e(x) = P(supervisor flips the truth | x)``
comes from a low-capacity error model: one linear layer on the same standardised frozen features,
which can describe *where* the supervisor errs but cannot express the task itself. Only the
supervisor's labels are fitted, so the split between "the truth is 1" and "the supervisor erred"
needs assumptions to be identifiable:

- the error rate is capped, ``e(x) = max_flip * sigmoid(w.x + b)`` with ``max_flip = 0.5`` by
  default: the standard noisy-label assumption that at every input the supervisor is right more
  often than not;
- the error layer starts at ``b = -2`` (errors are rare a priori) and has its own L2 weight decay
  (``error_decay * ||w||^2``), so it describes errors only where the labels demand it;
- optionally a small trusted set of K ground-truth labels (a "truth budget") trains the truth head
  directly, which pins down the error model too.

Classification only: preference pairs are rejected with a :class:`~oversight.errors.ConfigError`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oversight.errors import ConfigError
from oversight.runtime import num_threads
from oversight.w2s import pairs
from oversight.w2s.losses import soft_cross_entropy
from oversight.w2s.train import FrozenFeaturizer, Head, TrainSettings, Watch, predict, train_loop

ERROR_BIAS = -2.0  # the error layer's initial bias: e(x) = max_flip * sigmoid(-2) ≈ 0.06 before training


def two_head_loss(truth_logits: torch.Tensor, error_logit: torch.Tensor, targets: torch.Tensor,
                  trusted: torch.Tensor, max_flip: float = 0.5, trusted_weight: float = 1.0) -> torch.Tensor:
    """Mean cross-entropy of the mixed P(supervisor says 1) against ``targets`` (the supervisor's
    P(label 1), soft or hard), plus ``trusted_weight`` times the cross-entropy of the truth head
    against ``trusted`` (truth labels, NaN where not trusted) averaged over the trusted rows (0 when
    there are none). Computed in log space: finite for any finite logits."""
    if not 0.0 < max_flip <= 1.0:
        raise ValueError(f"max_flip must be in (0, 1], got {max_flip}")
    log_pt = F.log_softmax(truth_logits.float(), dim=-1)  # [:, 1] = log p_t, [:, 0] = log(1 - p_t)
    z = error_logit.float().reshape(-1)
    log_e = math.log(max_flip) + F.logsigmoid(z)
    # log(1 - m * sigmoid(z)) = log(1 + (1 - m) e^z) - softplus(z)
    log_keep = -F.softplus(z)
    if max_flip < 1.0:
        log_keep = log_keep + torch.logaddexp(torch.zeros_like(z), math.log1p(-max_flip) + z)
    log_ps1 = torch.logaddexp(log_pt[:, 1] + log_keep, log_pt[:, 0] + log_e)
    log_ps0 = torch.logaddexp(log_pt[:, 0] + log_keep, log_pt[:, 1] + log_e)
    y = targets.detach().float().to(log_ps1.device)
    loss = -(y * log_ps1 + (1 - y) * log_ps0).mean()
    known = ~torch.isnan(trusted.to(log_ps1.device))
    if bool(known.any()):
        loss = loss + trusted_weight * soft_cross_entropy(truth_logits[known], trusted.to(log_ps1.device)[known])
    return loss


class TwoHead(nn.Module):
    """The truth head (:class:`Head`, logistic or MLP) and the error model (one linear layer on the
    same standardised features, bias -2). ``forward(x) -> (truth_logits [B, 2], error_logit [B])``."""

    def __init__(self, dim: int, kind: str, mean: np.ndarray, scale: np.ndarray, max_flip: float = 0.5,
                 hidden: int = 256) -> None:
        super().__init__()
        self.truth = Head(dim, kind, mean, scale, hidden=hidden)
        self.error = nn.Linear(dim, 1)
        nn.init.constant_(self.error.bias, ERROR_BIAS)
        self.max_flip = max_flip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        standardised = (x - self.truth.mean) / self.truth.scale
        return self.truth(x), self.error(standardised).squeeze(-1)


class TwoHeadClassifier:
    """A trained :class:`TwoHead` over a featurizer: the truth, the supervisor's label and e(x)."""

    def __init__(self, featurizer: FrozenFeaturizer, model: TwoHead, settings: TrainSettings) -> None:
        self.featurizer, self.model, self.settings = featurizer, model, settings

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """P(truth = 1 | x) from the truth head: what the student is scored on."""
        return self._heads(texts)[0]

    def error_proba(self, texts: list[str]) -> np.ndarray:
        """e(x): P(the supervisor flips the truth | x)."""
        return self._heads(texts)[1]

    def supervisor_proba(self, texts: list[str]) -> np.ndarray:
        """P(supervisor says 1 | x) = p_t (1 - e) + (1 - p_t) e."""
        p_t, e = self._heads(texts)
        return p_t * (1 - e) + (1 - p_t) * e

    @torch.no_grad()
    def _heads(self, texts: list[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        _require_classification(texts)
        features = self.featurizer.transform(texts)
        self.model.eval()
        p_t, e = [np.zeros(0, dtype=np.float32)], [np.zeros(0, dtype=np.float32)]
        with num_threads(1):
            for start in range(0, len(texts), batch_size):
                truth_logits, error_logit = self.model(_rows(features, np.arange(start, min(len(texts), start + batch_size))))
                p_t.append(torch.softmax(truth_logits.float(), dim=-1)[:, 1].numpy())
                e.append((self.model.max_flip * torch.sigmoid(error_logit.float())).numpy())
        return np.concatenate(p_t), np.concatenate(e)


def train_two_head(featurizer: FrozenFeaturizer, texts: list[str], targets: np.ndarray, settings: TrainSettings,
                   trusted: dict[int, float] | None = None, desc: str = "two-head", watch: Watch | None = None,
                   max_flip: float = 0.5, error_decay: float = 1e-2) -> TwoHeadClassifier:
    """Train a two-head student on the supervisor's ``targets`` (P(label 1) per text) and the
    ``trusted`` ground-truth labels (index into ``texts`` -> 0.0/1.0; the only truth it receives).
    The ``watch`` scores the truth head, as it scores every other student."""
    _require_classification(texts)
    truth = _trusted_labels(trusted, len(texts))
    featurizer.fit(texts)
    features = featurizer.transform(texts)
    mean, scale = features.mean(0), features.std(0) + 1e-6
    # seeded after the features, as train_head: a cache miss may draw random numbers
    torch.manual_seed(settings.seed)
    model = TwoHead(features.shape[1], settings.head, mean, scale, max_flip=max_flip)
    fp32 = TrainSettings(**{**settings.__dict__, "bf16": False})
    target_tensor = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    truth_tensor = torch.as_tensor(truth)

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        truth_logits, error_logit = model(_rows(features, idx))
        loss = two_head_loss(truth_logits, error_logit, target_tensor[idx], truth_tensor[idx], max_flip=max_flip)
        return loss + error_decay * model.error.weight.pow(2).sum()

    evaluate = None
    if watch is not None:  # the features of what is watched, once: each evaluation is one head pass
        val_f, test_f = featurizer.transform(watch.val_texts), featurizer.transform(watch.test_texts)

        def evaluate(step: int) -> float:
            return watch.record(step, *(predict(model.truth, lambda idx, f=f: model.truth(_rows(f, idx)), len(f), fp32)
                                        for f in (val_f, test_f)))

    with num_threads(1):
        selected = train_loop(model, batch_loss, len(texts), fp32, desc=desc, evaluate=evaluate,
                              on_diverged=watch.diverged if watch is not None else None)
    if watch is not None:
        watch.selected_step = selected
    return TwoHeadClassifier(featurizer, model, settings)


def _require_classification(texts: list[str]) -> None:
    if texts and pairs.is_pairwise(texts):
        raise ConfigError("student", "two-head is built for classification; preference pairs are not supported")


def _trusted_labels(trusted: dict[int, float] | None, n: int) -> np.ndarray:
    """The trusted truth labels as a length-``n`` float array, NaN where there is none."""
    labels = np.full(n, np.nan, dtype=np.float32)
    for index, label in (trusted or {}).items():
        if not 0 <= index < n:
            raise ValueError(f"trusted index {index} is outside the {n} training texts")
        if not 0.0 <= label <= 1.0:
            raise ValueError(f"trusted label of text {index} is {label}; a truth label is 0.0 or 1.0")
        labels[index] = label
    return labels


def _rows(matrix: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(matrix[idx], dtype=np.float32))
