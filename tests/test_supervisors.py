"""Synthetic supervisors: their accuracy, where their errors fall, and what a student makes of them."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import save_tiny_bert, write_sentiment_jsonl  # noqa: E402

from oversight.config import make_config  # noqa: E402
from oversight.errors import ConfigError, UnknownNameError  # noqa: E402
from oversight.store import ResultsStore, artifacts_for  # noqa: E402
from oversight.w2s import pipeline, supervisors  # noqa: E402
from oversight.w2s.config import W2SConfig  # noqa: E402
from oversight.w2s.datasets import load_dataset  # noqa: E402
from oversight.w2s.files import Example  # noqa: E402
from oversight.w2s.pipeline import run_experiment  # noqa: E402
from oversight.w2s.train import TrainSettings, train_head  # noqa: E402

WORDS = ("good", "plain", "great", "table", "fun", "chair")


def _examples(n: int = 600, seed: int = 0) -> tuple[list[Example], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS, size=rng.integers(1, 12)))
        out.append(Example(f"e{i}", f"{i} {words}", int(truth[i]), f"g{i % 50}", kind=("capital", "city", "border")[i % 3]))
    weak = np.clip(truth + rng.normal(0, 0.45, n), 0, 1)  # a noisy weak model, ~85% right
    return out, truth.astype(np.float32), weak.astype(np.float32)


SYNTHETIC = ["flip:random", "flip:model", "flip:rule:length", "flip:rule:lexicon:positive", "flip:rule:kind:capital+city"]


@pytest.mark.parametrize("supervisor", SYNTHETIC)
@pytest.mark.parametrize("accuracy", ["0.75", "0.9", "weak"])
def test_each_supervisor_hits_its_accuracy(supervisor, accuracy):
    examples, truth, weak = _examples()
    labels = supervisors.synthetic_labels(supervisor, accuracy, examples, truth, weak, seed=3, split="student_train")
    target = supervisors.target_accuracy(accuracy, weak, truth)
    assert set(np.unique(labels)) <= {0.0, 1.0}
    assert abs(float(np.mean(labels == truth)) - target) <= 0.01


@pytest.mark.parametrize("supervisor", ["flip:rule:length", "flip:rule:lexicon:positive", "flip:rule:kind:capital+city"])
def test_rule_errors_fall_only_inside_the_rules_subpopulation(supervisor):
    examples, truth, weak = _examples()
    labels = supervisors.synthetic_labels(supervisor, "0.8", examples, truth, weak, seed=0, split="validation")
    wrong = labels != truth
    _, rule, argument = supervisors.parse(supervisor)
    scores = supervisors.RULES.get(rule)(examples, argument)
    assert wrong.sum() == round(0.2 * len(truth))
    assert (scores[wrong] > 0).all()
    assert scores[wrong].min() >= scores[~wrong].max() or rule != "length"  # length: the longest err, strictly first
    if rule == "kind":
        assert {examples[i].kind for i in np.flatnonzero(wrong)} <= {"capital", "city"}


def test_model_errors_are_the_weak_models_errors_at_its_own_accuracy():
    examples, truth, weak = _examples()
    labels = supervisors.synthetic_labels("flip:model", "weak", examples, truth, weak, seed=0, split="test")
    np.testing.assert_array_equal(labels != truth, (weak > 0.5) != (truth > 0.5))


def test_random_errors_differ_by_seed_and_split_but_repeat_exactly():
    examples, truth, weak = _examples()
    a = supervisors.synthetic_labels("flip:random", "0.8", examples, truth, weak, seed=0, split="test")
    assert np.array_equal(a, supervisors.synthetic_labels("flip:random", "0.8", examples, truth, weak, seed=0, split="test"))
    assert not np.array_equal(a, supervisors.synthetic_labels("flip:random", "0.8", examples, truth, weak, seed=1, split="test"))


def test_a_rule_too_narrow_for_the_accuracy_is_one_clear_error():
    examples, truth, weak = _examples()
    with pytest.raises(ConfigError, match="supervisor_accuracy.*can err on"):
        supervisors.synthetic_labels("flip:rule:kind:border", "0.6", examples, truth, weak, seed=0, split="test")


@pytest.mark.parametrize(("supervisor", "accuracy", "field", "text"), [
    ("flip:random", "", "supervisor_accuracy", "needs an accuracy"),
    ("model", "0.8", "supervisor_accuracy", "synthetic"),
    ("flip:random", "0.4", "supervisor_accuracy", "better than chance"),
    ("flip:random", "most", "supervisor_accuracy", "neither a number"),
    ("flip:rule:lexicon", "0.8", "supervisor", "lexicon needs words"),
    ("flip:coin", "0.8", "supervisor", "flip:rule:RULE"),
])
def test_bad_supervisor_settings_name_their_field(supervisor, accuracy, field, text):
    with pytest.raises(ConfigError, match=text) as err:
        supervisors.check(supervisor, accuracy)
    assert err.value.field == field


def test_an_unknown_rule_lists_the_rules():
    with pytest.raises(UnknownNameError, match="length"):
        supervisors.check("flip:rule:colour", "0.8")


def test_truth_budget_reads_exactly_its_examples_once_counted():
    truth = np.arange(100) % 2
    budget = supervisors.TruthBudget(truth, 7, seed=0)
    trusted = budget.read()
    assert budget.reads == 7 and len(trusted) == 7
    assert all(trusted[i] == truth[i] for i in trusted)
    mixed = supervisors.mix_in(np.full(100, 0.5, np.float32), trusted)
    assert np.sum(mixed != 0.5) == 7
    with pytest.raises(ConfigError, match="truth_budget"):
        supervisors.TruthBudget(truth, 101, seed=0)


class _Rows:
    """Texts 'i:...' -> row i of a feature matrix."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = features

    def fit(self, texts):
        return self

    def transform(self, texts):
        return self.features[[int(t.split(":")[0]) for t in texts]]


