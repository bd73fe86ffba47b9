"""Generative weak-to-strong (the paper's chess framing): decoders generate the answer, exact match scores it.

    oversight w2s run --dataset chess-gen --mode finetune --weak smollm2-135m-8layer --strong smollm2-135m
    oversight w2s run --dataset chess-gen --mode finetune --weak smollm2-135m-8layer --strong gemma3-270m \\
        --method bootstrap --chain smollm2-135m

    from oversight.w2s.generative import generate, run_generative
    run_generative(cfg, store)           # what run_experiment does for a generative dataset
    generate(model, tokenizer, prompts)  # greedy continuations, the new text only

The data (prompt, target answer, group) and exact match are in ``gen_data.py``; chess-gen's prompt
and move parser in ``chess_puzzles.py``. For one seed, as ``pipeline.py`` does for classification:

0. ``genft`` / ``bootstrap+genft``: the strong decoder, for student and ceiling alike, is first
   LM-finetuned on the prompts of ``weak_train`` and ``student_train`` (``genft.adapt``; never an
   answer, nothing of validation or test), and its runs are keyed by the adapted model's name;
1. weak: the weak decoder is LM-finetuned on (prompt -> true answer) of ``weak_train`` (token
   cross-entropy on the answer and EOS only: ``lm.train_lm``) and generates answers for
   ``student_train``, ``validation`` and ``test``; its generated answers are the weak labels;
2. ``bootstrap``: each rung of the chain learns from the previous rung's generated answers and
   answers ``student_train`` for the next, cross-fitted like ``pipeline.Cell.link`` (two halves by
   group, ``splits.cross_fit_folds``; a model trained on each half answers the other). Answers
   cannot be averaged, so validation and test are answered by the first half's model;
3. weak-to-strong: the strong decoder is LM-finetuned on its supervisor's answers of
   ``student_train``; a generation that names no answer (not a legal move) gives no label, and its
   prompt is left out of the student's training (``label_coverage`` in the row counts them);
4. ceiling: the strong decoder finetuned on the true answers of ``student_train``.

Weights are selected as in the classification path (``--select``): weak and ceiling on validation
exact match against the truth (they train on it anyway), students on exact-match agreement with
their supervisor's validation answers (the truth only for the ``oracle`` ablation); the test answers
go into the curve for analysis only. Each evaluation generates on validation and test, EVALS times
a run. Only ``xent`` applies (there is no soft label for logconf and the like to reweight), on
decoder rungs, with ``--mode finetune``: anything else is a ConfigError naming the field. Unless
given, ``--epochs``, ``--batch-size`` and ``--lr`` are EPOCHS, BATCH_SIZE and LR (not the rung's
classifier-finetuning defaults).

Rows are those of the classification path (``_run_unit`` get-or-compute, keys over what determines
each run, the seed row under ``experiment_key``), with ``task: "generate"``. A run's artifact holds
each split's answers as strings (``<split>_answers``, "" = none) and its correctness as floats
(``<split>``); the seed's test labels are stored as all ones, so ``metrics.accuracy`` and the
hierarchical PGR bootstrap of ``aggregate`` read exact-match numbers (AUROC, ECE and Brier are None).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from oversight.config import config_hash
from oversight.errors import ConfigError
from oversight.progress import log
from oversight.runtime import autocast, resolve_device, seed_everything
from oversight.store import ResultsStore
from oversight.w2s import genft
from oversight.w2s.aggregate import seed_metrics
from oversight.w2s.config import W2SConfig, data_version, run_numerics, uses_genft
from oversight.w2s.gen_data import agreement, answers, exact_match, load_generative, parser
from oversight.w2s.lm import train_lm
from oversight.w2s.models import get_model_spec, list_models, load_lm
from oversight.w2s.pipeline import (
    Arrays,
    _curve,
    _hashable,
    _run_unit,
    _settings,
    run_roles,
    store_seed_row,
)
from oversight.w2s.splits import cross_fit_folds
from oversight.w2s.train import TrainSettings, Watch

EPOCHS, BATCH_SIZE = 4, 16  # defaults for --epochs / --batch-size: ~50 steps on ~200 training prompts
# default --lr, not the rungs' classifier-finetuning 2e-5: at 2e-5 for those ~50 steps
# smollm2-135m-8layer learned no move format (0 of 210 answers legal); at 2e-4 it answers in SAN
LR = 2e-4
MAX_LENGTH = 512  # tokens of prompt + answer + EOS (chess-gen: ~150-250); rows are cut from the right
NEW_TOKENS = 8  # greedy tokens per answer: a SAN move and its leading space ("exd8=Q+" is 7 characters)
EVALS = 5  # evaluations per run (each generates on validation and test), and one at the end
GEN_BATCH = 32  # prompts per generate() call
FORMAT = 1  # bump when prompts, generation or parsing change: new run keys instead of stale runs


# --------------------------------------------------------------------------- config checks

def check_config(cfg: W2SConfig, rungs: bool = True) -> None:
    """ConfigError naming the field for what a generative run cannot do; ``rungs``: also look up the
    models and refuse any that is not a decoder (``hf:`` specs read their config)."""
    if cfg.loss != "xent":
        raise ConfigError("loss", f"{cfg.dataset} trains on generated answers with token cross-entropy: only "
                                  f"xent applies, not {cfg.loss}")
    if cfg.mode != "finetune":
        raise ConfigError("mode", f"{cfg.dataset} finetunes the language model itself: pass --mode finetune")
    if cfg.top_k_layers is not None:
        raise ConfigError("top_k_layers", f"{cfg.dataset} finetunes every layer; drop --top-k-layers")
    if not rungs:
        return
    for name, model in (("weak", cfg.weak), *(("chain", m) for m in cfg.chain_models()), ("strong", cfg.strong)):
        if get_model_spec(model).kind != "decoder":
            decoders = ", ".join(s.name for s in list_models() if s.kind == "decoder")
            raise ConfigError(name, f"{cfg.dataset} generates its answers, so every rung is a decoder; {model!r} "
                                    f"is of kind {get_model_spec(model).kind}: use {decoders}, or hf:PATH of a "
                                    "causal LM")


# --------------------------------------------------------------------------- generation

@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: list[str], new_tokens: int = NEW_TOKENS,
             batch_size: int = GEN_BATCH, bf16: bool = False) -> list[str]:
    """Greedy continuations of ``prompts``, the new text only. Prompts are tokenised as ``lm.causal_batch``
    tokenises them for training (with the tokenizer's special tokens), batched by length and left-padded."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    ids = [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(ids[i]) for i in rows)
        batch = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            batch[r, width - len(ids[i]):] = torch.tensor(ids[i], dtype=torch.long)
            mask[r, width - len(ids[i]):] = 1
        with autocast(str(device), bf16):
            new = model.generate(input_ids=batch.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        for r, i in enumerate(rows):
            out[i] = tokenizer.decode(new[r, width:], skip_special_tokens=True)
    return out


# --------------------------------------------------------------------------- one seed

class GenCell:
    """One seed of a generative cell: its splits and the get-or-train of each run. Every method returns
    ``(key, arrays)``: the run's store key and its answers (``<split>_answers``) and correctness
    (``<split>``) by split."""

    def __init__(self, cfg: W2SConfig, store: ResultsStore) -> None:
        check_config(cfg)
        self.cfg, self.store = cfg, store
        self.device = resolve_device(cfg.device)
        self.splits = load_generative(cfg.dataset, seed=cfg.seed, max_examples=cfg.max_examples)
        self.parse = parser(cfg.dataset)
        named = self.splits.as_dict()
        self.prompts = {s: [e.prompt for e in xs] for s, xs in named.items()}
        self.contexts = {s: [e.context for e in xs] for s, xs in named.items()}
        self.truth = {s: answers([e.target for e in xs]) for s, xs in named.items()}
        self.specs = {m: get_model_spec(m) for m in (cfg.weak, *cfg.chain_models(), cfg.strong)}
        if uses_genft(cfg.method):  # as pipeline.Cell: the strong decoder first reads the prompts, no answer
            self.specs[cfg.strong] = genft.adapt(
                self.specs[cfg.strong], self.prompts["weak_train"] + self.prompts["student_train"],
                genft.GenftSettings(seed=cfg.seed, bf16=cfg.bf16), device=self.device)
        # everything that determines a run and nothing else goes into its key
        self.data = {"dataset": cfg.dataset, "seed": cfg.seed, "max_examples": cfg.max_examples,
                     "data_version": data_version(cfg.dataset), "numerics": run_numerics(cfg),
                     "task": "generate", "format": FORMAT,
                     "max_length": MAX_LENGTH, "new_tokens": NEW_TOKENS}

    def _settings(self, model: str, student: bool) -> TrainSettings:
        settings = _settings(self.cfg, self.specs[model], "xent", self.device, student=student)
        return replace(settings, epochs=self.cfg.epochs or EPOCHS, lr=self.cfg.lr or LR,
                       batch_size=self.cfg.batch_size or BATCH_SIZE)

    def _answer(self, lm: tuple[Any, Any], prompts: list[str], contexts: list[str], bf16: bool) -> np.ndarray:
        texts = generate(*lm, prompts, bf16=bf16)
        return answers([self.parse(c, t) for c, t in zip(contexts, texts, strict=True)])

    def _train(self, model: str, settings: TrainSettings, prompts: list[str], targets: np.ndarray,
               val_labels: np.ndarray, answer: dict[str, tuple[list[str], list[str]]], desc: str
               ) -> tuple[Arrays, dict[str, Any]]:
        """Finetune ``model`` on (prompt -> target) where the target is an answer, selecting on
        agreement with ``val_labels``; its answers on ``answer`` (name -> prompts, contexts)."""
        keep = np.flatnonzero(targets != "")  # a generation that named no answer is no label
        if keep.size < len(targets):
            log(f"{desc}: {len(targets) - keep.size} of {len(targets)} labels name no answer; they are left out")
        seed_everything(self.cfg.seed)
        lm = load_lm(self.specs[model], self.device)
        lm[0].float()  # fp32 master weights whatever the checkpoint's dtype (as genft); autocast computes in bf16
        test = (self.prompts["test"], self.contexts["test"])
        watch = Watch([], np.ones(len(val_labels)), [], np.ones(len(test[0])), evals=EVALS)

        def evaluate(step: int) -> float:  # exact-match agreement on validation; test for the curve only
            val = self._answer(lm, self.prompts["validation"], self.contexts["validation"], settings.bf16)
            return watch.record(step, exact_match(val, val_labels), exact_match(self._answer(lm, *test, settings.bf16),
                                                                                self.truth["test"]))

        watch.selected_step = train_lm(
            lm[0], lm[1], [prompts[i] for i in keep], settings, objective="causal", max_length=MAX_LENGTH,
            completions=[" " + targets[i] for i in keep], desc=desc, evaluate=evaluate, evals=EVALS,
            on_diverged=watch.diverged)
        arrays: Arrays = {}
        for name, (texts, contexts) in answer.items():
            arrays[f"{name}_answers"] = self._answer(lm, texts, contexts, settings.bf16)
            if name in self.truth:
                arrays[name] = exact_match(arrays[f"{name}_answers"], self.truth[name])
        results = {"trained_on": int(keep.size), "label_coverage": float(keep.size / max(1, len(targets))),
                   **_curve(watch)}
        if "test" in arrays:
            results["test_acc"] = float(arrays["test"].mean())
        return arrays, results

    def _split(self, *names: str) -> dict[str, tuple[list[str], list[str]]]:
        return {name: (self.prompts[name], self.contexts[name]) for name in names}

    def _unit(self, kind: str, model: str, role: str, settings: TrainSettings, extra: dict[str, Any],
              train: Callable[[], tuple[Arrays, dict[str, Any]]]) -> tuple[str, Arrays]:
        # the spec's name: the configured one, or the adapted model's under genft
        config = {**self.data, "model": self.specs[model].name, "role": role, **extra, **_hashable(settings)}
        key = config_hash(config, kind=kind)
        return key, _run_unit(self.store, kind, key, config, train)

    def weak(self) -> tuple[str, Arrays]:
        model, settings = self.cfg.weak, self._settings(self.cfg.weak, student=False)
        return self._unit("w2s_weak", model, "weak", settings, {}, lambda: self._train(
            model, settings, self.prompts["weak_train"], self.truth["weak_train"], self.truth["validation"],
            self._split("student_train", "validation", "test"), f"weak {model}"))

    def ceiling(self) -> tuple[str, Arrays]:
        model, settings = self.cfg.strong, self._settings(self.cfg.strong, student=False)
        return self._unit("w2s_ceiling", model, "ceiling", settings, {}, lambda: self._train(
            model, settings, self.prompts["student_train"], self.truth["student_train"], self.truth["validation"],
            self._split("validation", "test"), f"ceiling {model}"))

    def _val_labels(self, supervisor: Arrays) -> np.ndarray:
        # a student sees its supervisor's validation answers; the truth only as the oracle ablation
        return self.truth["validation"] if self.cfg.select == "oracle" else supervisor["validation_answers"]

    def student(self, supervisor_key: str, supervisor: Arrays) -> tuple[str, Arrays]:
        """The weak-to-strong student, finetuned on its supervisor's answers of ``student_train``."""
        model, settings = self.cfg.strong, self._settings(self.cfg.strong, student=True)
        return self._unit("w2s_student", model, "w2s", settings, {"weak_run": supervisor_key}, lambda: self._train(
            model, settings, self.prompts["student_train"], supervisor["student_train_answers"],
            self._val_labels(supervisor), self._split("test"), f"w2s {self.cfg.weak}->{model}"))

    def link(self, model: str, supervisor_key: str, supervisor: Arrays) -> tuple[str, Arrays]:
        """A bootstrap rung, cross-fitted: a model finetuned on each half of ``student_train`` (by group)
        answers the other half; the first half's model answers validation and test."""
        settings = self._settings(model, student=True)
        prompts, contexts = self.prompts["student_train"], self.contexts["student_train"]
        targets = supervisor["student_train_answers"]
        folds = cross_fit_folds([e.group for e in self.splits.student_train], self.cfg.seed)

        def train() -> tuple[Arrays, dict[str, Any]]:
            labels = np.full(len(prompts), "", dtype=object)
            arrays: Arrays = {}
            results: dict[str, Any] = {}
            for fold in (0, 1):
                mine, other = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
                shared = ("validation", "test") if fold == 0 else ("test",)
                half, results[f"half{fold}"] = self._train(
                    model, settings, [prompts[i] for i in mine], targets[mine], self._val_labels(supervisor),
                    {**self._split(*shared), "other_half": ([prompts[i] for i in other], [contexts[i] for i in other])},
                    f"rung {model} (half {fold + 1}/2)")
                labels[other] = half["other_half_answers"]
                if fold == 0:
                    arrays.update({k: v for k, v in half.items() if not k.startswith("other_half")})
            arrays["student_train_answers"] = answers(list(labels))
            arrays["student_train"] = exact_match(arrays["student_train_answers"], self.truth["student_train"])
            return arrays, {"test_acc": float(arrays["test"].mean()), **results}

        return self._unit("w2s_link", model, "link", settings, {"supervisor_run": supervisor_key, "folds": 2}, train)


# --------------------------------------------------------------------------- the experiment

def run_generative(cfg: W2SConfig, store: ResultsStore, pair_key: str) -> dict[str, Any]:
    """Run (or fetch) the weak, rung, weak-to-strong and ceiling runs of one seed of a generative
    dataset and store its row under ``pair_key``; ``pipeline.run_experiment`` calls it."""
    start = time.time()
    cell = GenCell(cfg, store)
    roles = run_roles(cell, lambda arrays, split: float(arrays[split].mean()))  # arrays hold correctness
    weak, ceiling, student, supervisor = roles.weak, roles.ceiling, roles.student, roles.supervisor

    ones = np.ones(len(cell.truth["test"]), dtype=np.float32)  # correctness against "right": exact match
    # AUROC comes out undefined (one class), stored as None: there is no score to rank answers by
    results = seed_metrics(cfg, weak["test"], student["test"], ceiling["test"], ones)
    results.update(agreement(student["test_answers"], weak["test_answers"], cell.truth["test"]))
    results.update({
        "task": "generate",
        "weak_label_acc": float(weak["student_train"].mean()),
        "label_coverage": float(np.mean(supervisor["student_train_answers"] != "")),
    })
    return store_seed_row(store, cfg, pair_key, cell, roles, results, ones, start)
