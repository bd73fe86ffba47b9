"""Amplification runs summarised over seeds: the rows of the results tables and their markdown.

    from oversight.amplification.results import aggregate_runs, markdown, measurement_table
    rows = aggregate_runs(store.records(kind="amplify"))   # one row per config less its seed
    print(measurement_table(store.records(kind="amplify")))
    markdown(store)      # the section of docs/results/amplification.md (oversight report --markdown DIR)

A row is every run of one identity but the seed: the mean ± std of final test accuracy over seeds
(with one seed: its standard error over test instances), steps to 95% validation accuracy per seed,
expert calls and ground-truth labels, and two flags: ``[ORACLE CURRICULUM]`` where the questions
were chosen with their true answers, and ``not reproducible`` where a wall-clock budget ended a run;
a run whose training loss went non-finite is marked ``[DIVERGED at step N]`` beside its accuracy.
Rows group by test set too (``evaluation.TEST_SET``); the table shows only runs measured on today's
test set and says how many measured on a retired one it leaves out.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from oversight.amplification.config import WEAK_MODES
from oversight.amplification.evaluation import TEST_SET, stored_test_set
from oversight.amplification.runs import identity_of, stored_config
from oversight.amplification.weak import is_weak_run
from oversight.config import canonical_json, label_fields, varying_fields

MODE_ORDER = ("supervised", "amplify", "amplify-learned")
MARKDOWN_FILE = "amplification.md"


def _group_key(record: dict[str, Any]) -> str:
    identity = identity_of(record)
    identity.pop("seed", None)
    return canonical_json(identity)


def aggregate_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per identity less the seed, sorted by task, size, mode and curriculum."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[_group_key(r)].append(r)
    variant_of = _variants(groups)
    rows = []
    for key, runs in groups.items():
        runs.sort(key=lambda r: r["config"]["seed"])
        res = [r["results"] for r in runs]
        accs = [x["test_acc"] for x in res]
        c = runs[0]["config"]
        reach = [((x.get("reached") or {}).get("0.95") or {}).get("step") for x in res]
        rows.append({
            "task": c["task"], "mode": c["mode"], "size": c["size"], "steps": c["steps"],
            "test_set": stored_test_set(res[0]),
            "curriculum": res[0].get("curriculum", c.get("curriculum", "oracle")),
            "variant": variant_of[key],
            "oracle_curriculum": any(x.get("oracle_curriculum", True) for x in res),
            "reproducible": all(x.get("reproducible", False) for x in res),
            "seeds": [r["config"]["seed"] for r in runs],
            "test_acc_mean": statistics.fmean(accs),
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else None,
            "test_acc_se": statistics.fmean(x.get("test_acc_se") or 0.0 for x in res),
            "steps_to_95": reach,
            "steps_run": [x["steps"] for x in res],
            "expert_calls": statistics.fmean(x["expert_calls"] for x in res),
            "gt_labels": statistics.fmean(x["gt_labels_used"] for x in res),
            "seconds": statistics.fmean(x["seconds"] for x in res),
            "final_stage_done": all((x.get("final_stage") or {}).get("final") for x in res),
            "diverged_at": [x.get("diverged_at_step") for x in res if x.get("diverged")],
            "commits": sorted({(x.get("provenance") or {}).get("commit") or "?" for x in res}),
            "hosts": sorted({(x.get("provenance") or {}).get("host") or "?" for x in res}),
        })
    order = {m: i for i, m in enumerate(MODE_ORDER)}
    return sorted(rows, key=lambda x: (x["task"], x["size"], order.get(x["mode"], 9), x["oracle_curriculum"]))


def _variants(groups: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Per group, the identity fields by which it differs from the other groups of its task, size and
    mode (beyond the curriculum, which has its own column): "" when nothing does."""
    by_cell: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for key, runs in groups.items():
        c = runs[0]["config"]
        by_cell[(c["task"], c["size"], c["mode"])].append(key)
    out = {}
    for keys in by_cell.values():
        # key-neutral fields at the value each run had; fields a run does not use stay out
        identities = {key: label_fields(stored_config(groups[key][0]["config"])) for key in keys}
        fields = varying_fields(list(identities.values()), ignore=("seed", "curriculum"), missing_is_value=False)
        for key, identity in identities.items():
            out[key] = ", ".join(f"{k}={identity.get(k, '-')}" for k in fields)
    return out


def diverged_flag(steps: list[int | None]) -> str:
    """" [DIVERGED at step 2]" for runs whose training loss went non-finite ("" for none)."""
    if not steps:
        return ""
    return " [DIVERGED at step " + ", ".join("?" if s is None else str(s) for s in steps) + "]"


def format_accuracy(row: dict[str, Any]) -> str:
    """"0.953 ± 0.012 (3 seeds)", or with one seed "0.953 (SE 0.006)"; flagged where a seed diverged."""
    flag = diverged_flag(row.get("diverged_at") or [])
    if row["test_acc_std"] is not None:
        return f"{row['test_acc_mean']:.3f} ± {row['test_acc_std']:.3f} ({len(row['seeds'])} seeds){flag}"
    return f"{row['test_acc_mean']:.3f} (SE {row['test_acc_se']:.3f}){flag}"


