"""The paper's NLP datasets by name: registry entries over their Hugging Face ids.

Usage::

    from oversight.w2s.datasets import load_dataset

    load_dataset("boolq")                                   # google/boolq from the local HF cache
    load_dataset("hf:/data/boolq_copy?format=boolq")        # a local copy in the dataset's own schema
    load_dataset("hf:/data/anli?format=anli_r2&split=dev_r2")  # ?split= overrides the table's splits

    HF_HUB_OFFLINE=0 oversight w2s run --dataset boolq ...  # downloads it once into the HF cache

``HUB_DATASETS`` maps each name to its Hugging Face id, config, the labelled splits that are pooled
(``load_dataset`` makes its own group-disjoint splits from them) and a formatter in
``oversight.w2s.hub_formats`` that turns a row into balanced-binary examples (multiple choice:
"question + candidate -> correct?", every candidate of a question in one group). Loading goes
through ``datasets.load_dataset``; nothing is downloaded while ``HF_HUB_OFFLINE=1`` (the CLI's
default), and a dataset that is neither in the cache nor reachable is one error line saying how to
get it. ``oversight datasets`` lists these as "needs the hub or a local copy" until the cache holds
them. A local copy is anything ``hf:PATH`` reads (a ``save_to_disk`` directory, a directory of the
dataset's parquet/json/csv files, or one such file) with ``?format=NAME``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oversight.errors import OversightError, UnknownNameError
from oversight.w2s import hub_formats as F
from oversight.w2s.files import DatasetFormatError, Example, Source, content_id

# The hub's parquet export of a dataset, for those whose main branch is still a loading script
# (which ``datasets`` >= 4 no longer runs).
PARQUET = "refs/convert/parquet"
MISSING = "needs the hub or a local copy"  # how `oversight datasets` shows one not in the cache
UNLABELLED = "without a usable label"


class HubDatasetUnavailableError(OversightError):
    """A hub dataset that is neither in the local Hugging Face cache nor downloadable now."""


@dataclass(frozen=True)
class HubDataset:
    hf_id: str
    config: str | None
    splits: tuple[str, ...]  # the labelled splits, pooled
    formatter: F.Formatter
    description: str
    revision: str | None = None

    @property
    def source(self) -> str:
        """What the listing shows and the run key records: the hub id, config and revision."""
        return (self.hf_id + (f" ({self.config})" if self.config else "")
                + (f" @{self.revision}" if self.revision else ""))


_TV = ("train", "validation")
_TVT = ("train", "validation", "test")
_ETHICS = "hendrycks/ethics"

HUB_DATASETS: dict[str, HubDataset] = {
    "hh_rlhf": HubDataset("Anthropic/hh-rlhf", None, ("train", "test"), F.chosen_rejected,
                          "Reward modelling: Anthropic HH dialogues, the chosen (preferred) vs the rejected "
                          "final answer; group = the dialogue before it"),
    "boolq": HubDataset("google/boolq", None, _TV, F.boolq,
                        "BoolQ: passage + yes/no question, answer yes (1) / no (0); group = passage"),
    "sciq": HubDataset("allenai/sciq", None, _TVT, F.sciq,
                       "SciQ: science question + candidate, correct (1) / distractor (0); group = question"),
    "cosmos_qa": HubDataset("allenai/cosmos_qa", None, _TV, F.cosmos_qa,
                            "CosmosQA: context + question + candidate, correct (1) / not (0); group = context",
                            revision=PARQUET),
    "anli_r2": HubDataset("facebook/anli", None, ("train_r2", "dev_r2", "test_r2"), F.anli,
                          "ANLI round 2: premise entails hypothesis (1) / neutral or contradiction (0); "
                          "group = premise"),
    "amazon_polarity": HubDataset("fancyzhx/amazon_polarity", None, ("test",), F.amazon_polarity,
                                  "Amazon reviews (its 400k test split; train is 3.6M), positive (1) / "
                                  "negative (0)"),
    "sst2": HubDataset("stanfordnlp/sst2", None, _TV, F.sst2, "SST-2 movie sentences, positive (1) / negative (0)"),
    "hellaswag": HubDataset("Rowan/hellaswag", None, _TV, F.hellaswag,
                            "HellaSwag: context + ending, the right one (1) / not (0); group = source video"),
    "piqa": HubDataset("ybisk/piqa", None, _TV, F.piqa,
                       "PIQA: goal + solution, the right one (1) / not (0); group = goal", revision=PARQUET),
    "quartz": HubDataset("allenai/quartz", None, _TVT, F.quartz,
                         "QuaRTz: paragraph + question + option, correct (1) / not (0); group = paragraph"),
    "openbookqa": HubDataset("allenai/openbookqa", "main", _TVT, F.openbookqa,
                             "OpenBookQA: question + option, correct (1) / not (0); group = question"),
    "social_i_qa": HubDataset("allenai/social_i_qa", None, _TV, F.social_i_qa,
                              "Social IQa: context + question + answer, correct (1) / not (0); group = context",
                              revision=PARQUET),
    "wic": HubDataset("aps/super_glue", "wic", _TV, F.wic,
                      "WiC: a word in two sentences, same meaning (1) / not (0); group = the word"),
    "cola": HubDataset("nyu-mll/glue", "cola", _TV, F.cola, "CoLA sentences, acceptable (1) / not (0)"),
    "dream": HubDataset("dataset-org/dream", None, _TVT, F.dream,
                        "DREAM: dialogue + question + option, correct (1) / not (0); group = dialogue",
                        revision=PARQUET),
    "mc_taco": HubDataset("CogComp/mc_taco", None, ("validation", "test"), F.mc_taco,
                          "MC-TACO: sentence + temporal question + candidate, plausible (1) / not (0); "
                          "group = sentence", revision=PARQUET),
    "paws": HubDataset("google-research-datasets/paws", "labeled_final", _TVT, F.paws,
                       "PAWS sentence pairs, paraphrase (1) / not (0); group = first sentence"),
    "quail": HubDataset("textmachinelab/quail", None, ("train", "validation", "challenge"), F.quail,
                        "QuAIL: text + question + option, correct (1) / not (0); group = text",
                        revision=PARQUET),
    "multirc": HubDataset("aps/super_glue", "multirc", _TV, F.multirc,
                          "MultiRC: paragraph + question + candidate, correct (1) / not (0); group = paragraph"),
    "ethics_justice": HubDataset(_ETHICS, "justice", _TVT, F.ethics_justice,
                                 "ETHICS justice: a claim of desert or fairness, reasonable (1) / not (0)"),
    "ethics_deontology": HubDataset(_ETHICS, "deontology", _TVT, F.ethics_deontology,
                                    "ETHICS deontology: scenario + excuse, reasonable (1) / not (0); "
                                    "group = scenario"),
    "ethics_virtue": HubDataset(_ETHICS, "virtue", _TVT, F.ethics_virtue,
                                "ETHICS virtue: behaviour + trait, shows it (1) / not (0); group = behaviour"),
    "ethics_utilitarianism": HubDataset(_ETHICS, "utilitarianism", _TVT, F.ethics_utilitarianism,
                                        "ETHICS utilitarianism: is A more pleasant than B, both orders "
                                        "(1 / 0); group = the pair"),
    "twitter_sentiment": HubDataset("EleutherAI/twitter-sentiment", None, ("train", "test"),
                                    F.twitter_sentiment, "Tweets, positive (1) / negative (0)"),
}


# Formats that are a schema rather than one dataset: ``hf:PATH?format=chosen_rejected`` reads any
# preference data with chosen / rejected (and optionally prompt) columns.
FORMAT_ALIASES = {"chosen_rejected": "hh_rlhf"}


def get(name: str) -> HubDataset:
    name = FORMAT_ALIASES.get(name, name)
    if name not in HUB_DATASETS:
        raise UnknownNameError("hub dataset format", name, [*HUB_DATASETS, *FORMAT_ALIASES])
    return HUB_DATASETS[name]


# ----------------------------------------------------------------------------- rows -> examples


def formatted_source(name: str, data: Any, where: str) -> Source:
    """Examples of hub dataset ``name`` from ``data`` in its schema: a ``Dataset`` (all of it) or a
    ``DatasetDict`` (the table's labelled splits that it has)."""
    entry = get(name)
    if isinstance(data, dict):
        present = [s for s in entry.splits if s in data]
        if not present:
            raise DatasetFormatError(f"{where}: none of {name}'s splits ({', '.join(entry.splits)}) is there "
                                     f"(it has {', '.join(data) or 'none'}); choose with ?split=NAME")
        rows = [row for s in present for row in data[s].to_list()]
    else:
        rows = data.to_list()
    return _examples(entry, name, rows, where)


def _examples(entry: HubDataset, name: str, rows: list[dict[str, Any]], where: str) -> Source:
    out, dropped = [], Counter()
    for n, row in enumerate(rows, 1):
        try:
            items = entry.formatter(row)
        except (KeyError, TypeError, AttributeError) as err:
            fields = ", ".join(sorted(row)) or "none"
            raise DatasetFormatError(f"{where} row {n}: not in {entry.hf_id}'s schema ({type(err).__name__}: "
                                     f"{err}; the row has {fields}); see hub_formats.{entry.formatter.__name__}"
                                     ) from None
        if not items:
            dropped[UNLABELLED] += 1
        out += [Example(content_id(text, label), text, label, f"{name}:{group}") for text, label, group in items]
    if not out:
        raise DatasetFormatError(f"{where}: no usable rows for {name} (of {len(rows)} rows)")
    return Source(where, out, len(rows), dropped)


# ----------------------------------------------------------------------------- the hub


def load_hub(name: str) -> list[Example]:
    """The examples of ``name`` through ``datasets.load_dataset`` (the local cache when offline)."""
    entry = get(name)
    import datasets as hf  # ~1 s; only when a hub dataset is loaded

    kwargs = {"revision": entry.revision} if entry.revision else {}
    try:
        data = hf.load_dataset(entry.hf_id, entry.config, **kwargs)
    except Exception as err:  # noqa: BLE001 - datasets raises many types; all mean "not available here"
        raise HubDatasetUnavailableError(unavailable_message(name, err, bool(hf.config.HF_HUB_OFFLINE))) from err
    return formatted_source(name, data, f"{entry.source} (hub)").examples


def unavailable_message(name: str, err: BaseException, offline: bool) -> str:
    """One line: what is missing, why, and the two ways to get it."""
    entry = get(name)
    cause = (str(err).strip().splitlines() or [""])[0][:200]
    state = ("is not in the local Hugging Face cache, and the hub is off (HF_HUB_OFFLINE=1)" if offline
             else f"could not be loaded from the hub ({type(err).__name__}: {cause})")
    return (f"dataset {name!r} ({entry.source} on the Hugging Face hub) {state}. Get it with "
            f"HF_HUB_OFFLINE=0 (downloads it once into the cache), or pass a local copy in its schema as "
            f"--dataset 'hf:PATH?format={name}' (a save_to_disk directory or its data files)")


def in_cache(name: str) -> bool:
    """Whether the local ``datasets`` cache holds a prepared copy (what an offline load reads)."""
    entry = get(name)
    try:
        from datasets import config
        from datasets.naming import camelcase_to_snakecase
    except ImportError:
        return False
    namespace, _, dataset = entry.hf_id.rpartition("/")
    root = Path(config.HF_DATASETS_CACHE).expanduser() / "___".join(
        filter(None, (namespace, camelcase_to_snakecase(dataset))))
    return any(root.glob(f"{entry.config or ''}*/*/*/dataset_info.json"))


def register_all(register: Callable[..., Callable[[Callable[..., list[Example]]], Any]]) -> None:
    """Add every entry to the dataset registry through ``oversight.w2s.datasets.register_dataset``."""
    for name, entry in HUB_DATASETS.items():
        register(name, description=entry.description, source=entry.source, modules=("datasets",),
                 available=functools.partial(in_cache, name))(functools.partial(load_hub, name))
