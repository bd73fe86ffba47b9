"""``oversight w2s active``: a weak-to-strong student that chooses which examples its supervisor labels.

    oversight w2s active --dataset rotten_tomatoes --weak bow --strong minilm-l6 --budget 1000 --rounds 5
    oversight w2s active ... --strategy random,uncertainty --truth-budget 100 --truth-placement targeted
    oversight w2s active --preset active      # rotten_tomatoes and tweet_sentiment, every strategy, +-100 truth
    oversight w2s active ... --json           # one JSON object per (arm, round), then the frontier and matches

One run is one (config, strategy, seed). Its weak model (or synthetic ``--supervisor``) and its
ceiling come from :class:`~oversight.w2s.pipeline.Cell`, keyed as ``w2s run`` keys them, so the two
commands share them in one store. The pool is ``student_train``; the supervisor's label of a pool
example is handed out only by a :class:`LabelOracle`, which counts every label and refuses to go
past the budget or to answer twice. Each round buys ``budget / rounds`` labels chosen by the
strategy (round 0: a seeded random draw, the same for every strategy), then a fresh student head
(xent, on the strong model's frozen features) is trained on every labelled example in pool order
and its test accuracy recorded. Strategies (``active_select.py``): ``all`` (one round labelling the
whole pool: today's ``w2s run`` with ``--select last``), ``random``, ``uncertainty`` (|p - 0.5|
smallest), ``disagreement`` (a committee of ``--committee`` heads on bootstrap resamples of the
labelled set: highest variance) and ``diagnostic`` (uncertain and where a two-head error model
predicts the supervisor right: informativeness x (1 - e(x))).

``--truth-budget K``: once the supervisor budget is spent, K ground-truth labels are read through a
counting oracle (exactly K reads) at ``random`` pool examples or ``targeted`` at the K labelled
examples of highest predicted supervisor error e(x); they replace or add to the labels and the
student is retrained once: a final point. Such a run extends the stored run without truth.

The test split trains, selects and stops nothing (it is only measured); students keep their last
weights, so no validation label is read; ground truth comes only through the counted truth budget.
Arrays are saved before the row: a crash leaves no row and the run is redone; a finished one never.
Not built: growing the pool by generating new inputs (the pool is ``student_train`` as split).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from oversight.config import (
    canonical_json,
    make_config,
    run_key,
    split_list,
)
from oversight.errors import ArtifactError, ConfigError
from oversight.progress import log
from oversight.runtime import code_commit, provenance, set_threads
from oversight.store import ResultsStore, StoreMemo, artifacts_for
from oversight.w2s import active_select as select
from oversight.w2s import metrics, pairs, supervisors
from oversight.w2s.config import HEADS, W2SConfig, data_version, run_numerics
from oversight.w2s.gen_data import is_generative
from oversight.w2s.models import get_model_spec
from oversight.w2s.pipeline import Cell
from oversight.w2s.train import FeatureCache, FrozenFeaturizer, TrainSettings, train_head
from oversight.w2s.two_head import train_two_head

STRATEGIES = ("all", "random", "uncertainty", "disagreement", "diagnostic")
PLACEMENTS = ("random", "targeted")
KIND = "w2s_active"
SELECTION = "last (no validation labels are read)"
Arrays = dict[str, np.ndarray]


@dataclass
class ActiveConfig:
    """One active-learning arm: a (dataset, weak, strong, supervisor, strategy) at one seed."""

    dataset: str = field(default="rotten_tomatoes", metadata={"help": "a name (`oversight datasets`), file:PATH or hf:NAME[:CONFIG]"})
    weak: str = field(default="bow", metadata={"help": "weak supervisor model (see `oversight models`): its soft labels are what a query returns"})
    strong: str = field(default="minilm-l6", metadata={"help": "strong student model: a head is trained on its frozen features (not bow)"})
    supervisor: str = field(default="model", metadata={"help": "who answers queries: model (the weak model), flip:random, flip:rule:RULE or flip:model"})
    supervisor_accuracy: str = field(default="", metadata={"help": "a flip: supervisor's accuracy: a number in (0.5, 1] or weak (higher = fewer wrong answers)"})
    strategy: str = field(default=",".join(STRATEGIES), metadata={"help": f"how the student picks what to query, a comma list of: {', '.join(STRATEGIES)} (all = label the whole pool)"})
    budget: int = field(default=0, metadata={"help": "supervisor labels a student may buy (0 = a third of the pool; more than the pool is capped at the pool)"})
    rounds: int = field(default=5, metadata={"help": "rounds the budget is spent in, a student retrained after each (more = more adaptive, slower)"})
    truth_budget: int = field(default=0, metadata={"help": "ground-truth pool labels read after the supervisor budget is spent (counted; 0 = none)"})
    truth_placement: str = field(default="random", metadata={"choices": PLACEMENTS, "help": "where the truth budget goes: random pool examples, or targeted at the labelled examples of highest predicted supervisor error"})
    committee: int = field(default=4, metadata={"help": "disagreement: heads in the committee, each on a bootstrap resample (more = a steadier variance, slower)"})
    head: str = field(default="mlp", metadata={"choices": HEADS, "help": "student head on frozen features (mlp = more capacity than logistic)"})
    epochs: int = field(default=10, metadata={"help": "training epochs of every head (more = fits its labels closer)"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of every head (higher = faster, less stable)"})
    batch_size: int = field(default=64, metadata={"help": "minibatch size of every head (smaller = more steps per epoch)"})
    max_examples: int | None = field(default=None, metadata={"help": "subsample the dataset to about this many examples (by group) for quick runs"})
    seed: int = field(default=0, metadata={"help": "seed of the data split, the random picks and training (>= 0)"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast for backbone passes (faster on some hosts, slightly less precise)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N", "identity": False})

    def strategies(self) -> list[str]:
        return split_list(self.strategy)

    def unused_fields(self, values: dict[str, Any]) -> set[str]:
        """Fields that do not change this arm's numbers, so they stay out of its key: ``all`` labels
        the whole pool in one round; only ``disagreement`` has a committee; no truth, no placement."""
        unused = {"budget", "rounds", "committee"} if self.strategy == "all" else set()
        unused |= set() if self.strategy == "disagreement" else {"committee"}
        return unused | (set() if self.truth_budget else {"truth_placement"})

    def w2s_config(self) -> W2SConfig:
        """The ``w2s run`` cell whose weak model, supervisor and ceiling this arm shares."""
        return make_config(W2SConfig, dataset=self.dataset, weak=self.weak, strong=self.strong, mode="head",
                           head=self.head, seed=self.seed, supervisor=self.supervisor,
                           supervisor_accuracy=self.supervisor_accuracy, epochs=self.epochs, lr=self.lr,
                           batch_size=self.batch_size, max_examples=self.max_examples, bf16=self.bf16,
                           device=self.device, select="last")

    def resolve_names(self) -> None:
        """The dataset and both models looked up before any work; the student needs frozen features."""
        self.w2s_config().resolve_names()
        if get_model_spec(self.strong).kind == "bow":
            raise ConfigError("strong", "the student is a head on frozen features; bow has none: give a transformer")

    def validate(self) -> None:
        for name in ("dataset", "weak", "strong"):
            if not getattr(self, name).strip():
                raise ConfigError(name, "is empty")
        if is_generative(self.dataset):
            raise ConfigError("dataset", "active learning is built for classification datasets, not generated answers")
        if self.weak == self.strong:
            raise ConfigError("strong", "the strong model must differ from the weak model")
        supervisors.check(self.supervisor, self.supervisor_accuracy)
        if not self.strategies():
            raise ConfigError("strategy", f"is empty; give one or more of {', '.join(STRATEGIES)}")
        for name, values, allowed in (("strategy", self.strategies(), STRATEGIES),
                                      ("truth_placement", [self.truth_placement], PLACEMENTS), ("head", [self.head], HEADS)):
            for value in values:
                if value not in allowed:
                    raise ConfigError(name, f"{value!r} is not one of {', '.join(allowed)}")
        for name, low in (("budget", 0), ("truth_budget", 0), ("seed", 0), ("rounds", 1), ("epochs", 1),
                          ("batch_size", 1), ("committee", 2)):
            if getattr(self, name) < low:
                raise ConfigError(name, f"must be >= {low}, got {getattr(self, name)}")
        if self.max_examples is not None and self.max_examples <= 0:
            raise ConfigError("max_examples", f"must be positive, got {self.max_examples}")
        if not self.lr > 0:
            raise ConfigError("lr", f"must be positive, got {self.lr}")
        if self.budget and self.budget < self.rounds:
            raise ConfigError("budget", f"{self.budget} labels cannot fill {self.rounds} rounds (each buys at least one)")


class OracleError(RuntimeError):
    """A query an oracle refuses: past its budget, or an index it already answered."""


class LabelOracle:
    """The only door to a pool's labels (the supervisor's, or the truth's for a truth budget): it
    answers queried pool indices, counts every label it hands out (``calls``), and raises
    :class:`OracleError` past its ``budget`` or when asked twice for one index."""

    def __init__(self, labels: np.ndarray, budget: int, name: str = "supervisor") -> None:
        self._labels, self.budget, self.name, self.calls = np.asarray(labels, dtype=np.float32), budget, name, 0
        self.answers = np.full(len(self._labels), np.nan, dtype=np.float32)  # NaN where never asked

    @property
    def labelled(self) -> np.ndarray:
        """A boolean mask over the pool: the indices answered so far."""
        return ~np.isnan(self.answers)

    def query(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if len(set(indices.tolist())) != indices.size or self.labelled[indices].any():
            raise OracleError(f"the {self.name} oracle answers each pool index once; asked again for some of {indices.tolist()[:10]}")
        if self.calls + indices.size > self.budget:
            raise OracleError(f"the {self.name} oracle's budget is {self.budget} labels; {self.calls} given, "
                              f"{indices.size} more asked")
        self.calls += indices.size
        self.answers[indices] = self._labels[indices]
        return self.answers[indices].copy()


# --------------------------------------------------------------------------- one run

class Context:
    """One seed's shared pieces: the cell, the supervisor's pool labels and test predictions, the
    ceiling's, the strong model's frozen featurizer. Every arm of that seed reuses it."""

    def __init__(self, cfg: ActiveConfig, store: ResultsStore) -> None:
        self.store, self.cell = store, Cell(cfg.w2s_config(), store)
        spec = self.cell.specs[cfg.strong]
        if spec.kind == "bow":
            raise ConfigError("strong", "the student is a head on frozen features; bow has none: give a transformer")
        weak_key, weak = self.cell.weak()
        self.keys = {"supervisor": weak_key}
        if cfg.supervisor != "model":  # a synthetic supervisor answers queries instead of the weak model
            self.keys["weak_model"] = weak_key
            self.keys["supervisor"], weak = self.cell.supervise(weak_key, weak)
        self.keys["ceiling"], ceiling = self.cell.ceiling()
        self.pool, self.labels = self.cell.texts["student_train"], weak["student_train"]
        self.test_labels = self.cell.truth["test"]
        self.supervisor_acc = metrics.accuracy(weak["test"], self.test_labels)
        self.ceiling_acc = metrics.accuracy(ceiling["test"], self.test_labels)
        self.featurizer = FrozenFeaturizer(FeatureCache(self.cell.artifacts, spec, self.cell.corpus, self.cell.device),
                                           self.cell.device)
        _, groups = np.unique([e.group for e in self.cell.splits.test], return_inverse=True)
        self.test_groups = groups.astype(np.int32)

    def key(self, cfg: ActiveConfig) -> str:
        return run_key(cfg, kind=KIND, data_version=data_version(cfg.dataset),
                       numerics=run_numerics(self.cell.cfg), supervisor=self.keys["supervisor"],
                       ceiling=self.keys["ceiling"])

    def settings(self, cfg: ActiveConfig, seed: int) -> TrainSettings:
        return TrainSettings(mode="head", head=cfg.head, loss="xent", epochs=cfg.epochs, lr=cfg.lr,
                             batch_size=cfg.batch_size, select="last", bf16=cfg.bf16, device=self.cell.device, seed=seed)

    def student(self, cfg: ActiveConfig, indices: np.ndarray, targets: np.ndarray, seed: int | None = None,
                desc: str = "active student") -> Any:
        """A fresh head on the pool examples ``indices`` (in that order) and their labels ``targets``
        (pool-wide, read at ``indices``): no watch, so nothing of validation or test is seen."""
        return train_head(self.featurizer, [self.pool[i] for i in indices], np.asarray(targets)[indices],
                          self.settings(cfg, cfg.seed if seed is None else seed), desc=desc)

    def error_model(self, cfg: ActiveConfig, labelled: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """e(x) over the pool: a two-head student's predicted supervisor flip rate, fitted on the
        supervisor's labels of the labelled examples (no truth)."""
        if pairs.is_pairwise(self.pool):
            raise ConfigError("strategy", "diagnostic and a targeted truth budget need an error model: classification only")
        indices = np.flatnonzero(labelled)
        model = train_two_head(self.featurizer, [self.pool[i] for i in indices], answers[indices],
                               self.settings(cfg, cfg.seed), desc="active error model")
        return model.error_proba(self.pool)

    def point(self, r: int, probs: np.ndarray, labels: int, truth: int) -> dict[str, Any]:
        acc = metrics.accuracy(probs, self.test_labels)
        return {"round": r, "labels": int(labels), "truth_labels": int(truth), "test_acc": acc,
                "pgr": metrics.pgr(self.supervisor_acc, acc, self.ceiling_acc)}


