"""The weak-to-strong experiment, top to bottom.

    oversight w2s run --dataset rotten_tomatoes --weak minilm-l6 --strong mpnet-base --loss xent,logconf --seeds 3
    oversight w2s run ... --method bootstrap --chain minilm-l3      # weak -> minilm-l3 -> strong
    oversight w2s run ... --strong smollm2-135m --method genft      # the strong model LM-finetuned first
    oversight w2s sweep --preset demo

For one (dataset, weak, strong, loss, method, seed):
0. ``genft`` only: the strong model, for student and ceiling alike, is first finetuned as a
   language model on the texts of ``weak_train`` and ``student_train`` (no label, nothing of
   validation or test; ``genft.py``); its runs are keyed by the adapted model's name;
1. weak supervisor: trained on the GROUND TRUTH of ``weak_train``; predicts soft labels on
   ``student_train`` and ``validation`` (it never sees their labels, nor anything of test);
2. ``bootstrap`` only: each rung of the chain learns from the previous rung's soft labels and
   labels ``student_train`` for the next, cross-fitted (see :meth:`Cell.link`);
3. weak-to-strong: the strong model trained on its supervisor's soft labels with the chosen loss,
   its weights selected on the supervisor's validation labels (``--select weak-val``);
4. strong ceiling: the strong model trained on the ground truth of ``student_train``;
5. test metrics of all three, PGR, agreement, and in finetune mode the saliency probes.

Each training is its own run in the results store, keyed by the hash of what determines it (a
student's or a rung's key includes its supervisor's key), so the weak model and the ceiling are
trained once and shared by every loss and method, and a rerun only does what is missing.
Aggregation over seeds is in ``aggregate.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from oversight.config import config_hash, key_fields
from oversight.errors import ArtifactError
from oversight.progress import log
from oversight.runtime import code_commit, provenance, resolve_device, seed_everything, set_threads
from oversight.store import ArtifactStore, ResultsStore, artifacts_for
from oversight.w2s import genft, metrics, pairs, supervisors
from oversight.w2s.aggregate import run_flags, seed_metrics
from oversight.w2s.config import W2SConfig, data_version, experiment_key, run_numerics, uses_genft
from oversight.w2s.datasets import Splits, dataset_texts, load_dataset
from oversight.w2s.gen_data import is_generative
from oversight.w2s.linear import BowClassifier, ProbeClassifier, probe_predictions
from oversight.w2s.losses import loss_options, loss_specific_options
from oversight.w2s.models import ModelSpec, get_model_spec
from oversight.w2s.splits import cross_fit_folds
from oversight.w2s.train import (
    Classifier,
    FeatureCache,
    FrozenFeaturizer,
    TextClassifier,
    TrainSettings,
    Watch,
    finetune,
    train_head,
)
from oversight.w2s.two_head import train_two_head

Arrays = dict[str, np.ndarray]

# --------------------------------------------------------------------------- one training run

def _selection(cfg: W2SConfig, student: bool) -> str:
    """What selects a run's weights. Weak supervisors and ceilings, trained on ground truth, always
    select on ground-truth validation labels, whatever ``--select`` says: so ``--select`` changes
    the students and bootstrap rungs only, and a comparison of selections shares one denominator.
    Students: the supervisor's validation labels (``weak-val``), nothing (``last``), or the ground
    truth (``oracle``, an ablation)."""
    if not student:
        return "val-truth"
    return {"weak-val": "val-weak", "last": "last", "oracle": "val-truth"}[cfg.select]


def _settings(cfg: W2SConfig, spec: ModelSpec, loss: str, device: str, student: bool = False) -> TrainSettings:
    if spec.kind == "bow" or cfg.mode == "probe":  # logistic regression in one solve: nothing else applies
        mode = "bow" if spec.kind == "bow" else "probe"
        return TrainSettings(mode=mode, head="logistic", loss="xent", epochs=0, lr=0.0, batch_size=0, seed=cfg.seed)
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


def _fit(spec: ModelSpec, settings: TrainSettings, train_texts: list[str], targets: np.ndarray,
         artifacts: ArtifactStore, desc: str, corpus: str = "", watch: Watch | None = None,
         trusted: dict[int, float] | None = None) -> Classifier:
    """One classifier trained on ``targets`` (P(class 1) per text) as ``settings`` say; with
    ``trusted`` (index -> ground truth), a two-head student whose truth head also fits those."""
    if spec.kind == "bow":  # fitted in one solve: no steps to watch or select among
        return BowClassifier(settings.seed).fit(train_texts, targets)
    if settings.mode == "finetune":
        return finetune(spec, train_texts, targets, settings, desc=desc, watch=watch)
    featurizer = FrozenFeaturizer(FeatureCache(artifacts, spec, corpus, settings.device), settings.device)
    if settings.mode == "probe":
        return ProbeClassifier(featurizer, seed=settings.seed).fit(train_texts, targets)
    if trusted is not None:
        return train_two_head(featurizer, train_texts, targets, settings, trusted, desc=desc, watch=watch)
    return train_head(featurizer, train_texts, targets, settings, desc=desc, watch=watch)


def _curve(watch: Watch | None) -> dict[str, Any]:
    """What a unit's row keeps of its watch: the curve and the step whose weights were kept."""
    out: dict[str, Any] = {}
    if watch is not None and watch.curve:
        out.update(curve=watch.curve, selected_step=watch.selected_step)
    if watch is not None and watch.diverged_step is not None:
        out["diverged_step"] = watch.diverged_step
    return out


