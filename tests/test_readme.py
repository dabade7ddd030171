"""The README and the docs site agree with the code: the architecture page names every module
of the package and every path it names exists; the README's command table lists every command;
the options sections name every option of `run`, `resume` and `plan`, and the pages every
option of every command; every page is in the site's nav; CI runs the README's install and
test commands."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml

from nhance_batch.cli import cli

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

#: the docs page whose section "Options of `COMMAND`" names every option of the command
OPTION_PAGES = {"run": "running.md", "resume": "running.md", "plan": "plan.md"}


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def first_cells(text: str) -> list[str]:
    return [row.split(" | ")[0] for row in table_rows(text)]


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def option_names(command: click.Command) -> list[str]:
    return sorted(name for param in command.params if isinstance(param, click.Option)
                  for name in param.opts + param.secondary_opts)


def names_option(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def test_every_module_has_a_line():
    cells = "\n".join(first_cells((DOCS / "architecture.md").read_text()))
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "nhance_batch").rglob("*.py")
                     if p.name != "__init__.py" and "__pycache__" not in p.parts)
    missing = [m for m in modules if f"`{m}`" not in cells]
    assert missing == []


def test_every_named_path_exists():
    named = set(re.findall(r"`((?:nhance_batch|bench|cluster|jobs|models|tests|docs)/[\w/.-]*)`",
                           (DOCS / "architecture.md").read_text()))
    assert named
    assert sorted(p for p in named if not (REPO / p.rstrip("/")).exists()) == []


def test_every_command_is_in_the_readme_table():
    rows = "\n".join(first_cells(section((REPO / "README.md").read_text(), "Commands")))
    commands = cli.list_commands(click.Context(cli))
    assert len(commands) >= 12
    assert [c for c in commands if f"nhance-batch {c} " not in rows] == []


@pytest.mark.parametrize("command", sorted(OPTION_PAGES))
def test_every_option_is_documented(command):
    options = section((DOCS / OPTION_PAGES[command]).read_text(), f"Options of `{command}`")
    names = option_names(cli.commands[command])
    assert names
    assert [n for n in names if not names_option(options, n)] == []


def test_every_option_of_every_command_is_in_the_docs():
    pages = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    missing = [f"{name} {option}" for name, command in sorted(cli.commands.items())
               for option in option_names(command) if not names_option(pages, option)]
    assert missing == []


def test_the_option_check_sees_a_missing_option():
    assert names_option("`--chunk-frames N` and `--force`", "--force")
    assert not names_option("`--force-all`", "--force")
    assert not names_option("`--chunk-frames`", "--frames")


def nav_pages(entries) -> set[str]:
    pages: set[str] = set()
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages |= nav_pages(value) if isinstance(value, list) else {value}
    return pages


def test_every_page_is_in_the_nav():
    nav = nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - nav == set()
    assert nav - pages == set()


def test_readme_links_exist():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (REPO / "README.md").read_text())
    local = [link for link in links if "://" not in link]
    assert local
    assert [link for link in local if not (REPO / link).exists()] == []


def test_the_readme_fits_on_a_few_screens():
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


def test_ci_runs_the_readmes_install_and_test_commands():
    install = section((REPO / "README.md").read_text(), "Install")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for command in ("pip install -e '.[test]'", "python -m pytest"):
        assert command in install
        assert command in ci
    assert any(line.startswith("mkdocs build --strict") for line in ci)
