"""Formatters for the paper's NLP datasets: one row of a Hugging Face dataset -> binary examples.

Each formatter is a small pure function from a row (a dict in the dataset's own schema, written in a
comment above it) to a list of ``(text, label, group)``: label 1 or 0, and a group that keeps related
examples in one split. A row without a usable label (an unlabelled test split: -1, "", None) gives
``[]``. Multiple choice becomes "question + candidate -> correct?": one example per distinct candidate,
all with the question's group (or its passage's, when several questions share one)::

    from oversight.w2s import hub_formats as F

    F.piqa({"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Eat the lid.", "label": 0})
    # [("Goal: Open a jar\\nAnswer: Twist the lid.", 1, "g..."), ("Goal: Open a jar\\nAnswer: Eat the lid.", 0, "g...")]

Balance: multiple choice yields more wrong candidates than right ones; ``load_dataset`` balances each
split to 50/50 afterwards (``oversight.w2s.splits.balance_and_trim``). ``oversight.w2s.hub_datasets``
maps each dataset name to its Hugging Face id, splits and formatter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from oversight.w2s.files import normalize_text

Row = Mapping[str, Any]
Item = tuple[str, int, str]  # (text, label, group)
Formatter = Callable[[Row], list[Item]]


def group_of(*parts: str) -> str:
    """A short, stable group name for the text(s) that tie examples together (a question, a passage)."""
    return "g" + hashlib.sha1(normalize_text(" \x1f ".join(parts)).encode()).hexdigest()[:16]


def label01(value: Any) -> int | None:
    """1/0 from a bool, 0/1 or "0"/"1"; None for anything else (an unlabelled row: -1, "", None)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        value = value.strip()
        return int(value) if value in ("0", "1") else None
    return int(value) if isinstance(value, int) and value in (0, 1) else None


def index_of(value: Any, n: int, base: int = 0) -> int | None:
    """The correct candidate's position from an int or numeric string (``base`` 1 for "1".."n"); None if
    it is missing or out of range."""
    try:
        i = int(str(value).strip()) - base
    except ValueError:
        return None
    return i if 0 <= i < n else None


def choices(prompt: str, candidates: Sequence[str], correct: int | None, group: str) -> list[Item]:
    """Multiple choice -> "prompt + candidate": the right one labelled 1, each other distinct one 0."""
    if correct is None:
        return []
    right = str(candidates[correct]).strip()
    wrong = dict.fromkeys(str(c).strip() for c in candidates)  # distinct, in order
    return [(f"{prompt}\nAnswer: {right}", 1, group)] + [
        (f"{prompt}\nAnswer: {c}", 0, group) for c in wrong if c and c != right]


def single_text(field: str) -> Formatter:
    """A dataset that is already binary text classification: ``field`` and a 0/1 ``label``."""

    def fmt(row: Row) -> list[Item]:
        label, text = label01(row["label"]), str(row[field]).strip()
        return [] if label is None or not text else [(text, label, group_of(text))]

    return fmt


def candidate_answer(passage: str, ask: str) -> Formatter:
    """A dataset of (passage, question, one candidate answer, 0/1 label) rows; group = the passage."""

    def fmt(row: Row) -> list[Item]:
        label = label01(row["label"])
        text = f"{row[passage]}\nQuestion: {row['question']}\nCandidate answer: {row['answer']}\n{ask}"
        return [] if label is None else [(text, label, group_of(row[passage]))]

    return fmt


def _lettered(prompt: str, row: Row, group: str) -> list[Item]:
    """ARC-style choices {"text": [...], "label": ["A", ...]} with the right letter in ``answerKey``."""
    letters, texts = list(row["choices"]["label"]), list(row["choices"]["text"])
    correct = letters.index(row["answerKey"]) if row["answerKey"] in letters else None
    return choices(prompt, texts, correct, group)


# ----------------------------------------------------------------------------- one per dataset


# google/boolq: question: str, answer: bool, passage: str. Group = passage (it has several questions).
def boolq(row: Row) -> list[Item]:
    label = label01(row["answer"])
    text = f"Passage: {row['passage']}\nQuestion: {row['question']}?"
    return [] if label is None else [(text, label, group_of(row["passage"]))]


