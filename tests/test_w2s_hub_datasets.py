"""The paper's NLP datasets (oversight.w2s.hub_datasets): each formatter on rows in its dataset's schema,
local copies through hf:PATH?format=NAME, the registered names over their hub ids, and the error and
listing when the data is not on this machine. No hub is reached: every dataset is a fixture written here."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oversight.cli import main
from oversight.errors import ConfigError, OversightError, UnknownNameError
from oversight.w2s import datasets as D
from oversight.w2s import hub_formats as F
from oversight.w2s.datasets import DATASETS, DatasetFormatError, list_datasets, load_dataset
from oversight.w2s.hub_datasets import HUB_DATASETS, MISSING, in_cache

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never the network (read when datasets is imported)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

N = 80  # rows per fixture: enough groups that every split gets both labels
NAMES = list(HUB_DATASETS)
PAPER = {"boolq", "sciq", "cosmos_qa", "anli_r2", "amazon_polarity", "sst2", "hellaswag", "piqa", "quartz",
         "openbookqa", "social_i_qa", "wic", "cola", "dream", "mc_taco", "paws", "quail", "multirc",
         "ethics_justice", "ethics_deontology", "ethics_virtue", "ethics_utilitarianism", "twitter_sentiment"}
# Multiple choice: one row = one question, exactly one right candidate.
CHOICE = {"sciq": 4, "cosmos_qa": 4, "hellaswag": 4, "piqa": 2, "quartz": 2, "openbookqa": 4, "social_i_qa": 3,
          "dream": 3, "quail": 4}
# Rows 0 and 1 share a passage (question, premise, word, ...) in the fixtures: one group.
SHARED = {"boolq", "cosmos_qa", "anli_r2", "hellaswag", "quartz", "social_i_qa", "wic", "dream", "mc_taco",
          "paws", "quail", "multirc", "ethics_deontology", "ethics_virtue"}


def _opts(i: int, k: int) -> list[str]:
    return [f"option {j} for item {i}" for j in range(k)]


# One row i of each dataset, in its Hugging Face schema (field names and types).
SCHEMAS: dict[str, Callable[[int], dict[str, Any]]] = {
    "boolq": lambda i: {"question": f"does thing {i} float", "answer": bool(i % 2), "passage": f"Passage {i // 2}."},
    "sciq": lambda i: {"question": f"What is sample {i}?", "distractor1": f"wrong a {i}", "distractor2": f"wrong b {i}",
                       "distractor3": f"wrong c {i}", "correct_answer": f"right {i}", "support": f"Support {i}."},
    "cosmos_qa": lambda i: {"id": f"c{i}", "context": f"Story {i // 2}.", "question": f"Why {i}?",
                            **{f"answer{j}": o for j, o in enumerate(_opts(i, 4))}, "label": i % 4},
    "anli_r2": lambda i: {"uid": f"u{i}", "premise": f"Premise {i // 2}.", "hypothesis": f"Hypothesis {i}.",
                          "label": i % 3, "reason": ""},
    "amazon_polarity": lambda i: {"label": i % 2, "title": f"Title {i}", "content": f"Review body {i}."},
    "sst2": lambda i: {"idx": i, "sentence": f"film {i} is something", "label": i % 2},
    "hellaswag": lambda i: {"ind": i, "activity_label": "Cooking", "ctx_a": f"A cook {i}.", "ctx_b": "then",
                            "ctx": f"A cook {i}. then", "endings": _opts(i, 4), "source_id": f"activitynet~v_{i // 2}",
                            "split": "train", "split_type": "indomain", "label": str(i % 4)},
    "piqa": lambda i: {"goal": f"Goal {i}", "sol1": f"first way {i}", "sol2": f"second way {i}", "label": i % 2},
    "quartz": lambda i: {"id": f"q{i}", "question": f"More or less {i}?",
                         "choices": {"text": [f"more {i}", f"less {i}"], "label": ["A", "B"]}, "answerKey": "AB"[i % 2],
                         "para": f"Paragraph {i // 2}.", "para_id": f"p{i // 2}",
                         "para_anno": {"effect_prop": "speed"}, "question_anno": {"effect_prop": "speed"}},
    "openbookqa": lambda i: {"id": f"o{i}", "question_stem": f"Stem {i}",
                             "choices": {"text": _opts(i, 4), "label": ["A", "B", "C", "D"]}, "answerKey": "ABCD"[i % 4]},
    "social_i_qa": lambda i: {"context": f"Situation {i // 2}.", "question": f"What next {i}?", "answerA": f"a {i}",
                              "answerB": f"b {i}", "answerC": f"c {i}", "label": str(i % 3 + 1)},
    "wic": lambda i: {"word": f"word{i // 2}", "sentence1": f"First use {i}.", "sentence2": f"Second use {i}.",
                      "start1": 0, "start2": 0, "end1": 5, "end2": 6, "idx": i, "label": i % 2},
    "cola": lambda i: {"sentence": f"Sentence {i} here.", "label": i % 2, "idx": i},
    "dream": lambda i: {"id": i, "dialogue_id": f"d{i // 2}", "dialogue": [f"M: hello {i // 2}", f"W: hi {i // 2}"],
                        "question": f"Who {i}?", "choice": _opts(i, 3), "answer": _opts(i, 3)[i % 3]},
    "mc_taco": lambda i: {"sentence": f"Event {i // 4}.", "question": f"How long {i // 2}?", "answer": f"{i} minutes",
                          "label": i % 2, "category": 0},
    "paws": lambda i: {"id": i, "sentence1": f"Source {i // 2}.", "sentence2": f"Variant {i}.", "label": i % 2},
    "quail": lambda i: {"id": f"{i}", "context_id": f"f{i // 2}", "question_id": f"{i}", "domain": "fiction",
                        "metadata": {"author": "a", "title": "t", "url": "u"}, "context": f"Text {i // 2}.",
                        "question": f"Why {i}?", "question_type": "Causality", "answers": _opts(i, 4),
                        "correct_answer_id": i % 4},
    "multirc": lambda i: {"paragraph": f"Paragraph {i // 4}.", "question": f"Q {i // 2}?", "answer": f"A {i}",
                          "idx": {"paragraph": i // 4, "question": i // 2, "answer": i}, "label": i % 2},
    "ethics_justice": lambda i: {"label": i % 2, "scenario": f"I deserve reward {i}."},
    "ethics_deontology": lambda i: {"label": i % 2, "scenario": f"Please do task {i // 2}.", "excuse": f"But {i}."},
    "ethics_virtue": lambda i: {"label": int(i % 5 == 0), "scenario": f"Person {i // 5} helped. [SEP] trait{i % 5}"},
    "ethics_utilitarianism": lambda i: {"baseline": f"I won game {i}.", "less_pleasant": f"I lost game {i}."},
    "twitter_sentiment": lambda i: {"text": f"tweet number {i}", "label": i % 2},
    # reward modelling (Anthropic HH): two whole transcripts, the same dialogue with different answers
    "hh_rlhf": lambda i: {"chosen": f"\n\nHuman: question {i}?\n\nAssistant: helpful answer {i}",
                          "rejected": f"\n\nHuman: question {i}?\n\nAssistant: rude reply {i}"},
}
PREFERENCES = {"hh_rlhf"}  # beside the paper's NLP datasets: its reward-modelling data


@pytest.fixture(scope="module")
def hf() -> Any:
    return pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _fresh_registry_caches() -> Any:
    for cached in (D._builtin, D._parsed):
        cached.cache_clear()
    yield
    for cached in (D._builtin, D._parsed):
        cached.cache_clear()


def _copy(hf: Any, name: str) -> Any:
    """The fixture as the hub would give it: a DatasetDict with the table's split names."""
    rows, splits = [SCHEMAS[name](i) for i in range(N)], HUB_DATASETS[name].splits
    n = len(splits)  # contiguous blocks, as a question's rows sit together in one hub split
    return hf.DatasetDict({s: hf.Dataset.from_list(rows[k * N // n:(k + 1) * N // n]) for k, s in enumerate(splits)})


def _assert_balanced(splits: D.Splits) -> None:
    for s, xs in splits.as_dict().items():
        labels = Counter(e.label for e in xs)
        assert labels[0] == labels[1] > 0, (s, labels)


def test_every_paper_dataset_is_registered() -> None:
    assert set(NAMES) == PAPER | PREFERENCES and set(SCHEMAS) == PAPER | PREFERENCES
    assert all(name in DATASETS for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_formatter_binary_both_classes_one_group_per_question(name: str) -> None:
    fmt, labels = HUB_DATASETS[name].formatter, Counter()
    for i in range(N):
        items = fmt(SCHEMAS[name](i))
        assert items and len({group for _, _, group in items}) == 1  # every candidate: the question's group
        assert all(type(label) is int and label in (0, 1) and text.strip() for text, label, _ in items)
        if name in CHOICE:
            assert len(items) == CHOICE[name] and sum(label for _, label, _ in items) == 1
        labels.update(label for _, label, _ in items)
    assert labels[0] > 0 and labels[1] > 0
    if name in SHARED:
        assert fmt(SCHEMAS[name](0))[0][2] == fmt(SCHEMAS[name](1))[0][2]


@pytest.mark.parametrize("name", NAMES)
def test_local_copy_loads_balanced_and_grouped(name: str, hf: Any, tmp_path: Path) -> None:
    _copy(hf, name).save_to_disk(str(tmp_path / name))
    splits = load_dataset(f"hf:{tmp_path / name}?format={name}", seed=0)  # check_disjoint runs inside
    _assert_balanced(splits)
    split_of = {e.group: s for s, xs in splits.as_dict().items() for e in xs}
    for i in range(N):  # the kept candidates of each question all sit in one split
        texts = {text for text, _, _ in HUB_DATASETS[name].formatter(SCHEMAS[name](i))}
        assert len({split_of[e.group] for xs in splits.as_dict().values() for e in xs if e.text in texts}) <= 1


@pytest.mark.parametrize("name", NAMES)
def test_registered_name_reads_its_hub_id(name: str, hf: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load(path: str, config: str | None = None, **kwargs: Any) -> Any:
        calls.append((path, config, kwargs.get("revision")))
        return _copy(hf, name)

    monkeypatch.setattr(hf, "load_dataset", fake_load)
    entry = HUB_DATASETS[name]
    _assert_balanced(load_dataset(name, seed=1))
    assert calls == [(entry.hf_id, entry.config, entry.revision)]


def test_unlabelled_rows_are_dropped() -> None:
    assert F.sst2({"idx": 0, "sentence": "x", "label": -1}) == []
    assert F.hellaswag({**SCHEMAS["hellaswag"](0), "label": ""}) == []
    assert F.anli({**SCHEMAS["anli_r2"](0), "label": -1}) == []
    assert F.dream({**SCHEMAS["dream"](0), "answer": "not an option"}) == []


def _offline(hf: Any, monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hf.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf.config, "HF_DATASETS_CACHE", cache)


def test_missing_dataset_is_one_line_saying_how_to_get_it(hf: Any, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    _offline(hf, monkeypatch, tmp_path)
    with pytest.raises(OversightError) as info:
        load_dataset("boolq")
    message = str(info.value)
    assert "\n" not in message and "google/boolq" in message
    assert "HF_HUB_OFFLINE=0" in message and "hf:PATH?format=boolq" in message


def test_listing_marks_them_as_needing_the_hub(hf: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _offline(hf, monkeypatch, tmp_path)
    listed = {d["name"]: d for d in list_datasets()}
    assert all(not listed[n]["installed"] and listed[n]["size"] is None for n in NAMES)
    assert listed["boolq"]["source"] == "google/boolq"
    assert main(["datasets"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert all(MISSING in rows[n] for n in NAMES) and MISSING not in rows["geo_facts"]


def test_in_cache_reads_the_datasets_cache_layout(hf: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hf.config, "HF_DATASETS_CACHE", tmp_path)
    for prepared in ("google___boolq/default/0.0.0/abc", "hendrycks___ethics/justice/0.0.0/abc"):
        (tmp_path / prepared).mkdir(parents=True)
        (tmp_path / prepared / "dataset_info.json").write_text("{}")
    assert in_cache("boolq") and in_cache("ethics_justice")
    assert not in_cache("ethics_virtue") and not in_cache("sciq")


def test_format_option_errors(hf: Any, tmp_path: Path) -> None:
    _copy(hf, "boolq").save_to_disk(str(tmp_path / "boolq"))
    with pytest.raises(ConfigError, match="drop text"):
        load_dataset(f"hf:{tmp_path / 'boolq'}?format=boolq&text=question")
    with pytest.raises(UnknownNameError, match="no_such_format"):
        load_dataset(f"hf:{tmp_path / 'boolq'}?format=no_such_format")
    with pytest.raises(DatasetFormatError, match="not in allenai/sciq's schema") as info:
        load_dataset(f"hf:{tmp_path / 'boolq'}?format=sciq")
    assert "\n" not in str(info.value)
    splits = load_dataset(f"hf:{tmp_path / 'boolq'}?format=boolq&split=train")  # ?split= picks one
    assert sum(splits.sizes().values()) <= N // 2
