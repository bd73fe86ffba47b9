"""Typed experiment configs -> command-line flags, with one place for each field's documentation.

Each experiment kind has one dataclass. A field's help text lives in ``metadata["help"]`` and is
what ``--help`` prints (as CleanRL's ``Args``); its hash keys the run in the results store.

    @dataclass
    class MyConfig:
        lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
        def validate(self) -> None:
            if self.lr <= 0: raise ConfigError("lr", "must be > 0")

    add_arguments(parser, MyConfig); cfg = from_args(MyConfig, parser.parse_args())

A field's metadata also says how it takes part in a run's identity (:func:`run_identity`, the one
function that keys, labels and migrates stored runs of every family): ``"identity": False`` for a
field that changes how a run executes but not its numbers (device, threads, checkpoints), and
``"key_neutral": value`` for a field added after runs were stored, left out at the value that
reproduces them. Flags record whether the user gave them (:func:`given_flags`), so a preset fills
only the others. Float fields refuse nan and inf, and a ``seed`` field what numpy cannot seed
(>= 2**32), whatever the config's own ``validate`` says; a command whose training overflows on huge
settings also refuses floats beyond ``float_limit`` (:data:`FLOAT_LIMIT`) at its flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, TypeVar

from oversight.errors import ConfigError

C = TypeVar("C")
# beyond any sensible setting, and far enough below float32's largest (3.4e38) that what training
# computes from a setting (Adam's step is 10 x lr at its first step) stays finite: add_arguments(float_limit=)
FLOAT_LIMIT = 1e30
SEED_LIMIT = 2**32  # numpy's legacy generator, which every family seeds, takes 0 <= seed < 2**32


GIVEN = "given_flags"  # namespace attribute: the dests the user gave on the command line


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _record_given(namespace: argparse.Namespace, dest: str) -> None:
    given = set(getattr(namespace, GIVEN, ()))
    given.add(dest)
    setattr(namespace, GIVEN, given)


class StoreGiven(argparse._StoreAction):
    """``store`` that also records the flag as given (a preset must not override it, whatever its value)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _record_given(namespace, self.dest)


class BooleanGiven(argparse.BooleanOptionalAction):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _record_given(namespace, self.dest)


def given_flags(namespace: argparse.Namespace) -> set[str]:
    """The dests of the flags given on the command line (not those left at their defaults)."""
    return set(getattr(namespace, GIVEN, ()))


