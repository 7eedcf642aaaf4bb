"""The statistical tier of the notebook regression tests: result bands from a seed sweep.

Training is not bitwise identical across CPUs (Intel, AMD, ARM), thread counts or GPUs, so
the numbers a lab learns are not compared exactly. Each notebook's final ``results`` dict
is compared leaf by leaf with a baseline in ``tests/baselines/NN_topic.json`` that holds
the values measured over a seed sweep (``DL_LABS_SEED`` = 0..4) and the accepted band:

* ``bool``, ``str`` and ``None`` leaves, and ints that are equal for every seed (counts,
  parameter counts, exact equalities, ``checks_passed``): the same value, exactly.
* numbers that move with the seed, and every float: the band
  ``[min - pad, max + pad]`` over the sweep, where
  ``pad = max(spread, REL_PAD * |median|, ABS_PAD)``, ``spread = max - min`` and
  ``ABS_PAD = 1e-3`` (ints: at least 1). Five seeds underestimate the full range of a metric, and a value
  measured on a few hundred examples moves by a few percent with the hardware, hence the
  floor of 5 % of the median.
* a bool or string that differs between seeds is recorded as ``varies`` and not compared
  (the sweep prints it, since an asserted outcome must not vary).

A learned count that happened to be equal for every seed (modes covered by a GAN, digits
read by a classifier) would otherwise compare exactly; the baseline's ``overrides`` section
(written by hand, with a reason, and kept when the sweep rewrites the file) replaces such a
metric's rule by a band. A value outside its band fails with the metric's name, the value
and the band. Write the baseline with ``make baselines NB=notebooks/NN_topic.ipynb`` (runs
the sweep); compare a
result file with ``python -m utils.regression check NB RESULTS.json``. ``make test``
compares every notebook right after nbval executed it (:mod:`utils.nbval_plugin`).

No torch needed: this module only reads and writes JSON (and runs notebooks for the sweep).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = [
    "SWEEP_SEEDS",
    "REL_PAD",
    "ABS_PAD",
    "baseline_path",
    "flatten",
    "make_baseline",
    "compare",
    "load_baseline",
    "sweep",
    "main",
]

#: Seeds of the sweep that writes a baseline.
SWEEP_SEEDS = (0, 1, 2, 3, 4)
#: Least padding of a band, relative to the median of the sweep.
REL_PAD = 0.05
#: Least padding of a band, absolute: one unit in the third decimal, the rounding of most
#: results (a learned value printed as 0.0 for every seed may round to 0.001 elsewhere).
ABS_PAD = 1e-3

_Leaf = bool | int | float | str | None


def _root() -> Path:
    return Path(__file__).resolve().parents[1]


def baseline_path(notebook: str | Path, folder: Path | None = None) -> Path:
    """``tests/baselines/<stem>.json`` for a notebook path or name."""
    stem = Path(notebook).stem
    return (folder or _root() / "tests" / "baselines") / f"{stem}.json"


def flatten(results: Any, prefix: str = "") -> dict[str, _Leaf]:
    """Flatten nested dicts and lists into ``{"a.b[0]": leaf}``.

    Args:
        results: a dict (or list) whose leaves are bool, int, float, str or None.

    Returns:
        dict: path -> leaf, in insertion order.

    Raises:
        TypeError: a leaf of another type, or a dict key that is not a str, int or float.
    """
    flat: dict[str, _Leaf] = {}
    if isinstance(results, dict):
        for key, value in results.items():
            if not isinstance(key, (str, int, float)) or isinstance(key, bool):
                raise TypeError(f"results: expected str, int or float keys, got {key!r} at {prefix or 'top level'}")
            key = str(key)  # as JSON writes it
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    elif isinstance(results, (list, tuple)):
        for i, value in enumerate(results):
            flat.update(flatten(value, f"{prefix}[{i}]"))
    elif results is None or isinstance(results, (bool, int, float, str)):
        flat[prefix] = results
    else:
        raise TypeError(
            f"results: expected bool, int, float, str, None, dict or list leaves, got "
            f"{type(results).__name__} {results!r} at {prefix!r} (convert tensors with .item())"
        )
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _band(values: list[float], integer: bool) -> tuple[float, float]:
    low, high = min(values), max(values)
    spread = high - low
    pad = max(spread, REL_PAD * abs(statistics.median(values)), ABS_PAD)
    if integer:
        pad = max(1, math.ceil(pad))
    return low - pad, high + pad


def _metric(values: list[_Leaf]) -> dict:
    first = values[0]
    if all(_is_number(v) for v in values):
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"non-finite value in the sweep: {values}")
        integer = all(isinstance(v, int) for v in values)
        if integer and len(set(values)) == 1:
            return {"kind": "exact", "expected": first, "values": values}
        low, high = _band([float(v) for v in values], integer)
        if integer:
            low, high = int(low), int(high)
        else:
            low, high = float(f"{low:.6g}"), float(f"{high:.6g}")
        return {"kind": "band", "low": low, "high": high, "values": values}
    if all(v == first and type(v) is type(first) for v in values):
        return {"kind": "exact", "expected": first, "values": values}
    return {"kind": "varies", "values": values}


def _rule() -> str:
    return (f"exact: bools, strings and seed-invariant ints; band: [min - pad, max + pad], "
            f"pad = max(max - min, {REL_PAD} * |median|, {ABS_PAD}) (ints: >= 1); "
            "varies: not compared; overrides: bands set by hand, with a reason")


def make_baseline(notebook: str, runs: dict[int, dict], environment: dict | None = None) -> dict:
    """Build a baseline from ``{seed: results}`` of a sweep.

    Raises:
        ValueError: a run has no results, or the runs do not share their metric names.
    """
    if not runs:
        raise ValueError("runs: expected results of at least one seed, got none")
    flats = {}
    for seed, results in sorted(runs.items()):
        if not isinstance(results, dict):
            raise ValueError(f"seed {seed}: the notebook left no `results` dict")
        flats[seed] = flatten(results)
    names = list(next(iter(flats.values())))
    for seed, flat in flats.items():
        if set(flat) != set(names):
            raise ValueError(
                f"seed {seed}: metric names differ from seed {min(flats)}: "
                f"{sorted(set(flat) ^ set(names))}"
            )
    metrics = {name: _metric([flats[s][name] for s in sorted(flats)]) for name in names}
    return {
        "notebook": notebook,
        "seeds": sorted(flats),
        "rule": _rule(),
        "environment": environment or {},
        "metrics": metrics,
    }


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def compare(results: Any, baseline: dict) -> list[str]:
    """Compare a run's ``results`` with a baseline.

    Returns:
        list[str]: one message per failure (empty when everything is inside its band).
    """
    if not isinstance(results, dict):
        return [f"results: expected a dict from the Results cell, got {type(results).__name__}"]
    try:
        flat = flatten(results)
    except TypeError as exc:
        return [str(exc)]
    failures = []
    metrics = baseline.get("metrics", {})
    overrides = baseline.get("overrides", {})
    for name in overrides:
        if name not in metrics:
            failures.append(f"{name}: overridden in the baseline but not one of its metrics")
    for name, spec in metrics.items():
        spec = {**spec, **overrides.get(name, {})}
        if name not in flat:
            failures.append(f"{name}: missing from results (baseline has it)")
            continue
        value, kind = flat[name], spec["kind"]
        if kind == "varies":
            continue
        if kind == "exact":
            expected = spec["expected"]
            same = value == expected and (type(value) is type(expected) or
                                          (_is_number(value) and _is_number(expected)))
            if not same:
                failures.append(f"{name}: {_fmt(value)}, expected exactly {_fmt(expected)} "
                                f"(every seed of the sweep gave it)")
        elif kind == "band":
            low, high = spec["low"], spec["high"]
            if not _is_number(value) or not math.isfinite(value) or not low <= value <= high:
                seen = ", ".join(_fmt(v) for v in spec.get("values", []))
                failures.append(f"{name}: {_fmt(value)} outside the band [{_fmt(low)}, {_fmt(high)}] "
                                f"(sweep: {seen})")
        else:
            failures.append(f"{name}: unknown kind {kind!r} in the baseline")
    for name in flat:
        if name not in metrics:
            failures.append(f"{name}: not in the baseline; run `make baselines NB=notebooks/"
                            f"{baseline.get('notebook', '?')}`")
    return failures


def load_baseline(notebook: str | Path, folder: Path | None = None) -> dict:
    """Read the baseline of a notebook.

    Raises:
        FileNotFoundError: with the command that writes it.
    """
    path = baseline_path(notebook, folder)
    if not path.is_file():
        raise FileNotFoundError(
            f"no baseline {path.relative_to(_root()) if path.is_relative_to(_root()) else path}: "
            f"run `make baselines NB=notebooks/{Path(notebook).stem}.ipynb`"
        )
    return json.loads(path.read_text())


def _environment() -> dict:
    from .runner import numeric_env

    env = {"machine": platform.machine(), "processor": _cpu_name(), "python": platform.python_version()}
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    env["numeric_env"] = numeric_env()
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run_seed(notebook: Path, seed: int, timeout: int) -> dict:
    from .runner import execute_notebook

    row = execute_notebook(notebook, timeout=timeout, env={"DL_LABS_SEED": str(seed)})
    print(f"  {notebook.name} seed {seed}: {row['seconds']:.1f} s, "
          f"{'ok' if row['ok'] else 'FAILED: ' + str(row['error'])}", flush=True)
    return row


def sweep(notebook: Path, seeds: tuple[int, ...] = SWEEP_SEEDS, jobs: int = 1,
          timeout: int = 600) -> dict:
    """Run a notebook once per seed (scratch copies) and build its baseline.

    Raises:
        RuntimeError: a run failed (its Results assertions included): a baseline is only
            written when every seed passes.
    """
    from .runner import apply_numeric_env

    apply_numeric_env()

    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = dict(zip(seeds, pool.map(_run_seed, [notebook] * len(seeds), seeds,
                                        [timeout] * len(seeds))))
    failed = {s: r["error"] for s, r in rows.items() if not r["ok"]}
    if failed:
        raise RuntimeError(f"{notebook.name}: seeds failed: {failed}")
    baseline = make_baseline(notebook.name, {s: r["results"] for s, r in rows.items()}, _environment())
    baseline["seconds"] = {str(s): r["seconds"] for s, r in rows.items()}
    old = baseline_path(notebook)
    if old.is_file():  # hand-written overrides survive a new sweep
        overrides = json.loads(old.read_text()).get("overrides")
        if overrides:
            baseline["overrides"] = overrides
    return baseline


def reband(baseline: dict) -> dict:
    """Recompute every metric's rule from its stored sweep values (after a change of the rule);
    overrides and everything else are kept."""
    out = dict(baseline)
    out["metrics"] = {name: _metric(spec["values"]) for name, spec in baseline["metrics"].items()}
    out["rule"] = _rule()
    return out


def _write(path: Path, baseline: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(baseline, indent=1) + "\n")


def _summary(baseline: dict) -> str:
    lines = []
    for name, spec in baseline["metrics"].items():
        if spec["kind"] == "band":
            lines.append(f"    {name}: band [{_fmt(spec['low'])}, {_fmt(spec['high'])}], "
                         f"sweep {_fmt(min(spec['values']))}..{_fmt(max(spec['values']))}")
        elif spec["kind"] == "varies":
            lines.append(f"    {name}: VARIES between seeds {spec['values']} (not compared)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.regression", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_sweep = sub.add_parser("sweep", help="run the seed sweep and write tests/baselines/<nb>.json")
    p_sweep.add_argument("notebooks", nargs="*", type=Path)
    p_sweep.add_argument("--seeds", default=",".join(map(str, SWEEP_SEEDS)),
                         help="comma-separated seeds (default 0,1,2,3,4)")
    p_sweep.add_argument("--jobs", type=int, default=1, help="notebooks run at once")
    p_sweep.add_argument("--out", type=Path, default=None, help="baseline folder (default tests/baselines)")
    p_reband = sub.add_parser("reband", help="recompute the bands of stored baselines from their sweep values")
    p_reband.add_argument("notebooks", nargs="*", type=Path)
    p_check = sub.add_parser("check", help="compare a results JSON file with a notebook's baseline")
    p_check.add_argument("notebook", type=Path)
    p_check.add_argument("results", type=Path)
    args = parser.parse_args(argv)

    if args.command == "check":
        try:
            baseline = load_baseline(args.notebook)
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 2
        failures = compare(json.loads(args.results.read_text()), baseline)
        for line in failures:
            print(f"FAIL {line}")
        print(f"{args.notebook.name}: {len(baseline['metrics']) - len(failures)} passed, {len(failures)} failed")
        return 1 if failures else 0

    if args.command == "reband":
        paths = [baseline_path(nb) for nb in args.notebooks] or sorted(baseline_path("x").parent.glob("*.json"))
        for path in paths:
            _write(path, reband(json.loads(path.read_text())))
            print(f"rebanded {path}")
        return 0

    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    notebooks = args.notebooks or sorted((_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    status = 0
    for nb in notebooks:
        print(f"sweep {nb} over seeds {seeds} ...", flush=True)
        try:
            baseline = sweep(nb, seeds, jobs=args.jobs)
        except (RuntimeError, ValueError) as exc:
            print(f"  not written: {exc}", file=sys.stderr)
            status = 1
            continue
        path = baseline_path(nb, args.out)
        _write(path, baseline)
        print(f"  written {path}\n{_summary(baseline)}", flush=True)
    return status


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
