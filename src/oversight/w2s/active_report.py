"""The report's and the results docs' section on ``oversight w2s active``: what labels buy.

    oversight w2s active --preset active       # then: oversight report, or oversight report --markdown DIR

Per setting (dataset, weak -> strong, supervisor; and each variant of the other fields that decide
the numbers): a figure of test accuracy (top) and PGR (bottom) against the supervisor labels
bought, one line per strategy, ``all`` (label the whole pool) as a horizontal reference with its
band, truth-budget arms as marked points; then the rounds table, the frontier (the best strategy
at each label count) and where each strategy first matches labelling everything
(:func:`oversight.w2s.active_select.matches_all`). A truth arm is shown at its final point only:
its earlier rounds are its arm without truth, shown under that arm.

    from oversight.w2s.active_report import section, markdown
    html = section(ResultsStore("runs/w2s.db"), Path("runs/report"))   # "" without active runs
"""

from __future__ import annotations

import html
import re
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from oversight.config import as_stored_by_now, canonical_json, label_fields, make_config, varying_fields
from oversight.errors import OversightError
from oversight.store import ResultsStore, artifacts_for
from oversight.w2s import active_select as select
from oversight.w2s import metrics
from oversight.w2s.active import KIND, STRATEGIES, ActiveConfig, aggregate

MARKDOWN_FILE = "w2s-active.md"
N_BOOT = 1000
SETTING = ("dataset", "weak", "strong", "supervisor", "supervisor_accuracy")
ARM = ("seed", "strategy", "truth_budget", "truth_placement")  # what tells runs of one setting apart, not a variant
TITLE = "Active weak-to-strong: a student that chooses what its supervisor labels"
RULE = (f"a strategy matches labelling everything at the fewest supervisor labels (then truth labels) at which "
        f"its mean test accuracy over seeds is at least that of `all` (the whole pool labelled, no truth) "
        f"minus {select.MATCH_MARGIN}; never: no round of it does")
CAPTION = ("test acc: mean ± std over seeds. PGR = (student − supervisor) / (ceiling − supervisor) on test: the "
           "supervisor's own test accuracy is the weak end, the strong model trained on the pool's ground truth "
           "the ceiling. PGR [95% CI]: a hierarchical bootstrap over seeds, then test groups within each (drawn "
           "whole, paired across supervisor / student / ceiling); 'undefined': the ceiling is not above the "
           "supervisor; '*': the gap's 95% CI reaches 0, so the PGR is a ratio of noise. supervisor labels: "
           "labels bought from the supervisor (round 0 is the same seeded random draw for every strategy); truth "
           "labels: ground-truth labels read through the counted truth budget. Students keep their last weights: "
           "no validation label is read, and the test split only measures. A truth arm is shown at its final "
           "point; its earlier rounds are its arm without truth.")
ROUND_COLUMNS = ("strategy", "round", "supervisor labels", "truth labels", "test acc", "PGR [95% CI]", "seeds")
FRONTIER_COLUMNS = ("supervisor labels", "truth labels", "best strategy", "test acc")
MATCH_COLUMNS = ("strategy", "supervisor labels", "truth labels", "all's test acc")


# --------------------------------------------------------------------------- rows

def _arm_order(cfg: dict[str, Any]) -> tuple[Any, ...]:
    strategy = cfg["strategy"]
    rank = STRATEGIES.index(strategy) if strategy in STRATEGIES else len(STRATEGIES)
    return rank, strategy, cfg.get("truth_budget") or 0, cfg.get("truth_placement") or ""


