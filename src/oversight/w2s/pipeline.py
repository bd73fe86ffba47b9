"""The weak-to-strong experiment, top to bottom.

    oversight w2s run --dataset rotten_tomatoes --weak minilm-l6 --strong mpnet-base --loss xent,logconf --seeds 3
    oversight w2s sweep --preset demo

For one (dataset, weak, strong, loss, seed):
1. weak supervisor: trained on the GROUND TRUTH of ``weak_train``; predicts soft labels on
   ``student_train`` (the weak model never sees ``student_train``'s labels, nor anything of test);
2. weak-to-strong: the strong model trained on those soft labels with the chosen loss;
3. strong ceiling: the strong model trained on the ground truth of ``student_train``;
4. test metrics of all three, PGR, agreement; over seeds, mean ± std and bootstrap CIs over seeds and test examples.

Each of the three trainings is its own run in the results store, keyed by the hash of what
determines it (the student's key includes its weak run's key), so the weak model and the ceiling
are trained once and shared by every loss, and a rerun only does what is missing.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from oversight.config import as_stored_by_now, config_hash, make_config, run_key
from oversight.errors import ArtifactError, ConfigError, UnknownNameError
from oversight.progress import log
from oversight.runtime import resolve_device, seed_everything, set_threads
from oversight.store import ArtifactStore, ResultsStore, artifacts_for
from oversight.w2s import metrics
from oversight.w2s.datasets import DatasetFileNotFoundError, Splits, dataset_texts, load_dataset
from oversight.w2s.losses import LOSSES, loss_options, loss_specific_options
from oversight.w2s.models import ModelSpec, get_model_spec
from oversight.w2s.train import (
    BowClassifier,
    Classifier,
    FeatureCache,
    FrozenFeaturizer,
    TrainSettings,
    Watch,
    finetune,
    train_head,
)

MODES = ("head", "finetune")
SELECTS = ("weak-val", "last", "oracle")
HEADS = ("logistic", "mlp")


@dataclass
class W2SConfig:
    """One weak-to-strong experiment: a (dataset, weak, strong, loss) cell at one seed."""

    dataset: str = field(default="rotten_tomatoes", metadata={
        "help": "dataset name (see `oversight datasets`), file:PATH (JSONL/CSV with text,label) or hf:NAME[:CONFIG]"})
    weak: str = field(default="minilm-l6", metadata={"help": "weak supervisor model (see `oversight models`) or hf:ID_OR_PATH"})
    strong: str = field(default="mpnet-base", metadata={"help": "strong student model (see `oversight models`) or hf:ID_OR_PATH"})
    loss: str = field(default="xent", metadata={"help": "student loss on weak labels: xent, logconf, product, entropy or window (see oversight.w2s.losses)"})
    mode: str = field(default="head", metadata={
        "help": "head = train a head on cached frozen features; finetune = train the backbone (all or --top-k-layers)",
        "choices": MODES})
    head: str = field(default="mlp", metadata={"help": "head on frozen features (head mode)", "choices": HEADS})
    seed: int = field(default=0, metadata={"help": "seed of the data split and of training (>= 0)"})
    epochs: int | None = field(default=None, metadata={"help": "training epochs (default: 10 for heads, 2 for finetuning)"})
    lr: float | None = field(default=None, metadata={"help": "learning rate (default: 1e-3 for heads, the rung's own for finetuning)"})
    batch_size: int | None = field(default=None, metadata={"help": "batch size (default: 64 for heads, the rung's own for finetuning)"})
    alpha_max: float = field(default=0.75, metadata={"help": "logconf, entropy: final weight of the self-target term (higher = the student trusts itself more than the weak labels)"})
    warmup_frac: float = field(default=0.2, metadata={"key_neutral": 0.2, "help": "logconf, entropy: fraction of training over which that weight ramps from 0 to --alpha-max (higher = later self-training)"})
    threshold_window: int | None = field(default=None, metadata={"key_neutral": None, "help": "logconf: recent student predictions the hardening threshold is a quantile of (0 = the batch; default max(4 x batch, 128))"})
    product_beta: float = field(default=1.0, metadata={"help": "product: exponent of the student's own prediction in its target p_student^beta * p_weak (higher = trusts itself more)"})
    window_radius: float = field(default=0.15, metadata={"help": "window: train only where the student's top probability is below 0.5 + radius (0 = the weak labels' median confidence; larger = more examples)"})
    top_k_layers: int | None = field(default=None, metadata={"help": "finetune: train only the top k transformer layers (default: all)"})
    max_examples: int | None = field(default=None, metadata={"help": "subsample the dataset to about this many examples (by group) for quick runs"})
    select: str = field(default="weak-val", metadata={"key_neutral": "last", "choices": SELECTS, "help": "weights a run keeps: weak-val (best agreement with the weak labels on validation), last, or oracle (ground truth; flagged)"})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast for backbone passes (2-3x faster on CPU)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N", "identity": False})

    def unused_fields(self, values: dict[str, Any]) -> set[str]:
        """Fields this config's mode and loss ignore: they do not tell runs apart."""
        unused = set() if self.mode == "finetune" else {"top_k_layers"}
        return unused | (loss_specific_options() - set(loss_options(self.loss)))

    def resolve_names(self) -> None:
        """Look up the dataset and both models (an unknown name lists what exists), before any work."""
        from oversight.w2s.datasets import DATASETS

        for name, value in (("dataset", self.dataset), ("weak", self.weak), ("strong", self.strong)):
            if not value.strip():
                raise ConfigError(name, "is empty")
        if self.dataset.startswith("file:"):
            path = Path(self.dataset[5:].split("?", 1)[0])
            if not path.is_file():
                raise DatasetFileNotFoundError(f"dataset file {path} does not exist (from --dataset {self.dataset})")
        elif not self.dataset.startswith("hf:") and self.dataset not in DATASETS:
            raise UnknownNameError("dataset", self.dataset, DATASETS.names(), hint="Or pass file:PATH or hf:NAME[:CONFIG]")
        get_model_spec(self.weak)
        get_model_spec(self.strong)

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
        if self.strong == "bow" and self.loss != "xent":
            raise ConfigError("loss", "the bow rung (logistic regression) trains with xent only")
        if self.select not in SELECTS:
            raise ConfigError("select", f"{self.select!r} is not one of {', '.join(SELECTS)}")
        if self.weak == self.strong:
            raise ConfigError("strong", "the strong model must differ from the weak model")


