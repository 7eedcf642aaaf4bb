"""The labs builder and the student notebooks it generates."""

from __future__ import annotations

import ast
import contextlib
import io
import re

import nbformat
import pytest
from conftest import LABS, NOTEBOOKS, ROOT, source_of

from utils import labs


def test_strip_solutions_keeps_indentation_and_rest():
    src = "def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\nprint(1)"
    out = labs.strip_solutions(src)
    assert out == (
        "def f(x):\n    \"\"\"doc\"\"\"\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(1)"
    )


def test_strip_solutions_several_regions():
    src = "### BEGIN SOLUTION\na = 1\n### END SOLUTION\nb = 2\n  ### BEGIN SOLUTION\n  c = 3\n  ### END SOLUTION"
    out = labs.strip_solutions(src)
    assert "a = 1" not in out and "c = 3" not in out and "b = 2" in out
    assert out.count("raise NotImplementedError()") == 2


@pytest.mark.parametrize(
    "src",
    ["### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION", "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"],
)
def test_strip_solutions_rejects_unbalanced_markers(src):
    with pytest.raises(ValueError, match="SOLUTION"):
        labs.strip_solutions(src)


def _toy_notebook():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    cell = new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\nf()")
    cell.outputs = [new_output("execute_result", data={"text/plain": "1"}, execution_count=1)]
    cell.execution_count = 1
    check = new_code_cell("f_ok = checks.toy.check_f(f)")
    hidden = new_code_cell("secret = 42")
    hidden.metadata["tags"] = ["remove-in-lab"]
    title = new_markdown_cell(f"# Lab 99 · Toy\n\n{labs.badge('notebooks', '99_toy.ipynb')}")
    return new_notebook(cells=[title, cell, check, hidden])


def test_make_lab_clears_outputs_drops_tagged_cells_and_relinks():
    lab = labs.make_lab(_toy_notebook())
    assert len(lab["cells"]) == 3
    code = lab["cells"][1]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert "return 1" not in code["source"] and "raise NotImplementedError()" in code["source"]
    assert labs.colab_url("labs", "99_toy.ipynb") in lab["cells"][0]["source"]
    assert "/notebooks/" not in lab["cells"][0]["source"]


def test_build_and_check_on_a_temporary_tree(tmp_path):
    (tmp_path / "notebooks").mkdir()
    nbformat.write(_toy_notebook(), str(tmp_path / "notebooks" / "99_toy.ipynb"))
    assert labs.check(tmp_path) == ["labs/99_toy.ipynb is missing",
                                    "notebooks/99_toy.ipynb lacks its nbgrader metadata or hidden tests"]
    written = [p.relative_to(tmp_path).as_posix() for p in labs.build(tmp_path)]
    assert written == ["notebooks/99_toy.ipynb", "labs/99_toy.ipynb"]
    assert labs.check(tmp_path) == []
    assert labs.build(tmp_path) == []  # idempotent
    (tmp_path / "labs" / "99_toy.ipynb").write_text("{}")
    assert labs.check(tmp_path) == ["labs/99_toy.ipynb is stale"]
    (tmp_path / "labs" / "98_orphan.ipynb").write_text("{}")
    assert "labs/98_orphan.ipynb has no notebook in notebooks/" in labs.check(tmp_path)
    labs.build(tmp_path)
    assert not (tmp_path / "labs" / "98_orphan.ipynb").exists()


