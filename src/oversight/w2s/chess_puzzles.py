"""Chess puzzles generated offline with Stockfish, and the ``chess`` weak-to-strong dataset.

Usage::

    from oversight.w2s.chess_puzzles import generate_puzzles, load_chess
    from oversight.w2s.datasets import load_dataset

    puzzles = generate_puzzles(seed=0, count=200)   # list[Puzzle]: fen, best, second (UCI), scores
    load_chess(count=200)                           # list[Example]: best move (1) vs second best (0)
    load_dataset("chess", seed=0)                   # the registered dataset: DEFAULT_COUNT positions
    load_chess_gen(count=200)                       # list[GenExample]: move_prompt(fen) -> best move in SAN
    parse_move(fen, " Nxe5+ and")                   # "Nxe5" as the board writes it, or None if not legal

    OVERSIGHT_STOCKFISH=/opt/stockfish/sf oversight datasets   # another engine binary
    python benchmarks/chess_speed.py                           # positions/s

The engine is Debian's ``stockfish`` (``apt-get install stockfish``, done by ``make setup``), found at
``$OVERSIGHT_STOCKFISH``, else ``stockfish`` on PATH, else ``/usr/games/stockfish`` (where Debian puts
it); a missing engine is one :class:`EngineNotFoundError` line naming the install command. It is
driven by python-chess (PyPI ``chess``).

How a puzzle is made
--------------------
Candidate ``i`` of seed ``s`` is the start position after MIN_PLIES..MAX_PLIES uniformly random legal
moves, drawn from ``random.Random("oversight-chess:s:i")`` (candidates that end the game, repeat an
earlier candidate's position, or leave one legal move are skipped). Stockfish analyses it at a fixed
depth with ``multipv=2`` (one thread, HASH_MB of hash, ``ucinewgame`` before every position, so each
result depends on the position alone and any number of engine processes give the same puzzles). The
candidate is kept when the best move's score beats the second best's by at least ``gap_cp``
centipawns (GAP_CP = 150 by default). The puzzles are the first ``count`` kept candidates in index
order: deterministic per seed, and a smaller count's puzzles are a prefix of a larger one's.

Why 150 cp at depth 8: on 300 random-play candidates, a 50 cp gap kept 167 positions whose depth-12
best move differed from the depth-8 one in 19 (in 8 of them the labelled "second best" was in fact
better); at 150 cp, 78 of 79 agreed and the one that differed still ranked the labelled best above
the second best. About a quarter of the candidates clear 150 cp. Mate scores count as
±(MATE_CP - moves to mate) for the side to move: mate in 2 against mate in 5 is a 3 cp gap (both win,
not a puzzle); a mate against a non-mate, or the one move that escapes mate, clears any threshold.

Generated puzzles are cached as one JSON file per content hash of the parameters (seed, count, depth,
gap, plies, hash size, engine version, format), written atomically under ``$OVERSIGHT_CHESS_CACHE``,
else ``$OVERSIGHT_CACHE/chess`` (default ``~/.cache/oversight/chess``): a second call reads the file
and starts no engine (it only asks the binary its version, which is part of the key).

The ``chess`` dataset (classification, any rung): text = the FEN, the side to move spelled out and a
candidate move in SAN and UCI; label 1 for the engine's best move, 0 for its second best; both
candidates of a position share its group (the FEN without move counters), so they stay in one split.

The ``chess-gen`` dataset (generative, decoder rungs; run by ``oversight.w2s.generative``): the
prompt is the FEN, the side to move spelled out and the legal moves in SAN (sorted, so their order
says nothing of the engine's choice), ending ``Best move:``; the target is the engine's best move in
SAN; a generation's answer is its first token read as a legal move (:func:`parse_move`). Group = the
position, as in ``chess``. GEN_COUNT positions by default, fewer than ``chess`` so that a three-rung
decoder run fits a CPU. Why list the legal moves: without them a small decoder must learn move
syntax and legality from the FEN alone before it can learn which move is good, and at a few hundred
training positions nearly all of its moves are illegal, so every rung scores about 0 and there is no
gap to recover; with them the answer space is explicit (copying a listed move is easy for a
transformer), chance is one in the number of legal moves (about 1/30), and rungs differ in how well
they pick among legal moves, which is the question. Measured before any finetuning, SmolLM2-135M
answered 56 of 64 test positions with a legal move given the list, 0 of 64 from the FEN alone.
The list costs tokens: prompts are 80-225 SmolLM2 tokens (mean 161) with it. ``move_prompt(fen,
legal_moves=False)`` gives the FEN-only prompt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import queue
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from oversight.errors import ConfigError, OversightError
from oversight.progress import log
from oversight.store import atomic_write_text
from oversight.w2s._convert import _file_lock, cache_root
from oversight.w2s.files import Example, content_id
from oversight.w2s.gen_data import GenExample

CHESS_REQUIREMENT = "chess==1.11.2"  # python-chess, as pinned in pyproject.toml
INSTALL = "apt-get install stockfish (or make setup)"
ENGINE_ENV, CACHE_ENV = "OVERSIGHT_STOCKFISH", "OVERSIGHT_CHESS_CACHE"
DEBIAN_PATH = "/usr/games/stockfish"  # Debian's stockfish package; /usr/games is often not on PATH

DEFAULT_SEED, DEFAULT_COUNT, DEFAULT_DEPTH = 0, 1200, 8  # the registered dataset: 2,400 examples
GEN_COUNT = 600  # chess-gen positions: a weak, a middle and a strong decoder finetune on a CPU in minutes
GAP_CP = 150  # best must beat second best by this many centipawns (module docstring: why)
MATE_CP = 10_000  # a mate in n scores MATE_CP - n (python-chess's mate_score)
MIN_PLIES, MAX_PLIES = 8, 40  # random moves from the start position
HASH_MB = 16
BATCH = 32  # candidates per round of analysis (the result does not depend on it)
MAX_TRIES = 40  # candidates per wanted puzzle before giving up (about 4 are needed)
FORMAT = 1  # bump when the generator changes: a new cache key instead of stale puzzles


class EngineNotFoundError(OversightError):
    """The Stockfish binary is missing or does not run; the message names the install command."""


@dataclass(frozen=True)
class Puzzle:
    index: int  # the candidate it came from
    moves: str  # the random game from the start position, UCI moves joined by spaces
    fen: str
    best: str  # UCI
    second: str  # UCI
    best_cp: int  # scores for the side to move, mates as ±(MATE_CP - n)
    second_cp: int


# ----------------------------------------------------------------------------- the engine


def engine_path() -> str:
    """``$OVERSIGHT_STOCKFISH``, else ``stockfish`` on PATH, else Debian's /usr/games/stockfish."""
    explicit = os.environ.get(ENGINE_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise EngineNotFoundError(f"{ENGINE_ENV}={explicit} is not an executable Stockfish; unset it "
                                      f"or install the engine with: {INSTALL}")
        return explicit
    found = shutil.which("stockfish") or (DEBIAN_PATH if os.access(DEBIAN_PATH, os.X_OK) else None)
    if found is None:
        raise EngineNotFoundError(f"the Stockfish chess engine is not installed (not on PATH, not at "
                                  f"{DEBIAN_PATH}, {ENGINE_ENV} unset); install it with: {INSTALL}")
    return found


def engine_found() -> bool:
    try:
        engine_path()
    except EngineNotFoundError:
        return False
    return True


def engine_version(path: str | None = None) -> str:
    """The engine's name and version from its banner, e.g. ``Stockfish 15.1`` (part of the cache key)."""
    path = path or engine_path()
    stat = os.stat(path)
    return _banner(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _banner(path: str, size: int, mtime_ns: int) -> str:
    try:
        out = subprocess.run([path], input="quit\n", capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise EngineNotFoundError(f"{path} does not run ({type(err).__name__}: {err}); reinstall the "
                                  f"engine with: {INSTALL}") from None
    first = (out.strip().splitlines() or [""])[0]
    return first.split(" by ")[0].strip() or f"unknown engine ({size} bytes)"


def _start(path: str) -> Any:
    import chess.engine

    try:
        engine = chess.engine.SimpleEngine.popen_uci(path)
    except (OSError, chess.engine.EngineError) as err:
        raise EngineNotFoundError(f"{path} did not start as a UCI engine ({type(err).__name__}: {err}); "
                                  f"install Stockfish with: {INSTALL}") from None
    engine.configure({"Threads": 1, "Hash": HASH_MB})
    return engine


class _EnginePool:
    """``size`` engine processes behind a thread pool; each task borrows one engine."""

    def __init__(self, path: str, size: int) -> None:
        self.engines: list[Any] = []
        self.free: queue.Queue[Any] = queue.Queue()
        self.executor = ThreadPoolExecutor(max_workers=size)
        try:
            for _ in range(size):
                self.engines.append(_start(path))
                self.free.put(self.engines[-1])
        except BaseException:
            self.close()
            raise

    def map(self, fn: Callable[[Any, Any], Any], items: Sequence[Any]) -> list[Any]:
        def run(item: Any) -> Any:
            engine = self.free.get()
            try:
                return fn(engine, item)
            finally:
                self.free.put(engine)

        return list(self.executor.map(run, items))

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        for engine in self.engines:
            engine.quit()


# ----------------------------------------------------------------------------- generation


def generate_puzzles(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT, depth: int = DEFAULT_DEPTH,
                     gap_cp: int = GAP_CP, *, workers: int | None = None,
                     cache_dir: str | Path | None = None) -> list[Puzzle]:
    """The first ``count`` puzzles of ``seed`` (module docstring), from the cache or the engine.

    ``workers``: engine processes (default: up to 2, one per core); the puzzles do not depend on it.
    """
    for field, value in (("count", count), ("depth", depth), ("gap_cp", gap_cp)):
        if value < 1:
            raise ConfigError(field, f"must be at least 1, got {value}")
    path = engine_path()
    params = {"format": FORMAT, "seed": seed, "count": count, "depth": depth, "gap_cp": gap_cp,
              "plies": [MIN_PLIES, MAX_PLIES], "hash_mb": HASH_MB, "mate_cp": MATE_CP,
              "engine": engine_version(path)}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:20]
    root = Path(cache_dir) if cache_dir is not None else puzzle_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    file = root / f"puzzles-{key}.json"
    with _file_lock(root / f".puzzles-{key}.lock"):  # concurrent first uses generate once
        cached = _read(file, params)
        if cached is not None:
            return cached
        workers = workers or min(2, os.cpu_count() or 1)
        log(f"chess: generating {count} puzzles (seed {seed}, depth {depth}, gap >= {gap_cp} cp, "
            f"{params['engine']}, {workers} engine process(es)) into {file}")
        start = time.perf_counter()
        with _pool(path, workers) as pool:
            puzzles = _search(seed, count, depth, gap_cp, pool)
        seconds = time.perf_counter() - start
        log(f"chess: {count} puzzles from {puzzles[-1].index + 1 if puzzles else 0} candidates in "
            f"{seconds:.0f} s ({count / max(seconds, 1e-9):.1f} puzzles/s)")
        atomic_write_text(file, json.dumps({"params": params, "puzzles": [asdict(p) for p in puzzles]}))
    return puzzles


def puzzle_cache_dir() -> Path:
    """``$OVERSIGHT_CHESS_CACHE``, else ``$OVERSIGHT_CACHE/chess`` (default ``~/.cache/oversight/chess``)."""
    explicit = os.environ.get(CACHE_ENV)
    return Path(explicit).expanduser() if explicit else cache_root() / "chess"


def _read(file: Path, params: dict[str, Any]) -> list[Puzzle] | None:
    """The cached puzzles, or None when the file is missing, damaged or made for other parameters."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if data["params"] != params:
            return None
        return [Puzzle(**p) for p in data["puzzles"]]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        log(f"chess: {file} is unreadable ({type(err).__name__}); generating it again")
        return None


@contextmanager
def _pool(path: str, workers: int) -> Iterator[_EnginePool]:
    pool = _EnginePool(path, workers)
    try:
        yield pool
    finally:
        pool.close()


def _search(seed: int, count: int, depth: int, gap_cp: int, pool: _EnginePool) -> list[Puzzle]:
    kept: list[Puzzle] = []
    seen: set[str] = set()
    index = 0
    while len(kept) < count:
        if index >= count * MAX_TRIES + BATCH:
            raise OversightError(f"chess: only {len(kept)} of {count} random positions in {index} clear a "
                                 f"{gap_cp} cp gap at depth {depth}; lower gap_cp")
        batch = []
        for i in range(index, index + BATCH):
            board = candidate(seed, i)
            if board is not None and board.epd() not in seen:
                seen.add(board.epd())
                batch.append((i, board))
        index += BATCH
        lines = pool.map(functools.partial(_analyse, depth=depth), [board for _, board in batch])
        for (i, board), pair in zip(batch, lines, strict=True):
            if pair is not None and pair[0][1] - pair[1][1] >= gap_cp and len(kept) < count:
                (best, best_cp), (second, second_cp) = pair
                kept.append(Puzzle(i, " ".join(m.uci() for m in board.move_stack), board.fen(), best,
                                   second, best_cp, second_cp))
    return kept


def candidate(seed: int, index: int) -> Any:
    """The board of candidate ``index`` (random play from the start), or None if it is skipped."""
    import chess

    rng = random.Random(f"oversight-chess:{seed}:{index}")
    board = chess.Board()
    for _ in range(rng.randint(MIN_PLIES, MAX_PLIES)):
        board.push(rng.choice(sorted(board.legal_moves, key=chess.Move.uci)))
        if board.is_game_over():
            return None
    return board if board.legal_moves.count() >= 2 else None


def _analyse(engine: Any, board: Any, depth: int) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """((best UCI, score), (second UCI, score)) at ``depth``, scores for the side to move."""
    import chess.engine

    # A new ``game`` object makes python-chess send ucinewgame: the hash starts empty every time.
    infos = engine.analyse(board, chess.engine.Limit(depth=depth), multipv=2, game=object())
    lines = [(info["pv"][0].uci(), info["score"].pov(board.turn).score(mate_score=MATE_CP))
             for info in infos if info.get("pv") and "score" in info]
    return (lines[0], lines[1]) if len(lines) >= 2 else None


# ----------------------------------------------------------------------------- the dataset


def _position(fen: str) -> tuple[Any, str]:
    """The board of ``fen`` and the text both datasets start with: the FEN and the side to move."""
    import chess

    board = chess.Board(fen)
    side = "White" if board.turn == chess.WHITE else "Black"
    return board, f"Chess position (FEN): {fen}\n{side} to move."


def position_text(fen: str, move: str) -> str:
    """The example text: FEN, side to move, and the candidate move in SAN and UCI."""
    import chess

    board, head = _position(fen)
    return f"{head}\nCandidate move: {board.san(chess.Move.from_uci(move))} ({move})"


def move_prompt(fen: str, legal_moves: bool = True) -> str:
    """The chess-gen prompt: FEN, side to move, the legal moves in sorted SAN (unless
    ``legal_moves`` is False), then ``Best move:``. A function of the position alone."""
    board, head = _position(fen)
    legal = f"\nLegal moves: {' '.join(sorted(board.san(m) for m in board.legal_moves))}" if legal_moves else ""
    return f"{head}{legal}\nBest move:"


def parse_move(fen: str, generated: str) -> str | None:
    """The move a generation names: its first whitespace-separated token (trailing ``!?.,;``
    dropped), read as SAN or UCI on the board of ``fen``, in canonical SAN (``Nxe5+``); None when
    that token is not a legal move."""
    import chess

    token = (generated.split() or [""])[0].rstrip("!?.,;")
    if not token:
        return None
    board = chess.Board(fen)
    try:
        return board.san(board.parse_san(token))
    except ValueError:  # python-chess's invalid, illegal and ambiguous moves are ValueErrors
        return None


def puzzle_examples(puzzles: Sequence[Puzzle]) -> list[Example]:
    """Two examples per puzzle, best move (1) and second best (0), grouped by the position."""
    out = []
    for p in puzzles:
        for move, label in ((p.best, 1), (p.second, 0)):
            text = position_text(p.fen, move)
            out.append(Example(content_id(text, label), text, label, _group(p.fen)))
    return out


def _group(fen: str) -> str:
    return "chess:" + " ".join(fen.split()[:4])  # the FEN without its move counters


def load_chess(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED, depth: int = DEFAULT_DEPTH,
               gap_cp: int = GAP_CP) -> list[Example]:
    """The ``chess`` dataset's examples (the registry calls it with the defaults)."""
    return puzzle_examples(generate_puzzles(seed, count, depth, gap_cp))


def gen_examples(puzzles: Sequence[Puzzle], legal_moves: bool = True) -> list[GenExample]:
    """One chess-gen example per puzzle: the position's prompt, the best move in SAN as the target."""
    import chess

    out = []
    for p in puzzles:
        prompt, board = move_prompt(p.fen, legal_moves), chess.Board(p.fen)
        target = board.san(chess.Move.from_uci(p.best))
        out.append(GenExample(content_id(prompt, 1), prompt, target, _group(p.fen), context=p.fen))
    return out


def load_chess_gen(count: int = GEN_COUNT, seed: int = DEFAULT_SEED, depth: int = DEFAULT_DEPTH,
                   gap_cp: int = GAP_CP) -> list[GenExample]:
    """The ``chess-gen`` dataset's examples (the registry calls it with the defaults)."""
    return gen_examples(generate_puzzles(seed, count, depth, gap_cp))


def register(register_dataset: Callable[..., Callable[[Callable[..., list[Example]]], Any]]) -> None:
    """Add ``chess`` and ``chess-gen`` to the registry through ``oversight.w2s.datasets.register_dataset``."""
    register_dataset(
        "chess",
        description=f"Chess puzzles from random play, analysed by Stockfish at depth {DEFAULT_DEPTH}: "
                    "FEN + candidate move, the engine's best (1) / second best (0), kept when best "
                    f"leads by >= {GAP_CP} cp; group = position. Needs Debian stockfish",
        source=CHESS_REQUIREMENT, modules=("chess",), available=engine_found)(load_chess)
    register_dataset(
        "chess-gen",
        description=f"Generative chess: predict Stockfish's best move (SAN) from the FEN and the legal moves, "
                    f"exact match; {GEN_COUNT} positions, as in chess; group = position. Needs Debian stockfish "
                    "and decoder rungs (smollm2-135m-8layer, smollm2-135m, gemma3-270m, hf: causal LMs)",
        source=CHESS_REQUIREMENT, modules=("chess",), available=engine_found, parse=parse_move)(load_chess_gen)