def test_a_strong_student_imitates_rule_errors_more_than_random_errors_at_one_accuracy():
    """The uncanny valley's premise: the truth is linear in x0, the rule's errors follow x1 (the
    longest texts); at the same 80% accuracy a high-capacity student copies the rule's errors on
    held-out data and not the random ones."""
    rng = np.random.default_rng(0)
    n, d = 3000, 8
    x = rng.normal(size=(n, d)).astype(np.float32)
    truth = (x[:, 0] > 0).astype(np.float32)
    texts = [f"{i}:" + "x" * int(20 * (x[i, 1] + 5)) for i in range(n)]
    examples = [Example(f"e{i}", t, int(truth[i]), f"g{i}") for i, t in enumerate(texts)]
    train, held = np.arange(2000), np.arange(2000, n)
    settings = TrainSettings(mode="head", head="mlp", epochs=30, lr=3e-3, batch_size=64, bf16=False, seed=0)
    imitation = {}
    for supervisor in ("flip:random", "flip:rule:length"):
        labels = {name: supervisors.synthetic_labels(supervisor, "0.8", [examples[i] for i in idx], truth[idx],
                                                     truth[idx], seed=0, split=name)
                  for name, idx in (("student_train", train), ("test", held))}
        student = train_head(_Rows(x), [texts[i] for i in train], labels["student_train"], settings)
        predicted = student.predict_proba([texts[i] for i in held]) > 0.5
        wrong = labels["test"] != truth[held]
        imitation[supervisor] = float(np.mean(predicted[wrong] == (labels["test"][wrong] > 0.5)))
    assert imitation["flip:rule:length"] > imitation["flip:random"] + 0.3, imitation


# --------------------------------------------------------------------------- through the pipeline

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("supervisors")
    return {"data": write_sentiment_jsonl(root / "sent.jsonl", n=480), "strong": save_tiny_bert(root / "s", hidden=48)}


