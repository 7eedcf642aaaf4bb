"""The self-check framework: run a student's function on cases, compare, explain.

A check never raises into the notebook: every exception (NotImplementedError included)
is caught and reported as a failed case. Comparisons use tolerances
(``torch.testing.assert_close`` semantics: ``|got - expected| <= atol + rtol * |expected|``).
"""

from __future__ import annotations

import contextvars
import copy
import functools
import math
import re
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Case", "compare_values", "run_check", "tiered", "device_case", "probe_device", "to_device", "Note",
           "PASS", "FAIL"]

PASS, FAIL, SKIP = "✓", "✗", "–"


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
            return (f"{path} dtype: expected {expected.dtype}, got {got.dtype} (keep the inputs' dtype and device: "
                    f"create new tensors with x.new_zeros(...) or torch.zeros_like(x), or convert with "
                    f".to({expected.dtype}))")
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


def _is_library_frame(filename: str) -> bool:
    name = filename.replace("\\", "/")
    return ("/site-packages/" in name or "/dist-packages/" in name or "utils/checks/" in name
            or name.startswith(_STDLIB))


_STDLIB = sysconfig.get_paths()["stdlib"].replace("\\", "/")


def _student_line(exc: BaseException) -> str:
    """'line N: code' of the last frame of the student's code in the traceback, or ''."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _is_library_frame(f.filename)]
    return f"line {frames[-1].lineno}: {frames[-1].line}" if frames and frames[-1].line else ""


def _describe(exc: BaseException) -> str:
    """'raised Type: message (line N: code)', the line being the last one of the student's code."""
    line = _student_line(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"raised {type(exc).__name__}: {text}" + (f" ({line})" if line else "")


_SHOW_SOLUTION: contextvars.ContextVar[bool] = contextvars.ContextVar("show_solution", default=False)


def tiered(check: Callable) -> Callable:
    """Give a check the keyword ``show_solution``: feedback comes in tiers. A failing check prints
    what is wrong per case and a hint at the concept; the solution line only when asked for with
    ``check_x(my_function, show_solution=True)``."""

    @functools.wraps(check)
    def wrapper(*args, show_solution: bool = False, **kwargs):
        token = _SHOW_SOLUTION.set(bool(show_solution))
        try:
            return check(*args, **kwargs)
        finally:
            _SHOW_SOLUTION.reset(token)

    return wrapper


def run_check(title: str, student_fn: Callable, cases: Sequence[Case], *,
              hint: str | None = None, solution: str | None = None) -> bool:
    """Run ``student_fn`` on every case, print one line per case and a summary.

    Args:
        title: what is checked ("accuracy").
        student_fn: the student's function.
        cases: the cases.
        hint: the concept, printed once when a case fails (tier 1).
        solution: the solution line, printed on failure only when the check was called with
            ``show_solution=True`` (tier 2); otherwise the student is told how to ask for it.

    Returns:
        bool: True when every case passes. Never raises.
    """
    with _isolated_rng():
        return _run_cases(title, student_fn, cases, hint, solution)


class _isolated_rng:
    """Save and restore Python's, NumPy's and torch's RNG states around a check (CPU, and CUDA
    and MPS where in use: ``torch.manual_seed`` in a check reseeds every device), so a check
    never changes what the rest of the notebook draws."""

    def __enter__(self):
        import random

        self._py = random.getstate()
        self._np = np.random.get_state()
        self._torch = self._cuda = self._mps = None
        try:
            import torch
        except ImportError:  # pragma: no cover
            return self
        self._torch = torch.random.get_rng_state()
        if torch.cuda.is_available():
            self._cuda = torch.cuda.get_rng_state_all()
        mps = getattr(torch, "mps", None)
        backend = getattr(torch.backends, "mps", None)
        if mps is not None and backend is not None and backend.is_available():
            self._mps = mps.get_rng_state()
        return self

    def __exit__(self, *exc):
        import random

        random.setstate(self._py)
        np.random.set_state(self._np)
        if self._torch is not None:
            import torch

            torch.random.set_rng_state(self._torch)
            if self._cuda is not None:
                torch.cuda.set_rng_state_all(self._cuda)
            if self._mps is not None:
                torch.mps.set_rng_state(self._mps)
        return False


class Note(str):
    """A passing case's remark: a case test returns ``Note("...")`` to pass with a comment
    (the device probe does when the stand-in device cannot decide)."""


class Skipped(Note):
    """A case that could not run because of a mistake the other cases report (printed with
    ``SKIP``, not ``PASS``: a tick beside an error would mislead); not counted as a failure."""


# ------------------------------------------------------------------------------- device probe
#: the line every device probe prints; the same on every machine, so stored reports compare exactly
DEVICE_CASE_NAME = "inputs on another device: the tensors it creates follow them"

_MISMATCH = re.compile(
    r"same device|expected device|on device \w+ is not|found at least two devices|"
    r"device type tensor to numpy|has not been allocated on MPS|is on \w+ device|"
    r"should be either on cpu or on the same device", re.IGNORECASE)


def probe_device():
    """The device a probe puts the inputs on: the accelerator :func:`utils.get_device` picks,
    else PyTorch's ``meta`` device, a stand-in with shapes and dtypes but no data that raises
    the same device-mismatch error as a GPU when a CPU tensor meets one of its tensors."""
    import torch

    from ..device import get_device

    device = get_device()
    return torch.device("meta") if device.type == "cpu" else device


def to_device(value, device):
    """Copy ``value`` to ``device``: tensors (``requires_grad`` kept; float64 becomes float32 on
    MPS, which has no float64), modules (a deep copy), and tuples, lists and dicts of them."""
    import torch

    if _is_tensor(value):
        moved = value.detach()
        if device.type == "mps" and moved.dtype == torch.float64:
            moved = moved.float()
        moved = moved.to(device)
        return moved.requires_grad_(True) if value.requires_grad and moved.is_floating_point() else moved
    if isinstance(value, torch.nn.Module):
        module = copy.deepcopy(value)
        if device.type == "mps":
            module = module.float()
        return module.to(device)
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def _tensors_in(value, path="output"):
    if _is_tensor(value):
        yield path, value
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            yield from _tensors_in(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors_in(v, f"{path}[{k!r}]")


def _where(device) -> str:
    if device.type == "meta":
        return "the 'meta' device (PyTorch's data-free stand-in for a GPU)"
    return str(device)


def _advice(name: str | None) -> str:
    x = name or "x"
    tail = "" if name else ", with x an input tensor"
    return (f"create it on {x}'s device: device={x}.device in torch.zeros/arange/full/tensor(...), "
            f"or {x}.new_zeros(...), torch.zeros_like({x}), torch.rand_like({x}){tail}")


def _tensor_parameter(fn, args) -> str | None:
    """The name of the student's first parameter that receives a tensor, for the advice."""
    import inspect

    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None
    return next((n for n, a in zip(names, args) if _is_tensor(a)), None)


#: errors of the meta stand-in that come from reading data it does not have
_META_DATA = re.compile(
    r"cannot be called on meta tensors|copy out of meta tensor|no data!|"
    r"data-independent implementation does not exist|unsupported format string passed to Tensor\.__format__",
    re.IGNORECASE)
#: errors of the meta stand-in that come from an operation it has no version of
_META_KERNEL = re.compile(r"with Meta tensors|'Meta' backend|a meta tensor without", re.IGNORECASE)


def _undecided(name: str | None, exc: BaseException, data_note: str | None = None) -> Note:
    """The note of a probe the meta stand-in could not decide, by the cause of ``exc``
    (``data_note`` replaces the note for missing data, e.g. when the exercise requires ``.item()``)."""
    x = name or "<input>"
    follow = f"make sure every torch.zeros/arange/full/tensor(...) you call has device={x}.device"
    text = str(exc)
    if _META_DATA.search(text):
        if data_note:
            return Note(data_note)
        return Note("undecided here: your code needs tensor values (.item(), .tolist(), float(), an if on a "
                    f"tensor), which the stand-in lacks; {follow}")
    if _META_KERNEL.search(text):
        op = re.search(r"aten::\w+|torch\.\w+\(\)", text)
        what = f" ({op.group(0)})" if op else ""
        return Note(f"undecided here: your code uses an operation{what} the stand-in cannot run; {follow}")
    return Skipped(f"not decided here: your code {_describe(exc)}; fix the failing cases above first")


def _device_failure(exc, device, name) -> str:
    where, line = _where(device), _student_line(exc)
    at = f" ({line})" if line else f" ({str(exc).splitlines()[0]})"
    if "numpy" in str(exc).lower():
        return (f"your code calls .numpy() on a tensor that is on {where}{at}: keep the computation in "
                "torch (or call .cpu() first and move the result back)")
    return f"your code created a tensor on the CPU while the inputs are on {where}{at}: {_advice(name)}"


class _MetaIntoCpu(RuntimeError):
    """Raised by the probe's guard: a meta tensor was written into, or used to index, a CPU tensor."""


def _meta_write_guard():
    """On the meta stand-in, writing a meta value into a CPU tensor (``M[i] = x[j]``) fails with 'no
    data', and indexing a CPU tensor with meta indices (``torch.eye(C)[y]``) quietly gives a CPU
    tensor; a GPU raises a device error for both. This mode raises it on meta too."""
    from torch.overrides import TorchFunctionMode

    def tensors(values):
        for v in values:
            if isinstance(v, (tuple, list)):
                yield from tensors(v)
            elif _is_tensor(v):
                yield v

    class Guard(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if getattr(func, "__name__", "") in ("__setitem__", "__getitem__", "copy_", "index_put_", "index_put",
                                                 "index_select", "gather") and args:
                target = args[0]
                if _is_tensor(target) and target.device.type == "cpu" and any(
                        t.device.type == "meta" for t in tensors(list(args[1:]) + list(kwargs.values()))):
                    raise _MetaIntoCpu("a tensor on the inputs' device was written into, or used to index, a "
                                       "tensor on the CPU: same device expected")
            return func(*args, **kwargs)

    return Guard()


def device_case(*args, run: Callable | None = None, inputs: Callable | None = None, name: str | None = None,
                data_note: str | None = None, **kwargs) -> Case:
    """A case that runs the student's function with its inputs on :func:`probe_device`.

    Args:
        args, kwargs: the inputs (tensors, modules, containers of them), copied to the device
            with :func:`to_device`; the function is called as ``fn(*args, **kwargs)``.
        inputs: instead of args, ``inputs()`` returns the argument tuple; it runs inside the check,
            so inputs drawn from torch's global RNG do not change what the notebook draws.
        run: instead of args, ``run(fn, device)`` calls the function itself (for callbacks and
            classes) and returns what should live on ``device``.
        name: the student's tensor parameter that the advice names (``p``); found from the
            signature when not given and ``run`` is not used.
        data_note: the note when the stand-in lacks the data the exercise itself requires
            (a step that must return ``.item()``), instead of the generic one.

    The case fails with a message naming the device and the student's line when the function
    mixes devices or returns a tensor elsewhere. On the meta stand-in, an error from the missing
    data (``.item()``, ``.tolist()``, branching on values) or from an operation the stand-in
    lacks is inconclusive: the case passes with a note saying so, so a correct solution never
    fails here. Any other error on the stand-in (a shape error, say) is the student's and shows
    in the CPU cases too: the case passes with a note naming the error and pointing to those
    cases, so one mistake is not counted twice. On a real accelerator any error fails.
    """
    named: dict[str, str | None] = {"name": name}
    if run is None:
        def run(fn, device):
            call_args = tuple(inputs()) if inputs is not None else args
            named["name"] = name or _tensor_parameter(fn, call_args)
            return fn(*to_device(call_args, device), **to_device(kwargs, device))

    def test(fn):
        import contextlib

        device = probe_device()
        guard = _meta_write_guard() if device.type == "meta" else contextlib.nullcontext()
        try:
            with guard:
                out = run(fn, device)
        except NotImplementedError as exc:
            if not str(exc):                     # the unsolved stub: reported by the caller
                raise
            if device.type == "meta":
                return _undecided(named["name"], exc, data_note)
            return f"with its inputs on {_where(device)} it {_describe(exc)}"
        except Exception as exc:                 # noqa: BLE001 - classified below
            if isinstance(exc, _MetaIntoCpu) or _MISMATCH.search(str(exc)):
                return _device_failure(exc, device, named["name"])
            if device.type == "meta":            # no data here: any other error is not a device error
                return _undecided(named["name"], exc, data_note)
            return f"with its inputs on {_where(device)} it {_describe(exc)}"
        if out is None:
            return Skipped("not decided here: your function returned None (a missing `return`?); "
                           "see the cases above")
        for path, tensor in _tensors_in(out):
            if tensor.device.type != device.type:
                return (f"{path} is on {tensor.device.type} while the inputs are on {_where(device)}: "
                        f"{_advice(named['name'])}")
        return None

    return Case(DEVICE_CASE_NAME, test=test)


def _run_cases(title, student_fn, cases, hint, solution=None) -> bool:
    print(f"Checking {title}:")
    if not callable(student_fn):
        print(f"  {FAIL} expected a function, got {type(student_fn).__name__}")
        print(f"{FAIL} 0 of {len(cases)} cases passed")
        return False
    if not cases:
        print(f"  {FAIL} this check has no cases (a bug in the check, not in your code)")
        return False
    passed = skipped = 0
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
        if isinstance(message, Skipped):
            skipped += 1
            print(f"  {SKIP} {case.name} ({message})")
        elif isinstance(message, Note):
            passed += 1
            print(f"  {PASS} {case.name} ({message})")
        elif message:
            print(f"  {FAIL} {case.name}: {message}")
        else:
            passed += 1
            print(f"  {PASS} {case.name}")
    if not_implemented:
        print(f"  {FAIL} not implemented yet: replace `raise NotImplementedError()` with your code")
        print(f"{FAIL} {passed} of {len(cases)} cases passed")
        return False
    ok = passed + skipped == len(cases)
    undecided = f" ({skipped} not decided)" if skipped else ""
    if ok and not skipped:
        print(f"{PASS} all {len(cases)} cases passed")
    elif ok:
        print(f"{PASS} {passed} of {len(cases)} cases passed{undecided}, none failed")
    else:
        print(f"{FAIL} {passed} of {len(cases)} cases passed{undecided}")
        if hint:
            print(f"  hint: {hint}")
        if solution and _SHOW_SOLUTION.get():
            print(f"  solution: {solution}")
        elif solution:
            print("  (stuck? run the check again with show_solution=True to see the solution line)")
    return ok
