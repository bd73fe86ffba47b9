"""Generative weak-to-strong tasks' data: prompts with one right answer, group-disjoint splits, exact match.

Usage::

    from oversight.w2s.gen_data import agreement, exact_match, is_generative, load_generative

    is_generative("chess-gen")                          # True: registered with a parser of generations
    splits = load_generative("chess-gen", seed=0)       # GenSplits of GenExample(prompt, target, group, context)
    splits.test[0].prompt, splits.test[0].target        # the position as text, the engine's best move (SAN)
    exact_match(["Nxe5", ""], ["Nxe5", "Qh5"])          # array([1., 0.]): "" is a generation with no answer
    agreement(student, supervisor, targets)             # exact-match agreement, overall / supervisor right / wrong

A generative dataset is registered like any other (``register_dataset(..., parse=...)``); its loader
returns ``GenExample`` rows and ``parse(context, generated_text)`` turns a generation into the
canonical answer it names, or None (chess: the first move token, a legal move in SAN, or None).

Splits are made as for the classification datasets (``oversight.w2s.splits``), minus what only
binary labels need: whole groups go to weak_train / student_train / validation / test by
``assign_splits`` at the same fractions (no strata and no balancing: there are no classes);
``max_examples`` keeps about each split's fraction of the budget, taking whole groups in
SHA-1(seed, group) order (a larger budget's examples are a superset of a smaller one's); each split
is ordered by SHA-1(seed, id). ``GenSplits.check_disjoint`` proves no id, group or prompt is shared.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oversight.errors import ConfigError
from oversight.w2s.files import DatasetFormatError
from oversight.w2s.splits import (
    MIN_MAX_EXAMPLES,
    SPLIT_FRACTIONS,
    SPLIT_NAMES,
    _hash,
    assign_splits,
    group_counts,
    raise_on_leak,
)

Parser = Callable[[str, str], "str | None"]  # (context, generated text) -> canonical answer or None


@dataclass(frozen=True)
class GenExample:
    id: str  # stable, content-derived
    prompt: str
    target: str  # the one right answer, canonical (what ``parse`` returns for it)
    group: str  # never split across splits (chess: the position)
    context: str = ""  # what the dataset's parser reads besides a generation (chess: the FEN)


@dataclass
class GenSplits:
    """The four group-disjoint splits of generative dataset ``name`` at ``seed``."""

    name: str
    seed: int
    weak_train: list[GenExample]
    student_train: list[GenExample]
    validation: list[GenExample]
    test: list[GenExample]

    def as_dict(self) -> dict[str, list[GenExample]]:
        return {s: getattr(self, s) for s in SPLIT_NAMES}

    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, s)) for s in SPLIT_NAMES}

    def check_disjoint(self) -> None:
        """Raise ``SplitLeakError`` (an AssertionError) naming the leak if two splits share an id,
        group or prompt."""
        keys = {s: {"ids": {e.id for e in xs}, "groups": {e.group for e in xs}, "prompts": {e.prompt for e in xs}}
                for s, xs in self.as_dict().items()}
        raise_on_leak(self.name, self.seed, keys)


# ----------------------------------------------------------------------------- registry lookups


def _spec(name: str) -> Any:
    from oversight.w2s.datasets import DATASETS  # datasets registers chess-gen, which imports this module

    return DATASETS.get(name) if name in DATASETS else None


def is_generative(name: str) -> bool:
    """Whether ``name`` is a registered generative dataset (one registered with a parser)."""
    spec = _spec(name)
    return spec is not None and getattr(spec, "parse", None) is not None


def parser(name: str) -> Parser:
    """The registered ``parse(context, generated_text)`` of generative dataset ``name``."""
    spec = _spec(name)
    if spec is None or getattr(spec, "parse", None) is None:
        raise ConfigError("dataset", f"{name!r} is not a generative dataset")
    return spec.parse


@functools.lru_cache(maxsize=8)
def _examples(name: str) -> tuple[GenExample, ...]:
    spec = _spec(name)
    spec.require()
    examples = tuple(spec.loader())
    if len({e.id for e in examples}) != len(examples):
        raise DatasetFormatError(f"dataset {name!r} has duplicate example ids")
    return examples


# ----------------------------------------------------------------------------- splits


def load_generative(name: str, seed: int = 0, max_examples: int | None = None) -> GenSplits:
    """Group-disjoint weak_train / student_train / validation / test of generative dataset ``name``."""
    if max_examples is not None and max_examples < MIN_MAX_EXAMPLES:
        raise ConfigError("max_examples", f"must be at least {MIN_MAX_EXAMPLES}, got {max_examples}")
    return split_examples(name, list(_examples(name)), seed, max_examples)


def split_examples(name: str, examples: Sequence[GenExample], seed: int,
                   max_examples: int | None = None) -> GenSplits:
    """Cut ``examples`` into the four splits (module docstring: how)."""
    split_of = assign_splits(seed, group_counts(examples))  # type: ignore[arg-type]  # reads .group only
    parts: dict[str, list[GenExample]] = {s: [] for s in SPLIT_NAMES}
    for e in examples:
        parts[split_of[e.group]].append(e)
    for s, xs in parts.items():
        if max_examples is not None:
            xs = _subsample(xs, seed, max(1, round(SPLIT_FRACTIONS[s] * max_examples)))
        parts[s] = sorted(xs, key=lambda e: (_hash(seed, "order", e.id), e.id))
    empty = [s for s, xs in parts.items() if not xs]
    if empty:
        raise DatasetFormatError(f"dataset {name!r} leaves split(s) {', '.join(empty)} empty "
                                 f"({len(examples)} examples in {len(split_of)} groups): it needs more groups")
    splits = GenSplits(name, seed, **parts)
    splits.check_disjoint()
    return splits


def _subsample(xs: list[GenExample], seed: int, budget: int) -> list[GenExample]:
    """The first ``budget`` examples in (SHA-1(seed, group), SHA-1(seed, id)) order: whole groups
    first, so that for one seed a larger budget's examples are a superset of a smaller one's."""
    rank = sorted(xs, key=lambda e: (_hash(seed, "subsample", e.group), _hash(seed, "subsample", e.id), e.id))
    return rank[:budget]


# ----------------------------------------------------------------------------- exact match


def answers(values: Sequence[str | None]) -> np.ndarray:
    """Answers as a string array, "" where a generation named no answer (what artifacts store)."""
    return np.array([v or "" for v in values], dtype=str)


def exact_match(predicted: Sequence[str | None] | np.ndarray, targets: Sequence[str] | np.ndarray) -> np.ndarray:
    """1.0 where the answer equals the target, else 0.0 (no answer is never right)."""
    predicted, targets = answers(list(predicted)), answers(list(targets))
    return ((predicted == targets) & (predicted != "")).astype(np.float32)


def agreement(student: Sequence[str | None] | np.ndarray, supervisor: Sequence[str | None] | np.ndarray,
              targets: Sequence[str] | np.ndarray) -> dict[str, float]:
    """How often the student gives its supervisor's answer (two non-answers do not agree): overall,
    and where the supervisor is right or wrong (imitating its mistakes is the failure mode)."""
    agree = exact_match(student, supervisor).astype(bool)
    right = exact_match(supervisor, targets).astype(bool)

    def mean_or_nan(mask: np.ndarray) -> float:
        return float(agree[mask].mean()) if mask.any() else float("nan")

    return {"agreement": float(agree.mean()) if agree.size else float("nan"),
            "agreement_supervisor_right": mean_or_nan(right), "agreement_supervisor_wrong": mean_or_nan(~right)}
