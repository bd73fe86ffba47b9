"""The weak-to-strong experiment's config, and what identifies its runs in the results store.

    cfg = make_config(W2SConfig, dataset="rotten_tomatoes", weak="bow", strong="minilm-l6", loss="logconf")
    cfg.validate(); cfg.resolve_names()
    experiment_key(cfg)   # the store key of one seed of this cell

Every field is a ``w2s run`` / ``w2s sweep`` flag with its help as the CLI help.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oversight.config import run_key
from oversight.errors import ConfigError, UnknownNameError
from oversight.runtime import numerics, resolve_device
from oversight.store import ResultsStore
from oversight.w2s import supervisors
from oversight.w2s.gen_data import is_generative
from oversight.w2s.losses import LOSSES, loss_options, loss_specific_options
from oversight.w2s.models import get_model_spec

MODES = ("head", "finetune", "probe")
METHODS = ("direct", "bootstrap", "genft", "bootstrap+genft")
SELECTS = ("weak-val", "last", "oracle")
HEADS = ("logistic", "mlp")
STUDENTS = ("naive", "two-head")


def uses_chain(method: str) -> bool:
    """Whether ``method`` climbs a --chain of rungs (``bootstrap``, ``bootstrap+genft``)."""
    return "bootstrap" in method.split("+")


def uses_genft(method: str) -> bool:
    """Whether ``method`` LM-finetunes the strong model first (``genft``, ``bootstrap+genft``)."""
    return "genft" in method.split("+")


@dataclass
class W2SConfig:
    """One weak-to-strong experiment: a (dataset, weak, strong, loss) cell at one seed."""

    dataset: str = field(default="rotten_tomatoes", metadata={
        "help": "a name (`oversight datasets`), file:PATH or hf:NAME[:CONFIG]"})
    weak: str = field(default="minilm-l6", metadata={"help": "weak supervisor model (see `oversight models`) or hf:ID_OR_PATH"})
    strong: str = field(default="mpnet-base", metadata={"help": "strong student model (see `oversight models`) or hf:ID_OR_PATH"})
    loss: str = field(default="xent", metadata={"help": "student loss on weak labels: xent, logconf, product, entropy or window (see oversight.w2s.losses)"})
    mode: str = field(default="head", metadata={
        "help": "what trains: head (on cached frozen features), finetune (the backbone, or its --top-k-layers), probe (logistic regression)",
        "choices": MODES})
    method: str = field(default="direct", metadata={"key_neutral": "direct", "help": "how the student learns: direct (weak labels), bootstrap (via --chain), genft (LM-finetuned on unlabelled train text first), bootstrap+genft"})
    chain: str = field(default="", metadata={"key_neutral": "", "help": "bootstrap, bootstrap+genft: intermediate models between --weak and --strong, weakest first (comma list; a sweep uses its ladder's)"})
    head: str = field(default="mlp", metadata={"help": "head on frozen features in head mode (mlp = more capacity than logistic)", "choices": HEADS})
    seed: int = field(default=0, metadata={"help": "seed of the data split and of training (>= 0)"})
    epochs: int | None = field(default=None, metadata={"help": "training epochs (default: 10 for heads, 2 for finetuning)"})
    lr: float | None = field(default=None, metadata={"help": "learning rate (default: 1e-3 for heads, the rung's own for finetuning)"})
    batch_size: int | None = field(default=None, metadata={"help": "batch size (default: 64 for heads, the rung's own for finetuning)"})
    alpha_max: float = field(default=0.75, metadata={"help": "logconf, entropy: final weight of the self-target term (higher = the student trusts itself more than the weak labels)"})
    warmup_frac: float = field(default=0.2, metadata={"key_neutral": 0.2, "help": "logconf, entropy: fraction of training over which that weight ramps from 0 to --alpha-max (higher = later self-training)"})
    threshold_window: int | None = field(default=None, metadata={"key_neutral": None, "help": "logconf: student predictions the hardening threshold is a quantile of (0 = the batch; default max(4 x batch, 128))"})
    product_beta: float = field(default=1.0, metadata={"help": "product: exponent of the student's own prediction in its target p_student^beta * p_weak (higher = trusts itself more)"})
    window_radius: float = field(default=0.15, metadata={"help": "window: train only where the student's top probability < 0.5 + radius (0 = the weak labels' median; larger = more examples)"})
    top_k_layers: int | None = field(default=None, metadata={"help": "finetune: train only the top k transformer layers (default: all; fewer = faster, closer to frozen)"})
    max_examples: int | None = field(default=None, metadata={"help": "subsample the dataset to about this many examples (by group) for quick runs"})
    select: str = field(default="weak-val", metadata={"key_neutral": "last", "choices": SELECTS, "help": "weights kept: weak-val (best validation agreement with the weak labels), last, or oracle (ground truth; flagged)"})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast for backbone passes (faster on CPU, slightly less precise)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N", "identity": False})
    supervisor: str = field(default="model", metadata={"key_neutral": "model", "help": "who labels the student's data: model (the weak model), flip:random, flip:rule:RULE or flip:model (see oversight.w2s.supervisors)"})
    supervisor_accuracy: str = field(default="", metadata={"key_neutral": "", "help": "a flip: supervisor's accuracy on every split it labels: a number in (0.5, 1] or weak (the weak model's own)"})
    student: str = field(default="naive", metadata={"key_neutral": "naive", "choices": STUDENTS, "help": "naive (one head fits the labels with --loss) or two-head (a truth head and a model of the supervisor's errors)"})
    truth_budget: int = field(default=0, metadata={"key_neutral": 0, "help": "ground-truth labels of student_train the student may read (random ones; counted and stored; 0 = none)"})

    def unused_fields(self, values: dict[str, Any]) -> set[str]:
        """Fields this config's mode and loss ignore: they do not tell runs apart."""
        unused = set() if self.mode == "finetune" else {"top_k_layers"}
        unused |= set() if uses_chain(self.method) else {"chain"}
        return unused | (loss_specific_options() - set(loss_options(self.loss)))

    def chain_models(self) -> list[str]:
        """The intermediate rungs of a bootstrap chain, weakest first ([] without one)."""
        return [m.strip() for m in self.chain.split(",") if m.strip()] if uses_chain(self.method) else []

    def resolve_names(self) -> None:
        """Look up the dataset and both models (an unknown name lists what exists), before any work."""
        from oversight.w2s.datasets import DATASETS

        for name, value in (("dataset", self.dataset), ("weak", self.weak), ("strong", self.strong)):
            if not value.strip():
                raise ConfigError(name, "is empty")
        if self.dataset.startswith("file:"):
            from oversight.w2s.files import file_path

            file_path(self.dataset)  # a missing path, or a folder, is one error naming it
        elif not self.dataset.startswith("hf:") and self.dataset not in DATASETS:
            raise UnknownNameError("dataset", self.dataset, DATASETS.names(), hint="Or pass file:PATH or hf:NAME[:CONFIG]")
        specs = [get_model_spec(m) for m in (self.weak, *self.chain_models(), self.strong)]
        if uses_genft(self.method):  # the strong model must have an LM head: said now, not after the weak run
            from oversight.w2s.genft import require_lm_head

            require_lm_head(get_model_spec(self.strong))
        if is_generative(self.dataset):  # decoder rungs only
            from oversight.w2s.generative import check_config

            check_config(self)
        self._check_order(specs)  # after the checks that say what kind of rung a task needs

    def _check_order(self, specs: list[Any]) -> None:
        """weak < each rung of the chain < strong, by parameters (bow, with none, is the smallest): an
        inverted pair is not a weak-to-strong experiment. Rungs of unknown size are not compared."""
        sizes = [(s.name, 0 if s.kind == "bow" else s.params) for s in specs]
        known = [(name, n) for name, n in sizes if n is not None]
        for (low, n_low), (high, n_high) in zip(known, known[1:], strict=False):
            if not n_low < n_high:
                field_name = "strong" if high == self.strong and low == self.weak else "chain"
                raise ConfigError(field_name, f"the rungs must grow weakest to strongest ({' -> '.join(s for s, _ in sizes)}), "
                                  f"but {high} ({n_high / 1e6:.1f}M parameters) is not larger than {low} "
                                  f"({n_low / 1e6:.1f}M)")

    def validate(self) -> None:
        LOSSES.get(self.loss)  # raises UnknownNameError listing the losses
        if self.mode not in MODES:
            raise ConfigError("mode", f"{self.mode!r} is not one of {', '.join(MODES)}")
        if self.head not in HEADS:
            raise ConfigError("head", f"{self.head!r} is not one of {', '.join(HEADS)}")
        for name in ("epochs", "batch_size", "max_examples", "top_k_layers"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(name, f"must be positive, got {value}")
        if self.seed < 0:
            raise ConfigError("seed", f"must be >= 0, got {self.seed}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError("lr", f"must be positive, got {self.lr}")
        if not 0 <= self.alpha_max <= 1:
            raise ConfigError("alpha_max", f"must be in [0, 1], got {self.alpha_max}")
        if not 0 <= self.warmup_frac <= 1:
            raise ConfigError("warmup_frac", f"must be in [0, 1], got {self.warmup_frac}")
        if self.threshold_window is not None and self.threshold_window < 0:
            raise ConfigError("threshold_window", f"must be >= 0 (0 = the current batch), got {self.threshold_window}")
        if not self.product_beta >= 0:
            raise ConfigError("product_beta", f"must be >= 0, got {self.product_beta}")
        if not 0 <= self.window_radius <= 0.5:
            raise ConfigError("window_radius", f"must be in [0, 0.5] (0 = the weak labels' median), got {self.window_radius}")
        if self.loss != "xent" and (self.mode == "probe" or "bow" in (self.strong, *self.chain_models())):
            raise ConfigError("loss", "the bow rung and --mode probe (logistic regression, one solve) train with xent only")
        if self.method not in METHODS:
            raise ConfigError("method", f"{self.method!r} is not one of {', '.join(METHODS)}")
        self._validate_chain()
        if is_generative(self.dataset):  # xent, --mode finetune
            from oversight.w2s.generative import check_config

            check_config(self, rungs=False)
        if self.select not in SELECTS:
            raise ConfigError("select", f"{self.select!r} is not one of {', '.join(SELECTS)}")
        if self.weak == self.strong:
            raise ConfigError("strong", "the strong model must differ from the weak model")
        self._validate_student()

    def _validate_student(self) -> None:
        """The supervisor, the student kind and the truth budget: the beyond-the-paper options."""
        supervisors.check(self.supervisor, self.supervisor_accuracy)
        if self.supervisor != "model" and (self.method != "direct" or is_generative(self.dataset)):
            raise ConfigError("supervisor", "a flip: supervisor labels a direct student of a classification dataset only")
        if self.student not in STUDENTS:
            raise ConfigError("student", f"{self.student!r} is not one of {', '.join(STUDENTS)}")
        if self.student == "two-head" and (self.mode != "head" or self.method != "direct" or self.loss != "xent"):
            raise ConfigError("student", "two-head trains a head on frozen features (--mode head, --method direct) "
                              "with its own loss (leave --loss xent)")
        if self.truth_budget < 0:
            raise ConfigError("truth_budget", f"must be >= 0, got {self.truth_budget}")
        if self.truth_budget and (self.method != "direct" or is_generative(self.dataset)):
            raise ConfigError("truth_budget", "is read by a direct student of a classification dataset only")

    def _validate_chain(self) -> None:
        chain = self.chain_models()
        if not uses_chain(self.method) and self.chain.strip():
            raise ConfigError("chain", "is used by --method bootstrap only; drop it or add --method bootstrap")
        if uses_chain(self.method) and not chain:
            raise ConfigError("chain", f"--method {self.method} needs --chain: the models between --weak and --strong")
        rungs = [self.weak, *chain, self.strong]
        if len(set(rungs)) != len(rungs):
            raise ConfigError("chain", f"each rung appears once: {' -> '.join(rungs)}")



def data_version(dataset: str) -> str:
    """What identifies the data beyond its name: for a local file or directory (``file:``, local
    ``hf:``) a SHA-256 of its content (names and bytes), so an edited file makes new runs and a
    merely touched one keeps them; for a built-in, the data package's version."""
    if dataset.startswith(("file:", "hf:")):
        path = Path(dataset.split(":", 1)[1].split("?", 1)[0])
        if not path.exists() and dataset.startswith("hf:"):
            path = Path(str(path).split(":", 1)[0])  # hf:NAME:CONFIG
        if path.exists():
            return content_digest(path)
        return ""
    from oversight.w2s.datasets import DATASETS

    return str(getattr(DATASETS.get(dataset), "source", ""))


def content_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, or of a directory's files (relative names and bytes, in
    name order); memoised by (path, size, mtime) so one process hashes a large file once."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _digest(str(path), stamp)


@functools.lru_cache(maxsize=64)
def _digest(root: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(os.path.relpath(name, root).encode() + b"\0")
        with open(name, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


# bump when run_identity(W2SConfig) changes. 3: the numerics that ran and the data's content are in
# every key; rows keyed before cannot be rekeyed (their numerics were not recorded) and stay as they are.
IDENTITY_VERSION = "3"


def run_numerics(cfg: W2SConfig) -> str:
    """The precision and device type this config runs with on this host (``--device auto`` and bf16
    resolved first): part of every key, so a row is never reused where the numbers would differ."""
    return numerics(resolve_device(cfg.device), cfg.bf16)


def experiment_key(cfg: W2SConfig) -> str:
    return run_key(cfg, kind="w2s", data_version=data_version(cfg.dataset), numerics=run_numerics(cfg))


def migrate_store(store: ResultsStore) -> int:
    """Rows stored under an earlier identity are left under their keys: version 3 adds the numerics
    that ran, which those rows did not record. Reports still read them, as cells of their own."""
    return store.migrate_keys("w2s", IDENTITY_VERSION, lambda record: None)
