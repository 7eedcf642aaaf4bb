from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from utils.checks import Case, compare_values, run_check
from utils.checks.core import FAIL, PASS

# ---------------------------------------------------------------------------- compare_values


def test_equal_tensors_within_tolerance():
    e = torch.tensor([1.0, 2.0, 3.0])
    assert compare_values(e, e.clone()) is None
    assert compare_values(e, e + 1e-7) is None
    assert compare_values(e, e + 1e-3, atol=1e-2) is None
    assert compare_values(torch.tensor([1, 2]), torch.tensor([1, 2])) is None


def test_values_off():
    e = torch.tensor([1.0, 2.0, 3.0])
    msg = compare_values(e, torch.tensor([1.0, 2.5, 3.0]))
    assert msg is not None
    assert "1 of 3 values off" in msg and "(1,)" in msg and "2.5" in msg
    # rtol is relative to the expected value
    assert compare_values(torch.tensor([1000.0]), torch.tensor([1000.005])) is None
    assert compare_values(torch.tensor([1000.0]), torch.tensor([1000.05])) is not None


def test_shape_mismatch_names_both_shapes():
    msg = compare_values(torch.zeros(2, 3), torch.zeros(3, 2))
    assert msg is not None and "shape" in msg
    assert "(2, 3)" in msg and "(3, 2)" in msg
    msg = compare_values(torch.zeros(4), torch.zeros(4, 1))
    assert "(4,)" in msg and "(4, 1)" in msg


def test_dtype_int_vs_float():
    msg = compare_values(torch.tensor([1, 2]), torch.tensor([1.0, 2.0]))
    assert msg is not None and "dtype" in msg
    msg = compare_values(torch.tensor([1.0, 2.0]), torch.tensor([1, 2]))
    assert msg is not None and "dtype" in msg
    msg = compare_values(np.array([1, 2]), np.array([1.0, 2.0]))
    assert msg is not None and "dtype" in msg
    # float32 vs float64 is reported too: precision problems otherwise look like "0.1 vs 0.1"
    msg = compare_values(torch.tensor([0.1]), torch.tensor([0.1], dtype=torch.float64))
    assert msg is not None and "dtype" in msg and ".to(torch.float32)" in msg and "x.new_zeros" in msg


def test_bool_tensors():
    e = torch.tensor([True, False])
    assert compare_values(e, e.clone()) is None
    assert "differ" in compare_values(e, torch.tensor([True, True]))
    assert "dtype" in compare_values(e, torch.tensor([1, 0]))


def test_numpy_vs_tensor():
    msg = compare_values(np.zeros(3), torch.zeros(3))
    assert msg is not None and "NumPy" in msg
    msg = compare_values(torch.zeros(3), np.zeros(3))
    assert msg is not None and "torch.Tensor" in msg
    assert compare_values(np.zeros(3), [0.0, 0.0, 0.0]) is not None
    assert compare_values(np.arange(3.0), np.arange(3.0)) is None


def test_tuples_are_compared_recursively():
    e = (torch.zeros(2), torch.ones(3))
    assert compare_values(e, (torch.zeros(2), torch.ones(3))) is None
    assert compare_values(e, [torch.zeros(2), torch.ones(3)]) is None  # list for tuple is fine
    msg = compare_values(e, (torch.zeros(2), torch.ones(4)))
    assert msg.startswith("output[1] shape")
    msg = compare_values((1, (2.0, torch.zeros(2))), (1, (2.0, torch.ones(2))))
    assert msg.startswith("output[1][1]")
    assert "expected 2 items, got 1" in compare_values(e, (torch.zeros(2),))
    assert "expected a tuple of 2" in compare_values(e, torch.zeros(2))
    assert compare_values(e, (torch.zeros(2), torch.zeros(3)), path="attn").startswith("attn[1]")


def test_scalar_accepts_zero_d_tensor_and_numpy():
    assert compare_values(0.5, torch.tensor(0.5)) is None
    assert compare_values(0.5, torch.tensor([0.5])) is None
    assert compare_values(0.5, np.float32(0.5)) is None
    assert compare_values(0.5, np.array(0.5)) is None
    assert compare_values(3, 3.0) is None
    msg = compare_values(0.5, torch.tensor([0.5, 0.5]))
    assert msg is not None and "single number" in msg
    assert "expected 0.5, got 0.6" in compare_values(0.5, 0.6)


