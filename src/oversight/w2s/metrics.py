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
    labels, probs = np.asarray(labels), np.asarray(probs)
    if labels.min() == labels.max() or not np.isfinite(probs).all():
        return float("nan")  # AUROC needs both classes, and scores (a diverged run has none)
    return float(roc_auc_score(labels, probs))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of P(class 1) against the 0/1 label (0 is perfect, 0.25 is a coin)."""
    return float(np.mean((np.asarray(probs, dtype=np.float64) - np.asarray(labels, dtype=np.float64)) ** 2))


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the predicted class: the confidence max(p, 1-p) binned into
    ``bins`` equal-width bins on [0.5, 1]; the count-weighted mean |accuracy - confidence| per bin."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.size == 0:
        return float("nan")
    confidence = np.maximum(probs, 1 - probs)
    right = (probs > 0.5).astype(int) == labels
    which = np.minimum(((confidence - 0.5) * 2 * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.sum() * abs(right[in_bin].mean() - confidence[in_bin].mean())
    return float(total / probs.size)


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


ROLES = ("weak", "w2s", "ceiling")


def _correct(labels: list[np.ndarray], *probs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Per seed, per role: whether each test prediction is right."""
    return [[(np.asarray(p) > 0.5) == np.asarray(y).astype(bool) for p in ps]
            for y, *ps in zip(labels, *probs, strict=True)]


