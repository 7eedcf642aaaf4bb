"""The self-check framework: run a student's function on cases, compare, explain.

A check never raises into the notebook: every exception (NotImplementedError included)
is caught and reported as a failed case. Comparisons use tolerances
(``torch.testing.assert_close`` semantics: ``|got - expected| <= atol + rtol * |expected|``).
"""

from __future__ import annotations

import copy
import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Case", "compare_values", "run_check", "PASS", "FAIL"]

PASS, FAIL = "✓", "✗"


@dataclass
class Case:
    """One check case.

    Attributes:
        name: short description printed with the result ("masked, T=5, S=7").
        args, kwargs: inputs for the student's function (deep-copied for each call, so an
            in-place change by the student cannot affect the reference).
        expected: the expected output, or a callable ``reference(*args, **kwargs)`` that
            computes it (a library call or known values).
        atol, rtol: tolerances for floating-point outputs.
        test: for property-based cases, ``test(student_fn) -> str | None`` replaces the
            comparison; it returns an error message or None when the case passes.
    """

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    expected: Any = None
    atol: float = 1e-6
    rtol: float = 1e-5
    test: Callable[[Callable], str | None] | None = None


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _pair(e: float, g: float) -> str:
    """'expected E, got G', with more digits and the relative error when 6 digits agree."""
    if _fmt(e) == _fmt(g) and e != g:
        rel = abs(e - g) / max(abs(e), 1e-300)
        return f"expected {e:.12g}, got {g:.12g} (relative error {rel:.1e})"
    return f"expected {_fmt(e)}, got {_fmt(g)}"


def _compare_arrays(expected: np.ndarray, got: np.ndarray, atol, rtol, path) -> str | None:
    if expected.shape != got.shape:
        return f"{path} shape: expected {expected.shape}, got {got.shape}"
    if expected.dtype == bool or got.dtype == bool:
        if expected.dtype != got.dtype:
            return f"{path} dtype: expected {expected.dtype}, got {got.dtype}"
        wrong = np.argwhere(expected != got)
        if len(wrong):
            idx = tuple(int(i) for i in wrong[0])
            return f"{path}: {len(wrong)} entries differ, first at {idx}"
        return None
    if np.issubdtype(expected.dtype, np.integer) and not np.issubdtype(got.dtype, np.integer):
        return f"{path} dtype: expected integers ({expected.dtype}), got {got.dtype}"
    e, g = expected.astype(np.float64), got.astype(np.float64)
    nan_mismatch = np.isnan(e) != np.isnan(g)
    if nan_mismatch.any():
        idx = tuple(int(i) for i in np.argwhere(nan_mismatch)[0])
        where = f", first at index {idx}" if idx else ""
        return f"{path}: NaN where a number was expected or vice versa{where} (expected {_fmt(e[idx])}, got {_fmt(g[idx])})"
    inf_mismatch = (np.isinf(e) | np.isinf(g)) & (e != g)
    if inf_mismatch.any():
        idx = tuple(int(i) for i in np.argwhere(inf_mismatch)[0])
        where = f" at index {idx}" if idx else ""
        return f"{path}: infinite value mismatch{where}: expected {_fmt(e[idx])}, got {_fmt(g[idx])}"
    finite = np.isfinite(e) & np.isfinite(g)
    e0, g0 = np.where(finite, e, 0.0), np.where(finite, g, 0.0)
    err = np.abs(e0 - g0)
    bad = err > atol + rtol * np.abs(e0)
    if bad.any():
        idx = tuple(int(i) for i in np.unravel_index(np.argmax(np.where(bad, err, -1)), err.shape))
        where = f" at index {idx}" if idx else ""
        return (
            f"{path}: {int(bad.sum())} of {bad.size} values off; max abs error "
            f"{_fmt(err.max())}{where}: {_pair(e0[idx], g0[idx])}"
        )
    return None


