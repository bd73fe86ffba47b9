"""H', the learned expert: a small Transformer trained on H's transcripts to decompose like H.

    hprime = LearnedExpert(task)                               # small Transformer, d=64
    batch = encode_transcripts(task, expert_run.transcripts)   # H's transcripts -> arrays
    loss, accuracy = hprime.loss(batch)                        # train on subquestions + final answers
    run = run_learned_expert(task, hprime, instances, ctx_index, questions, answer_fn, rng)

A transcript is ``[Q, round 1: (subq, subans)..., round 2: ..., answer]``. H' works in the same
lock-step rounds as H: before round ``d`` it makes ONE decision, either "ask these subquestions"
(up to ``task.round_subquestions`` of them at once) or "answer now with this token". One decision is
one forward pass (not one pass per token), which keeps H' cheap enough to make every one of X's
targets.

The sequence is the transcript's tokens (the "content": question tokens, then each round's
subquestion tokens and sub-answers, each token tagged with its role, round, position and
subquestion index) followed by the decision slots (an action slot -> ROUND to ask or ANSWER_MARK to
answer, ``round_subquestions * question_len`` subquestion slots, and an answer slot). Attention is
causal in rounds: the slots of decision ``d`` see the question and rounds ``< d`` (and each
other), so training on every decision of a transcript takes one pass, like a causal LM. Outputs
copy a visible transcript token (a pointer) or come from a vocabulary softmax, as in X.
The loss covers subquestions, the action and the final answer, never the sub-answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from oversight.amplification.env import (
    ANSWER_MARK,
    DONT_KNOW,
    PAD,
    ROUND,
    VOCAB_SIZE,
    AnswerFn,
    Instance,
    Task,
    Transcript,
)
from oversight.amplification.learner import SelfAttentionBlock, TupleEmbedding

# roles of sequence positions
ROLE_QUESTION, ROLE_SUBQ, SLOT_ACTION, SLOT_SUBQ, SLOT_ANSWER = range(5)


@dataclass
class TranscriptBatch:
    """H transcripts as arrays. R = task.rounds, S = task.round_subquestions, L = task.question_len."""

    question: np.ndarray  # [B, L]
    subqs: np.ndarray  # [B, R, S, L], PAD where no subquestion
    subans: np.ndarray  # [B, R, S], PAD where no subquestion
    n_rounds: np.ndarray  # [B] rounds asked before answering
    answer: np.ndarray  # [B] final answer token

    def __len__(self) -> int:
        return len(self.question)

    def take(self, rows: np.ndarray) -> TranscriptBatch:
        return TranscriptBatch(self.question[rows], self.subqs[rows], self.subans[rows],
                               self.n_rounds[rows], self.answer[rows])

    @staticmethod
    def concat(batches: Sequence[TranscriptBatch]) -> TranscriptBatch:
        return TranscriptBatch(*(np.concatenate([getattr(b, f) for b in batches]) for f in
                                 ("question", "subqs", "subans", "n_rounds", "answer")))


def encode_transcripts(task: Task, transcripts: Sequence[Transcript]) -> TranscriptBatch:
    """H's transcripts -> a TranscriptBatch (the training data of H')."""
    b, r, s, length = len(transcripts), task.rounds, task.round_subquestions, task.question_len
    out = TranscriptBatch(
        question=np.stack([t.question for t in transcripts]).astype(np.int64),
        subqs=np.full((b, r, s, length), PAD, dtype=np.int64),
        subans=np.full((b, r, s), PAD, dtype=np.int64),
        n_rounds=np.array([len(t.rounds) for t in transcripts], dtype=np.int64),
        answer=np.array([t.answer for t in transcripts], dtype=np.int64),
    )
    for i, t in enumerate(transcripts):
        for j, (qs, ans) in enumerate(t.rounds):
            if len(qs) > s or j >= r:
                raise ValueError(f"{task.name}: H asked {len(qs)} subquestions in round {j + 1}; H' has slots for "
                                 f"{s} per round and {r} rounds (task.round_subquestions, task.rounds)")
            out.subqs[i, j, : len(qs)] = qs
            out.subans[i, j, : len(ans)] = ans
    return out


class TranscriptBuffer:
    """A ring buffer of H transcripts (the newest ``capacity`` ones) that H' trains on.

    Nothing is held out: H''s loss is measured on each batch of new transcripts as it arrives,
    before H' trains on it (``hprime.loss`` on unseen data, "prequential" evaluation). A held-out
    slice of the buffer would measure the distribution of long ago once H is called only every
    hundred steps, and miss the curriculum moving on.
    """

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity, self.rng = capacity, rng
        self.data: TranscriptBatch | None = None

    def add(self, batch: TranscriptBatch) -> None:
        merged = batch if self.data is None else TranscriptBatch.concat([self.data, batch])
        self.data = merged.take(np.arange(max(0, len(merged) - self.capacity), len(merged)))

    def sample(self, n: int) -> TranscriptBatch | None:
        if self.data is None or len(self.data) == 0:
            return None
        return self.data.take(self.rng.integers(0, len(self.data), size=min(n, len(self.data))))

    def __len__(self) -> int:
        return 0 if self.data is None else len(self.data)


class RollingLoss:
    """H''s loss on the newest ``window`` transcripts it had not trained on (inf before any)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.batches: list[tuple[float, int]] = []  # (mean loss, transcripts), newest last

    def add(self, loss: float, n: int) -> None:
        self.batches.append((loss, n))
        while sum(k for _, k in self.batches[1:]) >= self.window:
            self.batches.pop(0)

    @property
    def count(self) -> int:
        """Transcripts the loss is taken over."""
        return sum(k for _, k in self.batches)

    @property
    def value(self) -> float:
        n = self.count
        return sum(loss * k for loss, k in self.batches) / n if n else math.inf