# allenai/sciq: question, correct_answer, distractor1, distractor2, distractor3, support (all str).
def sciq(row: Row) -> list[Item]:
    candidates = [row["correct_answer"], row["distractor1"], row["distractor2"], row["distractor3"]]
    return choices(f"Question: {row['question']}", candidates, 0, group_of(row["question"]))


# allenai/cosmos_qa: id, context, question, answer0..answer3 (str), label: int 0-3 (-1 unlabelled).
def cosmos_qa(row: Row) -> list[Item]:
    candidates = [row[f"answer{i}"] for i in range(4)]
    prompt = f"Context: {row['context']}\nQuestion: {row['question']}"
    return choices(prompt, candidates, index_of(row["label"], 4), group_of(row["context"]))


# facebook/anli: uid, premise, hypothesis, reason (str), label: 0 entailment / 1 neutral / 2 contradiction.
# Binary as in the public weak-to-strong code: entailment (1) vs not (0). Group = premise.
def anli(row: Row) -> list[Item]:
    if index_of(row["label"], 3) is None:
        return []
    text = f"Premise: {row['premise']}\nHypothesis: {row['hypothesis']}\nDoes the premise entail the hypothesis?"
    return [(text, int(int(row["label"]) == 0), group_of(row["premise"]))]


# fancyzhx/amazon_polarity: title, content (str), label: 0 negative / 1 positive.
def amazon_polarity(row: Row) -> list[Item]:
    return single_text("text")({"text": f"{row['title']}\n{row['content']}".strip(), "label": row["label"]})


# stanfordnlp/sst2: idx: int, sentence: str, label: 0 negative / 1 positive (-1 in test).
sst2 = single_text("sentence")
# nyu-mll/glue, config cola: sentence: str, label: 0 unacceptable / 1 acceptable (-1 in test), idx: int.
cola = single_text("sentence")
# EleutherAI/twitter-sentiment: text: str, label: 0 negative / 1 positive.
twitter_sentiment = single_text("text")
# hendrycks/ethics, config justice: scenario: str, label: 1 reasonable / 0 unreasonable.
ethics_justice = single_text("scenario")


# Rowan/hellaswag: ind, activity_label, ctx_a, ctx_b, ctx, endings: list[str] (4), source_id, split,
# split_type, label: str "0"-"3" ("" in test). Group = source_id (contexts cut from one video/article).
def hellaswag(row: Row) -> list[Item]:
    prompt = f"{row['activity_label']}: {row['ctx']}"
    group = group_of(row.get("source_id") or row["ctx"])
    return choices(prompt, row["endings"], index_of(row["label"], len(row["endings"])), group)


# ybisk/piqa: goal, sol1, sol2 (str), label: int 0/1 (-1 in test).
def piqa(row: Row) -> list[Item]:
    return choices(f"Goal: {row['goal']}", [row["sol1"], row["sol2"]], index_of(row["label"], 2),
                   group_of(row["goal"]))


# allenai/quartz: id, question, choices: {"text": [2 str], "label": ["A", "B"]}, answerKey: "A"/"B",
# para, para_id, para_anno, question_anno. Group = para (several questions per paragraph).
def quartz(row: Row) -> list[Item]:
    return _lettered(f"{row['para']}\nQuestion: {row['question']}", row, group_of(row["para"]))


# allenai/openbookqa, config main: id, question_stem, choices: {"text": [4 str], "label": ["A".."D"]},
# answerKey: "A"-"D".
def openbookqa(row: Row) -> list[Item]:
    return _lettered(f"Question: {row['question_stem']}", row, group_of(row["question_stem"]))


# allenai/social_i_qa: context, question, answerA, answerB, answerC (str), label: str "1"-"3".
def social_i_qa(row: Row) -> list[Item]:
    candidates = [row["answerA"], row["answerB"], row["answerC"]]
    prompt = f"{row['context']}\nQuestion: {row['question']}"
    return choices(prompt, candidates, index_of(row["label"], 3, base=1), group_of(row["context"]))


# aps/super_glue, config wic: word, sentence1, sentence2 (str), start1, start2, end1, end2, idx (int),
# label: 0 different / 1 same meaning (-1 in test). Group = the word.
def wic(row: Row) -> list[Item]:
    label = label01(row["label"])
    text = (f"Sentence 1: {row['sentence1']}\nSentence 2: {row['sentence2']}\n"
            f"Does \"{row['word']}\" mean the same in both sentences?")
    return [] if label is None else [(text, label, group_of(row["word"]))]


