"""The intervals of weak-to-strong results: what they cover (seeds and test examples) and what not."""

from __future__ import annotations

import numpy as np

from oversight.w2s.metrics import hierarchical_bootstrap_pgr, interval_covers, paired_bootstrap_pgr, pgr


def _seed(rng: np.random.Generator, n: int, accs: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Labels and weak / w2s / ceiling probabilities right on exactly the given fractions of n examples."""
    labels = np.ones(n)
    probs = []
    for acc in accs:
        right = np.zeros(n)
        right[rng.permutation(n)[: round(acc * n)]] = 1.0
        probs.append(right)
    return (labels, *probs)


def _columns(seeds: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    return [list(column) for column in zip(*seeds, strict=True)]


def test_the_interval_covers_seeds_that_differ():
    rng = np.random.default_rng(0)
    # large test sets, PGRs far apart: the seed-to-seed spread dominates test sampling noise
    seeds = [_seed(rng, 4000, (0.6, w2s, 0.8)) for w2s in (0.62, 0.70, 0.78)]
    seed_pgrs = [pgr(0.6, w2s, 0.8) for w2s in (0.62, 0.70, 0.78)]  # 0.1, 0.5, 0.9
    out = hierarchical_bootstrap_pgr(*_columns(seeds), n_boot=2000)
    assert out["pgr_ci_low"] <= min(seed_pgrs) + 0.02 and out["pgr_ci_high"] >= max(seed_pgrs) - 0.02, out
    width = out["pgr_ci_high"] - out["pgr_ci_low"]
    examples_width = out["pgr_ci_examples_high"] - out["pgr_ci_examples_low"]
    assert examples_width < 0.15 < 0.6 < width, out  # the example-only interval leaves the spread out
    assert out["pgr_ci_examples_low"] < np.mean(seed_pgrs) < out["pgr_ci_examples_high"]
    # accuracy intervals over seeds too: the w2s accuracy spans the seeds' 0.62 .. 0.78
    assert out["w2s_acc_ci_low"] <= 0.63 and out["w2s_acc_ci_high"] >= 0.77
    assert out["ci_covers"] == interval_covers(3, grouped=False) and "seeds" in out["ci_covers"]


def test_identical_seeds_give_both_intervals_alike():
    rng = np.random.default_rng(1)
    one = _seed(rng, 2000, (0.6, 0.7, 0.8))
    out = hierarchical_bootstrap_pgr(*_columns([one, one, one]), n_boot=2000)
    assert abs(out["pgr_ci_low"] - out["pgr_ci_examples_low"]) < 0.05
    assert abs(out["pgr_ci_high"] - out["pgr_ci_examples_high"]) < 0.05


def test_one_seed_says_it_covers_test_sampling_only():
    rng = np.random.default_rng(2)
    columns = _columns([_seed(rng, 1000, (0.6, 0.7, 0.8))])
    out = hierarchical_bootstrap_pgr(*columns, n_boot=500)
    assert out["pgr_ci_low"] == out["pgr_ci_examples_low"] and out["pgr_ci_high"] == out["pgr_ci_examples_high"]
    assert "test examples only" in out["ci_covers"]


def test_the_example_only_interval_is_the_paired_bootstrap():
    rng = np.random.default_rng(3)
    columns = _columns([_seed(rng, 500, (0.6, 0.65, 0.8)), _seed(rng, 500, (0.62, 0.7, 0.79))])
    out = hierarchical_bootstrap_pgr(*columns, n_boot=300)
    paired = paired_bootstrap_pgr(*columns, n_boot=300)
    assert (out["pgr_ci_examples_low"], out["pgr_ci_examples_high"]) == (paired["pgr_ci_low"], paired["pgr_ci_high"])


def test_no_gap_gives_no_interval():
    rng = np.random.default_rng(4)
    columns = _columns([_seed(rng, 500, (0.7, 0.72, 0.64)) for _ in range(3)])
    out = hierarchical_bootstrap_pgr(*columns, n_boot=300)
    assert np.isnan(out["pgr_ci_low"]) and np.isnan(out["pgr_ci_high"]) and out["gap_ci_low"] <= 0


def test_brier_and_ece_against_hand_values():
    from oversight.w2s.metrics import brier, ece

    probs = np.array([0.9, 0.8, 0.3, 0.6])
    labels = np.array([1, 0, 0, 1])
    # brier: (0.01 + 0.64 + 0.09 + 0.16) / 4
    assert abs(brier(probs, labels) - 0.225) < 1e-12
    # two bins on [0.5, 1]: [0.5, 0.75) holds 0.7 (right) and 0.6 (right): |1 - 0.65| = 0.35;
    # [0.75, 1] holds 0.9 (right) and 0.8 (wrong): |0.5 - 0.85| = 0.35; each weighs 2/4
    assert abs(ece(probs, labels, bins=2) - 0.35) < 1e-12
    assert ece(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0  # confident and right: calibrated
    assert brier(np.full(4, 0.5), np.array([0, 1, 0, 1])) == 0.25


def test_the_method_comparison_takes_each_datasets_largest_validation_gap_pair():
    from oversight.w2s.report import comparison_cells, median_pgr, median_text

    def row(dataset, weak, strong, loss, val_gap, value, gap=0.5, gap_low=0.01, **flags):
        # the test gap is the same everywhere (or larger where the validation gap is small):
        # only the validation gap may pick the headline pair
        return {"dataset": dataset, "weak": weak, "strong": strong, "loss": loss, "val_gap": val_gap,
                "gap": gap, "gap_ci_low": gap_low, "pgr": value, **flags}

    rows = [row("a", "s", "m", "xent", 0.05, 0.9, gap=0.9), row("a", "s", "l", "xent", 0.2, 0.1),
            row("a", "s", "l", "logconf", 0.2, 0.5), row("b", "s", "l", "xent", 0.1, 0.3),
            row("b", "s", "l", "logconf", 0.1, None), row("c", "m", "l", "xent", None, None),
            row("d", "s", "l", "xent", 0.1, -6.0, gap_low=-0.01), row("e", "s", "l", "xent", 0.1, 0.7,
                                                                         ceiling_at_chance=True)]
    cells = comparison_cells(rows)
    assert {loss: r["pgr"] for loss, r in cells["a"].items()} == {"xent": 0.1, "logconf": 0.5}
    assert "c" not in cells  # no validation gap: no headline pair
    # a: 0.1, b: 0.3 enter; d's PGR is a ratio of noise (*), e's ceiling is at chance: left out, counted
    assert median_pgr(cells, "xent") == (0.2, 2, 2)
    assert median_text(median_pgr(cells, "xent")) == "0.20 (2 of 4; 2 left out: undefined, * or flagged)"
    assert median_pgr(cells, "logconf") == (0.5, 1, 1)  # b's is undefined
    assert median_pgr(cells, "product") == (None, 0, 0)
