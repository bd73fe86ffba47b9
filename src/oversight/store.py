"""The results store: one SQLite file with a row per finished run, plus content-addressed artifacts.

A run is keyed by the hash of its identity (``oversight.config.run_key``: the fields that decide its
numbers, and the keys of the runs it depends on, e.g. the weak run whose labels a student learned
from). A row is written in one transaction only after the run finished, so a crash or Ctrl-C leaves
either the whole row or nothing; the next call redoes what is missing. Artifacts (features, weak
labels, predictions, models) are ``.npz`` files named by key in a folder of the store's own
(``runs/x.db`` -> ``runs/x.artifacts/``), written to a temporary file and renamed into place, and
carrying a checksum of their arrays, so a half-written or damaged file is never read as data.

Damage is reported, not raised as a traceback: a row whose JSON does not parse is dropped (and so
redone) when its run asks for it, and skipped (and listed in ``unreadable``) when records are read;
an artifact that fails to load or to match its checksum raises :class:`DamagedArtifactError`
naming the file, which the caller recomputes; a store path that is a directory or not a database
is one :class:`StoreError` line.

    store = ResultsStore("runs/oversight.db"); store.put(key, "w2s", config, results)
    artifacts_for(store).save_arrays(key, {"test": probs})
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from oversight.errors import ConfigError, DamagedArtifactError, MissingArtifactError, StoreError
from oversight.progress import log

DEFAULT_STORE = "runs/oversight.db"
CHECKSUM = "__checksum__"  # the member of an artifact that holds the sha256 of its other arrays
LEGACY_ARTIFACTS = "artifacts"  # the folder stores made before each store had its own shared


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
    """``runs`` table: key, kind, config (JSON), results (JSON), created (unix time), seconds;
    ``meta`` table: name -> value (the artifacts folder, identity versions of migrated kinds)."""

    def __init__(self, path: str | Path = DEFAULT_STORE) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"store {self.path} is a directory; give a file, e.g. --store {self.path / 'oversight.db'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.unreadable: list[str] = []  # rows records() skipped, as "key: reason"
        with self._connect() as db:
            fresh = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone() is None
            db.execute(
                "CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                "config TEXT NOT NULL, results TEXT NOT NULL, created REAL NOT NULL, seconds REAL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS runs_kind ON runs(kind)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            # a new store gets an artifacts folder of its own; one made before keeps the shared folder
            folder = f"{self.path.stem}.artifacts" if fresh else LEGACY_ARTIFACTS
            db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('artifacts_dir', ?)", (folder,))
            self.artifacts_dir = db.execute("SELECT value FROM meta WHERE name = 'artifacts_dir'").fetchone()[0]

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # timeout: several sweep workers may write at once; WAL lets readers go on meanwhile.
        try:
            db = sqlite3.connect(self.path, timeout=60)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open store {self.path}: {err}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:  # one transaction: committed whole or rolled back whole
                yield db
        except sqlite3.DatabaseError as err:
            raise StoreError(f"store {self.path} cannot be used ({err}); if it is damaged, move it aside "
                             "and rerun: finished runs are redone into a new store") from None
        finally:
            db.close()

    def meta(self, name: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, name: str, value: str) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def get(self, key: str) -> dict[str, Any] | None:
        """The row of ``key``; a row that cannot be read is dropped (one log line), so its run is redone."""
        with self._connect() as db:
            row = db.execute(
                "SELECT key, kind, config, results, created, seconds FROM runs WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        try:
            return self._row(row)
        except ValueError as err:
            log(f"store {self.path}: row {key} is damaged ({err}); dropping it, its run is redone")
            self.delete(key)
            return None

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, kind: str, config: dict[str, Any], results: dict[str, Any],
            seconds: float | None = None, created: float | None = None) -> None:
        """Store a finished run (``created``: now, unless an imported row brings its own time)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs (key, kind, config, results, created, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind, _dumps(config), _dumps(results), time.time() if created is None else created, seconds),
            )

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every readable row (oldest first); rows that cannot be read are listed in ``unreadable``."""
        query = "SELECT key, kind, config, results, created, seconds FROM runs"
        args: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY created", args).fetchall()
        out = []
        for r in rows:
            try:
                out.append(self._row(r))
            except ValueError as err:
                self.unreadable.append(f"{r[0]}: {err}")
        return out

    def delete(self, key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE key = ?", (key,))

    def migrate_keys(self, kind: str, version: str, key_of: Callable[[dict[str, Any]], str | None],
                     artifact_names: Callable[[str], list[str]] = lambda key: [key]) -> int:
        """Rekey the rows of ``kind`` to ``key_of(record)`` (None: leave the row), renaming their
        artifacts (``artifact_names(key)``), once per identity ``version``. Two rows that meet at one
        key were the same run: the first stored is kept. Returns the number of rows rekeyed."""
        name = f"identity_version:{kind}"
        if self.meta(name) == version:
            return 0
        artifacts, moved = artifacts_for(self), 0
        taken = {r["key"] for r in self.records()}
        for record in self.records(kind):
            new = key_of(record)
            if new is None or new == record["key"]:
                continue
            if new in taken:
                self.delete(record["key"])
                continue
            for old_name, new_name in zip(artifact_names(record["key"]), artifact_names(new), strict=True):
                artifacts.rename(old_name, new_name)
            with self._connect() as db:
                db.execute("UPDATE runs SET key = ? WHERE key = ?", (new, record["key"]))
            taken.add(new)
            moved += 1
        self.set_meta(name, version)
        if moved:
            log(f"store {self.path}: {moved} {kind} rows rekeyed to identity version {version}")
        return moved

    @staticmethod
    def _row(row: tuple[Any, ...]) -> dict[str, Any]:
        key, kind, config, results, created, seconds = row
        if not isinstance(config, str) or not isinstance(results, str):
            raise ValueError("config or results is not JSON text")
        config, results = json.loads(config), json.loads(results)
        if not isinstance(config, dict) or not isinstance(results, dict):
            raise ValueError("config or results is not a JSON object")
        return {"key": key, "kind": kind, "config": config, "results": results,
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
        arrays = {name: np.asarray(a) for name, a in arrays.items()}
        buf = io.BytesIO()
        np.savez(buf, **arrays, **{CHECKSUM: np.array(checksum(arrays))})
        path = self.path(key)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def load_arrays(self, key: str) -> dict[str, np.ndarray]:
        """The arrays of ``key``, verified against their checksum (artifacts written before checksums
        are verified by loading whole). Missing: :class:`MissingArtifactError`; truncated, garbled or
        not matching: :class:`DamagedArtifactError`; both name the file."""
        path = self.path(key)
        if not path.exists():
            raise MissingArtifactError(path, "is missing")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as err:
            raise DamagedArtifactError(path, f"is damaged ({type(err).__name__}: {err})") from None
        stored = arrays.pop(CHECKSUM, None)
        if stored is not None and str(stored) != checksum(arrays):
            raise DamagedArtifactError(path, "is damaged (its arrays do not match its checksum)")
        return arrays

    def rename(self, old: str, new: str) -> None:
        if self.has(old):
            self.path(new).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path(old), self.path(new))


def ensure_writable(folder: str | Path, flag: str = "store") -> None:
    """Refuse (one ConfigError naming ``folder``) a folder that cannot be made or written, before a run starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".writable.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(flag, f"the output folder {folder} is not writable ({err.strerror or err}); "
                                f"give --{flag} a path in a writable folder") from None


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``arrays``."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def artifacts_for(store: ResultsStore) -> ArtifactStore:
    """The store's own artifacts folder beside it (``runs/x.db`` -> ``runs/x.artifacts/``; stores made
    before that keep the shared ``runs/artifacts/``)."""
    return ArtifactStore(store.path.parent / store.artifacts_dir)
