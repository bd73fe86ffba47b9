"""Cutting examples into weak_train / student_train / validation / test: cleaning, group assignment,
subsampling and balancing. ``oversight.w2s.datasets.load_dataset`` runs these steps; use it rather than
calling them one by one.

Usage::

    from oversight.w2s.splits import assign_splits, clean_examples, group_counts, majority_labels

    examples = clean_examples(raw)                     # deduped, contradictions dropped, groups merged
    split_of = assign_splits(0, group_counts(examples), majority_labels(examples))  # group -> split

How splits are made
-------------------
1. Clean (``file:``/``hf:`` and built-ins alike): identical texts (case and whitespace folded) are
   one example; a text seen with both labels is dropped; groups that share a text are merged, so a
   duplicated text can never sit on both sides of a split. For ``file:``/``hf:`` one log line says
   how many rows were dropped and why (``data.jsonl: dropped 3 of 800 rows (3 with empty text)``).
2. Assign groups to splits (``assign_splits``): groups are ordered by SHA-1(seed, group) and cut by
   cumulative example count at TEST_FRACTION (test), VALIDATION_FRACTION (validation) and two equal
   halves of the rest (weak_train, student_train), separately for mostly-positive, mostly-negative
   and tied groups. Fractions therefore hold in examples and per class, not only in groups, and
   every group lands whole in one split. The assignment is computed on the full dataset, before
   ``max_examples``, so an example's split does not depend on ``max_examples``. (geo_facts builds
   its statements after the split, so it cuts by expected statements per country instead.)
3. ``max_examples``: each split keeps about its fraction of the budget, taking whole groups in
   SHA-1(seed, group) order, then balancing and trimming in that same order, so for one seed a
   larger budget's examples are a superset of a smaller one's (data-scaling curves are nested).
4. Balance each split separately: the majority class is downsampled to the minority's count,
   keeping the examples with the smallest SHA-1(seed, id) (with ``max_examples``: the order of
   step 3). Per split, so that every split (the test set especially) is exactly 50/50 and chance
   accuracy is 0.5 everywhere.
5. Order each split by SHA-1(seed, id): a deterministic shuffle, so a prefix is a random subset.
Finally ``Splits.check_disjoint()`` runs on every result: no id, group, mentioned entity or text is
shared between two splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from oversight.w2s.files import EMPTY_TEXT, DatasetFormatError, Example, normalize_text

TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1
# weak_train and student_train are disjoint halves of what test and validation leave.
WEAK_TRAIN_FRACTION = STUDENT_TRAIN_FRACTION = (1.0 - TEST_FRACTION - VALIDATION_FRACTION) / 2
SPLIT_NAMES = ("weak_train", "student_train", "validation", "test")
SPLIT_FRACTIONS = {"test": TEST_FRACTION, "validation": VALIDATION_FRACTION,
                   "weak_train": WEAK_TRAIN_FRACTION, "student_train": STUDENT_TRAIN_FRACTION}
# Order of the segments on the [0, 1) line that assign_splits cuts.
_SPLIT_ORDER = ("test", "validation", "weak_train", "student_train")
MIN_MAX_EXAMPLES = 8  # two per split: one example of each class
_DUPLICATE, _BOTH_LABELS = "repeating an earlier text", "whose text has both labels"


class SplitLeakError(AssertionError):
    """Two splits share an id, group, entity, text or prompt: a result on them would not be held out.
    A real ``raise`` (not ``assert``), so the check survives ``python -O``."""


def raise_on_leak(name: str, seed: int, keys: Mapping[str, Mapping[str, set[str]]]) -> None:
    """Raise :class:`SplitLeakError` naming the first leak: ``keys`` maps each split to what it holds
    ("ids" -> {...}, "groups" -> {...}, ...); no two splits may share any of it."""
    for a, b in combinations(SPLIT_NAMES, 2):
        for what in keys[a]:
            shared = keys[a][what] & keys[b][what]
            if shared:
                raise SplitLeakError(f"leak in {name!r} (seed {seed}): {len(shared)} {what} shared "
                                     f"between {a} and {b}, e.g. {sorted(shared)[:3]}")


@dataclass
class Splits:
    """The four disjoint, balanced splits of dataset ``name`` at ``seed`` (what ``load_dataset`` returns)."""

    name: str
    seed: int
    weak_train: list[Example]
    student_train: list[Example]
    validation: list[Example]
    test: list[Example]

    def as_dict(self) -> dict[str, list[Example]]:
        return {s: getattr(self, s) for s in SPLIT_NAMES}

    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, s)) for s in SPLIT_NAMES}

    def label_means(self) -> dict[str, float]:
        return {s: (sum(e.label for e in xs) / len(xs) if xs else float("nan")) for s, xs in self.as_dict().items()}

    def check_disjoint(self) -> None:
        """Raise :class:`SplitLeakError` (an AssertionError) naming the leak if two splits share an
        id, group, entity or text."""
        keys: dict[str, dict[str, set[str]]] = {}
        for s, xs in self.as_dict().items():
            keys[s] = {"ids": {e.id for e in xs}, "groups": {e.group for e in xs},
                       "mentioned entities": {x for e in xs for x in (e.group, *e.entities)},
                       "texts": {normalize_text(e.text) for e in xs}}
        raise_on_leak(self.name, self.seed, keys)


def _hash(*parts: object) -> int:
    """A stable 60-bit hash (Python's hash() is salted per process)."""
    return int(hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def assign_splits(seed: int, weights: Mapping[str, float], strata: Mapping[str, object] | None = None,
                  ) -> dict[str, str]:
    """group -> split name: groups in SHA-1(seed, group) order, cut by cumulative weight.

    A group goes to the split whose segment of [0, 1) holds the midpoint of the group's share, so
    each split gets its fraction of the total weight (example count) up to one group. Adding or
    removing a few groups only moves groups near the cut points. With ``strata`` (group -> key),
    each stratum is cut separately, so every split gets its fraction of each stratum too.
    """
    by_stratum: dict[object, list[str]] = defaultdict(list)
    for g in weights:
        by_stratum[strata[g] if strata is not None else None].append(g)
    bounds, acc = [], 0.0
    for s in _SPLIT_ORDER:
        acc += SPLIT_FRACTIONS[s]
        bounds.append((acc, s))
    out: dict[str, str] = {}
    for groups in by_stratum.values():
        order = sorted(groups, key=lambda g: (_hash(seed, "split", g), g))
        total = float(sum(weights[g] for g in groups)) or 1.0
        done = 0.0
        for g in order:
            mid = (done + weights[g] / 2) / total
            done += weights[g]
            out[g] = next((s for bound, s in bounds if mid < bound), _SPLIT_ORDER[-1])
    return out


def majority_labels(examples: Iterable[Example]) -> dict[str, int]:
    """group -> 1 / 0 / -1 (mostly positive / mostly negative / tied): the strata for assign_splits.

    Stratifying by it keeps each split's classes close to the data's, so that per-split balancing
    discards little (with one example per group it would otherwise lose ~10%).
    """
    score: dict[str, int] = defaultdict(int)
    for e in examples:
        score[e.group] += 1 if e.label else -1
    return {g: (v > 0) - (v < 0) for g, v in score.items()}


def clean_examples(examples: Iterable[Example], dropped: Counter[str] | None = None) -> list[Example]:
    """Dedupe texts, drop texts seen with both labels, merge groups that share a text.

    Merged groups are named by joining their names with '+'; a merged component of unrelated groups
    (two movies with the review "Nice piece of work.") only makes the split slightly coarser.
    ``dropped`` (reason -> count) is added to for every example left out.
    """
    dropped = Counter() if dropped is None else dropped
    examples = list(examples)
    labels: dict[str, set[int]] = defaultdict(set)
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.setdefault(g, g) != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first_group: dict[str, str] = {}
    for e in examples:
        key = normalize_text(e.text)
        labels[key].add(e.label)
        if key in first_group:
            a, b = find(first_group[key]), find(e.group)
            if a != b:
                parent[max(a, b)] = min(a, b)
        else:
            first_group[key] = e.group
            find(e.group)
    members: dict[str, list[str]] = defaultdict(list)
    for g in parent:
        members[find(g)].append(g)
    merged = {g: "+".join(sorted(members[find(g)])) for g in parent}
    out, seen = [], set()
    for e in examples:
        key = normalize_text(e.text)
        if key in seen or len(labels[key]) > 1 or not key:
            dropped[_DUPLICATE if key in seen else _BOTH_LABELS if key else EMPTY_TEXT] += 1
            continue
        seen.add(key)
        out.append(e if merged[e.group] == e.group else Example(e.id, e.text, e.label, merged[e.group],
                                                                e.entities, e.kind))
    ids = [e.id for e in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetFormatError(f"duplicate id {dup!r} for different texts")
    return out


def balance_and_trim(xs: list[Example], seed: int, budget: int | None) -> list[Example]:
    """Keep the same number of each class (and at most budget // 2 each), lowest rank first.

    Full data: rank by SHA-1(seed, id), so the majority class is thinned evenly across groups.
    With a budget: rank by (SHA-1(seed, group), SHA-1(seed, id)), the order subsample_groups
    takes groups in, which makes a smaller budget's examples a subset of a larger budget's.
    """
    def rank(e: Example) -> tuple[int, ...]:
        own = (_hash(seed, "balance", e.id),)
        return own if budget is None else (_hash(seed, "subsample", e.group), *own)

    by_label: dict[int, list[Example]] = {0: [], 1: []}
    for e in xs:
        by_label[e.label].append(e)
    keep = min(len(by_label[0]), len(by_label[1]))
    if budget is not None:
        keep = min(keep, budget // 2)
    out = []
    for label in (0, 1):
        out += sorted(by_label[label], key=lambda e: (rank(e), e.id))[:keep]
    return sorted(out, key=lambda e: (_hash(seed, "order", e.id), e.id))


def subsample_groups(xs: list[Example], seed: int, budget: int) -> list[Example]:
    """Whole groups in SHA-1(seed, group) order until a balanced ``budget`` is reachable."""
    by_group: dict[str, list[Example]] = defaultdict(list)
    for e in xs:
        by_group[e.group].append(e)
    counts, out = [0, 0], []
    for g in sorted(by_group, key=lambda g: (_hash(seed, "subsample", g), g)):
        if 2 * min(counts) >= budget:
            break
        out += by_group[g]
        for e in by_group[g]:
            counts[e.label] += 1
    return out


def group_counts(examples: Iterable[Example]) -> dict[str, float]:
    """group -> number of examples: the weights ``assign_splits`` cuts by."""
    counts: dict[str, float] = defaultdict(float)
    for e in examples:
        counts[e.group] += 1
    return counts


def cross_fit_folds(groups: list[str], seed: int) -> np.ndarray:
    """Fold 0 or 1 per example, whole groups to one fold, balanced in examples: groups in
    SHA-1(seed, group) order, each to the fold with fewer examples so far. A single group is split
    by position (there is nothing else to split by)."""
    sizes: dict[str, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    if len(sizes) < 2:
        return np.arange(len(groups)) % 2
    fold_of, counts = {}, [0, 0]
    for g in sorted(sizes, key=lambda g: hashlib.sha1(f"{seed}|{g}".encode()).hexdigest()):
        fold = int(counts[1] < counts[0])
        fold_of[g], counts[fold] = fold, counts[fold] + sizes[g]
    return np.array([fold_of[g] for g in groups])
