"""Results store, configs and CLI plumbing shared by both families."""

import argparse
import sqlite3
from dataclasses import dataclass, field

import numpy as np
import pytest

from oversight.config import add_arguments, config_hash, from_args, key_fields, make_config, varying_fields
from oversight.errors import ConfigError, UnknownNameError
from oversight.registry import Registry
from oversight.store import ArtifactStore, ResultsStore


def test_store_roundtrip_and_nan_is_null(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    store.put("k1", "w2s", {"a": 1}, {"pgr": float("nan"), "acc": np.float32(0.5)}, seconds=1.5)
    row = store.get("k1")
    assert row["config"] == {"a": 1} and row["results"] == {"pgr": None, "acc": 0.5}
    assert store.get("missing") is None
    assert [r["key"] for r in store.records(kind="w2s")] == ["k1"] and store.records(kind="amplify") == []


def test_store_crash_mid_write_leaves_no_row(tmp_path):
    store = ResultsStore(tmp_path / "r.db")

    class Boom:  # not serialisable -> the write fails after the transaction started
        pass

    with pytest.raises(TypeError):
        store.put("k", "w2s", {"a": 1}, {"bad": Boom()})
    assert store.get("k") is None
    with sqlite3.connect(tmp_path / "r.db") as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 0


def test_artifacts_atomic_and_no_temp_files_left(tmp_path, monkeypatch):
    arts = ArtifactStore(tmp_path / "a")
    arts.save_arrays("abc123", {"x": np.arange(3)})
    assert np.array_equal(arts.load_arrays("abc123")["x"], np.arange(3))

    import oversight.store as store_mod

    def crash(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        arts.save_arrays("def456", {"x": np.arange(3)})
    assert not arts.has("def456")
    assert [p.name for p in (tmp_path / "a").rglob("*") if p.is_file()] == ["abc123.npz"]


@dataclass
class Demo:
    lr: float = field(default=0.1, metadata={"help": "the learning rate"})
    steps: int | None = field(default=None, metadata={"help": "number of steps"})
    name: str = field(default="x", metadata={"help": "a name"})
    fast: bool = field(default=True, metadata={"help": "go fast: 99% of the time"})

    def validate(self):
        if self.lr <= 0:
            raise ConfigError("lr", "must be > 0")


def test_dataclass_to_cli_uses_field_docs_and_types():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Demo)
    assert "the learning rate" in parser.format_help()
    assert "99% of the time" in parser.format_help()  # written once, as plain text
    cfg = from_args(Demo, parser.parse_args(["--lr", "0.5", "--steps", "7", "--no-fast"]))
    assert cfg == Demo(lr=0.5, steps=7, name="x", fast=False)
    assert from_args(Demo, parser.parse_args(["--steps", "none"])).steps is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--lr", "fast"])


def test_invalid_config_names_the_field():
    with pytest.raises(ConfigError, match="'lr'"):
        make_config(Demo, lr=-1.0)
    with pytest.raises(ConfigError, match="'nope'"):
        make_config(Demo, nope=1)


def test_config_hash_is_stable_and_sensitive():
    a, b = Demo(), Demo(lr=0.2)
    assert config_hash(a, kind="k") == config_hash(Demo(), kind="k")
    assert config_hash(a, kind="k") != config_hash(b, kind="k")
    assert config_hash(a, kind="k") != config_hash(a, kind="other")


def test_a_field_added_later_keeps_old_keys_at_its_neutral_value():
    @dataclass
    class Before:
        lr: float = 0.1

    @dataclass
    class After:
        lr: float = 0.1
        decay: int = field(default=0, metadata={"help": "new", "key_neutral": 0})

    assert config_hash(After(), kind="k") == config_hash(Before(), kind="k")
    assert config_hash(After(decay=5), kind="k") != config_hash(Before(), kind="k")
    assert key_fields(After(decay=5)) == {"lr": 0.1, "decay": 5}


def test_varying_fields_name_what_tells_runs_apart():
    runs = [{"lr": 0.1, "seed": 0, "steps": 5}, {"lr": 0.1, "seed": 1, "steps": 9}, {"lr": 0.2, "seed": 1}]
    assert varying_fields(runs, ignore=("steps",)) == ["lr", "seed"]  # in the order the fields first appear
    assert varying_fields(runs[:1]) == []
    assert varying_fields([{"a": [1, 2]}, {"a": [1, 2]}]) == []  # unhashable values compare by content
    assert varying_fields([{"a": 1}, {}]) == ["a"]  # missing is a value of its own


def test_registry_errors_list_names():
    reg = Registry("widget")
    reg.add("a", 1)
    reg.register("b")(2)
    assert reg.get("b") == 2 and reg.names() == ["a", "b"]
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; available: a, b"):
        reg.get("c")
    with pytest.raises(ValueError):
        reg.add("a", 3)


def test_a_store_memo_recomputes_when_the_store_or_an_artifact_changes(tmp_path):
    import os
    import time

    from oversight.store import StoreMemo, artifacts_for

    store = ResultsStore(tmp_path / "r.db")
    store.put("k1", "w2s", {"a": 1}, {"acc": 0.5})
    arts = artifacts_for(store)
    arts.save_arrays("p", {"x": np.zeros(3)})
    memo, calls = StoreMemo(), []

    def value():
        calls.append(1)
        return {"rows": len(store.records()), "x": float(arts.load_arrays("p")["x"].sum())}

    def get():
        return memo.get(store, ("k1", arts.stamp(["p"])), value)

    first = get()
    first["rows"] = 99  # a caller's change does not reach the memo
    assert get() == {"rows": 1, "x": 0.0} and len(calls) == 1
    store.put("k2", "w2s", {"a": 2}, {"acc": 0.6})  # a new row: a new version
    assert get()["rows"] == 2 and len(calls) == 2
    time.sleep(0.01)
    arts.save_arrays("p", {"x": np.ones(3)})  # a rewritten artifact: a new stamp
    os.utime(arts.path("p"))
    assert get()["x"] == 3.0 and len(calls) == 3
