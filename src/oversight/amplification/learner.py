"""X, the learner: a Transformer over the SET of a context's facts that answers questions about it.

    model = FactSetLearner(fact_len=2, question_len=3)
    memory = model.encode_facts(facts)                      # [C, n, d]: once per context and step
    logp = model.answer_log_probs(memory, facts, ctx_index, questions, legal)   # [Q, VOCAB_SIZE]

Architecture (one for all five tasks):
- a fact is one vector: its tokens embedded, each plus a slot embedding, concatenated and projected
  (``W_1 E[t_1] + W_2 E[t_2] + ...``); a question is embedded the same way;
- an encoder of self-attention blocks over the facts, with NO positional encoding across facts
  (a context is a set); ``encoder_loops`` > 1 runs the same blocks that many times (shared weights);
- a decoder in which each question attends to the facts of its own context. The fact encoding is
  computed once per context and shared by all of that context's questions: questions are grouped
  by context into a padded [C, M, d] block, so the attention is one batched call;
- the answer (one token) comes from one softmax over [vocabulary tokens ; (fact, slot) pointers]:
  a pointer copies the token at that slot of that fact. Pointer and vocabulary probability mass of
  the same token are added. Illegal answers (``task.answer_mask``) are masked out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from oversight.amplification.env import PAD, VOCAB_SIZE


class SelfAttentionBlock(nn.Module):
    """Pre-norm Transformer block over a set (no positions)."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(), nn.Linear(mlp_ratio * d_model, d_model)
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, d = x.shape
        qkv = self.qkv(self.norm_attn(x)).view(batch, length, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, h, L, dh]
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.out(att.transpose(1, 2).reshape(batch, length, d))
        return x + self.mlp(self.norm_mlp(x))


