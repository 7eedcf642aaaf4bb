"""The README's commands are the ones the Makefile runs."""

from __future__ import annotations

import re

from conftest import ROOT


def _blocks(markdown: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|console)?\n(.*?)```", markdown, re.S)


def _makefile_targets(makefile: str) -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))


def test_quick_start_is_exactly_two_make_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [ln.strip() for b in _blocks(section) for ln in b.splitlines() if ln.strip()
                and not ln.strip().startswith("#")]
    assert "make lab" in commands and "make test" in commands
    assert [c for c in commands if c.startswith("make")] == ["make lab", "make test"]


def test_every_make_command_in_the_readme_is_a_target():
    readme = (ROOT / "README.md").read_text()
    targets = _makefile_targets((ROOT / "Makefile").read_text())
    mentioned = set(re.findall(r"`?make ([a-z][a-z-]*)", readme))
    assert mentioned, "the README shows no make command"
    assert mentioned <= targets, f"README mentions unknown targets: {sorted(mentioned - targets)}"


def test_plain_pip_commands_match_the_makefile():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text().replace("$(PY)", "python")
    makefile = makefile.replace("$(NBVAL_ARGS)", re.search(r"^NBVAL_ARGS := (.*)$", makefile, re.M).group(1))
    section = readme.split("## Without make", 1)[1].split("\n## ", 1)[0]
    commands = [ln.strip() for b in _blocks(section) for ln in b.splitlines()
                if ln.strip().startswith("python -m")]
    assert len(commands) >= 4, commands
    for command in commands:
        assert command in makefile, f"README command not run by the Makefile: {command}"


def test_every_notebook_has_a_row_in_the_lab_table():
    readme = (ROOT / "README.md").read_text()
    rows = [ln for ln in readme.splitlines() if re.match(r"^\| \d\d \|", ln)]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        row = [r for r in rows if r.startswith(f"| {path.name[:2]} |")]
        assert row, f"no README table row for {path.name}"
        assert f"notebooks/{path.name}" in row[0] and f"labs/{path.name}" in row[0]
        assert re.search(r"\| \d+ \|", row[0]), f"no measured seconds for {path.name}"
