"""No function in ``pipeline/``, ``agents/`` or ``models/`` over 80 lines: each reads in one sitting.

A function's length counts from its ``def`` line to its last line (decorators excluded, docstring and
nested functions included), so splitting a long function into nested closures does not pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "agents", "models")
MAX_LINES = 80


def long_functions(source: str, max_lines: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, length)`` of every function in ``source`` longer than ``max_lines``."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                length = (child.end_lineno or child.lineno) - child.lineno + 1
                if length > max_lines:
                    found.append((name, child.lineno, length))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_packages_are_found() -> None:
    # A walk over nothing would pass vacuously.
    files = {p.relative_to(ROOT).parts[0] for p in _sources()}
    assert files == set(PACKAGES)


def test_no_function_over_80_lines() -> None:
    offenders = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        for name, line, length in long_functions(path.read_text(encoding="utf-8")):
            offenders.append(f"{rel}:{line} {name} is {length} lines (at most {MAX_LINES})")
    assert not offenders, "split these into well-named pieces:\n" + "\n".join(offenders)


def _body(lines: int) -> str:
    return "".join(f"    x{i} = {i}\n" for i in range(lines))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def short():\n" + _body(79), []),
        ("def edge():\n" + _body(80), [("edge", 1, 81)]),
        ("class C:\n    def m(self):\n" + _body(81).replace("    ", "        "), [("C.m", 2, 82)]),
        (
            "async def outer():\n    def inner():\n" + _body(85).replace("    ", "        "),
            [("outer", 1, 87), ("outer.inner", 2, 86)],
        ),
        ("@decorator\ndef decorated():\n" + _body(79), []),
    ],
    ids=[
        "79-line body fits",
        "81 lines fail",
        "methods count",
        "nested and async count",
        "decorators do not",
    ],
)
def test_long_functions_measures_from_def_to_last_line(
    source: str, expected: list[tuple[str, int, int]]
) -> None:
    assert long_functions(source) == expected
