"""Who may read the true answers: the policy every task's ground-truth fields are read through.

    from oversight.amplification.truth import GroundTruthLedger, truth_allowed, truth_denied
    with truth_denied():                       # an amplify-mode run: no true answer may be read ...
        with truth_allowed("evaluation"):      # ... except where a named use allows it
            task.truth_batch(instances, ctx_index, questions)
    ground_truth = GroundTruthLedger(task, allow_non_primitive=cfg.mode == "supervised")

A task's instance data declares its ground-truth fields with :func:`guard_truth`: reading one
(``inst.data.depth``, or through ``stack_instance_data``) checks the policy and raises
:class:`GroundTruthRead` inside :func:`truth_denied` unless an enclosing :func:`truth_allowed`
names a use (evaluation, the oracle curriculum). The training loop of both amplify modes runs
denied, in the training process and in the target workers, so a curriculum or an expert that
reads a true depth, distance or value fails loudly instead of leaking labels. The fields read back
from the facts (what H sees) are not guarded. Outside a run (tests, ``amplify show``) reads are allowed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

_policy: list[str | None] = []  # stack: None = denied, a string = allowed for that use; empty = allowed


class GroundTruthRead(AssertionError):
    """A true answer was read where the run may not read it (an amplify mode, outside evaluation
    and the oracle curriculum)."""


class GroundTruthLabelsUsed(GroundTruthRead):
    """An amplify run's accounting shows ground-truth labels of non-primitive questions at its end: its
    results would not be amplification's, so it is not stored."""


@contextmanager
def truth_denied() -> Iterator[None]:
    """No ground truth may be read inside, except within :func:`truth_allowed`."""
    _policy.append(None)
    try:
        yield
    finally:
        _policy.pop()


@contextmanager
def truth_allowed(use: str) -> Iterator[None]:
    """Ground truth may be read inside, for ``use`` (e.g. "evaluation", "oracle curriculum")."""
    _policy.append(use)
    try:
        yield
    finally:
        _policy.pop()


def policy_for(mode: str) -> Any:
    """The policy a run of ``mode`` trains under: denied in the amplify modes, as it is in supervised."""
    return contextlib.nullcontext() if mode == "supervised" else truth_denied()


def truth_readable() -> bool:
    return not _policy or _policy[-1] is not None


def require_truth(what: str) -> None:
    """Raise :class:`GroundTruthRead` if ``what`` (a ground-truth field) may not be read now."""
    if not truth_readable():
        raise GroundTruthRead(f"ground truth read ({what}) in an amplify mode outside evaluation and "
                              "the oracle curriculum")


class _TruthField:
    """A ground-truth attribute of a task's instance data: every read checks the policy."""

    def __init__(self, owner: str, name: str) -> None:
        self.what, self.slot = f"{owner}.{name}", "_truth_" + name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        require_truth(self.what)
        return obj.__dict__[self.slot]

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value


def guard_truth(*names: str) -> Any:
    """Class decorator (above ``@dataclass``): the named fields hold ground truth; reads are checked."""

    def decorate(cls: type) -> type:
        for name in names:
            setattr(cls, name, _TruthField(cls.__name__, name))
        cls.truth_fields = names  # type: ignore[attr-defined]
        return cls

    return decorate


class GroundTruthLedger:
    """The training loop's only way to ground-truth labels; it counts them and refuses those of
    non-primitive questions in amplify modes."""

    def __init__(self, task: Any, allow_non_primitive: bool) -> None:
        self.task, self.allow_non_primitive = task, allow_non_primitive
        self.non_primitive_labels = 0

    def labels(self, instances: Sequence[Any], ctx_index: np.ndarray, questions: np.ndarray) -> np.ndarray:
        n = int((~self.task.primitive_mask(questions)).sum())
        if n and not self.allow_non_primitive:
            raise GroundTruthRead(f"{n} ground-truth labels of non-primitive questions requested in an amplify mode")
        self.non_primitive_labels += n
        with truth_allowed("labels"):
            return self.task.truth_batch(instances, ctx_index, questions)
