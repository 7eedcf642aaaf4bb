"""Shared test fixtures: the repository layout and notebook readers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")


def _notebook_paths(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))


NOTEBOOKS = _notebook_paths("notebooks")
LABS = _notebook_paths("labs")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def source_of(cell) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def missing_tool(what: str, how: str):
    """A tool a test needs is not installed: skip here, fail under CI (CI=true), where the
    project's own set-up must have installed it."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing ({how}); CI must run this test")
    pytest.skip(f"{what} is missing ({how})")


# ------------------------------------------------------------------ running a self-check in a test
def check_verdict(check, fn, capsys) -> bool:
    """Run ``check(fn)``; its return value must agree with the printed summary line."""
    verdict = check(fn)
    out = capsys.readouterr().out
    assert bool(re.search(r"^✓ all \d+ cases passed$", out, re.M)) == verdict
    return verdict


def check_failure_output(check, fn, capsys) -> str:
    """Run ``check(fn)``, which must fail, and return what it printed."""
    assert not check(fn)
    return capsys.readouterr().out
