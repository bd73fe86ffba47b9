"""One seed's metrics, and a cell's over its seeds: means, standard deviations, bootstrap CIs.

    rows = [aggregate(seed_configs(cfg, 3), store)]   # after run_experiment on each seed

Reads only the results store (rows and stored predictions): it trains nothing.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from oversight.config import label_fields
from oversight.store import ResultsStore, StoreMemo, artifacts_for
from oversight.w2s import metrics
from oversight.w2s.config import W2SConfig, experiment_key


def seed_metrics(cfg: W2SConfig, weak_test: np.ndarray, w2s_test: np.ndarray, ceiling_test: np.ndarray,
                 test_labels: np.ndarray) -> dict[str, Any]:
    """One seed's test metrics of its weak, weak-to-strong and ceiling predictions, and its PGR."""
    out: dict[str, Any] = {
        "dataset": cfg.dataset, "weak": cfg.weak, "strong": cfg.strong, "loss": cfg.loss, "seed": cfg.seed,
        "mode": cfg.mode, "head": cfg.head, "method": cfg.method, "chain": cfg.chain_models(),
        "select": cfg.select, "oracle": cfg.select == "oracle",  # ground truth selected the student: an ablation
        "supervisor": cfg.supervisor, "supervisor_accuracy": cfg.supervisor_accuracy, "student": cfg.student,
        "truth_budget": cfg.truth_budget,
    }
    for role, probs in (("weak", weak_test), ("w2s", w2s_test), ("ceiling", ceiling_test)):
        out[f"{role}_acc"] = metrics.accuracy(probs, test_labels)
        out[f"{role}_auroc"] = metrics.auroc(probs, test_labels)
    out.update(metrics.agreement(w2s_test, weak_test, test_labels))
    out["pgr"] = metrics.pgr(out["weak_acc"], out["w2s_acc"], out["ceiling_acc"])
    return out


def run_flags(store: ResultsStore, run_keys: dict[str, str], ceiling_acc: float, test_labels: np.ndarray,
              task: str) -> dict[str, Any]:
    """What makes a seed's numbers no result, for its row and every table: the roles whose training
    loss stopped being finite (``diverged``), and a ceiling no better than chance (a majority guess,
    within two standard errors; for generated answers, none right), so that its PGR means nothing."""
    diverged = []
    for role, key in run_keys.items():
        row = store.get(key)
        parts = [] if row is None else [row["results"], *(v for v in row["results"].values() if isinstance(v, dict))]
        if any(part.get("diverged_step") is not None for part in parts):
            diverged.append(role)
    if task == "generate":
        at_chance = ceiling_acc <= 0.0
    else:
        chance = max(float(np.mean(test_labels > 0.5)), float(np.mean(test_labels <= 0.5)))
        at_chance = ceiling_acc <= chance + 2 * (chance * (1 - chance) / max(1, len(test_labels))) ** 0.5
    return {"diverged": diverged, "ceiling_at_chance": bool(at_chance)}


# --------------------------------------------------------------------------- over seeds

def arm(row: dict[str, Any]) -> str:
    """What a row compares as a method in tables and figures: its loss (or ``two-head``), prefixed
    by its method unless that is ``direct``, then its truth budget and a synthetic supervisor
    (``xent``, ``bootstrap-logconf``, ``two-head +100 truth``, ``xent [flip:random@0.7]``, ...)."""
    method = row.get("method") or "direct"
    base = "two-head" if row.get("student") == "two-head" else row["loss"]
    name = base if method == "direct" else f"{method}-{base}"
    if row.get("truth_budget"):
        name += f" +{row['truth_budget']} truth"
    if (row.get("supervisor") or "model") != "model":
        name += f" [{row['supervisor']}@{row['supervisor_accuracy']}]"
    return name


def method_label(row: dict[str, Any]) -> str:
    """A cell's method as every table prints it: its arm, the chain it climbs, and its flags."""
    return " ".join([arm(row) + (f" via {row['chain']}" if row.get("chain") else ""), *row.get("flags", [])])


def accuracy_text(row: dict[str, Any], role: str, sep: str = " ± ") -> str:
    """A role's test accuracy as every table prints it: mean ± std over seeds, or one seed's SE."""
    return metrics.format_accuracy(row[f"{role}_acc"], row.get(f"{role}_acc_std"), row["seeds"],
                                   row.get(f"{role}_acc_se"), sep)