def group_totals(correct: list[np.ndarray], groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per test group: how many examples each role got right (``[groups, roles]``) and the group's
    size. Without ``groups`` every example is its own group."""
    n = len(correct[0])
    codes = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    sizes = np.bincount(codes).astype(np.float64)
    rights = np.stack([np.bincount(codes, weights=np.asarray(c, dtype=np.float64), minlength=len(sizes))
                       for c in correct], axis=1)
    return rights, sizes


def bootstrap_accuracies(correct: list[list[np.ndarray]], n_boot: int, rng: np.random.Generator,
                         over_seeds: bool, groups: list[np.ndarray] | None = None) -> np.ndarray:
    """``[n_boot, roles]`` seed-mean accuracies of bootstrap resamples.

    ``over_seeds``: each resample first draws as many seeds as there are, with replacement, then
    test groups within each drawn seed (a two-level bootstrap: split and training randomness, and
    test sampling); otherwise every seed is kept and only its test groups are drawn. A group (a
    movie's snippets, a country's statements, a position's candidate moves; ``groups[seed]`` gives
    each test example's) is drawn whole, since its examples are not independent; without ``groups``
    each example is a group. Within a seed the same draw serves every role (paired), so the
    resamples carry the noise of the differences, not of each accuracy alone."""
    n_seeds, n_roles = len(correct), len(correct[0])
    totals = [group_totals(correct[s], None if groups is None else groups[s]) for s in range(n_seeds)]
    accs = np.zeros((n_boot, n_roles))
    for b in range(n_boot):
        seeds = rng.integers(0, n_seeds, n_seeds) if over_seeds else range(n_seeds)
        for s in seeds:
            rights, sizes = totals[s]
            # how often each group is drawn, times its totals: sums of whole counts, so exact in any order
            drawn = np.bincount(rng.integers(0, len(sizes), len(sizes)), minlength=len(sizes)).astype(np.float64)
            accs[b] += (drawn @ rights) / (drawn @ sizes)
    return accs / n_seeds


def _pgr_intervals(accs: np.ndarray, level: float, suffix: str = "") -> dict[str, float]:
    """PGR and gap intervals of bootstrap accuracies (columns weak, w2s, ceiling). Resamples with
    undefined PGR are left out and counted; if more than half are undefined, no interval is given."""
    values = np.array([pgr(w, s, c) for w, s, c in accs])
    gaps = accs[:, 2] - accs[:, 0]
    defined = values[~np.isnan(values)]
    tail = (1 - level) / 2
    if defined.size < 0.5 * len(values):  # gap is not reliably positive: an interval would mislead
        low = high = float("nan")
    else:
        low, high = (float(v) for v in np.quantile(defined, [tail, 1 - tail]))
    gap_low, gap_high = (float(v) for v in np.quantile(gaps, [tail, 1 - tail]))
    return {f"pgr_ci{suffix}_low": low, f"pgr_ci{suffix}_high": high,
            f"pgr_undefined_frac{suffix}": float(1 - defined.size / len(values)),
            # a gap whose CI reaches 0 makes any PGR a ratio of noise: the table flags it
            f"gap_ci{suffix}_low": gap_low, f"gap_ci{suffix}_high": gap_high}


def paired_bootstrap_pgr(*columns: list[np.ndarray], n_boot: int = 1000, seed: int = 0,
                         level: float = 0.95, groups: list[np.ndarray] | None = None) -> dict[str, float]:
    """Test-only bootstrap CI of the PGR of seed-mean accuracies; ``columns`` are labels, weak, w2s
    and ceiling probabilities, one array per seed each. Every seed is kept and its test groups
    resampled (paired across weak / w2s / ceiling): it leaves out how much seeds differ."""
    accs = bootstrap_accuracies(_correct(*columns), n_boot, np.random.default_rng(seed), over_seeds=False,
                                groups=groups)
    return _pgr_intervals(accs, level)


def hierarchical_bootstrap_pgr(
    labels: list[np.ndarray],
    weak_probs: list[np.ndarray],
    w2s_probs: list[np.ndarray],
    ceiling_probs: list[np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """CIs that cover what varies: seeds resampled, then test groups within each resampled seed
    (paired across roles; ``groups`` per seed, else each example alone). PGR and gap as
    ``pgr_ci_*`` / ``gap_ci_*``, each accuracy as ``<role>_acc_ci_low/high`` with its bootstrap
    standard error ``<role>_acc_se``, and the test-only intervals beside them as
    ``pgr_ci_examples_*`` / ``gap_ci_examples_*``. With one seed both are the test-only interval."""
    correct = _correct(labels, weak_probs, w2s_probs, ceiling_probs)
    tail = (1 - level) / 2
    accs = bootstrap_accuracies(correct, n_boot, np.random.default_rng(seed), over_seeds=len(correct) > 1,
                                groups=groups)
    out = _pgr_intervals(accs, level)
    for j, role in enumerate(ROLES):
        out[f"{role}_acc_ci_low"], out[f"{role}_acc_ci_high"] = (float(v) for v in np.quantile(accs[:, j], [tail, 1 - tail]))
        out[f"{role}_acc_se"] = float(accs[:, j].std(ddof=1))
    examples = bootstrap_accuracies(correct, n_boot, np.random.default_rng(seed), over_seeds=False, groups=groups)
    out.update(_pgr_intervals(examples, level, suffix="_examples"))
    out["ci_covers"] = interval_covers(len(correct), grouped=groups is not None)
    return out


def interval_covers(n_seeds: int, grouped: bool = True) -> str:
    """What a reported interval accounts for: words for every table and figure caption."""
    unit = "test groups" if grouped else "test examples"
    if n_seeds > 1:
        return f"95% CI, bootstrap over {n_seeds} seeds, then {unit} within each"
    return f"95% CI over {unit} only (1 seed: seed-to-seed variation is not in it)"


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


def format_accuracy(mean: float, std: float | None, seeds: int, se: float | None = None, sep: str = " ± ") -> str:
    """``0.737 ± 0.012`` over seeds; one seed has no spread over seeds, so it shows its standard
    error over test groups, ``0.737 (SE 0.009)``, never a spread of zero."""
    if seeds > 1:
        return f"{mean:.3f}{sep}{std:.3f}"
    return f"{mean:.3f} (SE {se:.3f})" if se is not None else f"{mean:.3f} (1 seed)"


def summarize(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