def compare_values(expected, got, *, atol: float = 1e-6, rtol: float = 1e-5,
                   path: str = "output") -> str | None:
    """Compare ``got`` with ``expected``; return None if they match, else a message.

    Handles tensors, NumPy arrays, Python scalars and (nested) tuples/lists. A tensor is
    expected where the reference returns one; a scalar may come back as a 0-d tensor.
    """
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{path}: expected a {type(expected).__name__} of {len(expected)}, got {type(got).__name__}"
        if len(got) != len(expected):
            return f"{path}: expected {len(expected)} items, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=False)):
            msg = compare_values(e, g, atol=atol, rtol=rtol, path=f"{path}[{i}]")
            if msg:
                return msg
        return None
    if _is_tensor(expected):
        if not _is_tensor(got):
            return f"{path}: expected a torch.Tensor, got {type(got).__name__}"
        if got.requires_grad and not expected.requires_grad:
            got = got.detach()
        if got.dtype != expected.dtype and (expected.dtype.is_floating_point or got.dtype.is_floating_point):
            return (f"{path} dtype: expected {expected.dtype}, got {got.dtype} (keep the inputs' dtype: create new "
                    f"tensors with dtype=x.dtype or torch.zeros_like(x), or convert with .to({expected.dtype}))")
        return _compare_arrays(expected.detach().cpu().numpy(), got.detach().cpu().numpy(),
                               atol, rtol, path)
    if isinstance(expected, np.ndarray):
        if _is_tensor(got):
            return f"{path}: expected a NumPy array, got a torch.Tensor"
        if not isinstance(got, np.ndarray):
            return f"{path}: expected a NumPy array, got {type(got).__name__}"
        return _compare_arrays(expected, got, atol, rtol, path)
    if isinstance(expected, (bool, np.bool_)):
        if _is_tensor(got) and got.numel() == 1 and got.dtype == __import__("torch").bool:
            got = bool(got.item())
        if not isinstance(got, (bool, np.bool_)):
            return f"{path}: expected a bool ({expected}), got {type(got).__name__} {got!r}"
        return None if bool(got) == bool(expected) else f"{path}: expected {expected}, got {got!r}"
    if isinstance(expected, (int, float, np.integer, np.floating)):
        if _is_tensor(got) or isinstance(got, np.ndarray):
            if got.ndim != 0 and tuple(got.shape) != (1,):
                return f"{path}: expected a single number, got shape {tuple(got.shape)}"
            got = got.detach().item() if _is_tensor(got) else got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float, np.integer, np.floating)):
            return f"{path}: expected a number, got {type(got).__name__} {got!r}"
        e, g = float(expected), float(got)
        if math.isnan(e) and math.isnan(g):
            return None
        if math.isinf(e) or math.isinf(g):
            return None if e == g else f"{path}: expected {_fmt(e)}, got {_fmt(g)}"
        if not abs(e - g) <= atol + rtol * abs(e):
            return f"{path}: {_pair(e, g)}"
        return None
    try:
        same = bool(got == expected)
    except Exception:  # e.g. an ambiguous array comparison
        same = False
    return None if same else f"{path}: expected {expected!r}, got {got!r}"


def _clone(value):
    if _is_tensor(value):
        return value.detach().clone()
    return copy.deepcopy(value)


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        if "utils/checks" not in last.filename.replace("\\", "/"):
            where = f" (line {last.lineno}: {last.line})" if last.line else ""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"raised {type(exc).__name__}: {text}{where}"


def run_check(title: str, student_fn: Callable, cases: Sequence[Case], *,
              hint: str | None = None) -> bool:
    """Run ``student_fn`` on every case, print one line per case and a summary.

    Args:
        title: what is checked ("accuracy").
        student_fn: the student's function.
        cases: the cases.
        hint: printed once when a case fails.

    Returns:
        bool: True when every case passes. Never raises.
    """
    with _isolated_rng():
        return _run_cases(title, student_fn, cases, hint)


class _isolated_rng:
    """Save and restore Python's, NumPy's and torch's global RNG states around a check, so a
    check never changes what the rest of the notebook draws."""

    def __enter__(self):
        import random

        self._py = random.getstate()
        self._np = np.random.get_state()
        try:
            import torch

            self._torch = torch.random.get_rng_state()
        except ImportError:  # pragma: no cover
            self._torch = None
        return self

    def __exit__(self, *exc):
        import random

        random.setstate(self._py)
        np.random.set_state(self._np)
        if self._torch is not None:
            import torch

            torch.random.set_rng_state(self._torch)
        return False


def _run_cases(title, student_fn, cases, hint) -> bool:
    print(f"Checking {title}:")
    if not callable(student_fn):
        print(f"  {FAIL} expected a function, got {type(student_fn).__name__}")
        print(f"{FAIL} 0 of {len(cases)} cases passed")
        return False
    if not cases:
        print(f"  {FAIL} this check has no cases (a bug in the check, not in your code)")
        return False
    passed = 0
    not_implemented = False
    for case in cases:
        try:
            if case.test is not None:
                message = case.test(student_fn)
            else:
                expected = case.expected
                if callable(expected):
                    expected = expected(*_clone(case.args), **_clone(case.kwargs))
                got = student_fn(*_clone(case.args), **_clone(case.kwargs))
                message = compare_values(expected, got, atol=case.atol, rtol=case.rtol)
        except NotImplementedError:
            not_implemented = True
            break
        except Exception as exc:  # report, never raise into the notebook
            message = _describe(exc)
        if message:
            print(f"  {FAIL} {case.name}: {message}")
        else:
            passed += 1
            print(f"  {PASS} {case.name}")
    if not_implemented:
        print(f"  {FAIL} not implemented yet: replace `raise NotImplementedError()` with your code")
        print(f"{FAIL} {passed} of {len(cases)} cases passed")
        return False
    ok = passed == len(cases)
    if ok:
        print(f"{PASS} all {len(cases)} cases passed")
    else:
        print(f"{FAIL} {passed} of {len(cases)} cases passed")
        if hint:
            print(f"  hint: {hint}")
    return ok
