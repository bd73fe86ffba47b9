"""Which pool examples an active student asks its supervisor about next: pure functions over arrays.

Every picker takes scores over the whole pool and a boolean mask of what is already labelled, and
returns the indices (into the pool) of the next ``k`` examples to query: never a labelled one, the
highest scores first, ties to the lower index, so a pick is a function of its inputs alone.

- :func:`pick_random`: a seeded uniform draw (every strategy's round 0, and the ``random`` baseline);
- :func:`pick_uncertain`: the examples whose P(class 1) is nearest 0.5;
- :func:`pick_disagreement`: the highest variance of a committee's P(class 1);
- :func:`pick_diagnostic`: informative *and* where the supervisor is predicted right:
  ``informativeness(p) * (1 - e(x))``, with e(x) an error model's predicted flip rate;
- :func:`pick_truth_targeted` / :func:`pick_truth_random`: where a truth budget is spent;
- :func:`frontier` / :func:`matches_all`: over aggregated rows, the best arm at each label count,
  and the labels at which an arm first matches labelling everything.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from oversight.errors import ConfigError

MATCH_MARGIN = 0.01  # an arm "matches labelling everything" at mean test acc >= all's mean - this


def round_sizes(budget: int, rounds: int) -> list[int]:
    """How many labels each round buys: ``budget`` split as evenly as it goes (the sizes differ by
    at most one, the later rounds larger), so they sum to ``budget`` exactly."""
    if rounds < 1 or budget < 0:
        raise ValueError(f"need rounds >= 1 and budget >= 0, got rounds={rounds}, budget={budget}")
    return [budget * (r + 1) // rounds - budget * r // rounds for r in range(rounds)]


def spend(budget: int, pool: int, rounds: int) -> int:
    """The supervisor labels an arm buys: ``budget`` (0: a third of the pool), capped at the pool;
    a :class:`ConfigError` naming ``budget`` when that cannot give every round a label."""
    spent = min(budget or pool // 3, pool)
    if spent < rounds:
        raise ConfigError("budget", f"{spent} labels cannot fill {rounds} rounds (a pool of {pool}); "
                          "raise --budget or lower --rounds")
    return spent


def top_k(scores: np.ndarray, labelled: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` unlabelled indices of highest score (ties: lower index first), in that order."""
    scores, labelled = np.asarray(scores, dtype=np.float64), np.asarray(labelled, dtype=bool)
    if scores.shape != labelled.shape:
        raise ValueError(f"{scores.shape[0]} scores for a pool of {labelled.shape[0]}")
    free = np.flatnonzero(~labelled)
    if k > free.size:
        raise ValueError(f"asked for {k} examples, but only {free.size} of the pool are unlabelled")
    if np.isnan(scores[free]).any():
        raise ValueError("a score is nan: a diverged model cannot rank the pool")
    order = np.lexsort((free, -scores[free]))  # by score, descending; ties by index
    return free[order[:k]]


