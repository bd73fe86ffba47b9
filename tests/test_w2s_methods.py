"""The paper's other methods: bootstrapping through a chain of rungs, linear probes, saliency."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import save_tiny_bert, write_sentiment_jsonl  # noqa: E402

from oversight.cli import main  # noqa: E402
from oversight.config import make_config  # noqa: E402
from oversight.store import ResultsStore, artifacts_for  # noqa: E402
from oversight.w2s import pipeline  # noqa: E402
from oversight.w2s.config import W2SConfig  # noqa: E402
from oversight.w2s.datasets import load_dataset  # noqa: E402
from oversight.w2s.linear import LinearProbe  # noqa: E402
from oversight.w2s.pipeline import run_experiment  # noqa: E402
from oversight.w2s.splits import cross_fit_folds  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    models = {name: save_tiny_bert(root / name, hidden=hidden, seed=seed)
              for name, hidden, seed in (("a", 32, 0), ("b", 48, 1), ("c", 64, 2), ("d", 40, 3))}
    return {"data": write_sentiment_jsonl(root / "sent.jsonl", n=480), **models}


def _cfg(tiny, **kw):
    base = dict(dataset=f"file:{tiny['data']}", weak="bow", strong=f"hf:{tiny['c']}", mode="head", epochs=10,
                bf16=False, device="cpu")
    base.update(kw)
    return make_config(W2SConfig, **base)


def _spy_fits(monkeypatch) -> list[tuple[str, list[str], np.ndarray]]:
    calls = []
    real = pipeline._fit

    def spy(spec, settings, train_texts, targets, artifacts, desc, **kwargs):
        calls.append((desc, list(train_texts), np.asarray(targets).copy()))
        return real(spec, settings, train_texts, targets, artifacts, desc=desc, **kwargs)

    monkeypatch.setattr(pipeline, "_fit", spy)
    return calls


def test_each_rung_learns_from_the_previous_rungs_labels_never_the_truth(tiny, tmp_path, monkeypatch):
    calls = _spy_fits(monkeypatch)
    watches = []
    real_watch = pipeline.Watch
    monkeypatch.setattr(pipeline, "Watch", lambda *a, **k: watches.append(real_watch(*a, **k)) or watches[-1])
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny, method="bootstrap", chain=f"hf:{tiny['a']},hf:{tiny['b']}")
    results = run_experiment(cfg, store)
    arrays = {role: artifacts_for(store).load_arrays(key) for role, key in results["run_keys"].items()}
    splits = load_dataset(cfg.dataset, seed=0)
    student_texts = [e.text for e in splits.student_train]
    truth = dict(zip(student_texts, (e.label for e in splits.student_train), strict=True))
    labels_of = {role: dict(zip(student_texts, arrays[role]["student_train"], strict=True))
                 for role in ("weak", "link1", "link2")}

    by_desc = {desc.split(" (")[0]: [c for c in calls if c[0].split(" (")[0] == desc.split(" (")[0]]
               for desc, _, _ in calls}
    supervisor = {f"rung hf:{tiny['a']}": "weak", f"rung hf:{tiny['b']}": "link1"}
    for rung, upstream in supervisor.items():
        halves = by_desc[rung]
        assert len(halves) == 2  # cross-fitted: a model per half
        seen = [set(texts) for _, texts, _ in halves]
        assert not seen[0] & seen[1] and seen[0] | seen[1] == set(student_texts)
        for _, texts, targets in halves:
            np.testing.assert_allclose(targets, [labels_of[upstream][t] for t in texts])
            assert not np.array_equal(targets, [truth[t] for t in texts])
    (student,) = [c for c in calls if c[0].startswith("w2s")]
    assert student[1] == student_texts
    np.testing.assert_allclose(student[2], arrays["link2"]["student_train"])
    assert not np.allclose(arrays["link2"]["student_train"], arrays["weak"]["student_train"])
    # selection: each rung and the student on its supervisor's validation labels
    val_truth = np.array([e.label for e in splits.validation], dtype=np.float32)
    expected = [val_truth, val_truth, *[arrays["weak"]["validation"]] * 2, *[arrays["link1"]["validation"]] * 2,
                arrays["link2"]["validation"]]
    assert len(watches) == len(expected)
    for watch, labels in zip(watches, expected, strict=True):
        np.testing.assert_array_equal(watch.val_labels, labels)
    assert [r["model"] for r in results["chain"]] == [f"hf:{tiny['a']}", f"hf:{tiny['b']}"]
    assert results["chain"][0]["test_acc"] > 0.6 and results["w2s_acc"] > 0.6, results  # learned, above chance


def test_changing_a_rung_reruns_what_follows_it_and_nothing_before(tiny, tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "o.db")
    first = run_experiment(_cfg(tiny, method="bootstrap", chain=f"hf:{tiny['a']},hf:{tiny['b']}"), store)
    direct = run_experiment(_cfg(tiny), store)
    calls = _spy_fits(monkeypatch)
    second = run_experiment(_cfg(tiny, method="bootstrap", chain=f"hf:{tiny['a']},hf:{tiny['d']}"), store)
    trained = sorted({desc.split(" (")[0] for desc, _, _ in calls})
    assert trained == sorted([f"rung hf:{tiny['d']}", f"w2s bow->hf:{tiny['c']} xent"])
    assert second["run_keys"]["link1"] == first["run_keys"]["link1"]  # the unchanged first rung is reused
    assert second["run_keys"]["link2"] != first["run_keys"]["link2"]
    assert len({first["run_keys"]["w2s"], second["run_keys"]["w2s"], direct["run_keys"]["w2s"]}) == 3
    # the same endpoints and the same ceiling as direct
    assert first["run_keys"]["weak"] == direct["run_keys"]["weak"] == second["run_keys"]["weak"]
    assert first["run_keys"]["ceiling"] == direct["run_keys"]["ceiling"]
    assert first["weak_acc"] == direct["weak_acc"] and first["ceiling_acc"] == direct["ceiling_acc"]


def test_cross_fit_folds_keep_groups_whole_and_balance_examples():
    groups = [f"g{i // 3}" for i in range(60)] + ["big"] * 7
    folds = cross_fit_folds(groups, seed=0)
    for g in set(groups):
        assert len({folds[i] for i, x in enumerate(groups) if x == g}) == 1
    assert abs(int((folds == 0).sum()) - int((folds == 1).sum())) <= 7
    assert cross_fit_folds(groups, seed=1).tolist() != folds.tolist()
    np.testing.assert_array_equal(cross_fit_folds(["one"] * 4, seed=0), [0, 1, 0, 1])


def test_a_linear_probe_learns_a_separable_task_from_soft_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) > 0).astype(float)
    soft = np.where(y == 1, 0.8, 0.2)  # a confident-but-unsure supervisor, right on every example
    probe = LinearProbe(seed=0).fit(x[:300], soft[:300])
    p = probe.predict_proba(x[300:])
    assert np.mean((p > 0.5) == y[300:]) > 0.95
    # soft targets fitted as soft: the probe's confidence stays near the targets', not at 0/1
    assert 0.6 < np.median(np.maximum(p, 1 - p)) < 0.95


def test_probe_mode_trains_every_rung_as_a_linear_probe(tiny, tmp_path, monkeypatch):
    calls = _spy_fits(monkeypatch)
    results = run_experiment(_cfg(tiny, mode="probe", weak=f"hf:{tiny['a']}"), ResultsStore(tmp_path / "o.db"))
    assert [desc.split()[0] for desc, _, _ in calls] == ["weak", "ceiling", "w2s"]
    assert results["ceiling_acc"] > 0.7 and results["weak_acc"] > 0.6, results  # learned from frozen features
    with pytest.raises(Exception, match="xent only"):
        _cfg(tiny, mode="probe", loss="logconf").validate()


def test_finetuning_on_weak_labels_is_probed_against_the_pretrained_features(tiny, tmp_path):
    cfg = _cfg(tiny, mode="finetune", strong=f"hf:{tiny['a']}", epochs=4, lr=3e-3, batch_size=16)
    store = ResultsStore(tmp_path / "o.db")
    results = run_experiment(cfg, store)
    assert results["w2s_acc"] > 0.8, results
    # both probes read the concept (linear in word counts); the finetuned features make it more salient
    assert results["saliency_pretrained_acc"] > 0.8, results
    assert results["saliency_finetuned_acc"] > results["saliency_pretrained_acc"], results
    from oversight.w2s.aggregate import aggregate

    row = aggregate([cfg], store)
    assert row["saliency_finetuned_acc"] == results["saliency_finetuned_acc"]


@pytest.mark.parametrize("flags, field", [
    (["--method", "bootstrap"], "chain"),
    (["--chain", "minilm-l3"], "chain"),
    (["--method", "bootstrap", "--chain", "bow"], "chain"),
    (["--method", "sideways"], "method"),
])
def test_bad_method_flags_are_one_line_naming_the_field(flags, field, tmp_path, capsys):
    code = main(["w2s", "run", "--weak", "bow", "--strong", "minilm-l6", *flags, "--store", str(tmp_path / "o.db")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and field in err, err
    assert not (tmp_path / "o.db").exists()


def test_a_bootstrap_sweep_needs_a_rung_between_its_models(tmp_path, capsys):
    code = main(["w2s", "sweep", "--models", "bow,minilm-l3", "--method", "bootstrap", "--store", str(tmp_path / "o.db")])
    assert code == 2 and "3 or more" in capsys.readouterr().err