def _run_unit(store: ResultsStore, kind: str, key: str, config: dict[str, Any],
              train: Callable[[], tuple[Arrays, dict[str, Any]]], needs: tuple[str, ...] = ()) -> Arrays:
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
    store.put(key, kind, config, {**results, "provenance": provenance()}, seconds=time.time() - start)
    return arrays


def _texts(examples: list[Any]) -> list[str]:
    return [e.text for e in examples]


def _labels(examples: list[Any]) -> np.ndarray:
    return np.array([e.label for e in examples], dtype=np.float32)


# --------------------------------------------------------------------------- one seed of one cell

class Cell:
    """One seed of one (dataset, weak, strong, loss, method) cell: its splits, and the get-or-train
    of each of its runs. Every method returns ``(key, arrays)``: the run's store key and its
    predictions by split."""

    def __init__(self, cfg: W2SConfig, store: ResultsStore) -> None:
        self.cfg, self.store, self.artifacts = cfg, store, artifacts_for(store)
        self.device = resolve_device(cfg.device)
        splits: Splits = load_dataset(cfg.dataset, seed=cfg.seed, max_examples=cfg.max_examples)
        splits.check_disjoint()  # science hygiene: no id or group shared between splits
        self.splits = splits
        self.texts = {name: _texts(getattr(splits, name)) for name in ("weak_train", "student_train", "validation", "test")}
        self.truth = {name: _labels(getattr(splits, name)) for name in self.texts}
        self.specs = {m: get_model_spec(m) for m in (cfg.weak, *cfg.chain_models(), cfg.strong)}
        if uses_genft(cfg.method):  # before any embedding: head mode embeds with the adapted model
            self.specs[cfg.strong] = genft.adapt(
                self.specs[cfg.strong], self.texts["weak_train"] + self.texts["student_train"],
                genft.GenftSettings(seed=cfg.seed, bf16=cfg.bf16), device=self.device)
        # everything that determines a run and nothing else goes into its key
        self.data = {"dataset": cfg.dataset, "seed": cfg.seed, "max_examples": cfg.max_examples,
                     "data_version": data_version(cfg.dataset), "numerics": run_numerics(cfg)}
        self.corpus = (_embed_corpus(cfg, tuple(self.specs.values()), self.artifacts, self.device)
                       if cfg.mode != "finetune" else "")

    def _train(self, model: str, settings: TrainSettings, texts: list[str], targets: np.ndarray,
               val_labels: np.ndarray, predict_on: tuple[str, ...], desc: str,
               on_model: Callable[[Classifier], Arrays] | None = None,
               extra: dict[str, list[str]] | None = None,
               trusted: dict[int, float] | None = None) -> tuple[Arrays, dict[str, Any]]:
        """Train one model, selecting on ``val_labels``; its predictions on the splits of
        ``predict_on`` and on the texts of ``extra``, and what ``on_model`` makes of it."""
        seed_everything(self.cfg.seed)
        watch = Watch(self.texts["validation"], val_labels, self.texts["test"], self.truth["test"])
        fitted = _fit(self.specs[model], settings, texts, targets, self.artifacts, desc=desc, corpus=self.corpus,
                      watch=watch, trusted=trusted)
        texts_of = {**{name: self.texts[name] for name in predict_on}, **(extra or {})}
        arrays = {name: fitted.predict_proba(t).astype(np.float32) for name, t in texts_of.items()}
        if on_model is not None:
            arrays.update(on_model(fitted))
        return arrays, {"test_acc": metrics.accuracy(arrays["test"], self.truth["test"]), **_curve(watch)}

    def weak(self) -> tuple[str, Arrays]:
        cfg = self.cfg
        settings = _settings(cfg, self.specs[cfg.weak], "xent", self.device)
        config = {**self.data, "model": cfg.weak, "role": "weak", **_hashable(settings)}
        key = config_hash(config, kind="w2s_weak")

        def train() -> tuple[Arrays, dict[str, Any]]:  # trained on ground truth: selected on it too
            return self._train(cfg.weak, settings, self.texts["weak_train"], self.truth["weak_train"],
                               self.truth["validation"], ("student_train", "validation", "test"), f"weak {cfg.weak}")

        # the weak labels of validation are what a student may select on
        return key, _run_unit(self.store, "w2s_weak", key, config, train, needs=("validation",))

    def ceiling(self) -> tuple[str, Arrays]:
        cfg = self.cfg
        settings = _settings(cfg, self.specs[cfg.strong], "xent", self.device)
        # the spec's name: the configured one, or the adapted model's under genft
        config = {**self.data, "model": self.specs[cfg.strong].name, "role": "ceiling", **_hashable(settings)}
        key = config_hash(config, kind="w2s_ceiling")

        def train() -> tuple[Arrays, dict[str, Any]]:
            return self._train(cfg.strong, settings, self.texts["student_train"], self.truth["student_train"],
                               self.truth["validation"], ("validation", "test"), f"ceiling {cfg.strong}")

        return key, _run_unit(self.store, "w2s_ceiling", key, config, train)

    def _student_settings(self, model: str) -> TrainSettings:
        return _settings(self.cfg, self.specs[model], self.cfg.loss, self.device, student=True)

    def _val_labels(self, supervisor: Arrays) -> np.ndarray:
        # a student sees its supervisor's validation labels; the ground truth only as the oracle ablation
        return self.truth["validation"] if self.cfg.select == "oracle" else supervisor["validation"]

    def link(self, model: str, supervisor_key: str, supervisor: Arrays) -> tuple[str, Arrays]:
        """A bootstrap rung: ``model`` learns from its supervisor's soft labels and labels
        ``student_train`` for the next rung. Cross-fitted, as every supervisor labels examples it
        never trained on: the split is cut into two halves by group, a model trained on each half
        labels the other, and validation and test get the mean of the two."""
        settings = self._student_settings(model)
        config = {**self.data, "model": model, "role": "link", "supervisor_run": supervisor_key, "folds": 2,
                  **_hashable(settings)}
        key = config_hash(config, kind="w2s_link")
        texts, targets = self.texts["student_train"], supervisor["student_train"]
        folds = cross_fit_folds([e.group for e in self.splits.student_train], self.cfg.seed)

        def train() -> tuple[Arrays, dict[str, Any]]:
            labels = np.zeros(len(texts), dtype=np.float32)
            shared: dict[str, list[np.ndarray]] = {"validation": [], "test": []}
            results: dict[str, Any] = {}
            for fold in (0, 1):
                mine, other = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
                arrays, fold_results = self._train(
                    model, settings, [texts[i] for i in mine], targets[mine], self._val_labels(supervisor),
                    ("validation", "test"), f"rung {model} (half {fold + 1}/2)",
                    extra={"other_half": [texts[i] for i in other]})
                labels[other] = arrays["other_half"]
                for name in shared:
                    shared[name].append(arrays[name])
                results[f"half{fold}"] = fold_results
            arrays = {"student_train": labels, **{name: np.mean(v, axis=0).astype(np.float32) for name, v in shared.items()}}
            return arrays, {"test_acc": metrics.accuracy(arrays["test"], self.truth["test"]), **results}

        return key, _run_unit(self.store, "w2s_link", key, config, train)

    def supervise(self, weak_key: str, weak: Arrays) -> tuple[str, Arrays]:
        """A synthetic supervisor's hard labels of each split (``--supervisor flip:...``), made from
        that split's ground truth at ``--supervisor-accuracy``; the measured accuracies go in its row."""
        cfg = self.cfg
        config = {**self.data, "role": "supervisor", "supervisor": cfg.supervisor,
                  "accuracy": cfg.supervisor_accuracy, "weak_run": weak_key}
        key = config_hash(config, kind="w2s_supervisor")

        def train() -> tuple[Arrays, dict[str, Any]]:
            arrays = {split: supervisors.synthetic_labels(
                cfg.supervisor, cfg.supervisor_accuracy, getattr(self.splits, split), self.truth[split],
                weak[split], cfg.seed, split) for split in ("student_train", "validation", "test")}
            measured = {split: metrics.accuracy(arrays[split], self.truth[split]) for split in arrays}
            return arrays, {"test_acc": measured["test"], "accuracy": measured}

        return key, _run_unit(self.store, "w2s_supervisor", key, config, train)

    def student(self, supervisor_key: str, supervisor: Arrays) -> tuple[str, Arrays]:
        """The weak-to-strong student, trained on its supervisor's labels of ``student_train`` (and
        the ground truth of ``--truth-budget`` of them: mixed in, or to a two-head student's truth head)."""
        cfg = self.cfg
        settings = self._student_settings(cfg.strong)
        beyond = {name: value for name, value in key_fields(cfg).items() if name in ("student", "truth_budget")}
        config = {**self.data, "model": self.specs[cfg.strong].name, "role": "w2s", "weak_run": supervisor_key,
                  **_hashable(settings), **beyond}
        key = config_hash(config, kind="w2s_student")
        finetuning = settings.mode == "finetune"

        def train() -> tuple[Arrays, dict[str, Any]]:
            budget = supervisors.TruthBudget(self.truth["student_train"], cfg.truth_budget, cfg.seed)
            trusted = budget.read() if cfg.truth_budget else {}
            targets = supervisor["student_train"]
            if cfg.student == "naive" and trusted:
                targets = supervisors.mix_in(targets, trusted)
            arrays, results = self._train(cfg.strong, settings, self.texts["student_train"],
                                          targets, self._val_labels(supervisor), ("test",),
                                          f"w2s {cfg.weak}->{cfg.strong} {cfg.loss}",
                                          on_model=self._saliency if finetuning else None,
                                          trusted=trusted if cfg.student == "two-head" else None)
            for name in ("probe_pretrained", "probe_finetuned"):
                if name in arrays:
                    results[f"{name}_acc"] = metrics.accuracy(arrays[name], self.truth["test"])
            return arrays, {**results, "truth_labels_read": budget.reads}

        needs = ("probe_finetuned",) if finetuning else ()
        return key, _run_unit(self.store, "w2s_student", key, config, train, needs=needs)

    def error_analysis(self, supervisor_key: str, supervisor: Arrays) -> dict[str, Any]:
        """How predictable the supervisor's mistakes are from the student's pretrained features: a
        linear probe for "supervisor wrong" fitted on ``student_train``, its AUROC on validation. An
        analysis that reads ground truth: nothing trains, selects or stops on it."""
        spec = self.specs[self.cfg.strong]
        config = {**self.data, "model": spec.name, "role": "error_probe", "supervisor_run": supervisor_key}
        key = config_hash(config, kind="w2s_error_probe")

        def train() -> tuple[Arrays, dict[str, Any]]:
            corpus = self.corpus or _embed_corpus(self.cfg, (spec,), self.artifacts, self.device)
            pretrained = FrozenFeaturizer(FeatureCache(self.artifacts, spec, corpus, self.device), self.device)
            readable = pairs.side_difference if pairs.is_pairwise(self.texts["test"]) else (lambda f: f)
            wrong = {s: supervisors.wrong(supervisor[s], self.truth[s]) for s in ("student_train", "validation")}
            if wrong["student_train"].all() or not wrong["student_train"].any():
                return {"validation": np.full(len(wrong["validation"]), np.nan, np.float32)}, {"error_auroc": None}
            probs = probe_predictions(readable(pretrained.transform(self.texts["student_train"])),
                                      wrong["student_train"].astype(np.float32),
                                      readable(pretrained.transform(self.texts["validation"])), self.cfg.seed)
            return {"validation": probs.astype(np.float32)}, {"error_auroc": metrics.auroc(probs, wrong["validation"])}

        _run_unit(self.store, "w2s_error_probe", key, config, train)
        return {"error_auroc": self.store.get(key)["results"].get("error_auroc")}

    def _saliency(self, model: Classifier) -> Arrays:
        """The paper's saliency analysis (an analysis, not a method: it changes no prediction): a
        ground-truth linear probe fitted on ``student_train`` and read on test, on the finetuned
        student's features and on the same backbone's pretrained features."""
        assert isinstance(model, TextClassifier)
        spec = self.specs[self.cfg.strong]
        train, test = self.texts["student_train"], self.texts["test"]
        corpus = _embed_corpus(self.cfg, (spec,), self.artifacts, self.device)
        pretrained = FrozenFeaturizer(FeatureCache(self.artifacts, spec, corpus, self.device), self.device)
        truth, seed = self.truth["student_train"], self.cfg.seed
        # of preference pairs, a probe reads f(A) - f(B): a Bradley–Terry model with a linear reward
        readable = pairs.side_difference if pairs.is_pairwise(train) else (lambda features: features)
        return {
            "probe_pretrained": probe_predictions(readable(pretrained.transform(train)), truth,
                                                  readable(pretrained.transform(test)), seed),
            "probe_finetuned": probe_predictions(readable(model.features(train)), truth,
                                                 readable(model.features(test)), seed),
        }


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


