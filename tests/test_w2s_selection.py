"""Validation curves and the selection of a run's weights: weak-val reads only the supervisor's
labels, oracle is flagged, and the kept weights are those of the best validation score."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_bert, write_sentiment_jsonl

from oversight.cli import main
from oversight.config import make_config
from oversight.store import ResultsStore, artifacts_for
from oversight.w2s import pipeline
from oversight.w2s.pipeline import W2SConfig, run_experiment
from oversight.w2s.train import TrainSettings, fit


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    return {"data": write_sentiment_jsonl(root / "sent.jsonl", n=400), "bert": save_tiny_bert(root / "bert")}


def _cfg(tiny, **kw) -> W2SConfig:
    base = dict(dataset=f"file:{tiny['data']}", weak="bow", strong=f"hf:{tiny['bert']}", mode="head", epochs=3,
                batch_size=16, bf16=False, device="cpu")
    return make_config(W2SConfig, **{**base, **kw})


@pytest.mark.parametrize("select", ["val-weak", "last"])
def test_fit_keeps_the_weights_of_the_best_validation_score(select):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x = torch.randn(64, 3)
    targets = (x[:, 0] > 0).float().numpy()
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.8, 0.1, 0.2, 0.3, 0.4, 0.45, 0.3])
    snapshots = {}

    def evaluate(step):
        snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return next(scores)

    settings = TrainSettings(epochs=5, batch_size=16, lr=0.05, select=select)  # 20 steps, evaluated every 2
    chosen = fit(model, lambda idx: model(x[idx]), targets, settings, evaluate=evaluate)
    steps = sorted(snapshots)
    expected = steps[1] if select != "last" else steps[-1]
    assert chosen == expected
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshots[expected][name])


def test_weak_val_selects_on_the_supervisors_labels_never_the_truth(tiny, tmp_path, monkeypatch):
    watches = []
    real_watch = pipeline.Watch

    def spy(*args, **kwargs):
        watches.append(real_watch(*args, **kwargs))
        return watches[-1]

    monkeypatch.setattr(pipeline, "Watch", spy)
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny, select="weak-val")
    results = run_experiment(cfg, store)
    from oversight.w2s.datasets import load_dataset

    truth = np.array([e.label for e in load_dataset(cfg.dataset, seed=0).validation], dtype=np.float32)
    weak_validation = artifacts_for(store).load_arrays(results["run_keys"]["weak"])["validation"]
    student = [w for w in watches if w.curve and not np.array_equal(w.val_labels, truth)]
    assert len(student) == 1, "only the student's watch reads other labels than the truth"
    np.testing.assert_array_equal(student[0].val_labels, weak_validation)
    assert not np.array_equal(weak_validation, truth)  # soft predictions of the supervisor, not the labels
    row = store.get(results["run_keys"]["w2s"])["results"]
    assert len(row["curve"]) >= 10 and row["selected_step"] in [p["step"] for p in row["curve"]]
    best = max(p["val_score"] for p in row["curve"])
    assert next(p for p in row["curve"] if p["val_score"] == best)["step"] == row["selected_step"]
    assert results["select"] == "weak-val" and results["oracle"] is False


def test_oracle_is_flagged_in_the_json_and_the_table(tiny, tmp_path, capsys):
    argv = ["w2s", "run", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['bert']}",
            "--seeds", "1", "--epochs", "2", "--store", str(tmp_path / "o.db"), "--quiet", "--device", "cpu",
            "--select", "oracle"]
    assert main([*argv, "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert row["oracle"] is True and row["select"] == "oracle"
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "[ORACLE]" in table and "upper bound" in table


def test_select_last_keeps_the_keys_of_runs_stored_before_selection(tiny):
    from dataclasses import asdict

    from oversight.config import config_hash
    from oversight.w2s.config import data_version, experiment_key, run_numerics

    cfg = _cfg(tiny, select="last")
    old = {k: v for k, v in asdict(cfg).items() if k not in ("select", "device", "top_k_layers", "alpha_max",
                                                             "warmup_frac", "threshold_window", "product_beta",
                                                             "window_radius", "method", "chain", "supervisor",
                                                             "supervisor_accuracy", "student", "truth_budget")}
    assert experiment_key(cfg) == config_hash(old, kind="w2s", data_version=data_version(cfg.dataset),
                                              numerics=run_numerics(cfg))
    assert experiment_key(_cfg(tiny, select="weak-val")) != experiment_key(cfg)
