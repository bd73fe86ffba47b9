"""Fault injection for the shared infrastructure and the weak-to-strong pipeline: the same config gives
the same numbers whatever the caches hold or where a run was killed; damaged files are rebuilt;
bad input is one line that names the flag, before any work. (Amplification: test_faults_amplify.py;
data files: test_faults_data.py.)"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_bert, write_sentiment_jsonl

from oversight import progress
from oversight.cli import main
from oversight.config import config_hash, make_config, run_key
from oversight.errors import DamagedArtifactError, MissingArtifactError, StoreError
from oversight.store import ResultsStore, artifacts_for
from oversight.w2s import backbones, pipeline
from oversight.w2s import train as w2s_train
from oversight.w2s.config import W2SConfig, experiment_key, migrate_store
from oversight.w2s.pipeline import run_experiment


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return {"data": write_sentiment_jsonl(root / "sent.jsonl", n=400), "bert": save_tiny_bert(root / "bert")}


@pytest.fixture
def loading_draws_once(monkeypatch):
    """A backbone whose first load draws random numbers and later loads do not, as a rung converted
    once (from ONNX) and then read from its cache does."""
    converted: set[str] = set()
    real = backbones.load_backbone

    def load(spec, *args, **kwargs):
        if spec.name not in converted:
            converted.add(spec.name)
            torch.randn(1000)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(backbones, "load_backbone", load)  # what extract_features calls
    monkeypatch.setattr(w2s_train, "load_backbone", load)
    return converted


@pytest.fixture
def logs(monkeypatch, capsys):
    """Log lines (stderr) are on for this test."""
    monkeypatch.setattr(progress, "_QUIET", False)
    return capsys


def _cfg(tiny, **kw) -> W2SConfig:
    base = dict(dataset=f"file:{tiny['data']}", weak="bow", strong=f"hf:{tiny['bert']}", mode="head", epochs=3,
                batch_size=16, bf16=False, device="cpu")
    return make_config(W2SConfig, **{**base, **kw})


def _predictions(store: ResultsStore, results: dict) -> dict[str, np.ndarray]:
    arts = artifacts_for(store)
    return {role: arts.load_arrays(key)["test"] for role, key in results["run_keys"].items()}


# ---------------------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("mode", ["head", "finetune"])
def test_same_numbers_fresh_warm_and_after_a_kill(tiny, tmp_path, monkeypatch, loading_draws_once, mode):
    """Fresh store, a store whose caches are warm, and a run killed between its artifact and its
    row: identical predictions (the head's initial weights come from the seed, not from the cache)."""
    cfg = _cfg(tiny, mode=mode, **({"epochs": 2, "lr": 3e-3} if mode == "finetune" else {}))
    fresh = ResultsStore(tmp_path / "fresh.db")
    expected = _predictions(fresh, run_experiment(cfg, fresh))

    warm = ResultsStore(tmp_path / "warm.db")  # the fresh store's caches, none of its rows
    shutil.copytree(artifacts_for(fresh).root, artifacts_for(warm).root, dirs_exist_ok=True)
    got = _predictions(warm, run_experiment(cfg, warm))
    for role in expected:
        np.testing.assert_array_equal(got[role], expected[role], err_msg=f"{mode} {role}: warm cache differs")

    killed = ResultsStore(tmp_path / "killed.db")
    real_put = ResultsStore.put

    def put(self, key, kind, *args, **kwargs):
        if kind == "w2s_ceiling":
            raise KeyboardInterrupt  # the kill: the ceiling's artifact is written, its row is not
        return real_put(self, key, kind, *args, **kwargs)

    monkeypatch.setattr(ResultsStore, "put", put)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, killed)
    monkeypatch.setattr(ResultsStore, "put", real_put)
    got = _predictions(killed, run_experiment(cfg, killed))
    for role in expected:
        np.testing.assert_array_equal(got[role], expected[role], err_msg=f"{mode} {role}: resumed run differs")


def test_a_new_store_has_artifacts_of_its_own(tmp_path):
    a, b = ResultsStore(tmp_path / "a.db"), ResultsStore(tmp_path / "b.db")
    artifacts_for(a).save_arrays("k1", {"x": np.arange(3)})
    assert not artifacts_for(b).has("k1")
    assert artifacts_for(a).root == tmp_path / "a.artifacts"


def test_a_store_made_before_keeps_the_shared_artifacts_folder(tmp_path):
    db = sqlite3.connect(tmp_path / "old.db")  # a store as the previous release made it
    db.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, kind TEXT NOT NULL, config TEXT NOT NULL, "
               "results TEXT NOT NULL, created REAL NOT NULL, seconds REAL)")
    db.commit()
    db.close()
    assert artifacts_for(ResultsStore(tmp_path / "old.db")).root == tmp_path / "artifacts"


