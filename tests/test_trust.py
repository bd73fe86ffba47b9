"""Numbers a reviewer can trust: grouped and paired intervals, the numerics and the data's content in
every key, ablations that change one thing, flags for runs that are no result, and rows that say
what they are. Each test fails on code that drops the guarantee it names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import save_tiny_bert, write_sentiment_jsonl

from oversight import runtime
from oversight.cli import main
from oversight.config import make_config
from oversight.errors import ConfigError
from oversight.store import ArtifactStore, ResultsStore
from oversight.w2s import metrics
from oversight.w2s.config import W2SConfig, experiment_key
from oversight.w2s.models import get_model_spec
from oversight.w2s.pipeline import run_experiment
from oversight.w2s.train import FeatureCache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    return {"data": write_sentiment_jsonl(root / "sent.jsonl", n=400), "bert": save_tiny_bert(root / "bert"),
            "root": root}


def _cfg(tiny, **kw) -> W2SConfig:
    base = dict(dataset=f"file:{tiny['data']}", weak="bow", strong=f"hf:{tiny['bert']}", mode="head", epochs=3,
                batch_size=16, bf16=False, device="cpu")
    return make_config(W2SConfig, **{**base, **kw})


# --------------------------------------------------------------------------- intervals

def _grouped_seed(rng: np.random.Generator, groups: int, size: int) -> tuple[np.ndarray, ...]:
    """One seed's test set of ``groups`` groups of ``size`` examples in which every role is right or
    wrong on a whole group together (the strongest within-group correlation)."""
    labels = np.ones(groups * size)
    codes = np.repeat(np.arange(groups), size)
    probs = [np.repeat(np.where(rng.random(groups) < acc, 0.9, 0.1), size) for acc in (0.6, 0.7, 0.8)]
    return (labels, *probs, codes)


def test_grouped_intervals_are_wider_than_per_example_ones_when_groups_correlate():
    rng = np.random.default_rng(0)
    seeds = [_grouped_seed(rng, groups=60, size=10) for _ in range(3)]
    labels, weak, w2s, ceiling, groups = (list(col) for col in zip(*seeds, strict=True))
    grouped = metrics.hierarchical_bootstrap_pgr(labels, weak, w2s, ceiling, n_boot=400, groups=groups)
    flat = metrics.hierarchical_bootstrap_pgr(labels, weak, w2s, ceiling, n_boot=400)
    for name in ("gap_ci_examples", "pgr_ci_examples"):
        assert (grouped[f"{name}_high"] - grouped[f"{name}_low"]) > 2 * (flat[f"{name}_high"] - flat[f"{name}_low"])
    one = metrics.hierarchical_bootstrap_pgr(*([col[0]] for col in (labels, weak, w2s, ceiling)), n_boot=400,
                                             groups=groups[:1])
    one_flat = metrics.hierarchical_bootstrap_pgr(*([col[0]] for col in (labels, weak, w2s, ceiling)), n_boot=400)
    assert one["w2s_acc_se"] > 2 * one_flat["w2s_acc_se"]  # about sqrt(10): ten examples count as one
    assert "test groups" in grouped["ci_covers"] and "test examples" in flat["ci_covers"]


def test_one_group_per_example_gives_the_per_example_bootstrap():
    rng = np.random.default_rng(1)
    correct = [[rng.random(200) < p for p in (0.6, 0.7, 0.8)] for _ in range(2)]
    singles = [np.arange(200), np.arange(200)]
    a = metrics.bootstrap_accuracies(correct, 50, np.random.default_rng(3), over_seeds=True, groups=singles)
    b = metrics.bootstrap_accuracies(correct, 50, np.random.default_rng(3), over_seeds=True)
    np.testing.assert_allclose(a, b)


def test_the_draw_is_paired_across_roles():
    """Ceiling = weak plus 10% of examples turned right: a paired draw sees a gap of about 0.10
    with the spread of those 10% alone; independent draws per role would add each accuracy's whole
    sampling noise (a CI about 2.3x wider), which this bound rules out."""
    rng = np.random.default_rng(2)
    n = 2000
    weak_right = rng.random(n) < 0.6
    turned = (~weak_right) & (rng.random(n) < 0.25)
    ceiling_right = weak_right | turned
    w2s_right = weak_right | (turned & (rng.random(n) < 0.5))
    labels = np.ones(n)
    probs = [np.where(r, 0.9, 0.1) for r in (weak_right, w2s_right, ceiling_right)]
    out = metrics.hierarchical_bootstrap_pgr([labels], *([p] for p in probs), n_boot=500)
    gap_width = out["gap_ci_high"] - out["gap_ci_low"]
    paired_width = 2 * 1.96 * np.sqrt(turned.mean() * (1 - turned.mean()) / n)
    unpaired_width = 2 * 1.96 * np.sqrt((0.6 * 0.4 + 0.7 * 0.3) / n)
    assert gap_width < (paired_width + unpaired_width) / 2, (gap_width, paired_width, unpaired_width)


def test_one_seed_shows_its_standard_error_never_a_zero_spread():
    assert metrics.format_accuracy(0.7371, 0.0, seeds=1, se=0.0093) == "0.737 (SE 0.009)"
    assert metrics.format_accuracy(0.7371, 0.012, seeds=3, se=0.004) == "0.737 ± 0.012"
    assert "± 0.000" not in metrics.format_accuracy(0.5, 0.0, seeds=1)


# --------------------------------------------------------------------------- identity

def test_the_numerics_that_ran_are_in_the_run_key_and_the_feature_key(tiny, monkeypatch):
    cfg = _cfg(tiny, bf16=True)
    monkeypatch.setattr(runtime, "_cpu_has_native_bf16", lambda: False)
    fp32_key = experiment_key(cfg)
    spec = get_model_spec(f"hf:{tiny['bert']}")
    fp32_features = FeatureCache(ArtifactStore(tiny["root"] / "a"), spec, "corpus", "cpu").key
    assert runtime.numerics("cpu", True) == "cpu/fp32"
    monkeypatch.setattr(runtime, "_cpu_has_native_bf16", lambda: True)
    assert runtime.numerics("cpu", True) == "cpu/bf16-autocast" and runtime.numerics("cpu", False) == "cpu/fp32"
    assert experiment_key(cfg) != fp32_key  # a host with native bf16 computes other numbers
    assert FeatureCache(ArtifactStore(tiny["root"] / "a"), spec, "corpus", "cpu").key != fp32_features
    assert experiment_key(_cfg(tiny, bf16=False)) == experiment_key(_cfg(tiny, bf16=False, device="auto"))


def test_the_datas_content_keys_a_run_not_its_timestamp(tiny, tmp_path):
    import os

    path = tmp_path / "data.jsonl"
    path.write_bytes(tiny["data"].read_bytes())
    cfg = _cfg(tiny, dataset=f"file:{path}")
    key = experiment_key(cfg)
    os.utime(path, (1, 1))  # touched: same content, same runs
    assert experiment_key(cfg) == key
    rows = path.read_text().splitlines()
    path.write_text("\n".join(rows[:-1]) + "\n")  # edited: new runs
    assert experiment_key(cfg) != key


@pytest.mark.slow
def test_an_edited_file_never_counts_one_seed_twice(tiny, tmp_path, capsys):
    from oversight.w2s.report import collect

    path = tmp_path / "data.jsonl"
    path.write_bytes(tiny["data"].read_bytes())
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(tiny, dataset=f"file:{path}", strong="hf:" + str(tiny["bert"]))
    run_experiment(cfg, store)
    path.write_text("\n".join(path.read_text().splitlines()[:-4]) + "\n")
    run_experiment(cfg, store)
    rows = collect(store)
    assert len(rows) == 2 and all(r["seeds"] == 1 for r in rows)  # two versions of the data: two cells
    assert all("data=sha256:" in r["variant"] for r in rows)


@pytest.mark.parametrize(("weak", "strong", "chain"), [("minilm-l3", "bow", ""), ("mpnet-base", "minilm-l6", ""),
                                                       ("bow", "mpnet-base", "minilm-l6,minilm-l3")])
def test_an_inverted_ladder_is_refused(weak, strong, chain):
    cfg = W2SConfig(weak=weak, strong=strong, chain=chain, method="bootstrap" if chain else "direct")
    with pytest.raises(ConfigError, match="weakest to strongest"):
        cfg.resolve_names()


def test_an_inverted_pair_is_one_line_on_the_command_line(capsys):
    assert main(["w2s", "run", "--weak", "minilm-l3", "--strong", "bow", "--store", "/nonexistent/o.db"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weakest to strongest" in err[0]


# --------------------------------------------------------------------------- rows and flags

@pytest.mark.slow
def test_json_rows_carry_every_identity_field(tiny, tmp_path, capsys):
    args = ["w2s", "run", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['bert']}",
            "--seeds", "1", "--json", "--quiet", "--epochs", "2", "--batch-size", "16", "--lr", "0.002",
            "--max-examples", "300", "--loss", "logconf", "--alpha-max", "0.5", "--device", "cpu", "--no-bf16",
            "--store", str(tmp_path / "o.db")]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["lr"], row["epochs"], row["batch_size"], row["max_examples"], row["alpha_max"]) == (0.002, 2, 16, 300, 0.5)
    assert row["numerics"] == ["cpu/fp32"] and isinstance(row["flags"], list)
    assert {"cpu_models", "torch", "threads", "commits", "hosts"} <= set(row)


@pytest.mark.slow
@pytest.mark.parametrize(("lr", "flag"), [(1e30, "DIVERGED"), (1e-300, "CEILING AT CHANCE")])
def test_diverged_and_untrained_runs_are_flagged(tiny, tmp_path, capsys, lr, flag):
    args = ["w2s", "run", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['bert']}",
            "--seeds", "1", "--quiet", "--epochs", "2", "--batch-size", "16", "--lr", str(lr), "--device", "cpu",
            "--no-bf16", "--store", str(tmp_path / "o.db")]
    assert main(args) == 0
    assert flag in capsys.readouterr().out
    from oversight.w2s.report import collect

    (row,) = collect(ResultsStore(tmp_path / "o.db"))
    assert any(flag in f for f in row["flags"])


def test_amplification_keys_name_numerics_other_than_plain_cpu(monkeypatch):
    from oversight.amplification.config import AmplifyConfig
    from oversight.amplification.runs import run_key
    from oversight.config import run_key as shared_run_key

    cfg = AmplifyConfig(task="union_find", mode="amplify", size=8, steps=10, bf16=True, device="cpu")
    monkeypatch.setattr(runtime, "_cpu_has_native_bf16", lambda: False)
    plain = run_key(cfg)  # bf16 asked for, not fast here: fp32 ran, the key of every row before
    assert plain == shared_run_key(cfg.with_task_defaults(), kind="amplify", test_set="v2")
    monkeypatch.setattr(runtime, "_cpu_has_native_bf16", lambda: True)
    assert run_key(cfg) != plain and run_key(cfg, ran_with="cpu/fp32") == plain


def test_amplification_table_flags_rows_made_from_a_dirty_tree():
    from oversight.amplification.results import measurement_table

    def record(commit: str) -> dict:
        config = {"task": "union_find", "mode": "amplify", "size": 8, "steps": 10, "seed": 0}
        results = {"test_acc": 0.5, "test_acc_se": 0.01, "steps": 10, "expert_calls": 1, "gt_labels_used": 0,
                   "seconds": 1.0, "test_set": "v2", "provenance": {"commit": commit, "host": "h"}}
        return {"key": commit, "kind": "amplify", "config": config, "results": results}

    assert "[DIRTY TREE]" in measurement_table([record("abc+dirty")])
    assert "[DIRTY TREE] |" not in measurement_table([record("abc")]).split("\n\n")[0]


@pytest.mark.slow
def test_an_absent_device_is_refused_even_when_the_run_is_stored(tmp_path, capsys):
    store = str(tmp_path / "a.db")
    base = ["amplify", "run", "--task", "union_find", "--mode", "supervised", "--size", "8", "--steps", "3",
            "--no-overlap-targets", "--threads", "1", "--store", store]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device" in err[0]


def test_w2s_rows_made_from_an_uncommitted_tree_are_flagged():
    from oversight.w2s.aggregate import method_label, row_flags

    row = {"loss": "xent", "method": "direct", "dirty": True, "oracle": True, "diverged": ["w2s"]}
    assert row_flags(row) == ["[ORACLE]", "[DIVERGED: w2s]", "[DIRTY TREE]"]
    assert method_label({**row, "flags": row_flags(row)}) == "xent [ORACLE] [DIVERGED: w2s] [DIRTY TREE]"
    assert row_flags({"loss": "xent"}) == []
