"""The experiments beyond the paper as markdown: ``docs/results/.../w2s-beyond.md`` and README lines.

    from oversight.w2s.beyond_tables import markdown
    text = markdown(ResultsStore("runs/w2s.db"))    # "" when no synthetic supervisor or two-head ran
    # or: oversight report --store runs/w2s.db --markdown docs/results

The uncanny-valley table (PGR and imitation by kind of error at one supervisor accuracy, across
students) and the mistake-theory table (naive, confidence-loss and two-head students, with and
without a truth budget), as the report's HTML sections show them.
"""

from __future__ import annotations

from typing import Any

from oversight.store import ResultsStore
from oversight.w2s.metrics import format_pgr
from oversight.w2s.report import collect
from oversight.w2s.report_beyond import (
    MISTAKE_COLUMNS,
    UNCANNY_COLUMNS,
    mistake_table,
    uncanny_groups,
    uncanny_table,
)

MARKDOWN_FILE = "w2s-beyond.md"
UNCANNY_CAPTION = (
    "One supervisor accuracy per block: its labels of student_train and validation are the ground truth with "
    "exactly round((1 - A) n) labels flipped, at random (flip:random), the longest texts first "
    "(flip:rule:length), or where the weak model is most wrong (flip:model); its test labels are only scored "
    "(supervisor acc, the PGR's weak end). 'model' rows: the weak model's own labels at its own accuracy. "
    "imitation: the student's agreement with its supervisor on test examples the supervisor gets wrong; error "
    "AUROC: a linear probe on the student's pretrained features fitted on student_train to predict 'supervisor "
    "wrong', read on validation (an analysis; nothing trains or selects on it). Mean ± std over seeds. PGR "
    "[95% CI]: bootstrap over seeds, then test groups within each, paired across roles; '*': the gap's CI "
    "reaches 0; 'undefined': the ceiling is not above the supervisor.")
MISTAKE_CAPTION = (
    "two-head: a truth head and a linear model of where the supervisor flips the truth (capped at one half), "
    "fitted together on the supervisor's labels; '+K truth': K ground-truth labels of student_train (random, "
    "seeded; counted in 'truth labels read'), mixed into a naive student's labels or fitted by the two-head "
    "student's truth head. Other columns as above.")


def _table(head: tuple[str, ...], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |" for cells in rows])


def _provenance(rows: list[dict[str, Any]]) -> str:
    seeds = sorted({s for r in rows for s in r.get("seed_values", [])})
    commits = sorted({c for r in rows for c in r.get("commits", ["not recorded"])})
    hosts = sorted({h for r in rows for h in r.get("hosts", ["not recorded"])})
    return f"{len(rows)} cells; seeds {', '.join(map(str, seeds))}; runs made at commit {', '.join(commits)} on {', '.join(hosts)}"


def markdown(store: ResultsStore) -> str:
    rows = collect(store)
    uncanny, mistakes = uncanny_table(rows), mistake_table(rows)
    if not uncanny and not mistakes:
        return ""
    out = ["## Beyond the paper", "", _provenance(rows)]
    if uncanny:
        out += ["", "### Supervisors that err by kind (the uncanny valley)", "", UNCANNY_CAPTION, "",
                _table(UNCANNY_COLUMNS, uncanny)]
    if mistakes:
        out += ["", "### A student with a theory of its supervisor's mistakes", "", MISTAKE_CAPTION, "",
                _table(MISTAKE_COLUMNS, mistakes)]
    return "\n".join(out) + "\n"


def _pgr(r: dict[str, Any]) -> str:
    return format_pgr(r["pgr"], r["pgr_ci_low"], r["pgr_ci_high"], r["gap_ci_low"])


def summary(store: ResultsStore) -> list[str]:
    """README lines: per dataset and supervisor accuracy, at the largest student, each kind of
    error's PGR and imitation; per dataset and supervisor, the two-head student against naive."""
    rows = collect(store)
    lines = []
    for (dataset, weak, _mode), group in sorted(uncanny_groups(rows).items()):
        seeds = sorted({r["seeds"] for r in group})
        for accuracy in sorted({r["supervisor_accuracy"] for r in group if r.get("supervisor_accuracy")}):
            mine = [r for r in group if r.get("supervisor_accuracy") == accuracy]
            largest = max((r["strong"] for r in mine), key=lambda s: max(r.get("ceiling_acc") or 0 for r in mine
                                                                            if r["strong"] == s))
            parts = [f"{r['supervisor']} {_pgr(r)} (imitation {r['agreement_supervisor_wrong']:.2f})"
                     for r in sorted(mine, key=lambda r: r["supervisor"]) if r["strong"] == largest
                     and r.get("agreement_supervisor_wrong") is not None]
            lines.append(f"- **Uncanny valley, {dataset}** ({'/'.join(map(str, seeds))} seeds, supervisor accuracy "
                         f"{accuracy}, {weak} -> {largest}): PGR by kind of error: {'; '.join(parts)}.")
    groups: dict[tuple[str, str, str], list[list[Any]]] = {}
    for cells in mistake_table(rows):
        groups.setdefault((cells[0], cells[1], cells[2]), []).append(cells)
    for (dataset, pair, supervisor), group in sorted(groups.items()):
        parts = "; ".join(f"{c[3]} {c[5]}" for c in group)
        lines.append(f"- **Mistake theory, {dataset}** ({pair}, supervisor {supervisor}): PGR {parts}.")
    return lines
