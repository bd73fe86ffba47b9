"""The ``oversight`` command.

    oversight datasets                      # registered datasets with sizes
    oversight models                        # the model ladder: parameters, installed or how to install
    oversight w2s run --dataset rotten_tomatoes --weak minilm-l6 --strong mpnet-base --loss xent,logconf
    oversight w2s sweep --preset demo
    oversight amplify run --task permutation_powering --mode amplify --size 8
    oversight report --out runs/report      # PNG figures + an HTML page from the results store

Errors a user can act on (unknown names, invalid config fields, missing packages) are printed as
one line; Ctrl-C keeps every finished run and the same command resumes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import typing
from collections.abc import Sequence

from oversight.errors import ConfigError, OversightError
from oversight.progress import printable
from oversight.store import DEFAULT_STORE

DESCRIPTION = (
    "Scalable-oversight experiments: train strong learners when the only supervision comes from weaker "
    "ones, and measure how much of the gap they recover. `w2s run|sweep` trains weak supervisors, "
    "weak-to-strong students and strong ceilings (performance gap recovered, PGR); `amplify run|sweep|show` "
    "runs Iterated Amplification on algorithmic tasks; every finished run goes to a SQLite results store "
    f"({DEFAULT_STORE} unless --store), which `report` turns into an HTML page or the markdown results docs "
    "and `export` into committed data; `datasets` and `models` list what the experiments can use. "
    "`oversight COMMAND --help` tells each command's flags.")

# Each family contributes its subcommands through a `register(subparsers)` function.
FAMILY_CLIS = ("oversight.w2s.cli", "oversight.amplification.cli")


def _table(rows: list[dict], columns: list[str]) -> str:
    lines = [columns] + [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _cmd_datasets(args: argparse.Namespace) -> int:
    from oversight.w2s.datasets import list_datasets
    from oversight.w2s.files import FILE_HELP
    from oversight.w2s.hub_datasets import HUB_DATASETS, MISSING

    rows = list_datasets()
    for row in rows:  # a hub dataset that is not in the local HF cache
        if not row["installed"] and row["name"] in HUB_DATASETS:
            row["installed"] = MISSING
    print(_table(rows, ["name", "size", "installed", "source", "description"]))
    print(f"\nAlso: {FILE_HELP};\nhf:NAME[:CONFIG] (Hugging Face datasets);"
          "\na local copy of a hub dataset above: hf:PATH?format=NAME. Hub datasets download with HF_HUB_OFFLINE=0;"
          "\nchess and chess-gen need the Stockfish engine (apt-get install stockfish, or make setup);"
          "\nchess-gen (generate the best move) runs decoder rungs with --mode finetune.")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from oversight.w2s.models import describe_models

    rows = describe_models()
    for r in rows:
        r["params"] = f"{r['params'] / 1e6:.1f}M" if r.get("params") else "-"
        r["installed"] = "yes" if r.get("installed") else f"no: {r.get('install_command')}"
    print(_table(rows, ["name", "kind", "params", "installed", "description"]))
    print("\nAlso: hf:ID_OR_PATH for any Hugging Face encoder (mean pooling) or decoder (last non-padding token).")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from oversight.report import write_markdown, write_markdown_from, write_report

    if args.source is not None:
        if not args.markdown:
            raise ConfigError("from", "goes with --markdown DIR: the tables of committed exports are markdown")
        try:
            written = write_markdown_from(args.source, args.markdown, args.readme)
        except OSError as err:
            raise ConfigError("markdown", f"cannot write the results docs into {args.markdown}: {err}") from None
        print("\n".join(f"written {path}" for path in written))
        return 0
    if args.markdown:
        command = f"oversight report --store {args.store} --markdown {args.markdown}"
        try:
            written = write_markdown(args.store, args.markdown, command)
        except OSError as err:  # an output folder that cannot be made or written: one line, the store untouched
            raise ConfigError("markdown", f"cannot write the results docs into {args.markdown}: {err}") from None
        print("\n".join(f"written {path}" for path in written) or f"no runs in {args.store}: nothing written")
        return 0
    index = write_report(args.store, args.out)
    print(f"report written to {index}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from oversight.export import export_store

    for path in export_store(args.store, args.out, args.name, args.subdir, hard=args.hard_predictions):
        print(f"written {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """A refused flag is one line that names it (argparse would print the whole usage first)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="oversight", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list the registered datasets").set_defaults(func=_cmd_datasets)
    sub.add_parser("models", help="list the model ladder").set_defaults(func=_cmd_models)
    report = sub.add_parser("report", help="write PNG plots and an HTML page from the results store")
    report.add_argument("--store", default=DEFAULT_STORE,
                        help=f"SQLite results store to read, never written or made (default: {DEFAULT_STORE})")
    report.add_argument("--out", default="runs/report",
                        help="folder the HTML page (index.html) and its PNG figures go to (default: runs/report)")
    report.add_argument("--markdown", default=None, metavar="DIR",
                        help="write the results docs (one markdown file per family) into DIR instead of the HTML page")
    report.add_argument("--from", dest="source", default=None, metavar="DIR",
                        help="with --markdown: rebuild the tables from the committed exports in DIR (e.g. docs/results/data)")
    report.add_argument("--readme", default=None, metavar="FILE",
                        help="with --from: rewrite FILE's results summary block from the same data (e.g. README.md)")
    report.set_defaults(func=_cmd_report)
    export = sub.add_parser("export", help="write a store's rows and test predictions as committed result data")
    export.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store to export (default {DEFAULT_STORE})")
    export.add_argument("--out", default="docs/results/data", help="folder of the exports (default docs/results/data)")
    export.add_argument("--name", required=True, help="the export's file name stem, e.g. w2s")
    export.add_argument("--subdir", default="", help="folder under the results docs its tables go to (default: none)")
    export.add_argument("--hard-predictions", action="store_true",
                        help="store test predictions as right/wrong bytes: exact for accuracy, PGR and intervals, not calibration; far smaller")
    export.set_defaults(func=_cmd_export)
    for module in FAMILY_CLIS:
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as err:  # a family still being built must not break the other
            if err.name is None or not err.name.startswith("oversight"):
                raise
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from oversight.runtime import code_commit

    code_commit()  # the commit of the code this process runs, before HEAD can move
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from installed packages, never a hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a refused flag (its one line is printed): a return code
        return int(exit_.code or 0)
    try:
        return int(args.func(args) or 0)
    except OversightError as err:
        print(f"oversight: error: {printable(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\noversight: interrupted. Finished runs are saved in the store; run the same command to resume.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
