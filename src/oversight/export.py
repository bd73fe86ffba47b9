"""Results as committed data: a store's rows, and the arrays its tables read, in two compressed files
that `oversight report --from` turns back into the same tables, byte for byte.

    oversight export --store runs/w2s.db --name w2s                  # docs/results/data/w2s.*
    oversight export --store runs/tasks.db --name tasks --subdir tasks   # tables into docs/results/tasks/
    oversight report --markdown docs/results --from docs/results/data

An export is ``NAME.rows.jsonl.gz`` (a first line describing the export, then one JSON record per
stored run, oldest first: key, kind, config, results with their provenance, created, seconds) and
``NAME.arrays.npz`` (the test labels and groups of every weak-to-strong seed and the test
predictions of every run they name; for a kind in :data:`ARRAY_EXPORTERS`, what its module's
``export_arrays(store, record)`` names). Nothing else of the store travels: models, features and
checkpoints are not results. Both files are written atomically, the gzip header without a time, so
exporting the same store twice gives the same bytes.
"""

from __future__ import annotations

import gzip
import importlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from oversight.errors import ConfigError, StoreError
from oversight.runtime import code_commit
from oversight.store import ResultsStore, artifacts_for, atomic_write_bytes

FORMAT = 1
DEFAULT_DIR = "docs/results/data"
SEP = "::"  # between an artifact's key and its array's name inside the .npz
# kinds whose module names the arrays its tables read: ``export_arrays(store, record) -> {key: {name: array}}``
# (imported when such a record is exported, so this module imports no experiment family)
ARRAY_EXPORTERS = {"w2s_active": "oversight.w2s.active_report"}


def export_store(store_path: str | Path, out_dir: str | Path = DEFAULT_DIR, name: str = "results",
                 subdir: str = "", date: str | None = None, hard: bool = False) -> list[Path]:
    """Write the export of the store at ``store_path`` as ``out_dir/name.*``; ``subdir`` is the folder
    (under the results docs) its tables are written to. ``hard``: test predictions as 0/1 bytes (the
    side of 0.5 they fall on), which every accuracy, PGR and interval reads exactly, and calibration
    (ECE, Brier) does not: for exports whose tables show none. Returns the two paths."""
    import time

    store_path = Path(store_path)
    store = ResultsStore(store_path, read_only=True)
    records = store.records()
    if not records:
        raise StoreError(f"store {store_path} holds no finished runs: nothing to export")
    out = Path(out_dir)
    meta = {"format": FORMAT, "name": name, "subdir": subdir, "store": str(store_path),
            "exported": date or time.strftime("%Y-%m-%d"), "exported_at_commit": code_commit() or "unknown",
            "rows_path": str(out / f"{name}.rows.jsonl.gz"), "runs": len(records)}
    if hard:
        meta["predictions"] = "hard"
    lines = [json.dumps({"export": meta}, sort_keys=True)]
    lines += [json.dumps(r, sort_keys=True) for r in records]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as fh:
        fh.write(("\n".join(lines) + "\n").encode("utf-8"))
    rows_path, arrays_path = out / f"{name}.rows.jsonl.gz", out / f"{name}.arrays.npz"
    atomic_write_bytes(rows_path, buf.getvalue())
    arrays = _table_arrays(store, records)
    if hard:  # labels and groups stay as they are: only what a role predicted becomes right-or-wrong sides
        arrays = {k: (a > 0.5).astype(np.uint8) if k.endswith(f"{SEP}test") and not k.startswith("labels")
                  and a.dtype.kind == "f" else a for k, a in arrays.items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(arrays_path, buf.getvalue())
    return [rows_path, arrays_path]


def _table_arrays(store: ResultsStore, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """What the tables read of the artifacts: per weak-to-strong seed its test labels (and groups),
    and the test predictions of each run it names."""
    artifacts = artifacts_for(store)
    out: dict[str, np.ndarray] = {}
    for record in records:
        if record["kind"] in ARRAY_EXPORTERS:
            named = importlib.import_module(ARRAY_EXPORTERS[record["kind"]]).export_arrays(store, record)
            out.update({f"{key}{SEP}{n}": a for key, arrays in named.items() for n, a in arrays.items()})
            continue
        if record["kind"] != "w2s":
            continue
        wanted = {f"labels{record['key']}": ("test", "test_groups")}
        wanted.update({key: ("test",) for key in (record["results"].get("run_keys") or {}).values()})
        for key, names in wanted.items():
            stored = artifacts.load_arrays(key)
            out.update({f"{key}{SEP}{n}": stored[n] for n in names if n in stored})
    return out


def read_export(rows_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """(meta, records, arrays by artifact key) of the export whose rows file is ``rows_path``."""
    try:
        with gzip.open(rows_path, "rt", encoding="utf-8") as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
        meta = lines[0]["export"]
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise StoreError(f"export {rows_path} cannot be read ({type(err).__name__}: {err})") from None
    if meta.get("format") != FORMAT:
        raise StoreError(f"export {rows_path} is format {meta.get('format')}; this version reads format {FORMAT}")
    arrays_path = rows_path.with_name(rows_path.name.replace(".rows.jsonl.gz", ".arrays.npz"))
    by_key: dict[str, dict[str, np.ndarray]] = {}
    if arrays_path.exists():
        with np.load(arrays_path, allow_pickle=False) as data:
            for member in data.files:
                key, _, name = member.partition(SEP)
                by_key.setdefault(key, {})[name] = data[member]
    return meta, lines[1:], by_key


def materialize(rows_path: Path, into: Path) -> tuple[dict[str, Any], ResultsStore]:
    """A results store in the folder ``into`` holding an export's rows (with their original times) and
    arrays, for the report to read as it reads any store."""
    meta, records, arrays = read_export(rows_path)
    store = ResultsStore(into / f"{meta['name']}.db")
    for record in records:
        store.put(record["key"], record["kind"], record["config"], record["results"], seconds=record.get("seconds"),
                  created=record["created"])
    artifacts = artifacts_for(store)
    for key, named in arrays.items():
        artifacts.save_arrays(key, named)
    # read as the report reads any store: read-only, so nothing (a migration's marker) changes it
    return meta, ResultsStore(store.path, read_only=True)


def exports_in(folder: str | Path) -> list[Path]:
    """The rows files of the exports in ``folder``, by name; a folder without any is one ConfigError."""
    folder = Path(folder)
    found = sorted(folder.glob("*.rows.jsonl.gz")) if folder.is_dir() else []
    if not found:
        raise ConfigError("from", f"{folder} holds no export (*.rows.jsonl.gz); make one with `oversight export`")
    return found
