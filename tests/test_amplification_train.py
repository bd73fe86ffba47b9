"""Iterated Amplification training: X learns, the amplify modes never read a non-primitive label,
the CLI stores and resumes runs, ``show`` prints a decomposition tree, the report draws the figure."""

from __future__ import annotations

import copy
import dataclasses
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import oversight.amplification.train as train_module
from oversight.amplification.env import DONT_KNOW, make_task, run_expert, truth_answer_fn
from oversight.amplification.expert import LearnedExpert, encode_transcripts, run_learned_expert
from oversight.amplification.learner import FactSetLearner
from oversight.amplification.train import AmplifyConfig, GroundTruthLedger, make_answer_fn, stack_facts, train
from oversight.cli import main as cli_main
from oversight.errors import ConfigError
from oversight.store import ResultsStore

TINY = dict(size=8, minutes=0, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1, contexts_per_step=4,
            questions_per_context=4, eval_every=5, test_contexts=4, val_contexts=4, test_questions=4, hprime_d_model=32,
            hprime_layers=1, hprime_batch=16, hprime_ready_loss=100.0, stop_at_acc=0.0,
            overlap_targets=False)  # in one process, where a test can watch what the loop reads


@pytest.mark.slow
def test_amplify_learns_permutation_powering_at_size_8_well_above_chance() -> None:
    """Amplification alone (no label of a non-primitive question) learns σ^k at n=8 well above chance (1/8).

    ~600 steps are enough for the shortest powers (bit-length 2: k = 2, 3), where the curriculum
    starts (answering "x" for every question already scores ~0.3 on the full distribution at n=8, so
    the test checks the learned powers themselves on fresh instances).
    """
    cfg = AmplifyConfig(task="permutation_powering", mode="amplify", size=8, steps=650, minutes=0, eval_every=650,
                        questions_per_context=16, test_contexts=32, stop_at_acc=0.0)
    run = train(cfg)
    results = run.results
    assert results["gt_labels_used"] == 0
    assert results["expert_calls"] == results["questions_trained"] == 650 * 32 * 16
    assert results["test_acc"] >= 0.3, results["curve"]  # all bit-lengths 2..6; chance 0.125

    task = make_task("permutation_powering")
    rng = np.random.default_rng(123)
    instances = [task.generate(8, rng) for _ in range(64)]
    questions = np.concatenate([task.sample_questions(inst, 8, rng, level=1) for inst in instances])
    ctx = np.repeat(np.arange(64), 8)
    facts = stack_facts(instances, "cpu")
    with torch.no_grad():
        memory = run.model.eval().encode_facts(facts)
    answers = make_answer_fn(run.model, task, memory, facts, "cpu")(ctx, questions)
    assert (answers == task.truth_batch(instances, ctx, questions)).mean() >= 0.6  # 5x chance


@pytest.mark.parametrize(("mode", "overlap"), [("amplify", False), ("amplify", True), ("amplify-learned", False),
                                              ("amplify-learned", True)])