def pick(ctx: Context, cfg: ActiveConfig, r: int, k: int, oracle: LabelOracle, student: Any) -> np.ndarray:
    """The pool indices round ``r`` of ``cfg.strategy`` queries, given the current student (None
    before round 0): never one already labelled."""
    labelled = oracle.labelled
    if cfg.strategy == "all":
        return np.arange(len(ctx.pool))
    if r == 0 or student is None or cfg.strategy == "random":  # round 0: one seeded draw for every strategy
        return select.pick_random(labelled, k, np.random.default_rng([cfg.seed, 11, r]))
    if cfg.strategy == "disagreement":
        known = np.flatnonzero(labelled)
        committee = [ctx.student(cfg, select.bootstrap_sample(known, np.random.default_rng([cfg.seed, 13, r, j])),
                                 oracle.answers, seed=cfg.seed + j, desc=f"committee {j + 1}/{cfg.committee}"
                                 ).predict_proba(ctx.pool) for j in range(cfg.committee)]
        return select.pick_disagreement(np.stack(committee), labelled, k)
    probs = student.predict_proba(ctx.pool)
    if cfg.strategy == "uncertainty":
        return select.pick_uncertain(probs, labelled, k)
    return select.pick_diagnostic(probs, ctx.error_model(cfg, labelled, oracle.answers), labelled, k)