def summarizable(row: dict[str, Any]) -> bool:
    """Whether a cell's PGR may enter a median or a method comparison's summary: defined, its gap's
    CI clear of zero (else the PGR is a ratio of noise, ``*``), and no flag that voids it."""
    return (row.get("pgr") is not None and (row.get("gap_ci_low") or 0.0) > 0
            and not row.get("diverged") and not row.get("ceiling_at_chance"))


def aggregate(cfgs: list[W2SConfig], store: ResultsStore, n_boot: int = 1000) -> dict[str, Any]:
    """Mean ± std over seeds and bootstrap CIs (over seeds and test groups; and over test groups
    only, as ``*_examples_*``) of PGR and the accuracies, for one (dataset, weak, strong, loss,
    method), of the seeds of ``cfgs`` that this host's keys find in the store."""
    found = [(c, store.get(experiment_key(c))) for c in cfgs]
    return aggregate_records([(c, r) for c, r in found if r is not None], store, n_boot)


_AGGREGATES = StoreMemo()


def aggregate_records(items: list[tuple[W2SConfig, dict[str, Any]]], store: ResultsStore,
                      n_boot: int = 1000) -> dict[str, Any]:
    """:func:`aggregate` of stored seed rows (config, record), one per seed: what a report reads,
    by the keys the rows were stored under, whatever host reads them. Computed once per store version."""
    files = [f"labels{record['key']}" for _, record in items]
    files += [k for _, record in items for k in (record["results"].get("run_keys") or {}).values()]
    key = (tuple(record["key"] for _, record in items), n_boot, artifacts_for(store).stamp(files))
    return _AGGREGATES.get(store, key, lambda: _aggregate_records(items, store, n_boot))


