"""Chess puzzles from Stockfish: determinism, labels a deeper search agrees with, grouping, caching,
and the one-line error when the engine is missing. Small counts and low depths: a few seconds."""

from __future__ import annotations

import functools
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

pytest.importorskip("chess")

import chess  # noqa: E402
import chess.engine  # noqa: E402

from oversight.w2s import chess_puzzles as C  # noqa: E402
from oversight.w2s import datasets as D  # noqa: E402

needs_engine = pytest.mark.skipif(not C.engine_found(), reason=f"Stockfish not installed ({C.INSTALL})")
COUNT, DEPTH = 60, 6  # enough positions for four non-empty splits


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:  # the registry's loader reads the cache dir from the env
        path = tmp_path_factory.mktemp("chess")
        mp.setenv(C.CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def puzzles(cache_dir: Path) -> list[C.Puzzle]:
    return C.generate_puzzles(seed=0, count=COUNT, depth=DEPTH, workers=1)


@needs_engine
def test_deterministic_per_seed_whatever_the_engine_count(puzzles: list[C.Puzzle], tmp_path: Path) -> None:
    again = C.generate_puzzles(seed=0, count=20, depth=DEPTH, workers=2, cache_dir=tmp_path / "a")
    assert again == puzzles[:20]  # fresh cache, two engines: the same puzzles (a smaller count: a prefix)
    other = C.generate_puzzles(seed=1, count=20, depth=DEPTH, workers=1, cache_dir=tmp_path / "b")
    assert {p.fen for p in other}.isdisjoint(p.fen for p in puzzles[:20])


@needs_engine
def test_puzzles_are_legal_unique_and_clear(puzzles: list[C.Puzzle]) -> None:
    assert len(puzzles) == COUNT and len({p.fen for p in puzzles}) == COUNT
    for p in puzzles:
        board = chess.Board()
        for move in p.moves.split():
            board.push_uci(move)
        assert board.fen() == p.fen
        assert p.best != p.second and {p.best, p.second} <= {m.uci() for m in board.legal_moves}
        assert p.best_cp - p.second_cp >= C.GAP_CP


@needs_engine
def test_best_move_agrees_with_a_deeper_search(puzzles: list[C.Puzzle]) -> None:
    deeper = chess.engine.Limit(depth=DEPTH + 4)
    engine = C._start(C.engine_path())
    try:
        for p in puzzles[:10]:
            board = chess.Board(p.fen)
            top = engine.analyse(board, deeper, game=object())
            if top["pv"][0].uci() == p.best:
                continue
            labelled = engine.analyse(board, deeper, root_moves=[chess.Move.from_uci(p.best)], game=object())
            gap = (top["score"].pov(board.turn).score(mate_score=C.MATE_CP)
                   - labelled["score"].pov(board.turn).score(mate_score=C.MATE_CP))
            assert gap < C.GAP_CP, (p, top, labelled)
    finally:
        engine.quit()


@needs_engine
def test_examples_are_balanced_pairs_per_position(puzzles: list[C.Puzzle]) -> None:
    examples = C.puzzle_examples(puzzles)
    assert len(examples) == 2 * COUNT and Counter(e.label for e in examples) == {0: COUNT, 1: COUNT}
    by_group = defaultdict(list)
    for e in examples:
        by_group[e.group].append(e.label)
    assert len(by_group) == COUNT and all(sorted(labels) == [0, 1] for labels in by_group.values())
    assert len({e.text for e in examples}) == len(examples)
    first = examples[0].text
    assert puzzles[0].fen in first and " to move." in first and f"({puzzles[0].best})" in first


@needs_engine
def test_both_candidates_of_a_position_land_in_one_split(puzzles: list[C.Puzzle]) -> None:
    name = "chess_small_for_test"
    spec = D.DATASETS.get("chess")
    D.register_dataset(name, description="test", source=spec.source, modules=spec.modules,
                       available=spec.available)(functools.partial(C.load_chess, count=COUNT, depth=DEPTH))
    try:
        for seed in (0, 1):
            splits = D.load_dataset(name, seed=seed)
            splits.check_disjoint()
            split_of = defaultdict(set)
            for s, xs in splits.as_dict().items():
                assert xs and 2 * sum(e.label for e in xs) == len(xs)
                for e in xs:
                    split_of[e.group].add(s)
            assert all(len(s) == 1 for s in split_of.values())
            assert sum(splits.sizes().values()) == 2 * COUNT  # nothing lost: each group is a balanced pair
    finally:
        D.DATASETS._items.pop(name)
        D._builtin.cache_clear()
        D._parsed.cache_clear()


@needs_engine
def test_cache_avoids_a_second_engine_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    starts = []
    real = chess.engine.SimpleEngine.popen_uci

    def spy(*args, **kwargs):
        starts.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(chess.engine.SimpleEngine, "popen_uci", spy)
    first = C.generate_puzzles(seed=3, count=6, depth=4, workers=1, cache_dir=tmp_path)
    assert len(starts) == 1
    files = list(tmp_path.glob("puzzles-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["params"]["engine"].startswith("Stockfish")
    assert C.generate_puzzles(seed=3, count=6, depth=4, workers=1, cache_dir=tmp_path) == first
    assert len(starts) == 1  # read from the file
    files[0].write_text("{garbled")  # a damaged cache file is generated again
    assert C.generate_puzzles(seed=3, count=6, depth=4, workers=1, cache_dir=tmp_path) == first
    assert len(starts) == 2
    C.generate_puzzles(seed=3, count=6, depth=5, workers=1, cache_dir=tmp_path)  # other parameters
    assert len(starts) == 3 and len(list(tmp_path.glob("puzzles-*.json"))) == 2


def test_missing_engine_is_one_line_naming_the_install_command(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(C.ENGINE_ENV, raising=False)
    monkeypatch.setattr(C.shutil, "which", lambda name: None)
    monkeypatch.setattr(C, "DEBIAN_PATH", str(tmp_path / "no-stockfish"))
    assert not C.engine_found() and not D.DATASETS.get("chess").installed()
    with pytest.raises(C.EngineNotFoundError) as info:
        C.load_chess(count=4, depth=2)
    message = str(info.value)
    assert "\n" not in message and "apt-get install stockfish" in message and "make setup" in message
    monkeypatch.setenv(C.ENGINE_ENV, str(tmp_path / "sf"))  # an explicit path that is not there
    with pytest.raises(C.EngineNotFoundError, match=f"{C.ENGINE_ENV}=.*apt-get install stockfish"):
        C.generate_puzzles(count=4, depth=2, cache_dir=tmp_path)


def test_registered() -> None:
    spec = D.DATASETS.get("chess")
    assert spec.source == "chess==1.11.2" and spec.modules == ("chess",)
    assert spec.loader is C.load_chess
