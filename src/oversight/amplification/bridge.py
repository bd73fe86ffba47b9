"""The bridge: six ways to train the same X on the same questions, from ground truth to a weak supervisor amplified.

    oversight amplify bridge --task union_find --size 8 --weak budget:300 --seeds 3
    oversight report --markdown docs/results --store runs/bridge.db     # beyond/amplify-bridge.md

    from oversight.amplification.bridge import bridge_configs, collect, bridge_rows
    configs = bridge_configs(AmplifyConfig(task="union_find", size=8, weak="budget:300"), seeds=3)
    for group in collect(store.records(kind="amplify")):
        bridge_rows(group)      # per arm: accuracy and PGR with intervals, expert and W calls, labels

The arms (``ARMS``), each X trained from the same initialisation, curriculum and step budget:
``supervised`` (ground truth: the ceiling), ``weak-to-strong`` (W's answers, with ``--w2s-loss
xent`` and, a row of its own, ``logconf``), ``amplify`` (H with X's EMA), ``amplify-learned`` (H'),
``amplified-weak`` (Amplify^H(W), W frozen) and ``amplified-weak+self`` (W until X's teacher
composes better, ``train.maybe_switch_to_self``). W is
the weak supervisor of ``weak.py``; no arm but the ceiling and W's own training reads a true answer
of a non-primitive question. PGR of an arm = (arm - W) / (ceiling - W) on the test set at the
target size; intervals are 95% bootstrap intervals over seeds and then test instances within each
(a test instance's questions are drawn together), paired across W, arm and ceiling.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from typing import Any

import numpy as np

from oversight.amplification.config import WEAK_MODES, AmplifyConfig
from oversight.amplification.runs import stored_config
from oversight.amplification.weak import is_weak_run
from oversight.config import canonical_json
from oversight.store import StoreMemo
from oversight.w2s.metrics import hierarchical_bootstrap_pgr, interval_covers, pgr

ARMS = ("supervised", "weak-to-strong", "amplify", "amplify-learned", "amplified-weak", "amplified-weak+self")
# what a group of bridge runs shares: their config less the arm, W and seed (and what one mode sets its own way)
NOT_SHARED = ("mode", "weak", "seed", "teacher_ema", "target_workers", "w2s_loss")
LOGCONF_ARM = "weak-to-strong (logconf)"  # weak-to-strong with --w2s-loss logconf: a row of its own
ROW_ORDER = ("supervised", "weak-to-strong", LOGCONF_ARM, *ARMS[2:])
N_BOOT = 1000


def bridge_configs(base: AmplifyConfig, seeds: int, arms: tuple[str, ...] = ARMS,
                   w2s_losses: tuple[str, ...] = ("xent", "logconf")) -> list[AmplifyConfig]:
    """Every run of a bridge: arms x seeds 0..seeds-1 (weak-to-strong once per loss of ``w2s_losses``),
    ``base.weak`` on the weak arms only (so the base arms are the very runs ``amplify run`` and
    ``amplify sweep`` store and reuse)."""
    out = []
    for arm in arms:
        for loss in w2s_losses if arm == "weak-to-strong" else ("xent",):
            for seed in range(seeds):
                cfg = dataclasses.replace(base, mode=arm, seed=seed, weak=base.weak if arm in WEAK_MODES else "",
                                          w2s_loss=loss)
                cfg.validate()
                out.append(cfg)
    return out


def arm_of(config: dict[str, Any]) -> str:
    """A run's row in the bridge: its mode, and weak-to-strong's loss where it is not xent."""
    return LOGCONF_ARM if config["mode"] == "weak-to-strong" and config.get("w2s_loss") == "logconf" else config["mode"]


def is_bridge_record(record: dict[str, Any]) -> bool:
    """A weak-mode X run or a weak supervisor's own run: the bridge reports them, the base tables do not."""
    return record["config"].get("mode") in WEAK_MODES or is_weak_run(record["config"])


def _shared(record: dict[str, Any]) -> str:
    config = dataclasses.asdict(stored_config(record["config"]))
    return canonical_json({k: v for k, v in config.items() if k not in NOT_SHARED and not k.startswith("hprime_")})


