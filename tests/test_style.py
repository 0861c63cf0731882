"""The tree stays as ruff (configured in pyproject.toml) formats and lints it, and within the size limits
(modules of about 400 lines, functions of about 60, STYLE.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ["mammo", "tests", "benchmarks", "train_pipeline.py"]


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    return [exe]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    res = subprocess.run([*_ruff(), *command, *TREES], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# ----------------------------------------------------------------------------- sizes
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # without the docstring
#: Source modules allowed past MAX_MODULE_LINES, each with its reason: keep it short.
LONG_MODULES: dict[str, str] = {}
#: The trees whose modules count as source (tests are measured by function only).
SOURCE_TREES = ["mammo", "benchmarks", "train_pipeline.py"]


def _python_files(trees: list[str]) -> list[Path]:
    files = []
    for tree in trees:
        path = ROOT / tree
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def function_lengths(source: str) -> dict[str, int]:
    """``{qualified name: lines}`` of every function in ``source``, its docstring not counted."""
    import ast

    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}."
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = child.body[0]
                is_doc = isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                doc_lines = doc.end_lineno - doc.lineno + 1 if is_doc and isinstance(doc.value.value, str) else 0
                lengths[name[:-1]] = child.end_lineno - child.lineno + 1 - doc_lines
            visit(child, name)

    visit(ast.parse(source), "")
    return lengths


def test_the_size_scan_counts_functions_without_their_docstrings():
    source = 'class A:\n    def f(self):\n        """One.\n\n        Two."""\n' + "        x = 1\n" * 3
    source += "\n\ndef g():\n    def h():\n        pass\n    return h\n"
    assert function_lengths(source) == {"A.f": 4, "g": 4, "g.h": 2}


def test_no_source_module_is_over_400_lines():
    long = {}
    for path in _python_files(SOURCE_TREES):
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES and rel not in LONG_MODULES:
            long[rel] = n
    assert not long, f"split these by job (or add a reason to LONG_MODULES): {long}"


def test_no_function_is_over_60_lines():
    long = {}
    for path in _python_files(TREES):
        rel = path.relative_to(ROOT).as_posix()
        for name, n in function_lengths(path.read_text()).items():
            if n > MAX_FUNCTION_LINES:
                long[f"{rel}::{name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (docstrings not counted): {long}"
