"""Examples, and reading them from the files people have: ``file:`` and ``hf:`` dataset names.

Usage::

    from oversight.w2s.files import load_file, load_hf

    source = load_file("file:data/reviews.csv?text=review&label=stars&positive=4,5&encoding=latin-1")
    source.examples          # list[Example], in file order (not yet cleaned or split)
    source.rows, source.dropped   # 800, Counter({"with empty text": 3})
    load_hf("hf:/data/saved_sst2?text=sentence")
    load_hf("hf:/data/boolq_copy?format=boolq")   # one of the paper's datasets, its formatter (hub_datasets)

``oversight.w2s.datasets.load_dataset`` calls these, then cleans and splits; its docstring lists the
options. Text files are read as UTF-8 with or without a byte-order mark unless ``?encoding=`` names
another codec; bytes that the codec cannot read are one :class:`DatasetFormatError` naming the file,
the byte offset and the option to use. Rows whose text is empty or missing, or whose label is
missing, are dropped and counted (``Source.dropped``); numbers in a text column are read as their
string form.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from oversight.errors import ConfigError, MissingPackageError, OversightError
from oversight.progress import printable

COMMON_OPTIONS = {"text", "label", "positive", "negative", "group", "id"}
FILE_OPTIONS = COMMON_OPTIONS | {"encoding"}
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
# what --dataset's help and `oversight datasets` say of file: names (every FILE_OPTIONS option)
FILE_HELP = "file: .jsonl/.json/.csv/.tsv; ?text=,?label=,?group=,?encoding=... (README)"
HF_OPTIONS = COMMON_OPTIONS | {"split", "cache_dir", "format"}
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8; a leading byte-order mark (Excel writes one) is not data
# Why a row was dropped, as the count line shows it.
EMPTY_TEXT, NO_LABEL, OTHER_LABEL = "with empty text", "with no label", "with a label outside ?positive/?negative"


class DatasetFormatError(OversightError, ValueError):
    """A data file or dataset that cannot be turned into examples (missing column, bad label, ...)."""


class DatasetFileNotFoundError(OversightError, FileNotFoundError):
    """A ``file:`` or local ``hf:`` path that does not exist."""


@dataclass(frozen=True)
class Example:
    id: str  # stable, content-derived
    text: str
    label: int  # 0 or 1
    group: str  # unit of relatedness (movie, country, ...): never split across splits
    # Other groups the example mentions (geo_facts: "France borders Spain" mentions Spain), so
    # check_disjoint can prove that no split mentions another split's entities.
    entities: tuple[str, ...] = ()
    kind: str = ""  # sub-type for per-kind analysis (geo_facts: capital, city, ...); "" if none

    def __post_init__(self) -> None:
        if self.label not in (0, 1) or isinstance(self.label, bool):
            raise ValueError(f"Example {self.id!r}: label must be the int 0 or 1, got {self.label!r}")


@dataclass
class Source:
    """The examples of one ``file:``/``hf:`` source and what reading it dropped."""

    where: str  # the file (or hf: name) that messages name
    examples: list[Example]
    rows: int  # rows read, before any was dropped
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> rows


def content_id(text: str, label: int) -> str:
    return hashlib.sha1(f"{label}\t{text}".encode()).hexdigest()[:16]


def normalize_text(text: str) -> str:
    return " ".join(text.casefold().split())


def parse_spec(spec: str, prefix: str, allowed: set[str]) -> tuple[str, dict[str, str]]:
    """'PREFIX:BODY?k=v&k=v' -> (BODY, options). A BODY that exists on disk as a whole wins over
    splitting at '?', so an odd file name still loads (without options)."""
    body = spec[len(prefix):]
    if os.path.exists(os.path.expanduser(body)):
        return body, {}
    body, _, query = body.partition("?")
    # Not urllib's parse_qsl: it reads "+" as a space, and "split=train+validation" needs the "+".
    options = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("dataset", f"option {item!r} in {spec!r} is not KEY=VALUE")
        options[unquote(key.strip())] = unquote(value.strip())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError("dataset", f"unknown option(s) {', '.join(unknown)} in {spec!r}; "
                                     f"allowed: {', '.join(sorted(allowed))}")
    if not body:
        raise ConfigError("dataset", f"{spec!r} names no {'file' if prefix == 'file:' else 'dataset'}")
    return body, options


# ----------------------------------------------------------------------------- rows -> examples


def _missing(value: Any) -> bool:
    """None, NaN (pandas' empty cell) or a blank string: no value."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def binary_label(value: Any, options: dict[str, str], where: str, names: list[str] | None = None) -> int | None:
    """0/1 for a raw label value; None to drop the row (only with an explicit ``negative`` list)."""
    if "positive" in options or "negative" in options:
        forms = {str(value)} | ({names[value]} if names and isinstance(value, int) and 0 <= value < len(names)
                               else set())
        pos = {v.strip() for v in options.get("positive", "").split(",") if v.strip()}
        neg = {v.strip() for v in options.get("negative", "").split(",") if v.strip()}
        if forms & pos:
            return 1
        if forms & neg or not neg:
            return 0
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    # "1.0": a CSV written from a float column
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "0.0", "1.0", "true", "false"):
        return int(value.strip().lower() in ("1", "1.0", "true"))
    raise DatasetFormatError(f"{where}: label {value!r} is not binary (0/1 or true/false); map labels with "
                             "?positive=VALUE[,VALUE] (and optionally &negative=...)")


