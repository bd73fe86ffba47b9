"""Generative weak-to-strong (chess-gen): splits, prompts, move parsing, exact match, what trains on
what, and whole runs with tiny randomly initialised decoders (a character-level Llama). Stockfish
tests skip when the engine is missing."""

from __future__ import annotations

import functools
import os
import random
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("chess")

import chess  # noqa: E402

from oversight.config import make_config  # noqa: E402
from oversight.errors import ConfigError  # noqa: E402
from oversight.store import ResultsStore  # noqa: E402
from oversight.w2s import chess_puzzles as C  # noqa: E402
from oversight.w2s import datasets as D  # noqa: E402
from oversight.w2s import gen_data as G  # noqa: E402
from oversight.w2s import generative  # noqa: E402
from oversight.w2s.aggregate import aggregate  # noqa: E402
from oversight.w2s.config import W2SConfig  # noqa: E402
from oversight.w2s.pipeline import run_experiment  # noqa: E402

needs_engine = pytest.mark.skipif(not C.engine_found(), reason=f"Stockfish not installed ({C.INSTALL})")
COUNT, DEPTH = 40, 6  # positions of the small chess-gen: every split non-empty, seconds to generate
CHARS = [chr(i) for i in range(32, 127)] + ["\n"]
LETTERS = string.ascii_lowercase


# ----------------------------------------------------------------------------- tiny decoders and data

def char_tokenizer():
    """One token per character (FENs, moves, anything printable); decodes to the exact text."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{c: i + 3 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")


def save_tiny_llama(path: Path, hidden: int, layers: int = 2, seed: int = 0) -> str:
    """A randomly initialised character-level Llama saved as a local model: its ``hf:`` name."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = char_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=0, bos_token_id=None, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return f"hf:{path}"


