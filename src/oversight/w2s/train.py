"""Training one classifier on (soft) labels: the loop every weak, strong and ceiling run uses.

Two modes:
- ``head``: features of the frozen backbone are computed once, cached on disk by content hash
  (:class:`FeatureCache`), and a logistic or MLP head is trained on them. (The ``bow`` rung and
  ``--mode probe`` are fitted in one solve: ``linear.py``.)
- ``finetune``: the backbone (all layers, or the top k) and a linear head are trained with AdamW,
  a cosine schedule and bf16 autocast.

Both go through :func:`fit`: a loss from ``losses.py`` over :func:`train_loop`, one readable loop
over minibatches (``lm.py`` trains language models through it too). The trainer owns the loop; a
loss is a plain function of (logits, targets, ctx).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from oversight.progress import log, progress
from oversight.runtime import autocast, num_threads, numerics
from oversight.store import ArtifactStore
from oversight.w2s import pairs
from oversight.w2s.losses import (
    LOSSES,
    LossContext,
    ThresholdBuffer,
    loss_options,
    median_radius,
    threshold_window,
)
from oversight.w2s.models import ModelSpec, extract_features, load_backbone


@dataclass
class TrainSettings:
    """How one classifier is trained (resolved from the experiment config and the rung's defaults)."""

    mode: str = "head"              # head | finetune
    head: str = "mlp"               # logistic | mlp (head mode)
    loss: str = "xent"
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.01
    alpha_max: float = 0.75          # logconf, entropy: final weight of the self-target term
    warmup_frac: float = 0.2         # logconf, entropy: fraction of steps over which that weight ramps up
    threshold_window: int | None = None  # logconf: predictions the threshold spans (None = auto, 0 = batch)
    product_beta: float = 1.0        # product: exponent of the student's prediction in its target
    window_radius: float = 0.15      # window: train where top prob < 0.5 + radius (0 = weak median)
    top_k_layers: int | None = None  # finetune: train only the top k layers (None = all)
    select: str = "last"             # last | val-truth | val-weak: which weights are kept (see Watch)
    bf16: bool = True
    device: str = "cpu"
    seed: int = 0


class Classifier(Protocol):
    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


# --------------------------------------------------------------------------- the loop

@dataclass
class Watch:
    """What a run is evaluated on every few steps (its curve), and the labels that select the weights
    it keeps. ``val_labels`` are the validation labels this run may see: the ground truth for a weak
    supervisor or a ceiling (trained on ground truth anyway), the supervisor's predictions for a
    student (ground truth only under the ``oracle`` ablation). Test accuracy goes into the curve for
    analysis only: it never selects, stops or tunes anything."""

    val_texts: list[str]
    val_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    evals: int = 10  # evaluations per run (and one at the end)
    curve: list[dict[str, float]] = field(default_factory=list)
    selected_step: int | None = None
    diverged_step: int | None = None  # the step whose loss was not finite (training stopped there)

    def diverged(self, step: int) -> None:
        self.diverged_step = step

    def record(self, step: int, val_probs: np.ndarray, test_probs: np.ndarray) -> float:
        """The predictions at ``step`` on the validation and test texts, into the curve; returns the
        validation score (agreement with ``val_labels``), what selection reads."""
        val = np.asarray(val_probs) > 0.5
        test = np.asarray(test_probs) > 0.5
        score = float(np.mean(val == (np.asarray(self.val_labels) > 0.5)))
        self.curve.append({"step": step, "val_score": round(score, 5),
                           "test_acc": round(float(np.mean(test == (np.asarray(self.test_labels) > 0.5))), 5)})
        return score


def total_steps(n: int, settings: TrainSettings) -> int:
    """Optimizer steps of a run over ``n`` examples: ``settings.epochs`` passes in minibatches."""
    return math.ceil(n / settings.batch_size) * settings.epochs


def train_loop(
    model: nn.Module,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    n: int,
    settings: TrainSettings,
    desc: str = "train",
    evaluate: Callable[[int], float] | None = None,
    evals: int = 10,
    on_diverged: Callable[[int], None] | None = None,
) -> int | None:
    """Minimise ``batch_loss(batch_indices)`` (a scalar) over ``n`` examples: ``settings.epochs``
    shuffled passes (numpy generator seeded by ``settings.seed``), AdamW over the trainable
    parameters, linear warm-up then cosine decay. ``batch_loss`` runs the forward pass itself (and
    its autocast), so any objective, a classifier's or a language model's, trains through here.

    ``evaluate(step) -> validation score`` is called ``evals`` times and after the last step; unless
    ``settings.select`` is ``last`` the weights of the best score (the first, on ties) are kept, and
    their step is returned (None without ``evaluate``). A loss that is not finite stops training
    before its update (one log line) and is reported to ``on_diverged(step)``: the run is flagged."""
    generator = np.random.default_rng(settings.seed)
    steps = total_steps(n, settings)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = max(1, int(0.05 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))),
    )
    eval_every = max(1, steps // max(1, evals))
    best: tuple[float, int, dict[str, torch.Tensor] | None] = (-math.inf, 0, None)
    step = 0
    model.train()
    bar = progress(total=steps, desc=desc, unit="step")
    diverged = False
    for _epoch in range(settings.epochs):
        order = generator.permutation(n)
        for start in range(0, n, settings.batch_size):
            loss = batch_loss(order[start:start + settings.batch_size])
            if not torch.isfinite(loss.detach()).all():
                diverged = _stop_diverged(desc, float(loss.detach().float().mean()), step + 1, on_diverged)
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            if evaluate is not None and (step % eval_every == 0 or step == steps):
                best = _evaluate(model, evaluate, step, best, keep=settings.select != "last")
        if diverged:
            break
    bar.close()
    model.eval()
    if evaluate is None:
        return None
    if settings.select == "last":
        return step
    if best[2] is not None:
        model.load_state_dict(best[2])
    return best[1]


def _stop_diverged(desc: str, loss: float, step: int, on_diverged: Callable[[int], None] | None) -> bool:
    log(f"{desc}: the loss is {loss} at step {step}; training stops there and the run is flagged as diverged")
    if on_diverged is not None:
        on_diverged(step)
    return True


def fit(
    model: nn.Module,
    forward: Callable[[np.ndarray], torch.Tensor],
    targets: np.ndarray,
    settings: TrainSettings,
    desc: str = "train",
    evaluate: Callable[[int], float] | None = None,
    evals: int = 10,
    on_diverged: Callable[[int], None] | None = None,
) -> int | None:
    """Train ``model`` so that ``forward(batch_indices)`` (logits ``[B, 2]``) fits ``targets``
    (P(class 1) per example) under ``settings.loss``, through :func:`train_loop` (whose
    ``evaluate``/``select`` rules apply)."""
    loss_fn = LOSSES.get(settings.loss)
    ctx = _loss_context(settings, targets, total_steps(len(targets), settings))
    # the trainer, not the loss, keeps the student's recent predictions: a loss only reads its context
    buffer = (ThresholdBuffer(threshold_window(settings.threshold_window, settings.batch_size))
              if "threshold_window" in loss_options(settings.loss) else None)
    target_tensor = torch.as_tensor(targets, dtype=torch.float32)

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        with autocast(settings.device, settings.bf16):
            logits = forward(idx)
        logits = logits.float()
        if buffer is not None:
            ctx.threshold = buffer.update(torch.softmax(logits.detach(), dim=-1)[:, 1], ctx.prior)
        loss = loss_fn(logits, target_tensor[idx].to(logits.device), ctx)
        ctx.step += 1  # the steps taken once this one's update is applied, as the next loss reads it
        return loss

    return train_loop(model, batch_loss, len(targets), settings, desc=desc, evaluate=evaluate, evals=evals,
                      on_diverged=on_diverged)


def _evaluate(model: nn.Module, evaluate: Callable[[int], float], step: int,
              best: tuple[float, int, dict[str, torch.Tensor] | None], keep: bool
              ) -> tuple[float, int, dict[str, torch.Tensor] | None]:
    """One evaluation (the model in eval mode, back to training after); the new best if it is one."""
    score = evaluate(step)
    model.train()
    if not keep or score <= best[0]:
        return best
    return score, step, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _loss_context(settings: TrainSettings, targets: np.ndarray, total_steps: int) -> LossContext:
    """The context every step's loss reads; the trainer updates its step and threshold."""
    radius = settings.window_radius or median_radius(targets)  # 0 = the weak labels' median confidence
    return LossContext(total_steps=total_steps, alpha_max=settings.alpha_max, warmup_frac=settings.warmup_frac,
                       prior=float(np.mean(targets)), product_beta=settings.product_beta, window_radius=radius)


@torch.no_grad()
def predict(model: nn.Module, forward: Callable[[np.ndarray], torch.Tensor], n: int, settings: TrainSettings,
            batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, n, batch_size):
        with autocast(settings.device, settings.bf16):
            logits = forward(np.arange(start, min(n, start + batch_size)))
        out.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


# --------------------------------------------------------------------------- head mode

class FeatureCache:
    """Frozen-backbone features on disk, addressed by (model, corpus, text) content hash.

    One file per model and corpus (the texts of a dataset, as ``corpus_key`` names them) holds
    every text it has embedded, so every seed, split and role of a run reuses them. The corpus is
    part of the address because a text's features depend on its batch-mates (bf16 kernels on CPU
    move them by up to ~5e-3): embedding each corpus in one canonical pass makes them, and every
    number trained on them, the same whatever else the store has embedded before. Missing texts are extracted
    in chunks of ``CHUNK`` (in hash order) and the file is saved after each, so an interrupted
    extraction keeps every finished chunk and the next call does only the rest, in the same chunks
    (a text's features depend on its batch-mates' padding in the last bits only, and the chunks, so
    the batches, do not depend on where it was interrupted). A damaged file is one log line naming
    it, and its features are recomputed."""

    CHUNK = 512  # texts between two saves: at most this much work is lost to an interruption

    def __init__(self, artifacts: ArtifactStore, spec: ModelSpec, corpus: str = "", device: str = "cpu") -> None:
        self.artifacts = artifacts
        self.spec = spec
        self.device = device
        # the arithmetic that embeds (bf16 autocast where the device has it fast, else fp32) is part
        # of the address: features from a host whose numerics differ are never reused
        where = numerics(device, True)
        self.key = hashlib.sha256(f"features|{spec.name}|{spec.max_length}|{corpus}|{where}".encode()).hexdigest()[:24]
        self._memo: tuple[dict[str, int], np.ndarray, tuple[int, int] | None] | None = None

    @classmethod
    def corpus_key(cls, texts: list[str]) -> str:
        """The name of a corpus: a digest of its set of texts (order and repeats do not matter)."""
        digest = hashlib.sha256()
        for h in sorted({cls.text_hash(t) for t in texts}):
            digest.update(h.encode())
        return digest.hexdigest()[:24]

    @staticmethod
    def text_hash(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def _load(self) -> tuple[dict[str, int], np.ndarray | None]:
        """(hash -> row, features) of the cache file; empty when there is none or it is damaged."""
        from oversight.errors import ArtifactError
        from oversight.progress import log

        if self._memo is not None and self._memo[2] == self._signature():
            # read again only when the file changed: a run asks for its texts several times
            return dict(self._memo[0]), self._memo[1]
        if not self.artifacts.has(self.key):
            return {}, None
        try:
            arrays = self.artifacts.load_arrays(self.key)
            features, hashes = arrays.get("features"), arrays.get("hashes")
            if (features is None or hashes is None or features.ndim != 2 or len(hashes) != len(features)
                    or len(set(hashes.tolist())) != len(hashes)):
                raise ArtifactError(self.artifacts.path(self.key), "is damaged (its hashes and features disagree)")
        except ArtifactError as err:  # DamagedArtifactError, or MissingArtifactError if it just went away
            log(f"{err}; recomputing the features of {self.spec.name}")
            return {}, None
        return {h: i for i, h in enumerate(hashes.tolist())}, features

    def get(self, texts: list[str], device: str | None = None, batch_size: int = 64) -> np.ndarray:
        if device is not None and numerics(device, True) != numerics(self.device, True):
            raise ValueError(f"features keyed for {numerics(self.device, True)} asked on {device}")
        device = device or self.device
        stored, features = self._load()
        hashes = [self.text_hash(t) for t in texts]
        missing = sorted({h: t for h, t in zip(hashes, texts, strict=True) if h not in stored}.items())
        if missing:
            backbone = load_backbone(self.spec, device=device)  # once, for every chunk
            bar = progress(total=len(missing), desc=f"features {self.spec.name}", unit="text")
            try:
                for start in range(0, len(missing), self.CHUNK):
                    chunk = missing[start:start + self.CHUNK]
                    new = extract_features(self.spec, [t for _, t in chunk], batch_size=batch_size,
                                           device=device, backbone=backbone, bar=bar)
                    features = new if features is None else np.concatenate([features, new.astype(features.dtype)])
                    first = len(stored)
                    stored.update((h, first + i) for i, (h, _) in enumerate(chunk))
                    self.artifacts.save_arrays(self.key, {"hashes": np.array(list(stored)), "features": features})
            finally:
                bar.close()
        assert features is not None
        self._memo = (stored, features, self._signature())
        return features[[stored[h] for h in hashes]]

    def _signature(self) -> tuple[int, int] | None:
        """(size, mtime) of the cache file: what tells a memo that the file changed under it."""
        try:
            stat = self.artifacts.path(self.key).stat()
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns


class FrozenFeaturizer:
    """Cached frozen features of texts; of a preference pair, its two sides' features side by side
    (``[N, 2 * hidden]``: A then B), which a pairwise head scores one side at a time."""

    def __init__(self, cache: FeatureCache, device: str) -> None:
        self.cache, self.device = cache, device

    def fit(self, texts: list[str]) -> FrozenFeaturizer:
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        if texts and pairs.is_pairwise(texts):
            side_a, side_b = pairs.sides(texts)
            return np.concatenate([self.cache.get(side_a, device=self.device),
                                   self.cache.get(side_b, device=self.device)], axis=1)
        return self.cache.get(texts, device=self.device)


class Head(nn.Module):
    """Logistic (linear) or MLP head over standardised features.

    ``pairwise``: a Bradley–Terry reward head. The input is two sides' features side by side, the
    same net maps each side to a scalar reward, and the logits are ``[r_b, r_a]``; ``mean`` and
    ``scale`` are one side's (``dim`` wide), so swapping the sides exactly flips the preference."""

    def __init__(self, dim: int, kind: str, mean: np.ndarray, scale: np.ndarray, hidden: int = 256,
                 pairwise: bool = False) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.pairwise = pairwise
        out = 1 if pairwise else 2
        if kind == "logistic":
            self.net: nn.Module = nn.Linear(dim, out)
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))
        else:
            raise ValueError(f"unknown head {kind!r}; available: logistic, mlp")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.pairwise:
            return self.net((x - self.mean) / self.scale)
        side_a, side_b = x.chunk(2, dim=-1)
        return pairs.bt_logits(*(self.net((side - self.mean) / self.scale) for side in (side_a, side_b)))