def base_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of the base modes: neither a weak-mode run nor a weak supervisor's (``bridge.py`` reports those)."""
    return [r for r in records if r["config"].get("mode") not in WEAK_MODES and not is_weak_run(r["config"])]


def on_current_test_set(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows measured on today's test set (``evaluation.TEST_SET``)."""
    return [r for r in records if stored_test_set(r["results"]) == TEST_SET]


def measurement_table(records: list[dict[str, Any]]) -> str:
    """The markdown table of ``aggregate_runs`` over the rows of today's test set, with its caption."""
    current = on_current_test_set(records)
    left_out = len(records) - len(current)
    records = current
    head = ["task", "n", "mode", "curriculum", "test acc", "steps to 95% (val), per seed", "steps run",
            "expert calls", "GT labels", "curriculum done"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in aggregate_runs(records):
        curriculum = row["curriculum"] + (" [ORACLE CURRICULUM]" if row["oracle_curriculum"] else "")
        curriculum += f" ({row['variant']})" if row["variant"] else ""
        if not row["reproducible"]:
            curriculum += " (time-limited: not reproducible)"
        if any(str(c).endswith("+dirty") for c in row["commits"]):
            curriculum += " [DIRTY TREE]"  # made from uncommitted code: no commit reproduces it
        reach = ", ".join("-" if s is None else str(s) for s in row["steps_to_95"])
        cells = [row["task"], row["size"], row["mode"], curriculum, format_accuracy(row), reach,
                 ", ".join(str(s) for s in sorted(set(row["steps_run"]))), f"{row['expert_calls']:,.0f}",
                 f"{row['gt_labels']:,.0f}", "yes" if row["final_stage_done"] else "no"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    caption = ("Test accuracy at the largest size on a fixed test set read once after training: mean ± std "
               "over seeds (one seed: its standard error over test instances). Steps to 95%: the first "
               "validation point at or above 0.95 ('-': never). A run stops at its step budget or once the "
               "curriculum is done and validation accuracy reaches 0.99. [ORACLE CURRICULUM]: questions were "
               "chosen with their true depths or distances, an upper bound, not a method. [DIVERGED]: training "
               "stopped at a non-finite loss or gradient; the accuracy is that of a broken model. [DIRTY TREE]: "
               "made from uncommitted code.")
    caption += f" Test set {TEST_SET}"
    caption += (f"; {left_out} runs measured on a retired test set are left out." if left_out else ".")
    return "\n".join(lines) + "\n\n" + caption


def markdown(store: Any) -> str:
    """The amplification section of the results docs, with its provenance ("" without runs)."""
    from oversight.amplification.runs import migrate_store

    migrate_store(store)
    records = base_runs(store.records(kind="amplify"))
    if not records:
        return ""
    rows = aggregate_runs(on_current_test_set(records))
    commits = sorted({c for row in rows for c in row["commits"]})
    hosts = sorted({h for row in rows for h in row["hosts"]})
    seeds = sorted({s for row in rows for s in row["seeds"]})
    return ("## Iterated Amplification\n\n"
            f"{sum(len(row['seeds']) for row in rows)} runs on test set {TEST_SET}; seeds "
            f"{', '.join(map(str, seeds)) or '-'}; made at commit {', '.join(commits) or '-'} "
            f"on {', '.join(hosts) or '-'}.\n\n{measurement_table(records)}\n")


def summary(store: Any) -> list[str]:
    """The README's results line: per task, the test accuracy of amplify (label-free curriculum)
    at each size where it has 3 or more seeds, beside the oracle-curriculum ablation where run."""
    records = store.records(kind="amplify")
    if len(base_runs(records)) < len(records):  # a bridge's store: the bridge's own line speaks for it
        return []
    rows = [r for r in aggregate_runs(on_current_test_set(records)) if r["mode"] == "amplify" and len(r["seeds"]) >= 3
            and not r["variant"]]
    parts = []
    for size in sorted({r["size"] for r in rows}):
        here = [r for r in rows if r["size"] == size]
        for task in sorted({r["task"] for r in here}):
            label_free = [r for r in here if r["task"] == task and not r["oracle_curriculum"]]
            oracle = [r for r in here if r["task"] == task and r["oracle_curriculum"]]
            if not label_free:
                continue
            text = f"{task} n={size} {format_accuracy(label_free[0]).replace(' (3 seeds)', '')}"
            if oracle:
                text += f" (oracle curriculum {format_accuracy(oracle[0]).replace(' (3 seeds)', '')})"
            parts.append(text)
    if not parts:
        return []
    return [f"- **Amplification** (test set {TEST_SET}, 3 seeds): amplify's test accuracy with the label-free "
            f"curriculum: {'; '.join(parts)}."]
