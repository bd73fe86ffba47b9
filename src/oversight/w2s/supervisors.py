"""Who labels the student's data: the weak model, or a synthetic supervisor whose errors have a kind.

    oversight w2s run --dataset rotten_tomatoes --weak bow --strong mpnet-base \\
        --supervisor flip:rule:lexicon:positive --supervisor-accuracy 0.8

- ``model`` (the default): the weak model's soft labels, as in the paper;
- ``flip:random``: the ground truth with labels flipped uniformly at random;
- ``flip:rule:RULE``: the ground truth flipped inside a describable subpopulation, its most typical
  members first (the longest texts, the texts with most lexicon words, statements of one kind);
- ``flip:model``: hard labels wrong where the weak model is most wrong (at the weak model's own
  accuracy, exactly where it errs).

A synthetic supervisor hits ``--supervisor-accuracy`` (a number, or ``weak``: the weak model's
accuracy on the same split) on every split it labels, by flipping exactly round((1 - A) n) labels,
so error kinds are compared at one accuracy. It is a function of the ground truth by design, one
split at a time: its labels of ``student_train`` and ``validation`` reach the student as the weak
model's do; its labels of ``test`` are only scored (they are the "weak" accuracy of the PGR).

A rule maps examples to scores: labels flip in descending score order, and a score of 0 never
flips. Add one with ``@RULES.register("name")`` on ``fn(examples, argument) -> scores``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from oversight.errors import ConfigError
from oversight.registry import Registry

KINDS = ("model", "flip:random", "flip:rule", "flip:model")

Rule = Callable[[Sequence[Any], str], np.ndarray]
RULES: Registry[Rule] = Registry("supervisor rule")

# Words of praise: a supervisor fooled by flattery calls them right (or wrong) whatever they say.
LEXICONS: dict[str, tuple[str, ...]] = {
    "positive": ("good", "great", "best", "love", "loved", "fun", "funny", "beautiful", "well", "enjoy",
                 "enjoyable", "wonderful", "perfect", "brilliant", "excellent", "charming", "entertaining",
                 "moving", "smart", "fine", "strong", "rich", "pleasure", "delight", "delightful", "terrific"),
    "negation": ("not", "no", "never", "nothing", "n't", "neither", "nor", "without", "hardly", "barely"),
}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|n't")


@RULES.register("length")
def length_rule(examples: Sequence[Any], argument: str = "") -> np.ndarray:
    """``length``: the longest texts err first (characters)."""
    return np.array([len(e.text) for e in examples], dtype=np.float64)


@RULES.register("lexicon")
def lexicon_rule(examples: Sequence[Any], argument: str) -> np.ndarray:
    """``lexicon:NAME`` (positive, negation) or ``lexicon:WORD+WORD``: texts with more of the
    words err first; texts with none never err."""
    words = set(LEXICONS[argument] if argument in LEXICONS else argument.lower().split("+"))
    return np.array([sum(w in words for w in _WORD.findall(e.text.lower())) for e in examples], dtype=np.float64)


@RULES.register("kind")
def kind_rule(examples: Sequence[Any], argument: str) -> np.ndarray:
    """``kind:VALUE+VALUE``: examples of those kinds err (geo_facts: capital, city, continent,
    currency, border, population); others never."""
    kinds = set(argument.split("+"))
    return np.array([float(e.kind in kinds) for e in examples])


def parse(supervisor: str) -> tuple[str, str, str]:
    """``(kind, rule, argument)`` of a supervisor name; the rule's parts are '' unless ``flip:rule``."""
    if supervisor in ("model", "flip:random", "flip:model"):
        return supervisor, "", ""
    if supervisor.startswith("flip:rule:"):
        rule, _, argument = supervisor.removeprefix("flip:rule:").partition(":")
        RULES.get(rule)  # an unknown rule lists the rules
        if rule == "lexicon" and not argument:
            raise ConfigError("supervisor", f"lexicon needs words: lexicon:NAME ({', '.join(LEXICONS)}) or lexicon:WORD+WORD")
        if rule == "kind" and not argument:
            raise ConfigError("supervisor", "kind needs the kinds that err: kind:VALUE+VALUE")
        return "flip:rule", rule, argument
    raise ConfigError("supervisor", f"{supervisor!r} is not one of model, flip:random, flip:model, "
                      f"flip:rule:RULE (rules: {', '.join(RULES.names())})")


