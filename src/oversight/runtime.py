"""Seeds, devices, threads and mixed precision: the same for both experiment families."""

from __future__ import annotations

import contextlib
import functools
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from oversight.errors import ConfigError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> str:
    """'auto' -> cuda when available, else cpu; an explicit device that is absent is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", f"{name!r} requested but torch.cuda.is_available() is False")
    if name != "cpu" and not name.startswith(("cuda", "mps")):
        raise ConfigError("device", f"{name!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return name


def set_threads(n: int | None = None) -> None:
    """Use all cores by default (OVERSIGHT_THREADS overrides), not torch's guess."""
    if n is not None and n < 0:
        raise ConfigError("threads", f"must be >= 1, or 0 for all cores; got {n}")
    env = os.environ.get("OVERSIGHT_THREADS", "0") or "0"
    if not env.isdigit():
        raise ConfigError("OVERSIGHT_THREADS", f"must be a whole number >= 0 (0 = all cores), got {env!r}")
    n = n or int(env) or (os.cpu_count() or 1)
    torch.set_num_threads(n)


@functools.lru_cache(maxsize=1)
def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:  # not Linux: ask oneDNN whether it has a bf16 path
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except Exception:  # noqa: BLE001
            return False


def bf16_is_fast(device: str) -> bool:
    """Whether bf16 autocast is supported AND a speed-up on ``device``: on CPUs without native
    bf16 (AVX512-BF16/AMX) it is emulated and slower than fp32."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device == "cpu" and _cpu_has_native_bf16()


def numerics(device: str, bf16: bool = True) -> str:
    """The arithmetic a run actually uses, as part of its identity: the device type, and ``bf16-autocast``
    where bf16 is asked for and :func:`autocast` turns it on there, else ``fp32`` (``cpu/fp32``,
    ``cuda/bf16-autocast``). Two hosts that differ in it give different numbers for one config."""
    kind = "cuda" if device.startswith("cuda") else device.split(":", 1)[0]
    return f"{kind}/{'bf16-autocast' if bf16 and bf16_is_fast(device) else 'fp32'}"


@contextlib.contextmanager
def autocast(device: str, enabled: bool = True) -> Iterator[None]:
    """bf16 autocast where it is faster (2-3x on CPUs with native bf16); a no-op elsewhere."""
    if enabled and bf16_is_fast(device):
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16):
            yield
    else:
        yield


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Temporarily run torch ops on ``n`` threads. Small models (a head over cached features) are
    faster on one thread: intra-op parallelism costs more than it gains, and 20x more when the
    cores are shared with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The commit of this checkout when the process first asked (``+dirty`` with uncommitted changes;
    ``OVERSIGHT_COMMIT`` where the code travels without its .git): the code it imported, even if
    HEAD moves while it runs. Entry points call it at start."""
    import subprocess

    if os.environ.get("OVERSIGHT_COMMIT"):  # code shipped without its .git (a cluster, a copied tree)
        return os.environ["OVERSIGHT_COMMIT"]
    root = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip() or None
        # dirty means the code this process imports differs from the commit (docs and data do not count)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if commit and dirty else commit


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``; else what ``platform`` knows)."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def provenance() -> dict[str, object]:
    """Where and how a run was made, for its stored row: the code's commit (:func:`code_commit`,
    ``+dirty`` for an uncommitted tree), the host and its CPU model, torch's threads, the load
    average, and the Python and torch versions."""
    import platform

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"commit": code_commit(), "host": platform.node(), "cpu_model": cpu_model(),
            "torch_threads": torch.get_num_threads(), "load_average": load, "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__}