@dataclass
class Roles:
    """The runs of one seed: each role's predictions (or answers) by split, and their store keys."""

    weak: Arrays
    ceiling: Arrays
    supervisor: Arrays  # whoever labelled the student's training split: weak, or the chain's last rung
    student: Arrays
    run_keys: dict[str, str]
    chain: list[dict[str, Any]]  # per rung: its own test accuracy and that of its labels
    val_acc: dict[str, float]  # weak's and ceiling's ground-truth validation accuracy: the gap that picks a headline pair


def run_roles(cell: Any, accuracy: Callable[[Arrays, str], float]) -> Roles:
    """Weak, ceiling, each rung of the chain (labelling for the next), then the student, of a cell
    with those four methods (``Cell`` here, ``generative.GenCell``); ``accuracy(arrays, split)``
    scores a rung for the row."""
    weak_key, weak = cell.weak()
    ceiling_key, ceiling = cell.ceiling()
    run_keys = {"weak": weak_key, "ceiling": ceiling_key}
    if getattr(cell.cfg, "supervisor", "model") != "model":  # a synthetic supervisor takes the weak role
        run_keys["weak_model"] = weak_key
        weak_key, weak = cell.supervise(weak_key, weak)
        run_keys["weak"] = weak_key
    supervisor_key, supervisor, chain = weak_key, weak, []
    for i, model in enumerate(cell.cfg.chain_models(), 1):
        supervisor_key, supervisor = cell.link(model, supervisor_key, supervisor)
        run_keys[f"link{i}"] = supervisor_key
        chain.append({"model": model, "test_acc": accuracy(supervisor, "test"),
                      "label_acc": accuracy(supervisor, "student_train")})
    run_keys["w2s"], student = cell.student(supervisor_key, supervisor)
    val_acc = {"weak_val_acc": accuracy(weak, "validation"), "ceiling_val_acc": accuracy(ceiling, "validation")}
    return Roles(weak, ceiling, supervisor, student, run_keys, chain, val_acc)