# --------------------------------------------------------------------------- one training run

def _selection(cfg: W2SConfig, student: bool) -> str:
    """What selects a run's weights: nothing (``last``), ground-truth validation labels (weak
    supervisors and ceilings, trained on ground truth; students only under ``oracle``), or the weak
    supervisor's validation labels (students)."""
    if cfg.select == "last":
        return "last"
    return "val-weak" if student and cfg.select == "weak-val" else "val-truth"


def _settings(cfg: W2SConfig, spec: ModelSpec, loss: str, device: str, student: bool = False) -> TrainSettings:
    if spec.kind == "bow":  # TF-IDF + logistic regression: nothing else applies
        return TrainSettings(mode="bow", head="logistic", loss="xent", epochs=0, lr=0.0, batch_size=0, seed=cfg.seed)
    finetuning = cfg.mode == "finetune"
    return TrainSettings(
        mode="finetune" if finetuning else "head",
        head=cfg.head,
        loss=loss,
        epochs=cfg.epochs or (2 if finetuning else 10),
        lr=cfg.lr or (spec.lr if finetuning else 1e-3),
        batch_size=cfg.batch_size or (spec.batch_size if finetuning else 64),
        alpha_max=cfg.alpha_max,
        warmup_frac=cfg.warmup_frac,
        threshold_window=cfg.threshold_window,
        product_beta=cfg.product_beta,
        window_radius=cfg.window_radius,
        top_k_layers=cfg.top_k_layers,
        select=_selection(cfg, student),
        bf16=cfg.bf16,
        device=device,
        seed=cfg.seed,
    )


