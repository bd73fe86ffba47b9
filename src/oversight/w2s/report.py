"""The weak-to-strong section of ``oversight report``: the paper-style figure and PGR tables.

Figure (one panel per dataset × loss, as in Burns et al. Fig. 3): test accuracy against the strong
student's size; one solid line per weak supervisor (its weak-to-strong students), the strong
ceiling dashed, and each weak supervisor's own accuracy as a dotted horizontal line.

Cells are grouped by run identity (``oversight.config.run_identity`` less the seed), so runs that
differ in any field that decides their numbers (``--max-examples``, ``--lr``, ...) are never merged:
each such variant is labelled by the fields that differ and gets a figure of its own. What cannot
be read (a damaged row, a missing artifact) is skipped and listed under the tables.

    from oversight.w2s.report import section
    html = section(ResultsStore("runs/oversight.db"), Path("runs/report"))
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from oversight.config import (
    as_stored_by_now,
    canonical_json,
    label_fields,
    make_config,
    varying_fields,
)
from oversight.errors import OversightError
from oversight.store import ResultsStore
from oversight.w2s.aggregate import accuracy_text, aggregate_records, arm, summarizable
from oversight.w2s.config import W2SConfig, migrate_store
from oversight.w2s.metrics import format_pgr
from oversight.w2s.report_beyond import BEYOND_FIELDS, is_beyond
from oversight.w2s.report_beyond import section as beyond_section

# fields every row shows in columns of its own; the others tell variants apart
SHOWN = ("dataset", "weak", "strong", "loss", "method", "chain", "mode", "head", "seed")


def collect(store: ResultsStore, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Aggregate every cell (one run identity less the seed, on one version of the data, at one
    numerics) over its seeds, one row per seed. Each row's ``variant`` names the fields by which its
    cell differs from the others ("" when nothing does); what cannot be read is appended to ``skipped``."""
    skipped = [] if skipped is None else skipped
    own: list[str] = []  # what this function leaves out: said on the terminal too (report.tell_skipped)
    migrate_store(store)
    cells: dict[str, dict[int, tuple[W2SConfig, dict[str, Any]]]] = defaultdict(dict)
    identities: dict[str, dict[str, Any]] = {}
    for record in store.records(kind="w2s"):
        try:
            cfg = make_config(W2SConfig, **as_stored_by_now(W2SConfig, record["config"]))
        except (OversightError, TypeError) as err:
            own.append(f"run {record['key']}: its config is no longer valid ({err})")
            continue
        results = record["results"]
        label = {**label_fields(cfg), "data": _short(results.get("data_version")),
                 "numerics": results.get("numerics") or "not recorded"}
        identity = canonical_json({k: v for k, v in label.items() if k != "seed"})
        if cfg.seed in cells[identity]:  # records() is oldest first: the newer row of a seed is kept
            own.append(f"run {cells[identity][cfg.seed][1]['key']}: an older row of seed {cfg.seed} of its cell")
        cells[identity][cfg.seed] = (cfg, record)
        identities[identity] = label
    skipped += [f"row {line}" for line in store.unreadable]
    # a field one cell does not use (alpha_max outside logconf) does not make it a variant
    # the beyond-the-paper fields are named by the method's label (aggregate.arm), not as a variant
    differing = varying_fields(list(identities.values()), ignore=(*SHOWN, *BEYOND_FIELDS, "data"),
                               missing_is_value=False)
    # each dataset has a version of its own: the data tells cells apart only where one dataset has two
    versions: dict[str, set[str]] = defaultdict(set)
    for label in identities.values():
        versions[label["dataset"]].add(label["data"])
    if any(len(v) > 1 for v in versions.values()):
        differing.append("data")
    rows = []
    for identity, by_seed in cells.items():
        items = [by_seed[seed] for seed in sorted(by_seed)]
        first = items[0][0]
        try:
            row = aggregate_records(items, store)
        except (OversightError, RuntimeError, ValueError) as err:
            own.append(f"{first.dataset} {first.weak}->{first.strong} {first.loss}: {err}")
            continue
        row["variant"] = ", ".join(f"{k}={identities[identity].get(k)}" for k in differing)
        rows.append(row)
    skipped += own
    store.unreadable_artifacts.extend(line for line in own if line not in store.unreadable_artifacts)
    return rows


