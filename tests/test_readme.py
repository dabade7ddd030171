"""The README's architecture section names every module of the package, and every path it
names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def architecture() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("\n## Architecture")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_every_module_has_a_line():
    section = architecture()
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "nhance_batch").rglob("*.py")
                     if p.name != "__init__.py" and "__pycache__" not in p.parts)
    missing = [m for m in modules if m not in section]
    assert missing == []


def test_every_named_path_exists():
    named = set(re.findall(r"`((?:nhance_batch|bench|cluster|jobs|models)/[\w/.-]+)`",
                           architecture()))
    assert named
    assert sorted(p for p in named if not (REPO / p.rstrip("/")).exists()) == []
