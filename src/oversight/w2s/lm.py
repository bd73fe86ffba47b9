"""Language-model training: the causal and masked LM losses and one training entry point over them.

Generative finetuning (``genft.py``) and move generation train language models with these::

    from oversight.w2s.lm import causal_lm_loss, masked_lm_loss, train_lm
    from oversight.w2s.models import load_lm

    model, tokenizer = load_lm(spec)
    causal_lm_loss(model, tokenizer, ["a fine film"], None, max_length=128)       # every token
    causal_lm_loss(model, tokenizer, ["1. e4 e5 2."], [" Nf3"], max_length=128)   # completion + EOS only
    masked_lm_loss(model, tokenizer, texts, 128, torch.Generator().manual_seed(0)) # BERT 80/10/10
    train_lm(model, tokenizer, texts, settings, objective="causal", max_length=128)

Batches are right-padded and the attention mask hides the padding; positions whose label is -100
(padding, prompt tokens, unmasked tokens) do not count. Losses are means over the tokens that count,
in float32. The loop is ``train.train_loop`` (AdamW, warm-up then cosine, seeded shuffling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import Tensor, nn

from oversight.runtime import autocast
from oversight.w2s.train import TrainSettings, train_loop

IGNORE = -100  # the label of a position that does not count (PyTorch's cross-entropy ignore index)

__all__ = ["IGNORE", "OBJECTIVES", "causal_batch", "causal_lm_loss", "mask_tokens", "masked_lm_loss", "train_lm"]


def _pad_id(tokenizer: Any) -> int:
    """The id that fills padding; which one does not matter (masked out), so EOS serves if no pad exists."""
    for pad in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if pad is not None:
            return int(pad)
    return 0


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def causal_batch(tokenizer: Any, prompts: Sequence[str], completions: Sequence[str] | None,
                 max_length: int) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` of prompt(+completion) texts.

    Without completions every token of each prompt is a label. With them, the text is the prompt
    (with the tokenizer's special tokens) followed by the completion's tokens and EOS, tokenised
    separately so the boundary is exact, and only the completion and EOS are labels. Each row is
    truncated to ``max_length`` tokens from the right."""
    if completions is not None and len(completions) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    rows: list[tuple[list[int], list[int]]] = []
    for i, prompt in enumerate(prompts):
        ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        labels = list(ids)
        if completions is not None:
            tail = list(tokenizer(completions[i], add_special_tokens=False)["input_ids"])
            if tokenizer.eos_token_id is not None:
                tail.append(int(tokenizer.eos_token_id))
            ids, labels = ids + tail, [IGNORE] * len(ids) + tail
        rows.append((ids[:max_length], labels[:max_length]))
    width = max((len(ids) for ids, _ in rows), default=0)
    pad = _pad_id(tokenizer)
    out = {"input_ids": torch.full((len(rows), width), pad, dtype=torch.long),
           "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
           "labels": torch.full((len(rows), width), IGNORE, dtype=torch.long)}
    for r, (ids, labels) in enumerate(rows):
        out["input_ids"][r, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        out["attention_mask"][r, :len(ids)] = 1
        out["labels"][r, :len(labels)] = torch.tensor(labels, dtype=torch.long)
    return out


def _mean_token_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the positions whose label is not IGNORE (0, with a gradient, if none is)."""
    flat = labels.reshape(-1)
    total = F.cross_entropy(logits.float().reshape(flat.numel(), -1), flat, ignore_index=IGNORE, reduction="sum")
    return total / (flat != IGNORE).sum().clamp(min=1)


def causal_lm_loss(model: nn.Module, tokenizer: Any, prompts: list[str], completions: list[str] | None,
                   max_length: int) -> Tensor:
    """Mean next-token cross-entropy of a causal LM on :func:`causal_batch`'s labels: every token of
    the prompts (``completions=None``, as generative finetuning reads a text), or the completions'
    tokens and EOS only (the prompt conditions, it is not learned)."""
    batch = {k: v.to(_model_device(model)) for k, v in causal_batch(tokenizer, prompts, completions, max_length).items()}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # the logits at position t predict the token at t + 1
    return _mean_token_ce(logits[:, :-1], batch["labels"][:, 1:])


def mask_tokens(input_ids: Tensor, maskable: Tensor, tokenizer: Any, generator: torch.Generator,
                mask_prob: float = 0.15) -> tuple[Tensor, Tensor]:
    """BERT's masking: each ``maskable`` position is chosen with ``mask_prob``; of those, 80% become
    the mask token, 10% a random token, 10% stay. Returns (corrupted ids, labels: the original ids
    at chosen positions, IGNORE elsewhere). Every draw comes from ``generator`` (on the CPU)."""
    if tokenizer.mask_token_id is None:
        raise ValueError("masked LM training needs a tokenizer with a mask token")
    shape = input_ids.shape
    chosen = (torch.rand(shape, generator=generator) < mask_prob) & maskable.bool().cpu()
    roll = torch.rand(shape, generator=generator)
    random_ids = torch.randint(len(tokenizer), shape, generator=generator)
    ids = input_ids.cpu().clone()
    ids[chosen & (roll < 0.8)] = int(tokenizer.mask_token_id)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    ids[swap] = random_ids[swap]
    labels = torch.where(chosen, input_ids.cpu(), torch.full_like(ids, IGNORE))
    return ids.to(input_ids.device), labels.to(input_ids.device)


def masked_lm_loss(model: nn.Module, tokenizer: Any, texts: list[str], max_length: int,
                   generator: torch.Generator, mask_prob: float = 0.15) -> Tensor:
    """Mean cross-entropy of a masked LM at the positions :func:`mask_tokens` chose; special and
    padding tokens are never chosen."""
    enc = tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length,
                    return_special_tokens_mask=True, return_tensors="pt")
    maskable = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
    ids, labels = mask_tokens(enc["input_ids"], maskable, tokenizer, generator, mask_prob)
    device = _model_device(model)
    logits = model(input_ids=ids.to(device), attention_mask=enc["attention_mask"].to(device)).logits
    return _mean_token_ce(logits, labels.to(device))


# what a model kind learns from plain text: decoders predict the next token, encoders masked ones
OBJECTIVES = {"decoder": "causal", "encoder": "masked"}


def train_lm(model: nn.Module, tokenizer: Any, texts: list[str], settings: TrainSettings, objective: str,
             max_length: int, completions: list[str] | None = None, desc: str = "lm",
             evaluate: Callable[[int], float] | None = None, evals: int = 10,
             on_diverged: Callable[[int], None] | None = None) -> int | None:
    """Train ``model`` as a language model on ``texts`` (``objective`` ``causal``: next-token, on the
    completions only when given; ``masked``: BERT masking) through ``train_loop``. Dropout and the
    masks are seeded by ``settings.seed``; ``evaluate`` and ``settings.select`` act as in
    ``train_loop``."""
    if objective not in ("causal", "masked"):
        raise ValueError(f"unknown LM objective {objective!r}; available: causal, masked")
    if objective == "masked" and completions is not None:
        raise ValueError("completions are for the causal objective")
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)

    def batch_loss(idx: np.ndarray) -> Tensor:
        batch = [texts[i] for i in idx]
        with autocast(settings.device, settings.bf16):
            if objective == "masked":
                return masked_lm_loss(model, tokenizer, batch, max_length, generator)
            tails = None if completions is None else [completions[i] for i in idx]
            return causal_lm_loss(model, tokenizer, batch, tails, max_length)

    return train_loop(model, batch_loss, len(texts), settings, desc=desc, evaluate=evaluate, evals=evals,
                      on_diverged=on_diverged)