def _text_part(value: Any, column: str, where: str) -> str | None:
    """A text cell as a string (numbers in their string form); None when it is missing."""
    if _missing(value):
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)):
        return str(value)
    raise DatasetFormatError(f"{where}: column {column!r} holds a {type(value).__name__}, not text; "
                             "choose the text column with ?text=COLUMN")


def rows_to_examples(rows: Iterable[Mapping[str, Any]], columns: list[str], options: dict[str, str],
                     where: str, label_names: list[str] | None = None) -> Source:
    text_cols = [c.strip() for c in options.get("text", "text").split(",")]
    label_col = options.get("label", "label")
    # "group" and "id" columns are used when present, unless an option names other ones.
    group_col = options.get("group", "group" if "group" in columns else None)
    id_col = options.get("id", "id" if "id" in columns else None)
    for col in [*text_cols, label_col, group_col, id_col]:
        if col is not None and col not in columns:
            option = {label_col: "label", group_col: "group", id_col: "id"}.get(col, "text")
            shown = ", ".join(_shown(c) for c in columns[:20]) + (", ..." if len(columns) > 20 else "")
            raise DatasetFormatError(f"{where}: no column {col!r} (columns: {shown or 'none'}); "
                                     f"choose one with ?{option}=COLUMN")
    out, dropped, n = [], Counter(), 0
    for n, row in enumerate(rows, 1):
        parts = [_text_part(row[c], c, f"{where} row {n}") for c in text_cols]
        if any(p is None for p in parts) or not any(parts):
            dropped[EMPTY_TEXT] += 1
            continue
        if _missing(row[label_col]):
            dropped[NO_LABEL] += 1
            continue
        label = binary_label(row[label_col], options, f"{where} row {n}", label_names)
        if label is None:
            dropped[OTHER_LABEL] += 1
            continue
        text = "\n".join(parts)
        ident = content_id(text, label) if id_col is None or _missing(row[id_col]) else str(row[id_col])
        # Without a group each distinct text is its own group (the cleaning step merges duplicates).
        group = ("text:" + content_id(normalize_text(text), 0) if group_col is None or _missing(row[group_col])
                 else str(row[group_col]))
        out.append(Example(ident, text, label, group))
    if not out:
        why = ", ".join(f"{k} {reason}" for reason, k in dropped.items())
        raise DatasetFormatError(f"{where}: no usable rows (of {n} rows{': ' + why if why else ''})")
    return Source(where, out, n, dropped)


def _shown(name: str, limit: int = 40) -> str:
    """A name read from a file, as a message may show it: escaped (no terminal control) and short."""
    name = printable(str(name)).replace("\n", "\\n")
    return name if len(name) <= limit else name[:limit] + "..."


# ----------------------------------------------------------------------------- file:


def read_text(path: Path, encoding: str) -> str:
    """The file decoded with ``encoding``; a leading byte-order mark is dropped."""
    where = str(path)
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":
        raise DatasetFormatError(f"{where}: is a zip archive (an Excel workbook?), not text; save it as CSV")
    try:
        text = data.decode(encoding).removeprefix("\ufeff")
    except LookupError:
        raise ConfigError("dataset", f"?encoding={encoding} is not a text encoding Python knows; "
                                     "e.g. utf-8, latin-1, cp1252, utf-16") from None
    except UnicodeDecodeError as err:
        codec = codecs.lookup(encoding).name
        # utf-8-sig reports positions after the mark it skipped
        offset = err.start + (3 if codec == "utf-8-sig" and data.startswith(codecs.BOM_UTF8) else 0)
        # a newline is one 0x0a byte in ASCII-compatible codecs only
        newlines = data.count(b"\n", 0, offset)
        line = "" if codec.startswith(("utf-16", "utf-32")) else f" (line {newlines + 1})"
        utf16 = data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        hint = "?encoding=utf-16" if utf16 else "?encoding=latin-1 (or cp1252, utf-16, ...)"
        name = "UTF-8" if codec.startswith("utf-8") else codec
        raise DatasetFormatError(f"{where}: byte 0x{data[offset]:02x} at offset {offset}{line} is not valid "
                                 f"{name}; if the file is in another encoding, name it with {hint}") from None
    if "\x00" in text:  # no text format has NUL characters; a binary file decoded as latin-1 does
        raise DatasetFormatError(f"{where}: is a binary file, not text (a NUL character at position "
                                 f"{text.index(chr(0))}); give a {', '.join(FILE_SUFFIXES)} text file")
    return text


