"""How amplification runs are measured: validation steers, test is read once, no label leaks into the
question distribution, oracle and time-limited runs are flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import oversight.amplification.train as train_module
from oversight.amplification.batches import draw_questions
from oversight.amplification.config import AmplifyConfig
from oversight.amplification.curriculum import curriculum_stages
from oversight.amplification.env import make_task
from oversight.amplification.evaluation import make_eval_sets
from oversight.amplification.train import train
from oversight.amplification.truth import GroundTruthRead, truth_allowed, truth_denied
from oversight.cli import main as cli_main
from oversight.store import ResultsStore

TASKS = ("permutation_powering", "sequential_assignments", "wildcard_search", "shortest_path", "union_find")
TINY = dict(size=8, minutes=0, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1, contexts_per_step=4,
            questions_per_context=4, eval_every=3, val_contexts=4, test_contexts=4, test_questions=4,
            hprime_d_model=32, hprime_layers=1, hprime_batch=16, hprime_ready_loss=100.0, stop_at_acc=0.0,
            overlap_targets=False)


@pytest.mark.parametrize("task_name", TASKS)
def test_validation_and_test_sets_are_disjoint_and_differently_seeded(task_name: str) -> None:
    task = make_task(task_name)
    val = make_eval_sets(task, [8], 16, 4, split="validation")[8]
    test = make_eval_sets(task, [8], 16, 4, split="test")[8]
    again = make_eval_sets(task, [8], 16, 4, split="test")[8]
    facts = {inst.facts.tobytes() for inst in val.instances}
    assert not facts & {inst.facts.tobytes() for inst in test.instances}
    assert np.array_equal(test.questions, again.questions)  # fixed: the same for every run


def test_the_test_set_is_built_and_read_once_after_the_last_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping, the curve and "steps to 95%" use validation; test is made and read after training."""
    events: list[str] = []
    make, evaluate, step = train_module.make_eval_sets, train_module.evaluate, train_module.x_step

    def spy_make(task, sizes, contexts, questions, split="test"):  # type: ignore[no-untyped-def]
        events.append(f"make {split}")
        return {size: _tagged(s, split) for size, s in make(task, sizes, contexts, questions, split).items()}

    def _tagged(eval_set, split):  # type: ignore[no-untyped-def]
        eval_set.split = split
        return eval_set

    def spy_evaluate(model, task, sets, device, bf16=False):  # type: ignore[no-untyped-def]
        events.append("evaluate " + ",".join(sorted({s.split for s in sets.values()})))
        return evaluate(model, task, sets, device, bf16)

    def spy_step(*args, **kwargs):  # type: ignore[no-untyped-def]
        events.append("step")
        return step(*args, **kwargs)

    monkeypatch.setattr(train_module, "make_eval_sets", spy_make)
    monkeypatch.setattr(train_module, "evaluate", spy_evaluate)
    monkeypatch.setattr(train_module, "x_step", spy_step)
    results = train(AmplifyConfig(task="union_find", mode="amplify", steps=7, **TINY)).results
    last_step = max(i for i, e in enumerate(events) if e == "step")
    assert events.count("make test") == 1 and events.index("make test") > last_step
    assert events.count("evaluate test") == 1 and events.index("evaluate test") > last_step
    assert events.count("evaluate validation") == len(results["curve"]) >= 3
    assert all("val_acc" in point and "acc" not in point for point in results["curve"])
    assert 0 <= results["test_acc"] <= 1 and results["test_acc_se"] >= 0
    assert results["test_questions"] == 4 * 4


