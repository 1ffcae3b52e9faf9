"""docs/stigg-fidelity.md stays true: every test it cites exists, every row has a status."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "stigg-fidelity.md").read_text(encoding="utf-8")
# `tests/x.py::name`, or `::name` continuing the file named before it in the same cell.
CITATION = re.compile(r"`(tests/[\w/]+\.py)?::(\w+)(?:\[[^\]]*\])?`")


def table_rows() -> list[list[str]]:
    rows = [line for line in DOC.splitlines() if re.match(r"\| \d+ \|", line)]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_every_cited_test_exists():
    missing = []
    for row in table_rows():
        current = None
        for match in CITATION.finditer(row[-1]):
            current = match.group(1) or current
            assert current is not None, f"row {row[0]}: ::{match.group(2)} names no file"
            source = (REPO / current).read_text(encoding="utf-8")
            if not re.search(rf"^def {match.group(2)}\(", source, re.M):
                missing.append(f"{current}::{match.group(2)}")
    assert missing == []


def test_every_row_says_how_sure_we_are_and_what_tests_it():
    rows = table_rows()
    assert len(rows) >= 30
    assert [int(row[0]) for row in rows] == list(range(1, len(rows) + 1))
    for row in rows:
        assert len(row) == 6, row[0]
        assert re.search(r"\b(confirmed|assumed|unknown)\b", row[2]), row[0]
        assert CITATION.search(row[5]), row[0]