# ---------------------------------------------------------------------------------------- identity

def test_fields_that_do_not_change_the_numbers_do_not_change_the_key(tiny):
    assert experiment_key(_cfg(tiny, device="cpu")) == experiment_key(_cfg(tiny, device="auto"))
    assert experiment_key(_cfg(tiny, loss="xent", alpha_max=0.5)) == experiment_key(_cfg(tiny, loss="xent"))
    assert experiment_key(_cfg(tiny, loss="logconf", alpha_max=0.5)) != experiment_key(_cfg(tiny, loss="logconf"))
    assert experiment_key(_cfg(tiny, max_examples=200)) != experiment_key(_cfg(tiny))
    assert run_key(_cfg(tiny), kind="a") != run_key(_cfg(tiny), kind="b")


def test_rows_stored_before_numerics_were_keyed_stay_apart(tiny, tmp_path):
    """Identity version 3 keys the numerics that ran; rows stored before did not record them, so they
    are not rekeyed (nor reused): they stay under their keys, and a rerun makes today's row."""
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny)
    run_experiment(cfg, store)
    new_key = experiment_key(cfg)
    old_key = config_hash(asdict(cfg), kind="w2s", data_version=pipeline.data_version(cfg.dataset))
    record = store.get(new_key)
    store.delete(new_key)
    store.put(old_key, "w2s", record["config"], record["results"])
    store.set_meta("identity_version:w2s", "2")
    assert migrate_store(store) == 0
    assert store.get(old_key) is not None and store.get(new_key) is None
    assert store.meta("identity_version:w2s") == "3"


def test_report_never_merges_runs_of_different_identities(tiny, tmp_path, capsys):
    store = tmp_path / "o.db"
    base = ["w2s", "run", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['bert']}",
            "--seeds", "1", "--store", str(store), "--quiet", "--epochs", "2", "--device", "cpu", "--no-bf16"]
    assert main(base) == 0
    assert main(base + ["--max-examples", "200"]) == 0
    assert main(base + ["--max-examples", "200", "--device", "auto"]) == 0  # same identity: no new cell
    out = tmp_path / "report"
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "max_examples=None" in page and "max_examples=200" in page
    assert len(list(out.glob("w2s_file*.png"))) == 2  # one figure per variant: each takes its own ceiling
    assert (out / "w2s_method_comparison.png").exists() and (out / "w2s_overfitting.png").exists()
    from oversight.w2s.report import collect
    rows = collect(ResultsStore(store))
    assert sorted(r["variant"] for r in rows) == ["max_examples=200", "max_examples=None"]
    # the results docs: one markdown file, a section per variant, each with its provenance
    assert main(["report", "--store", str(store), "--markdown", str(tmp_path / "docs")]) == 0
    text = (tmp_path / "docs" / "w2s.md").read_text()
    assert text.count("### Classification, --select weak-val, max_examples=") == 2 and "seeds 0;" in text
    assert "runs made at commit" in text and "not recorded" not in text
    assert "median over datasets" in text and f"report --store {store} --markdown" in text
    assert not (tmp_path / "docs" / "amplification.md").exists()  # no amplification runs: no file



# ---------------------------------------------------------------------------------------- damage

def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbled":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0x5A for b in data[middle:middle + 64]) + data[middle + 64:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "deleted":
        path.unlink()


@pytest.mark.parametrize("how", ["truncated", "garbled", "empty", "deleted"])
def test_a_damaged_artifact_is_recomputed_with_one_line_naming_it(tiny, tmp_path, logs, how):
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny)
    first = run_experiment(cfg, store)
    expected = _predictions(store, first)
    victim = artifacts_for(store).path(first["run_keys"]["ceiling"])
    _damage(victim, how)
    logs.readouterr()
    again = run_experiment(cfg, store)
    err = logs.readouterr().err
    assert str(victim) in err and "redoing" in err
    for role, probs in _predictions(store, again).items():
        np.testing.assert_array_equal(probs, expected[role])
    artifacts_for(store).load_arrays(first["run_keys"]["ceiling"])  # rebuilt, and it reads back


def test_a_garbled_artifact_fails_its_checksum(tmp_path):
    arts = artifacts_for(ResultsStore(tmp_path / "o.db"))
    path = arts.save_arrays("k", {"x": np.zeros(5000, dtype=np.float32)})
    data = bytearray(path.read_bytes())
    # flip bytes inside the array's data, leaving the zip structure intact (npz is stored, not compressed)
    offset = data.index(b"\x00" * 1024) + 512
    data[offset:offset + 4] = b"\x01\x02\x03\x04"
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedArtifactError, match=str(path)):
        arts.load_arrays("k")
    with pytest.raises(MissingArtifactError, match="missing"):
        arts.load_arrays("nope")


