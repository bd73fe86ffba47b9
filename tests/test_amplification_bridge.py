"""The bridge between the two families: a weak supervisor W on the environments, the weak modes'
targets, their ledgers and truth guard, the bridge command and its tables."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from oversight.amplification.batches import GroundTruthLedger, draw_questions, make_batch
from oversight.amplification.bridge import ARMS, bridge_rows, collect, correct_bits, markdown, section
from oversight.amplification.cli import run_and_store
from oversight.amplification.config import WEAK_MODES, AmplifyConfig, parse_weak
from oversight.amplification.env import DONT_KNOW, VOCAB_SIZE, Task, make_task
from oversight.amplification.results import base_runs
from oversight.amplification.tasks.wildcard_search import WILD
from oversight.amplification.train import train
from oversight.amplification.truth import GroundTruthRead
from oversight.amplification.weak import WEAK_SEED_OFFSET, is_weak_run, weak_config
from oversight.cli import main as cli_main
from oversight.errors import ConfigError
from oversight.store import ResultsStore

TINY = dict(size=6, minutes=0, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1, contexts_per_step=8,
            questions_per_context=8, eval_every=20, val_contexts=16, test_contexts=16, test_questions=4,
            hprime_d_model=32, hprime_layers=1, hprime_batch=16, hprime_ready_loss=100.0, stop_at_acc=0.0,
            overlap_targets=False, checkpoint_every=0)


class TruthModel(torch.nn.Module):
    """A stand-in for W that answers every question truly (from the instances it is told), except
    those ``wrong`` picks, which it answers DONT_KNOW; it stands where a FactSetLearner would."""

    def __init__(self, task: Task, instances: list[Any], wrong: Any = None) -> None:
        super().__init__()
        self.task, self.instances, self.wrong = task, instances, wrong
        self.asked: list[np.ndarray] = []

    def encode_facts(self, facts: torch.Tensor) -> torch.Tensor:
        return facts.float()

    def answer_log_probs(self, memory: torch.Tensor, facts: torch.Tensor, ctx_index: torch.Tensor,
                         questions: torch.Tensor, legal: torch.Tensor | None = None) -> torch.Tensor:
        qs, ctx = questions.numpy(), ctx_index.numpy()
        self.asked.append(qs)
        answers = self.task.truth_batch(self.instances, ctx, qs)
        if self.wrong is not None:
            answers = np.where(self.wrong(qs), DONT_KNOW, answers)
        out = torch.full((len(qs), VOCAB_SIZE), -30.0)
        out[torch.arange(len(qs)), torch.from_numpy(answers)] = 0.0
        return out


def _batch(task_name: str, mode: str, weak: Any = None, seed: int = 0) -> Any:
    task = make_task(task_name)
    cfg = AmplifyConfig(task=task_name, mode=mode, weak="budget:5" if mode in WEAK_MODES else "", **TINY)
    cfg = cfg.with_task_defaults(task)
    ledger = GroundTruthLedger(task, allow_non_primitive=mode == "supervised")
    teacher = torch.nn.Identity()
    return make_batch(task, cfg, cfg.size, task.num_levels, teacher, ledger, np.random.default_rng(seed), "cpu",
                      weak=weak)


def _instances(task_name: str, seed: int = 0) -> list[Any]:
    """The instances ``make_batch`` draws from the generator seeded ``seed`` (the same draws)."""
    task = make_task(task_name)
    cfg = AmplifyConfig(task=task_name, **TINY).with_task_defaults(task)
    return draw_questions(task, cfg, cfg.size, task.num_levels, np.random.default_rng(seed))[0]


@pytest.mark.parametrize("task_name", ["permutation_powering", "sequential_assignments", "wildcard_search",
                                       "union_find", "shortest_path"])
def test_amplified_weak_with_a_perfect_w_gives_the_supervised_targets(task_name: str) -> None:
    task = make_task(task_name)
    supervised = _batch(task_name, "supervised")
    perfect = TruthModel(task, _instances(task_name))
    amplified = _batch(task_name, "amplified-weak", weak=perfect)
    assert np.array_equal(amplified.questions, supervised.questions)
    # shortest path's next hop may have several right answers: each target must be one of them
    right = task.correct_batch(supervised.instances, supervised.ctx_index, supervised.questions, amplified.targets)
    assert right.all()
    if task_name != "shortest_path":
        assert np.array_equal(amplified.targets, supervised.targets)
    assert amplified.gt_labels == 0 and amplified.weak_answers > 0


def test_a_w_that_errs_on_one_sub_kind_spoils_exactly_the_questions_that_ask_it() -> None:
    """Wildcard search: W fails every pattern with exactly one wildcard. H splits a question's first
    wildcard, so only two-wildcard questions ask W such a pattern (one wildcard: the facts answer;
    three or more: W answers two-or-more-wildcard patterns, correctly)."""
    task = make_task("wildcard_search")
    instances = _instances("wildcard_search")
    one_wild = (lambda qs: (qs == WILD).sum(axis=1) == 1)  # noqa: E731
    batch = _batch("wildcard_search", "amplified-weak", weak=TruthModel(task, instances, wrong=one_wild))
    wilds = (batch.questions == WILD).sum(axis=1)
    truth = task.truth_batch(batch.instances, batch.ctx_index, batch.questions)
    wrong = batch.targets != truth
    assert (wilds == 2).any() and (wilds != 2).any()
    assert np.array_equal(wrong, wilds == 2)


def test_ledgers_count_expert_and_w_calls_on_a_hand_checked_batch() -> None:
    """Wildcard search: every question costs one call of H; H asks two subquestions; W answers those
    with two or more wildcards (questions with three or more), the facts those with none."""
    task = make_task("wildcard_search")
    model = TruthModel(task, _instances("wildcard_search"))
    batch = _batch("wildcard_search", "amplified-weak", weak=model)
    wilds = (batch.questions == WILD).sum(axis=1)
    assert batch.expert_calls == len(batch.questions)
    assert batch.weak_answers == 2 * int((wilds >= 2).sum())
    assert batch.primitive_answers == 2 * int((wilds == 1).sum())
    assert batch.teacher_answers == 0 and batch.gt_labels == 0
    direct = _batch("wildcard_search", "weak-to-strong", weak=TruthModel(task, _instances("wildcard_search")))
    assert direct.weak_answers == len(direct.questions) and direct.expert_calls == 0 and direct.primitive_answers == 0


def test_weak_specs_parse_and_bad_ones_name_the_field() -> None:
    assert str(parse_weak("small-model:1x32")) == "small-model:1x32"
    assert parse_weak("small-size:4", 8).size == 4 and parse_weak("budget:300").steps == 300
    for bad in ("tiny:3", "budget:0", "small-size:8", "small-model:x", "small-model:1x30"):
        with pytest.raises(ConfigError, match="weak"):
            parse_weak(bad, 8)
    with pytest.raises(ConfigError, match="weak"):
        AmplifyConfig(task="union_find", mode="amplified-weak", size=8).validate()
    with pytest.raises(ConfigError, match="w2s_loss"):
        AmplifyConfig(task="union_find", mode="weak-to-strong", weak="budget:3", w2s_loss="product").validate()
    base = AmplifyConfig(task="union_find", mode="amplified-weak", size=8, seed=2, weak="small-size:4")
    w = weak_config(base)
    assert (w.mode, w.size, w.seed, w.weak) == ("supervised", 4, 2 + WEAK_SEED_OFFSET, "")
    w = weak_config(dataclasses.replace(base, weak="small-model:1x16"))
    assert (w.encoder_layers, w.decoder_layers, w.d_model, w.size) == (1, 1, 16, 8)
    assert weak_config(dataclasses.replace(base, weak="budget:7")).steps == 7


def test_w_never_trains_on_an_instance_x_trains_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spy on every instance drawn while W trains and while X trains: no instance is in both."""
    task_cls = type(make_task("union_find"))
    honest = task_cls.generate
    seen: dict[str, set[bytes]] = {"weak": set(), "x": set()}
    phase = {"now": "weak"}

    def spy(self: Task, size: int, rng: np.random.Generator) -> Any:
        inst = honest(self, size, rng)
        seen[phase["now"]].add(inst.facts.tobytes())
        return inst

    import oversight.amplification.cli as cli_module

    real_train = cli_module.train

    def phased(cfg: AmplifyConfig, **kw: Any) -> Any:
        phase["now"] = "weak" if is_weak_run(dataclasses.asdict(cfg)) else "x"
        return real_train(cfg, **kw)

    monkeypatch.setattr(task_cls, "generate", spy)
    monkeypatch.setattr(cli_module, "train", phased)
    monkeypatch.setattr("oversight.amplification.train.make_eval_sets", _no_spy_eval_sets(honest))
    cfg = AmplifyConfig(task="union_find", mode="amplified-weak", weak="budget:10", steps=10, **TINY)
    run_and_store(cfg, ResultsStore(tmp_path / "s.db"))
    assert len(seen["weak"]) > 50 and len(seen["x"]) > 50
    assert not seen["weak"] & seen["x"]


