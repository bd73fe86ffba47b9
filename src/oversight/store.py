"""The results store: one SQLite file with a row per finished run, plus content-addressed artifacts.

A run is keyed by the hash of its identity (``oversight.config.run_key``: the fields that decide its
numbers, and the keys of the runs it depends on, e.g. the weak run whose labels a student learned
from). A row is written in one transaction only after the run finished, so a crash or Ctrl-C leaves
either the whole row or nothing; the next call redoes what is missing. Artifacts (features, weak
labels, predictions, models) are ``.npz`` files named by key in a folder of the store's own
(``runs/x.db`` -> ``runs/x.artifacts/``, named after the file, so a copy ``runs/y.db`` has its own),
written to a temporary file and renamed into place, and carrying a checksum of their arrays, so a
half-written or damaged file is never read as data. A reader (``read_only=True``, the report) opens
the store without writing to it or creating it, so a store on a read-only disk can be reported.

Damage is reported, not raised as a traceback: a row whose JSON does not parse is dropped (and so
redone) when its run asks for it, and skipped (and listed in ``unreadable``) when records are read;
an artifact that fails to load or to match its checksum raises :class:`DamagedArtifactError`
naming the file, which the caller recomputes; a store path that is a directory or not a database
is one :class:`StoreError` line. What a reader skipped is in ``unreadable`` (rows) and
``unreadable_artifacts``, for it to say.

    store = ResultsStore("runs/oversight.db"); store.put(key, "w2s", config, results)
    artifacts_for(store).save_arrays(key, {"test": probs})
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import sqlite3
import tempfile
import time
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from oversight.errors import (
    ArtifactError,
    ConfigError,
    DamagedArtifactError,
    MissingArtifactError,
    StoreError,
)
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
    ``meta`` table: name -> value (the artifacts folder, identity versions of migrated kinds).

    ``read_only=True`` (what reports use) reads a store that exists and writes nothing to it or
    beside it: a missing path is one :class:`StoreError` line, not a new empty store, and a store
    on a read-only disk reads as well as any."""

    def __init__(self, path: str | Path = DEFAULT_STORE, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if self.path.is_dir():
            raise StoreError(f"store {self.path} is a directory; give a file, e.g. --store {self.path / 'oversight.db'}")
        self.unreadable: list[str] = []  # rows records() skipped, as "key: reason"
        self.unreadable_artifacts: list[str] = []  # artifacts that failed to load, as "artifact PATH is ..."
        if read_only:
            if not self.path.exists():
                raise StoreError(f"no store at {self.path}; give --store the file your runs wrote "
                                 f"(they write {DEFAULT_STORE} unless given --store)")
            self._tables = {name for (name,) in self._fetch("SELECT name FROM sqlite_master WHERE type='table'")}
            recorded = self.meta("artifacts_dir")
            self.artifacts_dir = self._artifacts_folder(recorded, fresh="runs" not in self._tables)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tables = {"runs", "meta"}
            with self._connect() as db:
                recorded = self._create_tables(db)
        if recorded not in (None, self.artifacts_dir):
            self._tell_copied(recorded)

    def _create_tables(self, db: sqlite3.Connection) -> str | None:
        """Create what is missing and record the artifacts folder; returns the folder recorded before."""
        fresh = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone() is None
        db.execute(
            "CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
            "config TEXT NOT NULL, results TEXT NOT NULL, created REAL NOT NULL, seconds REAL)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS runs_kind ON runs(kind)")
        db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = db.execute("SELECT value FROM meta WHERE name = 'artifacts_dir'").fetchone()
        recorded = None if row is None else row[0]
        self.artifacts_dir = self._artifacts_folder(recorded, fresh)
        if recorded != self.artifacts_dir:
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('artifacts_dir', ?)", (self.artifacts_dir,))
        return recorded

    def _artifacts_folder(self, recorded: str | None, fresh: bool) -> str:
        """The store's own folder, named after its file (so a copy, ``cp a.db b.db``, has ``b.artifacts``
        and never writes into ``a.artifacts``); a store made before per-store folders keeps the shared one."""
        if recorded == LEGACY_ARTIFACTS or (recorded is None and not fresh):
            return LEGACY_ARTIFACTS
        return f"{self.path.stem}.artifacts"

    def _tell_copied(self, recorded: str) -> None:
        """One line where a copied or renamed store leaves its artifacts behind in the old folder."""
        if (self.path.parent / recorded).is_dir() and not (self.path.parent / self.artifacts_dir).exists():
            log(f"store {self.path}: its artifacts folder is {self.path.parent / self.artifacts_dir}, not "
                f"{self.path.parent / recorded} (the store it was copied or renamed from); copy that folder "
                "there to reuse its artifacts, else they are recomputed")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # timeout: several sweep workers may write at once; WAL lets readers go on meanwhile.
        try:
            db = self._open()
        except sqlite3.Error as err:
            raise StoreError(f"cannot open store {self.path}: {err}") from None
        try:
            if not self.read_only:
                db.execute("PRAGMA journal_mode=WAL")
            with db:  # one transaction: committed whole or rolled back whole
                yield db
        except sqlite3.DatabaseError as err:
            raise StoreError(f"store {self.path} cannot be used ({err}); if it is damaged, move it aside "
                             "and rerun: finished runs are redone into a new store") from None
        finally:
            db.close()

    def _open(self) -> sqlite3.Connection:
        """A writer's connection, or a reader's that writes nothing: ``mode=ro``, and ``immutable`` while
        no write-ahead log exists (else SQLite would create ``-wal`` and ``-shm`` files beside the store)."""
        if not self.read_only:
            return sqlite3.connect(self.path, timeout=60)
        uri = self.path.resolve().as_uri() + "?mode=ro"
        if not self._wal().exists():
            uri += "&immutable=1"
        return sqlite3.connect(uri, uri=True, timeout=60)

    def _wal(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def version(self) -> tuple[Any, ...]:
        """What changes whenever the store's contents may have: its file's and its log's size and
        time. Equal versions of one path hold the same rows (what :class:`StoreMemo` keys on)."""
        wal = self._wal()
        log_stat = (wal.stat().st_mtime_ns, wal.stat().st_size) if wal.exists() else None
        return str(self.path.resolve()), *self._stamp()[:2], log_stat

    def _stamp(self) -> tuple[int, int, bool]:
        stat = self.path.stat()
        return stat.st_mtime_ns, stat.st_size, self._wal().exists()

    def _fetch(self, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query. A reader without a write-ahead log reads the file unlocked
        (immutable); if a writer changed the file meanwhile, it reads again (then through the log)."""
        for _ in range(3):
            before = self._stamp() if self.read_only else None
            unlocked = self.read_only and not before[2]
            try:
                with self._connect() as db:
                    rows = db.execute(query, args).fetchall()
            except StoreError:
                if not unlocked or self._stamp() == before:
                    raise
                continue
            if not unlocked or self._stamp() == before:
                return rows
        raise StoreError(f"store {self.path} kept changing while it was read; run the same command again")

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only (a report reads it and writes nothing)")

    def meta(self, name: str) -> str | None:
        if "meta" not in self._tables:  # read-only, a store made before the meta table
            return None
        rows = self._fetch("SELECT value FROM meta WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def set_meta(self, name: str, value: str) -> None:
        self._writable()
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def get(self, key: str) -> dict[str, Any] | None:
        """The row of ``key``; a row that cannot be read is dropped (one log line), so its run is redone."""
        if "runs" not in self._tables:
            return None
        rows = self._fetch("SELECT key, kind, config, results, created, seconds FROM runs WHERE key = ?", (key,))
        if not rows:
            return None
        try:
            return self._row(rows[0])
        except ValueError as err:
            if self.read_only:
                self._note(self.unreadable, f"{key}: {err}")
                return None
            log(f"store {self.path}: row {key} is damaged ({err}); dropping it, its run is redone")
            self.delete(key)
            return None

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, kind: str, config: dict[str, Any], results: dict[str, Any],
            seconds: float | None = None, created: float | None = None) -> None:
        """Store a finished run (``created``: now, unless an imported row brings its own time)."""
        self._writable()
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
        if "runs" not in self._tables:
            return []
        out = []
        for r in self._fetch(query + " ORDER BY created", args):
            try:
                out.append(self._row(r))
            except ValueError as err:
                self._note(self.unreadable, f"{r[0]}: {err}")
        return out

    @staticmethod
    def _note(lines: list[str], line: str) -> None:
        if line not in lines:  # each read of the same store lists a row once
            lines.append(line)

    def note_unreadable_artifact(self, line: str) -> None:
        """What an artifact of this store that failed to load said (``artifact PATH is missing``)."""
        self._note(self.unreadable_artifacts, line)

    def delete(self, key: str) -> None:
        self._writable()
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
        if self.read_only:  # a reader leaves the rows as they are; the next writer rekeys them
            stale = sum(key_of(r) not in (None, r["key"]) for r in self.records(kind))
            if stale:
                log(f"store {self.path}: {stale} {kind} rows are keyed by an earlier identity; read as they "
                    "are (the next run on this store rekeys them)")
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
    """Content-addressed arrays on disk: ``<root>/<key[:2]>/<key>.npz``. ``on_unreadable`` hears the
    one line of each artifact that fails to load (a report lists them as skipped)."""

    def __init__(self, root: str | Path, on_unreadable: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.on_unreadable = on_unreadable

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def stamp(self, keys: Iterator[str] | list[str]) -> tuple[Any, ...]:
        """Per key, its file's time and size (None if missing): with the store's version, what a
        cached aggregate of these artifacts is keyed on, so a damaged or rewritten file is seen."""
        out = []
        for key in keys:
            try:
                stat = self.path(key).stat()
                out.append((key, stat.st_mtime_ns, stat.st_size))
            except OSError:
                out.append((key, None))
        return tuple(out)

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
        try:
            return self._load(self.path(key))
        except ArtifactError as err:
            if self.on_unreadable is not None:
                self.on_unreadable(str(err))
            raise

    @staticmethod
    def _load(path: Path) -> dict[str, np.ndarray]:
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
    if folder.exists() and not folder.is_dir():
        raise ConfigError(flag, f"the output folder {folder} is not writable (it is a file, not a folder); "
                                f"give --{flag} a path in a writable folder")
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
    before that keep the shared ``runs/artifacts/``); what fails to load is noted in the store."""
    return ArtifactStore(store.path.parent / store.artifacts_dir, on_unreadable=store.note_unreadable_artifact)


class StoreMemo:
    """Values computed from a store's rows and artifacts, kept in this process per (store version,
    key): a report reads one store several times (its tables, then the README's summary), and each
    aggregation runs thousands of bootstrap draws. A changed store has a new version, so nothing
    stale is returned; callers get a copy they may change."""

    def __init__(self, maxsize: int = 4096) -> None:
        self.maxsize, self._items = maxsize, OrderedDict()

    def get(self, store: ResultsStore, key: Any, compute: Callable[[], Any]) -> Any:
        full = (store.version(), key)
        if full in self._items:
            self._items.move_to_end(full)
        else:
            self._items[full] = compute()
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return copy.deepcopy(self._items[full])
