"""What a new user ran into: a report that invents a store, a copied store that reads its original's
artifacts, a store on a read-only disk, runs skipped without a word, tracebacks instead of one line,
help that does not say what a flag takes, a report page wider than the window. Each test fails on the
code before its fix."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_faults import _one_line_error as _one_line_naming
from test_faults_data import _one_line_error
from tiny_models import save_tiny_bert, write_sentiment_jsonl

from oversight.cli import build_parser, main
from oversight.errors import StoreError
from oversight.store import LEGACY_ARTIFACTS, ResultsStore, artifacts_for


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    return {"data": write_sentiment_jsonl(root / "sent.jsonl", n=400), "bert": save_tiny_bert(root / "bert")}


def _w2s(tiny, store: Path, *extra: str) -> list[str]:
    return ["w2s", "run", "--dataset", f"file:{tiny['data']}", "--weak", "bow", "--strong", f"hf:{tiny['bert']}",
            "--store", str(store), "--quiet", "--seeds", "1", "--epochs", "1", "--device", "cpu", *extra]


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` with its modification time and bytes."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _store_with_rows(path: Path, n: int = 3) -> ResultsStore:
    store = ResultsStore(path)
    for i in range(n):
        store.put(f"k{i}", "w2s", {"i": i}, {"v": i})
    return store


def _damage_row(path: Path, key: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET results = 'not json {' WHERE key = ?", (key,))
    db.close()


def _printable(line: str) -> bool:
    return all(c.isprintable() for c in line)


# ------------------------------------------------------------------ 1. a missing store is not invented

@pytest.mark.parametrize("output", ["--out", "--markdown"])
def test_report_on_a_missing_store_is_one_line_and_creates_nothing(tmp_path, capsys, output):
    store = tmp_path / "runs" / "typo.db"
    line = _one_line_error(capsys, ["report", "--store", str(store), output, str(tmp_path / "out")], str(store))
    assert "no store" in line
    assert list(tmp_path.iterdir()) == []  # neither the store, its folder, nor the output folder


def test_opening_a_store_for_reading_never_creates_it(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        ResultsStore(tmp_path / "sub" / "x.db", read_only=True)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 2. a copied store has artifacts of its own

def test_a_copied_store_uses_the_artifacts_folder_of_its_own_name(tmp_path):
    a = _store_with_rows(tmp_path / "a.db")
    artifacts_for(a).save_arrays("k0", {"x": np.arange(3)})
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    b = ResultsStore(tmp_path / "b.db")
    assert artifacts_for(b).root == tmp_path / "b.artifacts"
    assert artifacts_for(ResultsStore(tmp_path / "b.db", read_only=True)).root == tmp_path / "b.artifacts"
    artifacts_for(b).save_arrays("k1", {"x": np.arange(2)})
    assert not artifacts_for(a).has("k1") and artifacts_for(a).has("k0")
    assert artifacts_for(ResultsStore(tmp_path / "a.db")).root == tmp_path / "a.artifacts"


def test_a_copied_legacy_store_keeps_the_shared_folder(tmp_path):
    db = sqlite3.connect(tmp_path / "old.db")  # a store as the release before per-store folders made it
    db.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, kind TEXT NOT NULL, config TEXT NOT NULL, "
               "results TEXT NOT NULL, created REAL NOT NULL, seconds REAL)")
    db.commit()
    db.close()
    assert artifacts_for(ResultsStore(tmp_path / "old.db")).root == tmp_path / LEGACY_ARTIFACTS
    shutil.copy(tmp_path / "old.db", tmp_path / "copy.db")
    assert artifacts_for(ResultsStore(tmp_path / "copy.db")).root == tmp_path / LEGACY_ARTIFACTS
    assert artifacts_for(ResultsStore(tmp_path / "copy.db", read_only=True)).root == tmp_path / LEGACY_ARTIFACTS


# ------------------------------------------------------------------ 3. reading writes nothing

def test_a_store_opened_read_only_reads_without_writing(tmp_path):
    _store_with_rows(tmp_path / "runs" / "o.db")
    before = _files(tmp_path)
    store = ResultsStore(tmp_path / "runs" / "o.db", read_only=True)
    assert [r["key"] for r in store.records()] == ["k0", "k1", "k2"]
    assert store.get("k1")["results"] == {"v": 1} and store.meta("artifacts_dir") == "o.artifacts"
    assert _files(tmp_path) == before  # no byte, no mtime, no -wal or -shm file
    with pytest.raises(StoreError, match="read-only"):
        store.put("k9", "w2s", {}, {})


def test_a_damaged_row_read_only_is_skipped_not_dropped(tmp_path):
    _store_with_rows(tmp_path / "o.db")
    _damage_row(tmp_path / "o.db", "k1")
    before = _files(tmp_path)
    store = ResultsStore(tmp_path / "o.db", read_only=True)
    assert store.get("k1") is None and [r["key"] for r in store.records()] == ["k0", "k2"]
    assert _files(tmp_path) == before


def test_read_only_sees_rows_a_live_writer_committed(tmp_path):
    """A sweep still running keeps its rows in the write-ahead log: the report reads them too."""
    path = tmp_path / "o.db"
    _store_with_rows(path, 1)
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("INSERT INTO runs VALUES ('live', 'w2s', '{}', '{}', 1e10, NULL)")
    writer.commit()
    try:
        assert Path(f"{path}-wal").exists()
        assert [r["key"] for r in ResultsStore(path, read_only=True).records()] == ["k0", "live"]
    finally:
        writer.close()


def test_report_opens_the_store_read_only(tmp_path, capsys):
    _store_with_rows(tmp_path / "runs" / "o.db")
    before = _files(tmp_path / "runs")
    assert main(["report", "--store", str(tmp_path / "runs" / "o.db"), "--out", str(tmp_path / "r")]) == 0
    assert _files(tmp_path / "runs") == before
    # these rows hold no valid config: --markdown says so (exit 2); either way it writes nothing to the store
    assert main(["report", "--store", str(tmp_path / "runs" / "o.db"), "--markdown", str(tmp_path / "md")]) in (0, 2)
    assert _files(tmp_path / "runs") == before


# ------------------------------------------------------------------ 4. skipped runs are said

def test_report_says_on_the_terminal_which_rows_it_skipped(tmp_path, capsys):
    _store_with_rows(tmp_path / "o.db")
    _damage_row(tmp_path / "o.db", "k1")
    assert main(["report", "--store", str(tmp_path / "o.db"), "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    # k1's row is unreadable; k0's row reads (its made-up config is said separately, as invalid)
    assert "skipped" in err and "row k1" in err and "row k0" not in err


def test_markdown_of_a_store_whose_runs_are_all_skipped_says_so(tmp_path, capsys):
    _store_with_rows(tmp_path / "o.db", 2)
    for key in ("k0", "k1"):
        _damage_row(tmp_path / "o.db", key)
    code = main(["report", "--store", str(tmp_path / "o.db"), "--markdown", str(tmp_path / "md")])
    out, err = capsys.readouterr()
    assert code != 0 and "no runs" not in out + err
    assert "2 runs" in err and "could not be read" in err and "k0" in err, err


def test_report_says_which_runs_it_skipped_for_a_missing_artifact(tiny, tmp_path, capsys):
    store = tmp_path / "o.db"
    assert main(_w2s(tiny, store)) == 0
    [record] = ResultsStore(store).records(kind="w2s")
    missing = artifacts_for(ResultsStore(store)).path(record["results"]["run_keys"]["w2s"])
    missing.unlink()
    capsys.readouterr()
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "r")]) == 0
    assert str(missing) in capsys.readouterr().err
    code = main(["report", "--store", str(store), "--markdown", str(tmp_path / "md")])
    out, err = capsys.readouterr()
    assert code != 0 and "no runs" not in out + err and str(missing) in err


# ------------------------------------------------------------------ 5. one line, not a traceback

@pytest.mark.parametrize(("extra", "field"), [
    (["--lr", "1e300"], "lr"), (["--lr", "1e38"], "lr"), (["--lr=-1e300"], "lr"), (["--alpha-max", "1e300"], "alpha"),
    (["--loss", "product", "--product-beta", "1e300"], "product"), (["--window-radius=-inf"], "window"),
    (["--seed", "4294967296"], "seed"), (["--seed", "4294967295", "--seeds", "2"], "seed"),
])
def test_out_of_range_numbers_are_one_line_naming_the_field(tiny, tmp_path, capsys, extra, field):
    store = tmp_path / "o.db"
    _one_line_naming(capsys, _w2s(tiny, store, *extra), field)
    assert not store.exists()


def test_report_into_a_file_or_an_unwritable_folder_is_one_line(tmp_path, capsys):
    _store_with_rows(tmp_path / "o.db")
    (tmp_path / "afile").write_text("mine\n")
    _one_line_naming(capsys, ["report", "--store", str(tmp_path / "o.db"), "--out", str(tmp_path / "afile")], "out")
    assert (tmp_path / "afile").read_text() == "mine\n"
    unwritable = Path("/sys/oversight-report")
    try:
        unwritable.mkdir()
    except OSError:
        _one_line_naming(capsys, ["report", "--store", str(tmp_path / "o.db"), "--out", str(unwritable)], "out")
    else:
        unwritable.rmdir()
        pytest.skip("/sys is writable here")


def test_an_unknown_device_is_refused_even_when_the_run_is_stored(tiny, tmp_path, capsys):
    store = tmp_path / "o.db"
    assert main(_w2s(tiny, store)) == 0
    capsys.readouterr()
    argv = [a if a != "cpu" else "tpu" for a in _w2s(tiny, store)]
    _one_line_error(capsys, argv, "device", "tpu")


def test_a_folder_given_as_a_data_file_is_said_to_be_a_folder(tiny, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    argv = [a if not a.startswith("file:") else f"file:{tmp_path / 'data'}" for a in _w2s(tiny, tmp_path / "o.db")]
    line = _one_line_error(capsys, argv, str(tmp_path / "data"))
    assert "directory" in line and "does not exist" not in line and "no such" not in line


def test_a_binary_data_file_is_one_printable_line(tiny, tmp_path, capsys):
    data = tmp_path / "model.csv"
    data.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x1b[2J\x00\x03\x00>\x00\x01" * 20 + b"\n1,2\n")
    argv = [a if not a.startswith("file:") else f"file:{data}?encoding=latin-1" for a in _w2s(tiny, tmp_path / "o.db")]
    line = _one_line_error(capsys, argv, str(data))
    assert _printable(line), line
    assert "binary" in line


def test_control_characters_in_an_error_are_escaped(tmp_path, capsys):
    line = _one_line_error(capsys, ["w2s", "run", "--dataset", "file:/no/such\x1b[2J.csv", "--weak", "bow",
                                    "--strong", "minilm-l6", "--store", str(tmp_path / "o.db"), "--quiet"], "such")
    assert _printable(line) and "\\x1b[2J" in line, line


# ------------------------------------------------------------------ 6. help says what a flag takes

def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return capsys.readouterr().out


def _flag_help(text: str, flag: str) -> str:
    """The help of ``flag``: its lines up to the next flag's, whitespace joined."""
    block = re.search(rf"^  {flag} [A-Z]+(.*?)(?=^  -)", text, re.S | re.M).group(1)
    return " ".join(block.split())


