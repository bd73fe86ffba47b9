"""One seed's metrics, and a cell's over its seeds: means, standard deviations, bootstrap CIs.

    rows = [aggregate(seed_configs(cfg, 3), store)]   # after run_experiment on each seed

Reads only the results store (rows and stored predictions): it trains nothing.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from oversight.store import ResultsStore, artifacts_for
from oversight.w2s import metrics
from oversight.w2s.config import W2SConfig, experiment_key


def seed_metrics(cfg: W2SConfig, weak_test: np.ndarray, w2s_test: np.ndarray, ceiling_test: np.ndarray,
                 test_labels: np.ndarray) -> dict[str, Any]:
    """One seed's test metrics of its weak, weak-to-strong and ceiling predictions, and its PGR."""
    out: dict[str, Any] = {
        "dataset": cfg.dataset, "weak": cfg.weak, "strong": cfg.strong, "loss": cfg.loss, "seed": cfg.seed,
        "mode": cfg.mode, "head": cfg.head, "method": cfg.method, "chain": cfg.chain_models(),
        "select": cfg.select, "oracle": cfg.select == "oracle",  # ground truth selected the student: an ablation
    }
    for role, probs in (("weak", weak_test), ("w2s", w2s_test), ("ceiling", ceiling_test)):
        out[f"{role}_acc"] = metrics.accuracy(probs, test_labels)
        out[f"{role}_auroc"] = metrics.auroc(probs, test_labels)
    out.update(metrics.agreement(w2s_test, weak_test, test_labels))
    out["pgr"] = metrics.pgr(out["weak_acc"], out["w2s_acc"], out["ceiling_acc"])
    return out


# --------------------------------------------------------------------------- over seeds

def arm(row: dict[str, Any]) -> str:
    """What a row compares as a method in tables and figures: its loss, prefixed by its method
    unless that is ``direct`` (``xent``, ``logconf``, ``bootstrap-xent``, ...)."""
    method = row.get("method") or "direct"
    return row["loss"] if method == "direct" else f"{method}-{row['loss']}"


def aggregate(cfgs: list[W2SConfig], store: ResultsStore, n_boot: int = 1000) -> dict[str, Any]:
    """Mean ± std over seeds and bootstrap CIs (over seeds and test examples; and over test examples
    only, as ``*_examples_*``) of PGR and the accuracies, for one (dataset, weak, strong, loss, method)."""
    artifacts = artifacts_for(store)
    per_seed = [store.get(experiment_key(c)) for c in cfgs]
    rows = [r["results"] for r in per_seed if r is not None]
    if not rows:
        raise RuntimeError("no finished runs to aggregate")
    first = rows[0]
    out: dict[str, Any] = {k: first[k] for k in ("dataset", "weak", "strong", "loss", "mode", "head")}
    out["method"], out["chain"] = cfgs[0].method, ",".join(cfgs[0].chain_models())
    out["arm"] = arm(out)
    # what the accuracy counts: labels (classify), pairs ranked right (preference), exact moves (generate)
    out["task"] = first.get("task", "classify")
    out["select"] = first.get("select", "last")  # rows stored before selection kept their last weights
    out["oracle"] = out["select"] == "oracle"
    out["seeds"] = len(rows)
    out["seed_values"] = [c.seed for c, r in zip(cfgs, per_seed, strict=True) if r is not None]
    out["commits"] = sorted({(r.get("provenance") or {}).get("commit") or "not recorded" for r in rows})
    out["hosts"] = sorted({(r.get("provenance") or {}).get("host") or "not recorded" for r in rows})
    for name in ("weak_acc", "w2s_acc", "ceiling_acc", "weak_auroc", "w2s_auroc", "ceiling_auroc",
                 "agreement", "agreement_supervisor_right", "agreement_supervisor_wrong"):
        mean, std, _ = metrics.mean_std([r[name] for r in rows])
        out[name], out[name + "_std"] = mean, std
    for name in ("saliency_pretrained_acc", "saliency_finetuned_acc"):  # finetune mode only
        if all(name in r for r in rows):
            out[name], out[name + "_std"], _ = metrics.mean_std([r[name] for r in rows])
    if all(r.get("chain") for r in rows):  # bootstrap: each rung's own test accuracy, mean over seeds
        out["chain_test_acc"] = [metrics.mean_std([r["chain"][i]["test_acc"] for r in rows])[0]
                                 for i in range(len(first["chain"]))]
    labels, weak_p, w2s_p, ceil_p = [], [], [], []
    out["run_keys"] = [r["run_keys"] for r in rows]  # per seed: where the curves of its runs are
    for cfg, row in zip(cfgs, per_seed, strict=True):
        if row is None:
            continue
        keys = row["results"]["run_keys"]
        labels.append(artifacts.load_arrays(f"labels{experiment_key(cfg)}")["test"])
        weak_p.append(artifacts.load_arrays(keys["weak"])["test"])
        w2s_p.append(artifacts.load_arrays(keys["w2s"])["test"])
        ceil_p.append(artifacts.load_arrays(keys["ceiling"])["test"])
    # calibration, from the stored predictions (so rows stored before it have it too); generated
    # answers are stored as right/wrong, with no probability to calibrate: None
    for role, probs in (("weak", weak_p), ("w2s", w2s_p), ("ceiling", ceil_p)):
        for name, fn in (("ece", metrics.ece), ("brier", metrics.brier)):
            values = [] if out["task"] == "generate" else [fn(p, y) for p, y in zip(probs, labels, strict=True)]
            out[f"{role}_{name}"], out[f"{role}_{name}_std"], _ = metrics.mean_std(values)
    out["pgr"] = metrics.pgr(out["weak_acc"], out["w2s_acc"], out["ceiling_acc"])
    # the CI covers seeds and test examples (hierarchical); the example-only one is kept beside it
    out.update(metrics.hierarchical_bootstrap_pgr(labels, weak_p, w2s_p, ceil_p, n_boot=n_boot, seed=0))
    seed_pgrs = [r["pgr"] for r in rows]
    out["pgr_seed_mean"], out["pgr_seed_std"], out["pgr_defined_seeds"] = metrics.mean_std(seed_pgrs)
    out["gap"] = out["ceiling_acc"] - out["weak_acc"]
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def seed_configs(cfg: W2SConfig, seeds: int) -> list[W2SConfig]:
    return [replace(cfg, seed=cfg.seed + s) for s in range(seeds)]