def test_amplify_modes_use_zero_ground_truth_labels(mode: str, overlap: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside building and scoring the fixed test sets, truth is never read in the amplify modes,
    neither in the training process nor in the worker that makes targets ahead (``overlap_targets``)."""
    task = make_task("permutation_powering")
    allowed = {"depth": 0}
    reads = {"training": 0, "test": 0}
    true_truth_batch = task.truth_batch
    trainer = os.getpid()

    def counting_truth_batch(instances, ctx_index, questions):  # type: ignore[no-untyped-def]
        non_primitive = int((~task.primitive_mask(questions)).sum())
        if os.getpid() != trainer and non_primitive:  # the worker's counts would not come back: fail there
            raise AssertionError(f"the target worker read {non_primitive} non-primitive labels")
        reads["test" if allowed["depth"] else "training"] += non_primitive
        return true_truth_batch(instances, ctx_index, questions)

    def allowing(fn):  # type: ignore[no-untyped-def]
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            allowed["depth"] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                allowed["depth"] -= 1
        return wrapped

    monkeypatch.setattr(task, "truth_batch", counting_truth_batch)
    monkeypatch.setattr(task, "truth", lambda inst, q: counting_truth_batch([inst], np.zeros(1, np.int64), q[None])[0])
    monkeypatch.setattr(train_module, "evaluate", allowing(train_module.evaluate))
    monkeypatch.setattr(train_module, "make_eval_sets", allowing(train_module.make_eval_sets))
    monkeypatch.setattr(train_module, "accuracy_by_level", allowing(train_module.accuracy_by_level))

    cfg = {**TINY, "overlap_targets": overlap}
    results = train(AmplifyConfig(task="permutation_powering", mode=mode, steps=12, **cfg), task=task).results
    assert results["steps"] == 12
    assert reads["training"] == 0
    assert reads["test"] > 0  # the counter works
    assert results["gt_labels_used"] == 0
    assert results["expert_calls"] > 0
    if mode == "amplify":
        assert results["expert_calls"] == results["questions_trained"]
    else:
        assert results["expert_calls"] < results["questions_trained"]

    reads["training"] = 0
    supervised = train(AmplifyConfig(task="permutation_powering", mode="supervised", steps=3, **TINY), task=task).results
    assert reads["training"] == supervised["gt_labels_used"] == supervised["questions_trained"] == 3 * 16
    assert supervised["expert_calls"] == 0
    if overlap:  # the same check fails in the worker when it does read labels (supervised mode does)
        with pytest.raises(RuntimeError, match="(?s)the target worker failed.*read 16 non-primitive labels"):
            train(AmplifyConfig(task="permutation_powering", mode="supervised", steps=3, **cfg), task=task)


@pytest.mark.parametrize(("mode", "workers"), [("supervised", 1), ("amplify", 1), ("amplify-learned", 1),
                                             ("amplify-learned", 2)])
def test_targets_made_ahead_in_a_worker_are_reproducible_and_counted(mode: str, workers: int) -> None:
    """``overlap_targets``: the same seed gives the same run; the workers' labels and H calls are counted."""
    cfg = AmplifyConfig(task="union_find", mode=mode, steps=15,
                        **{**TINY, "overlap_targets": True, "target_workers": workers})
    first, second = train(cfg), train(cfg)
    assert multiprocessing.active_children() == []  # each run stopped its worker
    def without_time(curve: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        return [{k: v for k, v in point.items() if k != "seconds"} for point in curve]

    assert without_time(first.results["curve"]) == without_time(second.results["curve"])
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    questions = first.results["questions_trained"]
    if mode == "amplify-learned":  # X waits while H' warms up; H' trains on the worker's transcripts
        res = first.results
        assert res["steps"] == 15 and res["hprime_warmup_steps"] > 0 and res["gt_labels_used"] == 0
        assert questions == 15 * 16  # warm-up steps train H' only
        assert 0 < res["expert_calls"] < questions and res["hprime_updates"] > 0
        assert res["teacher_answers"] + res["primitive_answers"] > 0
        return
    assert questions == 15 * 16
    if mode == "supervised":
        assert first.results["gt_labels_used"] == questions and first.results["expert_calls"] == 0
        # the worker draws the questions a one-process run would: with no teacher and no stage
        # change to lag behind, both runs train on the same batches and end with the same weights
        held = {"min_stage_steps": 1000}
        ahead = train(dataclasses.replace(cfg, **held)).model
        in_one = train(dataclasses.replace(cfg, overlap_targets=False, **held)).model
        for a, b in zip(ahead.parameters(), in_one.parameters(), strict=True):
            assert torch.equal(a, b)
    else:
        assert first.results["expert_calls"] == questions and first.results["gt_labels_used"] == 0
        assert first.results["teacher_answers"] + first.results["primitive_answers"] > 0


def test_ground_truth_ledger_refuses_non_primitive_labels_in_amplify_modes() -> None:
    task = make_task("permutation_powering")
    rng = np.random.default_rng(0)
    inst = task.generate(8, rng)
    questions = task.sample_questions(inst, 5, rng)
    ledger = GroundTruthLedger(task, allow_non_primitive=False)
    with pytest.raises(AssertionError, match="non-primitive"):
        ledger.labels([inst], np.zeros(5, dtype=np.int64), questions)
    assert ledger.non_primitive_labels == 0
    supervised = GroundTruthLedger(task, allow_non_primitive=True)
    supervised.labels([inst], np.zeros(5, dtype=np.int64), questions)
    assert supervised.non_primitive_labels == 5


@pytest.mark.parametrize("task_name", ["permutation_powering", "sequential_assignments", "wildcard_search",
                                       "shortest_path", "union_find"])
def test_every_task_trains_in_every_mode(task_name: str) -> None:
    for mode in ("supervised", "amplify", "amplify-learned"):
        results = train(AmplifyConfig(task=task_name, mode=mode, steps=3, **TINY)).results
        assert results["steps"] == 3 and 0.0 <= results["test_acc"] <= 1.0
        assert set(results["test_acc_by_size"]) == {"8"}
        by_level = results["test_acc_by_level"]  # the same test set, split by question difficulty
        n_test = TINY["test_contexts"] * TINY["test_questions"]
        assert sum(v["n"] for v in by_level.values()) == n_test
        assert sum(v["acc"] * v["n"] for v in by_level.values()) / n_test == pytest.approx(results["test_acc"], abs=1e-3)
        if mode != "supervised":
            assert results["gt_labels_used"] == 0


@pytest.mark.parametrize("task_name", ["permutation_powering", "sequential_assignments", "wildcard_search",
                                       "shortest_path", "union_find"])
def test_every_task_trains_and_is_tested_at_size_64(task_name: str) -> None:
    """The largest size: training batches of 64-variable instances, and test sets at 8, 16, 32 and 64."""
    cfg = {**TINY, "test_contexts": 2, "val_contexts": 2, "test_questions": 2, "size": 64, "curriculum_min_size": 64}
    for mode in ("amplify", "amplify-learned"):
        results = train(AmplifyConfig(task=task_name, mode=mode, start_size=64, steps=2, **cfg)).results
        assert results["final_stage"]["size"] == 64 and results["gt_labels_used"] == 0
        assert set(results["test_acc_by_size"]) == {"64"}
    results = train(AmplifyConfig(task=task_name, mode="supervised", steps=2, **cfg)).results
    assert set(results["test_acc_by_size"]) == {"8", "16", "32", "64"}


def test_learner_shares_fact_encoding_across_questions_of_a_context() -> None:
    """Answers do not depend on how questions are ordered or grouped into contexts' batches."""
    task = make_task("permutation_powering")
    rng = np.random.default_rng(1)
    instances = [task.generate(8, rng) for _ in range(3)]
    questions = np.concatenate([task.sample_questions(inst, 4, rng) for inst in instances])
    ctx = np.repeat(np.arange(3), 4)
    model = FactSetLearner(task.fact_len, task.question_len, d_model=32, n_heads=2).eval()
    facts = stack_facts(instances, "cpu")
    with torch.no_grad():
        memory = model.encode_facts(facts)
        full = model.answer_log_probs(memory, facts, torch.from_numpy(ctx), torch.from_numpy(questions))
        perm = rng.permutation(12)
        shuffled = model.answer_log_probs(memory, facts, torch.from_numpy(ctx[perm]), torch.from_numpy(questions[perm]))
        # a fact set is a SET: permuting the facts of context 0 changes nothing
        facts2 = facts.clone()
        facts2[0] = facts2[0, torch.randperm(facts.shape[1])]
        reordered = model.answer_log_probs(model.encode_facts(facts2), facts2, torch.from_numpy(ctx),
                                           torch.from_numpy(questions))
    torch.testing.assert_close(full[perm], shuffled)
    torch.testing.assert_close(full, reordered, atol=1e-5, rtol=1e-4)
    assert torch.allclose(full.exp().sum(1), torch.ones(12), atol=1e-4)


def test_encoder_loops_reapply_the_same_blocks() -> None:
    """``encoder_loops=k`` adds depth, not parameters: the encoding is the shared blocks applied k times."""
    task = make_task("sequential_assignments")
    rng = np.random.default_rng(2)
    facts = stack_facts([task.generate(8, rng) for _ in range(2)], "cpu")
    torch.manual_seed(0)
    looped = FactSetLearner(task.fact_len, task.question_len, d_model=32, n_heads=2, encoder_layers=2,
                            encoder_loops=3).eval()
    torch.manual_seed(0)
    once = FactSetLearner(task.fact_len, task.question_len, d_model=32, n_heads=2, encoder_layers=2).eval()
    assert sum(p.numel() for p in looped.parameters()) == sum(p.numel() for p in once.parameters())
    with torch.no_grad():
        x = looped.embed_fact(facts)
        for _ in range(3):
            for block in looped.encoder:
                x = block(x, looped._fact_mask(facts))
        torch.testing.assert_close(looped.encode_facts(facts), looped.encoder_norm(x))
        assert not torch.allclose(looped.encode_facts(facts), once.encode_facts(facts), atol=1e-3)


def test_learned_expert_imitates_h_after_a_little_training() -> None:
    task = make_task("permutation_powering")
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    instances = [task.generate(8, rng) for _ in range(64)]
    ctx = np.repeat(np.arange(64), 4)
    questions = np.concatenate([task.sample_questions(inst, 4, rng, level=2) for inst in instances])
    oracle = truth_answer_fn(task, instances)
    batch = encode_transcripts(task, run_expert(task, instances, ctx, questions, oracle, rng).transcripts)
    hprime = LearnedExpert(task, d_model=32, n_layers=1)
    optimizer = torch.optim.Adam(hprime.parameters(), lr=3e-3)
    for _ in range(120):
        loss, _ = hprime.loss(batch.take(rng.integers(0, len(batch), 48)), task)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    answers, transcripts, n_primitive, n_x = run_learned_expert(task, hprime, instances, ctx, questions, oracle, rng,
                                                                keep_transcripts=True)
    truth = task.truth_batch(instances, ctx, questions)
    assert (answers == truth).mean() > 0.8
    assert n_primitive > 0 and len(transcripts) == len(questions)
    assert DONT_KNOW not in answers[:5] or (answers == truth).mean() > 0.8


def test_hprime_decides_each_row_as_it_would_alone() -> None:
    """H' drops the subquestion slots no row of a batch uses; a row's decision must not depend on its batch."""
    task = make_task("union_find")  # H asks 1-5 subquestions per round
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    instances = [task.generate(16, rng) for _ in range(6)]
    ctx = np.repeat(np.arange(6), 4)
    questions = np.concatenate([task.sample_questions(inst, 4, rng) for inst in instances])
    batch = encode_transcripts(task, run_expert(task, instances, ctx, questions, truth_answer_fn(task, instances),
                                                rng).transcripts)
    assert batch.subqs.shape[2] == task.round_subquestions
    hprime = LearnedExpert(task, d_model=32, n_layers=2).eval()
    for d in range(task.rounds + 1):
        rows = np.flatnonzero(batch.n_rounds >= d)
        together = hprime.decide(task, batch.question[rows], batch.subqs[rows], batch.subans[rows], d)
        for j, i in enumerate(rows):
            alone = hprime.decide(task, batch.question[i: i + 1], batch.subqs[i: i + 1], batch.subans[i: i + 1], d)
            assert alone.action[0] == together.action[j] and alone.answer[0] == together.answer[j]
            np.testing.assert_array_equal(alone.subqs[0], together.subqs[j])


def test_padding_for_the_attention_kernel_changes_no_real_output() -> None:
    from oversight.amplification.expert import pad_sequence_for_attention
    from oversight.amplification.learner import SelfAttentionBlock

    torch.manual_seed(0)
    block = SelfAttentionBlock(16, 4, mlp_ratio=2).eval()
    for length in (5, 13, 16, 29):
        x = torch.randn(6, length, 16)
        mask = torch.rand(6, length, length) > 0.4
        mask[:, :, 0] = True  # every token sees something
        padded_x, padded_mask = pad_sequence_for_attention(x, mask)
        expected = 16 * (-(-length // 16)) if length % 16 > 8 else length  # only a long ragged tail is padded
        assert padded_x.shape[1] == expected and tuple(padded_mask.shape) == (6, expected, expected)
        with torch.no_grad():
            torch.testing.assert_close(block(padded_x, padded_mask[:, None])[:, :length], block(x, mask[:, None]),
                                       atol=1e-5, rtol=1e-5)


def test_transcripts_with_more_subquestions_than_hprime_slots_are_refused() -> None:
    task = make_task("permutation_powering")  # one subquestion per round
    rng = np.random.default_rng(0)
    inst = task.generate(8, rng)
    run = run_expert(task, [inst], [0], task.sample_questions(inst, 1, rng, level=1),
                     truth_answer_fn(task, [inst]), rng)
    (transcript,) = run.transcripts
    qs, ans = transcript.rounds[0]
    transcript.rounds[0] = (np.concatenate([qs, qs]), np.concatenate([ans, ans]))
    with pytest.raises(ValueError, match="round_subquestions"):
        encode_transcripts(task, [transcript])


def test_cli_run_json_store_resume_show_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "runs.db"
    flags = ["--task", "permutation_powering", "--size", "8", "--steps", "4", "--d-model", "32", "--n-heads", "2",
             "--contexts-per-step", "4", "--questions-per-context", "4", "--test-contexts", "4", "--eval-every", "2",
             "--hprime-ready-loss", "100", "--store", str(store)]
    for mode in ("supervised", "amplify", "amplify-learned"):
        assert cli_main(["amplify", "run", "--mode", mode, "--json", *flags]) == 0
        row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        for key in ("task", "mode", "size", "steps", "seconds", "test_acc", "expert_calls", "gt_labels_used"):
            assert key in row
        assert row["mode"] == mode and row["steps"] == 4
        assert sum(v["n"] for v in row["test_acc_by_level"].values()) == 4 * 8  # test contexts x questions
        assert (row["gt_labels_used"] == 0) == (mode != "supervised")
    assert cli_main(["amplify", "run", "--mode", "amplify", *flags]) == 0  # resumes: no new row; a table
    table = capsys.readouterr().out
    assert "acc by level" in table and "L1:" in table
    records = ResultsStore(store).records(kind="amplify")
    assert len(records) == 3
    assert all(r["results"]["curve"] and "val_acc" in r["results"]["curve"][0] for r in records)
    assert all(r["config"]["lr"] == 1e-3 for r in records)  # the task's learning rate, as the run used it

    assert cli_main(["amplify", "show", "--task", "permutation_powering", "--store", str(store)]) == 0
    shown = capsys.readouterr().out
    assert "H' decomposes" in shown and "truth" in shown and ("by X" in shown or "by facts" in shown)
    assert cli_main(["amplify", "show", "--task", "union_find", "--store", str(store)]) == 2  # nothing trained

    from oversight.amplification.report import section

    html = section(ResultsStore(store), tmp_path / "report")
    assert "permutation_powering" in html and "<table" in html and "acc by question level" in html
    assert list((tmp_path / "report").glob("*.png"))
    assert "teacher_ema=" not in html  # one run per mode: nothing to tell apart
    # a variant of amplify is labelled by what differs from the other amplify run; supervised ignores the teacher
    for mode in ("amplify", "supervised"):
        assert cli_main(["amplify", "run", "--mode", mode, "--teacher-ema", "0.5", "--json", *flags]) == 0
    capsys.readouterr()
    assert len(ResultsStore(store).records(kind="amplify")) == 4
    html = section(ResultsStore(store), tmp_path / "report")
    assert html.count("teacher_ema=0.5") == 1 and html.count("teacher_ema=0.97") == 1


def test_run_key_ignores_only_fields_the_mode_does_not_use() -> None:
    from oversight.amplification.cli import run_key

    def key(**kw: object) -> str:
        return run_key(AmplifyConfig(**kw))  # type: ignore[arg-type]

    # tuning H' must not orphan stored supervised / amplify runs ...
    assert key(mode="supervised") == key(mode="supervised", hprime_lr=5e-4, teacher_ema=0.5)
    assert key(mode="amplify") == key(mode="amplify", hprime_layers=3)
    # ... but every field a mode uses changes its key
    assert key(mode="amplify") != key(mode="amplify", teacher_ema=0.5)
    assert key(mode="amplify-learned") != key(mode="amplify-learned", hprime_lr=5e-4)
    assert key(mode="supervised") != key(mode="supervised", lr=5e-4)
    assert key(mode="supervised") != key(mode="amplify")
    # a field added later is left out at its neutral value (stored runs keep their keys), not otherwise
    assert key(mode="amplify", lr_decay_steps=2000) != key(mode="amplify")
    assert key(mode="supervised", mix_sizes_from=4) != key(mode="supervised")
    assert key(mode="amplify-learned", target_workers=1) != key(mode="amplify-learned")  # its own is 2
    assert key(mode="amplify", target_workers=1) == key(mode="amplify")
    assert key(mode="amplify", encoder_loops=2) != key(mode="amplify")
    assert key(mode="amplify", checkpoint_every=7) == key(mode="amplify")  # how often it is saved changes nothing
    # where and how fast it runs changes nothing either
    assert key(mode="amplify", device="cpu", threads=2) == key(mode="amplify", device="auto", threads=1)
    from oversight.amplification.cli import KIND
    from oversight.config import config_hash, config_to_dict
    without = {k: v for k, v in config_to_dict(AmplifyConfig(mode="amplify").with_task_defaults()).items()
               if k not in ("lr_decay_steps", "mix_sizes_from", "target_passes", "target_workers", "encoder_loops",
                            "checkpoint_every", "device", "threads", "curriculum_min_size", "size_step", "weak", "w2s_loss")
                   and not k.startswith("hprime_")}
    assert without["lr"] == 1e-3  # the learning rate stored runs were made with, before it became the task's
    # the key is the identity's hash with the test set the run is measured on (v1's rows: a key of their own)
    assert key(mode="amplify") == config_hash(without, kind=KIND, test_set="v2")
    assert key(mode="amplify") != config_hash(without, kind=KIND, test_set="v1") != config_hash(without, kind=KIND)


def test_accuracy_by_level_is_printed_in_level_order() -> None:
    from oversight.amplification.train import format_acc_by_level

    stored = {"1": {"acc": 0.5, "n": 2}, "10": {"acc": 1.0, "n": 1}, "2": {"acc": 0.25, "n": 4}}  # as JSON sorts them
    assert format_acc_by_level(stored) == "L1:0.50 L2:0.25 L10:1.00"
    assert format_acc_by_level(None) == format_acc_by_level({}) == "-"


def test_learning_rate_defaults_to_the_tasks_own() -> None:
    """``--lr 0`` (the default) is ``task.learning_rate``: the run trains with it, and its store key and
    stored config are those of the run that names that rate."""
    from oversight.amplification.cli import run_key

    seq, perm = "sequential_assignments", "permutation_powering"
    assert AmplifyConfig(task=seq).with_task_defaults().lr == 3e-4
    assert AmplifyConfig(task=perm).with_task_defaults().lr == 1e-3
    assert AmplifyConfig(task=seq, lr=5e-4).with_task_defaults().lr == 5e-4
    assert run_key(AmplifyConfig(task=perm)) == run_key(AmplifyConfig(task=perm, lr=1e-3))
    assert run_key(AmplifyConfig(task=seq)) == run_key(AmplifyConfig(task=seq, lr=3e-4))
    assert run_key(AmplifyConfig(task=seq)) != run_key(AmplifyConfig(task=seq, lr=1e-3))
    with pytest.raises(ConfigError, match="lr"):
        AmplifyConfig(lr=-1e-3).validate()
    cfg = {**TINY, "task": seq, "mode": "supervised", "steps": 3, "warmup_steps": 1}
    weights = [train(AmplifyConfig(**cfg, lr=lr)).model.state_dict()["vocab_head.weight"]  # type: ignore[arg-type]
               for lr in (0.0, 3e-4, 1e-3)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_questions_per_context_defaults_to_the_tasks_own() -> None:
    """``--questions-per-context 0`` (the default) is ``task.questions_per_context``, in training and in the store key."""
    from oversight.amplification.cli import run_key

    perm, uf = "permutation_powering", "union_find"
    assert AmplifyConfig(task=perm).with_task_defaults().questions_per_context == 32
    assert AmplifyConfig(task=uf).with_task_defaults().questions_per_context == 16
    assert AmplifyConfig(task=perm, questions_per_context=8).with_task_defaults().questions_per_context == 8
    assert run_key(AmplifyConfig(task=perm)) == run_key(AmplifyConfig(task=perm, questions_per_context=32))
    assert run_key(AmplifyConfig(task=perm)) != run_key(AmplifyConfig(task=perm, questions_per_context=16))
    with pytest.raises(ConfigError, match="questions_per_context"):
        AmplifyConfig(questions_per_context=-1).validate()
    cfg = {**TINY, "task": perm, "mode": "supervised", "steps": 2, "questions_per_context": 0}
    assert train(AmplifyConfig(**cfg)).results["questions_trained"] == 2 * 4 * 32  # type: ignore[arg-type]


def test_learning_rate_warms_up_then_stays_or_falls_as_inverse_sqrt() -> None:
    from oversight.amplification.train import learning_rate_factor

    assert learning_rate_factor(0, 100) == pytest.approx(0.01)
    assert learning_rate_factor(99, 100) == learning_rate_factor(50_000, 100) == 1.0
    assert learning_rate_factor(2000, 100, decay_steps=2000) == 1.0
    assert learning_rate_factor(8000, 100, decay_steps=2000) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="lr_decay_steps"):
        AmplifyConfig(lr_decay_steps=-1).validate()
    # the training loop follows it: same seed, different decay -> different weights; same decay -> same
    cfg = {**TINY, "task": "permutation_powering", "mode": "supervised", "steps": 6, "warmup_steps": 1}
    weights = [train(AmplifyConfig(**cfg, lr_decay_steps=d)).model.state_dict()["vocab_head.weight"]  # type: ignore[arg-type]
               for d in (0, 1, 0)]
    assert torch.equal(weights[0], weights[2]) and not torch.equal(weights[0], weights[1])


def test_target_passes_reuse_each_batch_of_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """With target_passes=3, H is run on a batch once and X steps on it three times; only the first
    pass (unseen questions) feeds the curriculum."""
    from oversight.amplification import train as train_module

    with pytest.raises(ConfigError, match="target_passes"):
        AmplifyConfig(target_passes=0).validate()
    with pytest.raises(ConfigError, match="target_workers"):
        AmplifyConfig(target_workers=-1).validate()
    updates = []
    original = train_module.Curriculum.update
    monkeypatch.setattr(train_module.Curriculum, "update",
                        lambda self, acc, step: updates.append(step) or original(self, acc, step))
    cfg = {**TINY, "task": "permutation_powering", "mode": "amplify", "steps": 7, "target_passes": 3}
    results = train(AmplifyConfig(**cfg)).results  # type: ignore[arg-type]
    per_batch = TINY["contexts_per_step"] * TINY["questions_per_context"]  # type: ignore[operator]
    assert results["steps"] == 7 and results["questions_trained"] == 7 * per_batch
    assert results["expert_calls"] == 3 * per_batch  # batches drawn at steps 1, 4, 7
    assert updates == [1, 4, 7]


def test_decision_cache_gives_the_same_targets_and_is_used() -> None:
    from oversight.amplification.expert import DecisionCache

    task = make_task("union_find")
    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    hprime = LearnedExpert(task, d_model=32, n_layers=1)
    instances = [task.generate(8, rng) for _ in range(8)]
    ctx = np.repeat(np.arange(8), 6)
    questions = np.concatenate([task.sample_questions(inst, 6, rng) for inst in instances])
    oracle = truth_answer_fn(task, instances)
    cache = DecisionCache()
    plain = run_learned_expert(task, hprime, instances, ctx, questions, oracle, np.random.default_rng(9))[0]
    first = run_learned_expert(task, hprime, instances, ctx, questions, oracle, np.random.default_rng(9), cache=cache)[0]
    assert cache.hits == 0 and cache.misses > 0
    misses = cache.misses
    again = run_learned_expert(task, hprime, instances, ctx, questions, oracle, np.random.default_rng(9), cache=cache)[0]
    np.testing.assert_array_equal(plain, first)
    np.testing.assert_array_equal(plain, again)
    assert cache.misses == misses  # the second pass computed nothing
    cache.use_version(0)  # the weights it was filled under: kept
    assert cache.table
    cache.use_version(1)  # H' has been updated since: forgotten
    assert not cache.table and cache.version == 1


def test_rolling_loss_weights_by_transcripts_and_forgets_old_ones() -> None:
    from oversight.amplification.expert import RollingLoss

    rolling = RollingLoss(window=10)
    assert rolling.value == float("inf")
    rolling.add(1.0, 2)
    rolling.add(0.0, 6)
    assert rolling.value == pytest.approx(0.25)
    rolling.add(0.5, 10)  # the window is now full with newer transcripts only
    assert rolling.value == pytest.approx(0.5)


def test_time_ratio_is_taken_at_the_best_accuracy_both_runs_reached() -> None:
    from oversight.amplification.report import seconds_to, time_ratio_at_common_accuracy

    def run(points: list[tuple[float, float]]) -> dict[str, object]:
        return {"curve": [{"seconds": t, "acc": {"16": a}} for t, a in points]}

    supervised = run([(0, 0.1), (10, 0.6), (20, 0.9), (30, 0.99)])
    amplify = run([(0, 0.1), (15, 0.5), (40, 0.8), (60, 0.92)])
    assert seconds_to(supervised["curve"], 16, 0.9) == 20.0  # type: ignore[arg-type]
    assert seconds_to(supervised["curve"], 8, 0.1) is None  # type: ignore[arg-type]
    acc, ratio = time_ratio_at_common_accuracy(amplify, supervised, 16)  # type: ignore[misc]
    assert acc == 0.92 and ratio == pytest.approx(60 / 30)
    # the baseline is the weaker one: the common accuracy is its best
    acc, ratio = time_ratio_at_common_accuracy(supervised, run([(0, 0.2), (5, 0.6)]), 16)  # type: ignore[misc]
    assert acc == 0.6 and ratio == pytest.approx(10 / 5)
    assert time_ratio_at_common_accuracy(run([]), supervised, 16) is None


def test_expert_calls_and_hprime_updates_fall_as_hprime_gets_accurate() -> None:
    from oversight.amplification.train import hprime_call_rate, hprime_schedule

    cfg = AmplifyConfig(hprime_calls_per_step=8.0)
    assert [hprime_schedule(loss) for loss in (float("inf"), 0.5, 0.05, 0.005)] == [1.0, 1.0, 0.1, 0.01]
    assert hprime_call_rate(cfg, 0.5) == 8.0
    assert hprime_call_rate(cfg, 0.05) == pytest.approx(0.8)
    assert hprime_call_rate(cfg, 0.001) == pytest.approx(0.08)


def test_amplify_learned_rewarms_hprime_at_every_curriculum_stage() -> None:
    """X pauses at each new stage until fresh transcripts show H' imitates H on its questions."""
    tiny = dict(task="permutation_powering", mode="amplify-learned", size=8, steps=40, minutes=0, d_model=32,
                n_heads=2, contexts_per_step=8, questions_per_context=4, test_contexts=4, eval_every=20,
                curriculum_threshold=0.0, min_stage_steps=5, curriculum_window=2, hprime_d_model=32,
                hprime_layers=1, hprime_ready_loss=100.0, hprime_calls_per_step=8.0)
    rewarm = train(AmplifyConfig(**tiny)).results  # type: ignore[arg-type]
    once = train(AmplifyConfig(**tiny, hprime_rewarm_each_stage=False)).results  # type: ignore[arg-type]
    advances = len(rewarm["curriculum_history"])
    assert advances >= 3
    # 64 fresh transcripts at <= 8 per step: >= 8 warm-up steps per stage, only at the start without re-warming
    assert rewarm["hprime_warmup_steps"] >= 8 * (1 + advances)
    assert 8 <= once["hprime_warmup_steps"] < 8 * (1 + advances)
    assert rewarm["gt_labels_used"] == 0


@pytest.mark.parametrize("field, value", [("hprime_loss_window", 0), ("hprime_calls_per_step", 0.0),
                                          ("hprime_updates_per_step", -1.0), ("size", 65), ("mode", "distill"),
                                          ("mix_sizes_from", 1), ("encoder_loops", 0)])
def test_invalid_amplify_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        AmplifyConfig(**{field: value}).validate()  # type: ignore[arg-type]
    assert field in str(err.value)


@pytest.mark.parametrize("task_name", ["sequential_assignments", "union_find"])
def test_mix_sizes_from_draws_instances_up_to_the_stage_size(task_name: str) -> None:
    """Off: every training instance has the stage's size. On: sizes from mix_sizes_from up to it, in one batch."""
    def sizes_drawn(mix: int) -> list[int]:
        task = make_task(task_name)
        drawn: list[int] = []
        generate = task.generate
        task.generate = lambda size, rng: drawn.append(size) or generate(size, rng)  # type: ignore[method-assign]
        cfg = AmplifyConfig(task=task_name, mode="amplify", start_size=16, steps=3, mix_sizes_from=mix,
                            **{**TINY, "size": 16, "contexts_per_step": 16, "curriculum_min_size": 16})
        train(cfg, task=task)
        # the training batches: after the validation sets, before the test sets
        return drawn[cfg.val_contexts * len(cfg.test_sizes):][:3 * 16]

    assert set(sizes_drawn(0)) == {16}
    mixed = sizes_drawn(4)
    assert min(mixed) >= 4 and max(mixed) <= 16 and len(set(mixed)) > 3


def test_runs_stored_before_a_field_existed_are_labelled_as_they_ran() -> None:
    """A field added later reads as its ``key_neutral`` value (what old runs did), not as today's default."""
    from oversight.amplification.report import variants
    from oversight.config import as_stored_by_now, config_to_dict

    new = config_to_dict(AmplifyConfig(mode="amplify"))
    old = {k: v for k, v in new.items() if k not in ("overlap_targets", "teacher_ema")}
    filled = as_stored_by_now(AmplifyConfig, old)
    assert filled["overlap_targets"] is False  # key_neutral: the runs before it made targets in one process
    assert filled["teacher_ema"] == AmplifyConfig().teacher_ema  # no key_neutral: the default
    assert as_stored_by_now(AmplifyConfig, new) == new
    records = [{"config": old}, {"config": new}]
    labels = variants(records)
    assert [labels[id(r)] for r in records] == ["overlap_targets=False", "overlap_targets=True"]
    # how often a run was checkpointed (as where it ran) is no variant of the method
    records = [{"config": new}, {"config": {**new, "checkpoint_every": 0, "threads": 2}}]
    labels = variants(records)
    assert [labels[id(r)] for r in records] == ["", ""]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("mode", ["amplify", "amplify-learned"])
def test_target_worker_answers_with_the_teacher_of_one_step_earlier(mode: str, workers: int) -> None:
    """With k workers, batch t (t >= k) is Amplify^H(teacher after step t-k-1's update) (in
    amplify-learned: Amplify^{H'}(teacher), with H' as it was then, and H's transcripts as the plan
    asked): the same questions and targets as ``make_batch`` with those models. One worker draws
    as a one-process run would; worker j of two draws batches j, j+2, ... from a generator of its own."""
    from oversight.amplification.expert import DecisionCache
    from oversight.amplification.train import (
        HPrimePlan,
        TargetWorker,
        build_hprime,
        build_learner,
        make_batch,
    )

    cfg = AmplifyConfig(task="permutation_powering", mode=mode, target_workers=workers, **TINY).with_task_defaults()
    task = make_task(cfg.task)
    torch.manual_seed(0)
    teacher = build_learner(cfg, task).requires_grad_(False)
    hprime = build_hprime(cfg, task).requires_grad_(False) if mode == "amplify-learned" else None
    plans = [HPrimePlan(expert_calls=t % 3, make_targets=t != 1, hprime_version=t) for t in range(4)]
    worker = TargetWorker(cfg, task, teacher, "cpu", hprime)
    teachers, hprimes, made = [copy.deepcopy(teacher)], [copy.deepcopy(hprime)], []
    try:
        assert len(multiprocessing.active_children()) == workers
        for t in range(4):
            made.append(worker.next_batch(8, 3, teacher, "cpu", hprime, plans[t]))
            with torch.no_grad():  # a "training step": the models change a lot, so a stale copy shows
                for p in [*teacher.parameters(), *(hprime.parameters() if hprime is not None else [])]:
                    p.add_(torch.randn_like(p))
            teachers.append(copy.deepcopy(teacher))
            hprimes.append(copy.deepcopy(hprime))
    finally:
        worker.close()
    assert multiprocessing.active_children() == []
    rngs = [np.random.default_rng(cfg.seed if workers == 1 else [cfg.seed, j]) for j in range(workers)]
    ledger = GroundTruthLedger(task, allow_non_primitive=False)
    for t, batch in enumerate(made):
        asked = max(0, t - workers)  # the step that asked for the batch: its plan and its models
        plan = plans[asked]
        expected = make_batch(task, cfg, 8, 3, teachers[asked], ledger, rngs[t % workers], "cpu",
                              hprimes[asked], plan, DecisionCache())
        np.testing.assert_array_equal(batch.questions, expected.questions)
        if mode == "amplify-learned":
            assert batch.expert_calls == plan.expert_calls
            assert (batch.transcripts is None) == (expected.transcripts is None) == (plan.expert_calls == 0)
            if batch.transcripts is not None:
                for name in ("question", "subqs", "subans", "answer"):
                    np.testing.assert_array_equal(getattr(batch.transcripts, name), getattr(expected.transcripts, name))
            assert (batch.targets is None) == (not plan.make_targets)
            if batch.targets is None:
                continue
        np.testing.assert_array_equal(batch.targets, expected.targets)
        assert batch.teacher_answers == expected.teacher_answers > 0
