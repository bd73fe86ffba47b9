"""The results store: one SQLite file with a row per finished run, plus content-addressed artifacts.

A run is keyed by the hash of its full config (and the keys of the runs it depends on, e.g. the
weak run whose labels a student learned from). A row is written in one transaction only after the
run finished, so a crash or Ctrl-C leaves either the whole row or nothing; the next call redoes
what is missing. Artifacts (features, weak labels, predictions) are ``.npz`` files named by key,
written to a temporary file and renamed into place, so no half-written file is ever read.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_STORE = "runs/oversight.db"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results are meant to be shared and read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _dumps(obj: Any) -> str:
    # NaN is not valid JSON; undefined quantities (e.g. PGR with no gap) are stored as null.
    return json.dumps(_nan_to_none(obj), sort_keys=True, default=_json_default)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


class ResultsStore:
    """``runs`` table: key, kind, config (JSON), results (JSON), created (unix time), seconds."""

    def __init__(self, path: str | Path = DEFAULT_STORE) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                "config TEXT NOT NULL, results TEXT NOT NULL, created REAL NOT NULL, seconds REAL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS runs_kind ON runs(kind)")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # timeout: several sweep workers may write at once; WAL lets readers go on meanwhile.
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:  # one transaction: committed whole or rolled back whole
                yield db
        finally:
            db.close()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT key, kind, config, results, created, seconds FROM runs WHERE key = ?", (key,)
            ).fetchone()
        return self._row(row) if row else None

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, kind: str, config: dict[str, Any], results: dict[str, Any],
            seconds: float | None = None) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs (key, kind, config, results, created, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind, _dumps(config), _dumps(results), time.time(), seconds),
            )

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT key, kind, config, results, created, seconds FROM runs"
        args: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY created", args).fetchall()
        return [self._row(r) for r in rows]

    def delete(self, key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE key = ?", (key,))

    @staticmethod
    def _row(row: tuple[Any, ...]) -> dict[str, Any]:
        key, kind, config, results, created, seconds = row
        return {"key": key, "kind": kind, "config": json.loads(config), "results": json.loads(results),
                "created": created, "seconds": seconds}


class ArtifactStore:
    """Content-addressed arrays on disk: ``<root>/<key[:2]>/<key>.npz``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def save_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> Path:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path = self.path(key)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def load_arrays(self, key: str) -> dict[str, np.ndarray]:
        with np.load(self.path(key), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


def artifacts_for(store: ResultsStore) -> ArtifactStore:
    """Artifacts live beside the database: ``runs/oversight.db`` -> ``runs/artifacts/``."""
    return ArtifactStore(store.path.parent / "artifacts")
