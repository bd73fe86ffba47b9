"""The configuration of one Iterated-Amplification run, and which of its fields each mode uses.

    from oversight.amplification.config import AmplifyConfig, fields_the_mode_uses
    cfg = AmplifyConfig(task="permutation_powering", mode="amplify", size=8, steps=1500)
    cfg.validate()                    # a ConfigError naming the field, for a config that cannot run
    cfg = cfg.with_task_defaults()    # lr, questions_per_context and target_workers as the run uses them
    cfg.test_sizes                    # [8]: the sizes X is tested at
    fields_the_mode_uses(dataclasses.asdict(cfg))   # less hprime_* outside amplify-learned, weak outside the weak modes

Every field is a flag of ``oversight amplify run``, its ``help`` the flag's help. ``identity: False``
marks the fields that do not change a run's numbers, and ``key_neutral`` the value at which a field
is left out of a run's key (``oversight.config.run_identity``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from oversight.amplification.curriculum import CURRICULA
from oversight.amplification.env import TASKS, Task, make_task
from oversight.config import check_finite
from oversight.errors import ConfigError

BASE_MODES = ("supervised", "amplify", "amplify-learned")
# the bridge to weak-to-strong (``bridge.py``): X's targets come from a weak supervisor W (``weak.py``)
WEAK_MODES = ("weak-to-strong", "amplified-weak", "amplified-weak+self")
MODES = BASE_MODES + WEAK_MODES
W2S_LOSSES = ("xent", "logconf")  # weak-to-strong mode's losses (the w2s family's names)
# each target worker is a process with its pipes and a copy of X: a thousand exhaust the open files
MAX_TARGET_WORKERS = 64
STANDARD_TEST_SIZES = (8, 16, 32, 64)


@dataclass
class AmplifyConfig:
    """One Iterated-Amplification run. Every field is a CLI flag of ``oversight amplify run``."""

    task: str = field(default="permutation_powering", metadata={"help": "environment (see oversight.amplification.tasks)"})
    mode: str = field(default="amplify", metadata={"help": "where X's targets come from", "choices": MODES})
    weak: str = field(default="", metadata={"help": "weak modes: W as small-size:M, small-model:L[xD] or budget:K (larger values = a stronger W)", "key_neutral": ""})
    w2s_loss: str = field(default="xent", metadata={"help": "weak-to-strong mode: xent copies W's answers; logconf mixes in X's own answers (more X, less W)", "choices": W2S_LOSSES, "key_neutral": "xent"})
    size: int = field(default=16, metadata={"help": "largest instance size n trained and tested (2..64; larger = harder questions, slower steps)"})
    steps: int = field(default=5000, metadata={"help": "training steps: the budget results are keyed and compared by (more = longer training)"})
    minutes: float = field(default=0.0, metadata={"help": "also stop after this much training wall time, for benchmarks (0 = none); such a run is marked not reproducible"})
    seed: int = field(default=0, metadata={"help": "training seed (the test sets do not depend on it)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N", "identity": False})
    threads: int = field(default=1, metadata={"help": "torch CPU threads (0 = all cores; more gains little for this small model and oversubscribes a shared machine)", "identity": False})
    checkpoint_every: int = field(default=500, metadata={"help": "steps between checkpoints beside the store (0 = none); a rerun of an interrupted run resumes from the last one", "identity": False})
    stop_at_acc: float = field(default=0.99, metadata={"help": "stop once the curriculum is done and validation accuracy at the largest size reaches this (0 = never)"})
    # curriculum
    curriculum: str = field(default="label-free", metadata={"help": "how stages pick questions: label-free (by question form, else instance size) or oracle (by true depth/distance; flagged)", "choices": CURRICULA, "key_neutral": "oracle"})
    curriculum_min_size: int = field(default=4, metadata={"help": "label-free curriculum, depth/distance tasks: first instance size, grown by 1 to twice it, then doubled (smaller = gentler start)"})
    size_step: int = field(default=0, metadata={"help": "label-free curriculum, depth/distance tasks: grow sizes by this step all the way to size (0 = +1 then doubling; smaller = gentler)", "key_neutral": 0})
    start_size: int = field(default=8, metadata={"help": "curriculum: first instance size, doubled stage by stage up to size (smaller = gentler start, more stages)"})
    curriculum_threshold: float = field(default=0.85, metadata={"help": "curriculum: advance when rolling accuracy on the training targets passes this (higher = longer, surer stages)"})
    curriculum_window: int = field(default=20, metadata={"help": "curriculum: steps in the rolling accuracy (more = steadier, later advances)"})
    min_stage_steps: int = field(default=30, metadata={"help": "curriculum: least steps spent in a stage (more = slower, surer advances)"})
    mix_sizes_from: int = field(default=0, metadata={"help": "curriculum: draw sizes from this up to the stage's (0 = the stage's only; lower = keeps small sizes, slows the largest)", "key_neutral": 0})
    relevel_each_size: bool = field(default=True, metadata={"help": "curriculum: restart question difficulty at the first level at every new size (it rests on primitives, so X re-grounds first)"})
    # batch and optimiser
    contexts_per_step: int = field(default=32, metadata={"help": "instances drawn per step, facts encoded once each (more = less noisy gradients, slower steps)"})
    questions_per_context: int = field(default=0, metadata={"help": "questions asked about each instance per step (0 = the task's own; more = more targets per encoding)"})
    target_passes: int = field(default=1, metadata={"help": "gradient steps X takes on each batch of targets (more = H and the teacher cost less per step, targets go staler)", "key_neutral": 1})
    overlap_targets: bool = field(default=True, metadata={"help": "make the next batch and its targets in a worker process while X trains (uses a second core; the teacher is one step older)", "key_neutral": False})
    target_workers: int = field(default=0, metadata={"help": "batch-making worker processes with overlap_targets, at most 64 (0 = the mode's own: 2 in amplify-learned, else 1; more = faster, staler)", "key_neutral": 1})
    lr: float = field(default=0.0, metadata={"help": "AdamW learning rate of X (0 = the task's own, task.learning_rate)"})
    warmup_steps: int = field(default=100, metadata={"help": "linear learning-rate warm-up steps (more = gentler start)"})
    lr_decay_steps: int = field(default=0, metadata={"help": "after this many steps X's learning rate falls as 1/sqrt(step) (0 = constant)", "key_neutral": 0})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient-norm clip (lower = smaller, steadier updates)"})
    teacher_ema: float = field(default=0.97, metadata={"help": "decay of the teacher's EMA of X (0 = the current X; higher = steadier, slower-moving targets)"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (less precise; pays off only where bf16 is fast, rarely for this small model on CPU)"})
    # X
    d_model: int = field(default=64, metadata={"help": "X: width (wider = more capacity, slower steps)"})
    n_heads: int = field(default=4, metadata={"help": "X: attention heads (must divide d_model)"})
    encoder_layers: int = field(default=3, metadata={"help": "X: self-attention layers over the facts (more = deeper chained look-ups, slower steps)"})
    decoder_layers: int = field(default=3, metadata={"help": "X: layers in which questions attend to the facts (more = more capacity, slower steps)"})
    encoder_loops: int = field(default=1, metadata={"help": "X: times the encoder's layers are applied with shared weights (depth without parameters; 1 = off)", "key_neutral": 1})
    # H'
    hprime_d_model: int = field(default=64, metadata={"help": "H': width, a multiple of 4 (narrower = cheaper decisions, but H' imitates H worse and needs more H calls)"})
    hprime_layers: int = field(default=1, metadata={"help": "H': Transformer layers (fewer = faster decisions, so more X steps in the same time)"})
    hprime_lr: float = field(default=1e-3, metadata={"help": "H': AdamW learning rate"})
    hprime_batch: int = field(default=128, metadata={"help": "H': transcripts per update (more = steadier, costlier updates)"})
    hprime_updates_per_step: float = field(default=1.0, metadata={"help": "H' updates per X step while H''s loss > 0.1 (x0.1 below 0.1, x0.01 below 0.01; more = H' keeps up with new transcripts)"})
    hprime_calls_per_step: float = field(default=8.0, metadata={"help": "H transcripts per X step while H''s loss > 0.1 (x0.1 below 0.1, x0.01 below 0.01; more = H' learns sooner, more H calls)"})
    hprime_loss_window: int = field(default=128, metadata={"help": "H''s loss: its mean on the newest this many H transcripts, each scored before H' trains on it (more = steadier, slower)"})
    hprime_ready_loss: float = field(default=0.02, metadata={"help": "H': X trains (at the start and each stage) once H''s loss is below this (lower = H' imitates H more closely first)"})
    hprime_max_warmup_steps: int = field(default=1000, metadata={"help": "H': X starts after this many warm-up steps in any case"})
    hprime_rewarm_each_stage: bool = field(default=True, metadata={"help": "H': at every curriculum stage, pause X until H' imitates H on the new questions"})
    hprime_buffer: int = field(default=100_000, metadata={"help": "H': transcript buffer size (larger = older transcripts kept for longer)"})
    # evaluation
    eval_every: int = field(default=100, metadata={"help": "steps between validation evaluations, which draw the curve and decide stopping (fewer = finer, more time evaluating)"})
    val_contexts: int = field(default=128, metadata={"help": "instances per validation set, one per size (more = a less noisy curve, slower evaluations)", "key_neutral": 0})
    test_contexts: int = field(default=256, metadata={"help": "instances per test set, one per size, read once at the end (more = a smaller standard error)"})
    test_questions: int = field(default=8, metadata={"help": "questions per validation and test instance (more = less noisy accuracies, slower evaluations)"})

    def validate(self) -> None:
        """Refuse a config that cannot run as asked, naming the field (the CLI prints it as one line)."""
        check_finite(self)  # nan / inf in any float field (a config built without make_config too)
        make_task(self.task)  # an unknown task: one line listing the tasks, before any store is opened
        if self.mode not in MODES:
            raise ConfigError("mode", f"{self.mode!r} is not one of {', '.join(MODES)}")
        self._validate_weak()
        for name in ("size", "start_size"):
            if not 2 <= getattr(self, name) <= 64:
                raise ConfigError(name, f"must be in 2..64, got {getattr(self, name)}")
        if self.steps < 0:
            raise ConfigError("steps", f"must be >= 0 (0 = no step limit), got {self.steps}")
        if self.minutes < 0:
            raise ConfigError("minutes", f"must be >= 0 (0 = no time limit), got {self.minutes}")
        if self.steps == 0 and self.minutes == 0:
            raise ConfigError("steps", "give --steps or --minutes (or both)")
        if self.curriculum not in CURRICULA:
            raise ConfigError("curriculum", f"{self.curriculum!r} is not one of {', '.join(CURRICULA)}")
        if self.size_step < 0:
            raise ConfigError("size_step", f"must be >= 0 (0 = +1 then doubling), got {self.size_step}")
        if not 2 <= self.curriculum_min_size <= 64:
            raise ConfigError("curriculum_min_size", f"must be in 2..64, got {self.curriculum_min_size}")
        self._validate_counts()
        self._validate_rates()

    def _validate_weak(self) -> None:
        if self.w2s_loss not in W2S_LOSSES:
            raise ConfigError("w2s_loss", f"{self.w2s_loss!r} is not one of {', '.join(W2S_LOSSES)}")
        if self.mode in WEAK_MODES:
            if not self.weak:
                raise ConfigError("weak", f"mode {self.mode} needs a weak supervisor, e.g. --weak budget:300")
            parse_weak(self.weak, self.size)

    def _validate_counts(self) -> None:
        if self.n_heads < 1:
            raise ConfigError("n_heads", f"must be >= 1, got {self.n_heads}")
        if self.d_model < 1 or self.d_model % self.n_heads:
            raise ConfigError("n_heads", f"d_model ({self.d_model}) must be a positive multiple of n_heads ({self.n_heads})")
        if self.hprime_d_model < 4 or self.hprime_d_model % 4:
            raise ConfigError("hprime_d_model", f"must be a positive multiple of 4 (H' has 4 heads), got {self.hprime_d_model}")
        for name, least, meaning in (("seed", 0, ""), ("threads", 0, ", or 0 for all cores"),
                                     ("questions_per_context", 0, ", or 0 for the task's own"),
                                     ("target_workers", 0, ", or 0 for the mode's own"),
                                     ("checkpoint_every", 0, ", or 0 for no checkpoints"),
                                     ("warmup_steps", 0, ""), ("min_stage_steps", 0, ""), ("encoder_layers", 0, ""),
                                     ("hprime_layers", 0, ""), ("hprime_max_warmup_steps", 0, ""),
                                     ("contexts_per_step", 1, ""), ("target_passes", 1, ""), ("encoder_loops", 1, ""),
                                     ("decoder_layers", 1, ""), ("eval_every", 1, ""), ("test_contexts", 1, ""), ("val_contexts", 1, ""),
                                     ("test_questions", 1, ""), ("curriculum_window", 1, ""), ("hprime_batch", 1, ""),
                                     ("hprime_loss_window", 1, ""), ("hprime_buffer", 1, "")):
            if getattr(self, name) < least:
                raise ConfigError(name, f"must be >= {least}{meaning}, got {getattr(self, name)}")
        if self.target_workers > MAX_TARGET_WORKERS:
            raise ConfigError("target_workers", f"must be at most {MAX_TARGET_WORKERS} (each is a process; "
                                                f"more than the cores gains nothing), got {self.target_workers}")
        if self.mix_sizes_from and not 2 <= self.mix_sizes_from <= 64:
            raise ConfigError("mix_sizes_from", f"must be 0 (off) or in 2..64, got {self.mix_sizes_from}")
        if self.lr_decay_steps < 0:
            raise ConfigError("lr_decay_steps", "must be >= 0 (0 = constant learning rate)")

    def _validate_rates(self) -> None:
        if self.lr < 0:
            raise ConfigError("lr", f"must be > 0, or 0 for the task's own learning rate; got {self.lr}")
        for name in ("hprime_lr", "grad_clip", "hprime_calls_per_step"):
            if getattr(self, name) <= 0:
                why = " (H' learns only from H's transcripts)" if name == "hprime_calls_per_step" else ""
                raise ConfigError(name, f"must be > 0{why}, got {getattr(self, name)}")
        if self.hprime_updates_per_step < 0:
            raise ConfigError("hprime_updates_per_step", "must be >= 0")
        if self.hprime_ready_loss < 0:
            raise ConfigError("hprime_ready_loss", f"must be >= 0, got {self.hprime_ready_loss}")
        if not 0 <= self.teacher_ema < 1:
            raise ConfigError("teacher_ema", "must be in [0, 1)")
        for name in ("stop_at_acc", "curriculum_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(name, f"must be in [0, 1] (an accuracy), got {getattr(self, name)}")

    def unused_fields(self, values: dict[str, Any]) -> set[str]:
        """The fields this config ignores (for ``oversight.config.run_identity``): H''s (``hprime_*``)
        outside amplify-learned, the teacher's EMA in supervised mode, and ``curriculum_min_size``
        where the curriculum does not grow sizes (the oracle one, or a task with levels of form)."""
        unused = unused_by_mode(self.mode, values)
        task = TASKS.get(self.task) if self.task in TASKS else None
        if self.curriculum == "oracle" or task is None or task.levels_from_form:
            unused |= {"curriculum_min_size", "size_step"}
        return unused & set(values)

    def with_task_defaults(self, task: Task | None = None) -> AmplifyConfig:
        """This config with the fields left to the task (and mode) filled in (``lr`` 0 -> ``task.learning_rate``,
        ``questions_per_context`` 0 -> ``task.questions_per_context``, ``target_workers`` 0 -> 2 in
        amplify-learned, else 1), and ``--curriculum oracle`` as ``label-free`` on a task whose levels
        are read off the question (the same questions, read without labels): what the run actually
        uses, so it is what the results store keys and keeps."""
        task = task or make_task(self.task)
        curriculum = "label-free" if task.levels_from_form else self.curriculum
        return dataclasses.replace(self, lr=self.lr or task.learning_rate,
                                   questions_per_context=self.questions_per_context or task.questions_per_context,
                                   target_workers=self.target_workers or (2 if self.mode == "amplify-learned" else 1),
                                   curriculum=curriculum)

    @property
    def oracle_curriculum(self) -> bool:
        """Whether this run's questions were chosen with their true answers (flag every row of it)."""
        return self.curriculum == "oracle" and not make_task(self.task).levels_from_form

    @property
    def test_sizes(self) -> list[int]:
        return sorted({s for s in STANDARD_TEST_SIZES if min(self.start_size, self.size) <= s <= self.size} | {self.size})


