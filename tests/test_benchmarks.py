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


def test_amplify_measurement_grid_runs_into_the_store_and_flags_the_oracle(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import amplify

    configs = amplify.grid(list(amplify.ALL_TASKS), small_steps=10, steps=20)
    assert len(configs) == 2 * 6 + 3 * 10  # one curriculum where levels are read off the question, else two
    assert all(c.steps in (10, 20) and not c.minutes for c in configs)  # step budgets, nothing timed
    store = tmp_path / "bench.db"
    amplify.main(["--tasks", "union_find", "--small-steps", "2", "--steps", "2", "--seeds", "2", "--store", str(store)])
    table = capsys.readouterr().out
    assert table.count("| oracle [ORACLE CURRICULUM]") == 2 and "(2 seeds)" in table  # then [DIRTY TREE] if edited
    amplify.main(["--tasks", "union_find", "--small-steps", "2", "--steps", "2", "--seeds", "2", "--store", str(store),
                  "--print-only"])
    assert capsys.readouterr().out == table  # printed again from the store, nothing rerun