class CrossAttentionBlock(nn.Module):
    """Queries attend to a memory (the encoded facts), then an MLP. Queries never see each other."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm_query = nn.LayerNorm(d_model)
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(), nn.Linear(mlp_ratio * d_model, d_model)
        )

    def forward(self, x: torch.Tensor, memory: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        batch, m, d = x.shape
        n, h, dh = memory.shape[1], self.n_heads, d // self.n_heads
        q = self.query(self.norm_query(x)).view(batch, m, h, dh).transpose(1, 2)
        k, v = self.key_value(memory).view(batch, n, 2, h, dh).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.out(att.transpose(1, 2).reshape(batch, m, d))
        return x + self.mlp(self.norm_mlp(x))


class TupleEmbedding(nn.Module):
    """A fixed-length token tuple -> one vector: sum_j W_j (E[t_j]), i.e. concatenate and project."""

    def __init__(self, token_embedding: nn.Embedding, length: int, d_model: int) -> None:
        super().__init__()
        self.token_embedding = token_embedding
        self.length = length
        self.project = nn.Linear(length * token_embedding.embedding_dim, d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [..., length] -> [..., d]
        e = self.token_embedding(tokens)
        return self.project(e.reshape(*tokens.shape[:-1], -1))


def group_by_context(ctx_index: torch.Tensor, n_contexts: int) -> tuple[torch.Tensor, int]:
    """Slot of each question inside its context's group, and the largest group size M.

    ``padded[ctx_index, slot] = x`` lays questions out as [C, M, ...] so that each row of the
    block attends to one context's facts; ``padded[ctx_index, slot]`` reads them back.
    """
    order = torch.argsort(ctx_index, stable=True)
    counts = torch.bincount(ctx_index, minlength=n_contexts)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(ctx_index)
    slot[order] = torch.arange(len(ctx_index), device=ctx_index.device) - starts[ctx_index[order]]
    return slot, int(counts.max().item()) if len(ctx_index) else 0


class FactSetLearner(nn.Module):
    """X: answers [Q, question_len] questions about [C, n, fact_len] fact sets with one token each."""

    def __init__(
        self,
        fact_len: int,
        question_len: int,
        d_model: int = 128,
        n_heads: int = 4,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        vocab_size: int = VOCAB_SIZE,
        encoder_loops: int = 1,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if encoder_loops < 1:
            raise ValueError(f"encoder_loops={encoder_loops} must be >= 1")
        self.fact_len, self.question_len, self.d_model, self.vocab_size = fact_len, question_len, d_model, vocab_size
        self.encoder_loops = encoder_loops
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.embed_fact = TupleEmbedding(self.token_embedding, fact_len, d_model)
        self.embed_question = TupleEmbedding(self.token_embedding, question_len, d_model)
        self.encoder = nn.ModuleList(SelfAttentionBlock(d_model, n_heads) for _ in range(encoder_layers))
        self.encoder_norm = nn.LayerNorm(d_model)
        self.decoder = nn.ModuleList(CrossAttentionBlock(d_model, n_heads) for _ in range(decoder_layers))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.vocab_head = nn.Linear(d_model, vocab_size)
        self.pointer_query = nn.Linear(d_model, d_model)
        self.pointer_keys = nn.Linear(d_model, fact_len * d_model)  # one key per (fact, slot)

    # ---- facts: once per context ----------------------------------------------------------------
    def encode_facts(self, facts: torch.Tensor) -> torch.Tensor:
        """[C, n, fact_len] int64 -> [C, n, d]. All-PAD rows (padding to a common n) are ignored."""
        x = self.embed_fact(facts)
        mask = self._fact_mask(facts)
        # Looping the same blocks (weights shared) adds depth without parameters: a chained look-up
        # that needs one more hop per level of the question can reuse what one loop learned.
        for _ in range(self.encoder_loops):
            for block in self.encoder:
                x = block(x, mask)
        return self.encoder_norm(x)

    @staticmethod
    def _fact_mask(facts: torch.Tensor) -> torch.Tensor | None:
        real = facts[..., 0] != PAD  # [C, n]
        if bool(real.all()):
            return None
        return real[:, None, None, :]  # broadcast over heads and queries

    # ---- questions: attend to their context's facts ------------------------------------------------
    def answer_log_probs(
        self,
        memory: torch.Tensor,
        facts: torch.Tensor,
        ctx_index: torch.Tensor,
        questions: torch.Tensor,
        legal: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Log-probabilities over the vocabulary [Q, V] of the answer to questions[i] in context ctx_index[i].

        ``legal`` (bool [Q, V], optional) masks out answers that are illegal for a question's kind.
        """
        n_contexts, n_facts, d = memory.shape
        slot, group = group_by_context(ctx_index, n_contexts)
        x = memory.new_zeros(n_contexts, group, d)
        x[ctx_index, slot] = self.embed_question(questions).to(x.dtype)
        mask = self._fact_mask(facts)
        for block in self.decoder:
            x = block(x, memory, mask)
        h = self.decoder_norm(x).float()  # [C, M, d]; the output layer runs in float32
        vocab_logits = self.vocab_head(h)  # [C, M, V]
        keys = self.pointer_keys(memory.float()).view(n_contexts, n_facts * self.fact_len, d)
        pointer_logits = self.pointer_query(h) @ keys.transpose(1, 2) / math.sqrt(d)  # [C, M, n*F]
        fact_tokens = facts.reshape(n_contexts, 1, n_facts * self.fact_len).expand(-1, group, -1)
        vocab_logits, pointer_logits = vocab_logits[ctx_index, slot], pointer_logits[ctx_index, slot]
        fact_tokens = fact_tokens[ctx_index, slot]  # [Q, n*F]
        pointer_ok = fact_tokens != PAD
        if legal is not None:
            vocab_logits = vocab_logits.masked_fill(~legal, -1e9)
            pointer_ok = pointer_ok & torch.gather(legal, 1, fact_tokens)
        pointer_logits = pointer_logits.masked_fill(~pointer_ok, -1e9)
        probs = torch.softmax(torch.cat([vocab_logits, pointer_logits], dim=1), dim=1)
        token_probs = probs[:, : self.vocab_size].scatter_add(1, fact_tokens, probs[:, self.vocab_size :])
        return torch.log(token_probs.clamp_min(1e-12))

    def forward(
        self,
        facts: torch.Tensor,
        ctx_index: torch.Tensor,
        questions: torch.Tensor,
        legal: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.answer_log_probs(self.encode_facts(facts), facts, ctx_index, questions, legal)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student (decay 0 copies the student)."""
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    if decay <= 0.0:
        torch._foreach_copy_(t_params, s_params)
    else:
        torch._foreach_lerp_(t_params, s_params, 1.0 - decay)