def run_experiment(cfg: W2SConfig, store: ResultsStore) -> dict[str, Any]:
    """Run (or fetch) the weak, ceiling, rung and weak-to-strong runs of one seed; return its metrics."""
    cfg.validate()
    code_commit()  # the commit this run's code came from, before HEAD can move
    pair_key = experiment_key(cfg)
    done = _finished(store, pair_key)
    if done is not None:
        return done
    set_threads()
    if is_generative(cfg.dataset):  # decoders generate an answer, exact match scores it
        from oversight.w2s.generative import run_generative  # it builds on this module

        return run_generative(cfg, store, pair_key)
    start = time.time()
    cell = Cell(cfg, store)
    test_labels = cell.truth["test"]
    roles = run_roles(cell, lambda arrays, split: metrics.accuracy(arrays[split], cell.truth[split]))
    weak, ceiling, student = roles.weak, roles.ceiling, roles.student

    results = seed_metrics(cfg, weak["test"], student["test"], ceiling["test"], test_labels)
    results.update({
        "weak_label_acc": metrics.accuracy(weak["student_train"], cell.truth["student_train"]),
        "task": "preference" if pairs.is_pairwise(cell.texts["test"]) else "classify",
        "truth_labels_read": store.get(roles.run_keys["w2s"])["results"].get("truth_labels_read", 0),
        **cell.error_analysis(roles.run_keys["weak"], weak),
    })
    if "weak_model" in roles.run_keys:  # the weak model's own accuracy, beside its synthetic stand-in's
        results["weak_model_acc"] = store.get(roles.run_keys["weak_model"])["results"]["test_acc"]
    for name in ("probe_pretrained", "probe_finetuned"):
        if name in student:
            results[f"saliency_{name[6:]}_acc"] = metrics.accuracy(student[name], test_labels)
    return store_seed_row(store, cfg, pair_key, cell, roles, results, test_labels, start)


