"""Static checks of the committed instructor notebooks (the nbval baseline)."""

from __future__ import annotations

import getpass
import re

import nbformat
import pytest
from conftest import NOTEBOOKS, source_of

from utils import labs

CUDA_LITERAL = re.compile(r"[\"']cuda(:\d+)?[\"']")
ABSOLUTE_PATH = re.compile(r"(/home/\w|/root/|/Users/\w|/work/|/tmp/|[A-Za-z]:\\\\Users)")


def _load(path):
    return nbformat.read(str(path), as_version=4)


def _text_outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        for mime, value in out.get("data", {}).items():
            if mime.startswith("text/") or mime.endswith("json"):
                parts.append(value if isinstance(value, str) else str(value))
        parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def test_there_is_a_setup_notebook():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_setup.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_name_size_and_no_cuda_literal(path):
    assert labs.NOTEBOOK_PATTERN.match(path.name)
    assert path.stat().st_size < 2 * 1024 * 1024, "notebook over 2 MB: smaller figures, fewer outputs"
    for cell in _load(path).cells:
        assert not CUDA_LITERAL.search(source_of(cell)), "use utils.get_device(), not a 'cuda' literal"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_top_to_bottom_in_one_fresh_kernel(path):
    code = [c for c in _load(path).cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"execution counts {counts}: re-run with `make execute NB=notebooks/{path.name}`"
    )
    assert any(c.outputs for c in code), "no stored outputs"
    errors = [c.execution_count for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"error outputs in cells {errors}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_setup_cell_and_results_conventions(path):
    cells = _load(path).cells
    number = path.name[:2]
    first = source_of(cells[0])
    assert cells[0].cell_type == "markdown" and first.startswith(f"# Lab {number} · ")
    assert labs.badge("notebooks", path.name) in first, "badge missing or not pointing at this repo"
    for word in ("Prerequisites", "Expected time", "Objectives"):
        assert word in first, f"the title cell lacks '{word}'"
    code = [c for c in cells if c.cell_type == "code"]
    setup = source_of(code[0])
    for needle in ('"google.colab" in sys.modules', "get_device()", "seed_everything()",
                   "from utils import"):
        assert needle in setup, f"setup cell lacks {needle!r}"
    assert len(setup.splitlines()) <= 24  # the generated 7-line Colab block (utils.labs.colab_install_lines) + imports
    last_code_index = max(i for i, c in enumerate(cells) if c.cell_type == "code")
    results_cell = source_of(cells[last_code_index])
    assert re.search(r"^results\b", results_cell, re.M) or "results[" in results_cell
    assert "assert " in results_cell and "print(" in results_cell
    assert any("## Results" in source_of(c) for c in cells[:last_code_index])
    assert all(c.cell_type == "markdown" for c in cells[last_code_index + 1 :])
    assert "Wrap-up" in "".join(source_of(c) for c in cells[last_code_index + 1 :])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_leak_no_paths_user_names_or_noise(path):
    user = getpass.getuser()
    for cell in _load(path).cells:
        text = _text_outputs(cell)
        assert not ABSOLUTE_PATH.search(text), f"absolute path in the output of: {source_of(cell)[:60]}"
        if user not in ("root", "runner", "user"):
            assert f"/{user}" not in text
        for noise in ("Warning:", "ipykernel_", "it/s]", "IProgress not found"):
            if noise == "it/s]":
                continue  # tqdm widgets store a stable first frame; nbval sanitizes rates
            assert noise not in text, f"{noise!r} in the output of: {source_of(cell)[:60]}"


MAX_WORDS = 150  # ../STYLE.md: theory <= 150 words per markdown cell, one idea per cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_cells_hold_one_idea_of_at_most_150_words(path):
    """The title cell (objectives) and the wrap-up (bullets, exercises, references) are exempt."""
    cells = _load(path).cells
    long = [
        (i, len(source_of(c).split()))
        for i, c in enumerate(cells[1:-1], start=1)
        if c.cell_type == "markdown" and len(source_of(c).split()) > MAX_WORDS
    ]
    assert not long, f"markdown cells over {MAX_WORDS} words (cell, words): {long}; split them at idea boundaries"
