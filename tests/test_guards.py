"""The guards, tested where they are called: each test breaks what the guard protects and expects the
caller to fail, so removing the guard's call makes it fail.

- ``load_dataset`` (w2s classification data) calls ``Splits.check_disjoint``;
- ``load_generative`` (w2s generative data) calls ``GenSplits.check_disjoint``;
- an amplify run ends with the zero-ground-truth check (``GroundTruthLabelsUsed``, a real raise).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import oversight.amplification.train as train_module
import oversight.w2s.datasets as datasets
import oversight.w2s.gen_data as gen_data
from oversight.amplification.config import AmplifyConfig
from oversight.amplification.truth import GroundTruthLabelsUsed
from oversight.w2s.splits import SplitLeakError


def _chained_rows(groups: int) -> list[dict[str, object]]:
    """Rows in which group i repeats two texts of group i - 1: cleaning would merge every group into
    one; without it, consecutive groups that land in different splits share texts (and ids)."""
    rows = []
    for i in range(groups):
        for j in (i, i - 1) if i else (i,):
            rows += [{"text": f"great film number {j}", "label": 1, "group": f"g{i}"},
                     {"text": f"dull film number {j}", "label": 0, "group": f"g{i}"}]
    return rows


def test_load_dataset_refuses_splits_that_share_texts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "leaky.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _chained_rows(60)) + "\n")
    # cleaning that no longer merges the groups of a repeated text: only check_disjoint stands in the way
    monkeypatch.setattr(datasets, "clean_examples", lambda examples, dropped=None: list(examples))
    with pytest.raises(SplitLeakError, match="leak in 'file:"):
        datasets.load_dataset(f"file:{path}", seed=0)


def test_load_dataset_accepts_the_same_rows_when_each_text_is_in_one_group(tmp_path: Path) -> None:
    """The control: the same file format and sizes without repeated texts loads."""
    path = tmp_path / "clean.jsonl"
    rows = [{"text": f"{word} film number {i}", "label": label, "group": f"g{i}"}
            for i in range(60) for word, label in (("great", 1), ("dull", 0))]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    splits = datasets.load_dataset(f"file:{path}", seed=0)
    assert all(splits.sizes().values())


def _generative_examples(groups: int, leaky: bool) -> tuple[gen_data.GenExample, ...]:
    """Two examples per group; ``leaky``: group i's second prompt is group i + 1's first."""
    out = []
    for i in range(groups):
        second = f"position {i + 1}" if leaky else f"position {i} again"
        out += [gen_data.GenExample(f"e{i}a", f"position {i}", "Nf3", f"g{i}"),
                gen_data.GenExample(f"e{i}b", second, "e4", f"g{i}")]
    return tuple(out)


@pytest.mark.parametrize("leaky", [True, False])
def test_load_generative_refuses_splits_that_share_prompts(leaky: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen_data, "_examples", lambda name: _generative_examples(80, leaky))
    if not leaky:
        assert all(gen_data.load_generative("toy-gen", seed=0).sizes().values())
        return
    with pytest.raises(SplitLeakError, match="prompts shared"):
        gen_data.load_generative("toy-gen", seed=0)


TINY = dict(task="union_find", size=8, steps=3, minutes=0, d_model=32, n_heads=2, encoder_layers=1,
            decoder_layers=1, contexts_per_step=4, questions_per_context=4, eval_every=3, val_contexts=4,
            test_contexts=4, test_questions=4, stop_at_acc=0.0, overlap_targets=False, checkpoint_every=0)


@pytest.mark.parametrize("mode", ["amplify", "supervised"])
def test_an_amplify_run_that_used_a_ground_truth_label_fails_at_its_end(
        mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that reports one non-primitive ground-truth label (as a regression in make_batch that
    labelled a question from the truth would): the amplify run raises a named error, which ``python -O``
    keeps (an ``assert`` would vanish); supervised is allowed its labels."""
    make_batch = train_module.make_batch

    def leaking(*args, **kwargs):  # type: ignore[no-untyped-def]
        batch = make_batch(*args, **kwargs)
        batch.gt_labels += 1
        return batch

    monkeypatch.setattr(train_module, "make_batch", leaking)
    cfg = AmplifyConfig(mode=mode, **TINY)  # type: ignore[arg-type]
    if mode == "supervised":
        results = train_module.train(cfg).results
        assert results["gt_labels_used"] > 0
        return
    with pytest.raises(GroundTruthLabelsUsed, match="non-primitive"):
        train_module.train(cfg)


def test_the_zero_ground_truth_check_is_no_assert_statement() -> None:
    """``python -O`` strips assert statements: the check must be an explicit raise."""
    import inspect

    source = inspect.getsource(train_module.run_results)
    assert "raise GroundTruthLabelsUsed" in source and "assert " not in source
