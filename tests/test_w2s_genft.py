"""Generative finetuning (--method genft) and the language-model losses it trains with (lm.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import NEGATIVE, NEUTRAL, POSITIVE, WORDS, word_tokenizer  # noqa: E402

from oversight.w2s.lm import IGNORE, causal_batch, causal_lm_loss, mask_tokens, masked_lm_loss, train_lm  # noqa: E402
from oversight.w2s.train import TrainSettings  # noqa: E402

LM_WORDS = [*WORDS, "[MASK]", "[EOS]"]


def tiny_causal_lm(seed: int = 0):
    """A 2-layer Llama-style causal LM over the test vocabulary, with an EOS token."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = word_tokenizer(LM_WORDS, eos_token="[EOS]")
    config = LlamaConfig(vocab_size=len(LM_WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=tok.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(config), tok


def tiny_masked_lm(seed: int = 0):
    """A 2-layer BertForMaskedLM whose tokenizer wraps each text in [CLS] ... [SEP]."""
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    tok = word_tokenizer(LM_WORDS, cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    cls, sep = tok.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    config = BertConfig(vocab_size=len(LM_WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    return BertForMaskedLM(config), tok


def save_lm(path: Path, model, tok) -> Path:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


# --------------------------------------------------------------------------- lm.py


def test_causal_batch_labels_only_completion_tokens_and_eos_right_padded():
    _, tok = tiny_causal_lm()
    batch = causal_batch(tok, ["the film was", "a"], [" good", " bad dull"], max_length=16)
    ids = {w: tok.convert_tokens_to_ids(w) for w in ("the", "film", "was", "good", "a", "bad", "dull", "[EOS]")}
    assert batch["input_ids"][0].tolist() == [ids["the"], ids["film"], ids["was"], ids["good"], ids["[EOS]"]]
    assert batch["labels"][0].tolist() == [IGNORE, IGNORE, IGNORE, ids["good"], ids["[EOS]"]]
    # the shorter row is padded on the right, its padding masked and not a label
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 0]
    assert batch["labels"][1].tolist() == [IGNORE, ids["bad"], ids["dull"], ids["[EOS]"], IGNORE]
    # no completions: every token of the text is a label
    whole = causal_batch(tok, ["the film was"], None, max_length=2)
    assert whole["labels"][0].tolist() == [ids["the"], ids["film"]]  # truncated to max_length


def test_causal_lm_loss_is_the_cross_entropy_of_completion_tokens_only():
    model, tok = tiny_causal_lm()
    model.eval()
    prompts, completions = ["the film was very", "a plot"], [" good", " dull and boring"]
    loss = causal_lm_loss(model, tok, prompts, completions, max_length=32)
    terms = []
    for prompt, completion in zip(prompts, completions, strict=True):  # one row at a time: no padding at all
        p = tok(prompt)["input_ids"]
        c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([p + c])).logits[0].float(), dim=-1)
        terms += [-logp[len(p) - 1 + j, token].item() for j, token in enumerate(c)]
    assert loss.item() == pytest.approx(float(np.mean(terms)), abs=1e-5)
    # the prompt's tokens do not count: a different prompt continuation changes nothing it is scored on
    everything = causal_lm_loss(model, tok, [p + c for p, c in zip(prompts, completions, strict=True)], None, 32)
    assert everything.item() != pytest.approx(loss.item(), abs=1e-4)


def test_mask_tokens_chooses_only_maskable_positions_80_10_10():
    _, tok = tiny_masked_lm()
    ids = torch.randint(4, len(WORDS), (64, 50), generator=torch.Generator().manual_seed(1))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 40:] = False  # e.g. padding
    corrupted, labels = mask_tokens(ids, maskable, tok, torch.Generator().manual_seed(0), mask_prob=1.0)
    assert ((labels != IGNORE) == maskable).all()
    assert (corrupted[:, 40:] == ids[:, 40:]).all()
    chosen = corrupted[:, :40]
    share_mask = (chosen == tok.mask_token_id).float().mean().item()
    share_same = (chosen == ids[:, :40]).float().mean().item()
    assert 0.75 < share_mask < 0.85 and 0.08 < share_same < 0.16  # 10% kept, plus random draws of the same id


def test_masked_lm_loss_never_masks_padding_or_special_tokens():
    model, tok = tiny_masked_lm()
    seen = []
    real_forward = model.forward

    def spy(input_ids, attention_mask):
        seen.append((input_ids.clone(), attention_mask.clone()))
        return real_forward(input_ids=input_ids, attention_mask=attention_mask)

    model.forward = spy
    texts = ["good", "the film was very dull and a plot", "fun"]
    loss = masked_lm_loss(model, tok, texts, 32, torch.Generator().manual_seed(0), mask_prob=1.0)
    assert torch.isfinite(loss)
    ids, mask = seen[0]
    clean = tok(texts, padding="longest", return_tensors="pt")["input_ids"]
    special = torch.isin(clean, torch.tensor([tok.pad_token_id, tok.cls_token_id, tok.sep_token_id]))
    assert (mask == 0).any() and (ids[mask == 0] == tok.pad_token_id).all()
    assert (ids[special] == clean[special]).all()  # every special and pad position as it was
    assert (ids[~special] != clean[~special]).any()  # with mask_prob 1, the words are what changes


def _antonym_task(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Prompt: neutral filler then a positive word and 'and'; completion: its paired negative word."""
    rng = np.random.default_rng(seed)
    prompts, completions = [], []
    for _ in range(n):
        i = int(rng.integers(len(POSITIVE)))
        prompts.append(" ".join([*rng.choice(NEUTRAL, 2), POSITIVE[i], "and"]))
        completions.append(" " + NEGATIVE[i])
    return prompts, completions


def _first_token_accuracy(model, tok, prompts: list[str], completions: list[str]) -> float:
    model.eval()
    hits = []
    with torch.no_grad():
        for prompt, completion in zip(prompts, completions, strict=True):
            logits = model(torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1]
            hits.append(int(logits.argmax()) == tok(completion, add_special_tokens=False)["input_ids"][0])
    return float(np.mean(hits))


def test_a_tiny_causal_lm_learns_a_completion_task_above_chance():
    model, tok = tiny_causal_lm()
    prompts, completions = _antonym_task(96, seed=0)
    test_prompts, test_completions = _antonym_task(48, seed=1)
    before = _first_token_accuracy(model, tok, test_prompts, test_completions)
    settings = TrainSettings(epochs=6, lr=1e-2, batch_size=16, bf16=False, weight_decay=0.0)
    train_lm(model, tok, prompts, settings, objective="causal", max_length=16, completions=completions)
    after = _first_token_accuracy(model, tok, test_prompts, test_completions)
    assert before < 0.4 and after > 0.8  # chance among the six answers is 1/6