def _rows(matrix: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(matrix[idx], dtype=np.float32))


class HeadClassifier:
    def __init__(self, featurizer: FrozenFeaturizer, head: Head, settings: TrainSettings) -> None:
        self.featurizer, self.head, self.settings = featurizer, head, settings

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        features = self.featurizer.transform(texts)
        # bf16 gains nothing for a small head and costs precision
        settings = TrainSettings(**{**self.settings.__dict__, "bf16": False})
        with num_threads(1):
            return predict(self.head, lambda idx: self.head(_rows(features, idx)), len(texts), settings)


def train_head(featurizer: FrozenFeaturizer, texts: list[str], targets: np.ndarray,
               settings: TrainSettings, desc: str = "head", watch: Watch | None = None) -> HeadClassifier:
    featurizer.fit(texts)
    features = featurizer.transform(texts)
    pairwise = pairs.is_pairwise(texts)
    # a reward head standardises both sides alike: the statistics of all responses, one side wide
    per_side = np.concatenate(np.split(features, 2, axis=1)) if pairwise else features
    mean, scale = per_side.mean(0), per_side.std(0) + 1e-6
    # seeded here, after the features: computing them (a cache miss) may draw random numbers while a
    # backbone loads, and a run's numbers must not depend on what the cache held
    torch.manual_seed(settings.seed)
    head = Head(per_side.shape[1], settings.head, mean, scale, pairwise=pairwise)
    fp32 = TrainSettings(**{**settings.__dict__, "bf16": False})
    evaluate = None
    if watch is not None:  # the features of what is watched, once: each evaluation is one head pass
        val_f, test_f = featurizer.transform(watch.val_texts), featurizer.transform(watch.test_texts)

        def evaluate(step: int) -> float:
            return watch.record(step, *(predict(head, lambda idx, f=f: head(_rows(f, idx)), len(f), fp32)
                                        for f in (val_f, test_f)))

    with num_threads(1):
        selected = fit(head, lambda idx: head(_rows(features, idx)), targets, fp32, desc=desc, evaluate=evaluate,
                       on_diverged=watch.diverged if watch is not None else None)
    if watch is not None:
        watch.selected_step = selected
    return HeadClassifier(featurizer, head, settings)


