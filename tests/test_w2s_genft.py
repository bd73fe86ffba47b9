"""Generative finetuning (--method genft) and the language-model losses it trains with (lm.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import (  # noqa: E402
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    WORDS,
    save_tiny_bert,
    word_tokenizer,
    write_sentiment_jsonl,
)

from oversight.cli import main  # noqa: E402
from oversight.config import make_config  # noqa: E402
from oversight.errors import ConfigError  # noqa: E402
from oversight.store import ResultsStore  # noqa: E402
from oversight.w2s import genft  # noqa: E402
from oversight.w2s.aggregate import aggregate, seed_configs  # noqa: E402
from oversight.w2s.config import W2SConfig  # noqa: E402
from oversight.w2s.datasets import load_dataset  # noqa: E402
from oversight.w2s.genft import GenftSettings, adapt  # noqa: E402
from oversight.w2s.lm import IGNORE, causal_batch, causal_lm_loss, mask_tokens, masked_lm_loss, train_lm  # noqa: E402
from oversight.w2s.models import get_model_spec  # noqa: E402
from oversight.w2s.pipeline import run_experiment  # noqa: E402
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


# --------------------------------------------------------------------------- genft.py and --method genft


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("genft")
    return {"causal": save_lm(root / "causal", *tiny_causal_lm()), "masked": save_lm(root / "masked", *tiny_masked_lm()),
            "bare": save_tiny_bert(root / "bare"), "data": write_sentiment_jsonl(root / "sent.jsonl", n=240)}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """Adapted models go to a cache of this test's own."""
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _spy_training(monkeypatch) -> list[list[str]]:
    """The texts of every LM training genft starts."""
    seen = []
    real = genft.train_lm

    def spy(model, tokenizer, texts, *args, **kwargs):
        seen.append(list(texts))
        return real(model, tokenizer, texts, *args, **kwargs)

    monkeypatch.setattr(genft, "train_lm", spy)
    return seen


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_genft_changes_the_weights_and_is_cached(lms, cache, monkeypatch, kind):
    seen = _spy_training(monkeypatch)
    spec = get_model_spec(f"hf:{lms[kind]}")
    texts = [f"the film was {w} and {v}" for w in POSITIVE for v in NEGATIVE]
    settings = GenftSettings(epochs=2, lr=1e-2, batch_size=8, bf16=False)
    adapted = adapt(spec, texts, settings)
    assert adapted.name.startswith(f"{spec.name}+genft-") and adapted.kind == spec.kind
    assert Path(adapted.model_dir()).parent == cache / "models"
    before, after = _weights(lms[kind]), _weights(adapted.model_dir())
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # the same set of texts in another order, repeated: the same address, nothing trained again
    again = adapt(spec, list(reversed(texts)) + texts[:3], settings)
    assert again == adapted and len(seen) == 1
    # another corpus or other settings: another model
    assert adapt(spec, texts[:10], settings).name != adapted.name
    assert len(seen) == 2


def test_genft_of_an_encoder_without_an_mlm_head_names_the_rungs_that_can(lms, cache):
    with pytest.raises(ConfigError) as err:
        adapt(get_model_spec(f"hf:{lms['bare']}"), ["a fine film"])
    assert err.value.field == "method"
    message = str(err.value)
    assert "cannot be loaded as a language model" in message and "decoders" in message and "ForMaskedLM" in message


def test_cli_genft_with_a_bare_encoder_fails_before_any_training(lms, tmp_path, capsys, monkeypatch):
    trained = _spy_training(monkeypatch)
    code = main(["w2s", "run", "--dataset", f"file:{lms['data']}", "--weak", "bow", "--strong", f"hf:{lms['bare']}",
                 "--method", "genft", "--seeds", "1", "--store", str(tmp_path / "o.db")])
    err = capsys.readouterr().err
    assert code == 2 and "'method'" in err and "cannot be loaded as a language model" in err and "decoders" in err
    assert not trained


def _genft_cfg(lms, **kw):
    base = dict(dataset=f"file:{lms['data']}", weak="bow", strong=f"hf:{lms['causal']}", mode="head", epochs=5,
                method="genft", bf16=False, device="cpu")
    return make_config(W2SConfig, **{**base, **kw})


def test_genft_reads_only_the_training_texts_never_labels_validation_or_test(lms, cache, tmp_path, monkeypatch):
    calls = []
    real_adapt = genft.adapt

    def spy(spec, texts, *args, **kwargs):
        calls.append((spec, list(texts), args, kwargs))
        return real_adapt(spec, texts, *args, **kwargs)

    monkeypatch.setattr(genft, "adapt", spy)
    trained = _spy_training(monkeypatch)
    cfg = _genft_cfg(lms)
    results = run_experiment(cfg, ResultsStore(tmp_path / "o.db"))
    splits = load_dataset(cfg.dataset, seed=cfg.seed)
    train_texts = [e.text for e in (*splits.weak_train, *splits.student_train)]
    held_out = {e.text for e in (*splits.validation, *splits.test)}
    ((spec, texts, args, kwargs),) = calls
    assert spec.name == cfg.strong and texts == train_texts
    # nothing else reaches it: the settings and the device, no labels
    assert all(isinstance(a, (GenftSettings, str)) for a in (*args, *kwargs.values()))
    (corpus,) = trained
    assert corpus == sorted(set(train_texts)) and not set(corpus) & held_out
    assert results["method"] == "genft" and results["w2s_acc"] is not None


def test_genft_runs_are_keyed_by_the_adapted_model_and_share_the_weak_run(lms, cache, tmp_path):
    store = ResultsStore(tmp_path / "o.db")
    direct = run_experiment(_genft_cfg(lms, method="direct"), store)
    adapted = run_experiment(_genft_cfg(lms), store)
    assert adapted["run_keys"]["weak"] == direct["run_keys"]["weak"]
    for role in ("ceiling", "w2s"):
        assert adapted["run_keys"][role] != direct["run_keys"][role]
        assert "+genft-" in store.get(adapted["run_keys"][role])["config"]["model"]
    rows = {r["method"]: r for r in (aggregate(seed_configs(_genft_cfg(lms, method=m), 1), store)
                                     for m in ("direct", "genft"))}
    assert rows["genft"]["arm"] == "genft-xent" and rows["direct"]["arm"] == "xent"


def test_bootstrap_genft_climbs_the_chain_into_the_adapted_model(lms, cache, tmp_path, monkeypatch):
    trained = _spy_training(monkeypatch)
    cfg = _genft_cfg(lms, method="bootstrap+genft", chain=f"hf:{lms['masked']}")
    assert cfg.chain_models() == [f"hf:{lms['masked']}"]
    results = run_experiment(cfg, ResultsStore(tmp_path / "o.db"))
    assert len(trained) == 1  # the strong model only; the chain's rung is not adapted
    assert set(results["run_keys"]) == {"weak", "link1", "ceiling", "w2s"} and results["method"] == "bootstrap+genft"
    with pytest.raises(ConfigError, match="needs --chain"):
        _genft_cfg(lms, method="bootstrap+genft").validate()