# dataset-org/dream: id, dialogue_id (str), dialogue: list[str], question: str, choice: list[str] (3),
# answer: str (one of choice). Group = the dialogue.
def dream(row: Row) -> list[Item]:
    options = list(row["choice"])
    correct = options.index(row["answer"]) if row["answer"] in options else None
    prompt = "\n".join(row["dialogue"]) + f"\nQuestion: {row['question']}"
    return choices(prompt, options, correct, group_of(*row["dialogue"]))


# CogComp/mc_taco: sentence, question, answer (str), label: 0 no / 1 yes, category: int. Already one
# candidate per row; group = sentence (all its questions and candidates).
mc_taco = candidate_answer("sentence", "Is this answer plausible?")
# aps/super_glue, config multirc: paragraph, question, answer (str), idx: {paragraph, question, answer}
# (ints, numbered per split), label: 0/1 (-1 in test). Group = the paragraph's text.
multirc = candidate_answer("paragraph", "Is this answer correct?")


# google-research-datasets/paws, config labeled_final: id: int, sentence1, sentence2 (str),
# label: 0 not / 1 paraphrase. Group = sentence1 (the source sentence of several pairs).
def paws(row: Row) -> list[Item]:
    label = label01(row["label"])
    text = f"Sentence 1: {row['sentence1']}\nSentence 2: {row['sentence2']}\nAre these sentences paraphrases?"
    return [] if label is None else [(text, label, group_of(row["sentence1"]))]


# textmachinelab/quail: id, context_id, question_id, domain, metadata: {author, title, url}, context,
# question, question_type (str), answers: list[str] (4), correct_answer_id: int. Group = the context.
def quail(row: Row) -> list[Item]:
    prompt = f"{row['context']}\nQuestion: {row['question']}"
    return choices(prompt, row["answers"], index_of(row["correct_answer_id"], len(row["answers"])),
                   group_of(row["context"]))


# hendrycks/ethics, config deontology: scenario, excuse (str), label: 1 reasonable / 0 not.
# Group = scenario (it comes with several excuses).
def ethics_deontology(row: Row) -> list[Item]:
    label = label01(row["label"])
    text = f"Scenario: {row['scenario']}\nExcuse: {row['excuse']}\nIs this excuse reasonable?"
    return [] if label is None else [(text, label, group_of(row["scenario"]))]


# hendrycks/ethics, config virtue: scenario: "SENTENCE [SEP] TRAIT", label: 1 the trait fits / 0 not.
# Group = the sentence (it is paired with five traits, one fitting).
def ethics_virtue(row: Row) -> list[Item]:
    label = label01(row["label"])
    sentence, _, trait = str(row["scenario"]).partition("[SEP]")
    text = f"{sentence.strip()}\nTrait: {trait.strip()}\nDoes the behaviour show this trait?"
    return [] if label is None or not trait.strip() else [(text, label, group_of(sentence))]


# hendrycks/ethics, config utilitarianism: baseline, less_pleasant (str); no label column: baseline
# is the more pleasant. Both orders, labelled 1 and 0, in the pair's group (balanced by construction).
def ethics_utilitarianism(row: Row) -> list[Item]:
    better, worse = str(row["baseline"]).strip(), str(row["less_pleasant"]).strip()
    if not better or not worse or better == worse:
        return []
    group, ask = group_of(better, worse), "Is A more pleasant than B?"
    return [(f"A: {better}\nB: {worse}\n{ask}", 1, group), (f"A: {worse}\nB: {better}\n{ask}", 0, group)]


# {"chosen": str, "rejected": str, "prompt"?: str}: preference data (Anthropic HH: whole transcripts,
# no prompt column; the shared beginning up to the last "Assistant:" is the prompt)
def chosen_rejected(row: Row) -> list[Item]:
    from oversight.w2s import pairs  # pairs imports files, as this module does; late keeps it light

    chosen, rejected = str(row["chosen"] or ""), str(row["rejected"] or "")
    if row.get("prompt") is not None:
        prompt = str(row["prompt"]).strip()
        chosen, rejected = chosen.strip(), rejected.strip()
    else:
        prompt, chosen, rejected = pairs.common_prompt(chosen, rejected)
    if not chosen or not rejected or chosen == rejected:
        return []
    text, label = pairs.ordered_pair(prompt, chosen, rejected)
    return [(text, label, group_of(prompt or chosen))]
