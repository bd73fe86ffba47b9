"""Sequential assignments: evaluate a straight-line program over 8 value symbols.

The n variables are names; the first ⌊√n⌋ are constants ``x := c`` (c one of 8 value symbols,
encoded as the integer tokens 0..7), every later one is ``x := y ∘ z`` over two earlier variables,
where ∘ is a random binary operation on the 8 values. Facts (fact_len 3, the kind is told by the
token types):

    x c _      constant assignment (name, value, PAD)
    x y z      x := y ∘ z (three names)
    a b c      the operation table entry a ∘ b = c (three values); all 64 entries are facts

Question ``VAL x``: the value of x. Primitives (the environment reads the facts):
``ARG1 x`` -> first operand of x (a name), or its constant (a value) if x is a constant;
``ARG2 x`` -> second operand of x, or its constant; ``OP a b`` -> a ∘ b. Unknown names / malformed
primitive questions are answered DONT_KNOW.

H for ``VAL x`` (≤ 5 subquestions, 3 rounds):
    round 1: a1 = ARG1 x, a2 = ARG2 x     (primitive); if a1 is a value, answer it (constant)
    round 2: v1 = VAL a1, v2 = VAL a2     (learner)
    round 3: answer OP v1 v2              (primitive)
A malformed sub-answer (not a name / not a value) makes H answer DONT_KNOW.

Recursion measure (needs the instance): 2 * depth(x) + 1 for ``VAL x``, where depth(constant) = 0
and depth(x := y ∘ z) = 1 + max(depth y, depth z); operands are strictly shallower, so
``VAL y``/``VAL z`` strictly decrease it. Primitive questions have measure 0.
Curriculum: a variable's depth is read off the true program, so levels (level L in 1..8 asks
about variables of depth ≤ L; level 8 = full D) serve only ``--curriculum oracle``; the label-free
curriculum grows the instance size instead (smaller programs are shallower).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oversight.amplification.env import (
    ALL_NAME_TOKENS,
    DONT_KNOW,
    N_NAMES,
    PAD,
    TASKS,
    ExpertGen,
    Instance,
    Q,
    Task,
    int_token,
    int_tokens,
    int_value,
    is_int,
    is_name,
    name_index,
    name_token,
    stack_instance_data,
)
from oversight.amplification.truth import guard_truth

VAL, ARG1, ARG2, OP = Q["VAL"], Q["ARG1"], Q["ARG2"], Q["OP"]
N_VALUES = 8
VALUE_TOKENS = int_tokens(0, N_VALUES - 1)


def is_value(tok: int | np.ndarray) -> np.ndarray | bool:
    return is_int(tok) & (int_value(tok) >= 0) & (int_value(tok) < N_VALUES)


@guard_truth("value", "depth", "arg1", "arg2", "table")
@dataclass
class SequentialData:
    names: np.ndarray  # [n] name indices in use, sorted (the assignment order is not told)
    value: np.ndarray  # [64] value of each variable, -1 where not in use (ground truth)
    depth: np.ndarray  # [64] dependency depth, -1 where not in use
    arg1: np.ndarray  # [64] token answering ARG1 (truth), DONT_KNOW where not in use
    arg2: np.ndarray  # [64] token answering ARG2 (truth)
    table: np.ndarray  # [8, 8] value of a ∘ b (truth)
    fact_arg1: np.ndarray  # the same three lookups, as read back from the facts
    fact_arg2: np.ndarray
    fact_table: np.ndarray


@TASKS.register("sequential_assignments")
class SequentialAssignments(Task):
    name = "sequential_assignments"
    fact_len = 3
    question_len = 3
    rounds = 3
    max_subquestions = 5
    round_subquestions = 2
    num_levels = 8
    question_kinds = (VAL,)
    levels_from_form = False  # a level is a true depth or distance: only the oracle curriculum uses them
    primitive_kinds = (ARG1, ARG2, OP)
    # At 1e-3, X answered depth-1 variables half the time for 11,000+ steps (supervised or amplify):
    # the three chained look-ups need a finer step. At 3e-4 (supervised, n=8) it passed depth 1.
    learning_rate = 3e-4

    def generate(self, size: int, rng: np.random.Generator) -> Instance:
        self._check_size(size)
        n = size
        n_const = max(1, int(np.sqrt(n)))
        names = rng.choice(N_NAMES, size=n, replace=False)
        table = rng.integers(0, N_VALUES, size=(N_VALUES, N_VALUES))
        value = np.full(N_NAMES, -1, dtype=np.int64)
        depth = np.full(N_NAMES, -1, dtype=np.int64)
        arg1 = np.full(N_NAMES, DONT_KNOW, dtype=np.int64)
        arg2 = np.full(N_NAMES, DONT_KNOW, dtype=np.int64)
        rows: list[list[int]] = []
        for i, x in enumerate(names):
            if i < n_const:
                c = int(rng.integers(N_VALUES))
                value[x], depth[x] = c, 0
                arg1[x] = arg2[x] = int_token(c)
                rows.append([name_token(x), int_token(c), PAD])
            else:
                y, z = names[rng.integers(0, i, size=2)]
                value[x] = table[value[y], value[z]]
                depth[x] = 1 + max(depth[y], depth[z])
                arg1[x], arg2[x] = name_token(y), name_token(z)
                rows.append([name_token(x), name_token(y), name_token(z)])
        for a in range(N_VALUES):
            for b in range(N_VALUES):
                rows.append([int_token(a), int_token(b), int_token(int(table[a, b]))])
        facts = self._shuffle_facts(rows, rng)
        # read the facts back: this is all the environment uses to answer primitive questions
        f_arg1 = np.full(N_NAMES, DONT_KNOW, dtype=np.int64)
        f_arg2 = np.full(N_NAMES, DONT_KNOW, dtype=np.int64)
        f_table = np.full((N_VALUES, N_VALUES), -1, dtype=np.int64)
        assign = is_name(facts[:, 0])
        const = assign & is_int(facts[:, 1])
        xs = name_index(facts[assign, 0])
        f_arg1[xs] = facts[assign, 1]
        f_arg2[xs] = np.where(const[assign], facts[assign, 1], facts[assign, 2])
        tab = ~assign
        f_table[int_value(facts[tab, 0]), int_value(facts[tab, 1])] = int_value(facts[tab, 2])
        data = SequentialData(np.sort(names), value, depth, arg1, arg2, table, f_arg1, f_arg2, f_table)
        return Instance(facts, size, data)

    def sample_questions(
        self, inst: Instance, m: int, rng: np.random.Generator, level: int | None = None
    ) -> np.ndarray:
        level = self._check_level(level)
        names = inst.data.names
        if level < self.num_levels:  # the oracle curriculum: reads the true depths (allowed by the caller)
            names = names[inst.data.depth[names] <= level]
        x = rng.choice(names, size=m)
        return np.stack([np.full(m, VAL), name_token(x), np.full(m, PAD)], axis=1).astype(np.int64)

    def question_level(self, q: np.ndarray, inst: Instance) -> int:
        depth = int(inst.data.depth[name_index(int(q[1]))])  # level L asks depth <= L
        return min(max(depth, 1), self.num_levels)

    # ---- answering ------------------------------------------------------------------------
    @staticmethod
    def _lookup(
        instances: Sequence[Instance], ctx_index: np.ndarray, qs: np.ndarray, fields: tuple[str, ...]
    ) -> np.ndarray:
        """Answer questions from the lookup arrays named ``fields`` (ARG1, ARG2, OP[, VAL]) of their contexts:
        the facts as read back (primitive questions only) or the ground truth."""
        out = np.full(len(qs), DONT_KNOW, dtype=np.int64)
        if not len(qs):
            return out
        c, (arg1, arg2, table, *value) = stack_instance_data(instances, ctx_index, *fields)
        kind, t1, t2 = qs[:, 0], qs[:, 1], qs[:, 2]
        named = is_name(t1) & (t2 == PAD)
        x = np.where(named, name_index(t1), 0)
        for k, arr in ((ARG1, arg1), (ARG2, arg2)):
            rows = named & (kind == k)
            out[rows] = arr[c[rows], x[rows]]
        rows = (kind == OP) & is_value(t1) & is_value(t2)
        v = table[c[rows], int_value(t1[rows]), int_value(t2[rows])]
        out[rows] = np.where(v >= 0, int_token(np.maximum(v, 0)), DONT_KNOW)
        if value:
            rows = named & (kind == VAL)
            v = value[0][c[rows], x[rows]]
            out[rows] = np.where(v >= 0, int_token(np.maximum(v, 0)), DONT_KNOW)
        return out

    def answer_primitive_batch(
        self,
        instances: Sequence[Instance],
        ctx_index: np.ndarray,
        questions: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        out = np.full(len(questions), DONT_KNOW, dtype=np.int64)
        prim = self.primitive_mask(questions)
        out[prim] = self._lookup(instances, np.asarray(ctx_index)[prim], questions[prim],
                                 ("fact_arg1", "fact_arg2", "fact_table"))
        return out

    def truth_batch(
        self, instances: Sequence[Instance], ctx_index: np.ndarray, questions: np.ndarray
    ) -> np.ndarray:
        return self._lookup(instances, np.asarray(ctx_index, dtype=np.int64), questions,
                            ("arg1", "arg2", "table", "value"))

    # ---- H --------------------------------------------------------------------------------
    def expert(self, q: np.ndarray) -> ExpertGen:
        x = int(q[1])
        if not is_name(x):
            return DONT_KNOW
        a1, a2 = yield [self.question(ARG1, x), self.question(ARG2, x)]
        if is_value(a1):
            return a1  # x is a constant
        if not (is_name(a1) and is_name(a2)):
            return DONT_KNOW
        v1, v2 = yield [self.question(VAL, a1), self.question(VAL, a2)]
        if not (is_value(v1) and is_value(v2)):
            return DONT_KNOW
        (r,) = yield [self.question(OP, v1, v2)]
        return r if is_value(r) else DONT_KNOW

    def recursion_measure(self, q: np.ndarray, inst: Instance | None = None) -> int:
        if self.is_primitive(q):
            return 0
        if inst is None:
            raise ValueError("sequential_assignments: recursion_measure needs the instance")
        return 2 * int(inst.data.depth[name_index(int(q[1]))]) + 1

    def answer_tokens(self, q: np.ndarray) -> np.ndarray | None:
        kind = int(q[0])
        if kind in (VAL, OP):
            return np.concatenate([[DONT_KNOW], VALUE_TOKENS])
        return np.concatenate([[DONT_KNOW], VALUE_TOKENS, ALL_NAME_TOKENS])
