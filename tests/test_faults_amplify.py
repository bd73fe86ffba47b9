"""Faults in an amplification run: a killed trainer leaves no worker behind, an interrupted run resumes
from its checkpoint to exactly the numbers of an uninterrupted one, and bad flags or an unwritable
output folder are refused up front in one line that names them."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from oversight.amplification.train import AmplifyConfig, TrainedRun, train
from oversight.cli import main as cli_main
from oversight.config import make_config

SRC = Path(__file__).resolve().parents[1] / "src"


# ----------------------------------------------------------------------------------------------
# workers die with their parent
# ----------------------------------------------------------------------------------------------
def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaps, in a container whose init does not, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from /proc")
def test_target_workers_exit_when_the_trainer_is_killed(tmp_path: Path) -> None:
    """kill -9 of ``amplify run`` must not leave its target workers running (each holds a model and
    a core): they exit within seconds, by PR_SET_PDEATHSIG or their watch on the parent pid."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OVERSIGHT_THREADS": "1"}
    cmd = [sys.executable, "-m", "oversight.cli", "amplify", "run", "--task", "union_find", "--mode",
           "amplify-learned", "--size", "8", "--steps", "100000", "--minutes", "10", "--d-model", "32",
           "--n-heads", "2", "--contexts-per-step", "4", "--questions-per-context", "4", "--test-contexts", "4",
           "--hprime-ready-loss", "100", "--store", str(tmp_path / "x.db"), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            workers = {c for c in _children(proc.pid) if _alive(c)}
        assert len(workers) == 2, f"no target workers appeared (exit {proc.poll()})"
        time.sleep(1.0)  # the workers are past their start-up
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "a target worker outlived its killed trainer"
    finally:
        for pid in [proc.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def _watched_sleeper(parent: int) -> None:
    """A worker without PR_SET_PDEATHSIG (as off Linux): only the parent watch can end it."""
    import ctypes

    from oversight.amplification.workers import _die_with_parent

    def no_libc(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no prctl here")

    ctypes.CDLL = no_libc  # type: ignore[assignment,misc]
    _die_with_parent(parent)
    time.sleep(120)


def _parent_of_sleeper(pids: Any) -> None:
    child = multiprocessing.get_context("fork").Process(target=_watched_sleeper, args=(os.getpid(),), daemon=False)
    child.start()
    pids.put(child.pid)
    time.sleep(120)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a process tree")
def test_the_parent_watch_alone_ends_a_worker_whose_parent_died() -> None:
    context = multiprocessing.get_context("fork")
    pids = context.Queue()
    parent = context.Process(target=_parent_of_sleeper, args=(pids,))
    parent.start()
    worker = pids.get(timeout=60)
    try:
        time.sleep(0.5)
        assert _alive(worker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.join(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of ``oversight ...`` (argparse refusals exit through SystemExit)."""
    try:
        code = cli_main(argv)
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# checkpoints and resume
# ----------------------------------------------------------------------------------------------
SMALL = dict(size=8, minutes=0, steps=120, eval_every=20, checkpoint_every=40, d_model=32, n_heads=2,
             encoder_layers=1, decoder_layers=1, contexts_per_step=4, questions_per_context=4, test_contexts=4,
             test_questions=4, hprime_d_model=32, hprime_batch=16, hprime_ready_loss=100.0, stop_at_acc=0.0,
             curriculum_threshold=0.5, min_stage_steps=10, curriculum_window=5)  # stages do advance in 120 steps


class Interrupted(Exception):
    """Stands for a kill: the run stops between two checkpoints."""


def _interrupt_at(step: int) -> Callable[[dict[str, Any]], None]:
    def on_eval(point: dict[str, Any]) -> None:
        if point["step"] == step:
            raise Interrupted(step)
    return on_eval


def _without_time(obj: Any) -> Any:
    """Results less what depends on the clock (wall time, seconds at each point, steps per second) and
    the machine's state when the run ended (its provenance: load average)."""
    if isinstance(obj, dict):
        return {k: _without_time(v) for k, v in obj.items()
                if k not in ("seconds", "wall_seconds", "steps_per_second", "provenance")}
    if isinstance(obj, list):
        return [_without_time(v) for v in obj]
    return obj


def _assert_same_run(a: TrainedRun, b: TrainedRun) -> None:
    assert _without_time(a.results) == _without_time(b.results)
    models = [(a.model, b.model)] + ([(a.hprime, b.hprime)] if a.hprime is not None else [])
    for x, y in models:
        assert y is not None
        for (name, p), q in zip(x.state_dict().items(), y.state_dict().values(), strict=True):
            assert torch.equal(p, q), name


@pytest.mark.parametrize(("task", "mode", "overrides"), [
    ("union_find", "supervised", {}),  # one target worker
    ("union_find", "amplify-learned", {}),  # two target workers, H' and its buffer
    ("union_find", "amplify", {"target_passes": 2, "checkpoint_every": 25}),  # mid-batch checkpoint
    ("union_find", "amplify-learned", {"overlap_targets": False}),  # in one process: its generator and cache
])
def test_an_interrupted_run_resumes_to_exactly_the_unstopped_runs_numbers(
        tmp_path: Path, task: str, mode: str, overrides: dict[str, Any]) -> None:
    """Stopped at step 100 (its last checkpoint at 80, or 75) and resumed, a run ends with the same
    curve, test accuracy, accounting and weights as one never stopped (and never checkpointed)."""
    cfg = AmplifyConfig(task=task, mode=mode, **{**SMALL, **overrides})  # type: ignore[arg-type]
    unstopped = train(cfg)
    path = tmp_path / "checkpoints" / "run.pt"
    with pytest.raises(Interrupted):
        train(cfg, on_eval=_interrupt_at(100), checkpoint=path)
    saved = torch.load(path, weights_only=False)
    every = cfg.checkpoint_every
    assert saved["acct"]["steps"] == 99 // every * every  # the evaluation at 100 stopped it before its checkpoint
    if cfg.target_passes > 1:
        assert saved["passes_left"] == 1 and saved["current"] is not None  # X was mid-batch
    if cfg.overlap_targets:  # each worker had made its next batch: the resumed run is handed those first
        workers = saved["workers"]["workers"]
        assert len(workers) == (2 if mode == "amplify-learned" else 1)
        assert all(w["pending"] is not None for w in workers)
    assert not list(path.parent.glob(".*.tmp"))  # written whole, renamed into place
    resumed = train(cfg, checkpoint=path)
    _assert_same_run(resumed, unstopped)
    assert resumed.results["curriculum_history"], "the curriculum never advanced: the test would miss its state"
    assert resumed.results["seconds"] >= saved["acct"]["seconds"]  # wall time goes on from the checkpoint's
    assert multiprocessing.active_children() == []


def test_an_unreadable_checkpoint_is_reported_and_the_run_starts_over(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import oversight.progress

    cfg = AmplifyConfig(task="union_find", mode="amplify", **{**SMALL, "steps": 20, "checkpoint_every": 10,
                                                              "eval_every": 10})  # type: ignore[arg-type]
    path = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        train(cfg, on_eval=_interrupt_at(20), checkpoint=path)
    whole = path.read_bytes()
    fresh = train(cfg)
    monkeypatch.setattr(oversight.progress, "_QUIET", False)
    for damaged in (whole[: len(whole) // 2], b"not a checkpoint", b""):
        path.write_bytes(damaged)
        capsys.readouterr()
        _assert_same_run(train(cfg, checkpoint=path), fresh)
        lines = [line for line in capsys.readouterr().err.splitlines() if "starting the run over" in line]
        assert len(lines) == 1 and f"checkpoint {path} cannot be read" in lines[0], lines
    # a checkpoint of another config is not resumed either
    path.write_bytes(whole)
    other = dataclasses.replace(cfg, teacher_ema=0.5)
    capsys.readouterr()
    assert train(other, checkpoint=path).results["curve"][0]["step"] == 0
    assert "is not one of this run's config" in capsys.readouterr().err


def test_amplify_run_resumes_from_its_checkpoint_and_deletes_it_once_stored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``oversight amplify run`` interrupted (Ctrl-C) after a checkpoint, then run again: the stored
    row is that of an uninterrupted run, and the checkpoint is gone."""
    import oversight.amplification.cli as amplify_cli
    from oversight.amplification.cli import run_key
    from oversight.store import ResultsStore, artifacts_for

    flags = ["amplify", "run", "--task", "union_find", "--mode", "amplify", "--size", "8", "--steps", "60",
             "--eval-every", "20", "--checkpoint-every", "20", "--d-model", "32", "--n-heads", "2",
             "--encoder-layers", "1", "--decoder-layers", "1", "--contexts-per-step", "4",
             "--questions-per-context", "4", "--test-contexts", "4", "--test-questions", "4", "--json", "--quiet"]
    reference, interrupted = tmp_path / "reference.db", tmp_path / "interrupted.db"
    assert cli_main([*flags, "--store", str(reference)]) == 0
    real_train = amplify_cli.train

    def killed_at_40(cfg: AmplifyConfig, **kwargs: Any) -> TrainedRun:
        def on_eval(point: dict[str, Any]) -> None:
            if point["step"] == 40:
                raise KeyboardInterrupt
        return real_train(cfg, on_eval=on_eval, **kwargs)

    monkeypatch.setattr(amplify_cli, "train", killed_at_40)
    assert cli_main([*flags, "--store", str(interrupted)]) == 130
    store = ResultsStore(interrupted)
    assert store.records(kind="amplify") == []
    (row,) = ResultsStore(reference).records(kind="amplify")
    path = amplify_cli.checkpoint_path(artifacts_for(store).root, row["key"])
    assert path.exists() and torch.load(path, weights_only=False)["acct"]["steps"] == 20
    monkeypatch.setattr(amplify_cli, "train", real_train)
    assert cli_main([*flags, "--store", str(interrupted)]) == 0
    capsys.readouterr()
    (resumed,) = ResultsStore(interrupted).records(kind="amplify")
    assert resumed["key"] == row["key"] == run_key(make_config(AmplifyConfig, **resumed["config"]))
    assert _without_time(resumed["results"]) == _without_time(row["results"])
    assert not path.exists()
    stored = artifacts_for(store).load_arrays(row["key"])
    for name, value in artifacts_for(ResultsStore(reference)).load_arrays(row["key"]).items():
        np.testing.assert_array_equal(stored[name], value)


# ----------------------------------------------------------------------------------------------
# refused up front, in one line naming the flag
# ----------------------------------------------------------------------------------------------
TINY_FLAGS = ["--task", "union_find", "--size", "8", "--steps", "4", "--d-model", "32", "--n-heads", "2",
              "--contexts-per-step", "4", "--questions-per-context", "4", "--test-contexts", "4", "--quiet"]


def _assert_refused(code: int, err: str, *names: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert any(name in err for name in names), err


@pytest.mark.parametrize(("flags", "names"), [
    (["--n-heads", "0"], ("n_heads", "--n-heads")),
    (["--n-heads", "-2"], ("n_heads", "--n-heads")),
    (["--n-heads", "3"], ("n_heads", "--n-heads")),  # d_model 32 is no multiple of 3
    (["--threads", "-1"], ("threads", "--threads")),
    (["--lr", "nan"], ("--lr",)),
    (["--lr", "inf"], ("--lr",)),
    (["--minutes", "nan"], ("--minutes",)),
    (["--teacher-ema", "-inf"], ("--teacher-ema",)),
    (["--seed", "-1"], ("seed", "--seed")),
    (["--size", "1"], ("size", "--size")),
    (["--size", "65"], ("size", "--size")),
    (["--start-size", "1"], ("start_size", "--start-size")),
    (["--checkpoint-every", "-5"], ("checkpoint_every", "--checkpoint-every")),
    (["--grad-clip", "0"], ("grad_clip", "--grad-clip")),
    (["--decoder-layers", "0"], ("decoder_layers", "--decoder-layers")),
    (["--stop-at-acc", "2"], ("stop_at_acc", "--stop-at-acc")),
    (["--target-workers", "1000"], ("target_workers", "--target-workers")),  # once: too many open files
    (["--target-workers", "-1"], ("target_workers", "--target-workers")),
])
def test_amplify_run_refuses_a_bad_flag_in_one_line(flags: list[str], names: tuple[str, ...], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "x.db"
    code, err = _run_cli(["amplify", "run", *TINY_FLAGS, *flags, "--store", str(store)], capsys)
    _assert_refused(code, err, *names)
    assert not store.exists()  # refused before the store was opened, let alone a run started


@pytest.mark.parametrize(("flags", "names"), [
    (["--tasks", ""], ("tasks", "--tasks")),
    (["--tasks", " , "], ("tasks", "--tasks")),
    (["--modes", ""], ("modes", "--modes")),
    (["--modes", "supervised,distill"], ("modes", "--modes")),
    (["--tasks", "union_find,no_such_task"], ("tasks", "--tasks")),
    (["--seeds", "0"], ("--seeds",)),
    (["--seeds", "-3"], ("--seeds",)),
    (["--n-heads", "0"], ("n_heads", "--n-heads")),
    (["--lr", "inf"], ("--lr",)),
    (["--target-workers", "65"], ("target_workers", "--target-workers")),
])
def test_amplify_sweep_refuses_bad_lists_counts_and_configs_before_any_run(
        flags: list[str], names: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_flags = [f for f in TINY_FLAGS if f not in ("--task", "union_find")]
    store = tmp_path / "x.db"
    argv = ["amplify", "sweep", "--tasks", "union_find", "--modes", "supervised", *sweep_flags, *flags,
            "--store", str(store)]
    code, err = _run_cli(argv, capsys)
    _assert_refused(code, err, *names)
    assert not store.exists()


@pytest.mark.parametrize(("flags", "names"), [
    (["--size", "1000"], ("size", "--size")),
    (["--size", "1"], ("size", "--size")),
    (["--depth", "0"], ("depth", "--depth")),
    (["--seed", "-1"], ("seed", "--seed")),
])
def test_amplify_show_refuses_a_bad_size_or_depth_in_one_line(
        flags: list[str], names: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "x.db"
    code, err = _run_cli(["amplify", "show", "--task", "union_find", *flags, "--store", str(store)], capsys)
    _assert_refused(code, err, *names)


def test_a_non_finite_config_never_reaches_the_store(tmp_path: Path) -> None:
    """``--lr inf`` once stored a config that is not valid JSON (``Infinity``); now no config with it runs."""
    import json
    import sqlite3

    from oversight.amplification.cli import run_and_store
    from oversight.errors import ConfigError
    from oversight.store import ResultsStore

    store = ResultsStore(tmp_path / "x.db")
    for name in ("lr", "minutes", "teacher_ema", "hprime_lr"):
        for value in (float("nan"), float("inf"), -float("inf")):
            with pytest.raises(ConfigError, match=name):
                run_and_store(AmplifyConfig(task="union_find", steps=4, **{name: value}), store)  # type: ignore[arg-type]
    assert store.records(kind="amplify") == []
    assert cli_main(["amplify", "run", *TINY_FLAGS, "--lr", "1e-3", "--store", str(store.path)]) == 0

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    with sqlite3.connect(store.path) as db:
        for config, results in db.execute("SELECT config, results FROM runs"):
            json.loads(config, parse_constant=refuse)
            json.loads(results, parse_constant=refuse)


# ----------------------------------------------------------------------------------------------
# the output folder is writable before training starts
# ----------------------------------------------------------------------------------------------
def _artifacts_root(store: Path) -> Path:
    from oversight.store import ResultsStore, artifacts_for

    return artifacts_for(ResultsStore(store)).root


@pytest.mark.parametrize("blocked", ["artifacts", "checkpoints"])
def test_an_output_folder_that_cannot_be_made_is_refused_before_training(
        blocked: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A regular file where the artifacts folder (or its checkpoints folder) goes: one line naming it,
    and no training (a run would otherwise train for its whole budget and then fail to save)."""
    import oversight.amplification.cli as amplify_cli

    store = tmp_path / "x.db"
    root = _artifacts_root(store)
    folder = root if blocked == "artifacts" else root / "checkpoints"
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("in the way")
    monkeypatch.setattr(amplify_cli, "train", lambda *a, **k: pytest.fail("training started"))
    code, err = _run_cli(["amplify", "run", *TINY_FLAGS, "--store", str(store)], capsys)
    _assert_refused(code, err, str(folder))
    assert "not writable" in err
    code, err = _run_cli(["amplify", "sweep", "--tasks", "union_find", "--modes", "amplify",
                          *[f for f in TINY_FLAGS if f not in ("--task", "union_find")], "--store", str(store)], capsys)
    _assert_refused(code, err, str(folder))


def test_a_read_only_artifacts_folder_is_refused_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import oversight.amplification.cli as amplify_cli

    store = tmp_path / "x.db"
    root = _artifacts_root(store)
    root.mkdir(parents=True)
    root.chmod(0o555)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop writes (the test above covers it)")
        monkeypatch.setattr(amplify_cli, "train", lambda *a, **k: pytest.fail("training started"))
        code, err = _run_cli(["amplify", "run", *TINY_FLAGS, "--store", str(store)], capsys)
        _assert_refused(code, err, str(root))
    finally:
        root.chmod(0o755)


# ----------------------------------------------------------------------------------------------
# a diverged run is flagged, not stored silently
# ----------------------------------------------------------------------------------------------
def test_a_diverged_run_stops_at_the_non_finite_step_and_every_table_flags_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from oversight.amplification.report import section
    from oversight.amplification.results import measurement_table
    from oversight.store import ResultsStore

    store = tmp_path / "x.db"
    argv = ["amplify", "run", *TINY_FLAGS, "--steps", "20", "--lr", "1e300", "--no-overlap-targets",
            "--checkpoint-every", "0", "--store", str(store)]
    code, _ = _run_cli(argv, capsys)
    assert code == 0
    (row,) = ResultsStore(store).records(kind="amplify")
    res = row["results"]
    assert res["diverged"] is True and res["stopped_by"] == "diverged"
    assert 1 <= res["diverged_at_step"] == res["steps"] + 1 < 20  # stopped there, not run to its budget
    flag = f"[DIVERGED at step {res['diverged_at_step']}]"
    assert flag in measurement_table([row])
    assert flag in section(ResultsStore(store), tmp_path / "report")
    cli_main(["amplify", "run", *TINY_FLAGS, "--steps", "20", "--lr", "1e300", "--no-overlap-targets",
              "--checkpoint-every", "0", "--store", str(store)])  # already stored: its table again
    assert flag in capsys.readouterr().out
    healthy = train(make_config(AmplifyConfig, task="union_find", size=8, steps=4, d_model=32, n_heads=2,
                                contexts_per_step=4, questions_per_context=4, test_contexts=4,
                                overlap_targets=False)).results
    assert healthy["diverged"] is False and healthy["diverged_at_step"] is None and healthy["steps"] == 4


def test_target_workers_up_to_the_cap_are_accepted() -> None:
    from oversight.amplification.config import MAX_TARGET_WORKERS

    AmplifyConfig(target_workers=MAX_TARGET_WORKERS).validate()
    assert MAX_TARGET_WORKERS == 64


# ----------------------------------------------------------------------------------------------
# amplify show: a missing store, a damaged model file
# ----------------------------------------------------------------------------------------------
def test_amplify_show_of_a_store_that_does_not_exist_is_one_line_and_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "nowhere" / "x.db"
    code, err = _run_cli(["amplify", "show", "--task", "union_find", "--store", str(store)], capsys)
    _assert_refused(code, err, str(store))
    assert "no results store" in err
    assert not store.exists() and not store.parent.exists()


def test_a_damaged_model_file_is_moved_aside_named_in_one_line_and_rebuilt_by_its_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    from oversight.store import ResultsStore, artifacts_for

    store = tmp_path / "x.db"
    flags = [f for f in TINY_FLAGS if f != "--quiet"]
    assert cli_main(["amplify", "run", *flags, "--no-overlap-targets", "--store", str(store), "--quiet"]) == 0
    show = ["amplify", "show", "--task", "union_find", "--store", str(store)]
    (row,) = ResultsStore(store).records(kind="amplify")
    path = artifacts_for(ResultsStore(store)).path(row["key"])
    path.write_bytes(path.read_bytes()[:200])  # truncated
    capsys.readouterr()
    code, err = _run_cli(show, capsys)
    _assert_refused(code, err, str(path))
    assert "cannot be used" in err and "rebuild it with: oversight amplify run" in err
    assert not path.exists() and path.with_name(path.name + ".damaged").exists()
    code, second = _run_cli(show, capsys)  # the next try: one line again, no traceback
    _assert_refused(code, second, "no trained X")
    # the command it names is the same run (its key): it trains it again and rebuilds the model file
    command = shlex.split(err.split("rebuild it with: ")[1])
    assert command[:3] == ["oversight", "amplify", "run"] and command[-2:] == ["--store", str(store)]
    assert cli_main([*command[1:], "--quiet"]) == 0
    artifacts_for(ResultsStore(store)).load_arrays(row["key"])
    assert [r["key"] for r in ResultsStore(store).records(kind="amplify")] == [row["key"]]
    capsys.readouterr()
    assert cli_main(show) == 0
    assert f"run {row['key']}" in capsys.readouterr().out


def test_a_missing_model_file_is_rebuilt_by_the_next_amplify_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from oversight.store import ResultsStore, artifacts_for

    store = tmp_path / "x.db"
    run = ["amplify", "run", *TINY_FLAGS, "--no-overlap-targets", "--checkpoint-every", "0", "--store", str(store)]
    assert cli_main(run) == 0
    (row,) = ResultsStore(store).records(kind="amplify")
    path = artifacts_for(ResultsStore(store)).path(row["key"])
    path.unlink()
    assert cli_main(run) == 0
    assert path.exists()
    (again,) = ResultsStore(store).records(kind="amplify")
    assert _without_time(again["results"]) == _without_time(row["results"])  # the same run, retrained


def test_a_batch_without_targets_is_no_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Amplify(X) may answer every question of a batch "don't know": nothing to train on, a nan mean
    loss and zero gradients. That step is taken as before, not flagged as divergence."""
    import oversight.amplification.train as train_module
    from oversight.amplification.env import DONT_KNOW

    make_batch = train_module.make_batch

    def nothing_known(*args: Any, **kwargs: Any) -> Any:
        batch = make_batch(*args, **kwargs)
        batch.targets = np.full_like(batch.targets, DONT_KNOW)
        return batch

    monkeypatch.setattr(train_module, "make_batch", nothing_known)
    results = train(make_config(AmplifyConfig, task="union_find", mode="amplify", size=8, steps=4, d_model=32,
                                n_heads=2, contexts_per_step=4, questions_per_context=4, test_contexts=4,
                                overlap_targets=False)).results
    assert results["diverged"] is False and results["steps"] == 4 and results["dont_know_targets"] == 4 * 16
