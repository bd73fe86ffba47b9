"""Generative finetuning (``--method genft``): the strong model first learns the task's unlabelled
text as a language model, then trains as usual (the weak-to-strong paper's generative finetuning).

    oversight w2s run --dataset rotten_tomatoes --weak bow --strong smollm2-135m --method genft
    oversight w2s run ... --method bootstrap+genft --chain minilm-l6   # the chain, into a genft'd strong model

    from oversight.w2s.genft import GenftSettings, adapt
    adapted = adapt(get_model_spec("smollm2-135m"), weak_train_texts + student_train_texts, GenftSettings(seed=0))
    adapted.name        # 'smollm2-135m+genft-1a2b3c4d': keys the feature cache and the runs
    adapted.model_dir() # a Hugging Face directory (weights + tokenizer) of the adapted model

Decoders learn next-token prediction on every token; encoders saved with a masked-LM head learn
BERT's masked tokens; any other rung is a ConfigError on ``method`` naming the rungs that can.
The corpus is the set of texts given (a preference pair gives its prompt with each response: see
``pairs.plain_texts``); the pipeline passes ``weak_train`` and ``student_train`` only, never
validation or test, and never a label. The adapted directory is built once under the models cache
(``$OVERSIGHT_CACHE/models/genft-<hash>``, atomically, by ``_convert.cached_dir``), addressed by the
rung's name, the corpus (as a set), the training settings and the max length.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from oversight.errors import ConfigError
from oversight.w2s import pairs
from oversight.w2s._convert import cached_dir
from oversight.w2s.lm import OBJECTIVES, train_lm
from oversight.w2s.models import LanguageModelUnavailableError, ModelSpec, has_lm_head, load_lm
from oversight.w2s.train import FeatureCache, TrainSettings

VERSION = "1"  # bump when the procedure changes: adapted models are then rebuilt, under new names


@dataclass(frozen=True)
class GenftSettings:
    """How the strong model is LM-finetuned; the paper's defaults (one epoch at the rung's finetuning
    learning rate, small batches)."""

    epochs: int = 1
    lr: float | None = None  # None: the rung's own finetuning lr
    batch_size: int = 16
    seed: int = 0
    bf16: bool = True  # autocast only (fp32 weights): speed, not part of the address


def require_lm_head(spec: ModelSpec) -> None:
    """ConfigError on ``method`` unless the rung can be trained as a language model."""
    if has_lm_head(spec):
        return
    try:
        load_lm(spec)  # stops at the missing head, before any weights load; its message names the rungs that have one
    except LanguageModelUnavailableError as err:
        raise ConfigError("method", f"genft trains the strong model as a language model first, but {err}") from None


def corpus(texts: list[str]) -> list[str]:
    """What the language model reads: the distinct plain texts (both sides of a preference pair), sorted,
    so that the set of texts alone, not their order or repeats, determines the adapted model."""
    return sorted(set(pairs.plain_texts(texts)))


def address(spec: ModelSpec, texts: list[str], settings: GenftSettings) -> str:
    """The content hash naming an adapted model: everything that determines its weights."""
    what = {"version": VERSION, "rung": spec.name, "corpus": FeatureCache.corpus_key(texts),
            "epochs": settings.epochs, "lr": _lr(spec, settings), "batch_size": settings.batch_size,
            "max_length": spec.max_length, "seed": settings.seed}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _lr(spec: ModelSpec, settings: GenftSettings) -> float:
    return settings.lr if settings.lr is not None else spec.lr


def adapt(spec: ModelSpec, texts: list[str], settings: GenftSettings = GenftSettings(),
          device: str = "cpu") -> ModelSpec:
    """The rung LM-finetuned on ``texts`` (unlabelled), as a spec whose ``model_dir`` holds it. Built
    once per address; later calls (any process) find the directory and train nothing."""
    require_lm_head(spec)
    texts = corpus(texts)
    key = address(spec, texts, settings)

    def build(tmp: Path) -> None:
        model, tokenizer = load_lm(spec, device=device)
        model.float()  # fp32 master weights whatever the checkpoint's dtype; autocast does bf16 compute
        train = TrainSettings(epochs=settings.epochs, lr=_lr(spec, settings), batch_size=settings.batch_size,
                              bf16=settings.bf16, device=device, seed=settings.seed)
        train_lm(model, tokenizer, texts, train, objective=OBJECTIVES[spec.kind], max_length=spec.max_length,
                 desc=f"genft {spec.name}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    path = cached_dir(f"genft-{key[:24]}", build)
    # the weights are now a plain directory: no package, conversion, truncation or fresh init applies
    return dataclasses.replace(spec, name=f"{spec.name}+genft-{key[:8]}", source=str(path), package=None,
                               install_command=None, random_init=False, num_layers=None)
