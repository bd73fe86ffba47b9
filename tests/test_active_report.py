"""The report's and the results docs' section on `w2s active`: figure, tables, and an export that
rebuilds the tables byte for byte."""

from __future__ import annotations

import os
import re

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import save_tiny_bert, write_sentiment_jsonl  # noqa: E402

from oversight.cli import main  # noqa: E402
from oversight.store import ResultsStore  # noqa: E402
from oversight.w2s import active_report  # noqa: E402
from oversight.w2s import active_select as sel  # noqa: E402

STRATEGIES = ("all", "random", "uncertainty")


@pytest.fixture(scope="module")
def active_store(tmp_path_factory):
    """Two seeds of all, random and uncertainty in two rounds, and each with +10 random truth labels."""
    root = tmp_path_factory.mktemp("active_report")
    data, bert = write_sentiment_jsonl(root / "sent.jsonl", n=480), save_tiny_bert(root / "bert", hidden=48)
    store = root / "o.db"
    assert main(["w2s", "active", "--dataset", f"file:{data}", "--weak", "bow", "--strong", f"hf:{bert}",
                 "--supervisor", "flip:random", "--supervisor-accuracy", "0.7",
                 "--strategy", ",".join(STRATEGIES), "--budget", "40", "--rounds", "2", "--epochs", "5",
                 "--seeds", "2", "--truth-budget", "10", "--device", "cpu", "--store", str(store), "--quiet"]) == 0
    return store


def test_the_report_page_has_the_active_section_and_its_figure(active_store, tmp_path):
    assert main(["report", "--store", str(active_store), "--out", str(tmp_path / "page")]) == 0
    page = (tmp_path / "page" / "index.html").read_text()
    assert active_report.TITLE in page and "hierarchical bootstrap over seeds and test groups" in page
    assert "+K truth, random/targeted" in page and "first matches labelling everything" in page
    pngs = sorted(p.name for p in (tmp_path / "page").glob("active_*.png"))
    assert len(pngs) == 1 and f'src="{pngs[0]}"' in page
    for strategy in STRATEGIES:
        assert f"<td>{strategy}</td>" in page
    assert "<td>uncertainty +10 random truth</td>" in page


def test_markdown_names_each_strategy_the_match_rule_and_where_it_came_from(active_store):
    store = ResultsStore(active_store, read_only=True)
    text = active_report.markdown(store)
    for strategy in STRATEGIES:
        assert f"| {strategy} |" in text
    assert active_report.RULE in text and f"minus {sel.MATCH_MARGIN}" in text
    assert re.search(r"seeds 0, 1; runs made at commit \S+", text)
    assert "95% CI, bootstrap over 2 seeds, then test groups within each" in text
    assert "| uncertainty +10 random truth | 2 | 40 | 10 |" in text  # a truth arm: its final point only
    assert "| uncertainty | 0 | 20 | 0 |" in text and "| uncertainty | 1 | 40 | 0 |" in text and "| all | 0 |" in text
    assert text == active_report.markdown(store)  # nothing of the day or the order of the rows
    lines = active_report.summary(store)
    assert len(lines) == 1 and lines[0].startswith("- **Active learning, file:")


def _body(text: str) -> str:
    """A results doc less its header lines (which say where it came from)."""
    return text.split("\n", 4)[4]


def test_an_export_rebuilds_the_active_tables_byte_for_byte(active_store, tmp_path):
    assert main(["export", "--store", str(active_store), "--out", str(tmp_path / "data"), "--name", "act"]) == 0
    assert main(["report", "--markdown", str(tmp_path / "a"), "--from", str(tmp_path / "data")]) == 0
    assert main(["report", "--store", str(active_store), "--markdown", str(tmp_path / "direct")]) == 0
    rebuilt = (tmp_path / "a" / active_report.MARKDOWN_FILE).read_text()
    direct = (tmp_path / "direct" / active_report.MARKDOWN_FILE).read_text()
    assert _body(rebuilt) == _body(direct) and "| uncertainty |" in rebuilt
    assert "Generated from the export" in rebuilt


def test_a_store_without_active_runs_gives_nothing(tmp_path):
    store = ResultsStore(tmp_path / "empty.db")
    store.put("k", "w2s_other", {"dataset": "x"}, {"test_acc": 0.5})
    assert active_report.section(store, tmp_path) == "" and active_report.markdown(store) == ""
    assert active_report.summary(store) == [] and not list(tmp_path.glob("*.png"))


def test_undefined_pgr_and_a_gap_reaching_zero_are_marked():
    row = {"arm": "random", "strategy": "random", "round": 1, "labels": 20, "truth_labels": 0, "test_acc": 0.7,
           "test_acc_std": 0.01, "seeds": 2, "pgr": None, "pgr_ci_low": None, "pgr_ci_high": None,
           "gap_ci_low": None}
    assert active_report.round_cells([row])[0][5] == "undefined"
    noisy = dict(row, pgr=0.5, pgr_ci_low=-0.2, pgr_ci_high=1.1, gap_ci_low=-0.01)
    assert active_report.round_cells([noisy])[0][4:] == ["0.700 ± 0.010", "0.50 [-0.20, 1.10] *", "2"]


def test_arms_of_two_budgets_are_two_variants_and_all_joins_both():
    base = {"dataset": "d", "weak": "bow", "strong": "s", "supervisor": "model", "epochs": 5}
    labels = {"all": {**base, "strategy": "all"},
              "r40": {**base, "strategy": "random", "budget": 40}, "u40": {**base, "strategy": "uncertainty", "budget": 40},
              "r80": {**base, "strategy": "random", "budget": 80},
              "t40": {**base, "strategy": "random", "budget": 40, "truth_budget": 10, "truth_placement": "random"}}
    groups = active_report.group_arms(labels)
    assert {key[-1]: sorted(ids) for key, ids in groups.items()} == {
        "budget=40": ["all", "r40", "t40", "u40"], "budget=80": ["all", "r80"]}
    assert active_report.group_arms({"a": labels["all"], "r": labels["r40"]}) == {
        ("d", "bow", "s", "model", "", ""): ["a", "r"]}  # nothing differs: no variant
