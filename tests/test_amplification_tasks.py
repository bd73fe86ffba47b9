"""Property tests of the five Iterated-Amplification environments and the lock-step H driver.

For every task and several sizes: (a) H given TRUE sub-answers returns the true answer at every
curriculum level; (b) every non-primitive subquestion H asks strictly decreases the task's recursion
measure, except the documented self-check exceptions (shortest_path NEXT, union_find PAR: H asks X
its own question, and a distance/depth question about the random neighbour the environment gave);
(c) generate / sample_questions / run_expert are deterministic per seed; (d) sample_questions never
returns a primitive question; (e) the facts encode the instance (primitive answers read from the
facts are correct w.r.t. the ground truth); plus malformed sub-answers -> DONT_KNOW, the driver's
one-learner-call-per-round batching, and the shared vocabulary.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oversight.amplification.env import (
    DONT_KNOW,
    NAME0,
    PAD,
    TASKS,
    VOCAB_SIZE,
    Instance,
    Q,
    Task,
    detokenize,
    encode_transcript,
    int_token,
    int_value,
    is_name,
    make_task,
    run_expert,
    token_to_str,
    transcript_max_len,
    truth_answer_fn,
)

TASK_NAMES = ["permutation_powering", "sequential_assignments", "wildcard_search", "shortest_path", "union_find"]
SIZES = st.sampled_from([8, 9, 16, 37, 64])
SEEDS = st.integers(0, 2**32 - 1)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _batch(task: Task, seed: int, size: int, level: int | None, n_ctx: int = 2, per_ctx: int = 24):
    rng = np.random.default_rng(seed)
    insts = [task.generate(size, rng) for _ in range(n_ctx)]
    ctx = np.repeat(np.arange(n_ctx), per_ctx)
    qs = np.concatenate([task.sample_questions(inst, per_ctx, rng, level=level) for inst in insts])
    return rng, insts, ctx, qs


def _levels(task: Task) -> st.SearchStrategy[int]:
    return st.integers(1, task.num_levels)


def test_all_tasks_registered() -> None:
    assert sorted(TASKS.names()) == sorted(TASK_NAMES)
    for name in TASK_NAMES:
        task = make_task(name)
        assert task.name == name
        assert set(task.question_kinds).isdisjoint(task.primitive_kinds)


def test_vocabulary_is_shared_and_printable() -> None:
    strs = [token_to_str(t) for t in range(VOCAB_SIZE)]
    assert len(set(strs)) == VOCAB_SIZE  # every token prints distinctly
    assert token_to_str(PAD) == "_" and token_to_str(DONT_KNOW) == "?"
    assert token_to_str(NAME0) == "aa" and token_to_str(NAME0 + 63) == "hh"
    for v in (-32, 0, 12, 63):
        assert int_value(int_token(v)) == v and token_to_str(int_token(v)) == str(v)
    with pytest.raises(ValueError):
        int_token(64)
    assert detokenize(np.array([PAD, NAME0, int_token(3)])) == "aa 3"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_expert_with_true_subanswers_is_correct(name: str) -> None:
    task = make_task(name)

    @FAST
    @given(seed=SEEDS, size=SIZES, level=_levels(task))
    def check(seed: int, size: int, level: int) -> None:
        rng, insts, ctx, qs = _batch(task, seed, size, level)
        run = run_expert(task, insts, ctx, qs, truth_answer_fn(task, insts), rng)
        truth = task.truth_batch(insts, ctx, qs)
        bad = np.flatnonzero(run.answers != truth)
        assert len(bad) == 0, str(run.transcripts[bad[0]]) + f"\ntruth: {token_to_str(truth[bad[0]])}"
        assert task.correct_batch(insts, ctx, qs, run.answers).all()
        for t in run.transcripts:
            assert t.n_subquestions <= task.max_subquestions
            assert all(len(subqs) <= task.round_subquestions for subqs, _ in t.rounds)
            assert len(t.rounds) <= task.rounds
        # the truth is always a legal answer token for its question
        mask = task.answer_mask(qs)
        assert mask[np.arange(len(qs)), truth].all()
        assert (truth != DONT_KNOW).all()

    check()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_truth_batch_matches_truth(name: str) -> None:
    task = make_task(name)
    _, insts, ctx, qs = _batch(task, 7, 16, None)
    single = np.array([task.truth(insts[c], q) for c, q in zip(ctx, qs, strict=True)])
    assert (single == task.truth_batch(insts, ctx, qs)).all()


def _decreases_or_exempt(task: Task, inst: Instance, q: np.ndarray, transcript) -> None:
    m_q = task.recursion_measure(q, inst)
    nbr_answers = set()
    for subqs, subans in transcript.rounds:
        prim = task.primitive_mask(subqs)
        for sq, a, p in zip(subqs, subans, prim, strict=True):
            if p:
                if int(sq[0]) == Q["NBR"]:
                    nbr_answers.add(int(a))
                continue
            if task.recursion_measure(sq, inst) < m_q:
                continue
            # documented exceptions: H asks X its own question, or asks about the random neighbour
            assert int(q[0]) in task.self_asking_kinds, f"{detokenize(q)} -> {detokenize(sq)}"
            assert (sq == q).all() or int(sq[1]) in nbr_answers, f"{detokenize(q)} -> {detokenize(sq)}"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_subquestions_are_primitive_or_smaller(name: str) -> None:
    task = make_task(name)

    @FAST
    @given(seed=SEEDS, size=SIZES, level=_levels(task))
    def check(seed: int, size: int, level: int) -> None:
        rng, insts, ctx, qs = _batch(task, seed, size, level)
        run = run_expert(task, insts, ctx, qs, truth_answer_fn(task, insts), rng)
        for c, q, t in zip(ctx, qs, run.transcripts, strict=True):
            _decreases_or_exempt(task, insts[c], q, t)

    check()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_deterministic_per_seed(name: str) -> None:
    task = make_task(name)

    @settings(max_examples=5, deadline=None)
    @given(seed=SEEDS, size=SIZES)
    def check(seed: int, size: int) -> None:
        runs = []
        for _ in range(2):
            rng, insts, ctx, qs = _batch(task, seed, size, None)
            run = run_expert(task, insts, ctx, qs, truth_answer_fn(task, insts), rng)
            runs.append((insts, qs, run))
        (i1, q1, r1), (i2, q2, r2) = runs
        for a, b in zip(i1, i2, strict=True):
            assert (a.facts == b.facts).all() and a.size == b.size
        assert (q1 == q2).all() and (r1.answers == r2.answers).all()
        assert [len(t.rounds) for t in r1.transcripts] == [len(t.rounds) for t in r2.transcripts]
        for t1, t2 in zip(r1.transcripts, r2.transcripts, strict=True):
            assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(t1.rounds, t2.rounds, strict=True))

    check()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_sample_questions_never_primitive(name: str) -> None:
    """Questions of D are never primitive. A question drawn at curriculum level L has difficulty
    (``question_level``) at most L; the full distribution's lie in 1..num_levels and, at size 37 and
    above, span several levels."""
    task = make_task(name)

    @FAST
    @given(seed=SEEDS, size=SIZES)
    def check(seed: int, size: int) -> None:
        rng = np.random.default_rng(seed)
        inst = task.generate(size, rng)
        for level in [*range(1, task.num_levels + 1), None]:
            qs = task.sample_questions(inst, 40, rng, level=level)
            assert qs.shape == (40, task.question_len) and qs.dtype == np.int64
            assert not task.primitive_mask(qs).any()
            assert not any(task.is_primitive(q) for q in qs)
            assert np.isin(qs[:, 0], task.question_kinds).all()
            if level is not None:
                assert max(task.question_level(q, inst) for q in qs) <= level
        levels = {task.question_level(q, inst) for q in task.sample_questions(inst, 200, rng)}
        assert levels <= set(range(1, task.num_levels + 1))
        if size >= 37:
            assert len(levels) > 1

    check()
    with pytest.raises(ValueError):
        task.sample_questions(task.generate(8, np.random.default_rng(0)), 1, np.random.default_rng(0), level=0)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_facts_encode_the_instance(name: str) -> None:
    """Primitive answers (read from the facts) are correct; single and batched answering agree."""
    task = make_task(name)

    @FAST
    @given(seed=SEEDS, size=SIZES)
    def check(seed: int, size: int) -> None:
        rng, insts, ctx, qs = _batch(task, seed, size, None)
        for inst in insts:
            assert inst.facts.ndim == 2 and inst.facts.shape[1] == task.fact_len
            assert inst.facts.dtype == np.int64
            assert len({tuple(f) for f in inst.facts}) == len(inst.facts)  # a set of facts
        run = run_expert(task, insts, ctx, qs, truth_answer_fn(task, insts), rng)
        pq, pc = [], []
        for c, t in zip(ctx, run.transcripts, strict=True):
            for subqs, _ in t.rounds:
                keep = task.primitive_mask(subqs)
                pq.append(subqs[keep])
                pc.append(np.full(int(keep.sum()), c))
        pq, pc = np.concatenate(pq), np.concatenate(pc)
        if not len(pq):
            return
        got = task.answer_primitive_batch(insts, pc, pq, rng)
        assert task.correct_batch(insts, pc, pq, got).all()
        single = np.array([task.answer_primitive(insts[c], q, rng) for c, q in zip(pc, pq, strict=True)])
        assert task.correct_batch(insts, pc, pq, single).all()

    check()


def _independent_reading(name: str, inst: Instance) -> None:
    """Re-derive the ground truth from the facts alone (a parser independent of the task code)."""
    f = inst.facts
    d = inst.data
    if name == "permutation_powering":
        sigma = {int(a) - NAME0: int(b) - NAME0 for a, b in f}
        assert sigma == {int(x): int(d.sigma[x]) for x in d.names}
    elif name == "sequential_assignments":
        table = {(int(int_value(a)), int(int_value(b))): int(int_value(c)) for a, b, c in f if not is_name(a)}
        assign = {int(r[0]): r for r in f if is_name(r[0])}
        value: dict[int, int] = {}

        def val(x: int) -> int:
            if x not in value:
                r = assign[x]
                const = not is_name(r[1])
                value[x] = int(int_value(r[1])) if const else table[val(int(r[1])), val(int(r[2]))]
            return value[x]

        assert len(table) == 64 and len(assign) == inst.size
        for x in assign:
            assert val(x) == d.value[x - NAME0]
    elif name == "wildcard_search":
        fs = {tuple(r[:6]): int(int_value(r[6])) for r in f}
        assert len(fs) == inst.size and sum(abs(v) for v in fs.values()) == inst.size
        assert int(np.abs(d.f).sum()) == inst.size
    elif name == "shortest_path":
        adj = np.zeros((64, 64), dtype=bool)
        adj[f[:, 0] - NAME0, f[:, 1] - NAME0] = True
        assert (adj == d.adj).all() and len(f) == min(2 * inst.size, inst.size * (inst.size - 1))
    elif name == "union_find":
        roots = {int(r[0]) - NAME0: int(int_value(r[1])) for r in f if not is_name(r[1])}
        edges = [(int(a) - NAME0, int(b) - NAME0) for a, b in f if is_name(b)]
        nbrs: dict[int, list[int]] = {}
        for a, b in edges:
            nbrs.setdefault(a, []).append(b)
            nbrs.setdefault(b, []).append(a)
        seen: dict[int, tuple[int, int]] = {}
        for r, v in roots.items():  # BFS from every root: value and depth of its whole class
            frontier, seen[r] = [r], (v, 0)
            while frontier:
                x = frontier.pop()
                for y in nbrs.get(x, []):
                    if y not in seen:
                        seen[y] = (v, seen[x][1] + 1)
                        frontier.append(y)
        assert len(seen) == inst.size == len(edges) + len(roots)
        for x, (v, dep) in seen.items():
            assert (d.value[x], d.depth[x]) == (v, dep)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_facts_alone_determine_the_ground_truth(name: str) -> None:
    task = make_task(name)

    @settings(max_examples=8, deadline=None)
    @given(seed=SEEDS, size=SIZES)
    def check(seed: int, size: int) -> None:
        inst = task.generate(size, np.random.default_rng(seed))
        _independent_reading(name, inst)

    check()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_malformed_subanswers_give_dont_know(name: str) -> None:
    """A learner answering PAD to everything: H answers DONT_KNOW unless primitives alone settle it."""
    task = make_task(name)
    rng, insts, ctx, qs = _batch(task, 11, 16, None, n_ctx=3)
    run = run_expert(task, insts, ctx, qs, lambda c, q: np.full(len(q), PAD), rng)
    truth = task.truth_batch(insts, ctx, qs)
    ok = (run.answers == DONT_KNOW) | (run.answers == truth)
    assert ok.all(), str(run.transcripts[int(np.flatnonzero(~ok)[0])])


@pytest.mark.parametrize("name", TASK_NAMES)
def test_driver_batches_one_learner_call_per_round(name: str) -> None:
    task = make_task(name)
    rng, insts, ctx, qs = _batch(task, 5, 32, None, n_ctx=4, per_ctx=32)
    truth_fn = truth_answer_fn(task, insts)
    calls: list[int] = []

    def answer_fn(c: np.ndarray, q: np.ndarray) -> np.ndarray:
        assert len(c) == len(q) > 0 and q.shape[1] == task.question_len
        assert not task.primitive_mask(q).any()
        calls.append(len(q))
        return truth_fn(c, q)

    run = run_expert(task, insts, ctx, qs, answer_fn, rng)
    assert len(calls) <= task.rounds
    assert sum(calls) == run.n_learner_questions == run.n_subquestions - run.n_primitive
    answers, transcripts = run  # unpacks as (answers, transcripts)
    assert len(answers) == len(transcripts) == len(qs)
    tokens, mask = encode_transcript(task, transcripts[0])
    assert tokens.shape == mask.shape == (transcript_max_len(task),)
    assert (tokens[: task.question_len] == qs[0]).all() and not mask[: task.question_len].any()
    assert mask.sum() == sum(sq.size + 1 for sq, _ in transcripts[0].rounds) + 2


def test_run_expert_rejects_bad_shapes() -> None:
    task = make_task("permutation_powering")
    rng, insts, ctx, qs = _batch(task, 0, 8, None)
    with pytest.raises(ValueError):
        run_expert(task, insts, ctx[:-1], qs, truth_answer_fn(task, insts), rng)
    with pytest.raises(ValueError):
        task.generate(65, rng)


def _drive(task: Task, q: np.ndarray, replies: list[list[int]]) -> tuple[int, list[list[np.ndarray]]]:
    """Run H on q by hand, feeding it the given answers round by round."""
    gen = task.expert(np.asarray(q))
    try:
        asked = [next(gen)]
    except StopIteration as stop:  # answered without subquestions
        return stop.value, []
    for reply in replies:
        try:
            asked.append(gen.send(reply))
        except StopIteration as stop:
            return stop.value, asked
    raise AssertionError("H asked more rounds than replies given")


def test_expert_edge_cases_by_hand() -> None:
    from oversight.amplification.env import INF, NO, YES

    sp = make_task("shortest_path")
    a, b, c = NAME0, NAME0 + 1, NAME0 + 2
    dist = sp.question(Q["DIST"], a, b)
    assert _drive(sp, dist, [[NO, c], [YES, int_token(12)]])[0] == INF  # 13 > cap
    assert _drive(sp, dist, [[NO, c], [YES, int_token(11)]])[0] == int_token(12)
    assert _drive(sp, dist, [[NO, c], [NO, int_token(3)]])[0] == INF  # X's hop is not an edge
    assert _drive(sp, dist, [[NO, c], [YES, YES]])[0] == DONT_KNOW  # malformed distance
    assert _drive(sp, dist, [[YES, c]])[0] == int_token(1)
    assert _drive(sp, sp.question(Q["DIST"], a, a), [])[0] == int_token(0)
    nxt = sp.question(Q["NEXT"], a, b)
    # candidates: X says c (twice), the environment's random neighbour is d; d is closer
    d = NAME0 + 3
    value, asked = _drive(sp, nxt, [[NO, c, c, d], [YES, int_token(5), int_token(2)]])
    assert value == d and len(asked[1]) == 3  # EDGE a c, DIST c b, DIST d b (c asked once)
    assert _drive(sp, nxt, [[NO, c, c, d], [NO, int_token(1), int_token(2)]])[0] == d  # c not an edge
    assert _drive(sp, nxt, [[NO, c, c, d], [YES, int_token(12), int_token(12)]])[0] == INF
    assert _drive(sp, nxt, [[NO, INF, INF, NO]])[0] == INF

    ws = make_task("wildcard_search")
    from oversight.amplification.env import CHAR_A, WILD

    q = ws.question(Q["SUM"], *([WILD] * 6))
    value, asked = _drive(ws, q, [[int_token(20), int_token(20)]])
    assert value == int_token(32)  # clipped
    assert (asked[0][0][1:] == [CHAR_A] + [WILD] * 5).all()
    assert _drive(ws, q, [[int_token(-20), int_token(-20)]])[0] == int_token(-32)
    assert _drive(ws, q, [[int_token(40), int_token(0)]])[0] == DONT_KNOW  # out of range: malformed

    pp = make_task("permutation_powering")
    value, asked = _drive(pp, pp.question(Q["POW"], a, int_token(7)), [[b], [c], [d]])
    assert value == d and [int(int_value(r[0][2])) for r in asked] == [3, 3, 1]
    assert _drive(pp, pp.question(Q["POW"], a, int_token(6)), [[b], [int_token(1)]])[0] == DONT_KNOW

    uf = make_task("union_find")
    assert _drive(uf, uf.question(Q["DEPTH"], a), [[int_token(3), b]])[0] == int_token(0)  # a root
    assert _drive(uf, uf.question(Q["DEPTH"], a), [[NO, b], [int_token(4)]])[0] == int_token(5)
    assert _drive(uf, uf.question(Q["PAR"], a), [[int_token(3), b, b, c]])[0] == a
    assert _drive(uf, uf.question(Q["PAR"], a), [[NO, b, b, c], [YES, int_token(2), int_token(0)]])[0] == c


@pytest.mark.parametrize("size", [2, 8, 16, 37, 64])
def test_shortest_path_truth_matches_a_breadth_first_search_of_the_facts(size: int) -> None:
    """DIST and NEXT ground truth against a plain BFS over the edge facts (cap 12, INF beyond)."""
    from collections import deque

    from oversight.amplification.env import INF

    sp = make_task("shortest_path")
    inst = sp.generate(size, np.random.default_rng(size))
    out: dict[int, list[int]] = {}
    for a, b in inst.facts:
        out.setdefault(int(a), []).append(int(b))
    names = sorted({int(t) for t in inst.facts.ravel()})

    def bfs(src: int) -> dict[int, int]:
        seen, queue = {src: 0}, deque([src])
        while queue:
            v = queue.popleft()
            for w in out.get(v, []):
                if w not in seen:
                    seen[w] = seen[v] + 1
                    queue.append(w)
        return {v: d for v, d in seen.items() if d <= 12}

    dist = {a: bfs(a) for a in names}
    pairs = [(a, b) for a in names for b in names if a != b]
    ctx = np.zeros(len(pairs), dtype=np.int64)
    dq = np.array([sp.question(Q["DIST"], a, b) for a, b in pairs])
    nq = np.array([sp.question(Q["NEXT"], a, b) for a, b in pairs])
    d_truth, n_truth = sp.truth_batch([inst], ctx, dq), sp.truth_batch([inst], ctx, nq)
    for (a, b), d, c in zip(pairs, d_truth, n_truth, strict=True):
        expected = dist[a].get(b)
        assert d == (INF if expected is None else int_token(expected))
        if expected is None:
            assert c == INF
        else:  # the smallest out-neighbour one step closer
            assert c == min(w for w in out[a] if dist[w].get(b) == expected - 1)


def test_stack_instance_data_indexes_each_questions_context_and_pads_ragged_arrays() -> None:
    """One stacked array per field over the DISTINCT contexts; ``slot`` maps each question back to its row."""
    from types import SimpleNamespace

    from oversight.amplification.env import Instance, stack_instance_data

    def inst(nbrs: np.ndarray, root: int) -> Instance:
        return Instance(np.zeros((1, 2), dtype=np.int64), 2, SimpleNamespace(nbrs=nbrs, root=np.array([root])))

    instances = [inst(np.array([[1, 2, 3]]), 10), inst(np.array([[4]]), 11), inst(np.array([[5, 6]]), 12)]
    slot, (nbrs, root) = stack_instance_data(instances, np.array([2, 0, 2]), "nbrs", "root", fill=-7)
    assert nbrs.shape == (2, 1, 3)  # contexts 0 and 2 only, padded to the widest
    assert root[slot, 0].tolist() == [12, 10, 12]
    assert nbrs[slot, 0].tolist() == [[5, 6, -7], [1, 2, 3], [5, 6, -7]]
    with pytest.raises(ValueError, match="at least one context"):
        stack_instance_data(instances, np.array([], dtype=np.int64), "root")
