"""End to end: the two tiers catch real regressions in a real notebook run.

Two scratch copies of the setup notebook run under nbval with the results plugin, as
`make test` runs them:
* one whose stored self-check report was changed: the exact tier must fail that cell and
  the bands must still pass;
* one trained with a sabotaged learning rate and its Results assertions removed: the
  statistical tier must fail, naming the metric, its value and the band.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import nbformat
import pytest
from conftest import ROOT, source_of

from utils.runner import numeric_env

NOTEBOOK = ROOT / "notebooks" / "00_setup.ipynb"


def _cell(nb, needle: str) -> int:
    hits = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and needle in source_of(c)]
    assert len(hits) == 1, f"expected one code cell with {needle!r}, found {hits}"
    return hits[0]


def _code_number(nb, index: int) -> int:
    return sum(1 for c in nb.cells[:index] if c.cell_type == "code")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    # copy 1: a self-check report that changed
    changed = nbformat.read(str(NOTEBOOK), as_version=4)
    check = _cell(changed, "accuracy_ok = checks.setup.check_accuracy(accuracy)")
    out = changed.cells[check].outputs[0]
    assert "✓" in out["text"]
    out["text"] = out["text"].replace("✓", "✗", 1)
    # copy 2: a learning rate 3000 times too small, assertions removed
    sabotaged = nbformat.read(str(NOTEBOOK), as_version=4)
    train = _cell(sabotaged, "fit(")
    src = sabotaged.cells[train].source
    assert "lr=3e-3" in src
    sabotaged.cells[train].source = src.replace("lr=3e-3", "lr=1e-6")
    last = max(i for i, c in enumerate(sabotaged.cells) if c.cell_type == "code")
    sabotaged.cells[last].source = "\n".join(
        ln for ln in sabotaged.cells[last].source.splitlines() if not ln.startswith("assert"))
    paths = {}
    for name, book in (("changed", changed), ("sabotaged", sabotaged)):
        folder = tmp_path_factory.mktemp(name)
        paths[name] = folder / NOTEBOOK.name
        nbformat.write(book, str(paths[name]))
    env = {**os.environ, **numeric_env()}
    env.pop("MPLBACKEND", None)  # conftest sets Agg for the unit tests; kernels use the inline backend
    runs = {}
    for name, path in paths.items():  # one run per copy: outside the rootdir, node ids lose the path
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "--nbval-sanitize-with",
             str(ROOT / "tests" / "nbval_sanitize.cfg"), "-p", "utils.nbval_plugin", "-p", "no:cacheprovider",
             "--results-dir", str(tmp_path_factory.mktemp(f"results_{name}")), "-q", "-rf",
             "--rootdir", str(path.parent), str(path)],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        runs[name] = {"out": proc.stdout + proc.stderr, "rc": proc.returncode}
    runs["check_cell"] = _code_number(nb, check)
    return runs


def _failed(out: str) -> list[str]:
    return [f.split("/")[-1] for f in re.findall(r"^FAILED (.+?)(?: - .*)?$", out, re.M)]


def test_changed_check_report_fails_the_exact_tier(run):
    out = run["changed"]["out"]
    failed = _failed(out)
    assert run["changed"]["rc"] != 0
    assert failed == [f"00_setup.ipynb::Cell {run['check_cell']}"], out[-3000:]  # that cell only


def test_sabotaged_learning_rate_fails_the_bands(run):
    out = run["sabotaged"]["out"]
    assert "00_setup.ipynb::results-bands" in _failed(out), out[-3000:]
    assert re.search(r"smoke_test_acc: [0-9.]+ outside the band \[[0-9.]+, [0-9.]+\]", out), out[-3000:]
