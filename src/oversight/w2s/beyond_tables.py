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


def summary(store: ResultsStore) -> list[str]:
    """README lines, one per dataset of each experiment: at the largest student, each kind of
    error's PGR (imitation) at each supervisor accuracy; per supervisor, the PGR of each student
    without and with its truth budget. Intervals are in the tables."""
    rows = collect(store)
    lines = []
    for (dataset, weak, _mode), group in sorted(uncanny_groups(rows).items()):
        synthetic = [r for r in group if r.get("supervisor_accuracy")]
        accuracies = sorted({r["supervisor_accuracy"] for r in synthetic})
        largest = max((r["strong"] for r in synthetic), key=lambda s: max(r["ceiling_acc"] for r in synthetic
                                                                           if r["strong"] == s))
        cells = {(r["supervisor"], r["supervisor_accuracy"]): r for r in synthetic if r["strong"] == largest}
        parts = [f"{kind} " + " / ".join(_point(cells.get((kind, a))) for a in accuracies)
                 for kind in sorted({k for k, _ in cells})]
        seeds = "/".join(map(str, sorted({r["seeds"] for r in group})))
        lines.append(f"- **Uncanny valley, {dataset}** ({seeds} seeds, {weak} -> {largest}, supervisor accuracy "
                     f"{' / '.join(accuracies)}): PGR (imitation) by kind of error: {'; '.join(parts)}.")
    by_dataset: dict[str, dict[str, list[list[Any]]]] = {}
    for cells in mistake_table(rows):
        by_dataset.setdefault(cells[0], {}).setdefault(cells[2], []).append(cells)
    for dataset, supervisors in sorted(by_dataset.items()):
        parts = []
        for supervisor, group in sorted(supervisors.items()):
            pgr = {c[3]: c[5].split(" [")[0] for c in group}
            students = [name for name in pgr if " +" not in name]
            parts.append(f"{supervisor}: " + ", ".join(
                f"{name} {pgr[name]}" + "".join(f" / {pgr[k]}" for k in pgr if k.startswith(name + " +"))
                for name in students))
        budgets = sorted({c[3].split(" +")[1] for g in supervisors.values() for c in g if " +" in c[3]})
        lines.append(f"- **Mistake theory, {dataset}** (PGR without / with +{', '.join(budgets)}): {'; '.join(parts)}.")
    return lines


def _point(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    pgr = "undefined" if r["pgr"] is None else f"{r['pgr']:.2f}"
    imitation = r.get("agreement_supervisor_wrong")
    return pgr + ("" if imitation is None else f" ({imitation:.2f})")
