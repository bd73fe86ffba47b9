"""Cost of one Iterated-Amplification training step, split into its parts, per task at size 16.

    python benchmarks/amplify_speed.py                       # all five tasks, 60 steps each
    python benchmarks/amplify_speed.py --tasks union_find --steps 200 --size 32
    python benchmarks/run.py amplify-speed                   # the same, from the one benchmark command

A step of ``oversight.amplification.train`` is: draw instances and questions (``generate``), make the
targets (``supervised``: the ground truth; ``amplify``: H run in lock-step with the teacher answering
its non-primitive subquestions), then one gradient step of X. This times each part with an untrained
X at the FULL question distribution (the last curriculum stage, where H's work is largest), with the
default batch of 32 instances x 16 questions. Columns:

- ``generate ms``: instances and questions; ``truth ms``: ground-truth targets (supervised);
- ``teacher encode ms``: the teacher's fact encoding; ``H + teacher ms``: ``run_expert`` with the
  teacher answering (of which ``teacher decode ms`` is the teacher's answer passes);
- ``X step ms``: forward, backward and AdamW step of X;
- ``amplify / supervised``: the ratio of the two full step times;
- ``overlapped``: what a step of ``train`` costs with ``overlap_targets`` (the default): a second
  process makes the next batch's targets while X trains, so a step costs about the larger of the two
  (measured over whole training steps at the full distribution, with the worker's own process);
- ``H' decisions ms``: what ``amplify-learned`` adds to an amplify step: H''s greedy decisions for the
  whole batch, round by round, on the states of H's transcripts of that step (once per distinct
  state, with no decision cache, i.e. the cost right after an update of H');
- ``amplify-learned ms``, in one process and overlapped: whole ``train`` steps of amplify-learned with
  an untrained H' that is updated every step (H''s full rate: no cached decision survives), X
  starting as soon as 64 transcripts have scored H'. The warm-up steps' time is included.

One torch thread per process (the training default). Numbers move with the machine's other load; compare rows
measured together.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from oversight.amplification.config import BASE_MODES
from oversight.amplification.env import Task, make_task, run_expert
from oversight.amplification.expert import LearnedExpert, TranscriptBatch, decide_unique, encode_transcripts
from oversight.amplification.train import (
    AmplifyConfig,
    build_learner,
    make_answer_fn,
    make_optimizer,
    stack_facts,
    train,
)
from oversight.runtime import set_threads

ALL_TASKS = ("permutation_powering", "sequential_assignments", "wildcard_search", "shortest_path", "union_find")


def time_task(task_name: str, size: int, steps: int, seed: int = 0) -> dict[str, float]:
    """Mean milliseconds per step of each part (see the module docstring)."""
    task = make_task(task_name)
    cfg = AmplifyConfig(task=task_name, size=size).with_task_defaults(task)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, teacher = build_learner(cfg, task), build_learner(cfg, task).requires_grad_(False)
    optimizer = make_optimizer(model, cfg.lr)
    m, c = cfg.questions_per_context, cfg.contexts_per_step
    ctx_index = np.repeat(np.arange(c), m)
    hprime = LearnedExpert(task, cfg.hprime_d_model, 4, cfg.hprime_layers)
    parts = {k: 0.0 for k in ("generate", "truth", "teacher encode", "H + teacher", "teacher decode", "X step",
                              "H' decisions")}

    def timed_teacher(answer_fn):
        def answer(ctx, questions):
            start = time.perf_counter()
            out = answer_fn(ctx, questions)
            parts["teacher decode"] += time.perf_counter() - start
            return out
        return answer

    for _ in range(steps):
        t0 = time.perf_counter()
        instances = [task.generate(size, rng) for _ in range(c)]
        questions = np.concatenate([task.sample_questions(inst, m, rng) for inst in instances])
        facts = stack_facts(instances, "cpu")
        t1 = time.perf_counter()
        targets = task.truth_batch(instances, ctx_index, questions)
        t2 = time.perf_counter()
        with torch.no_grad():
            memory = teacher.encode_facts(facts)
        t3 = time.perf_counter()
        run = run_expert(task, instances, ctx_index, questions,
                         timed_teacher(make_answer_fn(teacher, task, memory, facts, "cpu")), rng)
        t4 = time.perf_counter()
        log_probs = model(facts, torch.from_numpy(ctx_index), torch.from_numpy(questions),
                          torch.from_numpy(task.answer_mask(questions)))
        loss = F.nll_loss(log_probs, torch.from_numpy(targets))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        t5 = time.perf_counter()
        parts["H' decisions"] += time_decisions(task, hprime, encode_transcripts(task, run.transcripts))
        for key, dt in (("generate", t1 - t0), ("truth", t2 - t1), ("teacher encode", t3 - t2),
                        ("H + teacher", t4 - t3), ("X step", t5 - t4)):
            parts[key] += dt
    return {k: 1000 * v / steps for k, v in parts.items()}


def time_train_step(task_name: str, size: int, steps: int, mode: str, overlap: bool = True) -> float:
    """Milliseconds per step of ``train`` in ``mode`` (``overlap``: with the targets made ahead in the
    worker process), at the full question distribution at ``size`` (each curriculum level passed after
    one step; amplify-learned: see the module docstring)."""
    cfg = AmplifyConfig(task=task_name, mode=mode, size=size, start_size=size, steps=steps + 5, minutes=0,
                        eval_every=10**9, stop_at_acc=0.0, overlap_targets=overlap, curriculum_threshold=0.0,
                        curriculum_window=1, min_stage_steps=1, test_contexts=1, test_questions=1,
                        hprime_ready_loss=1e9, hprime_rewarm_each_stage=False)
    results = train(cfg).results
    return 1000 * results["seconds"] / results["steps"]


def time_decisions(task: Task, hprime: LearnedExpert, states: TranscriptBatch) -> float:
    """Seconds H' takes to make every decision of a batch, teacher-forced on H's states."""
    start = time.perf_counter()
    for d in range(task.rounds + 1):
        rows = np.flatnonzero(states.n_rounds >= d)  # still running before decision d
        if len(rows):
            decide_unique(hprime, task, states.question[rows], states.subqs[rows, :d], states.subans[rows, :d], d, "cpu")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(ALL_TASKS), help="comma-separated task names")
    parser.add_argument("--size", type=int, default=16, help="instance size n")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per task (after 5 warm-up steps)")
    args = parser.parse_args(argv)
    set_threads(1)
    header = ["task", "n", "generate ms", "truth ms", "teacher encode ms", "H + teacher ms", "teacher decode ms",
              "X step ms", "supervised step ms", "amplify step ms", "amplify / supervised",
              "supervised overlapped ms", "amplify overlapped ms", "overlapped ratio", "H' decisions ms",
              "amplify-learned one process ms", "amplify-learned overlapped ms"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for task_name in args.tasks.split(","):
        time_task(task_name, args.size, 5)  # warm-up: allocator, lazy imports
        p = time_task(task_name, args.size, args.steps)
        supervised = p["generate"] + p["truth"] + p["X step"]
        amplify = p["generate"] + p["teacher encode"] + p["H + teacher"] + p["X step"]
        cells = [task_name, args.size] + [f"{p[k]:.1f}" for k in ("generate", "truth", "teacher encode", "H + teacher",
                                                                   "teacher decode", "X step")]
        decisions = p["H' decisions"]
        overlapped = {mode: time_train_step(task_name, args.size, args.steps, mode) for mode in BASE_MODES}
        learned_one_process = time_train_step(task_name, args.size, args.steps, "amplify-learned", overlap=False)
        cells += [f"{supervised:.1f}", f"{amplify:.1f}", f"{amplify / supervised:.2f}", f"{overlapped['supervised']:.1f}",
                  f"{overlapped['amplify']:.1f}", f"{overlapped['amplify'] / overlapped['supervised']:.2f}",
                  f"{decisions:.1f}", f"{learned_one_process:.1f}", f"{overlapped['amplify-learned']:.1f}"]
        print("| " + " | ".join(str(x) for x in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
