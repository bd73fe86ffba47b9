"""Faults in an amplification run: a killed trainer leaves no worker behind, an interrupted run resumes
from its checkpoint to exactly the numbers of an uninterrupted one, and bad flags or an unwritable
output folder are refused up front in one line that names them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oversight.cli import main as cli_main

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


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of ``oversight ...`` (argparse refusals exit through SystemExit)."""
    try:
        code = cli_main(argv)
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err
