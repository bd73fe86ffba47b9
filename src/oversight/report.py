"""``oversight report``: one HTML page (with PNG figures beside it) from the results store.

    oversight report --store runs/oversight.db --out runs/report   # then open runs/report/index.html
    oversight report --store runs/w2s.db --markdown docs/results    # the results docs, one file per family

Each experiment family contributes a section: ``section(store, out_dir) -> html`` in its
``report`` module (an empty string when the store has no runs of that family).
"""

from __future__ import annotations

import html
import importlib
import time
from pathlib import Path

from oversight.errors import ConfigError, OversightError, StoreError
from oversight.progress import warn
from oversight.store import ResultsStore, atomic_write_text, ensure_writable

SECTIONS = ("oversight.w2s.report", "oversight.w2s.active_report", "oversight.amplification.report",
            "oversight.amplification.bridge")
# modules with ``markdown(store) -> str`` and ``MARKDOWN_FILE``: the results docs, one file each
MARKDOWN_SECTIONS = ("oversight.w2s.tables", "oversight.w2s.active_report", "oversight.w2s.beyond_tables",
                     "oversight.amplification.results", "oversight.amplification.bridge")

# Nothing on the page can be wider than the window: every table takes the page's width with columns
# of fixed share (table-layout: fixed) whose cells wrap, breaking a word only where it alone is wider
# than its column (a long path), long names in text wrap, and figures shrink to fit.
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222;
       overflow-wrap: break-word; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; width: 100%; table-layout: fixed; }
