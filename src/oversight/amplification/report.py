"""The Iterated-Amplification section of ``oversight report``: the paper's figure and a cost table.

    from oversight.amplification.report import section
    html = section(ResultsStore("runs/oversight.db"), Path("runs/report"))   # or a list of records

Figure: one panel per task, validation accuracy at the largest trained size against training
steps, and a second figure against wall time, for supervised / amplify / amplify-learned. Table:
final test accuracy (test set read once, after training) with its standard error, steps and
seconds to reach 95% and 99% on validation, the time each amplify mode took (relative to
supervised) to the best validation accuracy both reached, expert calls, ground-truth labels, and
amplify-learned's expert calls as a fraction of the labels the supervised run consumed. Runs of
the oracle curriculum are flagged [ORACLE CURRICULUM]; time-limited runs, not reproducible; runs
whose training loss went non-finite, [DIVERGED at step N].
"""

from __future__ import annotations

import dataclasses
import html
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from oversight.amplification.evaluation import curve_accuracy, format_acc_by_level, stored_test_set  # noqa: E402
from oversight.amplification.results import base_runs, diverged_flag  # noqa: E402
from oversight.amplification.runs import identity_of, migrate_store, stored_config  # noqa: E402
from oversight.config import varying_fields  # noqa: E402

MODE_STYLE = {"supervised": ("tab:blue", "supervised (ground truth)"),
              "amplify": ("tab:orange", "amplify (H)"),
              "amplify-learned": ("tab:green", "amplify-learned (H')")}
LINE_STYLES = ("-", "--", ":", "-.")
# fields that say which run this is or how long it ran, not what variant of the method it is
NOT_A_VARIANT = ("task", "mode", "size", "steps", "minutes", "eval_every")


def variants(records: list[dict[str, Any]]) -> dict[int, str]:
    """Label of each run (by ``id``) among the runs of its task, size and mode: the fields that differ
    between those runs, e.g. ``"seed=1, lr_decay_steps=3000"`` ("" when it is the only such run)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        c = r["config"]
        groups[(c["task"], c["size"], c["mode"])].append(r)
    labels = {}
    for runs in groups.values():
        # labelled by identity: the fields that decide a run's numbers, as the store keys it
        fields = varying_fields([identity_of(r) for r in runs], NOT_A_VARIANT)
        for r in runs:  # the values as the run had them (a field added later: its key_neutral value)
            c = dataclasses.asdict(stored_config(r["config"])) | {"test_set": stored_test_set(r.get("results") or {})}
            labels[id(r)] = ", ".join(f"{k}={c.get(k)}" for k in fields)
    return labels


def _records(source: Any) -> list[dict[str, Any]]:
    if hasattr(source, "records"):
        migrate_store(source)
        return base_runs(source.records(kind="amplify"))
    return base_runs([r for r in source if r.get("kind", "amplify") == "amplify"])


def _panel_size(runs: list[dict[str, Any]]) -> int:
    """The size shown in a task's panel: the one with the most runs (ties: the largest)."""
    counts: dict[int, int] = defaultdict(int)
    for r in runs:
        counts[r["config"]["size"]] += 1
    return max(counts, key=lambda s: (counts[s], s))


