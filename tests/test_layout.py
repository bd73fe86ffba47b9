"""The code's layout rules, checked on the source: which module may import which, and module sizes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "oversight"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_tasks_import_env_and_env_never_imports_tasks() -> None:
    assert not any(name.startswith("oversight.amplification.tasks") for name in imports_of(SRC / "amplification/env.py"))
    for task in (SRC / "amplification/tasks").glob("[!_]*.py"):
        assert "oversight.amplification.env" in imports_of(task)


@pytest.mark.parametrize("report", ["amplification/report.py", "amplification/results.py", "w2s/report.py"])
def test_reports_read_configs_and_evaluation_never_the_trainer(report: str) -> None:
    imported = imports_of(SRC / report)
    assert not any(name.startswith(("oversight.amplification.train", "oversight.w2s.train",
                                    "oversight.w2s.pipeline")) for name in imported)


@pytest.mark.parametrize("module", sorted(p.name for p in SRC.glob("*.py") if p.name not in ("cli.py", "report.py")))
def test_shared_code_names_no_family(module: str) -> None:
    """Shared infrastructure imports neither family; cli.py and report.py find them by module name."""
    imported = imports_of(SRC / module)
    assert not any(name.startswith(("oversight.w2s", "oversight.amplification")) for name in imported)
    text = (SRC / module).read_text()
    for field in ("weak_acc", "ceiling", "hprime", "expert_calls", "curriculum"):
        assert field not in text, f"{module} names the family field {field!r}"


def test_no_module_is_far_over_500_lines() -> None:
    sizes = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 550} == {}
