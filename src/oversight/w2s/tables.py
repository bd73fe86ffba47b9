"""The weak-to-strong results as markdown: the tables of ``docs/results/w2s.md``.

    from oversight.w2s.tables import markdown
    text = markdown(ResultsStore("runs/w2s.db"))     # "" when the store holds no w2s runs
    # or: oversight report --store runs/w2s.db --markdown docs/results

One part per kind of task (classification, chess puzzles, reward modelling), and in it one
section per weight selection (``--select``; ``oracle`` flagged as an ablation) and run variant, each with its provenance (seeds, commits and hosts of its runs): the PGR table (both
intervals), and the method comparison at each dataset's largest validation-gap pair with the median over
datasets, as the paper's summary plots.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from oversight.store import ResultsStore
from oversight.w2s.aggregate import accuracy_text, arm, method_label, summarizable
from oversight.w2s.metrics import format_pgr
from oversight.w2s.report import _loss_order, _model_size, collect, comparison_cells, median_pgr, median_text
from oversight.w2s.report_beyond import is_beyond

MARKDOWN_FILE = "w2s.md"
CAPTION = ("PGR = (w2s - weak) / (ceiling - weak). Accuracies: mean ± std over seeds (one seed: its standard "
           "error over test groups). PGR [95% CI]: bootstrap over seeds, then test groups within each (a group, "
           "e.g. a movie's snippets or a country's statements, is drawn whole; paired across weak / w2s / "
           "ceiling), so it covers split and training randomness and test sampling; [test only]: test groups "
           "resampled, seeds kept (with one seed both cover test sampling only). 'undefined': the ceiling is not "
           "above weak; '*': the gap's 95% CI reaches 0, so the PGR is a ratio of noise. Weak models and ceilings "
           "always keep the weights of best ground-truth validation accuracy; --select changes only the students'. "
           "Flags: [ORACLE] ground truth selected the student; [DIVERGED: roles] a training loss stopped being "
           "finite; [CEILING AT CHANCE] the ceiling is no better than a majority guess; [DIRTY TREE] made from "
           "uncommitted code. Medians leave out undefined, '*' and flagged PGRs and say how many.")


def _row_cells(r: dict[str, Any]) -> list[str]:
    return [r["dataset"], r["weak"], r["strong"], method_label(r),
            *(accuracy_text(r, role) for role in ("weak", "w2s", "ceiling")), f"{r['gap']:+.3f}",
            format_pgr(r["pgr"], r["pgr_ci_low"], r["pgr_ci_high"], r["gap_ci_low"]),
            format_pgr(r["pgr"], r.get("pgr_ci_examples_low"), r.get("pgr_ci_examples_high"),
                       r.get("gap_ci_examples_low")),
            _number(r.get("w2s_ece")), _number(r.get("w2s_brier")), str(r["seeds"])]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"  # None: not defined for the task (generated moves)


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def _provenance(rows: list[dict[str, Any]]) -> str:
    seeds = sorted({s for r in rows for s in r.get("seed_values", [])})
    commits = sorted({c for r in rows for c in r.get("commits", ["not recorded"])})
    hosts = sorted({h for r in rows for h in r.get("hosts", ["not recorded"])})
    return (f"{len(rows)} cells; seeds {', '.join(map(str, seeds))}; runs made at commit {', '.join(commits)} "
            f"on {', '.join(hosts)}; mode/head {', '.join(sorted({r['mode'] + '/' + r['head'] for r in rows}))}")


def comparison_table(rows: list[dict[str, Any]]) -> str:
    """PGR [CI] of every method at each dataset's largest-gap pair, and the median over datasets."""
    cells = comparison_cells(rows)
    arms = sorted({a for by_arm in cells.values() for a in by_arm}, key=_loss_order)
    body = []
    for dataset, by_arm in cells.items():
        pair = next(iter(by_arm.values()))
        body.append([f"{dataset} ({pair['weak']} -> {pair['strong']})"]
                    + [format_pgr(by_arm[a]["pgr"], by_arm[a]["pgr_ci_low"], by_arm[a]["pgr_ci_high"],
                                  by_arm[a]["gap_ci_low"]) if a in by_arm else "-" for a in arms])
    body.append(["median over datasets (entered of shown)"] + [median_text(median_pgr(cells, a)) for a in arms])
    return _table(["dataset (largest validation gap)", *arms], body)