def _cfg(tiny, **kw):
    base = dict(dataset=f"file:{tiny['data']}", weak="bow", strong=f"hf:{tiny['strong']}", mode="head", epochs=5,
                bf16=False, device="cpu")
    return make_config(W2SConfig, **{**base, **kw})


def test_a_synthetic_supervisor_labels_the_student_and_is_scored_on_test(tiny, tmp_path, monkeypatch):
    seen = []
    real = supervisors.synthetic_labels

    def spy(supervisor, accuracy, examples, truth, weak_probs, seed, split):
        seen.append((split, [e.id for e in examples]))
        return real(supervisor, accuracy, examples, truth, weak_probs, seed, split)

    fits = []
    real_fit = pipeline._fit
    monkeypatch.setattr(supervisors, "synthetic_labels", spy)
    monkeypatch.setattr(pipeline, "_fit", lambda spec, settings, texts, targets, artifacts, desc, **kw: (
        fits.append((desc, np.asarray(targets).copy(), kw["watch"].val_labels.copy())),
        real_fit(spec, settings, texts, targets, artifacts, desc=desc, **kw))[1])
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny, supervisor="flip:random", supervisor_accuracy="0.8")
    row = run_experiment(cfg, store)
    splits = load_dataset(cfg.dataset, seed=0)
    # each split's labels are made from that split alone
    assert seen == [(s, [e.id for e in getattr(splits, s)]) for s in ("student_train", "validation", "test")]
    sup = artifacts_for(store).load_arrays(row["run_keys"]["weak"])
    sup_row = store.get(row["run_keys"]["weak"])["results"]
    assert all(abs(acc - 0.8) <= 0.01 for acc in sup_row["accuracy"].values())
    (student,) = [f for f in fits if f[0].startswith("w2s")]
    np.testing.assert_array_equal(student[1], sup["student_train"])  # the student trains on its labels
    np.testing.assert_array_equal(student[2], sup["validation"])  # and selects on its validation labels
    assert row["weak_acc"] == pytest.approx(sup_row["accuracy"]["test"])  # the PGR's weak end is the supervisor
    assert row["weak_model_acc"] != row["weak_acc"] and 0 <= row["truth_labels_read"] == 0
    assert row["error_auroc"] is None or 0.0 <= row["error_auroc"] <= 1.0
    # a model supervisor keeps the keys runs were stored under
    default = run_experiment(_cfg(tiny), store)
    assert "weak_model" not in default["run_keys"] and default["run_keys"]["weak"] == row["run_keys"]["weak_model"]


@pytest.mark.parametrize("student", ["naive", "two-head"])
def test_a_truth_budget_of_k_reads_exactly_k_labels_and_zero_reads_none(tiny, tmp_path, monkeypatch, student):
    reads = []
    real = supervisors.TruthBudget.read

    def spy(self):
        out = real(self)
        reads.append(len(out))
        return out

    monkeypatch.setattr(supervisors.TruthBudget, "read", spy)
    store = ResultsStore(tmp_path / "o.db")
    none = run_experiment(_cfg(tiny, student=student), store)
    assert reads == [] and none["truth_labels_read"] == 0
    some = run_experiment(_cfg(tiny, student=student, truth_budget=25), store)
    assert reads == [25] and some["truth_labels_read"] == 25
    assert some["run_keys"]["w2s"] != none["run_keys"]["w2s"] and some["run_keys"]["weak"] == none["run_keys"]["weak"]


def test_config_refuses_supervisors_and_students_where_they_do_not_apply(tiny):
    with pytest.raises(ConfigError, match="direct student") as err:
        _cfg(tiny, supervisor="flip:random", supervisor_accuracy="0.8", method="bootstrap", chain="minilm-l3").validate()
    assert err.value.field == "supervisor"
    with pytest.raises(ConfigError) as err:
        _cfg(tiny, student="two-head", loss="logconf").validate()
    assert err.value.field == "student"
    with pytest.raises(ConfigError) as err:
        _cfg(tiny, truth_budget=-1).validate()
    assert err.value.field == "truth_budget"


