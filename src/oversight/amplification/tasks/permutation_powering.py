"""Permutation powering: facts ``x σ(x)`` for a random permutation σ of the n names in use.

Question ``POW x k`` (k in 2..63, encoded as ONE integer token ``int_token(k)``; its bit-length is
uniform over 2..6): answer σ^k(x). Primitive: k in {0, 1} (σ^0 x = x, σ^1 x read from the facts).

H (3 rounds, ≤ 3 subquestions):
    y = POW(x, ⌊k/2⌋)          (round 1, learner)
    z = POW(y, ⌊k/2⌋)          (round 2, learner)
    if k even: answer z, else answer POW(z, 1) (round 3, primitive)
A sub-answer that is not a name makes H answer DONT_KNOW.
Recursion measure: k (⌊k/2⌋ < k for k ≥ 2, the only non-primitive questions).
Curriculum: level L in 1..5 draws the bit-length of k uniformly from 2..L+1 (level 5 = full D).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oversight.amplification.env import (
    ALL_NAME_TOKENS,
    DONT_KNOW,
    N_NAMES,
    TASKS,
    ExpertGen,
    Instance,
    Q,
    Task,
    int_token,
    int_value,
    is_name,
    name_index,
    name_token,
    stack_instance_data,
)
from oversight.amplification.truth import guard_truth

POW = Q["POW"]
MAX_K = 63


@guard_truth("sigma", "power")
@dataclass
class PermutationData:
    names: np.ndarray  # name indices in use [n]
    sigma: np.ndarray  # [64] name index -> σ(name index), -1 where not in use (ground truth)
    power: np.ndarray  # [MAX_K + 1, 64] σ^k(x) as a name index, -1 where x not in use
    fact_sigma: np.ndarray  # [64] σ as read back from the facts (what the environment uses)


@TASKS.register("permutation_powering")
class PermutationPowering(Task):
    name = "permutation_powering"
    fact_len = 2
    question_len = 3
    rounds = 3
    max_subquestions = 3
    round_subquestions = 1
    num_levels = 5
    question_kinds = (POW,)
    primitive_kinds = ()  # POW is primitive iff k in {0, 1}: see primitive_mask
    # 32 questions per instance instead of 16: at n=16 in 15 minutes (2 cores, targets made ahead)
    # amplify reached 0.955 (95% at 715 s, 16,370 steps) against 0.906 and 0.910 (seeds 0, 1)
    questions_per_context = 32

    def generate(self, size: int, rng: np.random.Generator) -> Instance:
        self._check_size(size)
        names = rng.choice(N_NAMES, size=size, replace=False)
        sigma = np.full(N_NAMES, -1, dtype=np.int64)
        sigma[names] = names[rng.permutation(size)]
        power = np.full((MAX_K + 1, N_NAMES), -1, dtype=np.int64)
        power[0, names] = names
        for k in range(1, MAX_K + 1):
            power[k, names] = sigma[power[k - 1, names]]
        facts = self._shuffle_facts(np.stack([name_token(names), name_token(sigma[names])], axis=1), rng)
        fact_sigma = np.full(N_NAMES, -1, dtype=np.int64)
        fact_sigma[name_index(facts[:, 0])] = name_index(facts[:, 1])
        return Instance(facts, size, PermutationData(np.sort(names), sigma, power, fact_sigma))

    def sample_questions(
        self, inst: Instance, m: int, rng: np.random.Generator, level: int | None = None
    ) -> np.ndarray:
        level = self._check_level(level)
        bits = rng.integers(2, level + 2, size=m)  # bit-length 2..level+1
        k = rng.integers(1 << (bits - 1), 1 << bits)  # uniform with that bit-length
        x = rng.choice(inst.data.names, size=m)
        return np.stack([np.full(m, POW), name_token(x), int_token(k)], axis=1).astype(np.int64)

    def question_level(self, q: np.ndarray, inst: Instance) -> int:
        bits = int(int_value(q[2])).bit_length()  # level L draws bit-lengths 2..L+1
        return min(max(bits - 1, 1), self.num_levels)

    def primitive_mask(self, questions: np.ndarray) -> np.ndarray:
        k = int_value(questions[:, 2])
        return (questions[:, 0] == POW) & (k >= 0) & (k <= 1)

    def answer_primitive_batch(
        self,
        instances: Sequence[Instance],
        ctx_index: np.ndarray,
        questions: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        out = np.full(len(questions), DONT_KNOW, dtype=np.int64)
        x_tok, k = questions[:, 1], int_value(questions[:, 2])
        ok = is_name(x_tok) & (k >= 0) & (k <= 1) & (questions[:, 0] == POW)
        if not ok.any():
            return out
        slot, (fact_sigma,) = stack_instance_data(instances, ctx_index[ok], "fact_sigma")
        x = name_index(x_tok[ok])
        sx = fact_sigma[slot, x]
        y = np.where(k[ok] == 0, x, sx)
        out[ok] = np.where(sx >= 0, name_token(y), DONT_KNOW)  # sx < 0: x is not a name in use
        return out

    def truth_batch(
        self, instances: Sequence[Instance], ctx_index: np.ndarray, questions: np.ndarray
    ) -> np.ndarray:
        ctx_index = np.asarray(ctx_index, dtype=np.int64)
        x_tok, k = questions[:, 1], int_value(questions[:, 2])
        ok = is_name(x_tok) & (k >= 0) & (k <= MAX_K) & (questions[:, 0] == POW)
        out = np.full(len(questions), DONT_KNOW, dtype=np.int64)
        if not ok.any():
            return out
        slot, (powers,) = stack_instance_data(instances, ctx_index[ok], "power")  # [u, K, 64]
        y = powers[slot, k[ok], name_index(x_tok[ok])]
        out[ok] = np.where(y >= 0, name_token(y), DONT_KNOW)
        return out

    def expert(self, q: np.ndarray) -> ExpertGen:
        x, k = int(q[1]), int(int_value(q[2]))
        if not is_name(x) or not 0 <= k <= MAX_K:
            return DONT_KNOW
        half = int_token(k // 2)
        (y,) = yield [self.question(POW, x, half)]
        if not is_name(y):
            return DONT_KNOW
        (z,) = yield [self.question(POW, y, half)]
        if not is_name(z):
            return DONT_KNOW
        if k % 2 == 0:
            return z
        (w,) = yield [self.question(POW, z, int_token(1))]
        return w if is_name(w) else DONT_KNOW

    def recursion_measure(self, q: np.ndarray, inst: Instance | None = None) -> int:
        return int(int_value(q[2]))

    def answer_tokens(self, q: np.ndarray) -> np.ndarray | None:
        return np.concatenate([[DONT_KNOW], ALL_NAME_TOKENS])