def _read_csv(text: str, where: str, delimiter: str) -> tuple[list[dict[str, Any]], list[str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        rows = list(reader)
    except csv.Error as err:
        raise DatasetFormatError(f"{where} line {reader.line_num}: not valid CSV ({err})") from None
    return rows, list(reader.fieldnames or [])


def _read_jsonl(text: str, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    rows = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and the like, and line numbers
    # must be the file's
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{where} line {n}: invalid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(row, dict):
            hint = "; a file holding one JSON list is .json" if isinstance(row, list) else ""
            raise DatasetFormatError(f"{where} line {n}: a JSON {type(row).__name__}, not an object{hint}")
        rows.append(row)
    return [defaultdict(lambda: None, r) for r in rows], sorted({k for r in rows for k in r})


def _read_json(text: str, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        hint = "; a file with one JSON object per line is .jsonl" if err.msg == "Extra data" else ""
        raise DatasetFormatError(f"{where}: invalid JSON ({err.msg}, line {err.lineno}){hint}") from None
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            raise DatasetFormatError(f"{where}: columns have different lengths {sorted(lengths)}")
        data = [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]
    if not isinstance(data, list) or any(not isinstance(r, dict) for r in data):
        raise DatasetFormatError(f"{where}: expected a list of objects or an object of equal-length columns")
    return [defaultdict(lambda: None, r) for r in data], sorted({k for r in data for k in r})


def file_path(spec: str) -> tuple[Path, dict[str, str]]:
    """The path and options of a ``file:`` name; a path that is missing or a folder is one error naming it."""
    body, options = parse_spec(spec, "file:", FILE_OPTIONS)
    path = Path(body).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in FILE_SUFFIXES)[:5]
        raise DatasetFormatError(f"{str(path)!r} (from {spec!r}) is a directory, not a data file; give file: one "
                                 f"{'/'.join(FILE_SUFFIXES)} file" + (f" (it holds {', '.join(map(_shown, inside))})"
                                                                      if inside else ""))
    if not path.is_file():
        raise DatasetFileNotFoundError(f"no such file: {str(path)!r} (from {spec!r})")
    return path, options


def load_file(spec: str) -> Source:
    path, options = file_path(spec)
    suffix, where = path.suffix.lower(), str(path)
    if suffix not in FILE_SUFFIXES:
        raise DatasetFormatError(f"{where}: unsupported file type {suffix!r}; use .jsonl, .json, .csv or .tsv")
    encoding = options.get("encoding") or DEFAULT_ENCODING
    text = read_text(path, encoding)
    if suffix in (".csv", ".tsv"):
        rows, columns = _read_csv(text, where, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".jsonl":
        rows, columns = _read_jsonl(text, where)
    else:
        rows, columns = _read_json(text, where)
    return rows_to_examples(rows, columns, options, where)


# ----------------------------------------------------------------------------- hf:


def load_hf(spec: str) -> Source:
    body, options = parse_spec(spec, "hf:", HF_OPTIONS)
    try:
        import datasets as hf  # the Hugging Face package; imported late, it takes ~1 s
    except ImportError:
        raise MissingPackageError("the Hugging Face 'datasets' package", "pip install datasets") from None
    data = _open_hf(spec, body, options, hf)
    if options.get("format"):
        return _formatted(spec, body, options, data, hf)
    data = _pick_hf_split(data, options.get("split"), body, hf)
    label_col = options.get("label", "label")
    feature = data.features.get(label_col) if hasattr(data, "features") else None
    names = list(feature.names) if isinstance(feature, hf.ClassLabel) else None
    return rows_to_examples(_iter_rows(data.to_dict()), list(data.column_names), options, f"hf:{body}", names)


def _formatted(spec: str, body: str, options: dict[str, str], data: Any, hf: Any) -> Source:
    """``?format=NAME``: a local copy of one of the paper's datasets, through its formatter."""
    from oversight.w2s.hub_datasets import formatted_source  # it imports this module

    clash = sorted(COMMON_OPTIONS & set(options))
    if clash:
        raise ConfigError("dataset", f"?format= reads the dataset's own columns; drop {', '.join(clash)} "
                                     f"from {spec!r}")
    if options.get("split"):
        data = _pick_hf_split(data, options["split"], body, hf)
    return formatted_source(options["format"], data, f"hf:{body}")


def _open_hf(spec: str, body: str, options: dict[str, str], hf: Any) -> Any:
    """The Dataset or DatasetDict that ``hf:BODY`` names: a local directory or file, or a hub id."""
    name, config = body, None
    if not os.path.exists(os.path.expanduser(body)) and ":" in body:
        name, config = body.split(":", 1)
    local = Path(name).expanduser()
    kwargs = {"cache_dir": options["cache_dir"]} if options.get("cache_dir") else {}
    try:
        if local.is_dir() and ((local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()
                               or (local / "state.json").exists()):
            data = hf.load_from_disk(str(local))
        elif local.is_file():
            builder = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}.get(
                local.suffix.lower())
            if builder is None:
                raise DatasetFormatError(f"{local}: unsupported file type for hf:; use a directory or "
                                         ".csv/.json/.jsonl/.parquet")
            extra = {"delimiter": "\t"} if local.suffix.lower() == ".tsv" else {}
            data = hf.load_dataset(builder, data_files=str(local), **extra, **kwargs)
        elif local.exists() or name.startswith((".", "/", "~")):
            if not local.exists():
                raise DatasetFileNotFoundError(f"no such file or directory: {str(local)!r} (from {spec!r})")
            data = hf.load_dataset(str(local), config, **kwargs)
        else:
            data = hf.load_dataset(name, config, **kwargs)
    except OversightError:
        raise
    except Exception as err:  # noqa: BLE001 - datasets raises many types; all mean "could not load"
        hint = "" if local.exists() else (" (a hub id: offline, it must already be in the HF cache; "
                                          "or pass a local path)")
        raise DatasetFormatError(f"hf: could not load {body!r}{hint}: {type(err).__name__}: {err}") from err
    return data


def _pick_hf_split(data: Any, split: str | None, body: str, hf: Any) -> Any:
    if not isinstance(data, (hf.DatasetDict, dict)):
        if split:
            raise ConfigError("dataset", f"hf:{body} has no named splits; drop ?split={split}")
        return data
    available = list(data)
    if split is None:
        if "train" in data:
            return data["train"]
        if len(available) == 1:
            return data[available[0]]
        raise ConfigError("dataset", f"hf:{body} has splits {', '.join(available)}; choose with ?split=NAME "
                                     "(NAME+NAME to combine)")
    wanted = [s.strip() for s in split.split("+")]
    missing = [s for s in wanted if s not in data]
    if missing:
        raise ConfigError("dataset", f"hf:{body} has no split {', '.join(missing)}; available: "
                                     f"{', '.join(available)}")
    return hf.concatenate_datasets([data[s] for s in wanted]) if len(wanted) > 1 else data[wanted[0]]


def _iter_rows(columns: dict[str, list[Any]]) -> Iterable[dict[str, Any]]:
    names = list(columns)
    for values in zip(*(columns[n] for n in names), strict=True):
        yield dict(zip(names, values, strict=True))