def _rounds(ctx: Context, cfg: ActiveConfig) -> tuple[Arrays, dict[str, Any]]:
    """The rounds of one arm without truth: query, retrain, measure on test."""
    n = len(ctx.pool)
    budget = n if cfg.strategy == "all" else select.spend(cfg.budget, n, cfg.rounds)
    if cfg.budget > n and cfg.strategy != "all":
        log(f"--budget {cfg.budget} is more than the {n} pool examples; capped at {n}")
    sizes = [budget] if cfg.strategy == "all" else select.round_sizes(budget, cfg.rounds)
    oracle = LabelOracle(ctx.labels, budget)
    labelled_round = np.full(len(ctx.pool), -1, dtype=np.int32)
    arrays: Arrays = {}
    points, student = [], None
    for r, k in enumerate(sizes):
        chosen = pick(ctx, cfg, r, k, oracle, student)
        oracle.query(chosen)
        labelled_round[chosen] = r
        student = ctx.student(cfg, np.flatnonzero(oracle.labelled), oracle.answers, desc=f"{cfg.strategy} round {r + 1}")
        arrays[f"test_round{r}"] = student.predict_proba(ctx.cell.texts["test"]).astype(np.float32)
        points.append(ctx.point(r, arrays[f"test_round{r}"], oracle.calls, 0))
    arrays["labelled_round"] = labelled_round
    return arrays, {"budget": budget, "rounds": points, "labels_used": oracle.calls, "truth_labels_read": 0}