def test_grading_metadata_follows_the_markers():
    nb, problems = labs.add_grading(_toy_notebook())
    assert problems == []
    meta = [c["metadata"].get("nbgrader") for c in nb["cells"]]
    assert meta[0] is None and meta[3] is None
    assert meta[1]["solution"] and not meta[1]["grade"] and meta[1]["grade_id"] == "f"
    assert meta[2]["grade"] and meta[2]["locked"] and meta[2]["points"] == 1
    assert meta[2]["grade_id"] == "check_f"
    check_src = nb["cells"][2]["source"]
    assert check_src.startswith("f_ok = checks.toy.check_f(f)\n### BEGIN HIDDEN TESTS\nassert f_ok,")
    # idempotent; an instructor's points survive a rebuild
    nb["cells"][2]["metadata"]["nbgrader"]["points"] = 3
    again, _ = labs.add_grading(nb)
    assert again["cells"][2]["metadata"]["nbgrader"]["points"] == 3
    assert again["cells"][2]["source"] == check_src
    # the student version shows the check without its hidden assertion
    assert labs.make_lab(again)["cells"][2]["source"] == "f_ok = checks.toy.check_f(f)"
    # an exercise without a self-check cell is reported
    lonely = _toy_notebook()
    del lonely["cells"][2]
    assert labs.add_grading(lonely)[1] == [
        "cell 1: the exercise has no self-check cell after it (`name_ok = checks.topic.check_name(name)`)"]


@pytest.mark.parametrize("src", ["### BEGIN HIDDEN TESTS\nx", "x\n### END HIDDEN TESTS",
                                 "### BEGIN HIDDEN TESTS\n### BEGIN HIDDEN TESTS\n"])
def test_strip_hidden_tests_rejects_unbalanced_markers(src):
    with pytest.raises(ValueError, match="HIDDEN TESTS"):
        labs.strip_hidden_tests(src)


def test_new_scaffolds_the_standard_anatomy(tmp_path):
    path = labs.new_notebook(42, "my_topic", "My topic", root=tmp_path)
    nb = nbformat.read(str(path), as_version=4)
    first = source_of(nb.cells[0])
    assert first.startswith("# Lab 42 · My topic") and labs.colab_url("notebooks", path.name) in first
    assert "seed_everything()" in source_of(nb.cells[1])
    assert any("## Results" in source_of(c) for c in nb.cells)
    labs.build(tmp_path)  # its exercise strips cleanly
    with pytest.raises(ValueError, match="exists already"):
        labs.new_notebook(42, "my_topic", "My topic", root=tmp_path)
    with pytest.raises(ValueError, match="slug"):
        labs.new_notebook(43, "Bad Slug", "x", root=tmp_path)
    with pytest.raises(ValueError, match="number"):
        labs.new_notebook(100, "x", "x", root=tmp_path)


def test_labs_folder_is_in_sync_with_notebooks():
    assert labs.check(ROOT) == []
    assert [p.name for p in LABS] == [p.name for p in NOTEBOOKS]


def _solution_lines(source: str) -> list[str]:
    lines, inside = [], False
    for line in source.split("\n"):
        if line.strip() == labs.BEGIN:
            inside = True
        elif line.strip() == labs.END:
            inside = False
        elif inside and len(line.strip()) > 8 and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_solution_leaks_into_the_lab(path):
    nb = nbformat.read(str(path), as_version=4)
    lab = nbformat.read(str(ROOT / "labs" / path.name), as_version=4)
    lab_text = "\n".join(source_of(c) for c in lab.cells)
    assert labs.BEGIN not in lab_text and labs.END not in lab_text
    assert all(not c.get("outputs") for c in lab.cells if c.cell_type == "code")
    lab_code = {source_of(c) for c in lab.cells if c.cell_type == "code"}
    for cell in nb.cells:
        if cell.cell_type != "code" or labs.BEGIN not in source_of(cell):
            continue
        stub = labs.strip_solutions(source_of(cell))
        assert stub in lab_code
        for line in _solution_lines(source_of(cell)):
            assert line not in stub, f"solution line leaks into labs/{path.name}: {line}"