def pick_random(labelled: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` unlabelled indices drawn uniformly without replacement (sorted)."""
    free = np.flatnonzero(~np.asarray(labelled, dtype=bool))
    if k > free.size:
        raise ValueError(f"asked for {k} examples, but only {free.size} of the pool are unlabelled")
    return np.sort(rng.choice(free, size=k, replace=False))


def informativeness(probs: np.ndarray) -> np.ndarray:
    """``1 - 2|p - 0.5|``: 1 on the decision boundary, 0 where the student is sure."""
    return 1.0 - 2.0 * np.abs(np.asarray(probs, dtype=np.float64) - 0.5)


def pick_uncertain(probs: np.ndarray, labelled: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` unlabelled examples nearest the student's decision boundary (smallest |p - 0.5|)."""
    return top_k(informativeness(probs), labelled, k)


def committee_variance(committee_probs: np.ndarray) -> np.ndarray:
    """Per example, the variance of a committee's P(class 1) (``[members, pool]`` -> ``[pool]``)."""
    return np.asarray(committee_probs, dtype=np.float64).var(axis=0)


def pick_disagreement(committee_probs: np.ndarray, labelled: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` unlabelled examples the committee disagrees on most (highest variance)."""
    return top_k(committee_variance(committee_probs), labelled, k)


def bootstrap_sample(indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bootstrap resample (with replacement, as many as given) of labelled indices: one member's
    training set in a disagreement committee."""
    indices = np.asarray(indices)
    return indices[rng.integers(0, indices.size, indices.size)]


def diagnostic_scores(probs: np.ndarray, error: np.ndarray) -> np.ndarray:
    """``informativeness(p) * (1 - e(x))``: uncertain for the student, and a label the supervisor
    is predicted to get right (e(x) = its predicted flip rate)."""
    error = np.asarray(error, dtype=np.float64)
    if ((error < 0) | (error > 1)).any():
        raise ValueError("e(x) is a probability: every value must be in [0, 1]")
    return informativeness(probs) * (1.0 - error)


def pick_diagnostic(probs: np.ndarray, error: np.ndarray, labelled: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` unlabelled examples of highest :func:`diagnostic_scores`."""
    return top_k(diagnostic_scores(probs, error), labelled, k)


def pick_truth_targeted(error: np.ndarray, labelled: np.ndarray, k: int) -> np.ndarray:
    """Where a targeted truth budget goes: the ``k`` *labelled* examples whose supervisor label is
    most likely wrong (highest e(x)), sorted by index."""
    labelled = np.asarray(labelled, dtype=bool)
    if k > labelled.sum():
        raise ValueError(f"a targeted truth budget of {k} needs {k} labelled examples; there are {labelled.sum()}")
    return np.sort(top_k(error, ~labelled, k))


def pick_truth_random(n_pool: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Where a random truth budget goes: ``k`` pool examples, labelled or not, sorted by index."""
    if k > n_pool:
        raise ValueError(f"a truth budget of {k} is more than the {n_pool} pool examples")
    return np.sort(rng.choice(n_pool, size=k, replace=False))


# --------------------------------------------------------------------------- choosing among arms (result rows)

def _setting(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in ("dataset", "weak", "strong", "supervisor", "supervisor_accuracy"))


def frontier(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting and (supervisor labels, truth labels): the arm of highest mean test accuracy."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        at = (*_setting(row), row["labels"], row["truth_labels"])
        if at not in best or row["test_acc"] > best[at]["test_acc"]:
            best[at] = row
    return [{"dataset": r["dataset"], "labels": r["labels"], "truth_labels": r["truth_labels"], "best": r["arm"],
             "test_acc": r["test_acc"]} for _, r in sorted(best.items(), key=lambda kv: (str(kv[0][:-2]), kv[0][-2:]))]


def matches_all(rows: list[dict[str, Any]], margin: float = MATCH_MARGIN) -> list[dict[str, Any]]:
    """Per arm: the fewest labels (supervisor, then truth) at which its mean test accuracy is at least
    labelling everything's (``all`` before any truth) minus ``margin``; labels None where it never
    is. Settings without an ``all`` arm are left out."""
    target = {_setting(r): r["test_acc"] for r in rows if r["strategy"] == "all" and not r["truth_labels"]}
    out = []
    for arm in dict.fromkeys((*_setting(r), r["arm"]) for r in rows if r["strategy"] != "all"):
        if arm[:-1] not in target:
            continue
        points = sorted((r for r in rows if (*_setting(r), r["arm"]) == arm), key=lambda r: (r["labels"], r["truth_labels"]))
        hit = next((r for r in points if r["test_acc"] >= target[arm[:-1]] - margin), None)
        out.append({"dataset": arm[0], "arm": arm[-1], "all_acc": target[arm[:-1]],
                    "labels": hit["labels"] if hit else None, "truth_labels": hit["truth_labels"] if hit else None,
                    "pool": points[0]["pool"]})
    return out