# --------------------------------------------------------------------------- finetune mode

class TextClassifier(nn.Module):
    """A pretrained backbone with a linear head on its pooled output.

    ``pairwise``: a Bradley–Terry reward model. Texts are preference pairs (``pairs.py``); the head
    maps each side's pooled output to a scalar reward and the logits are ``[r_b, r_a]``."""

    def __init__(self, spec: ModelSpec, device: str, top_k_layers: int | None, seed: int = 0,
                 pairwise: bool = False) -> None:
        super().__init__()
        self.backbone = load_backbone(spec, device=device)
        self.backbone.trainable_top_layers(top_k_layers)
        # seeded after loading, which may or may not draw random numbers (a conversion done once and
        # cached): the head's weights and the dropout masks come from the seed alone
        torch.manual_seed(seed)
        self.pairwise = pairwise
        self.head = nn.Linear(self.backbone.hidden_size, 1 if pairwise else 2).to(device)
        self.device = device

    def _pooled(self, texts: list[str]) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in self.backbone.tokenize(texts).items()}
        return self.backbone(batch["input_ids"], batch["attention_mask"]).float()

    def forward(self, texts: list[str]) -> torch.Tensor:
        if not self.pairwise:
            return self.head(self._pooled(texts))
        side_a, side_b = pairs.sides(texts)
        rewards = self.head(self._pooled(side_a + side_b))  # one pass over both sides
        return pairs.bt_logits(rewards[:len(texts)], rewards[len(texts):])

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        settings = TrainSettings(device=self.device)
        order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
        sorted_texts = [texts[i] for i in order]
        probs = predict(self, lambda idx: self([sorted_texts[i] for i in idx]), len(texts), settings, batch_size=64)
        out = np.empty_like(probs)
        out[order] = probs
        return out

    @torch.no_grad()
    def features(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """The pooled backbone output of each text as trained (what a probe of it reads), float32;
        of a preference pair, its two sides' side by side."""
        if texts and pairs.is_pairwise(texts):
            return np.concatenate([self.features(side, batch_size) for side in pairs.sides(texts)], axis=1)
        self.eval()
        out = np.empty((len(texts), self.backbone.hidden_size), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = {k: v.to(self.device) for k, v in self.backbone.tokenize([texts[i] for i in idx]).items()}
            with autocast(self.device, True):
                pooled = self.backbone(batch["input_ids"], batch["attention_mask"])
            out[idx] = pooled.float().cpu().numpy()
        return out


def finetune(spec: ModelSpec, texts: list[str], targets: np.ndarray, settings: TrainSettings,
             desc: str = "finetune", watch: Watch | None = None) -> TextClassifier:
    model = TextClassifier(spec, settings.device, settings.top_k_layers, seed=settings.seed,
                           pairwise=pairs.is_pairwise(texts))
    evaluate = None
    if watch is not None:
        def evaluate(step: int) -> float:
            return watch.record(step, model.predict_proba(watch.val_texts), model.predict_proba(watch.test_texts))

    selected = fit(model, lambda idx: model([texts[i] for i in idx]), targets, settings, desc=desc, evaluate=evaluate,
                   on_diverged=watch.diverged if watch is not None else None)
    if watch is not None:
        watch.selected_step = selected
    return model