def test_top_level_help_says_what_the_tool_is(capsys):
    text = " ".join(_help(capsys).split())
    assert "``" not in text and "weak-to-strong" in text.lower() and "amplification" in text.lower()
    for command in ("w2s", "amplify", "report", "datasets", "models"):
        assert command in text


def test_help_gives_defaults_and_comma_lists(capsys):
    report = _help(capsys, "report")
    assert "(default: runs/oversight.db)" in _flag_help(report, "--store")
    assert "(default: runs/report)" in _flag_help(report, "--out")
    run = _help(capsys, "w2s", "run")
    assert "(default: runs/oversight.db)" in _flag_help(run, "--store")
    for flag in ("--dataset", "--loss", "--method", "--weak", "--strong"):
        assert "comma list" in _flag_help(run, flag), flag
    dataset = _flag_help(run, "--dataset")
    for needle in (".tsv", ".json", "?encoding=", "?text=", "?label=", "(default: rotten_tomatoes)"):
        assert needle in dataset, needle
    sweep = _help(capsys, "w2s", "sweep")
    for flag in ("--dataset", "--method"):
        assert "comma list" in _flag_help(sweep, flag), flag


# ------------------------------------------------------------------ 7. the report page fits the window

@pytest.fixture(scope="module")
def page(tiny, tmp_path_factory) -> Path:
    """A report of runs whose names are long (an hf: path) with two losses: wide PGR tables."""
    root = tmp_path_factory.mktemp("page")
    store = root / "o.db"
    assert main(_w2s(tiny, store, "--loss", "xent,logconf")) == 0
    assert main(["report", "--store", str(store), "--out", str(root / "report")]) == 0
    return root / "report" / "index.html"


