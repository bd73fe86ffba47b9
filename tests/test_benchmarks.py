"""The benchmark scripts run and print their tables (their figures are measured, not asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_amplify_speed_prints_one_row_per_task(capsys: pytest.CaptureFixture[str]) -> None:
    import amplify_speed

    amplify_speed.main(["--tasks", "union_find,wildcard_search", "--steps", "2", "--size", "8"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["task", "union_find", "wildcard_search"]
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        times = [float(c) for c in cells[2:]]
        assert all(t > 0 for t in times), row
        generate, truth, _, _, _, x_step, supervised = times[:7]
        assert supervised == pytest.approx(generate + truth + x_step, abs=0.2)


def test_amplify_speed_times_every_part() -> None:
    import amplify_speed

    parts = amplify_speed.time_task("permutation_powering", size=8, steps=2)
    assert set(parts) == {"generate", "truth", "teacher encode", "H + teacher", "teacher decode", "X step",
                          "H' decisions"}
    assert parts["H + teacher"] >= parts["teacher decode"] > 0 and parts["H' decisions"] > 0