def _truth(ctx: Context, cfg: ActiveConfig, base: dict[str, Any]) -> tuple[Arrays, dict[str, Any]]:
    """The stored run without truth, then ``truth_budget`` ground-truth labels and one retraining."""
    stored = artifacts_for(ctx.store).load_arrays(base["key"])
    labelled = stored["labelled_round"] >= 0
    oracle = LabelOracle(ctx.labels, int(labelled.sum()))  # the same labels, read again and counted
    oracle.query(np.flatnonzero(labelled))
    k = cfg.truth_budget
    if cfg.truth_placement == "targeted":
        if k > labelled.sum():
            raise ConfigError("truth_budget", f"targeted: {k} is more than the {labelled.sum()} labelled examples")
        places = select.pick_truth_targeted(ctx.error_model(cfg, labelled, oracle.answers), labelled, k)
    else:
        if k > len(ctx.pool):
            raise ConfigError("truth_budget", f"{k} is more than the {len(ctx.pool)} pool examples")
        places = select.pick_truth_random(len(ctx.pool), k, np.random.default_rng([cfg.seed, 17]))
    truth = LabelOracle(ctx.cell.truth["student_train"], k, name="truth")
    targets = oracle.answers.copy()
    targets[places] = truth.query(places)
    trained = labelled.copy()
    trained[places] = True
    student = ctx.student(cfg, np.flatnonzero(trained), targets, desc=f"{cfg.strategy} + {k} truth")
    points = list(base["results"]["rounds"])
    arrays = {name: a for name, a in stored.items() if name.startswith("test_round")}
    arrays[f"test_round{len(points)}"] = student.predict_proba(ctx.cell.texts["test"]).astype(np.float32)
    points.append(ctx.point(len(points), arrays[f"test_round{len(points)}"], oracle.calls, truth.calls))
    arrays.update(labelled_round=stored["labelled_round"], truth_indices=places.astype(np.int32))
    return arrays, {"budget": base["results"]["budget"], "rounds": points, "labels_used": oracle.calls,
                    "truth_labels_read": truth.calls, "base_run": base["key"]}


