"""The processes that make the batches and their targets ahead of X (``overlap_targets``).

    from oversight.amplification.workers import TargetWorker
    worker = TargetWorker(cfg, task, teacher, "cpu", hprime)
    batch = worker.next_batch(size, level, teacher, "cpu", hprime, plan)   # asked for one step (k steps) ago
    saved = worker.state()   # for a checkpoint: the batches made ahead, each worker's generator and cache
    worker.close()

The batch and its targets are made one step ahead in a second process (``TargetWorker``,
``--overlap-targets``, on by default), as the paper's collection and training loops ran
concurrently: while X takes step t, the worker draws batch t+1 and H (or H') and the teacher (as
they were after step t-1) answer it; in amplify-learned it also makes that batch's H transcripts,
which H' scores and trains on in the training process. On two cores an amplify step then costs
about what a supervised step does. Where making the targets costs more than X's step (H''s
decisions in amplify-learned), ``--target-workers 2`` has two workers take turns, two steps ahead.

Target workers exit when the training process dies (kill -9 included).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import signal
import threading
import time
from typing import Any

import numpy as np
import torch

from oversight.amplification.batches import Batch, GroundTruthLedger, HPrimePlan, make_batch
from oversight.amplification.config import AmplifyConfig
from oversight.amplification.env import Task
from oversight.amplification.expert import DecisionCache, LearnedExpert
from oversight.amplification.learner import FactSetLearner, ema_update
from oversight.amplification.truth import policy_for
from oversight.runtime import resolve_device, set_threads


class TargetWorker:
    """``make_batch`` in ``cfg.target_workers`` other processes, ahead of X (``overlap_targets``).

    With one worker, while X trains on batch t the worker makes batch t+1 with snapshots of the
    teacher (and, in amplify-learned, of H') taken after step t-1, at the curriculum stage of then.
    With k workers they take turns: batch t+k is asked for as batch t is handed over, so it is made
    with the models after step t-1 while X takes steps t..t+k-1. Each worker's snapshots are written
    only while it is idle. One worker draws from the generator a one-process run would use, so a run
    is as reproducible as in one process (and, in supervised and amplify mode, trains on the same
    questions); worker j of k > 1 draws from a generator of its own, seeded with (seed, j), so the
    run is reproducible but its questions are not those of a one-process run.

    A worker exits when the training process dies, however it dies (``_die_with_parent``).
    ``state()`` (for a checkpoint) receives the batches the workers are making and reads each
    worker's generator and decision cache after them; ``resume=`` that state starts workers that
    hand those batches over first and then go on from those generators, as the old ones would have.
    """

    def __init__(self, cfg: AmplifyConfig, task: Task, teacher: FactSetLearner, device: str,
                 hprime: LearnedExpert | None = None, resume: dict[str, Any] | None = None,
                 hprime_version: int = 0, weak: FactSetLearner | None = None) -> None:
        # fork on CPU (as DataLoader workers do; spawn would re-run an unguarded calling script);
        # CUDA cannot be forked once initialised, so there the worker is spawned
        methods = torch.multiprocessing.get_all_start_methods()
        context = torch.multiprocessing.get_context("fork" if device == "cpu" and "fork" in methods else "spawn")
        saved = resume["workers"] if resume is not None else [None] * cfg.target_workers
        if len(saved) != cfg.target_workers:
            raise ValueError(f"a checkpoint of {len(saved)} target workers cannot resume {cfg.target_workers}")
        self.workers: list[_Worker] = []
        try:
            for index in range(cfg.target_workers):
                seed = cfg.seed if cfg.target_workers == 1 else [cfg.seed, index]
                self.workers.append(_Worker(context, cfg, task, teacher, hprime, seed, saved[index], hprime_version,
                                            weak))
        except BaseException:
            self.close()
            raise
        self.turn = 0 if resume is None else resume["turn"]  # the worker whose batch X trains on next
        self.started = False if resume is None else resume["started"]

    def next_batch(self, size: int, level: int, teacher: FactSetLearner, device: str,
                   hprime: LearnedExpert | None = None, plan: HPrimePlan | None = None,
                   use_self: bool = False) -> Batch:
        """The batch asked for k steps ago (at first: asked for now, from every worker), and a request
        to the same worker for the batch k steps ahead."""
        if not self.started:
            for worker in self.workers:
                worker.request(size, level, teacher, hprime, plan, use_self)
            self.started = True
        worker = self.workers[self.turn]
        batch = worker.take()
        worker.request(size, level, teacher, hprime, plan, use_self)
        self.turn = (self.turn + 1) % len(self.workers)
        return dataclasses.replace(batch, facts=torch.from_numpy(batch.facts).to(device))

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the workers: whose turn it is, and per worker the batch it made
        ahead (received now, handed over as usual later) and its generator and decision cache after it."""
        return {"turn": self.turn, "started": self.started, "workers": [w.state() for w in self.workers]}

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class _Worker:
    """One process of ``TargetWorker``, with its own snapshots of the teacher and H'."""

    def __init__(self, context: Any, cfg: AmplifyConfig, task: Task, teacher: FactSetLearner,
                 hprime: LearnedExpert | None, seed: int | list[int], saved: dict[str, Any] | None = None,
                 hprime_version: int = 0, weak: FactSetLearner | None = None) -> None:
        self.snapshot = copy.deepcopy(teacher).cpu().share_memory()
        self.hprime_snapshot = None if hprime is None else copy.deepcopy(hprime).cpu().share_memory()
        self.hprime_version = hprime_version  # the H' weights in the snapshot (H' is updated rarely once it imitates H)
        self.pending: Batch | None = None if saved is None else saved["pending"]  # made ahead, not handed over yet
        generator = None if saved is None else {"rng": saved["rng"], "decisions": saved["decisions"]}
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_target_worker,
                                       args=(cfg, task, self.snapshot, self.hprime_snapshot, seed, child,
                                             os.getpid(), generator, hprime_version, weak),
                                       name="oversight-targets", daemon=True)
        self.process.start()
        child.close()
        self.in_flight = False
        self.receive()  # "ready": the worker's start-up is setup time, not training time

    def request(self, size: int, level: int, teacher: FactSetLearner, hprime: LearnedExpert | None,
                plan: HPrimePlan | None, use_self: bool = False) -> None:
        ema_update(self.snapshot, teacher, 0.0)  # decay 0: a copy
        if self.hprime_snapshot is not None and hprime is not None and plan is not None \
                and plan.hprime_version != self.hprime_version:
            ema_update(self.hprime_snapshot, hprime, 0.0)
            self.hprime_version = plan.hprime_version
        self.conn.send((size, level, plan, use_self))
        self.in_flight = True

    def take(self) -> Batch:
        """The batch asked for last: made ahead before a checkpoint, or received now."""
        if self.pending is not None:
            batch, self.pending = self.pending, None
            return batch
        return self.receive()

    def state(self) -> dict[str, Any]:
        if self.in_flight:
            self.pending = self.receive()
        self.conn.send("state")
        generator = self.receive()
        return {"pending": self.pending, **generator}

    def receive(self) -> Any:
        try:
            message = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"the target worker died (exit code {self.process.exitcode})") from None
        self.in_flight = False
        if isinstance(message, str) and message != "ready":
            raise RuntimeError(f"the target worker failed:\n{message}")
        return message

    def close(self) -> None:
        """Stop the worker, reading the batch it made ahead first (it may be blocked sending it)."""
        try:
            if self.in_flight and self.conn.poll(60):
                self.conn.recv()
            self.conn.send(None)
        except (EOFError, BrokenPipeError, OSError):  # it has stopped already (Ctrl-C reaches it too)
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()


