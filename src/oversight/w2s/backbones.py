"""Backbones for the model ladder: a pretrained text model + tokenizer + pooling, and frozen features.

Usage::

    from oversight.w2s.backbones import extract_features, load_backbone
    from oversight.w2s.models import get_model_spec

    spec = get_model_spec("minilm-l6")
    feats = extract_features(spec, texts)            # float32 [N, 384], frozen, bf16 on a capable CPU
    bb = load_backbone(spec)                         # torch.nn.Module: texts -> one vector each
    bb.trainable_top_layers(2)                       # finetune only the top two layers
    batch = bb.tokenize(["a fine film", "dull"])     # dynamic padding, truncated to spec.max_length
    vecs = bb(**batch)                               # [2, 384], float32

The rung as a language model (generation, LM finetuning)::

    from oversight.w2s.backbones import has_lm_head, load_lm

    model, tok = load_lm(get_model_spec("smollm2-135m"))   # AutoModelForCausalLM + its tokenizer
    tok.padding_side = "left"                              # batched generate() wants left padding
    out = model.generate(**tok(["The capital of France is"], return_tensors="pt"), max_new_tokens=8)
    has_lm_head(get_model_spec("minilm-l6"))               # False: a bare encoder, no MLM head

``oversight.w2s.models`` (the ladder: which rungs exist, where their weights live) re-exports these.

Pooling: encoders mean-pool over the attention mask; decoders take the hidden state of the last
non-padding token, located from the attention mask (left or right padding), never by counting non-zero
token ids (id 0 can be a real token).
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from oversight.errors import OversightError
from oversight.progress import progress
from oversight.runtime import autocast, bf16_is_fast

if TYPE_CHECKING:  # models imports this module at run time; the spec is only a type here
    from oversight.w2s.models import ModelSpec

__all__ = [
    "Backbone",
    "LanguageModelUnavailableError",
    "extract_features",
    "has_lm_head",
    "last_token_pool",
    "load_backbone",
    "load_lm",
    "mean_pool",
    "quiet_transformers",
]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence expected load warnings (unused pooler/truncated-layer weights, fresh random weights)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars for a sub-second load are noise
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


_FINAL_NORMS = {"ln_f", "norm", "final_layer_norm", "final_layernorm"}


class Backbone(torch.nn.Module):
    """A pretrained text model + its tokenizer + pooling: one vector per text."""

    hidden_size: int

    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        super().__init__()
        if spec.kind not in ("encoder", "decoder"):
            raise OversightError(f"model {spec.name!r} has kind {spec.kind!r}: no neural backbone to load")
        from transformers import AutoModel, AutoTokenizer

        path = spec.model_dir()
        with quiet_transformers():
            config = _load_config(spec, path)
            if spec.random_init:
                model = AutoModel.from_config(config)
            else:
                model = AutoModel.from_pretrained(path, config=config)
            tokenizer = AutoTokenizer.from_pretrained(path)
        # The BERT/MPNet pooler (tanh dense on [CLS]) is unused by mean pooling: drop it so it neither
        # costs compute nor sits in the optimizer as a parameter that never gets a gradient.
        if getattr(model, "pooler", None) is not None:
            model.pooler = None
        _ensure_pad_token(tokenizer)
        self.spec = spec
        self.kind = spec.kind
        self.model = model
        self.tokenizer = tokenizer
        self.hidden_size = int(config.hidden_size)
        # Left padding shifts absolute/rotary positions unless they are given explicitly.
        self._pass_positions = spec.kind == "decoder" and "position_ids" in inspect.signature(model.forward).parameters
        self.to(device)
        # Like from_pretrained: start in eval mode (no dropout); a training loop calls .train() itself.
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def layers(self) -> torch.nn.ModuleList:
        """The stack of transformer blocks, bottom first."""
        n = getattr(self.model.config, "num_hidden_layers", None)
        for _, module in self.model.named_modules():
            if isinstance(module, torch.nn.ModuleList) and len(module) == n:
                return module
        raise OversightError(f"cannot find the {n} transformer layers of {type(self.model).__name__}")

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """input_ids and attention_mask, padded to this batch's longest text, truncated to max_length."""
        enc = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.spec.max_length,
            return_tensors="pt",
        )
        return {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[B, hidden] float32: masked mean (encoders) or last non-padding token (decoders)."""
        kwargs: dict[str, Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._pass_positions:
            kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = self.model(**kwargs).last_hidden_state
        if self.kind == "decoder":
            return last_token_pool(hidden, attention_mask)
        return mean_pool(hidden, attention_mask)

    def trainable_top_layers(self, k: int | None) -> None:
        """Freeze everything except the top ``k`` layers (and the final norm above them, if any).

        ``None``: everything trainable, embeddings included. ``0``: everything frozen. Parts shared by all
        layers (embeddings, MPNet's relative-position bias) stay frozen for any integer ``k``.
        """
        params = list(self.model.parameters())
        if k is None:
            for p in params:
                p.requires_grad_(True)
            return
        if k < 0:
            raise ValueError(f"k must be None or >= 0, got {k}")
        for p in params:
            p.requires_grad_(False)
        layers = self.layers
        top = list(layers)[len(layers) - min(k, len(layers)):] if k else []
        for layer in top:
            for p in layer.parameters():
                p.requires_grad_(True)
        if top:  # a norm applied after the last block belongs with the top layer
            for name, module in self.model.named_modules():
                if name.rsplit(".", 1)[-1] in _FINAL_NORMS and module is not layers:
                    for p in module.parameters():
                        p.requires_grad_(True)

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def _load_config(spec: ModelSpec, path: Any) -> Any:
    """The rung's config, cut to ``spec.num_layers`` layers (with per-layer lists such as Gemma's)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    n = spec.num_layers
    if n is not None:
        config.num_hidden_layers = n
        # Per-layer attention types (Gemma-3: sliding/full) must match the layer count.
        if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) > n:
            config.layer_types = config.layer_types[:n]
    return config