def _train_and_predict(spec: ModelSpec, settings: TrainSettings, train_texts: list[str], targets: np.ndarray,
                       predict_on: dict[str, list[str]], artifacts: ArtifactStore, desc: str,
                       corpus: str = "", watch: Watch | None = None) -> dict[str, np.ndarray]:
    if spec.kind == "bow":  # fitted in one solve: no steps to watch or select among
        model: Classifier = BowClassifier(settings).fit(train_texts, targets)
    elif settings.mode == "finetune":
        model = finetune(spec, train_texts, targets, settings, desc=desc, watch=watch)
    else:
        featurizer = FrozenFeaturizer(FeatureCache(artifacts, spec, corpus), settings.device)
        model = train_head(featurizer, train_texts, targets, settings, desc=desc, watch=watch)
    return {name: model.predict_proba(texts).astype(np.float32) for name, texts in predict_on.items()}


def _curve(watch: Watch | None) -> dict[str, Any]:
    """What a unit's row keeps of its watch: the curve and the step whose weights were kept."""
    return {} if watch is None or not watch.curve else {"curve": watch.curve, "selected_step": watch.selected_step}


def _run_unit(store: ResultsStore, kind: str, key: str, config: dict[str, Any], train: Any,
              needs: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Get-or-compute one training run. Artifacts first, the row last: a crash in between leaves
    no row, so the run is simply redone; a finished run is never redone, unless its artifact lacks
    an array of ``needs`` (stored before it was kept; the redo gives the same numbers)."""
    artifacts = artifacts_for(store)
    if store.has(key):
        try:
            arrays = artifacts.load_arrays(key)
            if all(name in arrays for name in needs):
                return arrays
            log(f"run {key} was stored without {', '.join(needs)}; redoing it")
        except ArtifactError as err:
            log(f"{err}; redoing its run")
    start = time.time()
    arrays, results = train()
    artifacts.save_arrays(key, arrays)
    store.put(key, kind, config, results, seconds=time.time() - start)
    return arrays


def _texts(examples: list[Any]) -> list[str]:
    return [e.text for e in examples]


def _labels(examples: list[Any]) -> np.ndarray:
    return np.array([e.label for e in examples], dtype=np.float32)


def data_version(dataset: str) -> str:
    """What identifies the data beyond its name: for a local file or directory (``file:``, local
    ``hf:``) its size and modification time, so editing the file invalidates cached runs; for a
    built-in, the data package's version."""
    if dataset.startswith(("file:", "hf:")):
        path = Path(dataset.split(":", 1)[1].split("?", 1)[0])
        if not path.exists() and dataset.startswith("hf:"):
            path = Path(str(path).split(":", 1)[0])  # hf:NAME:CONFIG
        if path.exists():
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            return ";".join(f"{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        return ""
    from oversight.w2s.datasets import DATASETS

    return str(getattr(DATASETS.get(dataset), "source", ""))


IDENTITY_VERSION = "2"  # bump when run_identity(W2SConfig) changes; stored rows are rekeyed once


def experiment_key(cfg: W2SConfig) -> str:
    return run_key(cfg, kind="w2s", data_version=data_version(cfg.dataset))


def migrate_store(store: ResultsStore) -> int:
    """Rekey rows stored under an earlier identity (every field, device included) to today's,
    where the row's data is unchanged (its old key still matches the data's current version)."""

    def key_of(record: dict[str, Any]) -> str | None:
        try:
            cfg = make_config(W2SConfig, **as_stored_by_now(W2SConfig, record["config"]))
        except Exception:  # noqa: BLE001 - a config of a field set no longer valid stays as it is
            return None
        version = data_version(cfg.dataset)
        if config_hash(asdict(cfg), kind="w2s", data_version=version) != record["key"]:
            return None
        return experiment_key(cfg)

    return store.migrate_keys("w2s", IDENTITY_VERSION, key_of, lambda key: [f"labels{key}"])


def _finished(store: ResultsStore, pair_key: str) -> dict[str, Any] | None:
    """The stored results of a seed whose row and artifacts all read back; else None (it is redone)."""
    done = store.get(pair_key)
    if done is None or not isinstance(done["results"].get("run_keys"), dict):
        return None
    artifacts = artifacts_for(store)
    try:
        for key in [*done["results"]["run_keys"].values(), f"labels{pair_key}"]:
            artifacts.load_arrays(key)
    except ArtifactError as err:
        log(f"{err}; redoing its run")
        return None
    return done["results"]


def run_experiment(cfg: W2SConfig, store: ResultsStore) -> dict[str, Any]:
    """Run (or fetch) the weak, ceiling and weak-to-strong runs of one seed; return its metrics."""
    cfg.validate()
    pair_key = experiment_key(cfg)
    done = _finished(store, pair_key)
    if done is not None:
        return done
    set_threads()
    device = resolve_device(cfg.device)
    weak_spec, strong_spec = get_model_spec(cfg.weak), get_model_spec(cfg.strong)
    splits: Splits = load_dataset(cfg.dataset, seed=cfg.seed, max_examples=cfg.max_examples)
    splits.check_disjoint()  # science hygiene: no id or group shared between splits
    test_texts, test_labels = _texts(splits.test), _labels(splits.test)
    train_texts = _texts(splits.student_train)
    artifacts = artifacts_for(store)
    start = time.time()
    corpus = _embed_corpus(cfg, (weak_spec, strong_spec), artifacts, device) if cfg.mode == "head" else ""

    # Everything that determines a run and nothing else goes into its key.
    data = {"dataset": cfg.dataset, "seed": cfg.seed, "max_examples": cfg.max_examples,
            "data_version": data_version(cfg.dataset)}
    weak_settings = _settings(cfg, weak_spec, "xent", device)
    weak_cfg = {**data, "model": cfg.weak, "role": "weak", **_hashable(weak_settings)}
    weak_key = config_hash(weak_cfg, kind="w2s_weak")

    val_texts, val_truth = _texts(splits.validation), _labels(splits.validation)

    def watch(val_labels: np.ndarray) -> Watch:
        return Watch(val_texts, val_labels, test_texts, test_labels)

    def train_weak() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        seed_everything(cfg.seed)
        watched = watch(val_truth)  # trained on ground truth: selected on it too
        probs = _train_and_predict(weak_spec, weak_settings, _texts(splits.weak_train), _labels(splits.weak_train),
                                   {"student_train": train_texts, "validation": val_texts, "test": test_texts},
                                   artifacts, desc=f"weak {cfg.weak}", corpus=corpus, watch=watched)
        return probs, {"test_acc": metrics.accuracy(probs["test"], test_labels), **_curve(watched)}

    # the weak labels of validation are what a student may select on
    weak = _run_unit(store, "w2s_weak", weak_key, weak_cfg, train_weak, needs=("validation",))
    weak_labels = weak["student_train"]

    strong_settings = _settings(cfg, strong_spec, "xent", device)
    ceiling_cfg = {**data, "model": cfg.strong, "role": "ceiling", **_hashable(strong_settings)}
    ceiling_key = config_hash(ceiling_cfg, kind="w2s_ceiling")

    def train_ceiling() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        seed_everything(cfg.seed)
        watched = watch(val_truth)
        probs = _train_and_predict(strong_spec, strong_settings, train_texts, _labels(splits.student_train),
                                   {"test": test_texts}, artifacts, desc=f"ceiling {cfg.strong}", corpus=corpus,
                                   watch=watched)
        return probs, {"test_acc": metrics.accuracy(probs["test"], test_labels), **_curve(watched)}

    ceiling = _run_unit(store, "w2s_ceiling", ceiling_key, ceiling_cfg, train_ceiling)

    student_settings = _settings(cfg, strong_spec, cfg.loss, device, student=True)
    student_cfg = {**data, "model": cfg.strong, "role": "w2s", "weak_run": weak_key, **_hashable(student_settings)}
    student_key = config_hash(student_cfg, kind="w2s_student")

    def train_student() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        seed_everything(cfg.seed)
        # a student sees its supervisor's validation labels; the ground truth only as the oracle ablation
        watched = watch(val_truth if student_settings.select == "val-truth" else weak["validation"])
        probs = _train_and_predict(strong_spec, student_settings, train_texts, weak_labels, {"test": test_texts},
                                   artifacts, desc=f"w2s {cfg.weak}->{cfg.strong} {cfg.loss}", corpus=corpus,
                                   watch=watched)
        return probs, {"test_acc": metrics.accuracy(probs["test"], test_labels), **_curve(watched)}

    student = _run_unit(store, "w2s_student", student_key, student_cfg, train_student)

    results = seed_metrics(cfg, weak["test"], student["test"], ceiling["test"], test_labels)
    results.update({
        "weak_label_acc": metrics.accuracy(weak_labels, _labels(splits.student_train)),
        "split_sizes": splits.sizes(),
        "run_keys": {"weak": weak_key, "ceiling": ceiling_key, "w2s": student_key},
        "data_version": data["data_version"],
        "seconds": time.time() - start,
    })
    # test labels are needed again for the bootstrap over seeds
    artifacts.save_arrays(f"labels{pair_key}", {"test": test_labels})
    store.put(pair_key, "w2s", asdict(cfg), results, seconds=results["seconds"])
    return store.get(pair_key)["results"]  # as stored: undefined PGR is None, the same on every call


def _embed_corpus(cfg: W2SConfig, specs: tuple[ModelSpec, ...], artifacts: ArtifactStore, device: str) -> str:
    """Frozen features of every text of the dataset, in one pass per model (so every seed and split
    finds its own cached, computed alike whatever the store held before); returns the corpus key."""
    texts = dataset_texts(cfg.dataset, cfg.seed, cfg.max_examples)
    corpus = FeatureCache.corpus_key(texts)
    for spec in {s.name: s for s in specs}.values():
        if spec.kind != "bow":
            FeatureCache(artifacts, spec, corpus).get(texts, device=device)
    return corpus


def seed_metrics(cfg: W2SConfig, weak_test: np.ndarray, w2s_test: np.ndarray, ceiling_test: np.ndarray,
                 test_labels: np.ndarray) -> dict[str, Any]:
    """One seed's test metrics of its weak, weak-to-strong and ceiling predictions, and its PGR."""
    out: dict[str, Any] = {
        "dataset": cfg.dataset, "weak": cfg.weak, "strong": cfg.strong, "loss": cfg.loss, "seed": cfg.seed,
        "mode": cfg.mode, "head": cfg.head,
        "select": cfg.select, "oracle": cfg.select == "oracle",  # ground truth selected the student: an ablation
    }
    for role, probs in (("weak", weak_test), ("w2s", w2s_test), ("ceiling", ceiling_test)):
        out[f"{role}_acc"] = metrics.accuracy(probs, test_labels)
        out[f"{role}_auroc"] = metrics.auroc(probs, test_labels)
    out.update(metrics.agreement(w2s_test, weak_test, test_labels))
    out["pgr"] = metrics.pgr(out["weak_acc"], out["w2s_acc"], out["ceiling_acc"])
    return out


def _hashable(settings: TrainSettings) -> dict[str, Any]:
    # device and bf16 change speed, not (meaningfully) the result; keep them out of the key so a
    # run done on a GPU box is reused on a laptop. The loss is part of the key for students only.
    values = asdict(settings)
    for name in ("device",):
        values.pop(name)
    if values["mode"] != "finetune":
        values.pop("top_k_layers")
    for name in loss_specific_options() - set(loss_options(values["loss"])):
        values.pop(name)
    # options added after runs were stored leave the key at the value that reproduces those runs
    for f in fields(W2SConfig):
        if "key_neutral" in f.metadata and f.name in values and values[f.name] == f.metadata["key_neutral"]:
            values.pop(f.name)
    return values


# --------------------------------------------------------------------------- over seeds

def aggregate(cfgs: list[W2SConfig], store: ResultsStore, n_boot: int = 1000) -> dict[str, Any]:
    """Mean ± std over seeds and bootstrap CIs (over seeds and test examples; and over test examples
    only, as ``*_examples_*``) of PGR and the accuracies, for one (dataset, weak, strong, loss)."""
    artifacts = artifacts_for(store)
    per_seed = [store.get(experiment_key(c)) for c in cfgs]
    rows = [r["results"] for r in per_seed if r is not None]
    if not rows:
        raise RuntimeError("no finished runs to aggregate")
    first = rows[0]
    out: dict[str, Any] = {k: first[k] for k in ("dataset", "weak", "strong", "loss", "mode", "head")}
    out["select"] = first.get("select", "last")  # rows stored before selection kept their last weights
    out["oracle"] = out["select"] == "oracle"
    out["seeds"] = len(rows)
    for name in ("weak_acc", "w2s_acc", "ceiling_acc", "weak_auroc", "w2s_auroc", "ceiling_auroc",
                 "agreement", "agreement_supervisor_right", "agreement_supervisor_wrong"):
        mean, std, _ = metrics.mean_std([r[name] for r in rows])
        out[name], out[name + "_std"] = mean, std
    labels, weak_p, w2s_p, ceil_p = [], [], [], []
    out["run_keys"] = [r["run_keys"] for r in rows]  # per seed: where the curves of its runs are
    for cfg, row in zip(cfgs, per_seed, strict=True):
        if row is None:
            continue
        keys = row["results"]["run_keys"]
        labels.append(artifacts.load_arrays(f"labels{experiment_key(cfg)}")["test"])
        weak_p.append(artifacts.load_arrays(keys["weak"])["test"])
        w2s_p.append(artifacts.load_arrays(keys["w2s"])["test"])
        ceil_p.append(artifacts.load_arrays(keys["ceiling"])["test"])
    # calibration, from the stored predictions (so rows stored before it have it too)
    for role, probs in (("weak", weak_p), ("w2s", w2s_p), ("ceiling", ceil_p)):
        for name, fn in (("ece", metrics.ece), ("brier", metrics.brier)):
            values = [fn(p, y) for p, y in zip(probs, labels, strict=True)]
            out[f"{role}_{name}"], out[f"{role}_{name}_std"], _ = metrics.mean_std(values)
    out["pgr"] = metrics.pgr(out["weak_acc"], out["w2s_acc"], out["ceiling_acc"])
    # the CI covers seeds and test examples (hierarchical); the example-only one is kept beside it
    out.update(metrics.hierarchical_bootstrap_pgr(labels, weak_p, w2s_p, ceil_p, n_boot=n_boot, seed=0))
    seed_pgrs = [r["pgr"] for r in rows]
    out["pgr_seed_mean"], out["pgr_seed_std"], out["pgr_defined_seeds"] = metrics.mean_std(seed_pgrs)
    out["gap"] = out["ceiling_acc"] - out["weak_acc"]
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def seed_configs(cfg: W2SConfig, seeds: int) -> list[W2SConfig]:
    return [replace(cfg, seed=cfg.seed + s) for s in range(seeds)]
