"""Union find ("equalities"): values, parents and depths in a forest of equality facts.

n variables (names) are split into ⌊√n⌋ non-empty classes; each class has its own value (distinct
value symbols, the integer tokens 0..7). In each class one root carries the fact ``x v`` (x = v),
and a random spanning tree (a random recursive tree grown from the root) of facts ``x y`` (x = y,
in random orientation) connects the class. fact_len 2; a fact's kind is told by its token types.
Questions (question_len 3, ``kind x _``):

    UVAL x    V(x), the value of x's class
    PAR x     P(x), x's neighbour on the tree path toward the root (P(root) = root)
    DEPTH x   D(x), the number of tree edges from x to its root

Primitives (the environment reads the facts): ``ROOT x`` -> x's given value if x is a root, else NO;
``NBR x`` -> a uniformly random tree neighbour of x (NO if none; ``truth`` = the smallest one);
``EDGE x y`` -> YES/NO. Names not in use get DONT_KNOW (EDGE: NO).

H for UVAL x (≤ 3 subquestions, 2 rounds): round 1: ROOT x, p = PAR x. A root answers its value;
otherwise round 2: answer UVAL p.
H for DEPTH x (≤ 3, 2 rounds): round 1: ROOT x, p = PAR x. A root answers 0; otherwise answer
DEPTH p + 1.
H for PAR x (≤ 9, 2 rounds): round 1: ROOT x, PAR x twice (X may answer differently when sampled),
r = NBR x. A root answers x. Candidates: the distinct X answers that are names, then r. Round 2:
EDGE x c for X's candidates, DEPTH c for every candidate. Answer the edge-checked candidate of
smallest depth (first one on ties); DONT_KNOW if none.
A malformed sub-answer makes H answer DONT_KNOW. (The reference asks one subquestion per round:
9 rounds; ours asks the independent ones together.)

Recursion measure (needs the instance; d = true depth of x): 2d + 1 for UVAL/DEPTH x, 2d for PAR x,
0 for primitives. UVAL/DEPTH x ask PAR x (2d) and UVAL/DEPTH of the true parent (2d - 1): strictly
smaller. PAR x asks X the very question it answers (PAR x, equal measure) and DEPTH r for the random
neighbour r (which may be a child: larger); these are the documented exceptions (H asks X its own
question, then checks and improves the guess). Its DEPTH question about the true parent is strictly
smaller (2d - 1). The property test asserts exactly this.

Curriculum: a variable's depth is read off the true forest, so levels (level L in 1..6 asks about
variables of depth ≤ L; level 6 = full D: every variable in use, UVAL/PAR/DEPTH with probability
1/3 each) serve only ``--curriculum oracle``; the label-free curriculum grows the instance size
instead (smaller forests are shallower).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oversight.amplification.env import (
    ALL_NAME_TOKENS,
    DONT_KNOW,
    INT_MAX,
    N_NAMES,
    NO,
    PAD,
    TASKS,
    VOCAB_SIZE,
    YES,
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

UVAL, PAR, DEPTH = Q["UVAL"], Q["PAR"], Q["DEPTH"]
ROOT, NBR, EDGE = Q["ROOT"], Q["NBR"], Q["EDGE"]
N_VALUES = 8
VALUE_TOKENS = int_tokens(0, N_VALUES - 1)
SINGLE_KINDS = (UVAL, PAR, DEPTH, ROOT, NBR)
KIND_SLOT = np.zeros(VOCAB_SIZE, dtype=np.int64)  # question kind -> row of truth_table
KIND_SLOT[list(SINGLE_KINDS)] = np.arange(len(SINGLE_KINDS))


def is_value(tok: int) -> bool:
    return bool(is_int(tok)) and 0 <= int(int_value(tok)) < N_VALUES


def is_depth(tok: int) -> bool:
    return bool(is_int(tok)) and 0 <= int(int_value(tok)) <= INT_MAX


@guard_truth("value", "parent", "depth", "adj", "truth_table")
@dataclass
class UnionFindData:
    names: np.ndarray  # [n] name indices in use
    value: np.ndarray  # [64] class value, -1 where not in use (ground truth)
    parent: np.ndarray  # [64] parent toward the root (root -> itself), -1 where not in use
    depth: np.ndarray  # [64] depth, -1 where not in use
    adj: np.ndarray  # [64, 64] bool symmetric tree edges
    truth_table: np.ndarray  # [5, 64] truth token of UVAL, PAR, DEPTH, ROOT, NBR for each name
    fact_root: np.ndarray  # [64] root value read back from the facts, -1 if none
    fact_known: np.ndarray  # [64] bool: the name occurs in a fact
    fact_adj: np.ndarray  # [64, 64] bool edges read back from the facts
    fact_nbrs: np.ndarray  # [64, max_deg] neighbours from the facts, -1 padded
    fact_deg: np.ndarray  # [64]


@TASKS.register("union_find")
class UnionFind(Task):
    name = "union_find"
    fact_len = 2
    question_len = 3
    rounds = 2
    max_subquestions = 9
    round_subquestions = 5
    num_levels = 6
    question_kinds = (UVAL, PAR, DEPTH)
    levels_from_form = False  # a level is a true depth or distance: only the oracle curriculum uses them
    primitive_kinds = (ROOT, NBR, EDGE)
    self_asking_kinds = (PAR,)

    def generate(self, size: int, rng: np.random.Generator) -> Instance:
        self._check_size(size)
        n = size
        k = min(N_VALUES, max(1, int(np.sqrt(n))))
        names = np.sort(rng.choice(N_NAMES, size=n, replace=False))
        order = rng.permutation(names)
        cls = np.concatenate([np.arange(k), rng.integers(0, k, size=n - k)])  # every class non-empty
        class_value = rng.choice(N_VALUES, size=k, replace=False)
        value = np.full(N_NAMES, -1, dtype=np.int64)
        parent = np.full(N_NAMES, -1, dtype=np.int64)
        depth = np.full(N_NAMES, -1, dtype=np.int64)
        adj = np.zeros((N_NAMES, N_NAMES), dtype=bool)
        rows: list[list[int]] = []
        for j in range(k):
            members = order[cls == j]  # random order; members[0] is the root
            root = members[0]
            value[members] = class_value[j]
            parent[root], depth[root] = root, 0
            rows.append([name_token(root), int_token(int(class_value[j]))])
            for i in range(1, len(members)):
                x, p = members[i], members[rng.integers(0, i)]
                parent[x], depth[x] = p, depth[p] + 1
                adj[x, p] = adj[p, x] = True
                rows.append([name_token(x), name_token(p)] if rng.random() < 0.5 else [name_token(p), name_token(x)])
        is_root = parent == np.arange(N_NAMES)
        used = value >= 0
        table = np.full((len(SINGLE_KINDS), N_NAMES), DONT_KNOW, dtype=np.int64)
        table[0, used] = int_token(value[used])
        table[1, used] = name_token(parent[used])
        table[2, used] = int_token(depth[used])
        table[3, used] = np.where(is_root[used], int_token(np.maximum(value[used], 0)), NO)
        table[4, used] = np.where(adj[used].any(1), name_token(adj[used].argmax(1)), NO)
        facts = self._shuffle_facts(rows, rng)
        # read the facts back: this is all the environment uses to answer primitive questions
        fact_root = np.full(N_NAMES, -1, dtype=np.int64)
        fact_known = np.zeros(N_NAMES, dtype=bool)
        fact_adj = np.zeros((N_NAMES, N_NAMES), dtype=bool)
        val = is_int(facts[:, 1])
        fact_root[name_index(facts[val, 0])] = int_value(facts[val, 1])
        x, y = name_index(facts[~val, 0]), name_index(facts[~val, 1])
        fact_adj[x, y] = fact_adj[y, x] = True
        fact_known[name_index(facts[:, 0])] = True
        fact_known[y] = True
        fact_deg = fact_adj.sum(1)
        fact_nbrs = np.full((N_NAMES, max(1, int(fact_deg.max()))), -1, dtype=np.int64)
        for v in np.flatnonzero(fact_deg):
            fact_nbrs[v, : fact_deg[v]] = np.flatnonzero(fact_adj[v])
        data = UnionFindData(
            names, value, parent, depth, adj, table, fact_root, fact_known, fact_adj, fact_nbrs, fact_deg
        )
        return Instance(facts, size, data)

    def sample_questions(
        self, inst: Instance, m: int, rng: np.random.Generator, level: int | None = None
    ) -> np.ndarray:
        level = self._check_level(level)
        names = inst.data.names
        if level < self.num_levels:  # the oracle curriculum: reads the true depths (allowed by the caller)
            names = names[inst.data.depth[names] <= level]
        x = rng.choice(names, size=m)
        kind = rng.choice(np.array(self.question_kinds), size=m)
        return np.stack([kind, name_token(x), np.full(m, PAD)], axis=1).astype(np.int64)

    def question_level(self, q: np.ndarray, inst: Instance) -> int:
        depth = int(inst.data.depth[name_index(int(q[1]))])  # level L asks depth <= L
        return min(max(depth, 1), self.num_levels)

    # ---- answering ------------------------------------------------------------------------
    @staticmethod
    def _well_formed(questions: np.ndarray) -> np.ndarray:
        kind, t1, t2 = questions[:, 0], questions[:, 1], questions[:, 2]
        single = np.isin(kind, SINGLE_KINDS) & is_name(t1) & (t2 == PAD)
        return single | ((kind == EDGE) & is_name(t1) & is_name(t2))

    def answer_primitive_batch(
        self,
        instances: Sequence[Instance],
        ctx_index: np.ndarray,
        questions: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        out = np.full(len(questions), DONT_KNOW, dtype=np.int64)
        ok = self._well_formed(questions) & self.primitive_mask(questions)
        u = rng.random(len(questions))
        if not ok.any():
            return out
        c, (fact_adj, fact_root, fact_deg, fact_nbrs, fact_known) = stack_instance_data(
            instances, ctx_index[ok], "fact_adj", "fact_root", "fact_deg", "fact_nbrs", "fact_known")
        kind, x = questions[ok, 0], name_index(questions[ok, 1])
        y = np.where(kind == EDGE, name_index(questions[ok, 2]), 0)
        edge = np.where(fact_adj[c, x, y], YES, NO)
        root = np.where(fact_root[c, x] >= 0, int_token(np.maximum(fact_root[c, x], 0)), NO)
        deg = fact_deg[c, x]
        pick = fact_nbrs[c, x, np.minimum((u[ok] * deg).astype(np.int64), fact_nbrs.shape[2] - 1)]
        nbr = np.where(deg > 0, name_token(np.maximum(pick, 0)), NO)
        ans = np.where(kind == EDGE, edge, np.where(kind == ROOT, root, nbr))
        out[ok] = np.where((kind == EDGE) | fact_known[c, x], ans, DONT_KNOW)
        return out

    def truth_batch(
        self, instances: Sequence[Instance], ctx_index: np.ndarray, questions: np.ndarray
    ) -> np.ndarray:
        ctx_index = np.asarray(ctx_index, dtype=np.int64)
        out = np.full(len(questions), DONT_KNOW, dtype=np.int64)
        ok = self._well_formed(questions)
        kind = questions[:, 0]
        slot = KIND_SLOT[np.clip(kind, 0, VOCAB_SIZE - 1)]
        x = np.where(ok, name_index(questions[:, 1]), 0)
        y = np.where(ok & (kind == EDGE), name_index(questions[:, 2]), 0)
        if not ok.any():
            return out
        c, (truth_table, adj) = stack_instance_data(instances, ctx_index[ok], "truth_table", "adj")
        single = truth_table[c, slot[ok], x[ok]]
        out[ok] = np.where(kind[ok] == EDGE, np.where(adj[c, x[ok], y[ok]], YES, NO), single)
        return out

    def correct_batch(
        self,
        instances: Sequence[Instance],
        ctx_index: np.ndarray,
        questions: np.ndarray,
        answers: np.ndarray,
    ) -> np.ndarray:
        """Like ``answers == truth`` but any neighbour is a correct answer to ``NBR x``."""
        answers = np.asarray(answers, dtype=np.int64)
        ok = answers == self.truth_batch(instances, ctx_index, questions)
        for i in np.flatnonzero(~ok & (questions[:, 0] == NBR) & is_name(answers)):
            d: UnionFindData = instances[ctx_index[i]].data
            ok[i] = bool(d.adj[name_index(int(questions[i, 1])), name_index(int(answers[i]))])
        return ok

    # ---- H --------------------------------------------------------------------------------
    def expert(self, q: np.ndarray) -> ExpertGen:
        kind, x = int(q[0]), int(q[1])
        if not is_name(x):
            return DONT_KNOW
        if kind == PAR:
            return (yield from self._expert_parent(x))
        if kind not in (UVAL, DEPTH):
            return DONT_KNOW
        rv, p = yield [self.question(ROOT, x), self.question(PAR, x)]
        if is_value(rv):  # x is a root
            return rv if kind == UVAL else int_token(0)
        if rv != NO or not is_name(p):
            return DONT_KNOW
        (a,) = yield [self.question(kind, p)]
        if kind == UVAL:
            return a if is_value(a) else DONT_KNOW
        if not is_depth(a) or int(int_value(a)) + 1 > INT_MAX:
            return DONT_KNOW
        return int_token(int(int_value(a)) + 1)

    def _expert_parent(self, x: int) -> ExpertGen:
        rv, c1, c2, r = yield [
            self.question(ROOT, x),
            self.question(PAR, x),
            self.question(PAR, x),
            self.question(NBR, x),
        ]
        if is_value(rv):
            return x  # the root is its own parent
        if rv != NO or not (is_name(c1) and is_name(c2)) or not (is_name(r) or r == NO):
            return DONT_KNOW
        guesses = list(dict.fromkeys((c1, c2)))
        cands = guesses + ([r] if is_name(r) and r not in guesses else [])
        answers = yield [self.question(EDGE, x, c) for c in guesses] + [self.question(DEPTH, c) for c in cands]
        edge_ok = dict(zip(guesses, answers[: len(guesses)], strict=True))
        best, best_d = DONT_KNOW, INT_MAX + 1
        for c, d in zip(cands, answers[len(guesses) :], strict=True):
            if not is_depth(d) or edge_ok.get(c, YES) not in (YES, NO):
                return DONT_KNOW
            if edge_ok.get(c, YES) == YES and int(int_value(d)) < best_d:
                best, best_d = c, int(int_value(d))
        return best

    def recursion_measure(self, q: np.ndarray, inst: Instance | None = None) -> int:
        if self.is_primitive(q):
            return 0
        if inst is None:
            raise ValueError("union_find: recursion_measure needs the instance")
        d = int(inst.data.depth[name_index(int(q[1]))])
        return 2 * d + (0 if int(q[0]) == PAR else 1)

    def answer_tokens(self, q: np.ndarray) -> np.ndarray | None:
        kind = int(q[0])
        if kind == UVAL:
            return np.concatenate([[DONT_KNOW], VALUE_TOKENS])
        if kind == DEPTH:
            return np.concatenate([[DONT_KNOW], int_tokens(0, INT_MAX)])
        if kind == PAR:
            return np.concatenate([[DONT_KNOW], ALL_NAME_TOKENS])
        if kind == ROOT:
            return np.concatenate([[DONT_KNOW, NO], VALUE_TOKENS])
        if kind == NBR:
            return np.concatenate([[DONT_KNOW, NO], ALL_NAME_TOKENS])
        return np.array([DONT_KNOW, YES, NO], dtype=np.int64)