WEAK_AXES = ("small-size", "small-model", "budget")


@dataclass(frozen=True)
class WeakSpec:
    """A weak supervisor W: X's recipe weakened along one named axis (``weak.py`` builds its config)."""

    axis: str  # small-size: trained at sizes <= size; small-model: layers x width; budget: steps
    size: int = 0
    layers: int = 0
    width: int = 0  # 0: X's width
    steps: int = 0

    def __str__(self) -> str:
        if self.axis == "small-size":
            return f"small-size:{self.size}"
        if self.axis == "small-model":
            return f"small-model:{self.layers}" + (f"x{self.width}" if self.width else "")
        return f"budget:{self.steps}"


def parse_weak(spec: str, size: int = 64) -> WeakSpec:
    """``--weak`` as a WeakSpec; a ConfigError naming ``weak`` for an unknown axis or a bad value
    (small-size must be below the target ``size``)."""
    axis, _, value = spec.partition(":")
    if axis not in WEAK_AXES:
        raise ConfigError("weak", f"axis {axis!r} is not one of {', '.join(WEAK_AXES)} (e.g. budget:300)")
    try:
        if axis == "small-model":
            layers, _, width = value.partition("x")
            parsed = WeakSpec(axis, layers=int(layers), width=int(width) if width else 0)
            ok = parsed.layers >= 1 and (not width or parsed.width >= 4 and parsed.width % 4 == 0)
        elif axis == "small-size":
            parsed = WeakSpec(axis, size=int(value))
            ok = 2 <= parsed.size < size
        else:
            parsed = WeakSpec(axis, steps=int(value))
            ok = parsed.steps >= 1
    except ValueError:
        ok = False
    if not ok:
        want = {"small-size": f"an instance size in 2..{size - 1}", "small-model": "LAYERS or LAYERSxWIDTH (width a multiple of 4)",
                "budget": "a step count >= 1"}[axis]
        raise ConfigError("weak", f"{spec!r}: {axis} takes {want}")
    return parsed


def fields_the_mode_uses(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` of an AmplifyConfig less those its mode ignores: H''s (``hprime_*``) outside
    amplify-learned, and the teacher's EMA in supervised mode."""
    unused = unused_by_mode(fields.get("mode"), fields)
    return {k: v for k, v in fields.items() if k not in unused}


def unused_by_mode(mode: str | None, names: Iterable[str]) -> set[str]:
    """Those of ``names`` (AmplifyConfig fields) that ``mode`` ignores."""
    unused = {k for k in names if k.startswith("hprime_")} if mode != "amplify-learned" else set()
    if mode in ("supervised", "weak-to-strong", "amplified-weak"):  # no EMA teacher answers anything
        unused.add("teacher_ema")
    if mode not in WEAK_MODES:
        unused.add("weak")
    if mode != "weak-to-strong":
        unused.add("w2s_loss")
    return unused & set(names)
