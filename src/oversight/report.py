"""``oversight report``: one HTML page (with PNG figures beside it) from the results store.

    oversight report --store runs/oversight.db --out runs/report   # then open runs/report/index.html

Each experiment family contributes a section: ``section(store, out_dir) -> html`` in its
``report`` module (an empty string when the store has no runs of that family).
"""

from __future__ import annotations

import html
import importlib
import time
from pathlib import Path

from oversight.errors import OversightError, StoreError
from oversight.store import ResultsStore, atomic_write_text

SECTIONS = ("oversight.w2s.report", "oversight.amplification.report")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td:nth-child(-n+4) { text-align: left; }
img { max-width: 100%; margin: 0.5em 0; border: 1px solid #eee; }
"""


def write_report(store_path: str | Path, out_dir: str | Path) -> Path:
    store = ResultsStore(store_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    atomic_write_text(index, page)
    return index
