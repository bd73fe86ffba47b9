"""Pairwise preferences (reward modelling) as weak-to-strong examples, and the Bradley–Terry maths.

A preference pair (prompt, response A, response B) travels through the pipeline as ONE example
whose text encodes the three parts and whose label is 1 when A is preferred. Everything that
splits, dedupes, caches and keys data by text then works unchanged, and a reward model is a
classifier whose P(label 1) is the Bradley–Terry probability ``sigmoid(r(prompt, A) - r(prompt, B))``.
So the soft labels of a weak reward model train a strong one with the same losses (``losses.py``),
and accuracy is the fraction of pairs ranked correctly::

    from oversight.w2s import pairs

    text = pairs.pair_text("Name a capital.", "Paris is the capital of France.", "Lyon is ...")
    pairs.split_pair(text)                 # ("Name a capital.", "Paris is ...", "Lyon is ...")
    a, b = pairs.sides([text])             # what a reward model scores: prompt + each response
    logits = pairs.bt_logits(r_a, r_b)     # [B, 2]: softmax(...)[:, 1] = sigmoid(r_a - r_b)
    pairs.preference_example("q", chosen="good", rejected="bad", group="q1")   # order by content hash

Which response comes first is decided by a hash of the content, so about half the pairs have the
preferred response first and ``load_dataset`` balances each split to exactly 50/50.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from oversight.w2s.files import DatasetFormatError, Example, content_id

PAIR_PREFIX = "[preference pair] "  # what marks an encoded pair; the JSON after it holds the parts


def pair_text(prompt: str, response_a: str, response_b: str) -> str:
    """One string holding a preference pair (JSON: any content survives, readable in a table)."""
    return PAIR_PREFIX + json.dumps([prompt, response_a, response_b], ensure_ascii=False)


def is_pair(text: str) -> bool:
    return text.startswith(PAIR_PREFIX)


def split_pair(text: str) -> tuple[str, str, str]:
    """(prompt, response A, response B) of an encoded pair; DatasetFormatError for anything else."""
    try:
        prompt, a, b = json.loads(text[len(PAIR_PREFIX):]) if is_pair(text) else (None, None, None)
    except (ValueError, TypeError):
        prompt = None
    if not isinstance(prompt, str):
        raise DatasetFormatError(f"not an encoded preference pair: {text[:80]!r}")
    return prompt, a, b


def is_pairwise(texts: Sequence[str]) -> bool:
    """True when every text is a pair, False when none is; a mix is a DatasetFormatError."""
    flags = {is_pair(t) for t in texts}
    if len(flags) > 1:
        raise DatasetFormatError("a dataset mixes preference pairs with plain texts; use one kind")
    return flags == {True}


def side_text(prompt: str, response: str) -> str:
    """What a reward model reads for one response: the prompt, a newline, the response."""
    return f"{prompt}\n{response}" if prompt else response


def sides(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """The A-side and B-side texts of encoded pairs, in order."""
    parts = [split_pair(t) for t in texts]
    return [side_text(p, a) for p, a, _ in parts], [side_text(p, b) for p, _, b in parts]


def plain_texts(texts: Sequence[str]) -> list[str]:
    """The texts a model embeds or a language model reads: both sides of each pair (A then B), and
    any plain text as it is. Unlabelled: which side is preferred is not in them."""
    out: list[str] = []
    for t in texts:
        if is_pair(t):
            prompt, a, b = split_pair(t)
            out += [side_text(prompt, a), side_text(prompt, b)]
        else:
            out.append(t)
    return out


def ordered_pair(prompt: str, chosen: str, rejected: str) -> tuple[str, int]:
    """(encoded pair, label) of one preference: the chosen response goes first (label 1) or second
    (label 0) by a hash of the content, so a dataset is about half of each."""
    first = int(hashlib.sha1(json.dumps([prompt, chosen, rejected]).encode()).hexdigest(), 16) % 2 == 0
    return (pair_text(prompt, chosen, rejected), 1) if first else (pair_text(prompt, rejected, chosen), 0)


def preference_example(prompt: str, chosen: str, rejected: str, group: str,
                       entities: tuple[str, ...] = (), kind: str = "") -> Example:
    """The example of one preference (``ordered_pair``), with its group."""
    text, label = ordered_pair(prompt, chosen, rejected)
    return Example(content_id(text, label), text, label, group, entities, kind)


def common_prompt(chosen: str, rejected: str, marker: str = "Assistant:") -> tuple[str, str, str]:
    """(prompt, chosen, rejected) of two whole transcripts that share their beginning (Anthropic HH
    stores each as the dialogue plus one final answer): the shared part up to the last ``marker``
    in it is the prompt; without a marker the prompt is empty and the texts stay whole."""
    shared = chosen[:next((i for i, (x, y) in enumerate(zip(chosen, rejected, strict=False)) if x != y),
                          min(len(chosen), len(rejected)))]
    cut = shared.rfind(marker)
    if cut < 0:
        return "", chosen.strip(), rejected.strip()
    cut += len(marker)
    return chosen[:cut].strip(), chosen[cut:].strip(), rejected[cut:].strip()


# --------------------------------------------------------------------------- Bradley–Terry


def bt_logits(reward_a: Tensor, reward_b: Tensor) -> Tensor:
    """Two-class logits ``[r_b, r_a]`` per pair: their softmax's class 1 is sigmoid(r_a - r_b), the
    Bradley–Terry probability that A is preferred, so every loss of ``losses.py`` applies as is."""
    return torch.stack([reward_b.reshape(-1), reward_a.reshape(-1)], dim=-1)


def bt_probability(reward_a: np.ndarray, reward_b: np.ndarray) -> np.ndarray:
    """P(A preferred) = sigmoid(r_a - r_b)."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(reward_a, float) - np.asarray(reward_b, float))))


def bt_loss(reward_a: Tensor, reward_b: Tensor, p_a: Tensor) -> Tensor:
    """Mean Bradley–Terry cross-entropy to soft preferences ``p_a`` (P(A preferred) per pair)."""
    margin = reward_a.reshape(-1) - reward_b.reshape(-1)
    p = p_a.reshape(-1).to(margin.dtype)
    return -(p * torch.nn.functional.logsigmoid(margin) + (1 - p) * torch.nn.functional.logsigmoid(-margin)).mean()


def pairwise_accuracy(p_a: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of pairs ranked correctly: P(A preferred) > 0.5 exactly where A is preferred."""
    p_a, labels = np.asarray(p_a), np.asarray(labels)
    return float(np.mean((p_a > 0.5) == (labels > 0.5))) if len(labels) else float("nan")


def side_difference(features: np.ndarray) -> np.ndarray:
    """A pair's side-by-side features ``[N, 2d]`` -> ``f(A) - f(B)``: on it a linear model with no
    per-side terms is a Bradley–Terry model with a linear reward (what probes of pairs read)."""
    side_a, side_b = np.split(np.asarray(features), 2, axis=1)
    return side_a - side_b