def _die_with_parent(parent: int) -> None:
    """Make this worker exit when the training process ``parent`` dies, kill -9 included (a forked
    worker holds its own pipe's other end too, so it would never see the pipe close): the kernel's
    PR_SET_PDEATHSIG on Linux, and everywhere a thread that watches for the parent pid to change."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError, TypeError):  # not Linux: the watch below does it
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)
    threading.Thread(target=watch, name="oversight-parent-watch", daemon=True).start()


def _target_worker(cfg: AmplifyConfig, task: Task, teacher: FactSetLearner, hprime: LearnedExpert | None,
                   seed: int | list[int], conn: Any, parent: int, saved: dict[str, Any] | None = None,
                   hprime_version: int = 0, weak: FactSetLearner | None = None) -> None:
    """The worker process of ``TargetWorker``: answers (size, level, plan) requests with batches,
    "state" with its generator and decision cache (for a checkpoint), None stops it."""
    import traceback

    from oversight.amplification.checkpoint import load_cache_state

    _die_with_parent(parent)
    try:
        set_threads(cfg.threads or None)
        device = resolve_device(cfg.device)
        # with one worker, the generator train() would draw from in one process: the same questions, made ahead
        rng = np.random.default_rng(seed)
        ground_truth = GroundTruthLedger(task, allow_non_primitive=cfg.mode == "supervised")
        decisions = DecisionCache()  # H''s decisions, kept while its snapshot's version stays the same
        if saved is not None:  # resumed from a checkpoint: go on where the worker before it stopped
            rng.bit_generator.state = saved["rng"]
            load_cache_state(decisions, saved["decisions"])
        local = teacher if device == "cpu" else copy.deepcopy(teacher).to(device)
        local_hprime = hprime if device == "cpu" or hprime is None else copy.deepcopy(hprime).to(device)
        local_weak = weak if device == "cpu" or weak is None else copy.deepcopy(weak).to(device)  # frozen: sent once
        loaded_version = hprime_version  # H''s updates reflected in local_hprime
        conn.send("ready")
        with policy_for(cfg.mode):  # an amplify mode reads no true answer here either
            _serve(conn, task, cfg, teacher, hprime, local, local_hprime, ground_truth, rng, device, decisions,
                   loaded_version, local_weak)
    except KeyboardInterrupt:
        pass
    except BaseException:  # noqa: BLE001 - whatever it was, the trainer must hear of it
        conn.send(traceback.format_exc())
    finally:
        conn.close()


def _serve(conn: Any, task: Task, cfg: AmplifyConfig, teacher: FactSetLearner, hprime: LearnedExpert | None,
           local: FactSetLearner, local_hprime: LearnedExpert | None, ground_truth: GroundTruthLedger,
           rng: np.random.Generator, device: str, decisions: DecisionCache, loaded_version: int,
           weak: FactSetLearner | None = None) -> None:
    """Answer requests until the trainer sends None (see ``_target_worker``)."""
    from oversight.amplification.checkpoint import cache_state

    while (request := conn.recv()) is not None:
        if request == "state":
            conn.send({"rng": rng.bit_generator.state, "decisions": cache_state(decisions)})
            continue
        size, level, plan, use_self = request
        if local is not teacher:
            local.load_state_dict(teacher.state_dict())
        if local_hprime is not hprime and plan.hprime_version != loaded_version:
            local_hprime.load_state_dict(hprime.state_dict())
            loaded_version = plan.hprime_version
        batch = make_batch(task, cfg, size, level, local, ground_truth, rng, device, local_hprime, plan, decisions,
                           weak, use_self)
        # numpy, not a tensor: torch would pass a tensor through a shared-memory file per batch
        conn.send(dataclasses.replace(batch, facts=batch.facts.cpu().numpy(), instances=[]))
