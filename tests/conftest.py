"""Shared test fixtures: the repository layout and notebook readers."""

from __future__ import annotations

import os
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
