from __future__ import annotations

import pytest
import torch

from utils import checks
from utils.checks.core import FAIL, PASS
from utils.checks.setup import check_accuracy
from utils.metrics import accuracy as library_accuracy

# ---------------------------------------------------------------------------- correct answers


def reference_solution(logits, y):
    return (logits.argmax(dim=1) == y).float().mean().item()


def loop_solution(logits, y):
    correct = 0
    for row, label in zip(logits.tolist(), y.tolist(), strict=True):
        if max(range(len(row)), key=lambda j: row[j]) == label:
            correct += 1
    return correct / len(y)


def eq_sum_len_solution(logits, y):
    return torch.eq(torch.argmax(logits, 1), y).sum().item() / len(y)


def softmax_first_solution(logits, y):
    return float((logits.softmax(dim=-1).argmax(dim=-1) == y).double().mean())


CORRECT = {
    "reference": reference_solution,
    "python loop": loop_solution,
    "torch.eq/sum/len": eq_sum_len_solution,
    "softmax first": softmax_first_solution,
    "utils.metrics.accuracy": library_accuracy,
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_accepts_correct_implementations(capsys, name):
    assert check_accuracy(CORRECT[name]) is True
    out = capsys.readouterr().out
    assert out.startswith("Checking accuracy(logits, y):")
    assert f"{PASS} all 7 cases passed" in out
    assert FAIL not in out


def test_check_does_not_mutate_global_rng():
    state = torch.get_rng_state()
    check_accuracy(reference_solution)
    assert torch.equal(torch.get_rng_state(), state)


def test_reachable_through_package():
    assert checks.setup.check_accuracy is check_accuracy


# ---------------------------------------------------------------------------- typical mistakes


def percentage(logits, y):
    return 100.0 * (logits.argmax(dim=1) == y).float().mean().item()


def count_correct(logits, y):
    return (logits.argmax(dim=1) == y).sum().item()


def argmax_dim0(logits, y):
    return (logits.argmax(dim=0) == y).float().mean().item()


def error_rate(logits, y):
    return 1.0 - (logits.argmax(dim=1) == y).float().mean().item()


def max_values(logits, y):
    return (logits.max(dim=1).values == y).float().mean().item()


def per_sample(logits, y):
    return (logits.argmax(dim=1) == y).float()


def per_sample_bool(logits, y):
    return logits.argmax(dim=1) == y


def keepdim_argmax(logits, y):
    return (logits.argmax(dim=1, keepdim=True) == y).float().mean().item()


def integer_division(logits, y):
    return (logits.argmax(dim=1) == y).sum().item() // len(y)


def argmin(logits, y):
    return (logits.argmin(dim=1) == y).float().mean().item()


def returns_none(logits, y):
    (logits.argmax(dim=1) == y).float().mean()


def not_implemented(logits, y):
    raise NotImplementedError()


def zero_dim_tensor(logits, y):
    return (logits.argmax(dim=1) == y).float().mean()  # forgot .item()


MISTAKES = {
    "0-d tensor instead of float": zero_dim_tensor,
    "percentage": percentage,
    "count of correct rows": count_correct,
    "argmax over dim 0": argmax_dim0,
    "error rate": error_rate,
    "max values instead of indices": max_values,
    "per-sample correctness (N,)": per_sample,
    "per-sample bool (N,)": per_sample_bool,
    "keepdim argmax (N, 1) broadcast": keepdim_argmax,
    "integer division": integer_division,
    "argmin": argmin,
    "forgot return": returns_none,
    "not implemented": not_implemented,
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_rejects_typical_mistakes(capsys, name):
    assert check_accuracy(MISTAKES[name]) is False
    out = capsys.readouterr().out
    assert FAIL in out
    assert "cases passed" in out


def test_failure_output_has_hint(capsys):
    check_accuracy(percentage)
    out = capsys.readouterr().out
    assert "hint:" in out and "not a percentage" in out
    assert "expected 0.666667, got 66.6667" in out


def test_not_implemented_message(capsys):
    check_accuracy(not_implemented)
    out = capsys.readouterr().out
    assert out.count("not implemented yet") == 1


def cpu_ones_weights(logits, y):
    return ((logits.argmax(dim=1) == y).float() @ torch.ones(len(y)) / len(y)).item()  # torch.ones on the CPU


def test_device_probe_rejects_a_tensor_created_on_the_cpu(capsys, monkeypatch):
    monkeypatch.setenv("DL_LABS_DEVICE", "cpu")                  # the meta stand-in
    assert check_accuracy(cpu_ones_weights) is False
    out = capsys.readouterr().out
    assert f"{PASS} 50 samples, 7 classes" in out              # right on the CPU ...
    assert f"{FAIL} inputs on another device" in out            # ... but not on another device
    assert "your code created a tensor on the CPU" in out and "device=logits.device" in out


def test_device_probe_is_undecided_not_failing_for_item(capsys, monkeypatch):
    monkeypatch.setenv("DL_LABS_DEVICE", "cpu")
    assert check_accuracy(reference_solution) is True           # .item() needs values the stand-in lacks
    out = capsys.readouterr().out
    assert f"{PASS} inputs on another device" in out and "undecided here" in out


@pytest.mark.parametrize("bad", [None, 0.5, "accuracy"])
def test_rejects_non_functions(capsys, bad):
    assert check_accuracy(bad) is False
    assert FAIL in capsys.readouterr().out
