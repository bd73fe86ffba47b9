"""Active weak-to-strong: a student that chooses which pool examples its supervisor labels."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import save_tiny_bert, write_sentiment_jsonl  # noqa: E402

from oversight.config import make_config  # noqa: E402
from oversight.errors import ConfigError  # noqa: E402
from oversight.store import ResultsStore, artifacts_for  # noqa: E402
from oversight.w2s import active, active_cli, pipeline  # noqa: E402
from oversight.w2s import active_select as sel  # noqa: E402
from oversight.w2s.active import ActiveConfig, LabelOracle, OracleError, run_active  # noqa: E402
from oversight.w2s.datasets import load_dataset  # noqa: E402

# --------------------------------------------------------------------------- pure pieces


def test_round_sizes_spend_the_budget_exactly():
    assert sel.round_sizes(10, 3) == [3, 3, 4]
    assert sel.round_sizes(6, 6) == [1] * 6
    for budget, rounds in ((7, 2), (100, 6), (56, 5)):
        sizes = sel.round_sizes(budget, rounds)
        assert sum(sizes) == budget and len(sizes) == rounds and max(sizes) - min(sizes) <= 1


def test_oracle_counts_every_label_and_refuses_past_its_budget_or_twice():
    labels = np.linspace(0, 1, 10).astype(np.float32)
    oracle = LabelOracle(labels, budget=5)
    np.testing.assert_array_equal(oracle.query(np.array([2, 7])), labels[[2, 7]])
    assert oracle.calls == 2 and np.flatnonzero(oracle.labelled).tolist() == [2, 7]
    assert np.isnan(oracle.answers[[0, 1, 3]]).all()  # nothing unqueried is visible
    with pytest.raises(OracleError, match="once"):
        oracle.query(np.array([7]))
    with pytest.raises(OracleError, match="once"):
        oracle.query(np.array([4, 4]))
    with pytest.raises(OracleError, match="budget is 5"):
        oracle.query(np.array([0, 1, 3, 4]))
    assert oracle.calls == 2  # a refused query hands out nothing
    oracle.query(np.array([0, 1, 3]))
    assert oracle.calls == 5


def test_uncertainty_picks_the_examples_nearest_the_boundary():
    probs = np.array([0.01, 0.49, 0.95, 0.55, 0.5, 0.7, 0.3, 0.52])
    labelled = np.zeros(8, bool)
    labelled[4] = True  # the surest-uncertain one is already labelled: never asked again
    assert sel.pick_uncertain(probs, labelled, 3).tolist() == [1, 7, 3]
    assert set(sel.pick_uncertain(probs, np.zeros(8, bool), 2).tolist()) == {4, 1}


def test_disagreement_picks_the_highest_variance_examples():
    committee = np.array([[0.5, 0.1, 0.9, 0.0, 0.6],
                          [0.5, 0.9, 0.9, 1.0, 0.4],
                          [0.5, 0.2, 0.8, 0.0, 0.5]])
    variance = committee.var(axis=0)
    assert sel.pick_disagreement(committee, np.zeros(5, bool), 2).tolist() == list(np.argsort(-variance)[:2])
    assert sel.pick_disagreement(committee, np.array([0, 0, 0, 1, 0], bool), 1).tolist() == [1]


def test_diagnostic_prefers_uncertain_examples_the_supervisor_gets_right():
    probs = np.array([0.5, 0.5, 0.9, 0.6, 0.5])
    error = np.array([0.45, 0.0, 0.0, 0.05, 0.2])
    # 0: on the boundary but the supervisor likely errs; 1: on the boundary and it is right
    picks = sel.pick_diagnostic(probs, error, np.zeros(5, bool), 3).tolist()
    assert picks == [1, 4, 3]  # scores 1.0, 0.8, 0.76; then 0 (0.55) and 2 (0.2)
    assert sel.pick_uncertain(probs, np.zeros(5, bool), 3).tolist() == [0, 1, 4]  # uncertainty alone ignores e(x)
    with pytest.raises(ValueError, match="probability"):
        sel.diagnostic_scores(probs, error + 0.7)


def test_truth_goes_to_the_likeliest_supervisor_errors_or_at_random():
    error = np.array([0.4, 0.1, 0.45, 0.3, 0.2])
    labelled = np.array([1, 1, 0, 1, 1], bool)
    assert sel.pick_truth_targeted(error, labelled, 2).tolist() == [0, 3]  # 2 is the highest but never labelled
    drawn = sel.pick_truth_random(50, 7, np.random.default_rng(0))
    assert len(set(drawn.tolist())) == 7 and drawn.max() < 50


@pytest.mark.parametrize(("values", "field"), [
    ({"strategy": "uncertainty,oracle"}, "strategy"), ({"strategy": " , "}, "strategy"),
    ({"budget": -1}, "budget"), ({"budget": 3, "rounds": 5}, "budget"), ({"rounds": 0}, "rounds"),
    ({"truth_budget": -2}, "truth_budget"), ({"truth_placement": "worst"}, "truth_placement"),
    ({"committee": 1}, "committee"), ({"head": "tree"}, "head"), ({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"),
    ({"batch_size": 0}, "batch_size"), ({"max_examples": 0}, "max_examples"), ({"seed": -1}, "seed"),
    ({"strong": "bow"}, "strong"), ({"supervisor": "flip:random"}, "supervisor_accuracy"),
    ({"supervisor_accuracy": "0.8"}, "supervisor_accuracy"), ({"dataset": " "}, "dataset"),
])
def test_each_bad_value_is_one_error_naming_its_field(values, field):
    with pytest.raises(ConfigError) as err:
        make_config(ActiveConfig, **values)
    assert err.value.field == field


def test_every_field_has_cli_help():
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(ActiveConfig))


# --------------------------------------------------------------------------- through the pipeline

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("active")
    return {"data": write_sentiment_jsonl(root / "sent.jsonl", n=480), "strong": save_tiny_bert(root / "s", hidden=48),
            "store": ResultsStore(root / "shared.db")}


def _cfg(tiny, **kw) -> ActiveConfig:
    base = dict(dataset=f"file:{tiny['data']}", weak="bow", strong=f"hf:{tiny['strong']}", strategy="uncertainty",
                budget=60, rounds=3, epochs=5, device="cpu")
    return make_config(ActiveConfig, **{**base, **kw})


@pytest.fixture
def spies(monkeypatch):
    """Every head the active code trains (its texts), and every oracle query (oracle, size, calls after)."""
    seen = {"train": [], "two_head": [], "pipeline": [], "queries": []}
    real_head, real_two, real_pipe, real_query = (active.train_head, active.train_two_head, pipeline.train_head,
                                                  LabelOracle.query)
    monkeypatch.setattr(active, "train_head", lambda f, texts, *a, **k: (seen["train"].append(list(texts)),
                                                                         real_head(f, texts, *a, **k))[1])
    monkeypatch.setattr(active, "train_two_head", lambda f, texts, *a, **k: (seen["two_head"].append(list(texts)),
                                                                             real_two(f, texts, *a, **k))[1])
    monkeypatch.setattr(pipeline, "train_head", lambda *a, **k: (seen["pipeline"].append(1), real_pipe(*a, **k))[1])

    def query(self, indices):
        out = real_query(self, indices)
        seen["queries"].append((self.name, len(indices), self.calls, self.budget))
        return out

    monkeypatch.setattr(LabelOracle, "query", query)
    return seen


def test_every_strategy_stays_in_budget_and_trains_on_the_pool_only(tiny, spies):
    splits = load_dataset(f"file:{tiny['data']}", seed=0)
    held_out = {e.text for e in splits.test + splits.validation}
    first_round = set()
    for strategy in ("all", "random", "uncertainty", "disagreement", "diagnostic"):
        spies["queries"].clear()
        row = run_active(_cfg(tiny, strategy=strategy, committee=3), tiny["store"])["results"]
        budget = len(splits.student_train) if strategy == "all" else 60
        assert [q[1] for q in spies["queries"]] == ([budget] if strategy == "all" else [20, 20, 20])
        assert all(q[0] == "supervisor" and q[2] <= q[3] == budget for q in spies["queries"])
        assert row["labels_used"] == budget and [p["labels"] for p in row["rounds"]] == (
            [budget] if strategy == "all" else [20, 40, 60])
        assert row["truth_labels_read"] == 0 and row["selection"].startswith("last")
        labelled_round = artifacts_for(tiny["store"]).load_arrays(run_active(
            _cfg(tiny, strategy=strategy, committee=3), tiny["store"])["key"])["labelled_round"]
        assert (labelled_round >= 0).sum() == budget
        if strategy != "all":
            first_round.add(tuple(np.flatnonzero(labelled_round == 0)))
    assert len(first_round) == 1  # round 0 is the same seeded draw for every strategy
    assert spies["two_head"] and any(len(t) < 60 for t in spies["train"])  # diagnostic's error model; a committee
    assert not held_out & {t for texts in spies["train"] + spies["two_head"] for t in texts}


def test_random_with_the_whole_pool_in_one_round_is_all(tiny):
    everything = run_active(_cfg(tiny, strategy="all"), tiny["store"])
    # a budget past the pool is capped at the pool
    whole = run_active(_cfg(tiny, strategy="random", budget=10_000, rounds=1), tiny["store"])
    assert whole["results"]["budget"] == whole["results"]["pool"] == everything["results"]["budget"]
    assert whole["key"] != everything["key"]
    arrays = [artifacts_for(tiny["store"]).load_arrays(r["key"])["test_round0"] for r in (everything, whole)]
    np.testing.assert_array_equal(arrays[0], arrays[1])


def test_a_run_is_keyed_and_resumed_without_training(tiny, tmp_path, spies):
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny, strategy="diagnostic", budget=45)
    first = run_active(cfg, store)
    trained = len(spies["train"]) + len(spies["two_head"])
    assert trained and spies["pipeline"]  # the student's heads and the ceiling
    for name in spies:
        spies[name].clear()
    again = run_active(cfg, store)
    assert not (spies["train"] or spies["two_head"] or spies["pipeline"] or spies["queries"])
    assert again == first and again["results"]["rounds"] == first["results"]["rounds"]
    assert run_active(replace(cfg, budget=48), store)["key"] != first["key"]  # a new budget is a new run
    assert run_active(replace(cfg, committee=7), store)["key"] == first["key"]  # diagnostic has no committee
    assert store.get(first["key"])["kind"] == "w2s_active"


@pytest.mark.parametrize("placement", ["random", "targeted"])
def test_a_truth_budget_of_k_reads_exactly_k_truth_labels(tiny, spies, placement):
    cfg = _cfg(tiny, strategy="uncertainty", truth_budget=12, truth_placement=placement)
    row = run_active(cfg, tiny["store"])
    base = run_active(replace(cfg, truth_budget=0, truth_placement="random"), tiny["store"])
    truth_reads = [q for q in spies["queries"] if q[0] == "truth"]
    assert [q[1] for q in truth_reads] == [12] and row["results"]["truth_labels_read"] == 12
    points = row["results"]["rounds"]
    assert points[:-1] == base["results"]["rounds"]  # it extends the run without truth
    assert (points[-1]["labels"], points[-1]["truth_labels"]) == (60, 12)
    stored = artifacts_for(tiny["store"]).load_arrays(row["key"])
    if placement == "targeted":  # the truth goes to labelled examples only
        assert (stored["labelled_round"][stored["truth_indices"]] >= 0).all()
    assert len(set(stored["truth_indices"].tolist())) == 12


def test_the_active_student_learns_and_uncertainty_keeps_up_with_random(tiny):
    acc = {s: run_active(_cfg(tiny, strategy=s, budget=80, rounds=4), tiny["store"])["results"]["rounds"]
           for s in ("random", "uncertainty")}
    assert acc["uncertainty"][-1]["test_acc"] > 0.6  # chance is 0.5 on this balanced task
    assert acc["uncertainty"][-1]["test_acc"] > acc["uncertainty"][0]["test_acc"]  # more labels help
    assert acc["uncertainty"][-1]["test_acc"] >= acc["random"][-1]["test_acc"] - 0.1


def test_aggregate_over_seeds_with_a_frontier_and_where_arms_match_all(tiny):
    records = {s: [run_active(_cfg(tiny, strategy=s, seed=seed), tiny["store"]) for seed in (0, 1)]
               for s in ("all", "uncertainty")}
    rows = [row for s in records for row in active.aggregate(records[s], tiny["store"], n_boot=100)]
    assert [(r["arm"], r["round"], r["labels"]) for r in rows][:2] == [("all", 0, records["all"][0]["results"]["pool"]),
                                                                       ("uncertainty", 0, 20)]
    assert len(rows) == 4 and all(r["seeds"] == 2 for r in rows)
    last = rows[-1]
    assert last["test_acc"] == pytest.approx(np.mean([r["results"]["test_acc"] for r in records["uncertainty"]]))
    assert "2 seeds, then test groups" in last["ci_covers"]
    text = active_cli.table(rows)
    assert "Frontier" in text and "PGR [95% CI]: 95% CI, bootstrap over 2 seeds, then test groups within each" in text and "all's - 0.01" in text
    # frontier and matches on made-up rows: the rule, not the run
    made = [dict(rows[0], arm=a, strategy=s, labels=n, truth_labels=0, test_acc=acc) for a, s, n, acc in (
        ("all", "all", 100, 0.80), ("random", "random", 20, 0.70), ("random", "random", 40, 0.795),
        ("uncertainty", "uncertainty", 20, 0.72), ("uncertainty", "uncertainty", 40, 0.75))]
    assert [(f["labels"], f["best"]) for f in sel.frontier(made)] == [(20, "uncertainty"), (40, "random"), (100, "all")]
    assert {m["arm"]: m["labels"] for m in sel.matches_all(made)} == {"random": 40, "uncertainty": None}


def test_the_cli_runs_arms_over_seeds_and_prints_json_rows(tiny, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    active_cli.register(parser.add_subparsers())
    args = parser.parse_args(["active", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong",
                              f"hf:{tiny['strong']}", "--strategy", "all,random", "--budget", "30", "--rounds", "2",
                              "--epochs", "3", "--seeds", "2", "--device", "cpu", "--store", str(tmp_path / "o.db"),
                              "--json", "--quiet"])
    assert args.func(args) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rounds = [o for o in out if o["kind"] == "round"]
    assert [(o["arm"], o["labels"]) for o in rounds][1:] == [("random", 15), ("random", 30)]
    assert {o["kind"] for o in out} == {"round", "frontier", "matches_all"} and all(o["seeds"] == 2 for o in rounds)


def test_a_preset_fills_only_the_flags_not_given():
    parser = argparse.ArgumentParser()
    active_cli.register(parser.add_subparsers())
    args = parser.parse_args(["active", "--preset", "active", "--rounds", "3"])
    passes = active_cli.apply_preset(args)
    assert (args.dataset, args.rounds, args.seeds) == ("rotten_tomatoes,tweet_sentiment", 3, 3)
    assert passes == ((0, "random"), (100, "random"), (100, "targeted"))
    args = parser.parse_args(["active", "--preset", "active", "--truth-budget", "5"])
    assert active_cli.apply_preset(args) == ((5, "random"),)
    assert [(c.dataset, c.strategy, c.truth_budget) for c in active_cli.arms(args, ((5, "random"),))][:2] == [
        ("rotten_tomatoes", "all", 5), ("rotten_tomatoes", "random", 5)]