def toy_examples(n: int = 240) -> list[G.GenExample]:
    """Prompt ``<i> <noise> <letter> =``, answer the next letter: chance is 1/26."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        letter = LETTERS[rng.randrange(26)]
        prompt = f"{i} {rng.randrange(100)} {letter} ="
        out.append(G.GenExample(f"toy{i}", prompt, LETTERS[(LETTERS.index(letter) + 1) % 26], f"g{i // 2}"))
    return out


def first_token(context: str, text: str) -> str | None:
    return (text.split() or [None])[0]


@pytest.fixture
def registered():
    """Register datasets for one test and remove them after."""
    names = []

    def add(name: str, loader, parse=first_token, **kw) -> str:
        D.register_dataset(name, description="test", source="test", modules=(), parse=parse, **kw)(loader)
        names.append(name)
        return name

    yield add
    for name in names:
        D.DATASETS._items.pop(name)
    G._examples.cache_clear()


@pytest.fixture(scope="module")
def llamas(tmp_path_factory):
    root = tmp_path_factory.mktemp("llamas")
    return {size: save_tiny_llama(root / f"llama{size}", hidden=size) for size in (16, 24, 48)}


@pytest.fixture(scope="module")
def chess_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("chess")
        mp.setenv(C.CACHE_ENV, str(path))
        yield path


def _cfg(dataset: str, llamas, **kw) -> W2SConfig:
    base = dict(dataset=dataset, weak=llamas[16], strong=llamas[48], mode="finetune", epochs=2, lr=3e-3,
                batch_size=16, bf16=False, device="cpu")
    return make_config(W2SConfig, **{**base, **kw})


# ----------------------------------------------------------------------------- data, prompts, parsing

def test_splits_keep_a_group_whole_are_deterministic_and_nested() -> None:
    examples = [G.GenExample(f"e{i}", f"prompt {i}", "a", f"g{i // 3}") for i in range(300)]
    splits = G.split_examples("toy", examples, seed=0)
    assert splits == G.split_examples("toy", list(reversed(examples)), seed=0)  # order of the input: no matter
    split_of: dict[str, set[str]] = {}
    for name, xs in splits.as_dict().items():
        for e in xs:
            split_of.setdefault(e.group, set()).add(name)
    assert all(len(s) == 1 for s in split_of.values()) and sum(splits.sizes().values()) == 300
    assert splits.sizes()["test"] == pytest.approx(60, abs=3) and splits.sizes()["validation"] == pytest.approx(30, abs=3)
    assert G.split_examples("toy", examples, seed=1) != splits
    small, large = (G.split_examples("toy", examples, 0, max_examples=m) for m in (40, 80))
    for name in small.as_dict():
        assert {e.id for e in getattr(small, name)} <= {e.id for e in getattr(large, name)}
    assert sum(small.sizes().values()) == 40


@needs_engine
def test_chess_gen_positions_stay_in_one_split(chess_cache, registered) -> None:
    name = registered("chess-gen-small", functools.partial(C.load_chess_gen, count=COUNT, depth=DEPTH),
                      parse=C.parse_move)
    splits = G.load_generative(name, seed=0)
    splits.check_disjoint()
    assert sum(splits.sizes().values()) == COUNT and splits == G.load_generative(name, seed=0)
    for e in splits.test:
        board = chess.Board(e.context)
        assert C.parse_move(e.context, e.target) == e.target and board.parse_san(e.target) in board.legal_moves
    assert D.DATASETS.get("chess-gen").parse is C.parse_move and G.is_generative("chess-gen")
    with pytest.raises(ConfigError, match="generative"):
        D.load_dataset(name)  # the classification loader refuses it, in one line


def test_prompts_never_contain_the_answer() -> None:
    board = chess.Board()
    for move in ("e2e4", "e7e5", "g1f3", "b8c6", "f1b5", "a7a6"):
        board.push_uci(move)
    fen = board.fen()
    best, second = C.Puzzle(0, "", fen, "b5c6", "e1g1", 300, 0), C.Puzzle(0, "", fen, "e1g1", "b5c6", 300, 0)
    (a,), (b,) = C.gen_examples([best]), C.gen_examples([second])
    assert a.prompt == b.prompt == C.move_prompt(fen)  # the position alone: the engine's choice is not in it
    assert (a.target, b.target) == ("Bxc6", "O-O") and a.context == fen
    legal = a.prompt.split("Legal moves: ")[1].split("\n")[0].split()
    assert legal == sorted(board.san(m) for m in board.legal_moves)  # sorted, not in the engine's order
    assert "b5c6" not in a.prompt and "300" not in a.prompt and a.prompt.endswith("Best move:")
    bare = C.move_prompt(fen, legal_moves=False)
    assert "Bxc6" not in bare and "O-O" not in bare and "White to move." in bare


def test_move_parsing() -> None:
    board = chess.Board()
    for move in ("e2e4", "d7d5", "d1h5", "g8f6"):
        board.push_uci(move)
    fen = board.fen()  # white: exd5 captures, Qxf7+ captures with check
    assert C.parse_move(fen, " exd5") == "exd5"
    assert C.parse_move(fen, "Qxf7+ and wins") == "Qxf7+"
    assert C.parse_move(fen, "Qxf7") == "Qxf7+"  # the check mark as the board writes it
    assert C.parse_move(fen, "  Qxf7+!?\n") == "Qxf7+" and C.parse_move(fen, "e4d5,") == "exd5"  # UCI too
    for garbage in ("", "   ", "Qxf8", "e6", "hello", "xx1", "Best", "O-O"):
        assert C.parse_move(fen, garbage) is None, garbage


def test_exact_match_and_agreement_on_hand_values() -> None:
    targets = ["a", "b", "c", "d"]
    assert G.exact_match(["a", "x", None, "d"], targets).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert G.exact_match(["", ""], ["", ""]).tolist() == [0.0, 0.0]  # no answer is never right
    supervisor = ["a", "x", "c", None]  # right, wrong, right, none
    student = ["a", "x", "z", None]
    out = G.agreement(student, supervisor, targets)
    assert out["agreement"] == 0.5  # a, x agree; two non-answers do not
    assert out["agreement_supervisor_right"] == 0.5 and out["agreement_supervisor_wrong"] == 0.5
    assert G.answers(["a", None]).tolist() == ["a", ""]


# ----------------------------------------------------------------------------- config checks

def test_encoder_rung_or_other_loss_for_chess_gen_is_a_config_error(tmp_path) -> None:
    from tiny_models import save_tiny_bert

    bert = f"hf:{save_tiny_bert(tmp_path / 'bert')}"
    for field, kw in (("weak", {"weak": "bow"}), ("strong", {"strong": bert}), ("chain", {"method": "bootstrap", "chain": "minilm-l6"})):
        cfg = make_config(W2SConfig, dataset="chess-gen", mode="finetune", **{"weak": "smollm2-135m", "strong": "gemma3-270m", **kw})
        with pytest.raises(ConfigError) as info:
            cfg.resolve_names()
        assert info.value.field == field and "smollm2-135m" in str(info.value) and "decoder" in str(info.value)
    with pytest.raises(ConfigError) as info:
        run_experiment(make_config(W2SConfig, dataset="chess-gen", weak="minilm-l6", strong=bert, mode="finetune"),
                       ResultsStore(tmp_path / "o.db"))
    assert info.value.field == "weak"
    for field, kw in (("loss", {"loss": "logconf", "mode": "finetune"}), ("mode", {})):
        with pytest.raises(ConfigError) as info:
            make_config(W2SConfig, dataset="chess-gen", weak="smollm2-135m", strong="gemma3-270m", **kw)
        assert info.value.field == field


# ----------------------------------------------------------------------------- what trains on what

def _spy_training(monkeypatch) -> list[tuple[str, list[str], list[str]]]:
    calls: list[tuple[str, list[str], list[str]]] = []
    real = generative.train_lm

    def spy(model, tok, texts, settings, *, completions, desc, **kw):
        calls.append((desc.split()[0], list(texts), list(completions)))
        return real(model, tok, texts, settings, completions=completions, desc=desc, **kw)

    monkeypatch.setattr(generative, "train_lm", spy)
    return calls


def test_student_learns_exactly_the_weak_generations(llamas, registered, tmp_path, monkeypatch) -> None:
    name = registered("toy-gen", toy_examples)
    calls = _spy_training(monkeypatch)
    generated: dict[str, str] = {}

    def fake_generate(model, tok, prompts, **kw):  # a letter per prompt, or nothing (no answer: no label)
        out = [random.Random(p).choice(["", *LETTERS]) for p in prompts]
        generated.update(zip(prompts, out, strict=True))
        return out

    monkeypatch.setattr(generative, "generate", fake_generate)
    run_experiment(_cfg(name, llamas, epochs=1), ResultsStore(tmp_path / "o.db"))
    splits = G.load_generative(name, seed=0)
    by_role = {role: (texts, completions) for role, texts, completions in calls}
    assert by_role["weak"] == ([e.prompt for e in splits.weak_train], [" " + e.target for e in splits.weak_train])
    assert by_role["ceiling"] == ([e.prompt for e in splits.student_train], [" " + e.target for e in splits.student_train])
    weak = [(e.prompt, " " + generated[e.prompt]) for e in splits.student_train
            if generated[e.prompt]]  # the prompts whose generation named an answer
    assert 0 < len(weak) < len(splits.student_train)
    assert list(zip(*by_role["w2s"], strict=True)) == weak


def test_test_split_never_trains_or_selects(llamas, registered, tmp_path, monkeypatch) -> None:
    name = registered("toy-gen", toy_examples)
    calls = _spy_training(monkeypatch)
    cfg = _cfg(name, llamas, epochs=2)
    first = run_experiment(cfg, ResultsStore(tmp_path / "a.db"))
    test = {e.prompt for e in G.load_generative(name, seed=0).test}
    assert calls and all(not set(texts) & test for _, texts, _ in calls)
    # test targets changed: every run selects the same step and answers the same; only the scores move
    real = G.load_generative

    def scrambled(*args, **kw):
        splits = real(*args, **kw)
        splits.test = [G.GenExample(e.id, e.prompt, "zz", e.group) for e in splits.test]
        return splits

    monkeypatch.setattr(generative, "load_generative", scrambled)
    second = run_experiment(cfg, ResultsStore(tmp_path / "b.db"))
    assert second["w2s_acc"] == second["weak_acc"] == second["ceiling_acc"] == 0.0
    stores = [ResultsStore(tmp_path / f"{s}.db") for s in "ab"]
    for role in ("weak", "ceiling", "w2s"):
        a, b = (store.get(row["run_keys"][role])["results"] for store, row in zip(stores, (first, second), strict=True))
        assert a["selected_step"] == b["selected_step"]
        assert [p["val_score"] for p in a["curve"]] == [p["val_score"] for p in b["curve"]]


def test_genft_reads_the_training_prompts_and_never_an_answer(llamas, registered, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path / "cache"))  # the adapted model is built here
    name = registered("toy-gen", toy_examples)
    corpora: list[list[str]] = []
    real = generative.genft.adapt

    def spy(spec, texts, settings, device):
        corpora.append(list(texts))
        return real(spec, texts, settings, device=device)

    monkeypatch.setattr(generative.genft, "adapt", spy)
    out = run_experiment(_cfg(name, llamas, epochs=1, method="genft"), ResultsStore(tmp_path / "o.db"))
    splits = G.load_generative(name, seed=0)
    assert corpora == [[e.prompt for e in splits.weak_train + splits.student_train]]
    store = ResultsStore(tmp_path / "o.db")
    assert "+genft-" in store.get(out["run_keys"]["w2s"])["config"]["model"]
    assert store.get(out["run_keys"]["weak"])["config"]["model"] == llamas[16]


# ----------------------------------------------------------------------------- whole runs

def test_tiny_decoder_learns_a_toy_generative_task(llamas, registered, tmp_path) -> None:
    name = registered("toy-gen", toy_examples)
    cfg = _cfg(name, llamas, weak=llamas[24], epochs=30, select="last")
    out = run_experiment(cfg, ResultsStore(tmp_path / "o.db"))
    assert out["task"] == "generate" and out["ceiling_acc"] > 0.3, out  # chance: 1/26


@needs_engine
def test_chess_gen_end_to_end_with_a_bootstrap_chain(chess_cache, registered, llamas, tmp_path) -> None:
    name = registered("chess-gen-small", functools.partial(C.load_chess_gen, count=COUNT, depth=DEPTH),
                      parse=C.parse_move)
    store = ResultsStore(tmp_path / "o.db")
    cfg = _cfg(name, llamas, method="bootstrap", chain=llamas[24], epochs=1)
    cfg.resolve_names()
    out = run_experiment(cfg, store)
    assert out["task"] == "generate" and set(out["run_keys"]) == {"weak", "ceiling", "link1", "w2s"}
    assert out["weak_auroc"] is None and 0.0 <= out["w2s_acc"] <= 1.0 and out["split_sizes"]["test"] > 0
    assert len(out["chain"]) == 1 and 0.0 <= out["label_coverage"] <= 1.0
    assert run_experiment(cfg, store) == out  # finished: fetched, not redone
    row = aggregate([cfg], store, n_boot=50)
    assert row["task"] == "generate" and row["w2s_acc"] == out["w2s_acc"] and row["w2s_ece"] is None
    assert row["weak_brier"] is None and "pgr_ci_low" in row
    from oversight.w2s.report import collect, pgr_table_html
    from oversight.w2s.tables import markdown

    assert name in markdown(store) and name in pgr_table_html(collect(store))
