"""The report's sections beyond the paper: supervisors that err by kind, and the two-head student.

    oversight w2s sweep --preset uncanny-valley     # then: oversight report
    oversight w2s sweep --preset mistake-theory

*Uncanny valley* (per dataset and supervisor accuracy): PGR and imitation (the student's agreement
with its supervisor where the supervisor is wrong) against the student's size, one line per kind
of error (random, rule, the weak model's), all at the same accuracy; the weak model itself at its
own accuracy for reference. *Mistake theory*: per (dataset, pair, supervisor), the naive student,
the confidence loss and the two-head student, with and without a truth budget.

    from oversight.w2s.report_beyond import section
    html = section(rows, Path("runs/report"))    # rows: oversight.w2s.report.collect(store)
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any

from oversight.w2s.aggregate import accuracy_text
from oversight.w2s.metrics import format_pgr
from oversight.w2s.models import get_model_spec

BEYOND_FIELDS = ("supervisor", "supervisor_accuracy", "student", "truth_budget")


def is_beyond(row: dict[str, Any]) -> bool:
    """A row of an experiment beyond the paper: a synthetic supervisor, a two-head student or a truth budget."""
    return ((row.get("supervisor") or "model") != "model" or (row.get("student") or "naive") != "naive"
            or bool(row.get("truth_budget")))


def _params(name: str) -> float:
    try:
        return float(get_model_spec(name).params or 1e3)
    except Exception:  # an hf: model that is gone: last
        return 1e12


def _mean(r: dict[str, Any], name: str) -> str:
    value, std = r.get(name), r.get(f"{name}_std")
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" ± {std:.2f}" if std is not None and r["seeds"] > 1 else "")


def uncanny_groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Per (dataset, weak, mode/head): the direct, naive, budget-free xent rows of a dataset that has
    a synthetic supervisor, those of the weak model included (the reference)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if (r.get("method") or "direct") == "direct" and r["loss"] == "xent" and (r.get("student") or "naive") == "naive" \
                and not r.get("truth_budget"):
            groups[(r["dataset"], r["weak"], f"{r['mode']}/{r['head']}")].append(r)
    return {k: v for k, v in groups.items() if any((r.get("supervisor") or "model") != "model" for r in v)}


def plot_uncanny(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One figure per group of :func:`uncanny_groups`: a column per supervisor accuracy, PGR on top
    and imitation below, against the student's parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for (dataset, weak, mode), group in sorted(uncanny_groups(rows).items()):
        accuracies = sorted({r["supervisor_accuracy"] for r in group if r.get("supervisor_accuracy")})
        fig, axes = plt.subplots(2, len(accuracies), figsize=(5 * len(accuracies), 7), squeeze=False, sharex=True)
        for col, accuracy in enumerate(accuracies):
            series = defaultdict(list)
            for r in group:
                if r.get("supervisor_accuracy") in (accuracy, "", None):
                    series[r.get("supervisor") or "model"].append(r)
            for name, line in sorted(series.items()):
                line.sort(key=lambda r: _params(r["strong"]))
                xs = [_params(r["strong"]) / 1e6 for r in line]
                style = dict(marker="o", linestyle=":" if name == "model" else "-",
                             label=f"{name} (own accuracy)" if name == "model" else name)
                axes[0][col].plot(xs, [r["pgr"] if r["pgr"] is not None else float("nan") for r in line], **style)
                axes[1][col].plot(xs, [r.get("agreement_supervisor_wrong") or float("nan") for r in line], **style)
            axes[0][col].set_title(f"{dataset}, supervisor accuracy {accuracy} ({mode})", fontsize=10)
            axes[0][col].axhline(0, color="grey", linewidth=0.8)
            axes[1][col].set_xlabel("student parameters (millions, log)")
            students = sorted({r["strong"] for r in group}, key=_params)
            for ax in axes[:, col]:
                ax.set_xscale("log")
                ax.set_xticks([_params(s) / 1e6 for s in students], students, rotation=20)
                ax.minorticks_off()
                ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("PGR (mean over seeds)")
        axes[1][0].set_ylabel("imitation: agreement where the supervisor is wrong")
        axes[0][0].legend(fontsize=8)
        fig.text(0.5, 0.005, f"supervised by {weak}'s labels or a synthetic supervisor at the stated accuracy; "
                 "intervals per row in the table", ha="center", fontsize=8)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = out_dir / f"uncanny_{dataset}_{weak}_{mode}".replace("/", "_").replace(":", "_")
        fig.savefig(path.with_suffix(".png"), dpi=130)
        plt.close(fig)
        paths.append(path.with_suffix(".png"))
    return paths


UNCANNY_COLUMNS = ("dataset", "accuracy", "supervisor", "strong", "supervisor acc", "w2s acc", "ceiling acc",
                   "PGR [95% CI]", "imitation", "agreement (sup. right)", "error AUROC", "seeds")
MISTAKE_COLUMNS = ("dataset", "weak → strong", "supervisor", "student", "w2s acc", "PGR [95% CI]", "imitation",
                   "truth labels read", "seeds")


def _table(title: str, columns: tuple[str, ...], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>" for cells in rows)
    return f"<h3>{html.escape(title)}</h3><table><tr>{head}</tr>{body}</table>"


def _pgr(r: dict[str, Any]) -> str:
    return " ".join([format_pgr(r["pgr"], r["pgr_ci_low"], r["pgr_ci_high"], r["gap_ci_low"]), *r.get("flags", [])])


def uncanny_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for (_dataset, _weak, _mode), group in sorted(uncanny_groups(rows).items()):
        for r in sorted(group, key=lambda r: (r.get("supervisor_accuracy") or "", r.get("supervisor") or "",
                                              _params(r["strong"]))):
            out.append([r["dataset"], r.get("supervisor_accuracy") or "own", r.get("supervisor") or "model",
                        r["strong"], *(accuracy_text(r, role) for role in ("weak", "w2s", "ceiling")), _pgr(r),
                        _mean(r, "agreement_supervisor_wrong"), _mean(r, "agreement_supervisor_right"),
                        _mean(r, "error_auroc"), r["seeds"]])
    return out


def mistake_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Per (dataset, pair, supervisor) where a two-head student or a truth budget ran: every arm."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if (r.get("method") or "direct") == "direct":
            groups[(r["dataset"], r["weak"], r["strong"], r.get("supervisor") or "model",
                    r.get("supervisor_accuracy") or "")].append(r)
    out = []
    for key, group in sorted(groups.items()):
        if not any(r.get("student") == "two-head" or r.get("truth_budget") for r in group):
            continue
        for r in sorted(group, key=lambda r: (r.get("truth_budget") or 0, r.get("student") or "", r["loss"])):
            supervisor = key[3] + (f"@{key[4]}" if key[4] else "")
            student = ("two-head" if r.get("student") == "two-head" else r["loss"]) + (
                f" +{r['truth_budget']} truth" if r.get("truth_budget") else "")
            out.append([r["dataset"], f"{r['weak']} → {r['strong']}", supervisor, student, accuracy_text(r, "w2s"),
                        _pgr(r), _mean(r, "agreement_supervisor_wrong"),
                        "-" if r.get("truth_labels_read") is None else f"{r['truth_labels_read']:.0f}", r["seeds"]])
    return out


def section(rows: list[dict[str, Any]], out_dir: Path) -> str:
    """The two sections as HTML ('' when the store holds neither experiment)."""
    parts = []
    uncanny = uncanny_table(rows)
    if uncanny:
        imgs = "\n".join(f'<img src="{p.name}" alt="{html.escape(p.stem)}">' for p in plot_uncanny(rows, out_dir))
        parts.append(
            "<h2>Supervisors that err by kind (the uncanny valley)</h2><p>At one supervisor accuracy, errors that are "
            "random, follow a rule (flip:rule), or are the weak model's (flip:model); the weak model itself at its "
            "own accuracy for reference. <em>imitation</em>: how often the student agrees with its supervisor on test "
            "examples where the supervisor is wrong (mean ± std over seeds); <em>error AUROC</em>: how well a linear "
            "probe on the student's pretrained features, fitted on student_train, predicts on validation where the "
            "supervisor errs (an analysis that reads ground truth; nothing trains or selects on it). PGR intervals: "
            "bootstrap over seeds, then test groups within each, paired.</p>"
            f"{imgs}\n{_table('Uncanny valley: PGR and imitation by kind of error', UNCANNY_COLUMNS, uncanny)}")
    mistakes = mistake_table(rows)
    if mistakes:
        parts.append(
            "<h2>A student with a theory of its supervisor's mistakes</h2><p><em>two-head</em>: a truth head and a "
            "low-capacity model of where the supervisor flips the truth (at most half the time at any input), fitted "
            "together on the supervisor's labels; <em>+K truth</em>: K ground-truth labels of student_train, counted "
            "(mixed into a naive student's labels, or fitted by the two-head student's truth head).</p>"
            + _table("Mistake theory: naive, confidence loss and two-head students", MISTAKE_COLUMNS, mistakes))
    return "\n".join(parts)

