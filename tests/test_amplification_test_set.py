"""The amplification test set: a fresh draw (v2) that shares no instance with the validation splits,
recorded in every row and part of every run's key, so rows measured on the retired v1 never count
as today's runs."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from oversight.amplification.cli import run_and_store
from oversight.amplification.config import AmplifyConfig
from oversight.amplification.env import make_task
from oversight.amplification.evaluation import SPLIT_SEEDS, TEST_SET, make_eval_sets, stored_test_set
from oversight.amplification.results import aggregate_runs, measurement_table
from oversight.amplification.runs import KIND, run_key
from oversight.config import config_to_dict
from oversight.config import run_key as shared_run_key
from oversight.store import ResultsStore

TASKS = ("permutation_powering", "sequential_assignments", "wildcard_search", "shortest_path", "union_find")
OLD_TEST_SEED = 20_181_003  # test set v1: defaults were chosen on it
TINY = dict(task="union_find", mode="amplify", size=8, steps=4, minutes=0, d_model=32, n_heads=2,
            encoder_layers=1, decoder_layers=1, contexts_per_step=4, questions_per_context=4, eval_every=2,
            val_contexts=4, test_contexts=4, test_questions=4, stop_at_acc=0.0, overlap_targets=False,
            checkpoint_every=0)


def test_the_test_seed_is_new_and_every_split_has_its_own_seed() -> None:
    assert SPLIT_SEEDS["test"] != OLD_TEST_SEED and TEST_SET != "v1"
    assert SPLIT_SEEDS["validation2"] == OLD_TEST_SEED  # v1, kept as a second validation split
    assert len(set(SPLIT_SEEDS.values())) == len(SPLIT_SEEDS)


@pytest.mark.parametrize("task_name", TASKS)
def test_the_test_set_shares_no_instance_draw_with_either_validation_split(task_name: str) -> None:
    task = make_task(task_name)
    facts = {}
    for split in ("validation", "validation2", "test"):
        sets = make_eval_sets(task, [8, 16], 32, 2, split=split)
        facts[split] = {inst.facts.tobytes() for s in sets.values() for inst in s.instances}
    for a, b in combinations(facts, 2):
        assert not facts[a] & facts[b], (a, b)


def test_an_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="split"):
        make_eval_sets(make_task("union_find"), [8], 2, 2, split="tset")


def test_a_stored_row_records_its_test_set_and_the_key_depends_on_it(tmp_path: Path) -> None:
    cfg = AmplifyConfig(**TINY)  # type: ignore[arg-type]
    store = ResultsStore(tmp_path / "x.db")
    results = run_and_store(cfg, store)
    assert results["test_set"] == TEST_SET
    assert store.get(run_key(cfg))["results"]["test_set"] == TEST_SET
    assert run_key(cfg) != run_key(cfg, test_set="v1")


def _old_row(store: ResultsStore, cfg: AmplifyConfig) -> str:
    """A row as identity version 3 stored it: keyed without the test set, results without "test_set"."""
    old_key = shared_run_key(cfg.with_task_defaults(), kind=KIND)
    results = {"test_acc": 0.123, "test_acc_se": 0.01, "seconds": 1.0, "steps": 4, "expert_calls": 0,
               "gt_labels_used": 0, "reached": {}, "curve": [], "reproducible": True, "oracle_curriculum": False}
    store.put(old_key, KIND, config_to_dict(cfg.with_task_defaults()), results)
    store.set_meta(f"identity_version:{KIND}", "3")
    return old_key


def test_a_row_of_the_retired_test_set_is_not_returned_as_the_new_run(tmp_path: Path) -> None:
    cfg = AmplifyConfig(**TINY)  # type: ignore[arg-type]
    store = ResultsStore(tmp_path / "x.db")
    _old_row(store, cfg)
    results = run_and_store(cfg, store)  # trains: the old row is not this run
    assert results["test_set"] == TEST_SET and results["test_acc"] != 0.123
    records = store.records(kind=KIND)
    assert sorted(stored_test_set(r["results"]) for r in records) == ["v1", TEST_SET]
    assert {r["key"] for r in records} == {run_key(cfg), run_key(cfg, test_set="v1")}
    assert len(aggregate_runs(records)) == 2  # never averaged together
    table = measurement_table(records)
    assert "0.123" not in table and "1 runs measured on a retired test set are left out" in table
