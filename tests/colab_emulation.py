"""Colab, emulated: `make colab-check` (a few minutes; needs the package index, not GitHub).

What a student on Colab gets, rebuilt in a fresh virtual environment:
- torch and torchvision preinstalled (the versions of this machine's environment) with the
  other packages Colab ships (Jupyter kernel, NumPy, SciPy, Matplotlib, scikit-learn,
  scikit-image, NetworkX, pandas), each at the latest version the index offers: no
  constraints file, as on Colab;
- a stand-in `google.colab` module, imported at kernel start as Colab does, so the setup cell
  takes its Colab branch;
- the course helpers installed BY THE SETUP CELL, from a wheel built from this checkout
  (`$DL_LABS_INSTALL` replaces the git requirement; everything else is the real cell);
- an empty data folder (`$XDG_CACHE_HOME`), notebooks run from a scratch folder (no checkout
  on `sys.path`).
Then 00_setup and two labs run to the end (their assertions hold) and their `results` are
compared with the seed-sweep bands (the statistical tier). The report lists the packages
whose versions differ from constraints.txt and any result outside its band:
reports/colab_emulation.md.

    python tests/colab_emulation.py [NOTEBOOK ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import regression  # noqa: E402
from utils._config import INSTALL_ENV  # noqa: E402
from utils.runner import parse_probe, results_probe  # noqa: E402

DEFAULT = ["00_setup", "13_gnn", "14_q_learning"]  # PyG and gymnasium come from the colab extra
PREINSTALLED = ["ipykernel", "nbclient", "nbformat", "numpy", "scipy", "matplotlib", "scikit-learn",
                "scikit-image", "networkx", "pandas", "tqdm"]

RUN = r"""
import json, sys, time
import nbformat
from nbclient import NotebookClient
path, probe, out = sys.argv[1], sys.argv[2], sys.argv[3]
nb = nbformat.read(path, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(probe))
start, error = time.perf_counter(), None
try:
    NotebookClient(nb, timeout=600, kernel_name="python3").execute()
except Exception as exc:
    error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"
nbformat.write(nb, out)
text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
print(json.dumps({"seconds": round(time.perf_counter() - start, 1), "error": error, "probe": text}))
"""


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return res


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", default=DEFAULT)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="dl-labs-colab-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    print("building the wheel of this checkout ...", flush=True)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(work / "wheel"), str(ROOT)])
    wheel = next((work / "wheel").glob("dl_labs-*.whl"))

    print("a fresh environment with Colab's preinstalled packages ...", flush=True)
    venv = work / "colab"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--clear", str(venv)])
    py = venv / "bin" / "python"
    torch_pins = [f"torch=={metadata.version('torch')}", f"torchvision=={metadata.version('torchvision')}"]
    _run([str(py), "-m", "pip", "install", "-q", *torch_pins, *PREINSTALLED])

    shim = work / "shim" / "google" / "colab"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (tests/colab_emulation.py)."""\n')
    startup = work / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-colab.py").write_text("import google.colab  # Colab imports it at kernel start\n")
    env = {**os.environ, "PYTHONPATH": str(work / "shim"), "IPYTHONDIR": str(work / "ipython"),
           "XDG_CACHE_HOME": str(work / "cache"), INSTALL_ENV: f"dl-labs[colab] @ {wheel.as_uri()}",
           "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    for var in ("DL_LABS_DATA", "DL_LABS_SEED", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(var, None)

    rows, failed = [], False
    for stem in args.notebooks:
        src = ROOT / "notebooks" / f"{Path(stem).stem}.ipynb"
        scratch = work / "run"
        scratch.mkdir(exist_ok=True)
        print(f"{src.name}: running in the Colab stand-in ...", flush=True)
        res = subprocess.run([str(py), "-c", RUN, str(src), results_probe(), str(scratch / src.name)],
                             cwd=scratch, env=env, capture_output=True, text=True, timeout=1800)
        if res.returncode:
            rows.append({"notebook": src.name, "error": res.stderr[-500:], "seconds": None, "outside": []})
            failed = True
            continue
        out = json.loads(res.stdout.strip().splitlines()[-1])
        results = parse_probe(out["probe"]).get("results")
        outside = regression.compare(results, regression.load_baseline(src)) if results else ["no results"]
        rows.append({"notebook": src.name, "seconds": out["seconds"], "error": out["error"],
                     "outside": outside})
        failed |= bool(out["error"] or outside)
        print(f"  {out['seconds']} s, {'ok' if not out['error'] else out['error']}, "
              f"{len(outside)} result(s) outside their band", flush=True)

    installed = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower(): line.split("==")[1]
                 for line in _run([str(py), "-m", "pip", "freeze"]).stdout.splitlines() if "==" in line}
    pins = _pins()
    differ = sorted(f"{name} {installed[name]} (pinned {pins[name]})" for name in installed
                    if name in pins and installed[name] != pins[name])
    lines = ["# Colab emulation", "",
             f"helpers: {wheel.name}, installed by the setup cell; torch {metadata.version('torch')}, "
             f"torchvision {metadata.version('torchvision')} preinstalled; "
             f"{round(time.perf_counter() - t0)} s in all", "",
             "| notebook | seconds | status | results outside their band |", "|---|---:|---|---|"]
    for r in rows:
        status = "ok" if not r["error"] else f"FAILED: {r['error']}"
        lines.append(f"| {r['notebook']} | {r['seconds']} | {status} | {'; '.join(r['outside']) or 'none'} |")
    lines += ["", f"Packages at other versions than constraints.txt ({len(differ)}):", ""]
    lines += [f"- {d}" for d in differ] or ["- none"]
    report = ROOT / "reports" / "colab_emulation.md"
    report.parent.mkdir(exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten: {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