def _no_spy_eval_sets(honest: Any) -> Any:
    """Validation and test sets drawn without the spy (both W and X are measured on them)."""
    from oversight.amplification import evaluation

    def build(task: Task, *args: Any, **kw: Any) -> Any:
        original = type(task).generate
        type(task).generate = honest
        try:
            return evaluation.make_eval_sets(task, *args, **kw)
        finally:
            type(task).generate = original

    return build


@pytest.mark.parametrize("mode", WEAK_MODES)
def test_weak_modes_read_no_true_answer_and_a_peek_fails_them(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task("union_find")
    weak = train(AmplifyConfig(task="union_find", mode="supervised", steps=5, **TINY), task=task).model
    cfg = AmplifyConfig(task="union_find", mode=mode, weak="budget:5", steps=6, eval_every=2,
                        **{k: v for k, v in TINY.items() if k != "eval_every"})
    results = train(cfg, task=task, weak=weak).results
    assert results["gt_labels_used"] == 0 and results["weak_answers"] > 0
    honest = task.sample_questions

    def peeking(inst, m, rng, level=None):  # type: ignore[no-untyped-def]
        assert inst.data.depth is not None
        return honest(inst, m, rng, level)

    monkeypatch.setattr(task, "sample_questions", peeking)
    with pytest.raises(GroundTruthRead, match="ground truth read"):
        train(cfg, task=task, weak=weak)


def test_w_is_weaker_than_the_ceiling_it_is_measured_against(tmp_path: Path) -> None:
    """Learning: at a tiny size, a budget W (20 steps) answers far worse on validation than X's
    ceiling (supervised, 800 steps), which is well above chance; W is stored as a run of its own."""
    cfg = AmplifyConfig(task="wildcard_search", mode="weak-to-strong", weak="budget:20", steps=800, seed=1,
                        **{**TINY, "size": 4, "encoder_layers": 2, "decoder_layers": 2, "contexts_per_step": 16,
                           "eval_every": 100, "val_contexts": 32, "test_contexts": 32, "test_questions": 8})
    store = ResultsStore(tmp_path / "s.db")
    weak = run_and_store(weak_config(cfg), store)
    ceiling = run_and_store(dataclasses.replace(cfg, mode="supervised", weak=""), store)
    assert weak["steps"] == 20 and ceiling["steps"] == 800
    assert ceiling["val_acc"] > 0.7 and weak["val_acc"] < ceiling["val_acc"] - 0.25
    assert all(is_weak_run(r["config"]) == (r["results"]["steps"] == 20) for r in store.records(kind="amplify"))


def test_the_bridge_command_runs_every_arm_and_tabulates_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "bridge.db"
    flags = ["--task", "union_find", "--size", "5", "--weak", "budget:8", "--steps", "24", "--seeds", "2",
             "--d-model", "32", "--n-heads", "2", "--encoder-layers", "1", "--decoder-layers", "1",
             "--eval-every", "8", "--val-contexts", "16", "--test-contexts", "16", "--test-questions", "4",
             "--contexts-per-step", "8", "--checkpoint-every", "0", "--no-overlap-targets", "--hprime-d-model", "32",
             "--hprime-ready-loss", "100", "--quiet", "--store", str(store)]
    assert cli_main(["amplify", "bridge", *flags]) == 0
    out = capsys.readouterr().out
    for arm in (*ARMS, "W (budget:8)", "weak-to-strong (logconf)"):
        assert arm in out
    records = ResultsStore(store).records(kind="amplify")
    assert len(records) == 2 * (len(ARMS) + 2)  # six arms, weak-to-strong's second loss and W, per seed
    assert len(base_runs(records)) == 2 * 3
    (group,) = collect(records)
    rows = {r["arm"]: r for r in bridge_rows(group, n_boot=50)}
    assert rows["supervised"]["gt_labels"] > 0 and rows["W (budget:8)"]["steps"] == 8
    for arm in ("weak-to-strong", "amplified-weak", "amplified-weak+self", "amplify", "amplify-learned"):
        assert rows[arm]["gt_labels"] == 0 and rows[arm]["pgr_seeds"] == [0, 1]
    for arm in ("weak-to-strong", "weak-to-strong (logconf)", "amplified-weak", "amplified-weak+self"):
        assert rows[arm]["weak_answers"] > 0
    assert rows["weak-to-strong"]["acc"] != rows["weak-to-strong (logconf)"]["acc"]
    assert rows["weak-to-strong"]["expert_calls"] == 0 and rows["amplified-weak"]["expert_calls"] > 0
    doc = markdown(ResultsStore(store))
    assert "### union_find, n=5, W = budget:8, 24 steps" in doc and "amplified-weak+self" in doc
    assert len(correct_bits(group["arms"]["amplify"][0])) == 16 * 4
    page = section(ResultsStore(store), tmp_path)
    assert page.count("<tr>") == 1 + 8 and (tmp_path / "bridge_0_union_find_5_budget_8.png").stat().st_size > 1000
    assert cli_main(["amplify", "bridge", *flags, "--json"]) == 0  # all stored: nothing reruns
    assert json.loads(capsys.readouterr().out.splitlines()[-1])[0]["arm"] == "W (budget:8)"
    assert len(ResultsStore(store).records(kind="amplify")) == len(records)


def test_bridge_refuses_unknown_arms_and_a_missing_w(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = str(tmp_path / "s.db")
    assert cli_main(["amplify", "bridge", "--task", "union_find", "--arms", "amplify,oracle", "--weak", "budget:3",
                     "--store", store]) != 0
    assert "arms" in capsys.readouterr().err
    assert cli_main(["amplify", "bridge", "--task", "union_find", "--store", store]) != 0
    assert "weak" in capsys.readouterr().err
    for command in ("bridge", "run"):
        assert cli_main(["amplify", command, "--task", "nope", "--weak", "budget:3", "--store", store]) != 0
        assert "unknown task 'nope'; available: permutation_powering" in capsys.readouterr().err
    assert not Path(store).exists()


def test_x_takes_over_from_w_after_two_evaluations_in_a_row_at_the_final_stage(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """amplified-weak+self: W answers the subquestions until X's teacher composes better than W at
    two evaluations in a row (a dip resets the count); from then on X's teacher answers them."""
    import oversight.amplification.train as train_module

    task = make_task("union_find")
    weak = train(AmplifyConfig(task="union_find", mode="supervised", steps=2, **{**TINY, "size": 4}), task=task).model
    scores = iter([0.6, 0.4, 0.6, 0.7] + [0.9] * 20)
    calls: list[str] = []

    def consistency(model: Any, *args: Any, **kw: Any) -> float:
        calls.append("weak" if model is weak else "x")
        return 0.5 if model is weak else next(scores)

    monkeypatch.setattr(train_module, "self_consistency", consistency)
    cfg = AmplifyConfig(task="union_find", mode="amplified-weak+self", weak="budget:2", steps=8, eval_every=1,
                        **{**{k: v for k, v in TINY.items() if k != "eval_every"}, "size": 4})
    results = train(cfg, task=task, weak=weak).results
    assert results["self_from_step"] == 4
    assert calls == ["weak", "x", "x", "x", "x"]  # W once (frozen), then X until it took over
    assert results["weak_answers"] > 0 and results["teacher_answers"] > 0
    assert results["switch_expert_calls"] == 5 * cfg.val_contexts * cfg.test_questions


def test_logconf_loss_moves_from_w_to_x_own_answers_as_alpha_grows() -> None:
    from oversight.amplification.losses import IGNORE, logconf_loss

    log_probs = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]]), dim=1)
    w = torch.tensor([1, IGNORE])
    own = log_probs.argmax(1)
    assert logconf_loss(log_probs, w, 0.0) == pytest.approx(float(-log_probs[0, 1]))
    assert logconf_loss(log_probs, w, 1.0) == pytest.approx(float(-log_probs[torch.arange(2), own].mean()))
    mid = logconf_loss(log_probs, w, 0.25)
    assert mid == pytest.approx(0.75 * float(-log_probs[0, 1]) + 0.25 * float(-log_probs[torch.arange(2), own].mean()))
