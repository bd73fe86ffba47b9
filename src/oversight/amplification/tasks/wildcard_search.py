"""Wildcard search: sum a ±1 function over the strings matching a pattern.

Strings are length-6 words over {a, b} (64 strings; tokens CHAR_A, CHAR_B). A context holds
n distinct strings s with f(s) = ±1 as facts ``s0 .. s5 f`` (fact_len 7, f an integer token);
f(s) = 0 for the other strings. Question ``SUM p0 .. p5`` (question_len 7) where each p_i is
a, b or the wildcard ``*`` and 1–6 positions are wildcards: answer the sum of f over the strings
matching the pattern, clipped to ±32 (only the all-wildcard pattern can exceed it).
Primitive: a pattern without wildcard, answered f(s) from the facts (0 if s is not a fact).

H (1 round, 2 subquestions): replace the FIRST wildcard by a and by b, ask both, answer the sum
(clipped to ±32). A sub-answer that is not an integer in -32..32 makes H answer DONT_KNOW.
(The reference asks the two subquestions in 2 rounds; they are independent, so we ask them in one.)
Recursion measure: the number of wildcards (one fewer in each subquestion).
Curriculum: level L in 1..6 draws the number of wildcards uniformly from 1..L (level 6 = full D).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oversight.amplification.env import (
    CHAR_A,
    CHAR_B,
    DONT_KNOW,
    TASKS,
    WILD,
    ExpertGen,
    Instance,
    Q,
    Task,
    int_token,
    int_tokens,
    int_value,
    is_int,
    stack_instance_data,
)
from oversight.amplification.truth import guard_truth

SUM = Q["SUM"]
LENGTH = 6
N_STRINGS = 1 << LENGTH
CLIP = 32
# STRINGS[s, i] = token of character i of string number s (bit i of s: 0 -> a, 1 -> b)
STRINGS = np.where((np.arange(N_STRINGS)[:, None] >> np.arange(LENGTH)) & 1, CHAR_B, CHAR_A).astype(np.int64)


@guard_truth("f")
@dataclass
class WildcardData:
    f: np.ndarray  # [64] f(s) in {-1, 0, 1} (ground truth)
    fact_f: np.ndarray  # [64] f as read back from the facts


def string_index(chars: np.ndarray) -> np.ndarray:
    """[..., 6] a/b tokens -> string numbers."""
    return ((chars == CHAR_B).astype(np.int64) << np.arange(LENGTH)).sum(-1)


@TASKS.register("wildcard_search")
class WildcardSearch(Task):
    name = "wildcard_search"
    fact_len = LENGTH + 1
    question_len = LENGTH + 1
    rounds = 1
    max_subquestions = 2
    round_subquestions = 2
    num_levels = LENGTH
    question_kinds = (SUM,)
    primitive_kinds = ()  # SUM is primitive iff the pattern has no wildcard: see primitive_mask

    def generate(self, size: int, rng: np.random.Generator) -> Instance:
        self._check_size(size)
        strings = rng.choice(N_STRINGS, size=size, replace=False)
        signs = rng.choice(np.array([-1, 1]), size=size)
        f = np.zeros(N_STRINGS, dtype=np.int64)
        f[strings] = signs
        facts = self._shuffle_facts(np.concatenate([STRINGS[strings], int_token(signs)[:, None]], axis=1), rng)
        fact_f = np.zeros(N_STRINGS, dtype=np.int64)
        fact_f[string_index(facts[:, :LENGTH])] = int_value(facts[:, LENGTH])
        return Instance(facts, size, WildcardData(f, fact_f))

    def sample_questions(
        self, inst: Instance, m: int, rng: np.random.Generator, level: int | None = None
    ) -> np.ndarray:
        level = self._check_level(level)
        n_wild = rng.integers(1, level + 1, size=m)
        chars = np.where(rng.random((m, LENGTH)) < 0.5, CHAR_A, CHAR_B)
        # the n_wild positions with the smallest random keys become wildcards
        ranks = np.argsort(np.argsort(rng.random((m, LENGTH)), axis=1), axis=1)
        chars = np.where(ranks < n_wild[:, None], WILD, chars)
        return np.concatenate([np.full((m, 1), SUM), chars], axis=1).astype(np.int64)

    def question_level(self, q: np.ndarray, inst: Instance) -> int:
        return min(max(self.recursion_measure(q), 1), self.num_levels)  # level L: 1..L wildcards

    @staticmethod
    def _well_formed(questions: np.ndarray) -> np.ndarray:
        p = questions[:, 1:]
        return (questions[:, 0] == SUM) & ((p == CHAR_A) | (p == CHAR_B) | (p == WILD)).all(1)

    def primitive_mask(self, questions: np.ndarray) -> np.ndarray:
        return (questions[:, 0] == SUM) & ~(questions[:, 1:] == WILD).any(1)

    @staticmethod
    def _f_of(instances: Sequence[Instance], ctx_index: np.ndarray, name: str) -> np.ndarray:
        """[m, 64] f (``f``: the truth, ``fact_f``: as read from the facts) of each question's context."""
        if not len(ctx_index):
            return np.zeros((0, N_STRINGS), dtype=np.int64)
        slot, (f,) = stack_instance_data(instances, ctx_index, name)
        return f[slot]

    def _sums(self, fs: np.ndarray, questions: np.ndarray) -> np.ndarray:
        """fs: [m, 64] f per question's context -> answer tokens [m]."""
        p = questions[:, None, 1:]  # [m, 1, 6]
        match = ((p == WILD) | (p == STRINGS[None])).all(-1)  # [m, 64]
        s = np.clip((match * fs).sum(-1), -CLIP, CLIP)
        return np.where(self._well_formed(questions), int_token(s), DONT_KNOW)

    def answer_primitive_batch(
        self,
        instances: Sequence[Instance],
        ctx_index: np.ndarray,
        questions: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        out = self._sums(self._f_of(instances, ctx_index, "fact_f"), questions)
        return np.where(self.primitive_mask(questions), out, DONT_KNOW)

    def truth_batch(
        self, instances: Sequence[Instance], ctx_index: np.ndarray, questions: np.ndarray
    ) -> np.ndarray:
        return self._sums(self._f_of(instances, ctx_index, "f"), questions)

    def expert(self, q: np.ndarray) -> ExpertGen:
        wild = np.flatnonzero(q[1:] == WILD)
        if len(wild) == 0:  # primitive: just read it
            (s,) = yield [q.copy()]
            return s
        qa, qb = q.copy(), q.copy()
        qa[1 + wild[0]], qb[1 + wild[0]] = CHAR_A, CHAR_B
        sa, sb = yield [qa, qb]
        if not (is_int(sa) and is_int(sb)):
            return DONT_KNOW
        va, vb = int(int_value(sa)), int(int_value(sb))
        if not (-CLIP <= va <= CLIP and -CLIP <= vb <= CLIP):
            return DONT_KNOW
        return int_token(max(-CLIP, min(CLIP, va + vb)))

    def recursion_measure(self, q: np.ndarray, inst: Instance | None = None) -> int:
        return int((np.asarray(q)[1:] == WILD).sum())

    def answer_tokens(self, q: np.ndarray) -> np.ndarray | None:
        return np.concatenate([[DONT_KNOW], int_tokens(-CLIP, CLIP)])