def _get_or_run(ctx: Context, cfg: ActiveConfig, compute: Callable[[], tuple[Arrays, dict[str, Any]]]) -> dict[str, Any]:
    """The stored record of ``cfg``'s run, computing it first if its row or arrays are missing.
    Arrays first, the row last: a crash in between leaves no row, and the run is redone."""
    key, artifacts = ctx.key(cfg), artifacts_for(ctx.store)
    done = ctx.store.get(key)
    if done is not None:
        try:
            artifacts.load_arrays(key)
            return done
        except ArtifactError as err:
            log(f"{err}; redoing its run")
    arrays, results = compute()
    arrays.update(test=ctx.test_labels, test_groups=ctx.test_groups)
    results.update({
        "strategy": cfg.strategy, "pool": len(ctx.pool), "supervisor_acc": ctx.supervisor_acc,
        "ceiling_acc": ctx.ceiling_acc, "test_acc": results["rounds"][-1]["test_acc"], "run_keys": ctx.keys,
        "selection": SELECTION, "split_sizes": ctx.cell.splits.sizes(), "data_version": ctx.cell.data["data_version"],
        "numerics": ctx.cell.data["numerics"], "provenance": provenance()})
    artifacts.save_arrays(key, arrays)
    ctx.store.put(key, KIND, asdict(cfg), results)
    record = ctx.store.get(key)
    assert record is not None
    return record