def _aggregate_records(items: list[tuple[W2SConfig, dict[str, Any]]], store: ResultsStore,
                       n_boot: int) -> dict[str, Any]:
    if not items:
        raise RuntimeError("no finished runs to aggregate")
    seeds = [c.seed for c, _ in items]
    if len(set(seeds)) != len(seeds):  # one seed counted twice would shrink every interval
        raise ValueError(f"seeds {sorted(seeds)} of one cell repeat: a cell aggregates one row per seed")
    cfgs, rows = [c for c, _ in items], [r["results"] for _, r in items]
    out = _describe(cfgs[0], rows)
    out["seed_values"] = seeds
    for name in ("weak_acc", "w2s_acc", "ceiling_acc", "weak_auroc", "w2s_auroc", "ceiling_auroc",
                 "agreement", "agreement_supervisor_right", "agreement_supervisor_wrong",
                 "weak_val_acc", "ceiling_val_acc", "error_auroc", "weak_model_acc", "truth_labels_read"):
        mean, std, _ = metrics.mean_std([r.get(name) for r in rows])
        out[name], out[name + "_std"] = mean, std
    for name in ("saliency_pretrained_acc", "saliency_finetuned_acc"):  # finetune mode only
        if all(name in r for r in rows):
            out[name], out[name + "_std"], _ = metrics.mean_std([r[name] for r in rows])
    if all(r.get("chain") for r in rows):  # bootstrap: each rung's own test accuracy, mean over seeds
        out["chain_test_acc"] = [metrics.mean_std([r["chain"][i]["test_acc"] for r in rows])[0]
                                 for i in range(len(rows[0]["chain"]))]
    out["run_keys"] = [r["run_keys"] for r in rows]  # per seed: where the curves of its runs are
    labels, groups, probs = _test_arrays(store, [rec["key"] for _, rec in items], rows)
    # calibration, from the stored predictions (so rows stored before it have it too); generated
    # answers are stored as right/wrong, with no probability to calibrate: None
    for role in ("weak", "w2s", "ceiling"):
        for name, fn in (("ece", metrics.ece), ("brier", metrics.brier)):
            values = [] if out["task"] == "generate" else [fn(p, y) for p, y in zip(probs[role], labels, strict=True)]
            out[f"{role}_{name}"], out[f"{role}_{name}_std"], _ = metrics.mean_std(values)
    out["pgr"] = metrics.pgr(out["weak_acc"], out["w2s_acc"], out["ceiling_acc"])
    # the CI covers seeds and test groups (hierarchical); the test-only one is kept beside it
    out.update(metrics.hierarchical_bootstrap_pgr(labels, probs["weak"], probs["w2s"], probs["ceiling"],
                                                  n_boot=n_boot, seed=0, groups=groups))
    out["ci_grouped"] = groups is not None
    seed_pgrs = [r["pgr"] for r in rows]
    out["pgr_seed_mean"], out["pgr_seed_std"], out["pgr_defined_seeds"] = metrics.mean_std(seed_pgrs)
    out["gap"] = out["ceiling_acc"] - out["weak_acc"]
    out["val_gap"] = (None if out["ceiling_val_acc"] != out["ceiling_val_acc"]
                      else out["ceiling_val_acc"] - out["weak_val_acc"])
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def _describe(cfg: W2SConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a cell is (its identity's shown fields, its settings) and where its rows came from, and
    the flags that make it no result (a diverged run, a ceiling at chance, an uncommitted tree)."""
    first = rows[0]
    out: dict[str, Any] = {k: first[k] for k in ("dataset", "weak", "strong", "loss", "mode", "head")}
    out["method"], out["chain"] = cfg.method, ",".join(cfg.chain_models())
    for name in ("supervisor", "supervisor_accuracy", "student", "truth_budget"):
        out[name] = getattr(cfg, name)
    out["arm"] = arm(out)
    # what the accuracy counts: labels (classify), pairs ranked right (preference), exact moves (generate)
    out["task"] = first.get("task", "classify")
    out["select"] = first.get("select", "last")  # rows stored before selection kept their last weights
    out["oracle"] = out["select"] == "oracle"
    out["seeds"] = len(rows)
    out["data_version"] = first.get("data_version")
    out["numerics"] = sorted({r.get("numerics") or "not recorded" for r in rows})
    prov = [r.get("provenance") or {} for r in rows]
    for name, field in (("commits", "commit"), ("hosts", "host"), ("cpu_models", "cpu_model"), ("torch", "torch"),
                        ("threads", "torch_threads")):
        out[name] = sorted({str(p.get(field) or "not recorded") for p in prov})
    out["diverged"] = sorted({role for r in rows for role in r.get("diverged", [])})
    out["ceiling_at_chance"] = any(r.get("ceiling_at_chance") for r in rows)
    out["dirty"] = any(c.endswith("+dirty") for c in out["commits"])
    out["flags"] = row_flags(out)
    # every identity field (lr, epochs, loss options, ...), so rows of --json are told apart by their fields
    for name, value in label_fields(cfg).items():
        out.setdefault(name, value)
    out.pop("seed", None)
    return out


def row_flags(row: dict[str, Any]) -> list[str]:
    """The marks a table prints beside a cell: ``[ORACLE]`` (ground truth selected the student),
    ``[DIVERGED: roles]``, ``[CEILING AT CHANCE]`` (its PGR means nothing), ``[DIRTY TREE]`` (made
    from uncommitted code)."""
    flags = ["[ORACLE]"] if row.get("oracle") else []
    if row.get("diverged"):
        flags.append(f"[DIVERGED: {', '.join(row['diverged'])}]")
    if row.get("ceiling_at_chance"):
        flags.append("[CEILING AT CHANCE]")
    if row.get("dirty"):
        flags.append("[DIRTY TREE]")
    return flags


def _test_arrays(store: ResultsStore, seed_keys: list[str], rows: list[dict[str, Any]]
                 ) -> tuple[list[np.ndarray], list[np.ndarray] | None, dict[str, list[np.ndarray]]]:
    """Per seed: the test labels, the test groups (None unless every seed stored them) and each
    role's test predictions, from the artifacts."""
    artifacts = artifacts_for(store)
    labels, groups, probs = [], [], {"weak": [], "w2s": [], "ceiling": []}
    for key, row in zip(seed_keys, rows, strict=True):
        stored = artifacts.load_arrays(f"labels{key}")
        labels.append(stored["test"])
        groups.append(stored.get("test_groups"))
        for role in probs:
            probs[role].append(artifacts.load_arrays(row["run_keys"][role])["test"])
    return labels, (groups if all(g is not None for g in groups) else None), probs


def seed_configs(cfg: W2SConfig, seeds: int) -> list[W2SConfig]:
    return [replace(cfg, seed=cfg.seed + s) for s in range(seeds)]