def _run_cell(source: str, namespace: dict):
    """Execute a cell like IPython: the value of a trailing expression is returned."""
    tree = ast.parse(source)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        exec(compile(ast.Module(tree.body[:-1], []), "<cell>", "exec"), namespace)
        return eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
    exec(compile(tree, "<cell>", "exec"), namespace)
    if isinstance(last, ast.Assign) and isinstance(last.targets[0], ast.Name):
        return namespace[last.targets[0].id]
    return None


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_lab_stubs_raise_and_their_checks_report_without_raising(path):
    lab = nbformat.read(str(path), as_version=4)
    code = [source_of(c) for c in lab.cells if c.cell_type == "code"]
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        _run_cell(code[0], namespace)  # the setup cell
    exercises = [i for i, src in enumerate(code) if "raise NotImplementedError()" in src]
    assert exercises, f"{path.name} has no exercise"
    for i in exercises:
        _run_cell(code[i], namespace)
        check_src = code[i + 1] if i + 1 < len(code) else ""
        assert re.search(r"checks\.\w+\.check_\w+\(", check_src), (
            f"{path.name}: the cell after exercise {i} is not a self-check"
        )
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            verdict = _run_cell(check_src, namespace)
        assert verdict is False, f"{path.name}: a stub passed its check"
        assert "not implemented yet" in out.getvalue()


# ---------------------------------------------------------------------------- Colab install, version


def test_version_comes_from_pyproject():
    import utils

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{utils.__version__}"' in pyproject
    assert labs.git_ref() == f"v{utils.__version__}" or labs.git_ref() == labs.REF


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_setup_cell_installs_this_release_and_badges_point_at_it(path):
    nb = nbformat.read(str(path), as_version=4)
    setup = next(source_of(c) for c in nb.cells if c.cell_type == "code")
    assert "\n".join(labs.colab_install_lines()) in setup, "run `python -m utils.labs relink`"
    for folder, name in re.findall(r"colab\.research\.google\.com/github/[^)\s]*?/(notebooks|labs)/(\w+\.ipynb)",
                                   "".join(source_of(c) for c in nb.cells if c.cell_type == "markdown")):
        assert labs.colab_url(folder, name) in source_of(nb.cells[0]), "run `python -m utils.labs relink`"


def test_readme_badges_point_at_this_release():
    readme = (ROOT / "README.md").read_text()
    urls = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+", readme)
    assert len(urls) >= 2 * len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    for url in urls:
        folder, name = url.rsplit("/", 2)[-2:]
        assert url == labs.colab_url(folder, name), "run `python -m utils.labs relink`"


def _run_colab_block(monkeypatch, installed, returncode=0):
    """Execute the setup cell's Colab block with a stand-in google.colab, a fake installed
    version and a fake pip; return the pip calls."""
    import importlib.metadata
    import subprocess
    import sys
    import types

    calls = []

    def fake_distributions(name):
        assert name == "dl-labs"
        return [] if installed is None else [types.SimpleNamespace(version=installed)]

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return types.SimpleNamespace(returncode=returncode, stdout="pip said this\n",
                                     stderr="ERROR: No matching distribution\n")

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(importlib.metadata, "distributions", fake_distributions)
    monkeypatch.setattr(subprocess, "run", fake_run)
    exec("import sys\n" + "\n".join(labs.colab_install_lines()), {})
    return calls


def test_colab_block_skips_the_install_when_this_version_is_there(monkeypatch):
    import utils

    assert _run_colab_block(monkeypatch, installed=utils.__version__) == []


def test_colab_block_installs_the_release_or_the_configured_source(monkeypatch):
    calls = _run_colab_block(monkeypatch, installed=None)
    assert len(calls) == 1 and calls[0][-1] == labs.install_requirement()
    assert calls[0][-1].endswith(f"@{labs.git_ref()}")
    monkeypatch.setenv(labs.INSTALL_ENV, "dl-labs[colab] @ file:///wheels/dl_labs.whl")
    calls = _run_colab_block(monkeypatch, installed="0.0.1")
    assert calls[0][-1] == "dl-labs[colab] @ file:///wheels/dl_labs.whl"


def test_colab_block_shows_pips_errors(monkeypatch):
    with pytest.raises(RuntimeError, match=r"(?s)failed:.*pip said this.*No matching distribution"):
        _run_colab_block(monkeypatch, installed=None, returncode=1)
