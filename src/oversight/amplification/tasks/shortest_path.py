"""Shortest path: distances and next hops in a random directed graph.

n vertices (names) and 2n distinct random directed edges ``a b`` (facts, fact_len 2; no self-loops).
Questions (question_len 3, ``kind a b``):

    DIST a b   the length of a shortest path a -> b: an integer 0..12, or INF if b is unreachable
               or farther than 12 (distances are capped at 12)
    NEXT a b   a next hop: an out-neighbour c of a with DIST(c, b) = DIST(a, b) - 1, or INF if
               DIST(a, b) = INF; NEXT a a = a. Several hops can be right: ``truth`` gives the one
               with the smallest name, ``correct_batch`` accepts any.

Primitives (the environment reads the facts): ``EDGE a b`` -> YES/NO; ``NBR a _`` -> a uniformly
random out-neighbour of a (NO if a has none; ``truth`` = the smallest one).

H for DIST a b (≤ 4 subquestions, 2 rounds): 0 if a = b. Round 1: e = EDGE a b, c = NEXT a b.
If e = YES answer 1; if c = INF answer INF. Round 2: EDGE a c, d = DIST c b; if (a, c) is not an edge
answer INF (c invalid), else d + 1 (INF if d = INF or d + 1 > 12).
H for NEXT a b (≤ 9 subquestions, 2 rounds): a if a = b. Round 1: EDGE a b, NEXT a b twice (X may
answer differently when sampled), r = NBR a. If (a, b) is an edge answer b. Candidates: the
distinct X answers that are names, then r. Round 2: EDGE a c for X's candidates, DIST c b for every
candidate. Answer the candidate with an edge from a and the smallest distance ≤ 11 (first one on
ties), or INF if there is none.
A malformed sub-answer makes H answer DONT_KNOW. (The reference asks one subquestion per round:
9 rounds; ours asks the independent ones together.)

Recursion measure (needs the instance; d = true capped distance a -> b, INF counted as 13):
2d + 1 for ``DIST a b``, 2d for ``NEXT a b``, 0 for primitives. H for DIST asks NEXT a b (2d) and
DIST c b for the true next hop c (2d - 1): both strictly smaller. H for NEXT asks X the very
question it answers (NEXT a b, equal measure) and DIST r b for the random neighbour r (any
measure); these two are the documented exceptions: as the reference says, H asks X its own
question and then checks and improves the guess, so progress comes from X's training, not from
H's recursion. Its other subquestion DIST c b for the true next hop c is strictly smaller (2d - 1).
The property test asserts exactly this.

Curriculum: a pair's distance is the true answer, so levels (level L in 1..12 asks about pairs
a != b with distance ≤ L or INF; level 12 = full D: every pair a != b of vertices in use, DIST or
NEXT with probability 1/2 each) serve only ``--curriculum oracle``; the label-free curriculum grows
the instance size instead (smaller graphs have shorter paths).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oversight.amplification.env import (
    ALL_NAME_TOKENS,
    DONT_KNOW,
    INF,
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

DIST, NEXT, EDGE, NBR = Q["DIST"], Q["NEXT"], Q["EDGE"], Q["NBR"]
MAX_DIST = 12
UNREACHABLE = MAX_DIST + 1  # capped distance used for INF in the recursion measure
INT_OF_DIST = int_tokens(0, MAX_DIST)


def bfs_distances(adj: np.ndarray, cap: int) -> np.ndarray:
    """All-pairs shortest path lengths of a boolean adjacency matrix; > cap or unreachable -> -1."""
    n = len(adj)
    dist = np.full((n, n), -1, dtype=np.int64)
    np.fill_diagonal(dist, 0)
    frontier = np.eye(n, dtype=bool)
    visited = frontier.copy()
    a = adj.astype(np.float32)  # float matmul goes through BLAS (integer matmul is ~10x slower); counts <= n are exact
    for d in range(1, cap + 1):
        frontier = ((frontier.astype(np.float32) @ a) > 0) & ~visited
        if not frontier.any():
            break
        dist[frontier] = d
        visited |= frontier
    return dist


def is_dist(tok: int) -> bool:
    return bool(is_int(tok)) and 0 <= int(int_value(tok)) <= MAX_DIST


@guard_truth("adj", "dist", "pair_dist", "truth_table")
@dataclass
class ShortestPathData:
    names: np.ndarray  # [n] name indices in use
    adj: np.ndarray  # [64, 64] bool edges (ground truth)
    dist: np.ndarray  # [64, 64] capped distance, -1 = INF
    pairs: np.ndarray  # [n*(n-1), 2] question pairs a != b of names in use (in name order: no truth)
    pair_dist: np.ndarray  # [n*(n-1)] their capped distance, UNREACHABLE for INF (ground truth)
    truth_table: np.ndarray  # [4, 64, 64] truth token for DIST, NEXT, EDGE, NBR (NBR uses [.., a, 0])
    fact_adj: np.ndarray  # [64, 64] bool edges read back from the facts
    fact_nbrs: np.ndarray  # [64, max_deg] out-neighbours (name index) read from the facts, -1 padded
    fact_deg: np.ndarray  # [64]


KIND_SLOT = np.zeros(VOCAB_SIZE, dtype=np.int64)  # question kind -> slot of truth_table
KIND_SLOT[[DIST, NEXT, EDGE, NBR]] = [0, 1, 2, 3]


@TASKS.register("shortest_path")
class ShortestPath(Task):
    name = "shortest_path"
    fact_len = 2
    question_len = 3
    rounds = 2
    max_subquestions = 9
    round_subquestions = 5
    num_levels = MAX_DIST
    question_kinds = (DIST, NEXT)
    levels_from_form = False  # a level is a true depth or distance: only the oracle curriculum uses them
    primitive_kinds = (EDGE, NBR)
    self_asking_kinds = (NEXT,)

    def generate(self, size: int, rng: np.random.Generator) -> Instance:
        self._check_size(size)
        n = size
        names = np.sort(rng.choice(N_NAMES, size=n, replace=False))
        n_edges = min(2 * n, n * (n - 1))
        off_diag = np.flatnonzero(~np.eye(n, dtype=bool).ravel())
        chosen = rng.choice(off_diag, size=n_edges, replace=False)
        src, dst = names[chosen // n], names[chosen % n]
        adj = np.zeros((N_NAMES, N_NAMES), dtype=bool)
        adj[src, dst] = True
        # distances and next hops on the n x n subgraph of names in use (64^3 work per instance
        # otherwise: it was half of a supervised step), then scattered into 64 x 64 tables
        sub_adj = adj[np.ix_(names, names)]
        sub_dist = bfs_distances(sub_adj, MAX_DIST)
        # canonical next hop: the smallest out-neighbour c of a with dist(c, b) = dist(a, b) - 1
        good = sub_adj[:, :, None] & (sub_dist[None, :, :] == sub_dist[:, None, :] - 1) & (sub_dist[:, None, :] >= 1)
        sub_next = np.where(good.any(1), names[good.argmax(1)], -1)  # [a, b] name index
        dist = np.full((N_NAMES, N_NAMES), -1, dtype=np.int64)
        nxt = np.full((N_NAMES, N_NAMES), -1, dtype=np.int64)
        np.fill_diagonal(dist, 0)
        dist[np.ix_(names, names)] = sub_dist
        nxt[np.ix_(names, names)] = sub_next
        table = np.full((4, N_NAMES, N_NAMES), DONT_KNOW, dtype=np.int64)
        table[0] = np.where(dist >= 0, INT_OF_DIST[np.maximum(dist, 0)], INF)
        table[1] = np.where(nxt >= 0, name_token(np.maximum(nxt, 0)), INF)
        np.fill_diagonal(table[1], ALL_NAME_TOKENS)
        table[2] = np.where(adj, YES, NO)
        table[3, :, 0] = np.where(adj.any(1), name_token(adj.argmax(1)), NO)
        facts = self._shuffle_facts(np.stack([name_token(src), name_token(dst)], axis=1), rng)
        fact_adj = np.zeros((N_NAMES, N_NAMES), dtype=bool)
        fact_adj[name_index(facts[:, 0]), name_index(facts[:, 1])] = True
        fact_deg = fact_adj.sum(1)
        fact_nbrs = np.full((N_NAMES, max(1, int(fact_deg.max()))), -1, dtype=np.int64)
        for v in np.flatnonzero(fact_deg):
            fact_nbrs[v, : fact_deg[v]] = np.flatnonzero(fact_adj[v])
        a, b = np.meshgrid(names, names, indexing="ij")
        off = a != b
        pairs = np.stack([a[off], b[off]], axis=1)
        pd = dist[pairs[:, 0], pairs[:, 1]]
        pd = np.where(pd < 0, UNREACHABLE, pd)
        data = ShortestPathData(names, adj, dist, pairs, pd, table, fact_adj, fact_nbrs, fact_deg)
        return Instance(facts, size, data)

    def sample_questions(
        self, inst: Instance, m: int, rng: np.random.Generator, level: int | None = None
    ) -> np.ndarray:
        level = self._check_level(level)
        d: ShortestPathData = inst.data
        if level < self.num_levels:  # the oracle curriculum: reads the true distances (allowed by the caller)
            allowed = np.flatnonzero((d.pair_dist <= level) | (d.pair_dist == UNREACHABLE))
        else:
            allowed = np.arange(len(d.pairs))
        ab = d.pairs[rng.choice(allowed, size=m)]
        kind = np.where(rng.random(m) < 0.5, DIST, NEXT)
        return np.stack([kind, name_token(ab[:, 0]), name_token(ab[:, 1])], axis=1).astype(np.int64)

    def question_level(self, q: np.ndarray, inst: Instance) -> int:
        d = int(inst.data.dist[name_index(int(q[1])), name_index(int(q[2]))])
        if d < 0:
            return 1  # unreachable pairs are asked at every level
        return min(max(d, 1), self.num_levels)

    # ---- answering ------------------------------------------------------------------------
    @staticmethod
    def _well_formed(questions: np.ndarray) -> np.ndarray:
        kind, t1, t2 = questions[:, 0], questions[:, 1], questions[:, 2]
        pair = np.isin(kind, (DIST, NEXT, EDGE)) & is_name(t1) & is_name(t2)
        return pair | ((kind == NBR) & is_name(t1) & (t2 == PAD))

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
        c, (fact_adj, fact_deg, fact_nbrs) = stack_instance_data(
            instances, ctx_index[ok], "fact_adj", "fact_deg", "fact_nbrs")
        kind, a, b = questions[ok, 0], name_index(questions[ok, 1]), name_index(questions[ok, 2])
        edge = np.where(fact_adj[c, a, np.maximum(b, 0)], YES, NO)
        deg = fact_deg[c, a]
        pick = fact_nbrs[c, a, np.minimum((u[ok] * deg).astype(np.int64), fact_nbrs.shape[2] - 1)]
        nbr = np.where(deg > 0, name_token(np.maximum(pick, 0)), NO)
        out[ok] = np.where(kind == EDGE, edge, nbr)
        return out

    def truth_batch(
        self, instances: Sequence[Instance], ctx_index: np.ndarray, questions: np.ndarray
    ) -> np.ndarray:
        ctx_index = np.asarray(ctx_index, dtype=np.int64)
        out = np.full(len(questions), DONT_KNOW, dtype=np.int64)
        ok = self._well_formed(questions)
        slot = KIND_SLOT[np.clip(questions[:, 0], 0, VOCAB_SIZE - 1)]
        a = np.where(ok, name_index(questions[:, 1]), 0)
        b = np.where(ok & (questions[:, 0] != NBR), name_index(questions[:, 2]), 0)
        for c in np.unique(ctx_index[ok]):  # a loop: stacking the [4, 64, 64] tables would copy more
            rows = ok & (ctx_index == c)
            out[rows] = instances[c].data.truth_table[slot[rows], a[rows], b[rows]]
        return out

    def correct_batch(
        self,
        instances: Sequence[Instance],
        ctx_index: np.ndarray,
        questions: np.ndarray,
        answers: np.ndarray,
    ) -> np.ndarray:
        """Like ``answers == truth`` but any shortest-path next hop / any out-neighbour is correct."""
        answers = np.asarray(answers, dtype=np.int64)
        truth = self.truth_batch(instances, ctx_index, questions)
        ok = answers == truth
        kind = questions[:, 0]
        alt = ~ok & is_name(answers) & is_name(truth) & np.isin(kind, (NEXT, NBR))
        for i in np.flatnonzero(alt):
            d: ShortestPathData = instances[ctx_index[i]].data
            a, c = name_index(int(questions[i, 1])), name_index(int(answers[i]))
            if not d.adj[a, c]:
                continue
            if kind[i] == NBR:
                ok[i] = True
            else:
                b = name_index(int(questions[i, 2]))
                ok[i] = d.dist[a, b] >= 1 and d.dist[c, b] == d.dist[a, b] - 1
        return ok

    # ---- H --------------------------------------------------------------------------------
    def expert(self, q: np.ndarray) -> ExpertGen:
        kind, a, b = int(q[0]), int(q[1]), int(q[2])
        if not (is_name(a) and is_name(b)):
            return DONT_KNOW
        if kind == DIST:
            return (yield from self._expert_dist(a, b))
        if kind == NEXT:
            return (yield from self._expert_next(a, b))
        return DONT_KNOW

    def _expert_dist(self, a: int, b: int) -> ExpertGen:
        if a == b:
            return int_token(0)
        e, c = yield [self.question(EDGE, a, b), self.question(NEXT, a, b)]
        if e == YES:
            return int_token(1)
        if e != NO:
            return DONT_KNOW
        if c == INF:
            return INF
        if not is_name(c):
            return DONT_KNOW
        e2, d = yield [self.question(EDGE, a, c), self.question(DIST, c, b)]
        if e2 == NO:
            return INF  # X's next hop is not an out-neighbour: c invalid
        if e2 != YES:
            return DONT_KNOW
        if d == INF:
            return INF
        if not is_dist(d):
            return DONT_KNOW
        v = int(int_value(d)) + 1
        return int_token(v) if v <= MAX_DIST else INF

    def _expert_next(self, a: int, b: int) -> ExpertGen:
        if a == b:
            return a
        e, c1, c2, r = yield [
            self.question(EDGE, a, b),
            self.question(NEXT, a, b),
            self.question(NEXT, a, b),
            self.question(NBR, a),
        ]
        if e == YES:
            return b
        if e != NO or not all(is_name(c) or c == INF for c in (c1, c2)) or not (is_name(r) or r == NO):
            return DONT_KNOW
        guesses = [c for c in dict.fromkeys((c1, c2)) if is_name(c)]
        cands = guesses + ([r] if is_name(r) and r not in guesses else [])
        if not cands:
            return INF
        answers = yield [self.question(EDGE, a, c) for c in guesses] + [self.question(DIST, c, b) for c in cands]
        edge_ok = dict(zip(guesses, answers[: len(guesses)], strict=True))
        best, best_d = INF, MAX_DIST  # a candidate must be at distance ≤ 11 from b
        for c, d in zip(cands, answers[len(guesses) :], strict=True):
            if not (is_dist(d) or d == INF) or edge_ok.get(c, YES) not in (YES, NO):
                return DONT_KNOW
            if edge_ok.get(c, YES) == YES and d != INF and int(int_value(d)) < best_d:
                best, best_d = c, int(int_value(d))
        return best

    def recursion_measure(self, q: np.ndarray, inst: Instance | None = None) -> int:
        if self.is_primitive(q):
            return 0
        if inst is None:
            raise ValueError("shortest_path: recursion_measure needs the instance")
        d = int(inst.data.dist[name_index(int(q[1])), name_index(int(q[2]))])
        d = UNREACHABLE if d < 0 else d
        return 2 * d + (1 if int(q[0]) == DIST else 0)

    def answer_tokens(self, q: np.ndarray) -> np.ndarray | None:
        kind = int(q[0])
        if kind == DIST:
            return np.concatenate([[DONT_KNOW, INF], int_tokens(0, MAX_DIST)])
        if kind == NEXT:
            return np.concatenate([[DONT_KNOW, INF], ALL_NAME_TOKENS])
        if kind == EDGE:
            return np.array([DONT_KNOW, YES, NO], dtype=np.int64)
        return np.concatenate([[DONT_KNOW, NO], ALL_NAME_TOKENS])

