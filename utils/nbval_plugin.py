"""pytest plugin for the two-tier notebook regression tests (``-p utils.nbval_plugin``).

nbval executes each notebook once and compares the outputs of its cells exactly (the exact
tier; cells tagged ``nbval-ignore-output`` are run but not compared). This plugin adds one
test item after the last cell of every notebook, ``<notebook>::results-bands``, that runs
in the same kernel: it reads the notebook's ``results`` dict, writes it to
``reports/results/<notebook>.json`` and compares it with ``tests/baselines/<notebook>.json``
(the statistical tier, :mod:`utils.regression`).

Options: ``--results-dir DIR`` (where the JSON files go), ``--no-bands`` (write the
results, compare nothing: for a new notebook before its first sweep), ``--timings FILE``
(write each notebook's seconds, kernel start included, and the device to a JSON file:
``make gpu-check`` uses it).
"""

from __future__ import annotations

import json
from pathlib import Path
from queue import Empty

import pytest

from .regression import compare, load_baseline
from .runner import parse_probe, results_probe

_ITEM_NAME = "results-bands"


class BandsFailure(Exception):
    """Raised by the results item; its message lists every metric outside its band."""


def pytest_addoption(parser):
    group = parser.getgroup("dl-labs", "statistical tier of the notebook regression tests")
    group.addoption("--results-dir", default=None,
                    help="folder for each notebook's results JSON (default reports/results)")
    group.addoption("--no-bands", action="store_true",
                    help="write the results JSON but compare nothing with the baselines")
    group.addoption("--timings", default=None,
                    help="write per-notebook seconds and the device to this JSON file")


_SECONDS: dict[str, float] = {}
_OUTCOMES: dict[str, str] = {}


def pytest_runtest_logreport(report):
    """Add up the seconds of every phase of every item of a notebook (kernel start included)."""
    notebook = report.nodeid.split("::")[0]
    if not notebook.endswith(".ipynb"):
        return
    _SECONDS[notebook] = _SECONDS.get(notebook, 0.0) + report.duration
    if report.failed:
        _OUTCOMES[notebook] = "failed"
    else:
        _OUTCOMES.setdefault(notebook, "passed")


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("timings", None)
    if not path or not _SECONDS:
        return
    from .device import describe_environment

    env = describe_environment()
    record = {
        "device": env.get("gpu", env.get("device")),
        "torch": env.get("torch"),
        "notebooks": {Path(nb).stem: {"seconds": round(sec, 1), "outcome": _OUTCOMES.get(nb, "passed")}
                      for nb, sec in sorted(_SECONDS.items())},
        "total_seconds": round(sum(_SECONDS.values()), 1),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def _is_notebook_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell" and str(getattr(item.parent, "path", "")).endswith(".ipynb")


def pytest_collection_modifyitems(session, config, items):
    out = []
    for i, item in enumerate(items):
        out.append(item)
        last_of_file = i + 1 == len(items) or items[i + 1].parent is not item.parent
        if _is_notebook_cell(item) and last_of_file:
            out.append(ResultsItem.from_parent(item.parent, name=_ITEM_NAME))
    items[:] = out


class ResultsItem(pytest.Item):
    """Reads ``results`` from the notebook's kernel and compares it with the baseline."""

    def _fetch(self) -> dict:
        nb_file = self.parent
        kernel = getattr(nb_file, "kernel", None)
        if kernel is None or not kernel.is_alive():
            raise BandsFailure("the notebook's kernel is not running (an earlier cell failed?)")
        msg_id = kernel.execute_cell_input(results_probe(), allow_stdin=False)
        kernel.await_reply(msg_id, timeout=120)
        text = ""
        while True:
            try:
                msg = nb_file.get_kernel_message(timeout=120)
            except Empty:
                raise BandsFailure("no answer from the kernel while reading `results`") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                text += content.get("text", "")
            elif kind == "error":
                raise BandsFailure(f"reading `results` failed: {content.get('ename')}: {content.get('evalue')}")
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        info = parse_probe(text)
        if not info or not isinstance(info.get("results"), dict):
            raise BandsFailure("the notebook defines no `results` dict (the Results cell must build it)")
        return info

    def runtest(self):
        info = self._fetch()
        stem = Path(str(self.parent.path)).stem
        folder = self.config.getoption("results_dir") or Path(str(self.config.rootpath)) / "reports" / "results"
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.json").write_text(json.dumps(info["results"], indent=1) + "\n")
        if self.config.getoption("no_bands"):
            return
        try:
            baseline = load_baseline(stem)
        except FileNotFoundError as exc:
            raise BandsFailure(str(exc)) from None
        failures = compare(info["results"], baseline)
        if failures:
            raise BandsFailure(
                f"{len(failures)} of {len(baseline['metrics'])} results outside the bands of "
                f"tests/baselines/{stem}.json (seeds {baseline.get('seeds')}):\n  " + "\n  ".join(failures)
            )

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, BandsFailure):
            return f"{self.parent.path.name}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.parent.path, None, f"{self.parent.path.name}::{_ITEM_NAME}"