def test_a_damaged_row_is_dropped_and_redone(tiny, tmp_path, logs):
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny)
    first = run_experiment(cfg, store)
    weak_key = first["run_keys"]["weak"]
    rows = len(store.records())
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE runs SET results = ? WHERE key = ?", ('{"test_acc": 0.9', weak_key))
        db.execute("UPDATE runs SET config = ? WHERE key = ?", ("not json", experiment_key(cfg)))
    assert len(store.records()) == rows - 2 and len(store.unreadable) == 2  # listed, not raised
    logs.readouterr()
    again = run_experiment(cfg, store)
    assert "damaged" in logs.readouterr().err
    assert again["w2s_acc"] == first["w2s_acc"] and store.get(weak_key) is not None


@pytest.mark.parametrize("what", ["directory", "not a database", "damaged database"])
def test_a_store_that_is_not_a_database_is_one_line(tmp_path, capsys, what):
    path = tmp_path / "o.db"
    if what == "directory":
        path.mkdir()
    elif what == "not a database":
        path.write_text("hello, I am a text file\n" * 100)
    else:
        store = ResultsStore(path)
        for i in range(200):
            store.put(f"k{i}", "w2s", {"i": i}, {"x": "y" * 100})
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = bytearray(path.read_bytes())
        data[4096:4096 + 2000] = b"\xff" * 2000  # page 2 onward: the table's pages
        path.write_bytes(bytes(data))
    code = main(["report", "--store", str(path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(path) in err[0] and "Traceback" not in err[0], err
    with pytest.raises(StoreError):
        ResultsStore(path).records()


def test_report_skips_and_lists_what_it_cannot_read(tiny, tmp_path):
    store = ResultsStore(tmp_path / "o.db")
    first = run_experiment(_cfg(tiny), store)
    run_experiment(_cfg(tiny, seed=1), store)
    artifacts_for(store).path(first["run_keys"]["w2s"]).unlink()
    out = tmp_path / "report"
    assert main(["report", "--store", str(store.path), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "Skipped" in page and first["run_keys"]["w2s"] in page


def _write_rows(path: str, start: int) -> None:
    store = ResultsStore(path)
    for i in range(start, start + 40):
        store.put(f"k{i}", "w2s", {"i": i}, {"v": i})


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "o.db")
    ResultsStore(path)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_write_rows, args=(path, 40 * j)) for j in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(r["results"]["v"] for r in ResultsStore(path).records()) == list(range(160))


# ---------------------------------------------------------------------------------------- validation

def _one_line_error(capsys, argv: list[str], flag: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(err) == 1 and flag in err[0] and "Traceback" not in err[0], (argv, err)


@pytest.mark.parametrize(("extra", "flag"), [
    (["--seeds", "0"], "--seeds"), (["--seeds", "-1"], "--seeds"), (["--dataset", ""], "dataset"),
    (["--loss", ""], "loss"), (["--lr", "inf"], "--lr"), (["--lr", "nan"], "--lr"), (["--seed", "-1"], "seed"),
    (["--top-k-layers", "-1"], "top_k_layers"), (["--alpha-max", "nan"], "--alpha-max"),
    (["--epochs", "0"], "epochs"), (["--weak", "nope"], "nope"), (["--dataset", "file:/no/such.jsonl"], "/no/such.jsonl"),
])
def test_w2s_run_refuses_bad_values_before_any_work(tiny, tmp_path, capsys, extra, flag):
    store = tmp_path / "o.db"
    argv = ["w2s", "run", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['bert']}",
            "--store", str(store), "--quiet", *extra]
    _one_line_error(capsys, argv, flag)
    assert not store.exists() or ResultsStore(store).records() == []


def test_a_typo_in_the_third_model_is_found_before_the_first_run(tiny, tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr("oversight.w2s.cli.run_experiment", lambda cfg, store: ran.append(cfg))
    argv = ["w2s", "sweep", "--dataset", f"file:{tiny['data']}", "--models", f"bow,hf:{tiny['bert']},mpnet-bsae",
            "--store", str(tmp_path / "o.db"), "--quiet"]
    _one_line_error(capsys, argv, "mpnet-bsae")
    assert ran == []
    _one_line_error(capsys, argv[:4] + ["--models", "bow,", "--store", str(tmp_path / "o.db")], "models")
    _one_line_error(capsys, argv[:4] + ["--losses", "", "--store", str(tmp_path / "o.db")], "losses")


def test_a_preset_fills_only_the_flags_not_given(tiny, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("oversight.w2s.cli._execute", lambda cells, args: seen.extend(cells) or 0)
    data = f"file:{tiny['data']}"
    # the values given equal the parser's defaults; they still win over the preset's
    assert main(["w2s", "sweep", "--preset", "geo-finetune", "--dataset", data, "--mode", "head", "--seeds", "3"]) == 0
    cfgs = [c for cell in seen for c in cell]
    assert {c.dataset for c in cfgs} == {data} and {c.mode for c in cfgs} == {"head"}
    assert {c.weak for c in cfgs} == {"minilm-l6"} and len(seen[0]) == 3  # the preset's models; seeds given
    seen.clear()
    assert main(["w2s", "sweep", "--preset", "geo-finetune"]) == 0
    assert {c.mode for cell in seen for c in cell} == {"finetune"}


def test_stored_configs_are_valid_json(tiny, tmp_path):
    store = ResultsStore(tmp_path / "o.db")
    run_experiment(_cfg(tiny), store)
    with sqlite3.connect(store.path) as db:
        for config, results in db.execute("SELECT config, results FROM runs"):
            json.loads(config, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
            json.loads(results, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_threads_from_the_environment_are_checked(monkeypatch):
    from oversight.errors import ConfigError
    from oversight.runtime import set_threads

    monkeypatch.setenv("OVERSIGHT_THREADS", "-1")
    with pytest.raises(ConfigError, match="OVERSIGHT_THREADS"):
        set_threads()
    with pytest.raises(ConfigError, match="threads"):
        set_threads(-2)


def test_amplify_rows_keyed_with_device_and_threads_are_rekeyed_once(tmp_path):
    from oversight.amplification.runs import KIND, migrate_store, run_key
    from oversight.amplification.train import AmplifyConfig, fields_the_mode_uses
    from oversight.config import config_to_dict, key_fields

    store = ResultsStore(tmp_path / "o.db")
    cfg = AmplifyConfig(task="union_find", mode="amplify", size=8, steps=10).with_task_defaults()
    stored = config_to_dict(cfg)
    stored.pop("checkpoint_every")  # a row of the previous release: no such field yet
    old_key = config_hash({k: v for k, v in fields_the_mode_uses(key_fields(cfg)).items() if k != "checkpoint_every"},
                          kind=KIND)
    store.put(old_key, KIND, stored, {"test_acc": 0.5})
    artifacts_for(store).save_arrays(old_key, {"x.w": np.ones(3)})
    twin = dict(stored, threads=2)  # the same run on more threads: one identity, one row
    store.put("twin", KIND, twin, {"test_acc": 0.5})
    assert migrate_store(store) == 1
    new_key = run_key(cfg, test_set="v1")  # a row of before the fresh test set: measured on v1
    assert new_key != old_key and store.get(new_key)["results"] == {"test_acc": 0.5}
    assert [r["key"] for r in store.records(KIND)] == [new_key]
    np.testing.assert_array_equal(artifacts_for(store).load_arrays(new_key)["x.w"], np.ones(3))
    assert migrate_store(store) == 0


def test_w2s_refuses_an_artifacts_folder_it_cannot_write_before_training(tiny, tmp_path, capsys, monkeypatch):
    trained = []
    monkeypatch.setattr("oversight.w2s.cli.run_jobs", lambda *a, **k: trained.append(a))
    store = tmp_path / "o.db"
    (tmp_path / "o.artifacts").write_text("a file where the folder goes")
    argv = ["w2s", "run", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['bert']}",
            "--store", str(store), "--quiet"]
    _one_line_error(capsys, argv, "o.artifacts")
    assert trained == []


def test_features_do_not_depend_on_what_the_store_embedded_before(tiny, tmp_path, monkeypatch):
    """A text's features depend on its batch-mates (bf16 kernels on CPU, by up to ~5e-3); simulated
    here by a shift that depends on the chunk. A run's numbers must not depend on which corpus the
    store embedded first: each corpus is embedded in one canonical pass of its own."""
    real = w2s_train.extract_features

    def batch_dependent(spec, texts, *args, **kwargs):
        return real(spec, texts, *args, **kwargs) + 1e-3 * len(texts)

    monkeypatch.setattr(w2s_train, "extract_features", batch_dependent)
    cfg = _cfg(tiny)
    other = ResultsStore(tmp_path / "other_first.db")
    run_experiment(_cfg(tiny, max_examples=120), other)  # embeds a small corpus first
    got = _predictions(other, run_experiment(cfg, other))
    clean = ResultsStore(tmp_path / "clean.db")
    expected = _predictions(clean, run_experiment(cfg, clean))
    for role in expected:
        np.testing.assert_array_equal(got[role], expected[role], err_msg=role)