def _short(version: Any) -> str:
    """A data version short enough for a label (a content digest is cut to 12 hex digits)."""
    text = str(version or "")
    return text[:19] if text.startswith("sha256:") else text


def _model_size(name: str) -> float:
    from oversight.w2s.models import get_model_spec

    try:
        params = get_model_spec(name).params
    except Exception:  # an hf: model that is gone; order it last
        params = None
    return float(params) if params else 1e3  # bow: no pretrained parameters, leftmost


def _loss_order(name: str) -> tuple[int, int, str]:
    """Direct losses first, in registration order (the naive baseline first), then other methods'."""
    from oversight.w2s.losses import LOSSES

    method, _, loss = name.rpartition("-") if name not in LOSSES.names() else ("", "", name)
    names = LOSSES.names()
    return (bool(method), names.index(loss) if loss in names else len(names), name)


def _save(fig: Any, caption: str, path: Path) -> Path:
    """A figure with its caption (what its bars or marks mean) under it, written to ``path``."""
    import matplotlib.pyplot as plt

    fig.text(0.5, 0.005, caption, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def comparison_cells(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per dataset, the rows (by arm) of its (weak, strong) pair with the largest gap on
    *validation* (ground-truth validation accuracy of ceiling less weak; test never picks it): the
    cell the method comparison shows, as the paper's summary plots take the largest students. A
    dataset whose rows have no validation gap is left out."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset and r.get("val_gap") is not None]
        if not mine:
            continue
        best = max(mine, key=lambda r: r["val_gap"])
        out[dataset] = {arm(r): r for r in mine if (r["weak"], r["strong"]) == (best["weak"], best["strong"])}
    return out


def median_pgr(cells: dict[str, dict[str, dict[str, Any]]], loss: str) -> tuple[float | None, int, int]:
    """The median over datasets of an arm's PGR, over the datasets where it may be summarised
    (:func:`summarizable`: defined, gap clear of zero, not flagged); with how many entered it and
    how many were left out."""
    present = [by_loss[loss] for by_loss in cells.values() if loss in by_loss]
    values = [r["pgr"] for r in present if summarizable(r)]
    return (float(np.median(values)) if values else None), len(values), len(present) - len(values)


def median_text(median: tuple[float | None, int, int]) -> str:
    """``0.44 (2 of 3; 1 left out)``: a median with what it is over."""
    value, used, left = median
    text = "-" if value is None else f"{value:.2f}"
    return f"{text} ({used} of {used + left}" + (f"; {left} left out: undefined, * or flagged)" if left else ")")


def plot_comparison(rows: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """PGR with its CI per dataset and loss (each dataset's largest-gap pair), and the median over
    datasets: which method helps where. One panel per (mode, head, variant)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["mode"], r["head"], r.get("variant", ""))].append(r)
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.2), squeeze=False)
    for ax, ((mode, head, variant), group) in zip(axes[0], sorted(groups.items()), strict=True):
        cells = comparison_cells(group)
        losses = sorted({loss for by_loss in cells.values() for loss in by_loss}, key=_loss_order)
        names = [*cells, "median"]
        width = 0.8 / max(1, len(losses))
        for j, loss in enumerate(losses):
            xs, ys, low, high = [], [], [], []
            for i, dataset in enumerate(cells):
                r = cells[dataset].get(loss)
                if r is None or r["pgr"] is None:
                    if r is not None:
                        ax.text(i + (j - (len(losses) - 1) / 2) * width, 0, "undef.", rotation=90, fontsize=7,
                                ha="center", va="bottom")
                    continue
                xs.append(i + (j - (len(losses) - 1) / 2) * width)
                ys.append(r["pgr"])
                low.append(r["pgr"] - r["pgr_ci_low"] if r["pgr_ci_low"] is not None else 0.0)
                high.append(r["pgr_ci_high"] - r["pgr"] if r["pgr_ci_high"] is not None else 0.0)
            ax.errorbar(xs, ys, yerr=[low, high], fmt="o", capsize=3, label=loss)
            median = median_pgr(cells, loss)[0]
            if median is not None:
                ax.plot([len(cells) + (j - (len(losses) - 1) / 2) * width], [median], marker="D", color="black")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel("PGR (largest-gap pair per dataset)")
        oracle = " [ORACLE ablation]" if "select=oracle" in (variant or "") else ""
        ax.set_title(f"method comparison ({mode}, {head})" + (f"\n{variant}{oracle}" if variant else ""), fontsize=10)
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    return _save(fig, "bars: " + rows[0].get("ci_covers", "95% CI") + "; diamonds: median over datasets",
                 out_dir / "w2s_method_comparison.png")


def plot_overfitting(rows: list[dict[str, Any]], store: ResultsStore, out_dir: Path) -> Path | None:
    """Test accuracy over training of each loss's student (first seed) at each dataset's largest-gap
    pair, the kept checkpoint marked: do students learn their supervisor's errors as training goes
    on? Test accuracy here is for analysis only; the marked step was selected on validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # one selection per panel: the default (weak-val) where it ran, never the oracle where another did
    for preferred in ("weak-val", "last"):
        if any(r.get("select") == preferred for r in rows):
            rows = [r for r in rows if r.get("select") == preferred]
            break
    panels = []
    for dataset, by_loss in comparison_cells(rows).items():
        curves = {}
        for loss, r in by_loss.items():
            record = store.get(r["run_keys"][0]["w2s"]) if r.get("run_keys") else None
            if record is not None and record["results"].get("curve"):
                curves[loss] = (record["results"]["curve"], record["results"].get("selected_step"))
        if curves:
            panels.append((dataset, next(iter(by_loss.values())), curves))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (dataset, r, curves) in zip(axes[0], panels, strict=True):
        for loss in sorted(curves, key=_loss_order):
            curve, selected = curves[loss]
            line = ax.plot([p["step"] for p in curve], [p["test_acc"] for p in curve], marker=".", label=loss)[0]
            kept = [p for p in curve if p["step"] == selected]
            if kept:
                ax.plot([kept[0]["step"]], [kept[0]["test_acc"]], marker="*", markersize=14, color=line.get_color())
        ax.axhline(r["weak_acc"], color="grey", linestyle=":", label=f"weak ({r['weak']})")
        ax.axhline(r["ceiling_acc"], color="black", linestyle="--", label="ceiling")
        ax.set_title(f"{dataset}: {r['weak']} -> {r['strong']} ({r['mode']}, select={r.get('select', 'last')})",
                     fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("test accuracy (analysis only)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, "first seed; star: the weights kept (selected on validation, never on test)",
                 out_dir / "w2s_overfitting.png")


def _ci_bars(rows: list[dict[str, Any]], role: str) -> list[list[float]]:
    """Asymmetric error bars from each row's bootstrap CI of ``role``'s accuracy (0 where there is none)."""
    acc = [r[f"{role}_acc"] for r in rows]
    low = [r.get(f"{role}_acc_ci_low", a) for r, a in zip(rows, acc, strict=True)]
    high = [r.get(f"{role}_acc_ci_high", a) for r, a in zip(rows, acc, strict=True)]
    return [[max(0.0, a - lo) for a, lo in zip(acc, low, strict=True)],
            [max(0.0, hi - a) for a, hi in zip(acc, high, strict=True)]]


def plot(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        panels[(r["dataset"], r["mode"], r["head"], r.get("variant", ""))].append(r)
    paths = []
    for figure_number, ((dataset, mode, head, variant), panel_rows) in enumerate(sorted(panels.items())):
        losses = sorted({arm(r) for r in panel_rows}, key=_loss_order)
        fig, axes = plt.subplots(1, len(losses), figsize=(5.2 * len(losses), 4.2), squeeze=False, sharey=True)
        for ax, loss in zip(axes[0], losses, strict=True):
            sub = [r for r in panel_rows if arm(r) == loss]
            strongs = sorted({r["strong"] for r in sub}, key=_model_size)
            weaks = sorted({r["weak"] for r in sub}, key=_model_size)
            x_of = {s: i for i, s in enumerate(sorted(set(strongs) | set(weaks), key=_model_size))}
            ceiling = {r["strong"]: r for r in sub}
            xs = sorted(ceiling, key=_model_size)
            ax.errorbar([x_of[s] for s in xs], [ceiling[s]["ceiling_acc"] for s in xs],
                        yerr=_ci_bars([ceiling[s] for s in xs], "ceiling"),
                        color="black", linestyle="--", marker="s", label="strong ceiling (ground truth)")
            cmap = plt.get_cmap("viridis")
            for i, weak in enumerate(weaks):
                color = cmap(i / max(1, len(weaks) - 1) * 0.85)
                line = sorted((r for r in sub if r["weak"] == weak), key=lambda r: _model_size(r["strong"]))
                ax.errorbar([x_of[r["strong"]] for r in line], [r["w2s_acc"] for r in line],
                            yerr=_ci_bars(line, "w2s"), color=color, marker="o",
                            label=f"supervised by {weak}")
                ax.axhline(line[0]["weak_acc"], color=color, linestyle=":", linewidth=1)
                ax.plot([x_of[weak]], [line[0]["weak_acc"]], marker="*", color=color, markersize=11)
            ax.set_xticks(list(x_of.values()), list(x_of), rotation=20)
            ax.set_xlabel("strong student (ordered by parameters)")
            oracle = " [ORACLE ablation]" if any(r.get("oracle") for r in sub) else ""
            ax.set_title(f"{dataset}: loss={loss} ({mode}, {head}){oracle}" + (f"\n{variant}" if variant else ""),
                         fontsize=10)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("test accuracy")
        axes[0][0].legend(fontsize=8, loc="upper left")
        fig.text(0.5, 0.005, "bars: " + panel_rows[0].get("ci_covers", "95% CI"), ha="center", fontsize=8)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        name = f"w2s_{dataset}_{mode}_{head}" + (f"_v{figure_number}" if variant else "")
        path = out_dir / (name.replace(":", "_").replace("/", "_") + ".png")
        fig.savefig(path, dpi=130)
        plt.close(fig)
        paths.append(path)
    return paths


def _triple(r: dict[str, Any], metric: str) -> str:
    values = [r.get(f"{role}_{metric}") for role in ("weak", "w2s", "ceiling")]
    return "-" if any(v is None for v in values) else " / ".join(f"{v:.3f}" for v in values)


def _rungs(r: dict[str, Any]) -> str:
    accs = r.get("chain_test_acc") or []
    return ", ".join(f"{m} ({a:.3f})" for m, a in zip(r["chain"].split(","), accs, strict=True)) if accs else "-"


def _saliency(r: dict[str, Any]) -> str:
    if r.get("saliency_finetuned_acc") is None:
        return "-"
    return f"{r['saliency_pretrained_acc']:.3f} → {r['saliency_finetuned_acc']:.3f}"


PGR_COLUMNS = ("dataset", "mode / head", "variant", "weak", "strong", "weak acc", "w2s acc", "ceiling acc", "gap",
               "PGR [95% CI]", "[test only]", "PGR over seeds", "seeds")
DIAGNOSTIC_COLUMNS = ("dataset", "variant", "weak", "strong", "agreement (sup. right / wrong)",
                      "ECE weak / w2s / ceiling", "Brier weak / w2s / ceiling", "bootstrap rungs (test acc)",
                      "GT probe: pretrained → finetuned")


def _table(title: str, columns: tuple[str, ...], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>" for cells in rows)
    return f"<h3>{html.escape(title)}</h3><table><tr>{head}</tr>{body}</table>"


def pgr_table_html(rows: list[dict[str, Any]]) -> str:
    """Per method, the PGR table and, under it, the diagnostics of the same rows: two tables of few
    enough columns that each fits the page's width without breaking a number or a word."""
    out = []
    for loss in sorted({arm(r) for r in rows}, key=_loss_order):
        mine = sorted((r for r in rows if arm(r) == loss),
                      key=lambda r: (r["dataset"], r.get("variant", ""), _model_size(r["weak"]), _model_size(r["strong"])))
        pgr, diagnostics = [], []
        for r in mine:
            seeds = ("undefined" if r["pgr_seed_mean"] is None
                     else f"{r['pgr_seed_mean']:.2f} ± {r['pgr_seed_std']:.2f} ({r['pgr_defined_seeds']}/{r['seeds']})")
            # None where the supervisor is never wrong (or, generating answers, never right)
            agree = " / ".join("-" if r[k] is None else f"{r[k]:.2f}"
                               for k in ("agreement_supervisor_right", "agreement_supervisor_wrong"))
            variant = " ".join([r.get("variant") or "-", *r.get("flags", [])])
            pgr.append([r["dataset"], f"{r['mode']}/{r['head']}", variant, r["weak"], r["strong"],
                        *(accuracy_text(r, role) for role in ("weak", "w2s", "ceiling")), f"{r['gap']:+.3f}",
                        format_pgr(r["pgr"], r["pgr_ci_low"], r["pgr_ci_high"], r["gap_ci_low"]),
                        format_pgr(r["pgr"], r.get("pgr_ci_examples_low"), r.get("pgr_ci_examples_high"),
                                   r.get("gap_ci_examples_low")), seeds, r["seeds"]])
            diagnostics.append([r["dataset"], variant, r["weak"], r["strong"], agree, _triple(r, "ece"),
                                _triple(r, "brier"), _rungs(r), _saliency(r)])
        out.append(_table(f"PGR, method = {loss}", PGR_COLUMNS, pgr))
        out.append(_table(f"Diagnostics, method = {loss}", DIAGNOSTIC_COLUMNS, diagnostics))
    return "\n".join(out)


def skipped_html(skipped: list[str]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in skipped)
    return f"<p>Skipped, could not be read ({len(skipped)}); rerun their commands to redo them:</p><ul>{items}</ul>"


def section(store: ResultsStore, out_dir: Path) -> str:
    skipped: list[str] = []
    everything = collect(store, skipped)
    beyond = beyond_section(everything, out_dir)
    rows = [r for r in everything if not is_beyond(r)]
    if not rows:
        return (beyond + skipped_html(skipped)) if beyond else (
            skipped_html(skipped) and "<h2>Weak-to-strong generalization</h2>" + skipped_html(skipped))
    figures = [p for p in (plot_comparison(rows, out_dir), plot_overfitting(rows, store, out_dir)) if p]
    figures += plot(rows, out_dir)
    imgs = "\n".join(f'<img src="{p.name}" alt="{html.escape(p.stem)}">' for p in figures)
    return ("<h2>Weak-to-strong generalization</h2>"
            "<p>PGR = (w2s − weak) / (ceiling − weak), and mean ± std over seeds. <em>PGR [95% CI]</em> and the "
            "figures' bars: a bootstrap that resamples seeds, then test groups (drawn whole) within each resampled "
            "seed (paired across weak / w2s / ceiling), so the interval covers split and training randomness as well "
            "as test sampling; with one seed it covers test sampling only. <em>[test only]</em>: seeds kept, "
            "test groups resampled. ECE: expected calibration error of the predicted class (10 bins of "
            "confidence); Brier: mean squared error of P(class 1); both means over seeds. <em>bootstrap</em> rows: "
            "the student learns through a chain of rungs, each cross-fitted on the previous rung's labels; a rung's test "
            "accuracy is shown beside it. <em>GT probe</em> (finetune mode; an analysis, it changes no prediction): "
            "logistic regression fitted on the ground truth of the student's training split, read on test, on the "
            "pretrained features and on the features after finetuning on weak labels. <em>undefined</em>: the ceiling is not above "
            "the weak supervisor, so there is no gap to recover (such cells are not averaged); <em>*</em>: the "
            "95% CI of the gap reaches zero, so the PGR is a ratio of noise.</p>"
            f"{imgs}\n{pgr_table_html(rows)}{beyond}{skipped_html(skipped)}")