def run_active(cfg: ActiveConfig, store: ResultsStore, contexts: dict[str, Context] | None = None) -> dict[str, Any]:
    """Run (or fetch) one (config, strategy, seed); returns its stored record (key, config, results).
    ``contexts`` (a dict the caller keeps) shares one seed's data and models across its arms."""
    cfg.validate()
    if len(cfg.strategies()) != 1:
        raise ConfigError("strategy", f"a run has one strategy, got {cfg.strategy!r}")
    code_commit()  # the commit this run's code came from, before HEAD can move
    set_threads()
    name = canonical_json(asdict(cfg.w2s_config()))
    contexts = {} if contexts is None else contexts
    if name not in contexts:
        contexts[name] = Context(cfg, store)
    ctx = contexts[name]
    if not cfg.truth_budget:
        return _get_or_run(ctx, cfg, lambda: _rounds(ctx, cfg))
    plain = replace(cfg, truth_budget=0, truth_placement="random")
    base = _get_or_run(ctx, plain, lambda: _rounds(ctx, plain))
    return _get_or_run(ctx, cfg, lambda: _truth(ctx, cfg, base))


# --------------------------------------------------------------------------- over seeds

def arm_label(cfg: dict[str, Any]) -> str:
    """An arm as tables name it: its strategy, and its truth budget if any."""
    k = cfg.get("truth_budget") or 0
    return cfg["strategy"] + (f" +{k} {cfg['truth_placement']} truth" if k else "")


_AGGREGATES = StoreMemo()


def aggregate(records: list[dict[str, Any]], store: ResultsStore, n_boot: int = 1000) -> list[dict[str, Any]]:
    """One row per round of one arm over its seeds' stored records: mean test accuracy, and the PGR
    with a 95% CI from a bootstrap over seeds, then test groups within each (once per store version)."""
    files = [r["key"] for r in records] + [r["results"]["run_keys"][role] for r in records
                                           for role in ("supervisor", "ceiling") if role in r["results"].get("run_keys", {})]
    key = (tuple(r["key"] for r in records), n_boot, artifacts_for(store).stamp(files))
    return _AGGREGATES.get(store, key, lambda: _aggregate(records, store, n_boot))


def _aggregate(records: list[dict[str, Any]], store: ResultsStore, n_boot: int) -> list[dict[str, Any]]:
    if not records:
        raise RuntimeError("no finished runs to aggregate")
    seeds = [r["config"]["seed"] for r in records]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {sorted(seeds)} of one arm repeat: an arm aggregates one run per seed")
    artifacts = artifacts_for(store)
    runs = [artifacts.load_arrays(r["key"]) for r in records]
    sup = [artifacts.load_arrays(r["results"]["run_keys"]["supervisor"])["test"] for r in records]
    ceiling = [artifacts.load_arrays(r["results"]["run_keys"]["ceiling"])["test"] for r in records]
    labels, groups = [a["test"] for a in runs], [a["test_groups"] for a in runs]
    cfg = records[0]["config"]
    rows = []
    for p in range(min(len(r["results"]["rounds"]) for r in records)):
        points = [r["results"]["rounds"][p] for r in records]
        acc, acc_std, _ = metrics.mean_std([pt["test_acc"] for pt in points])
        sup_acc, ceiling_acc = (metrics.mean_std([r["results"][n] for r in records])[0]
                                for n in ("supervisor_acc", "ceiling_acc"))
        ci = metrics.hierarchical_bootstrap_pgr(labels, sup, [a[f"test_round{p}"] for a in runs], ceiling,
                                                n_boot=n_boot, seed=0, groups=groups)
        rows.append(metrics.summarize({
            **{k: cfg[k] for k in ("dataset", "weak", "strong", "supervisor", "supervisor_accuracy", "strategy",
                                   "truth_budget", "truth_placement")},
            "arm": arm_label(cfg), "round": p, "seeds": len(records), "seed_values": seeds,
            "labels": int(round(float(np.mean([pt["labels"] for pt in points])))),
            "truth_labels": int(max(pt["truth_labels"] for pt in points)),
            "pool": int(round(float(np.mean([r["results"]["pool"] for r in records])))),
            "test_acc": acc, "test_acc_std": acc_std, "supervisor_acc": sup_acc, "ceiling_acc": ceiling_acc,
            "pgr": metrics.pgr(sup_acc, acc, ceiling_acc), "pgr_ci_low": ci["pgr_ci_low"],
            "pgr_ci_high": ci["pgr_ci_high"], "gap_ci_low": ci["gap_ci_low"], "ci_covers": ci["ci_covers"]}))
    return rows