th, td { border: 1px solid #ccc; padding: 3px 4px; text-align: right; vertical-align: top; overflow-wrap: break-word; }
th { background: #f3f3f3; } td:nth-child(-n+4), th:nth-child(-n+4) { text-align: left; }
img { max-width: 100%; height: auto; margin: 0.5em 0; border: 1px solid #eee; }
code, pre { white-space: pre-wrap; overflow-wrap: anywhere; }
"""

def write_report(store_path: str | Path, out_dir: str | Path) -> Path:
    """The page and its figures in ``out_dir``, from a store read and never written (nor created)."""
    store = ResultsStore(store_path, read_only=True)
    out = Path(out_dir)
    ensure_writable(out, "out")  # a file there, or a folder that cannot be written: one line, nothing made
    parts = []
    for module_name in SECTIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is None or not err.name.startswith("oversight"):
                raise
            continue
        try:
            parts.append(module.section(store, out))
        except StoreError:  # the store itself is unusable: that is the one line to print
            raise
        except OversightError as err:  # one family's unreadable part must not cost the other's section
            parts.append(f"<p>{html.escape(module_name)}: skipped, could not be read: {html.escape(str(err))}</p>")
    body = "\n".join(p for p in parts if p) or "<p>No finished runs in this store yet.</p>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>oversight report</title>"
            f"<style>{STYLE}</style></head><body><h1>oversight report</h1>"
            f"<p>Store: <code>{html.escape(str(store_path))}</code>, written {time.strftime('%Y-%m-%d %H:%M:%S')}</p>"
            f"{body}</body></html>")
    index = out / "index.html"
    try:
        atomic_write_text(index, page)
    except OSError as err:
        raise ConfigError("out", f"cannot write {index}: {err.strerror or err}") from None
    tell_skipped(store)
    return index


def tell_skipped(store: ResultsStore, shown: int = 10) -> list[str]:
    """Say on stderr what the report skipped because it cannot be read (rows, artifacts): a count
    and the first ``shown``; returns every such line."""
    lines = [f"row {line}" for line in store.unreadable] + store.unreadable_artifacts
    if lines:
        warn(f"report: {len(lines)} {'run' if len(lines) == 1 else 'runs'} skipped, could not be read "
             "(rerun their commands to redo them):")
        for line in lines[:shown]:
            warn(f"  {line}")
        if len(lines) > shown:
            warn(f"  ... and {len(lines) - shown} more")
    return lines


def write_markdown(store_path: str | Path, out_dir: str | Path, command: str) -> list[Path]:
    """The results docs from one store: a markdown file per family that has runs in it, each headed
    by the date, the commit of this checkout, the store and the command that wrote it."""
    from oversight.runtime import provenance

    store = ResultsStore(store_path, read_only=True)
    head = (f"Generated {time.strftime('%Y-%m-%d')} from the store `{store_path}` at commit "
            f"{provenance()['commit'] or 'unknown'} by `{command}`.")
    written = _markdown_files(store, Path(out_dir), command, head)
    skipped = tell_skipped(store)
    if skipped and not written:
        raise StoreError(f"nothing written: {len(skipped)} {'run' if len(skipped) == 1 else 'runs'} in {store_path} "
                         f"could not be read ({skipped[0]}{'; ...' if len(skipped) > 1 else ''}), and no other runs")
    return written


README_START = "<!-- results summary: generated by `oversight report --from`; do not edit by hand -->"
README_END = "<!-- end of results summary -->"


def write_markdown_from(exports: str | Path, out_dir: str | Path, readme: str | Path | None = None) -> list[Path]:
    """The results docs from committed exports (``oversight export``): each export's tables into
    ``out_dir`` (or its ``subdir``), headed only by what the export records, so the same export
    gives the same bytes on any machine, any day. With ``readme``, its results summary (between
    :data:`README_START` and :data:`README_END`) is rewritten from the same data."""
    import tempfile

    from oversight.export import exports_in, materialize

    written, summary = [], []
    for rows_path in exports_in(exports):
        with tempfile.TemporaryDirectory(prefix="oversight-export-") as tmp:
            meta, store = materialize(rows_path, Path(tmp))
            data = str(Path(meta["rows_path"]).parent)
            command = f"oversight report --markdown docs/results --from {data}"
            head = (f"Generated from the export `{meta['rows_path']}` ({meta['runs']} stored runs, exported "
                    f"{meta['exported']} from the store `{meta['store']}` at commit {meta['exported_at_commit']}) "
                    f"by `{command}`.")
            written += _markdown_files(store, Path(out_dir) / meta.get("subdir", ""), command, head)
            summary += summary_lines(store, meta)
    if readme is not None:
        written.append(_replace_summary(Path(readme), summary))
    return written


def summary_lines(store: ResultsStore, meta: dict[str, str]) -> list[str]:
    """What each family says of an export in the README's results summary, dated by the export."""
    lines = []
    for module_name in MARKDOWN_SECTIONS:
        module = importlib.import_module(module_name)
        if hasattr(module, "summary"):
            lines += [line.replace("- **", f"- **{meta['exported']}, ", 1) for line in module.summary(store)]
    return lines


def _replace_summary(readme: Path, lines: list[str]) -> Path:
    if not readme.is_file():
        raise ConfigError("readme", f"{readme} is not a file; give the README whose results summary to rewrite")
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ConfigError("readme", f"{readme} has no results summary block ({README_START} ... {README_END})")
    before, rest = text.split(README_START, 1)
    after = rest.split(README_END, 1)[1]
    atomic_write_text(readme, before + README_START + "\n" + "\n".join(lines) + "\n" + README_END + after)
    return readme


def _markdown_files(store: ResultsStore, out: Path, command: str, head: str) -> list[Path]:
    written = []
    for module_name in MARKDOWN_SECTIONS:
        module = importlib.import_module(module_name)
        body = module.markdown(store)
        if not body:
            continue
        text = (f"<!-- generated by `{command}`; do not edit by hand -->\n"
                f"# Results: {module.MARKDOWN_FILE.removesuffix('.md')}\n\n{head}\n\n{body}")
        path = out / module.MARKDOWN_FILE
        atomic_write_text(path, text)
        written.append(path)
    return written
