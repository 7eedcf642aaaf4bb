"""utils.runner: numeric environment, peak memory on every platform, the results probe."""

from __future__ import annotations

import sys
import types

import nbformat
import pytest

from utils import runner


def test_numeric_env_keeps_only_determinism_settings():
    env = runner.numeric_env()
    assert env["OMP_NUM_THREADS"] == "2" and env["MKL_DYNAMIC"] == "FALSE"
    for cpu_specific in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE"):
        assert cpu_specific not in env, f"{cpu_specific} ties outputs to one CPU family"


def test_apply_numeric_env_lets_a_set_variable_win(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_DYNAMIC", raising=False)
    applied = runner.apply_numeric_env()
    assert applied["OMP_NUM_THREADS"] == "1"
    assert applied["MKL_DYNAMIC"] == "FALSE"


def _fake_resource(maxrss):
    usage = types.SimpleNamespace(ru_maxrss=maxrss)
    return types.SimpleNamespace(RUSAGE_SELF=0, getrusage=lambda who: usage)


def test_peak_memory_linux_is_kib(monkeypatch):
    monkeypatch.setitem(sys.modules, "resource", _fake_resource(2048 * 1024))
    monkeypatch.setattr(runner.sys, "platform", "linux")
    assert runner.peak_memory_mb() == pytest.approx(2048)


def test_peak_memory_macos_is_bytes(monkeypatch):
    monkeypatch.setitem(sys.modules, "resource", _fake_resource(2048 * 2**20))
    monkeypatch.setattr(runner.sys, "platform", "darwin")
    assert runner.peak_memory_mb() == pytest.approx(2048)


def test_peak_memory_windows_uses_psutil(monkeypatch):
    monkeypatch.setitem(sys.modules, "resource", None)  # import resource -> ImportError
    info = types.SimpleNamespace(peak_wset=512 * 2**20, rss=1)
    fake_psutil = types.SimpleNamespace(Process=lambda: types.SimpleNamespace(memory_info=lambda: info))
    monkeypatch.setitem(sys.modules, "psutil", fake_psutil)
    assert runner.peak_memory_mb() == pytest.approx(512)


def test_peak_memory_real_process_is_positive():
    assert runner.peak_memory_mb() > 10


def test_results_probe_round_trip():
    namespace = {"results": {"acc": 0.5, "n": 3, "ok": True}}
    printed = []
    exec(runner.results_probe(), {**namespace, "print": printed.append})
    info = runner.parse_probe("noise before\n" + printed[0] + "\n")
    assert info["results"] == namespace["results"] and info["peak_mb"] > 0
    assert runner.parse_probe("no marker here") == {}


def test_main_prints_one_line_per_notebook_and_no_kernel_warning(tmp_path, capfd):
    from nbformat.v4 import new_code_cell, new_notebook

    paths = []
    for name in ("90_a.ipynb", "91_b.ipynb"):
        nb = new_notebook(cells=[new_code_cell("results = {'x': 1}")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(tmp_path / name))
        paths.append(str(tmp_path / name))
    assert runner.main([*paths, "--reports", str(tmp_path / "reports")]) == 0
    out, err = capfd.readouterr()
    progress = out.split("\n\n| notebook")[0].strip().splitlines()
    assert [line.split()[0] for line in progress] == ["90_a.ipynb", "91_b.ipynb"], out
    assert all(line.rstrip().endswith("ok") for line in progress), out
    assert "TCP" not in out + err and "WARNING" not in err, err