def collect(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups of bridge runs: per shared config and weak supervisor, the runs of every arm by seed
    (the base arms join each weak supervisor's group they share a config with). Only groups with a
    weak-mode run are bridges."""
    base: dict[str, list[dict[str, Any]]] = defaultdict(list)
    weak: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if is_weak_run(r["config"]):
            continue
        if r["config"]["mode"] in WEAK_MODES:
            weak[(_shared(r), r["config"]["weak"])].append(r)
        else:
            base[_shared(r)].append(r)
    groups = []
    for (shared, spec), runs in sorted(weak.items(), key=lambda item: (item[1][0]["config"]["task"], item[0][1])):
        arms: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        for r in base[shared] + runs:
            arms[arm_of(r["config"])][int(r["config"]["seed"])] = r["results"]
        first = runs[0]["config"]
        groups.append({"task": first["task"], "size": first["size"], "steps": first["steps"], "weak": spec,
                       "per_instance": int(first.get("test_questions", 8)), "arms": dict(arms)})
    return groups


def correct_bits(results: dict[str, Any], prefix: str = "") -> np.ndarray | None:
    """The question-by-question test correctness a run stored (``test_correct_hex``), or None."""
    hexed = results.get(f"{prefix}test_correct_hex")
    if not hexed:
        return None
    n = int(results["test_questions"])
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexed), dtype=np.uint8))[:n].astype(bool)


def weak_correct(group: dict[str, Any]) -> dict[int, np.ndarray]:
    """W's test correctness per seed, from any weak-mode run of that seed (they share W)."""
    out: dict[int, np.ndarray] = {}
    for mode in WEAK_MODES:
        for seed, res in group["arms"].get(mode, {}).items():
            bits = correct_bits(res, "weak_")
            if bits is not None:
                out.setdefault(seed, bits)
    return out


def bridge_rows(group: dict[str, Any], n_boot: int = N_BOOT) -> list[dict[str, Any]]:
    """One row per arm (W first): accuracy mean with its interval, PGR against W and the ceiling with
    its interval (undefined where the ceiling is not above W), expert calls, W's answers,
    ground-truth labels and steps, each a mean over the arm's seeds."""
    weak = weak_correct(group)
    ceiling = {s: correct_bits(r) for s, r in group["arms"].get("supervised", {}).items()}
    rows = [_weak_row(group, weak, n_boot)]
    for arm in ROW_ORDER:
        runs = group["arms"].get(arm)
        if not runs:
            continue
        own = {s: correct_bits(r) for s, r in runs.items()}
        seeds = sorted(s for s in own if own[s] is not None and s in weak and ceiling.get(s) is not None)
        row = {"arm": arm, "seeds": sorted(runs), "acc": statistics.fmean(r["test_acc"] for r in runs.values()),
               "expert_calls": statistics.fmean(r["expert_calls"] + r.get("switch_expert_calls", 0) for r in runs.values()),
               "weak_answers": statistics.fmean(r.get("weak_answers", 0) for r in runs.values()),
               "gt_labels": statistics.fmean(r["gt_labels_used"] for r in runs.values()),
               "steps": statistics.fmean(r["steps"] for r in runs.values()),
               "self_from_step": [r.get("self_from_step") for r in runs.values()] if arm == "amplified-weak+self" else None,
               # +self: seeds whose curriculum reached its final stage, where X's teacher is compared with W
               "compared": sum(bool(r.get("switch_expert_calls")) for r in runs.values()),
               "pgr": float("nan"), "pgr_low": float("nan"), "pgr_high": float("nan"),
               "acc_low": float("nan"), "acc_high": float("nan"), "pgr_seeds": seeds}
        if seeds:
            ones = [np.ones(len(weak[s])) for s in seeds]
            groups = [np.arange(len(weak[s])) // group["per_instance"] for s in seeds]
            ci = hierarchical_bootstrap_pgr(ones, [weak[s].astype(float) for s in seeds],
                                            [own[s].astype(float) for s in seeds],
                                            [ceiling[s].astype(float) for s in seeds], n_boot=n_boot, groups=groups)
            w, a, c = (statistics.fmean(float(x[s].mean()) for s in seeds) for x in (weak, own, ceiling))
            row |= {"pgr": pgr(w, a, c), "pgr_low": ci["pgr_ci_low"], "pgr_high": ci["pgr_ci_high"],
                    "acc_low": ci["w2s_acc_ci_low"], "acc_high": ci["w2s_acc_ci_high"],
                    "ci_covers": interval_covers(len(seeds)).replace("test groups", "test instances")}
        rows.append(row)
    return rows


def _weak_row(group: dict[str, Any], weak: dict[int, np.ndarray], n_boot: int) -> dict[str, Any]:
    """W's row: its test accuracy at the target size (from the weak-mode runs) and what training it cost."""
    seeds = sorted(weak)
    own = [res["weak_run"] for mode in WEAK_MODES for res in group["arms"].get(mode, {}).values() if res.get("weak_run")]
    by_seed = {w["seed"]: w for w in own}
    row = {"arm": f"W ({group['weak']})", "seeds": seeds, "acc": float("nan"), "acc_low": float("nan"),
           "acc_high": float("nan"), "expert_calls": 0.0, "weak_answers": 0.0, "pgr": 0.0, "pgr_low": float("nan"),
           "pgr_high": float("nan"), "self_from_step": None, "compared": 0, "pgr_seeds": seeds,
           "gt_labels": statistics.fmean(w["gt_labels_used"] for w in by_seed.values()) if by_seed else float("nan"),
           "steps": statistics.fmean(w["steps"] for w in by_seed.values()) if by_seed else float("nan")}
    if seeds:
        probs = [weak[s].astype(float) for s in seeds]
        groups = [np.arange(len(weak[s])) // group["per_instance"] for s in seeds]
        ci = hierarchical_bootstrap_pgr([np.ones(len(p)) for p in probs], probs, probs, probs, n_boot=n_boot,
                                        groups=groups)
        row |= {"acc": statistics.fmean(float(p.mean()) for p in probs), "acc_low": ci["weak_acc_ci_low"],
                "acc_high": ci["weak_acc_ci_high"]}
    return row


# ---- tables, figure, summary ------------------------------------------------------------------
MARKDOWN_FILE = "amplify-bridge.md"
TITLE = "The bridge: weak supervision, amplified"
COLUMNS = ("arm", "test acc [95% CI]", "PGR [95% CI]", "expert calls", "W answers", "GT labels", "steps")
CAPTION = ("Six ways to train the same X (same architecture, initialisation, curriculum and step budget) on the "
           "questions of one task at one size, and the weak supervisor W they are compared against. Test accuracy "
           "at the target size on the fixed test set, read once after training; PGR = (arm - W) / (supervised - W). "
           "Intervals: 95% bootstrap, seeds resampled, then test instances within each seed (paired across W, arm and "
           "ceiling); 'undefined' where the ceiling is not above W. Expert calls: questions H decomposed (in "
           "amplified-weak+self, also those spent deciding the switch); W answers: targets and subquestions W "
           "answered; GT labels: ground-truth answers of non-primitive questions (only the ceiling and W's own "
           "training read any). Each a mean over seeds. amplified-weak+self compares X's teacher with W only once "
           "its curriculum reaches the final stage ('compared in' counts those seeds); where it never takes over it "
           "is amplified-weak.")


FIGURE_CAPTION = ("Bars: test accuracy at the target size, mean over seeds; whiskers: 95% CI over seeds, then test "
                  "instances; dashed: W. Gray reads ground truth, orange learns from W, blue from H and X alone.")


_TABLES = StoreMemo()


def store_tables(store: Any) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each bridge group of a store with its rows, computed once per store version (the doc, the
    README line and the report all read them)."""
    return _TABLES.get(store, "bridge", lambda: [(g, bridge_rows(g)) for g in collect(store.records(kind="amplify"))])


def _ci(value: float, low: float, high: float, digits: int = 3) -> str:
    if value != value:  # nan
        return "undefined"
    if low != low or high != high:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def row_cells(row: dict[str, Any]) -> list[str]:
    arm = row["arm"]
    if row.get("self_from_step") is not None:
        switched = [s for s in row["self_from_step"] if s]
        arm += (f" (X took over in {len(switched)}/{len(row['self_from_step'])} seeds"
                + (f" at step {', '.join(map(str, switched))}" if switched else "")
                + f"; compared in {row['compared']})")
    pgr_text = "-" if arm.startswith("W (") else _ci(row["pgr"], row["pgr_low"], row["pgr_high"], 2)
    num = (lambda v: "-" if v != v else f"{v:,.0f}")  # noqa: E731
    return [arm, _ci(row["acc"], row["acc_low"], row["acc_high"]), pgr_text, num(row["expert_calls"]),
            num(row["weak_answers"]), num(row["gt_labels"]), num(row["steps"])]


def group_title(group: dict[str, Any]) -> str:
    return f"{group['task']}, n={group['size']}, W = {group['weak']}, {group['steps']:,} steps"


def provenance(group: dict[str, Any]) -> str:
    runs = [r for arm in group["arms"].values() for r in arm.values()]
    commits = sorted({(r.get("provenance") or {}).get("commit") or "?" for r in runs})
    hosts = sorted({(r.get("provenance") or {}).get("host") or "?" for r in runs})
    seeds = sorted({s for arm in group["arms"].values() for s in arm})
    dirty = " [DIRTY TREE]" if any(str(c).endswith("+dirty") for c in commits) else ""
    return f"{len(runs)} runs, seeds {', '.join(map(str, seeds))}; commit {', '.join(commits)}{dirty}; host {', '.join(hosts)}"


def markdown(store: Any) -> str:
    """The bridge's results doc (:data:`MARKDOWN_FILE`): per task, size and W a table ("" without bridge runs)."""
    tables = store_tables(store)
    if not tables:
        return ""
    out = [f"## {TITLE}", "", CAPTION]
    for g, rows in tables:
        out += ["", f"### {group_title(g)}", "", provenance(g), "",
                "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(row_cells(row)) + " |" for row in rows]
    return "\n".join(out) + "\n"


def format_group(group: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A bridge group and its rows as plain text, for the terminal."""
    lines = [list(COLUMNS)] + [row_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join([group_title(group), text[0], "  ".join("-" * w for w in widths), *text[1:]])


def summary(store: Any) -> list[str]:
    """The README's line: per group with 3+ seeds, the PGR of weak-to-strong beside amplified-weak."""
    parts = []
    for g, table in store_tables(store):
        rows = {r["arm"]: r for r in table}
        pair = [rows.get(a) for a in ("weak-to-strong", "amplified-weak")]
        if any(r is None or len(r["pgr_seeds"]) < 3 for r in pair):
            continue
        parts.append(f"{g['task']} n={g['size']} W={g['weak']}: PGR "
                     + " vs ".join(f"{r['arm']} {_ci(r['pgr'], r['pgr_low'], r['pgr_high'], 2)}" for r in pair))
    if not parts:
        return []
    return [f"- **Bridge** (3 seeds, 95% CIs over seeds and test instances): {'; '.join(parts)}."]


def plot_group(group: dict[str, Any], rows: list[dict[str, Any]], path: Any) -> Any:
    """The bridge figure of one group: each arm's test accuracy with its interval, W and the ceiling as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [r for r in rows if not r["arm"].startswith("W (")]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    xs = np.arange(len(arms))
    acc = np.array([r["acc"] for r in arms])
    err = np.array([[r["acc"] - r["acc_low"], r["acc_high"] - r["acc"]] for r in arms]).T
    # the ceiling reads ground truth, the weak arms learn from W, the amplify arms from H and X alone
    colors = ["tab:gray" if r["arm"] == "supervised" else "tab:orange" if r["arm"] in WEAK_MODES else "tab:blue"
              for r in arms]
    ax.bar(xs, acc, yerr=np.nan_to_num(err), capsize=3, color=colors, alpha=0.85)
    ax.axhline(rows[0]["acc"], color="tab:red", ls="--", label=rows[0]["arm"])
    ax.set_xticks(xs, [r["arm"] for r in arms], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(group_title(group), fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def section(store: Any, out_dir: Any) -> str:
    """The report's HTML section: per group its figure and table ("" without bridge runs)."""
    import html
    import re
    from pathlib import Path

    tables = store_tables(store)
    if not tables:
        return ""
    parts = [f"<h2>{html.escape(TITLE)}</h2><p>{html.escape(CAPTION)}</p>"]
    for n, (g, rows) in enumerate(tables):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"bridge_{n}_{g['task']}_{g['size']}_{g['weak']}")[:80] + ".png"
        path = plot_group(g, rows, Path(out_dir) / name)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row_cells(r)) + "</tr>"
                       for r in rows)
        parts.append(f"<h3>{html.escape(group_title(g))}</h3><p>{html.escape(provenance(g))}</p>"
                     f'<img src="{html.escape(path.name)}" alt="{html.escape(group_title(g))}">'
                     f"<p><em>{html.escape(FIGURE_CAPTION)}</em></p>"
                     f"<table><tr>{head}</tr>{body}</table>")
    return "\n".join(parts)
