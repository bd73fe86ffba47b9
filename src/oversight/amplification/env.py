"""Iterated-Amplification environments: the Task interface, instances and the lock-step H driver.

Every task (see ``tasks/``) shares one token vocabulary (``vocab.py``, re-exported here).

A context (``Instance``) is a SET of facts: an int64 array [n_facts, task.fact_len], rows in random
order. Questions are int64 arrays [task.question_len] whose first token is the question kind, padded
with PAD. Answers are ONE token.

H (the expert) is ``task.expert(q)``, a generator that yields one ROUND of subquestions at a time
(a list of question arrays), receives the list of their answer tokens, and finally returns its answer
token. H never sees the facts: primitive subquestions are answered by the environment
(``task.answer_primitive``, i.e. H reading the context) and the others by the learner X.
``run_expert`` drives H for a whole batch of questions from many contexts in lock-step, making ONE
batched learner call per round.

Note on rounds: the reference counts one subquestion per round (3, 5, 2, 9, 9 rounds). Our H asks
all subquestions that do not depend on each other in the same round, so ``task.rounds`` (the most
rounds our H ever uses) is smaller: 3, 3, 1, 2, 2.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from oversight.amplification.vocab import (  # noqa: F401  (the vocabulary, re-exported for the tasks)
    ALL_NAME_TOKENS,
    ANSWER_MARK,
    CHAR_A,
    CHAR_B,
    DONT_KNOW,
    INF,
    INT0,
    INT_BASE,
    INT_MAX,
    INT_MIN,
    N_NAMES,
    NAME0,
    NAME_LETTERS,
    NAMES,
    NO,
    PAD,
    Q0,
    QUESTION_KINDS,
    ROUND,
    VOCAB_SIZE,
    WILD,
    YES,
    Q,
    detokenize,
    detokenize_facts,
    int_token,
    int_tokens,
    int_value,
    is_int,
    is_name,
    name_index,
    name_token,
    token_to_str,
)
from oversight.registry import Registry

TASKS: Registry[type[Task]] = Registry("task")

# ----------------------------------------------------------------------------------------------
# Instances and tasks
# ----------------------------------------------------------------------------------------------
@dataclass
class Instance:
    """One context: a set of facts plus the task-private ground truth."""

    facts: np.ndarray  # int64 [n_facts, fact_len], row order random (it is a SET)
    size: int  # n
    data: Any = field(repr=False)  # task-private ground truth (e.g. the permutation)

    def __str__(self) -> str:
        return f"Instance(size={self.size}, facts=[{'; '.join(detokenize_facts(self.facts))}])"


ExpertGen = Generator[list[np.ndarray], list[int], int]


class Task(ABC):
    """One environment. Subclasses set the class attributes and implement the abstract methods."""

    name: str
    fact_len: int
    question_len: int
    rounds: int  # the most lock-step rounds H uses for any question
    max_subquestions: int  # the most subquestions H asks for any question
    round_subquestions: int  # the most subquestions H asks in one round (H''s subquestion slots per decision)
    num_levels: int  # question-difficulty curriculum levels 1..num_levels; num_levels = full D
    # True: a question's level is read off its form (k's bit length, the number of wildcards), so a
    # curriculum over levels needs no label; False: it is a true depth or distance (the oracle curriculum)
    levels_from_form: bool = True
    question_kinds: tuple[int, ...]  # kinds of the (non-primitive) questions in D
    primitive_kinds: tuple[int, ...]  # kinds answered from the facts by the environment
    # kinds for which H asks X the very question it answers (then checks and improves the guess)
    self_asking_kinds: tuple[int, ...] = ()
    learning_rate: float = 1e-3  # X's AdamW learning rate when the run does not set one (``--lr 0``)
    questions_per_context: int = 16  # questions asked about each instance per step when the run does not set it

    # ---- the environment --------------------------------------------------------------------
    @abstractmethod
    def generate(self, size: int, rng: np.random.Generator) -> Instance: ...

    @abstractmethod
    def sample_questions(
        self, inst: Instance, m: int, rng: np.random.Generator, level: int | None = None
    ) -> np.ndarray:
        """[m, question_len] questions from D (never primitive). level in 1..num_levels; None = full D."""

    @abstractmethod
    def question_level(self, q: np.ndarray, inst: Instance) -> int:
        """The first curriculum level (1..num_levels) whose distribution can ask ``q`` about ``inst``:
        its difficulty. Test accuracy is broken down by it, which says how deep X's answers hold up."""

    def is_primitive(self, q: np.ndarray | Sequence[int]) -> bool:
        return bool(self.primitive_mask(np.asarray(q)[None])[0])

    def primitive_mask(self, questions: np.ndarray) -> np.ndarray:
        """Vectorised is_primitive over [m, question_len] -> bool [m]."""
        return np.isin(questions[:, 0], self.primitive_kinds)

    def answer_primitive(self, inst: Instance, q: np.ndarray, rng: np.random.Generator) -> int:
        """The environment answers a primitive question by reading the facts (H reading the context)."""
        return int(self.answer_primitive_batch([inst], np.zeros(1, dtype=np.int64), np.asarray(q)[None], rng)[0])

    @abstractmethod
    def answer_primitive_batch(
        self,
        instances: Sequence[Instance],
        ctx_index: np.ndarray,
        questions: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """answer_primitive() for questions[i] in instances[ctx_index[i]] -> int64 [m]."""

    def truth(self, inst: Instance, q: np.ndarray) -> int:
        """Ground-truth answer token (for evaluation and the supervised baseline; never used by H)."""
        return int(self.truth_batch([inst], np.zeros(1, dtype=np.int64), np.asarray(q)[None])[0])

    @abstractmethod
    def truth_batch(
        self, instances: Sequence[Instance], ctx_index: np.ndarray, questions: np.ndarray
    ) -> np.ndarray:
        """truth() for questions[i] in instances[ctx_index[i]] -> int64 [m]."""

    def correct_batch(
        self,
        instances: Sequence[Instance],
        ctx_index: np.ndarray,
        questions: np.ndarray,
        answers: np.ndarray,
    ) -> np.ndarray:
        """bool [m]: is answers[i] a correct answer? (Equals truth, except where several are correct.)"""
        return np.asarray(answers) == self.truth_batch(instances, ctx_index, questions)

    # ---- the expert H -----------------------------------------------------------------------
    @abstractmethod
    def expert(self, q: np.ndarray) -> ExpertGen:
        """H: ``answers = yield [subq, ...]`` per round, ``return answer_token`` at the end."""

    @abstractmethod
    def recursion_measure(self, q: np.ndarray, inst: Instance | None = None) -> int:
        """A measure that strictly decreases for the non-primitive subquestions H asks (see task docs).

        Tasks whose measure depends on the instance (sequential assignments, shortest path, union
        find) need ``inst``; the measure is then computed from the ground truth.
        """

    def answer_tokens(self, q: np.ndarray) -> np.ndarray | None:
        """Legal answer tokens for this question's kind (DONT_KNOW always included), or None."""
        return None

    def answer_mask(self, questions: np.ndarray) -> np.ndarray:
        """bool [m, VOCAB_SIZE]: legal answer tokens per question (all True where unknown)."""
        mask = np.ones((len(questions), VOCAB_SIZE), dtype=bool)
        for kind in np.unique(questions[:, 0]):
            rows = questions[:, 0] == kind
            legal = self.answer_tokens(questions[np.argmax(rows)])
            if legal is not None:
                m = np.zeros(VOCAB_SIZE, dtype=bool)
                m[legal] = True
                mask[rows] = m
        return mask

    # ---- helpers ----------------------------------------------------------------------------
    def question(self, *tokens: int) -> tuple[int, ...]:
        """A question from its tokens, PAD-padded to ``question_len`` (a tuple: H builds thousands per
        step, and ``run_expert`` stacks them into one array per round)."""
        return (*tokens, *(PAD,) * (self.question_len - len(tokens)))

    def _shuffle_facts(self, rows: list[list[int]] | np.ndarray, rng: np.random.Generator) -> np.ndarray:
        facts = np.zeros((len(rows), self.fact_len), dtype=np.int64)
        for i, r in enumerate(rows):
            facts[i, : len(r)] = r
        return facts[rng.permutation(len(facts))]

    def _check_level(self, level: int | None) -> int:
        if level is None:
            return self.num_levels
        if not 1 <= level <= self.num_levels:
            raise ValueError(f"{self.name}: level must be in 1..{self.num_levels}, got {level}")
        return int(level)

    def _check_size(self, size: int) -> None:
        if not 2 <= size <= N_NAMES:
            raise ValueError(f"{self.name}: size must be in 2..{N_NAMES}, got {size}")


# ----------------------------------------------------------------------------------------------
# The lock-step driver
# ----------------------------------------------------------------------------------------------
@dataclass
class Transcript:
    """H's work on one question: [question, (subq, subans)..., answer], grouped into rounds."""

    question: np.ndarray
    rounds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # ([r, qlen], [r])
    answer: int = DONT_KNOW
    n_primitive: int = 0

    @property
    def n_subquestions(self) -> int:
        return sum(len(a) for _, a in self.rounds)

    @property
    def steps(self) -> list[tuple[np.ndarray, int]]:
        """Flat [(subq, subans), ...] in the order asked."""
        return [(sq, int(a)) for qs, ans in self.rounds for sq, a in zip(qs, ans, strict=True)]

    def __str__(self) -> str:
        lines = [f"Q: {detokenize(self.question)}"]
        for r, (qs, ans) in enumerate(self.rounds):
            for sq, a in zip(qs, ans, strict=True):
                lines.append(f"  [{r}] {detokenize(sq)} -> {token_to_str(a)}")
        lines.append(f"A: {token_to_str(self.answer)}")
        return "\n".join(lines)


@dataclass
class ExpertRound:
    """One lock-step round of ``run_expert``: the subquestions of every still-running H, stacked."""

    owner: np.ndarray  # int64 [k]: the question (row of ``questions``) that asked each subquestion, ascending
    subqs: np.ndarray  # int64 [k, question_len]
    subans: np.ndarray  # int64 [k]
    primitive: np.ndarray  # bool [k]: answered by the environment (else by answer_fn)


@dataclass
class ExpertRun:
    """``answers, transcripts = run_expert(...)``. The per-question transcripts are built on first use
    (making X's targets needs only the answers and the counts)."""

    answers: np.ndarray  # int64 [m]
    questions: np.ndarray  # int64 [m, question_len]
    rounds: list[ExpertRound]

    def __iter__(self) -> Any:
        return iter((self.answers, self.transcripts))

    @cached_property
    def transcripts(self) -> list[Transcript]:
        out = [Transcript(q) for q in self.questions]
        for r in self.rounds:
            if not len(r.owner):
                continue
            cuts = np.flatnonzero(np.diff(r.owner)) + 1
            for i, qs, ans, prim in zip(r.owner[np.r_[0, cuts]],
                                        np.split(r.subqs, cuts), np.split(r.subans, cuts),
                                        np.split(r.primitive, cuts), strict=True):
                out[i].rounds.append((qs, ans))
                out[i].n_primitive += int(prim.sum())
        for t, a in zip(out, self.answers.tolist(), strict=True):
            t.answer = a
        return out

    @property
    def n_subquestions(self) -> int:
        return sum(len(r.owner) for r in self.rounds)

    @property
    def n_primitive(self) -> int:
        return sum(int(r.primitive.sum()) for r in self.rounds)

    @property
    def n_learner_questions(self) -> int:
        """Subquestions answered by answer_fn (the learner)."""
        return self.n_subquestions - self.n_primitive


AnswerFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def run_expert(
    task: Task,
    instances: Sequence[Instance],
    ctx_index: np.ndarray | Sequence[int],
    questions: np.ndarray,
    answer_fn: AnswerFn,
    rng: np.random.Generator,
) -> ExpertRun:
    """Run H (``task.expert``) on ``questions[i]`` in context ``instances[ctx_index[i]]``, in lock-step.

    Each round, the subquestions of all still-running H's are stacked; the primitive ones are
    answered by ``task.answer_primitive_batch`` (the facts) and ALL the others by ONE call
    ``answer_fn(ctx_index_sub [k], subquestions [k, question_len]) -> answer tokens [k]``
    (the learner's teacher copy, or ``truth_answer_fn`` in tests). answer_fn is not called for a
    round without non-primitive subquestions.
    """
    questions = np.asarray(questions, dtype=np.int64)
    ctx_index = np.asarray(ctx_index, dtype=np.int64)
    m = len(questions)
    if questions.ndim != 2 or questions.shape[1] != task.question_len or len(ctx_index) != m:
        raise ValueError(
            f"questions must be [m, {task.question_len}] with one ctx_index each; got "
            f"{questions.shape} and {ctx_index.shape}"
        )
    answers = np.full(m, DONT_KNOW, dtype=np.int64)
    gens: list[ExpertGen] = [task.expert(q) for q in questions]
    pending: dict[int, list[Any]] = {}  # question -> the subquestions of its next round
    for i, g in enumerate(gens):
        try:
            pending[i] = next(g)
        except StopIteration as stop:
            answers[i] = stop.value
    rounds: list[ExpertRound] = []
    while pending:
        if len(rounds) == task.rounds:
            raise RuntimeError(f"{task.name}: H used more than task.rounds={task.rounds} rounds")
        active = list(pending)  # ascending: dicts keep insertion order
        counts = [len(pending[i]) for i in active]
        subqs = np.array([sq for i in active for sq in pending[i]], dtype=np.int64).reshape(-1, task.question_len)
        owner = np.repeat(np.asarray(active, dtype=np.int64), counts)
        sub_ctx = ctx_index[owner]
        prim = task.primitive_mask(subqs)
        subans = np.empty(len(subqs), dtype=np.int64)
        if prim.any():
            subans[prim] = task.answer_primitive_batch(instances, sub_ctx[prim], subqs[prim], rng)
        if not prim.all():
            learned = ~prim
            out = np.asarray(answer_fn(sub_ctx[learned], subqs[learned]), dtype=np.int64).reshape(-1)
            if len(out) != int(learned.sum()):
                raise ValueError(f"answer_fn returned {len(out)} answers for {int(learned.sum())} questions")
            subans[learned] = out
        rounds.append(ExpertRound(owner, subqs, subans, prim))
        sub_list, pending, start = subans.tolist(), {}, 0
        for i, c in zip(active, counts, strict=True):
            try:
                pending[i] = gens[i].send(sub_list[start : start + c])
            except StopIteration as stop:
                answers[i] = stop.value
            start += c
    return ExpertRun(answers, questions, rounds)


def stack_instance_data(
    instances: Sequence[Instance], ctx_index: np.ndarray, *fields: str, fill: int = -1
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Lookup arrays of the contexts in ``ctx_index``, stacked, for answering a batch in one indexing op.

    Returns ``slot`` (the row of each question's context in the stacked arrays) and, per field of
    ``Instance.data``, ``np.stack`` over the distinct contexts (arrays of different shapes are padded
    with ``fill``), so that ``array[slot, x]`` reads question i's context.
    """
    used, slot = np.unique(np.asarray(ctx_index, dtype=np.int64), return_inverse=True)
    if not len(used):
        raise ValueError("stack_instance_data needs at least one context index (guard empty batches)")
    stacked = []
    for name in fields:
        arrays = [getattr(instances[c].data, name) for c in used]
        shape = tuple(max(dims) for dims in zip(*(a.shape for a in arrays), strict=True))
        if all(a.shape == shape for a in arrays):
            stacked.append(np.stack(arrays))
        else:
            out = np.full((len(arrays), *shape), fill, dtype=arrays[0].dtype)
            for i, a in enumerate(arrays):
                out[(i, *(slice(0, d) for d in a.shape))] = a
            stacked.append(out)
    return slot.reshape(-1), stacked


def truth_answer_fn(task: Task, instances: Sequence[Instance]) -> AnswerFn:
    """An answer_fn that answers every subquestion with the ground truth (for tests / an oracle X)."""

    def answer(ctx_index: np.ndarray, questions: np.ndarray) -> np.ndarray:
        return task.truth_batch(instances, ctx_index, questions)

    return answer


def make_task(name: str) -> Task:
    """Instantiate a registered task by name, e.g. ``make_task("union_find")``."""
    return TASKS.get(name)()


# ----------------------------------------------------------------------------------------------
# Transcript encoding for H' (optional helper)
# ----------------------------------------------------------------------------------------------
def transcript_max_len(task: Task) -> int:
    return task.question_len + task.max_subquestions * (task.question_len + 1) + task.rounds + 2


def encode_transcript(task: Task, t: Transcript) -> tuple[np.ndarray, np.ndarray]:
    """Flatten a transcript for a causal H': tokens and a loss mask (True where H' must predict).

    Layout: question, then per round ``subq_1 .. subq_r ROUND ans_1 .. ans_r``, then
    ``ANSWER_MARK answer``, padded with PAD to ``transcript_max_len(task)``. The loss mask covers
    subquestion tokens, ROUND, ANSWER_MARK and the answer, never the question or the sub-answers.
    """
    toks: list[int] = list(t.question)
    mask: list[bool] = [False] * len(toks)
    for qs, ans in t.rounds:
        flat = qs.reshape(-1).tolist()
        toks += flat + [ROUND] + ans.tolist()
        mask += [True] * (len(flat) + 1) + [False] * len(ans)
    toks += [ANSWER_MARK, t.answer]
    mask += [True, True]
    n = transcript_max_len(task)
    out_t = np.full(n, PAD, dtype=np.int64)
    out_m = np.zeros(n, dtype=bool)
    out_t[: len(toks)] = toks
    out_m[: len(mask)] = mask
    return out_t, out_m


__all__ = [
    "ALL_NAME_TOKENS", "ANSWER_MARK", "CHAR_A", "CHAR_B", "DONT_KNOW", "INF", "INT0", "INT_BASE",
    "INT_MAX", "INT_MIN", "NAME0", "NAMES", "NO", "N_NAMES", "PAD", "Q", "QUESTION_KINDS", "ROUND",
    "TASKS", "VOCAB_SIZE", "WILD", "YES", "AnswerFn", "ExpertRound", "ExpertRun", "Instance", "Task", "Transcript",
    "detokenize", "detokenize_facts", "encode_transcript", "int_token", "int_tokens", "int_value",
    "is_int", "is_name", "make_task", "name_index", "name_token", "run_expert", "stack_instance_data",
    "token_to_str",
    "transcript_max_len", "truth_answer_fn",
]