@dataclass
class Decision:
    """H's (or H''s) move before one round: ask ``subqs`` (ROUND) or answer (ANSWER_MARK)."""

    action: np.ndarray  # [B] ROUND or ANSWER_MARK
    subqs: np.ndarray  # [B, S, L] (PAD rows = not asked)
    answer: np.ndarray  # [B]


def pad_sequence_for_attention(x: torch.Tensor, mask: torch.Tensor, block: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad [B, T, d] tokens and their [B, T, T] attention mask to a multiple of ``block`` positions on CPU.

    PyTorch's CPU attention kernel works in blocks of 16 positions and is several times slower on
    a ragged tail (measured with torch 2.13, 512 rows x 4 heads: T=15 took 10.8 ms, T=16 2.3 ms).
    No real token may attend to a padding position, so the real outputs do not change; padding
    positions attend to position 0 only (a row with nothing to attend to would be NaN).
    """
    b, length, _ = x.shape
    if x.device.type != "cpu" or length % block <= block // 2:
        return x, mask  # a short tail costs less than the extra positions' projections and MLP
    padded = -(-length // block) * block
    x = torch.cat([x, x.new_zeros(b, padded - length, x.shape[2])], dim=1)
    out = mask.new_zeros(b, padded, padded)
    out[:, :length, :length] = mask
    out[:, length:, 0] = True
    return x, out


class LearnedExpert(nn.Module):
    """H': makes H's decisions from the transcript so far. See the module docstring for the layout."""

    def __init__(self, task: Task, d_model: int = 64, n_heads: int = 4, n_layers: int = 1) -> None:
        super().__init__()
        self.rounds, self.slots, self.question_len = task.rounds, task.round_subquestions, task.question_len
        r, s, length = self.rounds, self.slots, self.question_len
        self.d_model = d_model
        self.token_embedding = nn.Embedding(VOCAB_SIZE, d_model)
        self.embed_item = TupleEmbedding(self.token_embedding, length + 1, d_model)  # (subq tokens, answer)
        self.role_embedding = nn.Embedding(5, d_model)
        self.time_embedding = nn.Embedding(r + 1, d_model)
        self.index_embedding = nn.Embedding(s + 1, d_model)
        self.blocks = nn.ModuleList(SelfAttentionBlock(d_model, n_heads, mlp_ratio=2) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        # each output token gets its own query vector, read off its slot's vector
        self.action_out = nn.Linear(d_model, d_model)
        self.subq_out = nn.Linear(d_model, length * d_model)
        self.answer_out = nn.Linear(d_model, d_model)
        self.vocab_head = nn.Linear(d_model, VOCAB_SIZE)
        self.pointer_keys = nn.Linear(d_model, (length + 1) * d_model)  # one key per token of an item

        # content items: the question (time 0), then round j's S (subquestion, answer) items (time j + 1)
        time = [0] + [j + 1 for j in range(r) for _ in range(s)]
        idx = [s] + [k for _ in range(r) for k in range(s)]
        role = [ROLE_QUESTION] + [ROLE_SUBQ] * (r * s)
        # the slots of one decision: action, S subquestions, answer
        slot_role = [SLOT_ACTION] + [SLOT_SUBQ] * s + [SLOT_ANSWER]
        slot_idx = [s] + list(range(s)) + [s]
        for name, values in (("item_time", time), ("item_idx", idx), ("item_role", role),
                             ("slot_role", slot_role), ("slot_idx", slot_idx)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.long), persistent=False)
        self.n_slot = len(slot_role)  # slot vectors per decision
        self.n_out = 1 + s * length + 1  # output tokens per decision

    # ---- the network ----------------------------------------------------------------------------
    def _items(self, question: torch.Tensor, subqs: torch.Tensor, subans: torch.Tensor, n_rounds: int) -> torch.Tensor:
        """[B, 1 + n_rounds * S, L + 1] tokens: (question, PAD), then (subquestion, its answer) items."""
        b = len(question)
        first = torch.cat([question, torch.full_like(question[:, :1], PAD)], dim=1)[:, None]
        rest = torch.cat([subqs[:, :n_rounds], subans[:, :n_rounds, :, None]], dim=3).reshape(b, -1, self.question_len + 1)
        return torch.cat([first, rest], dim=1)

    def decision_logits(
        self, question: torch.Tensor, subqs: torch.Tensor, subans: torch.Tensor, decisions: Sequence[int],
        log: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs of every output token of the given decisions: [B, len(decisions) * n_out, V]
        (``log=False``: the probabilities, which have the same argmax and are cheaper).

        Also returns the item tokens. Rounds at or after a decision are unseen by it (and rounds after
        the last decision asked for are not even computed).
        """
        items = self._items(question, subqs, subans, max(decisions))
        item_time, item_idx, item_role = (t[: items.shape[1]] for t in (self.item_time, self.item_idx, self.item_role))
        # subquestion slots no row of the batch uses are dropped: nothing attends to or points at them
        used = items[:, :, 0] != PAD
        if not bool(used.all()):
            keep = used.any(0)
            keep[0] = True  # the question item
            items, item_time, item_idx, item_role = items[:, keep], item_time[keep], item_idx[keep], item_role[keep]
        b, n_items, device = items.shape[0], items.shape[1], items.device
        n_dec = len(decisions)
        x_items = self.embed_item(items) + self.role_embedding(item_role) + self.time_embedding(item_time) \
            + self.index_embedding(item_idx)
        slot_time = torch.tensor(decisions, dtype=torch.long, device=device).repeat_interleave(self.n_slot)
        x_slots = (self.role_embedding(self.slot_role.repeat(n_dec)) + self.time_embedding(slot_time)
                   + self.index_embedding(self.slot_idx.repeat(n_dec)))
        x = torch.cat([x_items, x_slots.expand(b, -1, -1)], dim=1)

        # who may attend to whom (True = allowed): items of earlier rounds; slots of the same decision
        query_time = torch.cat([item_time, slot_time])  # [T]
        item_real = items[:, :, 0] != PAD  # [B, n_items]
        item_ok = item_real[:, None, :] & (item_time[None, None, :] <= query_time[None, :, None])
        slot_group = torch.cat([torch.full((n_items,), -1, device=device),
                                torch.arange(n_dec, device=device).repeat_interleave(self.n_slot)])
        slot_ok = (slot_group[:, None] == slot_group[None, n_items:]) & (slot_group[:, None] >= 0)
        mask = torch.cat([item_ok, slot_ok[None].expand(b, -1, -1)], dim=2)  # [B, T, T]
        length = x.shape[1]
        x, mask = pad_sequence_for_attention(x, mask)
        for block in self.blocks:
            x = block(x, mask[:, None])
        x = self.norm(x[:, :length]).float()
        slots = x[:, n_items:].view(b, n_dec, self.n_slot, self.d_model)
        out = torch.cat([self.action_out(slots[:, :, :1]),
                         self.subq_out(slots[:, :, 1:-1]).reshape(b, n_dec, -1, self.d_model),
                         self.answer_out(slots[:, :, -1:])], dim=2).reshape(b, n_dec * self.n_out, self.d_model)
        keys = self.pointer_keys(x[:, :n_items]).reshape(b, -1, self.d_model)  # [B, n_items * (L+1), d]
        item_tokens = items.reshape(b, -1)
        visible = item_ok[:, n_items:: self.n_slot]  # [B, n_dec, n_items]: what each decision may see
        visible = visible.repeat_interleave(self.question_len + 1, dim=2) & (item_tokens != PAD)[:, None, :]
        visible = visible.repeat_interleave(self.n_out, dim=1)  # [B, n_dec * n_out, n_items * (L+1)]
        pointer_logits = (out @ keys.transpose(1, 2) / math.sqrt(self.d_model)).masked_fill(~visible, -1e9)
        probs = torch.softmax(torch.cat([self.vocab_head(out), pointer_logits], dim=2), dim=2)
        index = item_tokens[:, None, :].expand(-1, out.shape[1], -1)
        token_probs = probs[..., :VOCAB_SIZE].scatter_add(2, index, probs[..., VOCAB_SIZE:])
        return (torch.log(token_probs.clamp_min(1e-12)) if log else token_probs), items

    def _split_slots(self, logp: torch.Tensor, legal_answer: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """[B, D*n_slot, V] -> action [B, D, V], subquestions [B, D, S, L, V], answer [B, D, V]."""
        b = logp.shape[0]
        logp = logp.view(b, -1, self.n_out, VOCAB_SIZE)
        action = logp[:, :, 0].clone()
        not_action = torch.ones(VOCAB_SIZE, dtype=torch.bool, device=logp.device)
        not_action[[ROUND, ANSWER_MARK]] = False
        action = action.masked_fill(not_action, -1e9)
        subqs = logp[:, :, 1:-1].reshape(b, -1, self.slots, self.question_len, VOCAB_SIZE)
        answer = logp[:, :, -1]
        if legal_answer is not None:
            answer = answer.masked_fill(~legal_answer[:, None, :], -1e9)
        return action, subqs, answer

    # ---- training ---------------------------------------------------------------------------------
    def loss(self, batch: TranscriptBatch, task: Task, device: str = "cpu") -> tuple[torch.Tensor, float]:
        """Mean cross-entropy over the action, subquestion and answer tokens of every decision H made,
        and the fraction of decisions H' gets entirely right (teacher-forced)."""
        question, subqs, subans, n_rounds, answer = self._tensors(batch, device)
        legal = torch.from_numpy(task.answer_mask(batch.question)).to(device)
        decisions = list(range(self.rounds + 1))
        logp, _ = self.decision_logits(question, subqs, subans, decisions)
        action_lp, subq_lp, answer_lp = self._split_slots(logp, legal)
        d = torch.arange(self.rounds + 1, device=device)[None, :]  # [1, D]
        asks, answers = d < n_rounds[:, None], d == n_rounds[:, None]  # [B, D]
        action_target = torch.where(asks, ROUND, ANSWER_MARK)
        subq_target = torch.cat([subqs, torch.full_like(subqs[:, :1], PAD)], dim=1)  # [B, D, S, L]
        action_nll = -action_lp.gather(2, action_target[..., None])[..., 0]
        subq_nll = -subq_lp.gather(4, subq_target[..., None])[..., 0]  # [B, D, S, L]
        answer_nll = -answer_lp.gather(2, answer[:, None, None].expand(-1, self.rounds + 1, 1))[..., 0]
        made = asks | answers
        total = (action_nll * made).sum() + (subq_nll.sum((2, 3)) * asks).sum() + (answer_nll * answers).sum()
        n_tokens = made.sum() + asks.sum() * self.slots * self.question_len + answers.sum()
        with torch.no_grad():
            right = (action_lp.argmax(2) == action_target)
            right &= ~asks | (subq_lp.argmax(4) == subq_target).all(3).all(2)
            right &= ~answers | (answer_lp.argmax(2) == answer[:, None])
            accuracy = float(right[made].float().mean())
        return total / n_tokens.clamp_min(1), accuracy

    @staticmethod
    def _tensors(batch: TranscriptBatch, device: str) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(a).to(device) for a in
                     (batch.question, batch.subqs, batch.subans, batch.n_rounds, batch.answer))

    # ---- acting -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def decide(self, task: Task, question: np.ndarray, subqs: np.ndarray, subans: np.ndarray,
               decision: int, device: str = "cpu") -> Decision:
        """H''s greedy decision before round ``decision`` (0-based) given the earlier rounds."""
        q, sq, sa = (torch.from_numpy(a).to(device) for a in (question, subqs, subans))
        legal = torch.from_numpy(task.answer_mask(question)).to(device)
        probs, _ = self.decision_logits(q, sq, sa, [decision], log=False)
        action_lp, subq_lp, answer_lp = self._split_slots(probs, legal)  # masked entries -1e9: below any probability
        return Decision(action=action_lp[:, 0].argmax(1).cpu().numpy(),
                        subqs=subq_lp[:, 0].argmax(3).cpu().numpy(),
                        answer=answer_lp[:, 0].argmax(1).cpu().numpy())


