"""Which stored run an amplification config is: its key, its label among other runs, its migration.

    from oversight.amplification.runs import run_key, migrate_store, stored_config
    key = run_key(AmplifyConfig(task="union_find", mode="amplify"))
    migrate_store(ResultsStore("runs/oversight.db"))   # once: rows keyed before today's identity

All three go through ``oversight.config.run_identity``, the function both families key by: every
field less those marked ``identity: False`` (device, threads, checkpoint_every), those at their
``key_neutral`` value, and those the mode ignores (``AmplifyConfig.unused_fields``). The test set a
run is measured on (``evaluation.TEST_SET``, stored as ``results["test_set"]``) is part of its key
and identity: a row measured on the retired test set ``v1`` is never returned as today's run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from oversight.amplification.config import AmplifyConfig
from oversight.amplification.evaluation import TEST_SET, stored_test_set
from oversight.config import as_stored_by_now, run_identity
from oversight.config import run_key as shared_run_key
from oversight.runtime import numerics, resolve_device
from oversight.store import ResultsStore

KIND = "amplify"
# bump when run_identity(AmplifyConfig) changes; stored rows are rekeyed once (4: the test set joined
# the key; 5: the numerics that ran, where they are not plain CPU fp32)
IDENTITY_VERSION = "5"
PLAIN = "cpu/fp32"  # the numerics every row had before they were keyed: left out of the key, so those keys hold


def run_numerics(cfg: AmplifyConfig) -> str:
    """The device type and precision this config runs with on this host (``--device auto`` resolved)."""
    return numerics(resolve_device(cfg.device), cfg.bf16)


def stored_numerics(record: dict[str, Any]) -> str:
    """The numerics a stored row ran with: recorded, or read off its device and bf16 setting."""
    results = record.get("results") or {}
    if results.get("numerics"):
        return str(results["numerics"])
    return numerics(str(results.get("device") or "cpu"), bool(record["config"].get("bf16", False)))


def run_key(cfg: AmplifyConfig, test_set: str = TEST_SET, ran_with: str | None = None) -> str:
    """Results-store key of a run: its identity, with the fields left to the task filled in (so
    ``--lr 0`` and the task's own rate are one run), the test set it is measured on, and the
    numerics it runs with (``ran_with``, else this host's) unless they are plain CPU fp32."""
    where = ran_with or run_numerics(cfg)
    extra = {} if where == PLAIN else {"numerics": where}
    return shared_run_key(cfg.with_task_defaults(), kind=KIND, test_set=test_set, **extra)


def stored_config(config: dict[str, Any]) -> AmplifyConfig:
    """A stored config as an AmplifyConfig (fields added since filled as the run had them, fields
    removed since dropped), not validated: a run stored under older rules still reads back."""
    names = {f.name for f in dataclasses.fields(AmplifyConfig)}
    return AmplifyConfig(**{k: v for k, v in as_stored_by_now(AmplifyConfig, config).items() if k in names})


def identity_of(record: dict[str, Any]) -> dict[str, Any]:
    """A stored row's identity: its config's, and the test set it was measured on."""
    return {**run_identity(stored_config(record["config"])), "test_set": stored_test_set(record.get("results") or {}),
            "numerics": stored_numerics(record)}


def migrate_store(store: ResultsStore) -> int:
    """Rekey amplify rows (and their model artifacts) stored under an earlier identity (device and
    threads in the key; no test set in it), each to the key of the test set it was measured on."""

    def key_of(record: dict[str, Any]) -> str | None:
        try:
            return run_key(stored_config(record["config"]), stored_test_set(record["results"]), stored_numerics(record))
        except (TypeError, ValueError, KeyError):  # a config this release cannot read stays as it is
            return None

    return store.migrate_keys(KIND, IDENTITY_VERSION, key_of)