def check(supervisor: str, accuracy: str) -> None:
    """A supervisor and its accuracy, checked before any work (each error names its field)."""
    kind, _, _ = parse(supervisor)
    if kind == "model":
        if accuracy:
            raise ConfigError("supervisor_accuracy", "sets a synthetic supervisor's accuracy; the weak model has its own")
        return
    if not accuracy:
        raise ConfigError("supervisor_accuracy", f"--supervisor {supervisor} needs an accuracy: a number in (0.5, 1] or weak")
    if accuracy != "weak":
        try:
            value = float(accuracy)
        except ValueError:
            raise ConfigError("supervisor_accuracy", f"{accuracy!r} is neither a number in (0.5, 1] nor weak") from None
        if not 0.5 < value <= 1:
            raise ConfigError("supervisor_accuracy", f"must be in (0.5, 1] (a supervisor better than chance), got {accuracy}")


def target_accuracy(accuracy: str, weak_probs: np.ndarray, truth: np.ndarray) -> float:
    """The accuracy a split's labels are made at: the number, or the weak model's on that split."""
    if accuracy == "weak":
        return float(np.mean((np.asarray(weak_probs) > 0.5) == (np.asarray(truth) > 0.5)))
    return float(accuracy)


def flip_scores(supervisor: str, examples: Sequence[Any], truth: np.ndarray, weak_probs: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Per example, how early its label flips (descending; 0 or less never flips)."""
    kind, rule, argument = parse(supervisor)
    if kind == "flip:random":
        return rng.random(len(examples)) + 1.0
    if kind == "flip:model":  # the weak model's probability of the wrong class: its surest mistakes first
        p = np.asarray(weak_probs, dtype=np.float64)
        return np.where(np.asarray(truth) > 0.5, 1.0 - p, p) + 1e-9
    return RULES.get(rule)(examples, argument)


def synthetic_labels(supervisor: str, accuracy: str, examples: Sequence[Any], truth: np.ndarray,
                     weak_probs: np.ndarray, seed: int, split: str) -> np.ndarray:
    """Hard labels of one split: its ground truth with round((1 - A) n) labels flipped in the
    supervisor's order (ties in a seeded random order). Reads that split's truth only."""
    truth = np.asarray(truth, dtype=np.float32)
    n = len(truth)
    n_flips = int(round((1.0 - target_accuracy(accuracy, weak_probs, truth)) * n))
    rng = np.random.default_rng([seed, zlib.crc32(f"{supervisor}|{split}".encode())])
    scores = flip_scores(supervisor, examples, truth, weak_probs, rng)
    eligible = int(np.sum(scores > 0))
    if eligible < n_flips:
        raise ConfigError("supervisor_accuracy", f"{supervisor} can err on {eligible} of {n} {split} examples "
                          f"({eligible / max(1, n):.0%}), but accuracy {accuracy} needs {n_flips} errors: "
                          "raise the accuracy or widen the rule")
    order = np.lexsort((rng.random(n), -scores))  # by score, descending; ties at random
    labels = truth.copy()
    flipped = order[:n_flips]
    labels[flipped] = 1.0 - labels[flipped]
    return labels


def wrong(labels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Where a supervisor's (hard or soft) labels are on the wrong side of 0.5."""
    return (np.asarray(labels) > 0.5) != (np.asarray(truth) > 0.5)


class TruthBudget:
    """The only door to ``student_train``'s ground truth a student has: ``budget`` examples drawn at
    random (seeded), whose labels :meth:`read` hands out and counts (``reads``)."""

    def __init__(self, truth: np.ndarray, budget: int, seed: int) -> None:
        if budget > len(truth):
            raise ConfigError("truth_budget", f"{budget} is more than the {len(truth)} examples of student_train")
        self._truth, self.budget, self.reads = np.asarray(truth, dtype=np.float32), budget, 0
        self.indices = np.sort(np.random.default_rng([seed, 7]).choice(len(truth), size=budget, replace=False))

    def read(self) -> dict[int, float]:
        """Index -> ground-truth label of the budget's examples: read once, counted."""
        self.reads += len(self.indices)
        return {int(i): float(self._truth[i]) for i in self.indices}


def mix_in(targets: np.ndarray, trusted: dict[int, float]) -> np.ndarray:
    """A naive student's training labels with its trusted labels put in place of the supervisor's."""
    mixed = np.array(targets, dtype=np.float32, copy=True)
    for i, label in trusted.items():
        mixed[i] = label
    return mixed
