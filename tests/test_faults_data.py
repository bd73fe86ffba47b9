"""Fault injection for data as people have it: text files in other encodings or with a byte-order
mark, garbled lines, empty or numeric texts, tiny or numeric training sets for the bow rung, and
feature extraction that is interrupted or finds its cache file damaged. Each is one line that
names the file (or flag) and what to do, or it is repaired with one log line; never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_models import NEGATIVE, POSITIVE, save_tiny_bert

from oversight import progress
from oversight.cli import main
from oversight.errors import ConfigError, OversightError
from oversight.store import ArtifactStore, ResultsStore
from oversight.w2s import pipeline
from oversight.w2s import train as w2s_train
from oversight.w2s.datasets import DatasetFormatError, load_dataset
from oversight.w2s.linear import BowClassifier
from oversight.w2s.models import extract_features, get_model_spec
from oversight.w2s.train import FeatureCache


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("data_faults") / "bert")


@pytest.fixture
def logs(monkeypatch, capsys):
    """Log lines (stderr) are on for this test."""
    monkeypatch.setattr(progress, "_QUIET", False)
    return capsys


def _one_line_error(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(err) == 1 and err[0].startswith("oversight: error: "), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    return err[0]


def _run(path: Path | str, bert: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["w2s", "run", "--dataset", f"file:{path}", "--weak", "bow", "--strong", f"hf:{bert}",
            "--store", str(tmp_path / "o.db"), "--quiet", "--seeds", "1", "--epochs", "1", *extra]


def _reviews(n: int = 120) -> list[tuple[str, int]]:
    """Texts with an accented word, half positive."""
    return [(f"café {POSITIVE[i % 6] if i % 2 else NEGATIVE[i % 6]} number {i}", i % 2) for i in range(n)]


def _write_csv(path: Path, rows: list[tuple[str, int]], encoding: str, bom: bytes = b"") -> Path:
    body = "text,label\n" + "".join(f"{t},{y}\n" for t, y in rows)
    path.write_bytes(bom + body.encode(encoding))
    return path


# ---------------------------------------------------------------------------------------- 1. text files

def test_a_utf8_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = _write_csv(tmp_path / "excel.csv", _reviews(), "utf-8", bom=b"\xef\xbb\xbf")
    splits = load_dataset(f"file:{path}")
    texts = {e.text for xs in splits.as_dict().values() for e in xs}
    assert texts and all(t.startswith("café ") for t in texts)


def test_other_encodings_through_the_encoding_option(tmp_path):
    path = _write_csv(tmp_path / "latin.csv", _reviews(), "latin-1")
    spec = f"file:{path}?encoding=latin-1"
    splits = load_dataset(spec)
    assert all(e.text.startswith("café ") for xs in splits.as_dict().values() for e in xs)
    # the option is part of the name, so it is part of the run key; the file's version still counts
    assert pipeline.data_version(spec) == pipeline.data_version(f"file:{path}") != ""
    cfg = pipeline.W2SConfig(dataset=spec, weak="bow", strong="bow-unused")
    assert pipeline.experiment_key(cfg) != pipeline.experiment_key(pipeline.W2SConfig(
        dataset=f"file:{path}", weak="bow", strong="bow-unused"))
    with pytest.raises(ConfigError, match=r"\?encoding=klingon"):
        load_dataset(f"file:{path}?encoding=klingon")


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_bytes_the_encoding_cannot_read_are_one_line_with_offset_and_option(tmp_path, bert, capsys, bom):
    path = _write_csv(tmp_path / "latin.csv", _reviews(), "latin-1", bom=bom)
    offset = path.read_bytes().index(b"\xe9")  # the first é, in the file's own bytes
    _one_line_error(capsys, _run(path, bert, tmp_path), str(path), f"offset {offset} (line 2)",
                    "not valid UTF-8", "?encoding=latin-1")


def test_a_utf16_file_is_told_to_name_utf16(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_bytes("text,label\nnice,1\n".encode("utf-16"))
    with pytest.raises(DatasetFormatError, match=r"offset 0 .*\?encoding=utf-16"):
        load_dataset(f"file:{path}")
    _write_csv(path, _reviews(), "utf-16")
    assert load_dataset(f"file:{path}?encoding=utf-16").sizes()["test"] > 0


def test_garbled_json_lines_name_the_file_and_line(tmp_path, bert, capsys):
    good = [json.dumps({"text": t, "label": y}) for t, y in _reviews(40)]
    path = tmp_path / "garbled.jsonl"
    path.write_text("\n".join([*good[:5], '{"text": "cut off', *good[5:]]) + "\n")
    _one_line_error(capsys, _run(path, bert, tmp_path), str(path), "line 6", "invalid JSON")
    path.write_text("\n".join([*good[:3], '["a list"]', *good[3:]]))
    _one_line_error(capsys, _run(path, bert, tmp_path), str(path), "line 4", "not an object")
    whole = tmp_path / "lines.json"  # JSON lines in a .json file
    whole.write_text("\n".join(good))
    _one_line_error(capsys, _run(whole, bert, tmp_path), str(whole), "line 2", ".jsonl")


# ---------------------------------------------------------------------------------------- 2. empty and numeric texts

def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_empty_texts_are_dropped_with_one_count_line(tmp_path, logs):
    rows = [{"text": t, "label": y} for t, y in _reviews(200)]
    rows += [{"text": "", "label": 1}, {"text": "   \t", "label": 0}, {"text": None, "label": 1},
             {"label": 0}, {"text": float("nan"), "label": 1}, {"text": "no label here"},
             {"text": rows[0]["text"].upper(), "label": rows[0]["label"]}]
    path = _jsonl(tmp_path / "holes.jsonl", rows)
    logs.readouterr()
    splits = load_dataset(f"file:{path}")
    err = logs.readouterr().err.strip().splitlines()
    assert err == [f"{path}: dropped 7 of 207 rows (5 with empty text, 1 with no label, "
                   "1 repeating an earlier text)"]
    assert "nan" not in {e.text for xs in splits.as_dict().values() for e in xs}
    load_dataset(f"file:{path}", seed=1)  # a sweep loads once per run: the line is said once
    assert logs.readouterr().err == ""


def test_numeric_texts_are_read_as_their_string_form(tmp_path):
    path = _jsonl(tmp_path / "numbers.jsonl", [{"text": i * 7, "label": i % 2} for i in range(100)]
                  + [{"text": 0.5 + i, "label": i % 2} for i in range(100)])
    texts = {e.text for xs in load_dataset(f"file:{path}").as_dict().values() for e in xs}
    assert texts and texts <= {str(i * 7) for i in range(100)} | {str(0.5 + i) for i in range(100)}
    path.write_text(json.dumps({"text": ["a", "b"], "label": 1}) + "\n")
    with pytest.raises(DatasetFormatError, match=r"row 1: column 'text' holds a list, not text"):
        load_dataset(f"file:{path}")


def test_rows_without_a_group_are_each_their_own_group(tmp_path):
    # a few rows name their group, most do not: those must not become one group called "None"
    rows = [{"text": t, "label": y, **({"group": "g"} if i < 4 else {})} for i, (t, y) in enumerate(_reviews(120))]
    splits = load_dataset(f"file:{_jsonl(tmp_path / 'some_groups.jsonl', rows)}")
    groups = [e.group for xs in splits.as_dict().values() for e in xs]
    assert "None" not in groups and len(set(groups)) >= len(groups) - 4


def test_a_file_with_no_usable_rows_is_one_line_with_the_counts(tmp_path, bert, capsys):
    path = _jsonl(tmp_path / "blank.jsonl", [{"text": " ", "label": i % 2} for i in range(5)] + [{"text": "x"}])
    _one_line_error(capsys, _run(path, bert, tmp_path), str(path), "no usable rows",
                    "of 6 rows: 5 with empty text, 1 with no label")


# ---------------------------------------------------------------------------------------- 3. bow on tiny data

def test_bow_on_numeric_texts_with_max_examples_8_runs(tmp_path, bert, capsys):
    path = _jsonl(tmp_path / "numbers.jsonl", [{"text": i, "label": i % 2} for i in range(200)])
    code = main(_run(path, bert, tmp_path, "--max-examples", "8", "--json"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert 0 <= json.loads(out.strip().splitlines()[-1])["weak_acc"] <= 1
    (record,) = [r for r in ResultsStore(tmp_path / "o.db").records() if "split_sizes" in r["results"]]
    assert record["results"]["split_sizes"] == {"weak_train": 2, "student_train": 2, "validation": 2, "test": 2}


def test_bow_falls_back_only_where_the_default_vocabulary_is_empty(logs):
    words = [f"{POSITIVE[i % 6]} film {i}" if i % 2 else f"{NEGATIVE[i % 6]} film {i}" for i in range(40)]
    default = BowClassifier(seed=0).fit(words, np.arange(40) % 2)
    assert default.vectorizer.min_df == 2 and logs.readouterr().err == ""  # the rung as it was
    digits = BowClassifier(seed=0).fit(["1", "2", "a"], np.array([1.0, 0.0, 1.0]))
    assert "3 training texts have no words in 2+ texts; using words" in logs.readouterr().err
    assert digits.predict_proba(["1", "2"]).shape == (2,)
    symbols = BowClassifier(seed=0).fit(["!!", "??"], np.array([1.0, 0.0]))
    assert "character 1-3-grams" in logs.readouterr().err
    assert symbols.predict_proba(["!!"])[0] > symbols.predict_proba(["??"])[0]


def test_bow_with_no_words_at_all_is_one_oversight_error():
    with pytest.raises(OversightError, match="the bow rung found no words in the 2 training texts") as err:
        BowClassifier().fit([" ", ""], np.array([1.0, 0.0]))
    assert "\n" not in str(err.value)


def test_max_examples_below_the_minimum_names_the_flag_and_the_minimum(tmp_path, bert, capsys):
    path = _jsonl(tmp_path / "ok.jsonl", [{"text": t, "label": y} for t, y in _reviews(120)])
    _one_line_error(capsys, _run(path, bert, tmp_path, "--max-examples", "5"), "--max-examples 8", "got 5")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_examples_8_leaves_no_split_empty(tmp_path, seed):
    path = _jsonl(tmp_path / "ok.jsonl", [{"text": t, "label": y} for t, y in _reviews(60)])
    assert set(load_dataset(f"file:{path}", seed=seed, max_examples=8).sizes().values()) == {2}


# ---------------------------------------------------------------------------------------- 4. feature cache

# 40 distinct texts of many lengths, so batches pad differently
TEXTS = [" ".join([POSITIVE[i % 6], NEGATIVE[(i * 5) % 6], "film"] + ["very"] * (i % 9) + [str(i)]) for i in range(40)]


def _cache(root: Path, bert: Path) -> FeatureCache:
    return FeatureCache(ArtifactStore(root), get_model_spec(f"hf:{bert}"))


def test_an_interrupted_extraction_keeps_every_finished_chunk(tmp_path, bert, monkeypatch):
    monkeypatch.setattr(FeatureCache, "CHUNK", 8)
    expected = _cache(tmp_path / "whole", bert).get(TEXTS, batch_size=4)
    calls: list[int] = []

    def interrupted(spec, texts, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(texts))
        return extract_features(spec, texts, **kwargs)

    monkeypatch.setattr(w2s_train, "extract_features", interrupted)
    cache = _cache(tmp_path / "stopped", bert)
    with pytest.raises(KeyboardInterrupt):
        cache.get(TEXTS, batch_size=4)
    kept = cache.artifacts.load_arrays(cache.key)
    first_two = sorted(FeatureCache.text_hash(t) for t in TEXTS)[:16]
    assert kept["hashes"].tolist() == first_two and kept["features"].shape[0] == 16

    counted: list[int] = []
    monkeypatch.setattr(w2s_train, "extract_features",
                        lambda spec, texts, **kw: counted.append(len(texts)) or extract_features(spec, texts, **kw))
    resumed = cache.get(TEXTS, batch_size=4)
    assert counted == [8, 8, 8]  # only the rest, in the chunks it would have had
    np.testing.assert_array_equal(resumed, expected)
    monkeypatch.setattr(FeatureCache, "CHUNK", 10_000)  # one shot: other batch-mates, other padding
    np.testing.assert_allclose(_cache(tmp_path / "one_shot", bert).get(TEXTS, batch_size=4), expected, atol=1e-5)


@pytest.mark.parametrize("how", ["truncated", "garbled", "empty", "not_features"])
def test_a_damaged_feature_cache_is_recomputed_with_one_line_naming_it(tmp_path, bert, logs, how):
    cache = _cache(tmp_path / "arts", bert)
    expected = cache.get(TEXTS[:10])
    path = cache.artifacts.path(cache.key)
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbled":
        path.write_bytes(data[:100] + bytes(b ^ 0xFF for b in data[100:300]) + data[300:])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        cache.artifacts.save_arrays(cache.key, {"something": np.zeros(3)})
    logs.readouterr()
    again = cache.get(TEXTS[:10])
    err = [line for line in logs.readouterr().err.splitlines() if str(path) in line]
    assert len(err) == 1 and "recomputing the features" in err[0], err
    np.testing.assert_array_equal(again, expected)
    assert cache.artifacts.load_arrays(cache.key)["hashes"].shape == (10,)  # rebuilt, and it reads back
