"""Grading with nbgrader, end to end, with nbgrader's default configuration.

A temporary course directory gets two labs (00 and 01) as the assignment `ps1`; the real
commands run: `nbgrader generate_assignment`, `autograde`, `generate_feedback`. Proven here:
- the released student notebooks have the same code cells as labs/ (whitespace normalised);
- a submission with the solutions scores full points;
- a stub scores zero on its exercise, and a typical mistake (a fixture of the check's tests)
  scores zero on its exercise, while the other exercises keep their points;
- the feedback file shows the self-check's own report for the mistake (grades and feedback come
  from the same check, so they never disagree).
About 1-2 minutes: four notebook executions.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import source_of

from utils import labs

pytest.importorskip("nbgrader")

ROOT = Path(__file__).resolve().parents[1]
LABS = ["00_setup", "01_perceptron"]
BIN = Path(sys.executable).parent  # nbgrader calls `alembic` from PATH


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=course, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _code(nb: dict) -> list[str]:
    return [re.sub(r"\s+", " ", source_of(c)).strip() for c in nb["cells"] if c["cell_type"] == "code"]


def _solution_code(source_cell: dict) -> str:
    """What a student who solved the exercise would have in the cell: the solution, no markers."""
    return "\n".join(line for line in source_of(source_cell).split("\n")
                     if line.strip() not in (labs.BEGIN, labs.END))


def _mistake(fixture, name: str) -> str:
    code = textwrap.dedent(inspect.getsource(fixture))
    return re.sub(rf"^def {fixture.__name__}\(", f"def {name}(", code, flags=re.M)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from test_checks_setup import count_correct  # a typical mistake: the count, not the fraction

    course = tmp_path_factory.mktemp("course")
    (course / "source" / "ps1").mkdir(parents=True)
    for name in LABS:
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", course / "source" / "ps1")
    _nbgrader(course, "generate_assignment", "ps1")
    # two students: one hands in every solution; the other a mistake in lab 00 and a stub
    # (the released cell, untouched) for 01's first exercise, the rest solved
    edits = {"solved": {}, "mixed": {"accuracy": _mistake(count_correct, "accuracy"),
                                     "perceptron_fit": None}}
    for student, changes in edits.items():
        folder = course / "submitted" / student / "ps1"
        folder.mkdir(parents=True)
        for name in LABS:
            source = json.loads((course / "source" / "ps1" / f"{name}.ipynb").read_text())
            by_id = {c["metadata"]["nbgrader"]["grade_id"]: c for c in source["cells"]
                     if "nbgrader" in c["metadata"]}
            released = json.loads((course / "release" / "ps1" / f"{name}.ipynb").read_text())
            for cell in released["cells"]:
                meta = cell["metadata"].get("nbgrader", {})
                if not meta.get("solution"):
                    continue
                grade_id = meta["grade_id"]
                if grade_id not in changes:
                    cell["source"] = _solution_code(by_id[grade_id])
                elif changes[grade_id] is not None:
                    cell["source"] = changes[grade_id]
            (folder / f"{name}.ipynb").write_text(json.dumps(released, indent=1))
    _nbgrader(course, "autograde", "ps1")
    _nbgrader(course, "generate_feedback", "ps1")
    return course


def _scores(course: Path, student: str) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission("ps1", student)
        return {grade.name: grade.score for nb in submission.notebooks for grade in nb.grades}


def test_released_notebooks_have_the_code_cells_of_labs(course):
    for name in LABS:
        released = json.loads((course / "release" / "ps1" / f"{name}.ipynb").read_text())
        lab = json.loads((ROOT / "labs" / f"{name}.ipynb").read_text())
        assert _code(released) == _code(lab), name


def test_solutions_score_full_points(course):
    scores = _scores(course, "solved")
    assert set(scores) == {"check_accuracy", "check_perceptron_fit", "check_hinge_loss",
                           "check_softmax_cross_entropy", "check_softmax_cross_entropy_grad"}
    assert all(score == 1 for score in scores.values()), scores


def test_a_stub_and_a_mistake_score_zero_on_their_exercise_only(course):
    scores = _scores(course, "mixed")
    assert scores.pop("check_accuracy") == 0        # the count instead of the fraction
    assert scores.pop("check_perceptron_fit") == 0  # raise NotImplementedError()
    assert all(score == 1 for score in scores.values()), scores


def test_feedback_shows_the_self_checks_report(course):
    html = (course / "feedback" / "mixed" / "ps1" / "00_setup.html").read_text()
    assert "returns a Python float (use .item()), not a tensor: expected a Python float, got int" in html
    assert "check_accuracy failed: its report above says which case and why" in html
    assert "(stuck? run the check again with show_solution=True to see the solution line)" in html
    solved = (course / "feedback" / "solved" / "ps1" / "00_setup.html").read_text()
    assert "all 7 cases passed" in solved
