"""Progress bars and log lines that one ``--quiet`` flag silences everywhere; warnings (what was
skipped or lost) that it does not. Every line is :func:`printable`: a file name or a value read from
a file cannot move the cursor, clear the screen or ring the bell."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_QUIET = os.environ.get("OVERSIGHT_QUIET", "") not in ("", "0")


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def is_quiet() -> bool:
    return _QUIET


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> Any:
    """tqdm on stderr, disabled when quiet (progress never pollutes ``--json`` stdout)."""
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=_QUIET or kwargs.pop("disable", False), **kwargs)


def printable(text: str) -> str:
    """``text`` with every non-printable character but the newline escaped (``\\x1b``, ``\\x00``, ``\\u2028``)."""
    return "".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii") for c in text)


def log(message: str) -> None:
    if not _QUIET:
        print(printable(message), file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A line on stderr that ``--quiet`` keeps: something the user asked for was skipped."""
    print(printable(message), file=sys.stderr, flush=True)
