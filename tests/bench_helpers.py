"""What the benchmark scripts' tests share: ``benchmarks/`` on ``sys.path`` (the scripts import each other by name,
as they do when run from that folder), and reading the markdown tables the scripts write."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(text: str, header_start: str) -> Iterator[tuple[list[str], list[list[str]]]]:
    """Every markdown table whose header line starts with ``header_start``: its header cells and body rows."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for body in lines[i + 2:]:
                if not body.startswith("|"):
                    break
                rows.append(_cells(body))
            yield _cells(line), rows


def table(text: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """The header cells and body rows of the first such table."""
    return next(_tables(text, header_start))


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The body rows of all such tables, in order."""
    return [row for _, rows in _tables(text, header_start) for row in rows]