def _ensure_pad_token(tokenizer: Any) -> None:
    if tokenizer.pad_token is None:
        # Decoders often ship without a pad token. Pooling and losses read the attention mask, so which
        # id pads does not matter; reusing EOS avoids resizing the embedding matrix.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.convert_ids_to_tokens(0)


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the hidden states of non-padding tokens, in float32 (bf16 sums lose precision)."""
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    return (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def last_token_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Hidden state of each row's last position whose mask is 1 (works for left and right padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (attention_mask.long() * positions).argmax(dim=1)  # largest index with mask 1 (0 if none)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()


def load_backbone(spec: ModelSpec, device: str = "cpu") -> Backbone:
    """Load a rung's backbone; MissingPackageError (with the pip command) if its package is absent."""
    return Backbone(spec, device=device)


# ---------------------------------------------------------------------------------------------
# The rung as a language model


class LanguageModelUnavailableError(OversightError):
    """The rung's checkpoint has no language-model head (a bare encoder, or the ``bow`` baseline)."""


_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def _stored_keys(path: Path) -> set[str] | None:
    """Tensor names in the directory's safetensors weights (headers only); None without safetensors."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    keys: set[str] = set()
    for f in files:
        with safe_open(str(f), "pt") as st:
            keys.update(st.keys())
    return keys


def _lm_class(spec: ModelSpec, path: Path, config: Any) -> tuple[Any, str]:
    """(AutoModelForCausalLM / AutoModelForMaskedLM, "") when the checkpoint carries that head, else
    (None, why not)."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    archs = getattr(config, "architectures", None) or []
    arch = ", ".join(archs or [config.model_type])
    if spec.kind == "decoder":
        # A bare decoder (e.g. saved as LlamaModel) still predicts tokens when its head is the embeddings.
        head_is_embeddings = getattr(config, "tie_word_embeddings", False)
        if archs and not any(a.endswith(_CAUSAL_SUFFIXES) for a in archs) and not head_is_embeddings:
            return None, f"is a bare decoder ({arch}) without an LM head"
        auto = AutoModelForCausalLM
    elif spec.kind == "encoder" and any(a.endswith("ForMaskedLM") for a in archs):
        auto = AutoModelForMaskedLM
    else:
        return None, f"is a bare {spec.kind} ({arch}) without a masked-LM head"
    stored = _stored_keys(path)
    if spec.random_init or stored is None:  # nothing to load, or .bin weights: trust the config
        return auto, ""
    # The config can claim a head the weights lack (all-mpnet-base-v2 says MPNetForMaskedLM but stores
    # the bare encoder): require the head's own (untied) weights in the checkpoint.
    with torch.device("meta"), quiet_transformers():
        model = auto.from_config(config)
    tied = set(model.get_expanded_tied_weights_keys(all_submodels=True))
    prefix = model.base_model_prefix + "."
    head = [k for k in model.state_dict() if not k.startswith(prefix) and k not in tied]
    if head and not any(k in stored for k in head):
        return None, f"names {arch} in its config, but its weights hold no LM head (e.g. {head[0]})"
    return auto, ""