def _figure(by_task: dict[str, list[dict[str, Any]]], x_key: str, x_label: str, path: Path) -> None:
    tasks = sorted(by_task)
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    panel_runs = {task: [r for r in by_task[task] if r["config"]["size"] == _panel_size(by_task[task])] for task in tasks}
    # each panel's legend sits under it, so it never hides a curve: rows grow with the longest legend
    legend_rows = max(len(runs) for runs in panel_runs.values())
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, (3.4 + 0.15 * legend_rows) * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        runs = panel_runs[task]
        size = runs[0]["config"]["size"]
        labels = variants(runs)
        drawn: dict[str, int] = defaultdict(int)  # lines per mode so far: each gets its own line style
        for r in sorted(runs, key=lambda r: (r["config"]["mode"], labels[id(r)])):
            mode = r["config"]["mode"]
            color, label = MODE_STYLE.get(mode, ("gray", mode))
            curve = r["results"].get("curve") or []
            xs = [p[x_key] for p in curve]
            ys = [curve_accuracy(p, size) for p in curve]
            ax.plot(xs, ys, color=color, lw=1.5, ls=LINE_STYLES[drawn[mode] % len(LINE_STYLES)],
                    label=label + (f" [{labels[id(r)]}]" if labels[id(r)] else "")
                    + (" [ORACLE CURRICULUM]" if r["results"].get("oracle_curriculum", True) else ""))
            drawn[mode] += 1
        ax.axhline(0.95, color="gray", lw=0.6, ls="--")
        ax.set_title(f"{task} (n={size})", fontsize=10)
        ax.set_xlabel(x_label)
        ax.set_ylabel("validation accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _fmt_reach(hit: dict[str, Any] | None, key: str) -> str:
    if hit is None:
        return "-"
    return f"{hit[key]:.0f}" if key == "seconds" else str(hit[key])


def seconds_to(curve: list[dict[str, Any]], size: int, accuracy: float) -> float | None:
    """Training seconds at the first evaluation where test accuracy at ``size`` reached ``accuracy``."""
    hit = next((p for p in curve if (curve_accuracy(p, size) or 0.0) >= accuracy), None)
    return None if hit is None else float(hit["seconds"])


def time_ratio_at_common_accuracy(run: dict[str, Any], baseline: dict[str, Any], size: int) -> tuple[float, float] | None:
    """(accuracy, ratio): the best test accuracy BOTH runs reached, and run's time to it over baseline's.

    The issue's "wall time no more than 1.5x supervised" is asked at 95%; where a run never gets
    there this still says how much slower it was to the accuracy both did reach.
    """
    def best(res: dict[str, Any]) -> float:
        return max(((curve_accuracy(p, size) or 0.0) for p in res.get("curve") or []), default=0.0)

    common = min(best(run), best(baseline))
    t_run, t_base = seconds_to(run.get("curve") or [], size, common), seconds_to(baseline.get("curve") or [], size, common)
    if common <= 0 or t_run is None or t_base is None:
        return None
    return common, t_run / max(t_base, 1e-9)


def cost_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run with the table's numbers (also used by the benchmark)."""
    supervised = {(r["config"]["task"], r["config"]["size"], r["config"]["seed"]): r["results"]
                  for r in records if r["config"]["mode"] == "supervised"}
    rows, labels = [], variants(records)
    for r in records:
        c, res = r["config"], r["results"]
        reach = res.get("reached") or {}
        sup_run = supervised.get((c["task"], c["size"], c["seed"]))
        sup = sup_run["gt_labels_used"] if sup_run else None
        ratio = (time_ratio_at_common_accuracy(res, sup_run, c["size"])
                 if sup_run is not None and c["mode"] != "supervised" else None)
        rows.append({
            "task": c["task"], "mode": c["mode"], "size": c["size"], "seed": c["seed"], "variant": labels[id(r)],
            "test_acc": res["test_acc"], "test_acc_se": res.get("test_acc_se"),
            "acc_by_size": res.get("test_acc_by_size", {}),
            "oracle_curriculum": res.get("oracle_curriculum", True), "reproducible": res.get("reproducible", False),
            "acc_by_level": res.get("test_acc_by_level", {}),
            "steps": res["steps"], "seconds": res["seconds"],
            "steps_95": _fmt_reach(reach.get("0.95"), "step"), "seconds_95": _fmt_reach(reach.get("0.95"), "seconds"),
            "steps_99": _fmt_reach(reach.get("0.99"), "step"), "seconds_99": _fmt_reach(reach.get("0.99"), "seconds"),
            "expert_calls": res["expert_calls"], "gt_labels_used": res["gt_labels_used"],
            "calls_vs_supervised_labels": (f"{res['expert_calls'] / sup:.2%}" if sup and c["mode"] == "amplify-learned"
                                           else "-"),
            "time_vs_supervised": "-" if ratio is None else f"{ratio[1]:.2f}x to {ratio[0]:.3f}",
            "final_stage": res.get("final_stage", {}),
            "diverged_at": [res.get("diverged_at_step")] if res.get("diverged") else [],
        })
    return sorted(rows, key=lambda x: (x["task"], x["size"], list(MODE_STYLE).index(x["mode"])
                                       if x["mode"] in MODE_STYLE else 9, x["variant"], x["seed"]))


def section(source: Any, out_dir: Path) -> str:
    """HTML for the report (and PNGs in ``out_dir``); ``source`` is a ResultsStore or a list of records."""
    records = _records(source)
    if not records:
        return ""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_task[r["config"]["task"]].append(r)
    _figure(by_task, "step", "training steps", out_dir / "amplify_acc_vs_steps.png")
    _figure(by_task, "seconds", "training wall time (s)", out_dir / "amplify_acc_vs_seconds.png")

    head = ["task", "mode", "n", "seed", "variant (what differs from the same mode's other runs)", "test acc ± SE (n)",
            "acc by size", "acc by question level (largest n)", "steps", "seconds", "steps to 95%",
            "s to 95%", "steps to 99%", "s to 99%", "time vs supervised (to the accuracy both reached)",
            "expert calls", "GT labels", "calls / supervised labels", "curriculum reached"]
    body = []
    for row in cost_rows(records):
        stage = row["final_stage"]
        variant = ((row["variant"] or "-") + (" [ORACLE CURRICULUM]" if row["oracle_curriculum"] else "")
                   + ("" if row["reproducible"] else " (time-limited: not reproducible)"))
        se = "" if row["test_acc_se"] is None else f" ± {row['test_acc_se']:.3f}"
        acc = f"{row['test_acc']:.3f}{se}{diverged_flag(row['diverged_at'])}"
        cells = [row["task"], row["mode"], row["size"], row["seed"], variant, acc,
                 " ".join(f"{s}:{a:.2f}" for s, a in row["acc_by_size"].items()),
                 format_acc_by_level(row["acc_by_level"]), row["steps"],
                 f"{row['seconds']:.0f}", row["steps_95"], row["seconds_95"], row["steps_99"], row["seconds_99"],
                 row["time_vs_supervised"], f"{row['expert_calls']:,}", f"{row['gt_labels_used']:,}", row["calls_vs_supervised_labels"],
                 f"n={stage.get('size')} L{stage.get('level')}" + ("" if stage.get("final") else " (not done)")]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    table = ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
             + "".join(body) + "</table>")
    return (
        "<h2>Iterated Amplification</h2>"
        "<p>Curves: validation accuracy of X at the largest trained size (full question distribution), which "
        "also decides stopping and the steps to 95%/99%. Table: test accuracy on a fixed test set read once "
        "after training, ± its standard error over test instances; supervised baseline (ground-truth targets), "
        "amplification with the scripted expert H, and with the learned expert H'. The amplify modes use no "
        "ground-truth label of a non-primitive question (asserted, and any read of a true answer raises). "
        "[ORACLE CURRICULUM]: questions chosen by their true depth or distance, an upper bound. Wall time "
        "excludes evaluation; it was measured on a shared CPU, so compare runs made together. [DIVERGED]: "
        "training stopped at a non-finite loss or gradient.</p>"
        "<img src='amplify_acc_vs_steps.png' alt='accuracy vs steps'>"
        "<img src='amplify_acc_vs_seconds.png' alt='accuracy vs wall time'>"
        + table
    )
