"""Tiny randomly initialised Hugging Face models and a learnable text task, built offline for tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

POSITIVE = ["good", "great", "fun", "superb", "moving", "clever"]
NEGATIVE = ["bad", "dull", "awful", "boring", "clumsy", "weak"]
NEUTRAL = ["film", "plot", "actor", "scene", "story", "the", "a", "was", "and", "very"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = SPECIAL + POSITIVE + NEGATIVE + NEUTRAL


def word_tokenizer(words: list[str] = WORDS, pad: str = "[PAD]", **special: str):
    """A whitespace word-level tokenizer (no download)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token=pad, **special)


def save_tiny_bert(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(WORDS), hidden_size=hidden, num_hidden_layers=layers,
                                 num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
                                 pad_token_id=0))
    model.save_pretrained(path)
    word_tokenizer(cls_token="[CLS]", sep_token="[SEP]").save_pretrained(path)
    return path


def write_sentiment_jsonl(path: Path, n: int = 800, seed: int = 0) -> Path:
    """Label = 1 when the text has more positive than negative words: learnable from words alone."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(i % 2)
        n_major, n_minor = rng.integers(2, 4), rng.integers(0, 2)
        major, minor = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        words = list(rng.choice(major, n_major)) + list(rng.choice(minor, n_minor)) + list(rng.choice(NEUTRAL, 5))
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i % 7}", "label": label, "group": f"g{i // 4}"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path