def count(text: str) -> int:
    """argparse type of a count flag (``--seeds``): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(underlying type, optional?) of an annotation such as ``int | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                  lists: tuple[str, ...] = (), notes: dict[str, str] | None = None,
                  float_limit: float | None = None) -> None:
    """Add one ``--flag`` per dataclass field; the help text is the field's documentation, then the
    command's ``notes`` on it, then, for the fields in ``lists``, that a comma list runs each value.
    With ``float_limit``, a float flag larger in size is refused (one line naming the flag)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = field_help(f, lists, notes or {}).replace("%", "%%")  # argparse formats help with %
        choices = f.metadata.get("choices")
        if tp is bool:
            parser.add_argument(_flag(f.name), dest=f.name, action=BooleanGiven, default=default, help=help_text)
            continue
        conv = tp if tp in (int, float, str) else str

        def convert(text: str, conv: Any = conv, optional: bool = optional, name: str = f.name,
                    whole: bool = True) -> Any:
            if optional and text.lower() in ("none", "null", ""):
                return None
            if whole and name in lists and conv is not str:  # a typed comma list: each value checked, the text kept
                return ",".join(str(convert(part, whole=False)) for part in split_list(text))
            try:
                value = conv(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {conv.__name__}, got {text!r}") from None
            problem = out_of_range(name, value, float_limit)
            if problem:
                raise argparse.ArgumentTypeError(problem)
            return value

        if default is not None and "default" not in help_text:
            help_text = f"{help_text} (default: {default})"
        if choices:
            help_text = f"{help_text}; one of: {', '.join(map(str, choices))}"
        parser.add_argument(_flag(f.name), dest=f.name, type=convert, default=default, action=StoreGiven,
                            choices=choices, help=help_text,
                            metavar=f.metadata.get("metavar", conv.__name__.upper()))


def field_help(f: dataclasses.Field, lists: tuple[str, ...] = (), notes: dict[str, str] | None = None) -> str:
    """A field's ``--help``: its documentation, a command's note on it, and whether it takes a comma list."""
    text = f.metadata.get("help", "")
    if notes and f.name in notes:
        text = f"{text}; {notes[f.name]}"
    return f"{text}; a comma list runs each" if f.name in lists else text


def from_args(cls: type[C], namespace: argparse.Namespace, **overrides: Any) -> C:
    """Build (and validate) a config from parsed flags; unknown namespace entries are ignored."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    values = {k: v for k, v in vars(namespace).items() if k in names}
    values.update(overrides)
    return make_config(cls, **values)


def make_config(cls: type[C], **values: Any) -> C:
    """Construct a config from keyword values, naming the field when one is unknown or invalid."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in names:
            raise ConfigError(key, f"no such field in {cls.__name__}; fields: {', '.join(sorted(names))}")
    cfg = cls(**values)
    check_finite(cfg)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def out_of_range(name: str, value: Any, float_limit: float | None = None) -> str | None:
    """Why field ``name`` may not hold ``value`` (None when it may): nan and inf pass ``x > 0``
    checks (inf) or every comparison (nan) and are not valid JSON; a seed outside numpy's range;
    a float beyond ``float_limit`` (where given) overflows to inf in float32 training."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if float_limit is not None and isinstance(value, float) and abs(value) > float_limit:
        return f"must be at most {float_limit:g} in size (float32 training overflows near it), got {value:g}"
    if name == "seed" and isinstance(value, int) and not isinstance(value, bool) and value >= SEED_LIMIT:
        return f"must be < 2**32 = {SEED_LIMIT} (numpy seeds are 32-bit), got {value}"
    return None


def check_finite(cfg: Any) -> None:
    """Refuse (one ConfigError naming the field) a value no config may hold: :func:`out_of_range`."""
    for f in dataclasses.fields(cfg):
        problem = out_of_range(f.name, getattr(cfg, f.name))
        if problem:
            raise ConfigError(f.name, problem)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def key_fields(cfg: Any) -> dict[str, Any]:
    """The fields of a config that identify its run: all of them, except a field added after runs
    were stored while it holds its ``metadata={"key_neutral": value}``, the value that changes
    nothing, so the stored runs keep their keys (and a resumed sweep does not re-run them)."""
    fields = config_to_dict(cfg)
    for f in dataclasses.fields(cfg):
        if "key_neutral" in f.metadata and fields[f.name] == f.metadata["key_neutral"]:
            del fields[f.name]
    return fields


def run_identity(cfg: Any) -> dict[str, Any]:
    """What decides a run's numbers, for every family: its key (:func:`run_key`), its label in tables
    and figures (:func:`varying_fields` over identities) and the key stored rows migrate to.

    All fields, less those with ``metadata["identity"] is False`` (how it runs: device, threads,
    checkpoints), those at their ``key_neutral`` value, and those the config says it does not use
    (a config's ``unused_fields(values) -> set[str]``, e.g. an option of another mode)."""
    values = key_fields(cfg)
    for f in dataclasses.fields(cfg):
        if f.metadata.get("identity") is False:
            values.pop(f.name, None)
    unused = getattr(cfg, "unused_fields", None)
    if callable(unused):
        for name in unused(values):
            values.pop(name, None)
    return values


def run_key(cfg: Any, kind: str, **extra: Any) -> str:
    """The results-store key of a run: the hash of its kind, its identity and any upstream keys."""
    return config_hash(run_identity(cfg), kind=kind, **extra)


def as_stored_by_now(cls: type, stored: dict[str, Any]) -> dict[str, Any]:
    """A config stored before some fields existed, with those fields filled in as the run had them:
    the ``key_neutral`` value where a field has one (it is the value that reproduces the old
    behaviour, even if the default has changed since), else the field's default."""
    filled = {}
    for f in dataclasses.fields(cls):
        if f.name in stored:
            continue
        if "key_neutral" in f.metadata:
            filled[f.name] = f.metadata["key_neutral"]
        elif f.default is not dataclasses.MISSING:
            filled[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            filled[f.name] = f.default_factory()
    return {**filled, **stored}


def varying_fields(configs: list[dict[str, Any]], ignore: tuple[str, ...] = (),
                   missing_is_value: bool = True) -> list[str]:
    """The fields whose values differ among stored configs: what tells runs apart when they are
    plotted or tabled together. A field missing from one config counts as a value of its own, or,
    with ``missing_is_value=False``, as no value (a field a config does not use)."""
    names = dict.fromkeys(k for c in configs for k in c if k not in ignore)
    if missing_is_value:
        return [k for k in names if len({canonical_json(c.get(k)) for c in configs}) > 1]
    return [k for k in names if len({canonical_json(c[k]) for c in configs if k in c}) > 1]


def label_fields(cfg: Any) -> dict[str, Any]:
    """A run's identity with its ``key_neutral`` fields filled in at the value it ran with: what its
    label in a table or figure may name (a field it does not use stays out)."""
    values = run_identity(cfg)
    for f in dataclasses.fields(cfg):
        if "key_neutral" in f.metadata and f.name not in values and f.metadata.get("identity") is not False:
            values[f.name] = getattr(cfg, f.name)
    return values


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(cfg: Any, kind: str, **extra: Any) -> str:
    """Stable key of a run: the experiment kind, every config field, and any upstream keys."""
    payload = {"kind": kind, "config": key_fields(cfg) if dataclasses.is_dataclass(cfg) else cfg}
    if extra:
        payload["extra"] = extra
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]


def split_list(value: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``: the comma lists of sweep flags."""
    return [v.strip() for v in str(value).split(",") if v.strip()]


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every experiment command shares: where results go and how they are printed."""
    from oversight.store import DEFAULT_STORE

    parser.add_argument("--store", default=DEFAULT_STORE,
                        help=f"SQLite results store, made if missing; artifacts go beside it (default: {DEFAULT_STORE})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def help_of(cls: type, name: str) -> str:
    """The documentation of one field (for tables and reports)."""
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)