def test_every_table_of_the_report_has_a_layout_that_cannot_overflow(page):
    """Tables as wide as the page with fixed column shares, cells that wrap, no width of their own, and
    few enough columns (at most 13: about 90 px each in 1,200) that a number is not broken."""
    text = page.read_text()
    style = " ".join(re.search(r"<style>(.*?)</style>", text, re.S).group(1).split())
    table = re.search(r"(?:^| |\})table \{([^}]*)\}", style).group(1)
    assert "table-layout: fixed" in table and "width: 100%" in table
    cells = re.search(r"th, td \{([^}]*)\}", style).group(1)
    assert re.search(r"overflow-wrap: (anywhere|break-word)", cells)
    assert "<table" in text and "nowrap" not in text and not re.search(r"<t(able|h|d|r)[^>]* (width|style)=", text)
    assert max(len(re.findall("<th>", t)) for t in re.findall("<table>.*?</table>", text, re.S)) <= 13


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless chromium installed")
def test_the_report_page_fits_a_1400_pixel_window_in_a_browser(page, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace(
        "</body>", "<script>document.title = 'W=' + document.documentElement.scrollWidth;</script></body>"))
    out = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    width = int(re.search(r"<title>W=(\d+)</title>", out).group(1))
    assert width <= 1400, f"the page is {width} px wide in a 1400 px window"
