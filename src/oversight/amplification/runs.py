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
from oversight.store import ResultsStore

KIND = "amplify"
# bump when run_identity(AmplifyConfig) changes; stored rows are rekeyed once (4: the test set joined the key)
IDENTITY_VERSION = "4"


def run_key(cfg: AmplifyConfig, test_set: str = TEST_SET) -> str:
    """Results-store key of a run: its identity, with the fields left to the task filled in (so
    ``--lr 0`` and the task's own rate are one run), and the test set it is measured on."""
    return shared_run_key(cfg.with_task_defaults(), kind=KIND, test_set=test_set)


def stored_config(config: dict[str, Any]) -> AmplifyConfig:
    """A stored config as an AmplifyConfig (fields added since filled as the run had them, fields
    removed since dropped), not validated: a run stored under older rules still reads back."""
    names = {f.name for f in dataclasses.fields(AmplifyConfig)}
    return AmplifyConfig(**{k: v for k, v in as_stored_by_now(AmplifyConfig, config).items() if k in names})


def identity_of(record: dict[str, Any]) -> dict[str, Any]:
    """A stored row's identity: its config's, and the test set it was measured on."""
    return {**run_identity(stored_config(record["config"])), "test_set": stored_test_set(record.get("results") or {})}


def migrate_store(store: ResultsStore) -> int:
    """Rekey amplify rows (and their model artifacts) stored under an earlier identity (device and
    threads in the key; no test set in it), each to the key of the test set it was measured on."""

    def key_of(record: dict[str, Any]) -> str | None:
        try:
            return run_key(stored_config(record["config"]), stored_test_set(record["results"]))
        except (TypeError, ValueError, KeyError):  # a config this release cannot read stays as it is
            return None

    return store.migrate_keys(KIND, IDENTITY_VERSION, key_of)