def _arms(store: ResultsStore, skipped: list[str]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Records by arm identity (every field that decides the numbers, less the seed; newest row per
    seed), and each identity's label fields."""
    arms: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    labels: dict[str, dict[str, Any]] = {}
    for record in store.records(kind=KIND):
        try:
            cfg = make_config(ActiveConfig, **as_stored_by_now(ActiveConfig, record["config"]))
        except (OversightError, TypeError) as err:
            skipped.append(f"run {record['key']}: its config is no longer valid ({err})")
            continue
        results = record["results"]
        label = {**label_fields(cfg), "data": str(results.get("data_version") or "")[:19],
                 "numerics": results.get("numerics") or "not recorded"}
        identity = canonical_json({k: v for k, v in label.items() if k != "seed"})
        arms[identity][cfg.seed] = record  # records() is oldest first: the newest row of a seed wins
        labels[identity] = label
    return {i: [by_seed[s] for s in sorted(by_seed)] for i, by_seed in arms.items()}, labels


def group_arms(labels: dict[str, dict[str, Any]]) -> dict[tuple[Any, ...], list[str]]:
    """Arm identities by (setting, variant): the variant names the fields that differ between arms
    of one setting; an arm without such a field (``all`` has no budget) joins every variant it fits."""
    by_setting: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for identity, label in labels.items():
        by_setting[tuple(label.get(k) or "" for k in SETTING)].append(identity)
    out: dict[tuple[Any, ...], list[str]] = {}
    for setting, identities in by_setting.items():
        differ = varying_fields([labels[i] for i in identities], ignore=(*SETTING, *ARM), missing_is_value=False)
        variants = {i: {k: canonical_json(labels[i][k]) for k in differ if k in labels[i]} for i in identities}
        widest = [v for v in variants.values() if not any(v != w and _fits(v, w) for w in variants.values())]
        for variant in {canonical_json(v): v for v in widest}.values():
            name = ", ".join(f"{k}={variant[k].strip(chr(34))}" for k in sorted(variant))
            out[(*setting, name)] = [i for i in identities if _fits(variants[i], variant)]
    return out


def _fits(small: dict[str, str], big: dict[str, str]) -> bool:
    """Whether every field of ``small`` is in ``big`` with the same value."""
    return all(big.get(k) == v for k, v in small.items())


def collect(store: ResultsStore, n_boot: int = N_BOOT, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Per (setting, variant), in a fixed order: ``title``, ``rows`` (:func:`active.aggregate` per arm,
    a truth arm at its truth points only), ``records`` (by arm) and ``provenance``. What cannot be
    read is appended to ``skipped`` and noted in the store (the report lists it)."""
    skipped = [] if skipped is None else skipped
    own: list[str] = []
    arms, labels = _arms(store, own)
    rows_of: dict[str, list[dict[str, Any]]] = {}
    for identity, records in arms.items():
        try:
            rows_of[identity] = [r for r in aggregate(records, store, n_boot=n_boot)
                                 if r["truth_labels"] or not records[0]["config"].get("truth_budget")]
        except (OversightError, RuntimeError, ValueError, KeyError) as err:
            own.append(f"active {labels[identity]['dataset']} {labels[identity]['strategy']}: {err}")
    groups = []
    for (*setting, variant), identities in sorted(group_arms(labels).items(), key=lambda kv: canonical_json(kv[0])):
        identities = sorted((i for i in identities if rows_of.get(i)), key=lambda i: _arm_order(arms[i][0]["config"]))
        if not identities:
            continue
        records = [r for i in identities for r in arms[i]]
        prov = [r["results"].get("provenance") or {} for r in records]
        dataset, weak, strong, supervisor, accuracy = setting
        groups.append({
            "title": f"{dataset}: {weak} → {strong}, supervisor {supervisor or 'model'}"
                     + (f" at accuracy {accuracy}" if accuracy else "") + (f" ({variant})" if variant else ""),
            "dataset": dataset, "rows": [r for i in identities for r in rows_of[i]],
            "records": {rows_of[i][0]["arm"]: arms[i] for i in identities},
            "seeds": sorted({r["config"]["seed"] for r in records}),
            "commits": sorted({str(p.get("commit") or "not recorded") for p in prov}),
            "hosts": sorted({str(p.get("host") or "not recorded") for p in prov}),
            "pool": records[0]["results"].get("pool")})
    skipped += own
    store.unreadable_artifacts.extend(line for line in own if line not in store.unreadable_artifacts)
    return groups


# --------------------------------------------------------------------------- tables

def round_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The rounds table: one line per (arm, round)."""
    return [[r["arm"], str(r["round"]), str(r["labels"]), str(r["truth_labels"]),
             "-" if r["test_acc"] is None else metrics.format_accuracy(r["test_acc"], r["test_acc_std"], r["seeds"]),
             metrics.format_pgr(r["pgr"], r["pgr_ci_low"], r["pgr_ci_high"], r["gap_ci_low"]), str(r["seeds"])]
            for r in rows]


def frontier_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per (supervisor labels, truth labels): the strategy of highest mean test accuracy."""
    return [[str(f["labels"]), str(f["truth_labels"]), f["best"], f"{f['test_acc']:.3f}"]
            for f in select.frontier(rows)]


def match_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per strategy: the labels at which it first matches labelling everything (:data:`RULE`)."""
    return [[m["arm"], "never" if m["labels"] is None else f"{m['labels']} of {m['pool']}",
             "-" if m["labels"] is None else str(m["truth_labels"]), f"{m['all_acc']:.3f}"]
            for m in select.matches_all(rows)]


def provenance(group: dict[str, Any]) -> str:
    arms = len(group["records"])
    return (f"{arms} arm{'s' if arms != 1 else ''}, pool of {group['pool']}; seeds "
            f"{', '.join(map(str, group['seeds']))}; runs made at commit {', '.join(group['commits'])} "
            f"on {', '.join(group['hosts'])}; intervals: {'; '.join(sorted({r['ci_covers'] for r in group['rows']}))}")


def _md_table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def markdown(store: ResultsStore) -> str:
    """The results doc (:data:`MARKDOWN_FILE`): per setting its provenance and three tables; "" without active runs."""
    groups = collect(store)
    if not groups:
        return ""
    out = [f"## {TITLE}", "", CAPTION]
    for g in groups:
        out += ["", f"### {g['title']}", "", provenance(g), "", *_md_table(ROUND_COLUMNS, round_cells(g["rows"]))]
        out += ["", f"Frontier ({g['title']}): the best strategy at each label count.", "",
                *_md_table(FRONTIER_COLUMNS, frontier_cells(g["rows"]))]
        matches = match_cells(g["rows"])
        if matches:
            out += ["", f"Where each strategy first matches labelling everything ({g['title']}): {RULE}.", "",
                    *_md_table(MATCH_COLUMNS, matches)]
    return "\n".join(out) + "\n"


def summary(store: ResultsStore) -> list[str]:
    """The README's lines: per setting with an ``all`` arm, the strategy that matches labelling
    everything with the fewest supervisor labels (no truth), and its PGR there beside all's."""
    lines = []
    for g in collect(store):
        rows = [r for r in g["rows"] if not r["truth_labels"]]
        every = next((r for r in rows if r["strategy"] == "all"), None)
        if every is None:
            continue
        fmt = {id(r): metrics.format_pgr(r["pgr"], r["pgr_ci_low"], r["pgr_ci_high"], r["gap_ci_low"]) for r in rows}
        hits = [m for m in select.matches_all(rows) if m["labels"] is not None]
        head = f"- **Active learning, {g['title']}** ({len(g['seeds'])} seeds, pool of {g['pool']}): "
        if hits:
            m = min(hits, key=lambda m: m["labels"])
            at = next(r for r in rows if r["arm"] == m["arm"] and r["labels"] == m["labels"])
            lines.append(head + f"{m['arm']} matches labelling everything (within {select.MATCH_MARGIN} test acc) "
                         f"with {m['labels']} of {m['pool']} supervisor labels; PGR there {fmt[id(at)]}, all's "
                         f"{fmt[id(every)]}.")
        else:
            last = max((r for r in rows if r is not every), key=lambda r: (r["labels"], r["test_acc"]), default=None)
            lines.append(head + "no strategy matches labelling everything within its budget" + (
                "." if last is None else f"; at {last['labels']} labels the best, {last['arm']}, has PGR "
                f"{fmt[id(last)]}, all's {fmt[id(every)]}."))
    return lines


# --------------------------------------------------------------------------- HTML and figures

def _html_table(title: str, columns: tuple[str, ...], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>" for cells in rows)
    return f"<h3>{html.escape(title)}</h3><table><tr>{head}</tr>{body}</table>"


def accuracy_intervals(records: list[dict[str, Any]], store: ResultsStore, rounds: list[int],
                       n_boot: int = N_BOOT) -> dict[int, tuple[float, float]]:
    """Per round, the 95% CI of the student's mean test accuracy: the bootstrap of
    :func:`active.aggregate` (seeds, then test groups; the same draws), read for the student."""
    artifacts = artifacts_for(store)
    runs = [artifacts.load_arrays(r["key"]) for r in records]
    sup, ceiling = ([artifacts.load_arrays(r["results"]["run_keys"][role])["test"] for r in records]
                    for role in ("supervisor", "ceiling"))
    out = {}
    for p in rounds:
        ci = metrics.hierarchical_bootstrap_pgr([a["test"] for a in runs], sup, [a[f"test_round{p}"] for a in runs],
                                                ceiling, n_boot=n_boot, seed=0, groups=[a["test_groups"] for a in runs])
        out[p] = (ci["w2s_acc_ci_low"], ci["w2s_acc_ci_high"])
    return out


def _bars(values: list[float], lows: list[float | None], highs: list[float | None]) -> list[list[float]]:
    return [[0.0 if lo is None or np.isnan(v) else max(0.0, v - lo) for v, lo in zip(values, lows, strict=True)],
            [0.0 if hi is None or np.isnan(v) else max(0.0, hi - v) for v, hi in zip(values, highs, strict=True)]]


def _panels(r: list[dict[str, Any]], acc_ci: dict[int, tuple[float, float]]) -> tuple[tuple[Any, ...], ...]:
    """(values, lows, highs) of accuracy and of PGR for the rows ``r`` of one arm."""
    pgr = [np.nan if x["pgr"] is None else x["pgr"] for x in r]
    return (([x["test_acc"] for x in r], [acc_ci[x["round"]][0] for x in r], [acc_ci[x["round"]][1] for x in r]),
            (pgr, [x["pgr_ci_low"] for x in r], [x["pgr_ci_high"] for x in r]))


def plot_group(group: dict[str, Any], store: ResultsStore, path: Path, n_boot: int = N_BOOT) -> Path:
    """Test accuracy (top) and PGR (bottom) against supervisor labels: a line per strategy, ``all``
    as a reference line with its band, truth arms as marked points (all with 95% CIs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(7.5, 7.5), sharex=True)
    colors = plt.get_cmap("tab10")
    span = max(r["labels"] for r in group["rows"]) or 1
    truth_arms = [arm for arm, records in group["records"].items() if records[0]["config"].get("truth_budget")]
    for arm, records in group["records"].items():
        rows = [r for r in group["rows"] if r["arm"] == arm]
        cfg = records[0]["config"]
        color = colors(_arm_order(cfg)[0] % 10)
        panels = _panels(rows, accuracy_intervals(records, store, [r["round"] for r in rows], n_boot))
        for ax, (values, lows, highs) in zip(axes, panels, strict=True):
            if cfg["strategy"] == "all" and not cfg.get("truth_budget"):
                ax.axhline(values[0], color="black", linestyle="--", label=f"all ({rows[0]['labels']} labels)")
                if lows[0] is not None and highs[0] is not None:
                    ax.axhspan(lows[0], highs[0], color="black", alpha=0.1)
            elif cfg.get("truth_budget"):
                x = [r["labels"] + span * 0.012 * (truth_arms.index(arm) % 5 + 1) for r in rows]
                ax.errorbar(x, values, yerr=_bars(values, lows, highs), color=color, capsize=3, linestyle="none",
                            marker="*" if cfg["truth_placement"] == "random" else "D", markersize=9,
                            label=f"{cfg['strategy']} +{cfg['truth_budget']} truth, {cfg['truth_placement']}")
            else:
                ax.errorbar([r["labels"] for r in rows], values, yerr=_bars(values, lows, highs), color=color,
                            marker="o", capsize=3, label=arm)
    axes[0].set_ylabel("test accuracy")
    axes[1].set_ylabel("PGR")
    axes[1].axhline(0, color="grey", linewidth=0.8)
    axes[1].set_xlabel("supervisor labels bought")
    if all(r["pgr"] is None for r in group["rows"]):
        axes[1].text(0.5, 0.5, "PGR undefined: the ceiling is not above the supervisor", transform=axes[1].transAxes,
                     ha="center", va="center", fontsize=9)
    axes[0].set_title(textwrap.fill(group["title"], 90), fontsize=9)
    axes[0].legend(fontsize=7, loc="best")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.text(0.5, 0.005, figure_caption(group), ha="center", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def figure_caption(group: dict[str, Any]) -> str:
    covers = "; ".join(sorted({r["ci_covers"] for r in group["rows"]}))
    return (f"bars and band: hierarchical bootstrap over seeds and test groups ({covers}); dashed: all, the whole "
            "pool labelled; marked points: +K truth, random/targeted")


def section(store: ResultsStore, out_dir: Path) -> str:
    """The report's HTML section ('' when the store holds no active runs), figures written to ``out_dir``."""
    skipped: list[str] = []
    groups = collect(store, skipped=skipped)
    if not groups and not skipped:
        return ""
    parts = [f"<h2>{html.escape(TITLE)}</h2><p>{html.escape(CAPTION)}</p>"]
    for n, g in enumerate(groups):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"active_{n}_{g['title']}")[:80] + ".png"
        path = plot_group(g, store, Path(out_dir) / name)
        parts.append(f"<h3>{html.escape(g['title'])}</h3><p>{html.escape(provenance(g))}</p>"
                     f'<img src="{html.escape(path.name)}" alt="{html.escape(g["title"])}">'
                     f"<p><em>{html.escape(figure_caption(g))}.</em></p>"
                     + _html_table(f"Rounds: {g['title']}", ROUND_COLUMNS, round_cells(g["rows"]))
                     + _html_table("Frontier: the best strategy at each label count", FRONTIER_COLUMNS,
                                   frontier_cells(g["rows"])))
        if match_cells(g["rows"]):
            parts.append(_html_table("Where each strategy first matches labelling everything", MATCH_COLUMNS,
                                     match_cells(g["rows"])) + f"<p>{html.escape(RULE)}.</p>")
    if skipped:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in skipped)
        parts.append(f"<p>Skipped, could not be read ({len(skipped)}):</p><ul>{items}</ul>")
    return "\n".join(parts)


def export_arrays(store: ResultsStore, record: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """By artifact key, the arrays :func:`active.aggregate` reads for one ``w2s_active`` record: its
    test labels, groups and per-round predictions, and its supervisor's and ceiling's test predictions."""
    artifacts = artifacts_for(store)
    run = artifacts.load_arrays(record["key"])
    # a round's predictions are read only as right or wrong (> 0.5): stored as 0/1 bytes, they are
    # exact for every number the tables show and compress to a fraction of their float size
    out = {record["key"]: {**{n: run[n] for n in ("test", "test_groups")},
                           **{n: (a > 0.5).astype(np.uint8) for n, a in run.items() if n.startswith("test_round")}}}
    for role in ("supervisor", "ceiling"):
        key = record["results"]["run_keys"][role]
        out[key] = {"test": artifacts.load_arrays(key)["test"]}
    return out
