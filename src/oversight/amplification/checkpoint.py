"""Checkpoints of an amplification run: everything ``train`` needs to continue it bit-identically.

    path = checkpoint_path(artifacts_for(store).root, key)     # <artifacts>/checkpoints/<key>.pt
    train(cfg, checkpoint=path)   # saves every cfg.checkpoint_every steps; resumes from path if it is there

A checkpoint holds X, its teacher, H' and both optimisers and learning-rate schedules, the
curriculum, the accounting, the learning curve so far, every random generator (numpy's of the
loop and of H''s transcript buffer, torch's, and with ``overlap_targets`` each target worker's),
H''s transcript buffer, rolling loss, credits and warm-up state, the batch X is still training on
(``target_passes`` > 1), the decision caches, and the batches the target workers had already made
ahead, which a resumed run hands over first. Resuming therefore gives the same steps, curve and
weights as a run that was never stopped (tested in ``tests/test_faults_amplify.py``); only the
wall time differs, and it continues from the checkpoint's.

A checkpoint is written to a temporary file in the same folder, fsynced and renamed into place, so a
kill leaves the previous one whole. One that cannot be read (truncated, garbled) or that belongs to
another config is reported in one log line and the run starts over. It is a pickle (``torch.save``),
read back only from the run's own artifacts folder.
"""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from oversight.amplification.expert import DecisionCache
from oversight.progress import log

if TYPE_CHECKING:
    from oversight.amplification.train import TrainState
    from oversight.amplification.workers import TargetWorker

FORMAT = 2  # bumped whenever what a checkpoint holds changes; an older one is not resumed


def checkpoint_path(artifacts_root: str | Path, key: str) -> Path:
    """Where the run keyed ``key`` keeps its checkpoint: ``<artifacts>/checkpoints/<key>.pt``."""
    return Path(artifacts_root) / "checkpoints" / f"{key}.pt"


def write_checkpoint(path: str | Path, payload: dict[str, Any]) -> int:
    """``torch.save`` to a temporary file beside ``path``, fsync, rename into place; returns its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the artifacts beside it are 0644
        size = os.path.getsize(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return size


def read_checkpoint(path: str | Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if there is one of the run ``identity``; else None (one log line
    when a file is there but cannot be used: the run then starts over)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - truncated or garbled: whatever unpickling raises
        log(f"amplify: checkpoint {path} cannot be read ({type(err).__name__}: {str(err)[:80]}); starting the run over")
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("identity") != identity:
        log(f"amplify: checkpoint {path} is not one of this run's config (or an older format); starting the run over")
        return None
    return payload


# ----------------------------------------------------------------------------------------------
# state <-> checkpoint
# ----------------------------------------------------------------------------------------------
def cache_state(cache: DecisionCache) -> dict[str, Any]:
    return {"table": dict(cache.table), "hits": cache.hits, "misses": cache.misses, "version": cache.version}


def load_cache_state(cache: DecisionCache, saved: dict[str, Any]) -> None:
    cache.table = dict(saved["table"])
    cache.hits, cache.misses, cache.version = saved["hits"], saved["misses"], saved["version"]


def random_states() -> dict[str, Any]:
    """The global generators ``seed_everything`` seeds (torch's, numpy's legacy one, Python's)."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def load_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _cpu_batch(batch: Any) -> Any:
    """A batch as a checkpoint keeps it: facts as a numpy array, no instances (X never reads them)."""
    if batch is None:
        return None
    facts = batch.facts.cpu().numpy() if isinstance(batch.facts, torch.Tensor) else batch.facts
    return dataclasses.replace(batch, facts=facts, instances=[])


def capture(state: TrainState, identity: dict[str, Any], worker: TargetWorker | None,
            wall_seconds: float) -> dict[str, Any]:
    """Everything of a run in progress, as ``restore`` reads it (the workers' pending batches are
    received now: the workers hand them over first after a resume, as they would have without one)."""
    return {
        "format": FORMAT, "identity": identity, "wall_seconds": wall_seconds,
        "model": state.model.state_dict(), "teacher": state.teacher.state_dict(),
        "optimizer": state.optimizer.state_dict(), "schedule": state.schedule.state_dict(),
        "pacing": None if state.pacing is None else state.pacing.state(),
        "rng": state.rng.bit_generator.state, "random": random_states(),
        "gt_non_primitive": state.ground_truth.non_primitive_labels,
        "acct": dataclasses.asdict(state.acct), "curve": state.curve, "last_correct": state.last_correct,
        "curriculum": {"index": state.curriculum.index, "steps_in_stage": state.curriculum.steps_in_stage,
                       "recent": list(state.curriculum.recent), "history": state.curriculum.history},
        "passes_left": state.passes_left,
        "current": _cpu_batch(state.current) if state.passes_left > 0 else None,
        "workers": None if worker is None else worker.state(),
    }


def restore(state: TrainState, saved: dict[str, Any], device: str) -> None:
    """Put a checkpoint's contents into a freshly built ``state`` (its models and optimisers in place)."""
    state.model.load_state_dict(saved["model"])
    state.teacher.load_state_dict(saved["teacher"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.schedule.load_state_dict(saved["schedule"])
    if state.pacing is not None:
        state.pacing.load_state(saved["pacing"])
    state.rng.bit_generator.state = saved["rng"]
    load_random_states(saved["random"])
    state.ground_truth.non_primitive_labels = saved["gt_non_primitive"]
    for name, value in saved["acct"].items():
        setattr(state.acct, name, value)
    state.curve[:] = saved["curve"]
    state.last_correct.update(saved["last_correct"])
    curriculum = saved["curriculum"]
    state.curriculum.index, state.curriculum.steps_in_stage = curriculum["index"], curriculum["steps_in_stage"]
    state.curriculum.recent.clear()
    state.curriculum.recent.extend(curriculum["recent"])
    state.curriculum.history = list(curriculum["history"])
    state.passes_left = saved["passes_left"]
    current = saved["current"]
    state.current = None if current is None else dataclasses.replace(
        current, facts=torch.from_numpy(current.facts).to(device))
    state.wall_before = saved["wall_seconds"]
