"""The curriculum: which questions X trains on at each stage, and when it moves on.

    from oversight.amplification.curriculum import Curriculum, curriculum_stages
    curriculum_stages(cfg, task)     # [(size, level), ...]; level == task.num_levels: the full distribution
    curriculum = Curriculum(cfg, task)
    curriculum.update(train_accuracy, step)   # True when it advanced to the next stage
    with question_access(cfg, task):          # how this stage's questions may be drawn
        task.sample_questions(inst, m, rng, level=curriculum.level)

A stage is an instance size and a question-difficulty level. What a stage may depend on is the
instance's size and the question's form as H reads it, never its true answer:

- ``label-free`` (default). A task whose levels are read off the question (permutation powering:
  k's bit length; wildcard search: the number of wildcards) climbs levels 1..L at ``start_size``,
  then again at each size doubling up to ``size`` (``--no-relevel-each-size``: only the full
  distribution at the larger sizes). A task whose level is a true depth or distance (sequential
  assignments, shortest path, union find) grows the instance size alone, as the paper did: the full
  question distribution at sizes ``curriculum_min_size``, +1, ... up to twice that, then at each
  doubling up to ``start_size`` and on to ``size`` (4, 5, 6, 7, 8, 16 for n=16; ``size_step`` k: 4, 4+k,
  4+2k, ... up to ``size``, as the paper grew sizes by one); smaller instances have shallower programs, forests and shorter paths.
- ``oracle``: the depth/distance levels for every task, read from the ground truth. An upper bound,
  not a method: its rows are flagged ``oracle_curriculum`` in the store, tables and figures. For the
  tasks whose levels are read off the question it is the label-free curriculum (and keyed as it).

The stage advances when X's rolling accuracy against its own training targets (ground truth in
``supervised``, Amplify(X) in the amplify modes, so no label is needed) passes
``curriculum_threshold`` after at least ``min_stage_steps`` steps.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from oversight.amplification.truth import truth_allowed

if TYPE_CHECKING:
    from oversight.amplification.config import AmplifyConfig
    from oversight.amplification.env import Task

CURRICULA = ("label-free", "oracle")


def doubling_sizes(start: int, size: int) -> list[int]:
    """``start``, 2 ``start``, ... below ``size``, then ``size``."""
    sizes, s = [], min(start, size)
    while s < size:
        sizes.append(s)
        s *= 2
    return [*sizes, size]


def curriculum_stages(cfg: AmplifyConfig, task: Task) -> list[tuple[int, int]]:
    """The (size, level) stages of a run, in order; the last is (``size``, full distribution)."""
    sizes, full = doubling_sizes(cfg.start_size, cfg.size), task.num_levels
    if task.levels_from_form or cfg.curriculum == "oracle":
        stages = [(sizes[0], level) for level in range(1, full + 1)]
        for size in sizes[1:]:
            levels = range(1, full + 1) if cfg.relevel_each_size else [full]
            stages += [(size, level) for level in levels]
        return stages
    first = min(cfg.curriculum_min_size, sizes[0])
    if cfg.size_step:  # the paper's: the size grows by a fixed step all the way (4, 6, 8, 10, ... with 2)
        return [(size, full) for size in [*range(first, cfg.size, cfg.size_step), cfg.size]]
    ramp = list(range(first, min(2 * first, sizes[0])))  # +1 at a time up to twice the first size ...
    size = 2 * first
    while size < sizes[0]:  # ... then doubling up to start_size
        ramp.append(size)
        size *= 2
    return [(size, full) for size in [*ramp, *sizes]]


def reads_true_answers(cfg: AmplifyConfig, task: Task) -> bool:
    """Whether the run's question distribution is chosen with the true answers (the oracle curriculum)."""
    return cfg.curriculum == "oracle" and not task.levels_from_form


class Curriculum:
    """Stages (size, level); advance when the rolling training accuracy passes the threshold."""

    def __init__(self, cfg: AmplifyConfig, task: Task) -> None:
        self.stages = curriculum_stages(cfg, task)
        self.oracle = reads_true_answers(cfg, task)
        self.threshold, self.min_steps = cfg.curriculum_threshold, cfg.min_stage_steps
        self.recent: deque[float] = deque(maxlen=cfg.curriculum_window)
        self.index, self.steps_in_stage = 0, 0
        self.history: list[dict[str, int]] = []

    @property
    def size(self) -> int:
        return self.stages[self.index][0]

    @property
    def level(self) -> int:
        return self.stages[self.index][1]

    @property
    def final(self) -> bool:
        return self.index == len(self.stages) - 1

    @property
    def rolling_accuracy(self) -> float:
        return float(np.mean(self.recent)) if self.recent else 0.0

    def update(self, accuracy: float, step: int) -> bool:
        self.recent.append(accuracy)
        self.steps_in_stage += 1
        ready = (len(self.recent) == self.recent.maxlen and self.steps_in_stage >= self.min_steps
                 and self.rolling_accuracy >= self.threshold)
        if ready and not self.final:
            self.index += 1
            self.steps_in_stage = 0
            self.recent.clear()
            self.history.append({"step": step, "size": self.size, "level": self.level})
            return True
        return False


def question_access(cfg: AmplifyConfig, task: Task) -> Any:
    """The context in which a stage's questions are drawn: the oracle curriculum may read true
    depths and distances; every other draw stays under the run's policy (denied in amplify modes)."""
    return truth_allowed("oracle curriculum") if reads_true_answers(cfg, task) else contextlib.nullcontext()
