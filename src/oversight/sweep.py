"""Sweep executors: the same list of runs on this machine or on a Ray cluster.

A sweep is a list of configs and a function ``fn(config, store)`` that runs one of them and
writes its row to the results store. Each finished run is committed on its own, so Ctrl-C or a
crash mid-sweep keeps every finished run; rerunning the sweep skips them (``fn`` checks the store).

    run_jobs(run_experiment, configs, store_path="runs/oversight.db", executor="local")
    run_jobs(run_experiment, configs, store_path="/shared/oversight.db", executor="ray")  # ray.init() picks the cluster
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oversight.errors import MissingPackageError, UnknownNameError
from oversight.progress import log
from oversight.store import ResultsStore

Job = Callable[[Any, ResultsStore], Any]


def run_local(fn: Job, configs: list[Any], store_path: str) -> list[Any]:
    store = ResultsStore(store_path)
    results = []
    for i, cfg in enumerate(configs, 1):
        log(f"[{i}/{len(configs)}] {_describe(cfg)}")
        results.append(fn(cfg, store))
    return results


def run_ray(fn: Job, configs: list[Any], store_path: str) -> list[Any]:
    """One Ray task per run. Workers write to the same SQLite file, so on a multi-node cluster
    ``store_path`` must be on a shared filesystem (SQLite's locking serialises the writes)."""
    try:
        import ray
    except ImportError:
        raise MissingPackageError("ray (for --executor ray)", "pip install 'oversight[ray]'") from None
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True)

    @ray.remote
    def one(cfg: Any) -> Any:
        return fn(cfg, ResultsStore(store_path))

    return ray.get([one.remote(cfg) for cfg in configs])


EXECUTORS: dict[str, Callable[[Job, list[Any], str], list[Any]]] = {"local": run_local, "ray": run_ray}


def run_jobs(fn: Job, configs: list[Any], store_path: str, executor: str = "local") -> list[Any]:
    if executor not in EXECUTORS:
        raise UnknownNameError("executor", executor, list(EXECUTORS))
    return EXECUTORS[executor](fn, configs, store_path)


def _describe(cfg: Any) -> str:
    fields = getattr(cfg, "__dataclass_fields__", {})
    return " ".join(f"{k}={getattr(cfg, k)}" for k in fields if k in (
        "dataset", "weak", "strong", "loss", "seed", "task", "mode", "size"))
