"""docs/RESULTS.md: every table of numbers names the command that makes it and the machine.

A results page is only worth what a reader can regenerate. Each Markdown table with a
number in it must sit in a section (the nearest heading above it) that also shows a command:
a fenced ``bash`` block, or an inline command in backticks (``flexiast ...``, ``python ...``,
``pytest ...``, ``bash ...``). The section, or one of the sections it belongs to, must name the
machine ("Machine: ..." with its CPU kind, or the device run on).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md"
COMMAND = re.compile(r"```bash\n|`(flexiast|python|pytest|bash) [^`]+`")
MACHINE = re.compile(r"\bMachine\b|\bmachine:", re.IGNORECASE)
NUMBER = re.compile(r"\|[^|\n]*\d\.\d")


def _sections(text: str) -> list[dict]:
    """Every heading's section: its level, title, own text (up to the next heading of any
    level) and the titles of the sections it is nested in."""
    out, stack, lines, fenced = [], [], [], False
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        lines.append(" " + line if fenced and line.startswith("#") else line)  # a shell comment, not a heading
    parts = re.split(r"(?m)^(#{1,4}) (.+)$", "\n".join(lines))
    for level, title, body in zip(parts[1::3], parts[2::3], parts[3::3]):
        depth = len(level)
        stack = [s for s in stack if s["depth"] < depth]
        section = {"depth": depth, "title": title, "body": body, "parents": list(stack)}
        out.append(section)
        stack.append(section)
    return out


def _tables(body: str) -> list[str]:
    tables, current = [], []
    for line in body.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append("\n".join(current))
            current = []
    return [t for t in tables if NUMBER.search(t)]


SECTIONS = [s for s in _sections(RESULTS.read_text()) if _tables(s["body"])]


def test_the_check_finds_tables():
    """The parser sees the page's tables (it would pass vacuously if it saw none)."""
    assert len(SECTIONS) >= 10
    assert any("Coarse-to-fine" in s["title"] for s in SECTIONS)


@pytest.mark.parametrize("section", SECTIONS, ids=[s["title"][:60] for s in SECTIONS])
def test_every_table_names_its_command_and_machine(section):
    assert COMMAND.search(section["body"]), f"section {section['title']!r} has a table but no command beside it"
    where = [section] + section["parents"]
    assert any(MACHINE.search(s["body"]) for s in where), f"section {section['title']!r} names no machine"


def test_the_check_fails_a_table_without_command_or_machine():
    text = ("## A\n\nMachine: a CPU.\n\n### B\n\n| x | y |\n|---|---|\n| a | 0.5 |\n\n"
            "### C\n\n```bash\n# a comment, not a heading\nflexiast evaluate RUN\n```\n\n| x |\n|---|\n| 1.5 |\n\n"
            "## D\n\n`python scripts/x.py`\n\n| x |\n|---|\n| 2.5 |\n")
    found = {s["title"]: s for s in _sections(text) if _tables(s["body"])}
    assert set(found) == {"B", "C", "D"}
    assert not COMMAND.search(found["B"]["body"]) and COMMAND.search(found["C"]["body"])
    assert any(MACHINE.search(s["body"]) for s in [found["C"]] + found["C"]["parents"])
    assert not any(MACHINE.search(s["body"]) for s in [found["D"]] + found["D"]["parents"])