# The paper's three kinds of task, in its order, and what "accuracy" counts in each.
FAMILIES = {
    "classification": ("Classification", "accuracy = the fraction of test texts labelled right"),
    "chess": ("Chess puzzles", "chess: is the candidate the engine's best move (accuracy); chess-gen: the "
                               "generated move equals the engine's best move (exact match)"),
    "reward": ("Reward modelling", "accuracy = the fraction of test preference pairs ranked right by the "
                                   "Bradley–Terry reward model"),
}


def family(row: dict[str, Any]) -> str:
    """Which of FAMILIES a row belongs to: by its task, and chess by its dataset's name."""
    if str(row["dataset"]).startswith("chess"):
        return "chess"
    return "reward" if row.get("task") == "preference" else "classification"


def markdown(store: ResultsStore) -> str:
    rows = collect(store)
    if any(is_beyond(r) for r in rows):  # a store of the beyond-the-paper presets: beyond_tables shows
        return ""                        # its weak-model rows too, as the reference of its own tables
    if not rows:
        return ""
    groups: dict[tuple[int, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        variant = ", ".join(part for part in (r.get("variant") or "").split(", ")
                            if part and not part.startswith("select="))
        groups[(list(FAMILIES).index(family(r)), r["select"], variant)].append(r)
    out = ["## Weak-to-strong generalization", "", CAPTION]
    shown_family = None
    for (rank, select, variant), group in sorted(groups.items()):
        name, what = FAMILIES[list(FAMILIES)[rank]]
        if rank != shown_family:
            out += ["", f"## {name}", "", what + "."]
            shown_family = rank
        title = f"{name}, --select {select}" + (f", {variant}" if variant else "")
        if select == "oracle":
            title += " [ORACLE ablation: ground-truth validation labels chose the student's weights]"
        out += _section(title, group)
    return "\n".join(out) + "\n"


def _section(title: str, group: list[dict[str, Any]]) -> list[str]:
    head = ["dataset", "weak", "strong", "method", "weak acc", "w2s acc", "ceiling acc", "gap", "PGR [95% CI]",
            "[test only]", "ECE w2s", "Brier w2s", "seeds"]
    group.sort(key=lambda r: (r["dataset"], _model_size(r["weak"]), _model_size(r["strong"]),
                              _loss_order(arm(r)), r.get("chain") or ""))
    return ["", f"### {title}", "", _provenance(group), "", _table(head, [_row_cells(r) for r in group]),
            "", f"Method comparison ({title}): PGR [95% CI] at each dataset's largest validation-gap pair.", "",
            comparison_table(group)]


def summary(store: ResultsStore) -> list[str]:
    """The README's results lines for this store: per kind of task, under the default selection
    (``weak-val``) and each variant, every arm's median PGR over datasets at their largest
    validation-gap pair (with what entered it), and the best single PGR with its interval."""
    rows = collect(store)
    if any(is_beyond(r) for r in rows):  # a store of the beyond-the-paper presets: its weak-model rows are
        return []                        # their reference, summarized by beyond_tables with them
    groups: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["select"] == "weak-val":
            variant = ", ".join(p for p in (r.get("variant") or "").split(", ") if p and not p.startswith("select="))
            groups[(list(FAMILIES).index(family(r)), variant)].append(r)
    lines = []
    for (rank, variant), group in sorted(groups.items()):
        cells = comparison_cells(group)
        if not cells:
            continue
        arms = sorted({a for by_arm in cells.values() for a in by_arm}, key=_loss_order)
        seeds = sorted({r["seeds"] for r in group})
        medians = "; ".join(f"{a} {median_text(median_pgr(cells, a))}" for a in arms)
        best = max((r for by_arm in cells.values() for r in by_arm.values() if summarizable(r)),
                   key=lambda r: r["pgr"], default=None)
        top = ("" if best is None else f" Highest: {best['dataset']} {best['weak']} -> {best['strong']} "
               f"{method_label(best)} {format_pgr(best['pgr'], best['pgr_ci_low'], best['pgr_ci_high'], best['gap_ci_low'])}.")
        where = FAMILIES[list(FAMILIES)[rank]][0] + (f", {variant}" if variant else "")
        datasets = f"{len(cells)} dataset" + ("s" if len(cells) > 1 else "")
        lines.append(f"- **{where}** ({'/'.join(map(str, seeds))} seeds, --select weak-val): median PGR over "
                     f"{datasets} at each one's largest validation-gap pair: {medians}.{top}")
    return lines
