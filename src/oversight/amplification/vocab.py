"""The token vocabulary every amplification task shares, so one learner architecture serves all five.

    from oversight.amplification.vocab import NAME0, int_token, name_token, detokenize
    detokenize([Q["POW"], name_token(3), int_token(5)])   # "POW ad 5"

    PAD=0  DONT_KNOW=1 ("?")  YES=2  NO=3  INF=4  CHAR_A=5 ("a")  CHAR_B=6 ("b")  WILD=7 ("*")
    question-kind tokens  Q[kind]  (POW, VAL, ARG1, ARG2, OP, SUM, DIST, NEXT, EDGE, NBR, ROOT, UVAL, PAR, DEPTH)
    ROUND ("|"), ANSWER_MARK ("=")   separators for encoding H transcripts (see ``env.encode_transcript``)
    NAME0 .. NAME0+63                 the 64 names: 2-char strings over the letters "abcdefgh"
    INT tokens for the integers INT_MIN..INT_MAX (-32..63): ``int_token(v) == INT0 + v``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------------------------
PAD, DONT_KNOW, YES, NO, INF, CHAR_A, CHAR_B, WILD = range(8)
_SPECIAL_STR = ["_", "?", "yes", "no", "inf", "a", "b", "*"]

QUESTION_KINDS: tuple[str, ...] = (
    "POW",  # permutation powering: (x, k) -> sigma^k(x); primitive when k in {0, 1}
    "VAL",  # sequential assignments: value of variable x
    "ARG1",  # sequential assignments (primitive): first operand of x, or its constant
    "ARG2",  # sequential assignments (primitive): second operand of x, or its constant
    "OP",  # sequential assignments (primitive): table lookup a o b
    "SUM",  # wildcard search: sum of f over strings matching a pattern (primitive if no wildcard)
    "DIST",  # shortest path: distance D(a, b)
    "NEXT",  # shortest path: next hop S(a, b)
    "EDGE",  # shortest path / union find (primitive): is (a, b) an edge -> YES/NO
    "NBR",  # shortest path / union find (primitive): a random (out-)neighbour of a
    "ROOT",  # union find (primitive): the given value of x if x is a root, else NO
    "UVAL",  # union find: value V(x)
    "PAR",  # union find: parent-toward-root P(x) (P(root) = root)
    "DEPTH",  # union find: depth D(x) (D(root) = 0)
)
Q0 = 8
Q: dict[str, int] = {k: Q0 + i for i, k in enumerate(QUESTION_KINDS)}
ROUND = Q0 + len(QUESTION_KINDS)  # "|": ends the subquestions of a round in an encoded transcript
ANSWER_MARK = ROUND + 1  # "=": precedes the final answer in an encoded transcript

N_NAMES = 64
NAME_LETTERS = "abcdefgh"
NAME0 = 32
NAMES: tuple[str, ...] = tuple(a + b for a in NAME_LETTERS for b in NAME_LETTERS)

INT_MIN, INT_MAX = -32, 63
INT_BASE = NAME0 + N_NAMES  # token of INT_MIN
INT0 = INT_BASE - INT_MIN  # token of the integer 0
VOCAB_SIZE = INT_BASE + (INT_MAX - INT_MIN + 1)

assert ANSWER_MARK < NAME0


def name_token(i: int | np.ndarray) -> Any:
    """Token of name number i (0..63); works elementwise on arrays."""
    return NAME0 + i


def is_name(tok: int | np.ndarray) -> Any:
    return (tok >= NAME0) & (tok < NAME0 + N_NAMES)


def name_index(tok: int | np.ndarray) -> Any:
    return tok - NAME0


def int_token(v: int | np.ndarray) -> Any:
    """Token of the integer v (INT_MIN..INT_MAX); works elementwise on arrays."""
    if isinstance(v, (int, np.integer)):
        if not INT_MIN <= v <= INT_MAX:
            raise ValueError(f"integer {v} outside the vocabulary range {INT_MIN}..{INT_MAX}")
        return INT0 + int(v)
    if np.any(np.asarray(v) < INT_MIN) or np.any(np.asarray(v) > INT_MAX):
        raise ValueError(f"integer {v} outside the vocabulary range {INT_MIN}..{INT_MAX}")
    return INT0 + v


def is_int(tok: int | np.ndarray) -> Any:
    return (tok >= INT_BASE) & (tok < VOCAB_SIZE)


def int_value(tok: int | np.ndarray) -> Any:
    return tok - INT0


def token_to_str(tok: int) -> str:
    tok = int(tok)
    if 0 <= tok < len(_SPECIAL_STR):
        return _SPECIAL_STR[tok]
    if Q0 <= tok < Q0 + len(QUESTION_KINDS):
        return QUESTION_KINDS[tok - Q0]
    if tok == ROUND:
        return "|"
    if tok == ANSWER_MARK:
        return "="
    if NAME0 <= tok < NAME0 + N_NAMES:
        return NAMES[tok - NAME0]
    if INT_BASE <= tok < VOCAB_SIZE:
        return str(tok - INT0)
    return f"<{tok}>"


def detokenize(tokens: Sequence[int] | np.ndarray, keep_pad: bool = False) -> str:
    """Space-separated readable form of a token sequence (PAD dropped unless keep_pad)."""
    return " ".join(token_to_str(t) for t in np.asarray(tokens).ravel() if keep_pad or t != PAD)


def detokenize_facts(facts: np.ndarray) -> list[str]:
    return [detokenize(f) for f in facts]


ALL_NAME_TOKENS = np.arange(NAME0, NAME0 + N_NAMES, dtype=np.int64)


def int_tokens(lo: int, hi: int) -> np.ndarray:
    """Tokens of the integers lo..hi inclusive."""
    return np.arange(int_token(lo), int_token(hi) + 1, dtype=np.int64)
