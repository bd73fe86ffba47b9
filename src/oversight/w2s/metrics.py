"""Test metrics of a weak-to-strong experiment, as small pure functions over numpy arrays.

PGR = (w2s - weak) / (ceiling - weak) is undefined (``nan``, printed "undefined") when the ceiling
is not above the weak score; such pairs are reported, never averaged in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of P(class 1) thresholded at 0.5."""
    return float(np.mean((np.asarray(probs) > 0.5).astype(int) == np.asarray(labels)))


def auroc(probs: np.ndarray, labels: np.ndarray) -> float:
    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return float("nan")  # AUROC needs both classes
    return float(roc_auc_score(labels, probs))


def pgr(weak: float, w2s: float, ceiling: float, min_gap: float = 0.0) -> float:
    """Performance gap recovered; ``nan`` when ``ceiling - weak <= min_gap``."""
    gap = ceiling - weak
    if not gap > min_gap:
        return float("nan")
    return (w2s - weak) / gap


def agreement(student_probs: np.ndarray, supervisor_probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """How often the student's prediction equals its supervisor's: overall, and split by whether
    the supervisor was right or wrong (imitating the supervisor's mistakes is the failure mode)."""
    student = np.asarray(student_probs) > 0.5
    supervisor = np.asarray(supervisor_probs) > 0.5
    supervisor_right = supervisor == np.asarray(labels).astype(bool)
    agree = student == supervisor

    def mean_or_nan(mask: np.ndarray) -> float:
        return float(agree[mask].mean()) if mask.any() else float("nan")

    return {
        "agreement": float(agree.mean()),
        "agreement_supervisor_right": mean_or_nan(supervisor_right),
        "agreement_supervisor_wrong": mean_or_nan(~supervisor_right),
    }


def paired_bootstrap_pgr(
    labels: list[np.ndarray],
    weak_probs: list[np.ndarray],
    w2s_probs: list[np.ndarray],
    ceiling_probs: list[np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Paired bootstrap CI of the PGR of seed-mean accuracies.

    Each list holds one array per seed (its own test split). In every resample the same test
    indices are drawn for the weak, w2s and ceiling predictions of a seed (paired), so the CI
    reflects test-set sampling noise of the *difference*, not of each accuracy separately.
    Resamples in which PGR is undefined are counted and left out of the interval.
    """
    rng = np.random.default_rng(seed)
    correct = [
        [(np.asarray(p) > 0.5) == np.asarray(y).astype(bool) for p in (wp, sp, cp)]
        for y, wp, sp, cp in zip(labels, weak_probs, w2s_probs, ceiling_probs, strict=True)
    ]
    values, gaps = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        accs = np.zeros(3)
        for weak_c, w2s_c, ceil_c in correct:
            idx = rng.integers(0, len(weak_c), len(weak_c))
            accs += [weak_c[idx].mean(), w2s_c[idx].mean(), ceil_c[idx].mean()]
        accs /= len(correct)
        values[b] = pgr(accs[0], accs[1], accs[2])
        gaps[b] = accs[2] - accs[0]
    defined = values[~np.isnan(values)]
    tail = (1 - level) / 2
    if defined.size < 0.5 * n_boot:  # gap is not reliably positive: an interval would mislead
        low = high = float("nan")
    else:
        low, high = (float(v) for v in np.quantile(defined, [tail, 1 - tail]))
    gap_low, gap_high = (float(v) for v in np.quantile(gaps, [tail, 1 - tail]))
    return {"pgr_ci_low": low, "pgr_ci_high": high, "pgr_undefined_frac": float(1 - defined.size / n_boot),
            # a gap whose CI reaches 0 makes any PGR a ratio of noise: the table flags it
            "gap_ci_low": gap_low, "gap_ci_high": gap_high}


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean and sample std over seeds of the defined (non-nan) values, with their count."""
    defined = [v for v in values if v is not None and not math.isnan(v)]
    if not defined:
        return float("nan"), float("nan"), 0
    arr = np.asarray(defined)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0, int(arr.size)


def format_pgr(value: float | None, low: float | None = None, high: float | None = None,
               gap_low: float | None = None) -> str:
    """``0.67 [0.59, 0.77]``; ``undefined`` without a gap; ``*`` when the gap's CI reaches zero."""
    if value is None or math.isnan(value):
        return "undefined"
    text = f"{value:.2f}"
    if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
        text += f" [{low:.2f}, {high:.2f}]"
    if gap_low is not None and gap_low <= 0:
        text += " *"
    return text


def summarize(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