class DecisionCache:
    """H''s greedy decisions by state, valid until H''s weights change (``clear()`` after each update,
    or ``use_version`` with a count of H''s updates).

    A decision is a function of the question and the earlier rounds only (H' never sees the facts),
    and the same states recur from step to step: every round-1 decision is one of the task's few
    hundred questions. With H' updated every tenth step or less once it imitates H, most decisions
    are looked up rather than computed.
    """

    def __init__(self) -> None:
        self.table: dict[tuple[int, bytes], tuple[int, np.ndarray, int]] = {}
        self.hits = self.misses = 0
        self.version = 0  # which H' weights the table holds decisions of

    def clear(self) -> None:
        self.table.clear()

    def use_version(self, version: int) -> None:
        """Keep the table only if it holds the decisions of H' weights ``version`` (a count of H''s updates)."""
        if version != self.version:
            self.clear()
            self.version = version


def decide_unique(hprime: LearnedExpert, task: Task, question: np.ndarray, subqs: np.ndarray,
                   subans: np.ndarray, decision: int, device: str, cache: DecisionCache | None = None) -> Decision:
    """``hprime.decide`` once per distinct (question, earlier rounds) state, copied to the duplicates.

    H''s greedy decision is a function of what it has seen, and many questions of a batch share it
    (before round 1 it has seen only the question: a few dozen distinct ones among hundreds).
    ``subqs`` / ``subans`` hold only the rounds before ``decision``. States in ``cache`` are not recomputed.
    """
    b = len(question)
    state = np.ascontiguousarray(np.concatenate([question, subqs.reshape(b, -1), subans.reshape(b, -1)], axis=1))
    unique, inverse = np.unique(state, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    keys = [(decision, row.tobytes()) for row in unique]
    known = [cache.table.get(k) for k in keys] if cache is not None else [None] * len(keys)
    todo = np.array([i for i, hit in enumerate(known) if hit is None], dtype=np.int64)
    s, length = task.round_subquestions, task.question_len
    action = np.empty(len(unique), dtype=np.int64)
    answer = np.empty(len(unique), dtype=np.int64)
    out_subqs = np.empty((len(unique), s, length), dtype=np.int64)
    for i, hit in enumerate(known):
        if hit is not None:
            action[i], out_subqs[i], answer[i] = hit
    if len(todo):
        n_q = question.shape[1]
        u_question = unique[todo, :n_q]
        u_subqs = unique[todo, n_q: n_q + subqs[0].size].reshape(len(todo), *subqs.shape[1:])
        u_subans = unique[todo, n_q + subqs[0].size:].reshape(len(todo), *subans.shape[1:])
        full_subqs = np.full((len(todo), task.rounds, s, length), PAD, dtype=np.int64)
        full_subans = np.full((len(todo), task.rounds, s), PAD, dtype=np.int64)
        full_subqs[:, :decision], full_subans[:, :decision] = u_subqs, u_subans
        fresh = hprime.decide(task, u_question, full_subqs, full_subans, decision, device)
        action[todo], out_subqs[todo], answer[todo] = fresh.action, fresh.subqs, fresh.answer
        if cache is not None:
            for j, i in enumerate(todo):
                cache.table[keys[i]] = (int(fresh.action[j]), fresh.subqs[j].copy(), int(fresh.answer[j]))
    if cache is not None:
        cache.hits += len(unique) - len(todo)
        cache.misses += len(todo)
    return Decision(action=action[inverse], subqs=out_subqs[inverse], answer=answer[inverse])


def run_learned_expert(
    task: Task,
    hprime: LearnedExpert,
    instances: Sequence[Instance],
    ctx_index: np.ndarray,
    questions: np.ndarray,
    answer_fn: AnswerFn,
    rng: np.random.Generator,
    device: str = "cpu",
    keep_transcripts: bool = False,
    cache: DecisionCache | None = None,
) -> tuple[np.ndarray, list[Transcript], int, int]:
    """Amplify^{H'}(X): H' decomposes, the environment answers primitive subquestions, X the others.

    Lock-step like ``env.run_expert``: one H' pass and one ``answer_fn`` call per round. A decision to
    ask with no well-formed subquestion makes the answer DONT_KNOW. Returns (answers [m],
    transcripts (only with ``keep_transcripts``), number of primitive subquestions, number answered
    by answer_fn). ``cache``: reuse H''s decisions of earlier calls (clear it whenever H' trains).
    """
    m, r, s, length = len(questions), task.rounds, task.round_subquestions, task.question_len
    ctx_index = np.asarray(ctx_index, dtype=np.int64)
    subqs = np.full((m, r, s, length), PAD, dtype=np.int64)
    subans = np.full((m, r, s), PAD, dtype=np.int64)
    answers = np.full(m, DONT_KNOW, dtype=np.int64)
    running = np.ones(m, dtype=bool)
    n_rounds = np.zeros(m, dtype=np.int64)
    n_primitive = n_learner = 0
    for d in range(r + 1):
        rows = np.flatnonzero(running)
        if len(rows) == 0:
            break
        decision = decide_unique(hprime, task, questions[rows], subqs[rows, :d], subans[rows, :d], d, device, cache)
        asked = decision.subqs[:, :, 0] != PAD  # [b, S]: a subquestion starts with its kind token
        answering = (decision.action == ANSWER_MARK) | (d == r)
        answers[rows[answering]] = decision.answer[answering]
        malformed = ~answering & ~asked.any(1)
        answers[rows[malformed]] = DONT_KNOW
        running[rows[answering | malformed]] = False
        ask = ~answering & ~malformed
        if not ask.any():
            continue
        ask_rows = rows[ask]
        new_subqs = np.where(asked[ask][..., None], decision.subqs[ask], PAD)  # [a, S, L]
        subqs[ask_rows, d] = new_subqs
        n_rounds[ask_rows] = d + 1
        flat_owner, flat_slot = np.nonzero(asked[ask])
        flat_q = new_subqs[flat_owner, flat_slot]
        flat_ctx = ctx_index[ask_rows[flat_owner]]
        prim = task.primitive_mask(flat_q)
        flat_ans = np.empty(len(flat_q), dtype=np.int64)
        if prim.any():
            flat_ans[prim] = task.answer_primitive_batch(instances, flat_ctx[prim], flat_q[prim], rng)
        if not prim.all():
            flat_ans[~prim] = np.asarray(answer_fn(flat_ctx[~prim], flat_q[~prim]), dtype=np.int64)
        n_primitive += int(prim.sum())
        n_learner += int((~prim).sum())
        subans[ask_rows[flat_owner], d, flat_slot] = flat_ans
    transcripts = []
    for i in range(m if keep_transcripts else 0):
        rounds = []
        for j in range(n_rounds[i]):
            used = subqs[i, j, :, 0] != PAD
            rounds.append((subqs[i, j, used], subans[i, j, used]))
        transcripts.append(Transcript(questions[i], rounds, int(answers[i])))
    return answers, transcripts, n_primitive, n_learner