@pytest.mark.parametrize("task_name", ["sequential_assignments", "shortest_path", "union_find"])
def test_a_curriculum_that_reads_true_depths_or_distances_raises_in_amplify_modes(task_name: str) -> None:
    task = make_task(task_name)
    cfg = AmplifyConfig(task=task_name, mode="amplify", **TINY).with_task_defaults(task)
    rng = np.random.default_rng(0)
    with truth_denied(), pytest.raises(GroundTruthRead, match="depth|dist"):
        draw_questions(task, cfg, 8, 1, rng)  # level 1 of a depth/distance task: chosen with the answers
    with truth_denied():
        draw_questions(task, cfg, 8, task.num_levels, rng)  # the full distribution needs no label
    oracle = AmplifyConfig(task=task_name, mode="amplify", curriculum="oracle", **TINY).with_task_defaults(task)
    with truth_denied():
        draw_questions(task, oracle, 8, 1, rng)  # the oracle curriculum is the named exception
    with truth_denied(), truth_allowed("evaluation"):
        task.truth_batch([task.generate(8, rng)], np.zeros(1, np.int64), draw_questions(task, cfg, 8, task.num_levels, rng)[2][:1])


@pytest.mark.parametrize("overlap", [False, True])
def test_any_read_of_a_true_answer_while_amplifying_raises(overlap: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A question sampler that peeks at true depths (as the old curriculum did) fails the run, in the
    training process and in the target worker; the same sampler runs in supervised mode."""
    task = make_task("union_find")
    honest = task.sample_questions

    def peeking(inst, m, rng, level=None):  # type: ignore[no-untyped-def]
        assert inst.data.depth is not None  # what a curriculum choosing questions by true depth reads
        return honest(inst, m, rng, level)

    monkeypatch.setattr(task, "sample_questions", peeking)
    cfg = {**TINY, "overlap_targets": overlap}
    with pytest.raises((GroundTruthRead, RuntimeError), match="ground truth read"):
        train(AmplifyConfig(task="union_find", mode="amplify", steps=3, **cfg), task=task)
    assert train(AmplifyConfig(task="union_find", mode="supervised", steps=3, **TINY), task=task).results["steps"] == 3


@pytest.mark.parametrize("task_name", TASKS)
def test_label_free_stages_depend_on_size_and_question_form_only(task_name: str) -> None:
    task = make_task(task_name)
    cfg = AmplifyConfig(task=task_name, size=16, start_size=8)
    stages = curriculum_stages(cfg, task)
    if task.levels_from_form:
        assert stages[0] == (8, 1) and stages[-1] == (16, task.num_levels)
        assert curriculum_stages(AmplifyConfig(task=task_name, size=16, curriculum="oracle").with_task_defaults(), task) == stages
    else:
        assert stages == [(4, task.num_levels), (5, task.num_levels), (6, task.num_levels), (7, task.num_levels),
                          (8, task.num_levels), (16, task.num_levels)]
        oracle = curriculum_stages(AmplifyConfig(task=task_name, size=16, curriculum="oracle"), task)
        assert oracle[0] == (8, 1) and len(oracle) == 2 * task.num_levels
        stepped = curriculum_stages(AmplifyConfig(task=task_name, size=16, size_step=3), task)
        assert [size for size, _ in stepped] == [4, 7, 10, 13, 16]
    with truth_denied():  # every label-free stage's questions are drawn without reading an answer
        for size, level in stages:
            draw_questions(task, cfg.with_task_defaults(task), size, level, np.random.default_rng(0))


def test_oracle_curriculum_and_time_limits_are_flagged_in_stored_rows(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "runs.db"
    flags = ["--size", "8", "--d-model", "32", "--n-heads", "2", "--contexts-per-step", "4", "--questions-per-context",
             "4", "--val-contexts", "4", "--test-contexts", "4", "--eval-every", "2", "--store", str(store), "--json"]
    rows = {}
    for name, extra in (("label-free", ["--steps", "4"]), ("oracle", ["--steps", "4", "--curriculum", "oracle"]),
                        ("timed", ["--steps", "0", "--minutes", "0.002"])):
        assert cli_main(["amplify", "run", "--task", "union_find", "--mode", "amplify", *flags, *extra]) == 0
        rows[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rows["oracle"]["oracle_curriculum"] is True and rows["label-free"]["oracle_curriculum"] is False
    assert rows["label-free"]["reproducible"] is True and rows["timed"]["reproducible"] is False
    assert rows["timed"]["stopped_by"] == "minutes" and rows["label-free"]["stopped_by"] == "steps"
    stored = {r["results"]["curriculum"]: r for r in ResultsStore(store).records(kind="amplify") if r["results"]["reproducible"]}
    assert stored["oracle"]["results"]["oracle_curriculum"] and not stored["label-free"]["results"]["oracle_curriculum"]
    for row in rows.values():
        assert {"commit", "host", "torch_threads", "load_average"} <= set(row["provenance"])
    # on a task whose levels are read off the question, "oracle" is the label-free curriculum: one run
    assert cli_main(["amplify", "run", "--task", "permutation_powering", "--mode", "amplify", "--steps", "2", *flags]) == 0
    assert cli_main(["amplify", "run", "--task", "permutation_powering", "--mode", "amplify", "--steps", "2",
                     "--curriculum", "oracle", *flags]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines() if line.startswith("{")]
    assert [r["oracle_curriculum"] for r in out] == [False, False]
    assert len([r for r in ResultsStore(store).records(kind="amplify") if r["config"]["task"] == "permutation_powering"]) == 1


def test_results_docs_are_generated_from_the_store_with_flags_and_provenance(tmp_path: Path) -> None:
    from oversight.amplification.cli import run_and_store
    from oversight.report import write_markdown

    store = ResultsStore(tmp_path / "runs.db")
    for seed in (0, 1):
        for curriculum in ("label-free", "oracle"):
            run_and_store(AmplifyConfig(task="union_find", mode="amplify", steps=2, seed=seed, curriculum=curriculum,
                                        **TINY), store)
    run_and_store(AmplifyConfig(task="union_find", mode="amplify", steps=2, mix_sizes_from=4, **TINY), store)
    [path] = write_markdown(tmp_path / "runs.db", tmp_path / "docs", "the command")
    text = path.read_text()
    assert path.name == "amplification.md" and "by `the command`" in text
    assert "5 runs on test set v2; seeds 0, 1; made at commit" in text
    # (a working tree with edits adds [DIRTY TREE] to each label: the checks stop before it)
    assert text.count("| union_find | 8 | amplify |") == 3 and "| oracle [ORACLE CURRICULUM] (mix_sizes_from=0)" in text
    assert "| label-free (mix_sizes_from=4)" in text  # a variant is named by what tells it apart
    assert "(2 seeds)" in text


def test_a_run_records_the_commit_its_code_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    from oversight import runtime

    runtime.code_commit.cache_clear()
    monkeypatch.setenv("OVERSIGHT_COMMIT", "abc1234")
    try:
        assert runtime.code_commit() == "abc1234"
        monkeypatch.setenv("OVERSIGHT_COMMIT", "def5678")  # HEAD moving later changes nothing recorded
        assert runtime.provenance()["commit"] == "abc1234"
    finally:
        runtime.code_commit.cache_clear()


def test_results_docs_into_an_unwritable_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from oversight.amplification.cli import run_and_store

    run_and_store(AmplifyConfig(task="union_find", mode="amplify", steps=2, **TINY), ResultsStore(tmp_path / "runs.db"))
    blocker = tmp_path / "docs"
    blocker.write_text("a file where the folder should be")
    assert cli_main(["report", "--store", str(tmp_path / "runs.db"), "--markdown", str(blocker / "results")]) == 2
    err = capsys.readouterr().err
    assert "--markdown" in err or "markdown" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert len(ResultsStore(tmp_path / "runs.db").records(kind="amplify")) == 1  # nothing lost


def test_amplify_sweep_help_shows_its_defaults_and_runs_three_seeds_by_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    from oversight.amplification.cli import sweep_configs
    from oversight.cli import build_parser

    assert cli_main(["amplify", "sweep", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: 3, as w2s" in text and "(default: all)" in text and "(default: local)" in text
    assert "(default: supervised,amplify,amplify-learned)" in text
    args = build_parser().parse_args(["amplify", "sweep", "--tasks", "union_find", "--modes", "supervised"])
    assert [cfg.seed for cfg in sweep_configs(args)] == [0, 1, 2]
