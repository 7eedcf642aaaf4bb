"""Execute notebooks headless: ``make run`` (scratch copies, timing table) and
``make execute`` (in place, to make the committed baseline).

Usage::

    python -m utils.runner [NOTEBOOK ...]            # scratch copies; table + reports/
    python -m utils.runner --inplace NOTEBOOK ...    # re-execute and save in place
    python -m utils.runner --out DIR [NOTEBOOK ...]  # also keep the executed copies in DIR

Every kernel gets the pinned numeric environment of ``numeric.env`` (thread count, CPU
kernel family), the same that ``make test`` gives nbval.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["numeric_env", "apply_numeric_env", "execute_notebook", "peak_memory_mb",
           "results_probe", "parse_probe", "main"]

_MARKER = "__DL_LABS_RUNNER__"


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MB, on Linux, macOS and Windows.

    ``ru_maxrss`` is in KiB on Linux and in bytes on macOS; Windows has no ``resource``
    module, so its peak working set comes from psutil.
    """
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def results_probe() -> str:
    """Code that a kernel runs after a notebook: prints the marker, peak memory and ``results``."""
    return (
        "import json as _j\n"
        "from utils.runner import peak_memory_mb as _peak\n"
        "_res = globals().get('results')\n"
        f"print({_MARKER!r} + _j.dumps({{'peak_mb': _peak(), "
        "'results': _res if isinstance(_res, dict) else None}, "
        "default=lambda o: o.item() if hasattr(o, 'item') else str(o)))"
    )


def parse_probe(text: str) -> dict:
    """The dict printed by :func:`results_probe` (empty if the marker is absent)."""
    if _MARKER not in text:
        return {}
    return json.loads(text.split(_MARKER, 1)[1].strip().splitlines()[0])


def _root() -> Path:
    return Path(__file__).resolve().parents[1]


def numeric_env(path: Path | None = None) -> dict[str, str]:
    """The pinned variables in ``numeric.env`` (KEY=VALUE lines, # comments)."""
    path = path or _root() / "numeric.env"
    env = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip()
    return env


def apply_numeric_env() -> dict[str, str]:
    """Put the pinned variables into ``os.environ`` (kernels started later inherit them).

    A variable that is already set wins (``OMP_NUM_THREADS=1 python -m utils.runner`` runs
    with one thread), so that a deliberately perturbed environment can be tested.
    """
    env = numeric_env()
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in env}


def _kernel_manager(scratch: str):
    """A kernel manager on IPC sockets where the OS has them: the kernel then has no reason to
    warn that it runs "over TCP without encryption" (TCP on Windows)."""
    from jupyter_client.manager import KernelManager

    if os.name == "nt":
        return KernelManager(kernel_name="python3")
    return KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(scratch) / "kernel"))


def execute_notebook(path: Path, *, inplace: bool = False, timeout: int = 600,
                     env: dict[str, str] | None = None, out: Path | None = None) -> dict:
    """Run a notebook top to bottom in a fresh kernel.

    Args:
        path: the .ipynb file.
        inplace: save the executed notebook over ``path`` (else run a scratch copy).
        timeout: per-cell timeout in seconds.
        env: variables added to the kernel's environment (e.g. ``{"DL_LABS_SEED": "1"}``).
        out: a folder to save the executed copy in (scratch runs).

    Returns:
        dict: notebook, seconds, peak_mb (kernel peak RSS), ok, error, results.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    probe = nbformat.v4.new_code_cell(results_probe())
    with tempfile.TemporaryDirectory(prefix="dl-labs-run-") as scratch:
        workdir = path.parent if inplace else Path(scratch)
        if not inplace:
            shutil.copy(path, Path(scratch) / path.name)
        nb.cells.append(probe)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(workdir)}},
                                record_timing=False, km=_kernel_manager(scratch))
        start = time.perf_counter()
        error = None
        try:
            client.execute(env={**os.environ, **(env or {})})
        except CellExecutionError as exc:
            error = str(exc).strip().splitlines()[-1][:200]
        except Exception as exc:  # kernel died, timeout, ...
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        seconds = time.perf_counter() - start
    nb.cells.pop()  # the probe
    info = {}
    for output in probe.get("outputs", []):
        info = info or parse_probe(output.get("text", ""))
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(Path(out) / path.name))
    if inplace and error is None:
        nbformat.write(nb, str(path))
    elif error is not None:  # keep the partial outputs for inspection (reports/ is git-ignored)
        seed = (env or {}).get("DL_LABS_SEED")  # sweep runs of several seeds keep one file each
        failed = _root() / "reports" / f"failed_{path.stem}{f'_seed{seed}' if seed else ''}.ipynb"
        failed.parent.mkdir(exist_ok=True)
        nbformat.write(nb, str(failed))
        error += f" (partial outputs: reports/{failed.name})"
    return {
        "notebook": path.name,
        "seconds": round(seconds, 1),
        "peak_mb": round(info.get("peak_mb", float("nan")), 0),
        "ok": error is None,
        "error": error,
        "results": info.get("results"),
    }


def _table(rows: list[dict]) -> str:
    lines = ["| notebook | seconds | peak MB | status | results |", "|---|---:|---:|---|---|"]
    for r in rows:
        status = "ok" if r["ok"] else f"FAILED: {r['error']}"
        res = json.dumps(r["results"]) if r["results"] else ""
        lines.append(f"| {r['notebook']} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | {status} | {res} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.runner", description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--inplace", action="store_true", help="save executed notebooks in place")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout (s)")
    parser.add_argument("--reports", type=Path, default=_root() / "reports")
    parser.add_argument("--out", type=Path, default=None, help="keep the executed copies here")
    args = parser.parse_args(argv)
    apply_numeric_env()
    notebooks = args.notebooks or sorted((_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print("no notebooks found", file=sys.stderr)
        return 1
    rows = []
    width = max(len(Path(nb).name) for nb in notebooks)
    for nb in notebooks:
        row = execute_notebook(nb, inplace=args.inplace, timeout=args.timeout, out=args.out)
        print(f"{row['notebook']:<{width}}  {row['seconds']:5.1f} s  peak {row['peak_mb']:5.0f} MB  "
              f"{'ok' if row['ok'] else 'FAILED: ' + str(row['error'])}", flush=True)
        rows.append(row)
    table = _table(rows)
    print("\n" + table)
    if not args.inplace:
        args.reports.mkdir(parents=True, exist_ok=True)
        (args.reports / "run.json").write_text(json.dumps(rows, indent=2) + "\n")
        (args.reports / "run.md").write_text(table + "\n")
        print(f"\nwritten: {args.reports / 'run.json'}, {args.reports / 'run.md'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
