"""End to end: the weak-to-strong pipeline on a tiny task, resume after a crash, science hygiene."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import save_tiny_bert, write_sentiment_jsonl  # noqa: E402

from oversight.cli import main  # noqa: E402
from oversight.config import make_config  # noqa: E402
from oversight.store import ResultsStore  # noqa: E402
from oversight.w2s import pipeline  # noqa: E402
from oversight.w2s.pipeline import W2SConfig, run_experiment  # noqa: E402

JSON_KEYS = {"dataset", "weak", "strong", "loss", "weak_acc", "w2s_acc", "ceiling_acc", "pgr", "pgr_ci_low",
             "pgr_ci_high", "seeds"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("w2s")
    return {"data": write_sentiment_jsonl(root / "sent.jsonl"), "bert": save_tiny_bert(root / "bert")}


def _cfg(tiny, **kw):
    base = dict(dataset=f"file:{tiny['data']}", weak="bow", strong=f"hf:{tiny['bert']}", mode="finetune",
                epochs=4, lr=3e-3, batch_size=16, bf16=False, device="cpu")
    base.update(kw)
    return make_config(W2SConfig, **base)


def test_cli_json_tiny_random_model_learns_above_chance(tiny, tmp_path, capsys):
    store = tmp_path / "o.db"
    code = main(["w2s", "run", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['bert']}",
                 "--loss", "xent,logconf", "--seeds", "2", "--store", str(store), "--json", "--quiet"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["loss"] for r in rows] == ["xent", "logconf"]
    for r in rows:
        assert JSON_KEYS <= set(r) and r["seeds"] == 2
        assert r["weak_acc"] > 0.8, r  # TF-IDF + logistic learns the word-count task
        # an MLP on a randomly initialised BERT's mean-pooled features learns it too
        assert r["ceiling_acc"] > 0.75, r
        assert 0.0 <= r["w2s_acc"] <= 1.0 and (r["pgr"] is None) == (r["ceiling_acc"] <= r["weak_acc"])
    assert rows[0]["w2s_acc"] > 0.75, rows[0]
    # weak runs and ceilings are shared by both losses: 2 weak + 2 ceiling + 4 students + 4 cells
    kinds = [rec["kind"] for rec in ResultsStore(store).records()]
    assert kinds.count("w2s_weak") == 2 and kinds.count("w2s_ceiling") == 2 and kinds.count("w2s_student") == 4
    assert kinds.count("w2s") == 4


def test_finetune_tiny_random_model_from_weak_labels(tiny, tmp_path):
    """Full finetuning of a randomly initialised BERT on bow's soft labels beats chance by far."""
    out = run_experiment(_cfg(tiny), ResultsStore(tmp_path / "o.db"))
    assert out["ceiling_acc"] > 0.85 and out["w2s_acc"] > 0.85, out


def test_resume_after_crash_redoes_only_the_missing_run(tiny, tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny, epochs=1)
    calls: list[str] = []
    real = pipeline._fit

    def crash_on_student(spec, settings, *args, desc, **kw):
        calls.append(desc.split()[0])
        if desc.startswith("w2s"):
            raise KeyboardInterrupt  # Ctrl-C in the middle of the student's training
        return real(spec, settings, *args, desc=desc, **kw)

    monkeypatch.setattr(pipeline, "_fit", crash_on_student)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, store)
    assert calls == ["weak", "ceiling", "w2s"]
    assert sorted(r["kind"] for r in store.records()) == ["w2s_ceiling", "w2s_weak"]  # no half-written row

    calls.clear()
    monkeypatch.setattr(pipeline, "_fit", lambda *a, desc, **k: (calls.append(desc.split()[0]),
                                                                                  real(*a, desc=desc, **k))[1])
    first = run_experiment(cfg, store)
    assert calls == ["w2s"]  # the finished weak and ceiling runs are reused
    calls.clear()
    again = run_experiment(cfg, store)
    assert calls == [] and again == first  # a finished experiment is never redone


def test_weak_never_sees_student_labels_and_test_never_trains(tiny, tmp_path, monkeypatch):
    seen: dict[str, tuple[list[str], np.ndarray]] = {}
    real = pipeline._fit

    def spy(spec, settings, train_texts, targets, artifacts, desc, **kwargs):
        seen[desc.split()[0]] = (list(train_texts), np.asarray(targets))
        return real(spec, settings, train_texts, targets, artifacts, desc=desc, **kwargs)

    monkeypatch.setattr(pipeline, "_fit", spy)
    cfg = _cfg(tiny, epochs=1, mode="head")
    run_experiment(cfg, ResultsStore(tmp_path / "o.db"))
    from oversight.w2s.datasets import load_dataset

    splits = load_dataset(cfg.dataset, seed=cfg.seed)
    student = {e.text for e in splits.student_train}
    test = {e.text for e in splits.test}
    assert not set(seen["weak"][0]) & student and not set(seen["weak"][0]) & test
    assert set(seen["ceiling"][0]) == student and set(seen["w2s"][0]) == student
    # the student learns from weak soft labels, not from the ground truth
    truth = np.array([e.label for e in splits.student_train], dtype=float)
    assert not np.array_equal(seen["w2s"][1], truth) and ((seen["w2s"][1] > 0) & (seen["w2s"][1] < 1)).any()