# --------------------------------------------------------------------------- the command and the report

def _planned(monkeypatch, argv):
    from oversight.cli import main

    seen = []
    monkeypatch.setattr("oversight.w2s.cli._execute", lambda cells, args: seen.extend(cells) or 0)
    assert main(argv) == 0
    return [cell[0] for cell in seen]


def test_the_uncanny_valley_preset_plans_every_error_kind_at_both_accuracies(monkeypatch):
    cfgs = _planned(monkeypatch, ["w2s", "sweep", "--preset", "uncanny-valley"])
    assert {c.weak for c in cfgs} == {"bow"} and {c.strong for c in cfgs} == {"minilm-l3", "minilm-l6", "mpnet-base"}
    kinds = {(c.supervisor, c.supervisor_accuracy) for c in cfgs}
    assert kinds == {("model", ""), *((s, a) for s in ("flip:random", "flip:rule:length", "flip:model")
                                       for a in ("0.65", "0.7"))}
    assert len(cfgs) == 2 * 3 * 7 and {c.dataset for c in cfgs} == {"rotten_tomatoes", "tweet_sentiment"}


def test_the_mistake_theory_preset_pairs_each_student_with_each_budget(monkeypatch):
    cfgs = _planned(monkeypatch, ["w2s", "sweep", "--preset", "mistake-theory", "--dataset", "rotten_tomatoes"])
    arms = {(c.supervisor, c.student, c.loss, c.truth_budget) for c in cfgs}
    # naive students with both losses, the two-head student with its own; each with and without 100 truth labels
    assert len(arms) == len(cfgs) == 3 * 3 * 2
    assert all(c.loss == "xent" for c in cfgs if c.student == "two-head")


def test_a_typed_comma_list_checks_each_value(capsys):
    from oversight.cli import main

    assert main(["w2s", "run", "--truth-budget", "0,ten"]) == 2
    assert "ten" in capsys.readouterr().err


def test_the_report_draws_the_uncanny_valley_and_the_mistake_table(tiny, tmp_path):
    from oversight.cli import main

    store = str(tmp_path / "o.db")
    base = ["--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['strong']}", "--mode", "head",
            "--epochs", "3", "--no-bf16", "--device", "cpu", "--seeds", "1", "--store", store, "--quiet"]
    assert main(["w2s", "run", *base, "--supervisor", "model,flip:random,flip:rule:length",
                 "--supervisor-accuracy", "0.7"]) == 0
    assert main(["w2s", "run", *base, "--student", "two-head", "--truth-budget", "0,20"]) == 0
    assert main(["report", "--store", store, "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    assert "uncanny valley" in page and "flip:rule:length" in page and "Mistake theory" in page
    assert any(p.name.startswith("uncanny_") for p in (tmp_path / "r").iterdir())
    # the main tables keep to the paper's runs: no synthetic supervisor's method table
    assert "method = xent [flip" not in page
    assert main(["report", "--store", store, "--markdown", str(tmp_path / "md")]) == 0
    beyond = (tmp_path / "md" / "w2s-beyond.md").read_text()
    assert "| flip:rule:length |" in beyond and "two-head +20 truth" in beyond
    assert not (tmp_path / "md" / "w2s.md").exists()  # a beyond store's reference rows live in its own tables
    # exported with hard predictions (0/1 bytes), the same tables come back: they read only right or wrong
    from oversight.export import export_store

    export_store(store, tmp_path / "data", "beyond", hard=True)
    assert main(["report", "--markdown", str(tmp_path / "again"), "--from", str(tmp_path / "data")]) == 0
    again = (tmp_path / "again" / "w2s-beyond.md").read_text()
    assert again.split("\n", 4)[4] == beyond.split("\n", 4)[4]  # after the heading lines
    assert not (tmp_path / "again" / "w2s.md").exists()