def store_seed_row(store: ResultsStore, cfg: W2SConfig, pair_key: str, cell: Any, roles: Roles,
                   results: dict[str, Any], test_labels: np.ndarray, start: float) -> dict[str, Any]:
    """Store one seed's row (its metrics, plus what every row records) and its test labels, which
    the bootstrap over seeds reads again; return the row as stored (undefined PGR is None)."""
    results.update({
        "split_sizes": cell.splits.sizes(),
        "run_keys": roles.run_keys,
        "data_version": cell.data["data_version"],
        "numerics": cell.data["numerics"],
        **roles.val_acc,
        **run_flags(store, roles.run_keys, results["ceiling_acc"], test_labels, results.get("task", "classify")),
        "seconds": time.time() - start,
        "provenance": provenance(),
    })
    if roles.chain:
        results["chain"] = roles.chain
    # the test groups go beside the labels: the bootstrap resamples whole groups (a movie, a country)
    _, groups = np.unique([e.group for e in cell.splits.test], return_inverse=True)
    artifacts_for(store).save_arrays(f"labels{pair_key}", {"test": test_labels,
                                                           "test_groups": groups.astype(np.int32)})
    store.put(pair_key, "w2s", asdict(cfg), results, seconds=results["seconds"])
    return store.get(pair_key)["results"]


def _embed_corpus(cfg: W2SConfig, specs: tuple[ModelSpec, ...], artifacts: ArtifactStore, device: str) -> str:
    """Frozen features of every text of the dataset, in one pass per model (so every seed and split
    finds its own cached, computed alike whatever the store held before); returns the corpus key."""
    texts = pairs.plain_texts(dataset_texts(cfg.dataset, cfg.seed, cfg.max_examples))  # pairs: each side
    corpus = FeatureCache.corpus_key(texts)
    for spec in {s.name: s for s in specs}.values():
        if spec.kind != "bow":
            FeatureCache(artifacts, spec, corpus, device).get(texts)
    return corpus


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