def test_same_config_and_seed_reproduce_exactly(tiny, tmp_path):
    cfg = _cfg(tiny, epochs=2, mode="head")
    a = run_experiment(cfg, ResultsStore(tmp_path / "a.db"))
    b = run_experiment(cfg, ResultsStore(tmp_path / "b.db"))
    for key in ("weak_acc", "w2s_acc", "ceiling_acc", "agreement"):
        assert a[key] == b[key]


def test_unknown_names_and_bad_config_are_clear_errors(tiny, tmp_path, capsys):
    assert main(["w2s", "run", "--dataset", "nope", "--store", str(tmp_path / "o.db")]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err and "rotten_tomatoes" in err
    assert main(["w2s", "run", "--weak", "gpt-17", "--dataset", f"file:{tiny['data']}",
                 "--store", str(tmp_path / "o.db")]) == 2
    assert "unknown model 'gpt-17'" in capsys.readouterr().err
    assert main(["w2s", "run", "--loss", "hinge", "--store", str(tmp_path / "o.db")]) == 2
    assert "unknown loss 'hinge'; available: xent, logconf" in capsys.readouterr().err
    assert main(["w2s", "run", "--epochs", "0", "--store", str(tmp_path / "o.db")]) == 2
    assert "'epochs'" in capsys.readouterr().err


@pytest.mark.slow
def test_real_pretrained_rung_in_the_pipeline(tmp_path):
    """minilm-l6 frozen features (a real pretrained rung) supervise and are supervised above chance."""
    cfg = make_config(W2SConfig, dataset="rotten_tomatoes", weak="bow", strong="minilm-l6", max_examples=2400,
                      head="logistic")
    out = run_experiment(cfg, ResultsStore(tmp_path / "o.db"))
    assert out["ceiling_acc"] > 0.65 and out["weak_acc"] > 0.55 and out["w2s_auroc"] > 0.55, out


def test_sweep_then_report_writes_figure_and_tables(tiny, tmp_path, capsys):
    store, out = tmp_path / "o.db", tmp_path / "report"
    other = save_tiny_bert(tmp_path / "bert2", hidden=48, seed=1)
    assert main(["w2s", "sweep", "--dataset", f"file:{tiny['data']}", "--models",
                 f"bow,hf:{tiny['bert']},hf:{other}", "--losses", "xent", "--seeds", "2", "--store", str(store),
                 "--quiet"]) == 0
    table = capsys.readouterr().out
    assert table.count("file:") == 3  # every weak<strong pair of the three-rung ladder
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "Weak-to-strong" in page and "PGR, method = xent" in page and page.count("<tr>") >= 4
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    for p in pngs:
        assert p.name in page


@pytest.mark.slow
def test_ray_executor_gives_the_same_results_as_local(tiny, tmp_path, capsys, monkeypatch):
    """The same sweep on a (local) Ray cluster: every run lands in the store, numbers unchanged."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    args = ["w2s", "run", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['bert']}",
            "--seeds", "2", "--json", "--quiet"]
    assert main(args + ["--store", str(tmp_path / "local.db")]) == 0
    local = json.loads(capsys.readouterr().out)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(args + ["--store", str(tmp_path / "ray.db"), "--executor", "ray"]) == 0
    finally:
        ray.shutdown()
    remote = json.loads(capsys.readouterr().out)
    assert remote == local
    assert len(ResultsStore(tmp_path / "ray.db").records(kind="w2s")) == 2


def test_editing_a_local_dataset_invalidates_its_cached_runs(tiny, tmp_path, monkeypatch):
    data = write_sentiment_jsonl(tmp_path / "d.jsonl", n=400)
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny, dataset=f"file:{data}", mode="head", epochs=1)
    calls: list[str] = []
    real = pipeline._fit
    monkeypatch.setattr(pipeline, "_fit", lambda *a, desc, **k: (calls.append(desc.split()[0]),
                                                                                  real(*a, desc=desc, **k))[1])
    run_experiment(cfg, store)
    run_experiment(cfg, store)
    assert calls == ["weak", "ceiling", "w2s"]
    write_sentiment_jsonl(data, n=480, seed=1)  # the user edits the file
    run_experiment(cfg, store)
    assert calls == ["weak", "ceiling", "w2s"] * 2


def test_features_are_computed_once_for_every_seed(tiny, tmp_path, monkeypatch):
    """Head mode embeds the dataset's texts in one pass: a second seed's split finds them all cached."""
    from oversight.w2s import train as w2s_train

    embedded = []
    real = w2s_train.extract_features

    def spy(spec, texts, *args, **kwargs):
        embedded.append(len(texts))
        return real(spec, texts, *args, **kwargs)

    monkeypatch.setattr(w2s_train, "extract_features", spy)
    store = ResultsStore(tmp_path / "o.db")
    run_experiment(_cfg(tiny, mode="head", epochs=1), store)
    first = sum(embedded)
    assert first >= 790  # every text of the 800-row file, whichever split a seed puts it in
    run_experiment(_cfg(tiny, mode="head", epochs=1, seed=1), store)
    assert sum(embedded) == first