def test_scalar_rejects_non_numbers():
    assert "expected a number" in compare_values(1, True)
    assert "expected a number" in compare_values(0.5, "0.5")
    assert "expected a number" in compare_values(0.5, None)
    assert "expected a number" in compare_values(1.0, torch.tensor(True))


def test_nan_positions():
    e = torch.tensor([1.0, float("nan"), 3.0])
    assert compare_values(e, e.clone()) is None
    msg = compare_values(e, torch.tensor([1.0, 2.0, 3.0]))
    assert msg is not None and "NaN" in msg
    msg = compare_values(torch.tensor([1.0, 2.0]), torch.tensor([float("nan"), 2.0]))
    assert msg is not None and "NaN" in msg
    assert compare_values(float("nan"), float("nan")) is None
    assert compare_values(float("nan"), 1.0) is not None


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_matching_infinities_pass():
    e = torch.tensor([float("inf"), -float("inf"), 1.0])
    assert compare_values(e, e.clone()) is None
    assert compare_values(np.array([np.inf]), np.array([np.inf])) is None


def test_matching_scalar_infinities_pass():
    assert compare_values(float("inf"), float("inf")) is None
    assert compare_values(-float("inf"), torch.tensor(-float("inf"))) is None


def test_matching_infinities_no_runtime_warning():
    e = np.array([np.inf, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert compare_values(e, e.copy()) is None


def test_finite_expected_infinite_got_fails():
    assert compare_values(torch.tensor([1.0, 2.0]), torch.tensor([1.0, float("inf")])) is not None
    assert compare_values(2.0, float("inf")) is not None


@pytest.mark.parametrize(
    ("expected", "got"),
    [
        (torch.tensor([float("inf"), 1.0]), torch.tensor([-float("inf"), 1.0])),
        (torch.tensor([float("inf"), 1.0]), torch.tensor([1e30, 1.0])),
        (np.array([-np.inf]), np.array([0.0])),
        (float("inf"), -float("inf")),
        (float("inf"), 1e300),
    ],
)
def test_mismatched_infinities_fail(expected, got):
    assert compare_values(expected, got) is not None


def test_requires_grad_output_is_accepted():
    e = torch.tensor([1.0, 2.0])
    got = (e * 1.0).requires_grad_()
    assert compare_values(e, got) is None


def test_bool_and_other_values():
    assert compare_values(True, True) is None
    assert compare_values(True, torch.tensor(True)) is None
    assert compare_values(True, False) is not None
    assert compare_values("abc", "abc") is None
    assert compare_values("abc", "abd") is not None
    assert compare_values(None, None) is None


# ---------------------------------------------------------------------------- run_check


def _double(x):
    return x * 2


def _cases():
    return [
        Case("vector", (torch.tensor([1.0, 2.0]),), expected=torch.tensor([2.0, 4.0])),
        Case("reference", (torch.arange(6.0).reshape(2, 3),), expected=lambda x: x + x),
        Case("keyword", (), kwargs={"x": torch.ones(2)}, expected=lambda x: 2 * x),
    ]


def test_run_check_pass(capsys):
    assert run_check("double", _double, _cases(), hint="multiply by 2") is True
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == "Checking double:"
    assert lines[1:4] == [f"  {PASS} vector", f"  {PASS} reference", f"  {PASS} keyword"]
    assert lines[-1] == f"{PASS} all 3 cases passed"
    assert FAIL not in out and "hint" not in out


def test_run_check_fail(capsys):
    assert run_check("double", lambda x: x * 3, _cases(), hint="multiply by 2") is False
    out = capsys.readouterr().out
    assert out.count(f"  {FAIL} ") == 3
    assert f"{FAIL} 0 of 3 cases passed" in out
    assert "hint: multiply by 2" in out
    assert "values off" in out


def test_run_check_partial(capsys):
    def student(x):
        return x * 2 if x.ndim == 1 and len(x) == 2 and x[0] == 1 else x

    assert run_check("double", student, _cases()) is False
    out = capsys.readouterr().out
    assert f"  {PASS} vector" in out and f"  {PASS} keyword" in out
    assert f"  {FAIL} reference: output: 5 of 6 values off" in out
    assert f"{FAIL} 2 of 3 cases passed" in out
    assert "hint" not in out


def test_run_check_not_implemented(capsys):
    def student(x):
        raise NotImplementedError()

    assert run_check("double", student, _cases()) is False
    out = capsys.readouterr().out
    assert out.count("not implemented yet") == 1
    assert f"{FAIL} 0 of 3 cases passed" in out
    assert "vector" not in out  # stops at the first case, no per-case noise


def test_run_check_other_exception_is_reported(capsys):
    def student(x):
        return x / 0 if isinstance(x, int) else 1 / 0

    assert run_check("double", student, _cases()) is False
    out = capsys.readouterr().out
    assert out.count("raised ZeroDivisionError: division by zero") == 3
    assert "line " in out and "1 / 0" in out  # points at the student's line
    assert f"{FAIL} 0 of 3 cases passed" in out


def test_run_check_exception_then_pass(capsys):
    def student(x):
        if x.ndim == 2:
            raise IndexError("bad index")
        return x * 2

    assert run_check("double", student, _cases()) is False
    out = capsys.readouterr().out
    assert "raised IndexError: bad index" in out
    assert f"{FAIL} 2 of 3 cases passed" in out


def test_run_check_student_mutation_does_not_reach_reference(capsys):
    data = torch.tensor([1.0, 2.0, 3.0])
    original = data.clone()

    # The reference returns a *view* of its argument: were it given the student's tensor,
    # the expected value would change under the student's in-place edit.
    def reference(x):
        return x[:2]

    def honest_but_destructive(x):
        out = x[:2].clone()
        x.zero_()  # wrecks its input after computing the right answer
        return out

    def cheat(x):
        x[:2] = 42.0  # wrong answer that would also rewrite a shared expected view
        return x[:2]

    cases = [Case("first two", (data,), expected=reference),
             Case("first two again", (data,), expected=reference)]
    assert run_check("head", honest_but_destructive, cases) is True
    assert torch.equal(data, original)
    assert run_check("head", cheat, cases) is False
    assert torch.equal(data, original)
    out = capsys.readouterr().out
    assert f"{FAIL} 0 of 2 cases passed" in out


def test_run_check_mutating_kwargs_and_lists(capsys):
    payload = {"values": [3, 1, 2]}

    def student(values):
        values.sort()  # in place
        return values[0]

    cases = [Case("min", (), kwargs=payload, expected=lambda values: min(values)),
             Case("min again", (), kwargs=payload, expected=lambda values: values[0] * 0 + 1)]
    assert run_check("min", student, cases) is True
    assert payload == {"values": [3, 1, 2]}


def test_run_check_not_callable(capsys):
    assert run_check("double", None, _cases()) is False
    assert run_check("double", torch.zeros(2), _cases()) is False
    out = capsys.readouterr().out
    assert "expected a function, got NoneType" in out
    assert f"{FAIL} 0 of 3 cases passed" in out


def test_run_check_property_cases(capsys):
    def is_square(f):
        return None if f(3) == 9 else f"f(3) should be 9, got {f(3)}"

    def raises(f):
        raise ValueError("broken property")

    cases = [Case("square", test=is_square)]
    assert run_check("square", lambda x: x * x, cases) is True
    assert run_check("square", lambda x: x + 6, cases) is True
    assert run_check("square", lambda x: x + 1, cases) is False
    out = capsys.readouterr().out
    assert "square: f(3) should be 9, got 4" in out
    assert run_check("square", lambda x: x, [Case("boom", test=raises)]) is False
    assert "raised ValueError: broken property" in capsys.readouterr().out


def test_run_check_compare_error_is_reported(capsys):
    # a bool expected value with a multi-element tensor makes bool() raise: still reported
    assert run_check("flag", lambda: torch.tensor([True, False]), [Case("b", expected=True)]) is False
    assert FAIL in capsys.readouterr().out


def test_case_defaults():
    c = Case("x")
    assert c.args == () and c.kwargs == {} and c.expected is None and c.test is None
    assert c.atol == 1e-6 and c.rtol == 1e-5
    assert Case("y").kwargs is not c.kwargs


def test_case_tolerances(capsys):
    cases = [Case("loose", (1.0,), expected=1.05, atol=0.1)]
    assert run_check("id", lambda x: x, cases) is True
    cases = [Case("tight", (1.0,), expected=1.05)]
    assert run_check("id", lambda x: x, cases) is False


# ---------------------------------------------------------------------------- tiered feedback
def test_feedback_is_tiered_the_solution_only_on_request(capsys):
    from utils.checks.core import tiered

    @tiered
    def check_double(fn):
        """Check doubling."""
        return run_check("double", fn, _cases(), hint="the output is twice the input",
                         solution="return 2 * x")

    assert check_double(lambda x: x * 3) is False
    out = capsys.readouterr().out
    assert "hint: the output is twice the input" in out and "return 2 * x" not in out
    assert "show_solution=True" in out
    assert check_double(lambda x: x * 3, show_solution=True) is False
    assert "solution: return 2 * x" in capsys.readouterr().out
    assert check_double(lambda x: x * 2, show_solution=True) is True
    out = capsys.readouterr().out
    assert "solution" not in out and "hint" not in out          # nothing is revealed when it passes
    assert check_double.__name__ == "check_double" and check_double.__doc__ == "Check doubling."


def test_every_check_takes_show_solution_and_has_both_tiers():
    import ast
    from pathlib import Path

    from utils import checks

    folder = Path(checks.__file__).parent
    missing = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("check_"):
                decorated = any(getattr(d, "id", "") == "tiered" for d in node.decorator_list)
                calls = [c for c in ast.walk(node) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "run_check"]
                kwargs = {k.arg for c in calls for k in c.keywords}
                if not decorated or not {"hint", "solution"} <= kwargs:
                    missing.append(f"{path.stem}.{node.name}")
    assert not missing, f"checks without tiered feedback (@tiered, hint= and solution=): {missing}"


# ---------------------------------------------------------------------------- device probe notes
def _probe_note(fn, *args, monkeypatch, capsys) -> str:
    from utils.checks.core import DEVICE_CASE_NAME, device_case

    monkeypatch.setenv("DL_LABS_DEVICE", "cpu")                # the probe uses the meta stand-in
    assert run_check("probe", fn, [device_case(*args)])        # an undecided probe passes with a note
    line = next(x for x in capsys.readouterr().out.splitlines() if DEVICE_CASE_NAME in x)
    assert line.lstrip()[:1] in (PASS, "–"), line                # a tick, or a dash when skipped
    return line


def test_device_probe_note_names_the_cause(monkeypatch, capsys):
    """'needs tensor values' only when the stand-in's missing data is the cause (lab 10 review, A7)."""
    x, t, abar = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4]), torch.linspace(0.99, 0.01, 10)

    def reads_values(x):
        return x * 2 if x.sum().item() > 0 else x

    line = _probe_note(reads_values, x, monkeypatch=monkeypatch, capsys=capsys)
    assert "undecided here: your code needs tensor values" in line and "device=x.device" in line
    assert line.lstrip().startswith(PASS), line                 # a correct solution keeps its tick

    def q_sample_no_reshape(x0, t, noise, alpha_bars):        # a shape error: the CPU cases fail with it too
        return alpha_bars[t].sqrt() * x0 + (1 - alpha_bars[t]).sqrt() * noise

    line = _probe_note(q_sample_no_reshape, x, t, x, abar, monkeypatch=monkeypatch, capsys=capsys)
    assert "needs tensor values" not in line, line
    assert "not decided here: your code raised RuntimeError" in line and "fix the failing cases above first" in line
    assert line.lstrip().startswith("–"), "a case skipped because of an error is not ticked"
    assert "return alpha_bars[t].sqrt()" in line               # the student's line is shown

    def uses_unique(x):                                        # an operation the stand-in has no version of
        return torch.unique(x)

    line = _probe_note(uses_unique, x, monkeypatch=monkeypatch, capsys=capsys)
    assert "undecided here: your code uses an operation (aten::_unique2) the stand-in cannot run" in line


def test_device_probe_of_a_function_returning_none_is_not_ticked(capsys):
    """A stub with a missing `return` passed the probe and was counted (lab 19 review, 15)."""
    from utils.checks import device_case

    def forgot_return(x):
        x * 2

    ok = run_check("forgot return", forgot_return, [
        Case("doubles", args=(torch.ones(3),), expected=torch.full((3,), 2.0)),
        device_case(torch.ones(3)),
    ])
    out = capsys.readouterr().out
    assert not ok
    assert "returned None" in out and "0 of 2 cases passed (1 not decided)" in out, out


def test_summary_counts_undecided_cases_apart(capsys):
    from utils.checks.core import Skipped

    ok = run_check("one undecided", lambda: None, [
        Case("fails", test=lambda fn: "wrong"),
        Case("undecided", test=lambda fn: Skipped("not decided here")),
        Case("passes", test=lambda fn: None),
    ])
    out = capsys.readouterr().out
    assert not ok and "1 of 3 cases passed (1 not decided)" in out, out
