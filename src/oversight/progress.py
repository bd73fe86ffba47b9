"""Progress bars that one ``--quiet`` flag silences everywhere."""

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


def log(message: str) -> None:
    if not _QUIET:
        print(message, file=sys.stderr, flush=True)