def _no_lm_message(spec: ModelSpec, what: str) -> str:
    from oversight.w2s.models import list_models  # models imports this module: import at call time

    decoders = ", ".join(s.name for s in list_models() if s.kind == "decoder")
    return (
        f"model {spec.name!r} {what}, so it cannot be loaded as a language model. Rungs with an LM head: "
        f"decoders (registered: {decoders}; or hf:ID_OR_PATH of a causal LM) and encoders only when the "
        "checkpoint was saved with a masked-LM head (e.g. hf:PATH of a BertForMaskedLM directory)"
    )


def _lm_class_or_raise(spec: ModelSpec) -> tuple[Any, Path, Any]:
    if spec.kind not in ("encoder", "decoder"):
        raise LanguageModelUnavailableError(_no_lm_message(spec, f"has kind {spec.kind!r}"))
    path = Path(spec.model_dir())
    with quiet_transformers():
        config = _load_config(spec, path)
    auto, why_not = _lm_class(spec, path, config)
    if auto is None:
        raise LanguageModelUnavailableError(_no_lm_message(spec, why_not))
    return auto, path, config


def has_lm_head(spec: ModelSpec) -> bool:
    """Whether :func:`load_lm` works for this rung (reads its config, converting it on first use)."""
    try:
        _lm_class_or_raise(spec)
    except LanguageModelUnavailableError:
        return False
    return True


def load_lm(spec: ModelSpec, device: str = "cpu") -> tuple[Any, Any]:
    """The rung as a language model, in eval mode: (model, tokenizer).

    Decoders load as ``AutoModelForCausalLM``, encoders saved with a masked-LM head as
    ``AutoModelForMaskedLM``; ``spec.num_layers`` and ``spec.random_init`` apply as in
    :class:`Backbone`, and a missing pad token becomes EOS. ``tokenizer.padding_side`` stays as
    loaded: batched ``generate()`` needs ``"left"``, LM finetuning usually ``"right"`` -- the caller sets
    it. Raises :class:`LanguageModelUnavailableError` for a rung without an LM head and
    :class:`~oversight.errors.MissingPackageError` when its weight packages are missing.
    """
    from transformers import AutoTokenizer

    auto, path, config = _lm_class_or_raise(spec)
    with quiet_transformers():
        model = auto.from_config(config) if spec.random_init else auto.from_pretrained(path, config=config)
        tokenizer = AutoTokenizer.from_pretrained(path)
    _ensure_pad_token(tokenizer)
    model.to(device)
    model.eval()
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# Frozen features


def extract_features(
    spec: ModelSpec,
    texts: Sequence[str],
    batch_size: int = 64,
    device: str = "cpu",
    bf16: bool | None = None,
    progress_desc: str | None = None,
    backbone: Backbone | None = None,
    bar: Any | None = None,
) -> np.ndarray:
    """Frozen pooled features, float32 ``[N, hidden]``, in the order of ``texts``.

    Texts are batched longest-first so each batch pads to similar lengths, then put back in order.
    ``bf16=None`` uses bf16 autocast where it is fast (CPUs with AVX512-BF16/AMX, recent GPUs).
    Pass ``backbone`` to reuse a loaded model, and ``bar`` (a progress bar counting texts) to show
    several calls as one bar; without it each call shows a bar of its own over batches.
    """
    if spec.kind == "bow":
        raise OversightError("extract_features needs a neural rung; 'bow' is fit as TF-IDF + logistic regression")
    bb = backbone if backbone is not None else load_backbone(spec, device=device)
    texts = list(texts)
    out = np.empty((len(texts), bb.hidden_size), dtype=np.float32)
    if not texts:
        return out
    use_bf16 = bf16_is_fast(str(bb.device)) if bf16 is None else bf16
    lengths = [len(ids) for ids in bb.tokenizer(texts, truncation=True, max_length=spec.max_length)["input_ids"]]
    order = np.argsort(-np.asarray(lengths), kind="stable")
    starts = range(0, len(texts), batch_size)
    was_training = bb.training
    bb.eval()
    try:
        with torch.inference_mode(), autocast(str(bb.device), use_bf16):
            batches = starts if bar is not None else progress(
                starts, desc=progress_desc or f"features {spec.name}", total=len(starts))
            for start in batches:
                idx = order[start : start + batch_size]
                batch = bb.tokenize([texts[i] for i in idx])
                out[idx] = bb(**batch).float().cpu().numpy()
                if bar is not None:
                    bar.update(len(idx))
    finally:
        bb.train(was_training)
    return out
