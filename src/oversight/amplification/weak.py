"""The weak supervisor W of the bridge modes: X's own recipe, weakened along one named axis.

    from oversight.amplification.weak import weak_config, is_weak_run
    w_cfg = weak_config(AmplifyConfig(task="union_find", mode="amplified-weak", size=8, weak="budget:300"))
    w_cfg.mode, w_cfg.steps, w_cfg.seed      # "supervised", 300, 1_000_000 (X's seed + WEAK_SEED_OFFSET)

W is a supervised run (ground truth at its own sizes: the weak-to-strong protocol's weak model is
trained on labels too), stored as a run of its own and loaded frozen by the X runs that use it:

- ``small-size:M``: X's architecture and budget, trained at instance sizes <= M only (a curriculum
  that stops at M), then asked at the target size;
- ``small-model:L`` or ``small-model:LxD``: L encoder and L decoder layers (width D, default X's),
  trained at the target size;
- ``budget:K``: X's architecture stopped after K steps.

W draws its training instances from a generator seeded with ``seed + WEAK_SEED_OFFSET`` and X from
``seed``: W never sees an instance X trains on (a test spies on both streams). W's curriculum and
stopping are a supervised run's; its seed (W's range, ``is_weak_run``) keeps its row out of the
tables of the base modes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from oversight.amplification.batches import make_answer_fn, stack_facts
from oversight.amplification.config import WEAK_MODES, AmplifyConfig, WeakSpec, parse_weak
from oversight.amplification.env import DONT_KNOW, Task, run_expert
from oversight.amplification.evaluation import EvalSet
from oversight.amplification.learner import FactSetLearner
from oversight.runtime import autocast

WEAK_SEED_OFFSET = 1_000_000  # W's training seed: X's plus this, a stream no X run draws from


def weak_spec(cfg: AmplifyConfig) -> WeakSpec:
    """The weak supervisor of a weak-mode config (a ConfigError naming ``weak`` if it has none)."""
    if cfg.mode not in WEAK_MODES:
        raise ValueError(f"mode {cfg.mode} has no weak supervisor")
    return parse_weak(cfg.weak, cfg.size)


def weak_config(cfg: AmplifyConfig) -> AmplifyConfig:
    """The supervised run that trains W for the X run ``cfg`` (same task, target size and training
    recipe as X's ceiling except the weakened axis, and a seed of its own)."""
    spec = weak_spec(cfg)
    base = dataclasses.replace(cfg, mode="supervised", weak="", seed=cfg.seed + WEAK_SEED_OFFSET)
    if spec.axis == "small-size":
        return dataclasses.replace(base, size=spec.size, start_size=min(cfg.start_size, spec.size),
                                   curriculum_min_size=min(cfg.curriculum_min_size, spec.size))
    if spec.axis == "small-model":
        width = spec.width or cfg.d_model
        return dataclasses.replace(base, encoder_layers=spec.layers, decoder_layers=spec.layers, d_model=width,
                                   n_heads=min(cfg.n_heads, width // 4) or 1)
    return dataclasses.replace(base, steps=spec.steps)


def is_weak_run(config: dict[str, Any]) -> bool:
    """Whether a stored config trained a weak supervisor (its seed is in W's range)."""
    return config.get("mode") == "supervised" and int(config.get("seed", 0)) >= WEAK_SEED_OFFSET


@torch.no_grad()
def self_consistency(model: FactSetLearner, task: Task, ts: EvalSet, device: str, rng: np.random.Generator,
                     bf16: bool = False) -> float:
    """How often a model's own answer equals Amplify^H(model)'s on the questions of ``ts``: H
    decomposes, the facts answer primitive subquestions and the model the rest. No true answer is
    read (amplified-weak+self decides by it on validation instances which of W and X's teacher
    answers the subquestions); a correct model scores 1, a model whose answers do not compose less."""
    was_training = model.training
    model.eval()
    facts = stack_facts(ts.instances, device)
    with autocast(device, bf16):
        memory = model.encode_facts(facts)
    answer = make_answer_fn(model, task, memory, facts, device, bf16)
    direct = answer(ts.ctx_index, ts.questions)
    amplified = run_expert(task, ts.instances, ts.ctx_index, ts.questions, answer, rng).answers
    model.train(was_training)
    return float(np.mean((direct == amplified) & (amplified != DONT_KNOW)))
