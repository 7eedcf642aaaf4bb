"""The lab-02 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import check_verdict as _verdict

from utils.checks import backprop as checks


# ----- numerical_gradient ---------------------------------------------------------------------
def numgrad_flat(f, x, eps=1e-6):
    """Correct, written differently: perturb a copy through a flat view."""
    x0 = np.array(x, dtype=np.float64)
    flat = x0.reshape(-1)
    out = np.empty_like(flat)
    for i in range(flat.size):
        step = np.zeros_like(flat)
        step[i] = eps
        out[i] = (f((flat + step).reshape(x0.shape)) - f((flat - step).reshape(x0.shape))) / (2 * eps)
    return out.reshape(x0.shape)


def numgrad_forward(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp = x.copy()
        xp[idx] += eps
        g[idx] = (f(xp) - f(x)) / eps
    return g


def numgrad_no_restore(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        x[idx] += eps
        fp = f(x)
        x[idx] -= 2 * eps
        g[idx] = (fp - f(x)) / (2 * eps)
    return g


def numgrad_ignores_eps(f, x, eps=1e-6):
    return checks.reference_numerical_gradient(f, x, 1e-6)


def numgrad_flattened_output(f, x, eps=1e-6):
    return checks.reference_numerical_gradient(f, x, eps).ravel()


def numgrad_no_half(f, x, eps=1e-6):
    return 2 * checks.reference_numerical_gradient(f, x, eps)


def test_numgrad_check_accepts_reference_and_alternative(capsys):
    assert _verdict(checks.check_numerical_gradient, checks.reference_numerical_gradient, capsys)
    assert _verdict(checks.check_numerical_gradient, numgrad_flat, capsys)


@pytest.mark.parametrize("wrong", [numgrad_forward, numgrad_no_restore, numgrad_ignores_eps,
                                   numgrad_flattened_output, numgrad_no_half])
def test_numgrad_check_rejects_mistakes(wrong, capsys):
    assert not _verdict(checks.check_numerical_gradient, wrong, capsys)


# ----- mlp_forward_backward -------------------------------------------------------------------
def mlp_recursive(params, X, y, activation=np.tanh, dact=lambda a: 1 - a**2, mean=True,
                  transpose_dw=False, skip_db=False):
    """Correct by default (written recursively); flags inject typical mistakes."""
    n = len(y)

    def forward_backward(i, a_prev):
        W, b = params[i]
        z = a_prev @ W.T + b
        if i == len(params) - 1:
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            loss = -np.log(p[np.arange(n), y]).sum()
            delta = p.copy()
            delta[np.arange(n), y] -= 1
            if mean:
                loss, delta = loss / n, delta / n
            return loss, delta, []
        a = activation(z)
        loss, delta_next, grads = forward_backward(i + 1, a)
        W_next = params[i + 1][0]
        dW_next = delta_next.T @ a
        grads = [(dW_next.T if transpose_dw and dW_next.shape[0] == dW_next.shape[1] else dW_next,
                  np.zeros_like(params[i + 1][1]) if skip_db else delta_next.sum(0))] + grads
        return loss, (delta_next @ W_next) * dact(a), grads

    loss, delta0, grads = forward_backward(0, X)
    grads = [(delta0.T @ X, np.zeros_like(params[0][1]) if skip_db else delta0.sum(0))] + grads
    return float(loss), grads


def test_mlp_check_accepts_reference_and_alternative(capsys):
    assert _verdict(checks.check_mlp_forward_backward, checks.reference_mlp_forward_backward, capsys)
    assert _verdict(checks.check_mlp_forward_backward, mlp_recursive, capsys)


@pytest.mark.parametrize("kwargs", [
    {"mean": False},                                            # sum instead of mean
    {"activation": lambda z: np.maximum(z, 0), "dact": lambda a: (a > 0).astype(float)},  # ReLU
    {"dact": lambda a: 1 - a},                                  # wrong tanh derivative
    {"skip_db": True},                                          # forgot the bias gradients
])
def test_mlp_check_rejects_mistakes(kwargs, capsys):
    assert not _verdict(checks.check_mlp_forward_backward,
                        lambda p, X, y: mlp_recursive(p, X, y, **kwargs), capsys)


def test_mlp_check_rejects_reversed_grads(capsys):
    def reversed_grads(params, X, y):
        loss, grads = checks.reference_mlp_forward_backward(params, X, y)
        return loss, grads[::-1]

    assert not _verdict(checks.check_mlp_forward_backward, reversed_grads, capsys)


# ----- count_parameters -----------------------------------------------------------------------
def test_count_parameters_check(capsys):
    def alt(sizes):
        total = 0
        for i in range(1, len(sizes)):
            total += (sizes[i - 1] + 1) * sizes[i]
        return total

    assert _verdict(checks.check_count_parameters, alt, capsys)
    assert not _verdict(checks.check_count_parameters,
                        lambda s: sum(a * b for a, b in zip(s, s[1:])), capsys)  # no biases
    assert not _verdict(checks.check_count_parameters,
                        lambda s: sum(a * b + a for a, b in zip(s, s[1:])), capsys)  # bias on input side


def numgrad_restore_by_arithmetic(f, x, eps=1e-6):
    """Correct, as the old hint suggested: perturb and undo by arithmetic (leaves ~1e-16 in x)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        x[idx] += eps
        f_plus = f(x)
        x[idx] -= 2 * eps
        f_minus = f(x)
        x[idx] += eps
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def test_numerical_gradient_accepts_restoring_by_arithmetic(capsys):
    assert _verdict(checks.check_numerical_gradient, numgrad_restore_by_arithmetic, capsys)
    checks.check_numerical_gradient(numgrad_no_restore)
    assert "x was modified (by up to" in capsys.readouterr().out


# ----- mlp_forward_backward: per-layer feedback -------------------------------------------------
def mlp_delta_variants(params, X, y, stable=True, delta_over_n=True, dact=lambda a: 1 - a**2):
    """Correct by default; stable=False drops the max-shift, delta_over_n=False forgets 1/N in delta_L only."""
    activations = [X]
    for i, (W, b) in enumerate(params):
        z = activations[-1] @ W.T + b
        activations.append(np.tanh(z) if i < len(params) - 1 else z)
    z = activations[-1] - (activations[-1].max(1, keepdims=True) if stable else 0)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean()
    delta = p.copy()
    delta[np.arange(n), y] -= 1
    delta = delta / n if delta_over_n else delta
    grads = []
    for i in range(len(params) - 1, -1, -1):
        grads.append((delta.T @ activations[i], delta.sum(0)))
        if i > 0:
            delta = (delta @ params[i][0]) * dact(activations[i])
    return float(loss), grads[::-1]


def test_mlp_check_accepts_shift_then_log_softmax(capsys):
    assert _verdict(checks.check_mlp_forward_backward, mlp_delta_variants, capsys)


def test_mlp_check_rejects_unstable_softmax_with_a_hint(capsys):
    assert not _verdict(checks.check_mlp_forward_backward,
                        lambda p, X, y: mlp_delta_variants(p, X, y, stable=False), capsys)
    checks.check_mlp_forward_backward(lambda p, X, y: mlp_delta_variants(p, X, y, stable=False))
    out = capsys.readouterr().out
    assert "subtract each row's max before exp" in out
    assert "✓ one hidden layer 4-5-3, batch 6" in out             # small logits still pass


def test_mlp_check_names_a_missing_one_over_n(capsys):
    checks.check_mlp_forward_backward(lambda p, X, y: mlp_delta_variants(p, X, y, delta_over_n=False))
    out = capsys.readouterr().out
    assert "your gradients are N = 6 times too large" in out
    assert "✓ a single sample, 2-3-2" in out                      # N = 1: the mistake is invisible


def test_mlp_check_reports_each_layer(capsys):
    checks.check_mlp_forward_backward(lambda p, X, y: mlp_delta_variants(p, X, y, dact=lambda a: 1 - a))
    out = capsys.readouterr().out
    assert "[per layer, last first: grads[2] ✓, grads[1] dW ✗ db ✗, grads[0] dW ✗ db ✗]" in out
    assert "the last layer is right" in out


def numgrad_aliased(f, x, eps=1e-6):
    """x_plus and x_minus are both x: f_minus is evaluated at x itself, a one-sided difference / 2."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        x_plus, x_minus = x, x
        x_plus[idx] += eps
        f_plus = f(x_plus)
        x_minus[idx] -= eps
        g[idx] = (f_plus - f(x_minus)) / (2 * eps)
    return g


def test_numgrad_check_names_aliasing_and_a_missing_half(capsys):
    assert not _verdict(checks.check_numerical_gradient, numgrad_aliased, capsys)
    checks.check_numerical_gradient(numgrad_aliased)
    out = capsys.readouterr().out
    assert "every entry is 1/2 of the expected value: x_plus and x_minus are the same array (aliasing)" in out
    checks.check_numerical_gradient(numgrad_no_half)
    assert "every entry is 2 times the expected value" in capsys.readouterr().out
    assert _verdict(checks.check_numerical_gradient, numgrad_flat, capsys)     # still accepted


def mlp_tanh_on_output(params, X, y):
    """tanh on every layer, the output included, and its derivative in delta_L."""
    activations = [X]
    for W, b in params:
        activations.append(np.tanh(activations[-1] @ W.T + b))
    out = activations[-1]
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean()
    delta = p.copy()
    delta[np.arange(n), y] -= 1
    delta = delta / n * (1 - out ** 2)
    grads = []
    for i in range(len(params) - 1, -1, -1):
        grads.append((delta.T @ activations[i], delta.sum(0)))
        delta = (delta @ params[i][0]) * (1 - activations[i] ** 2)
    return float(loss), grads[::-1]


def test_mlp_check_asks_about_tanh_on_the_output_when_all_gradients_are_0(capsys):
    assert not _verdict(checks.check_mlp_forward_backward, mlp_tanh_on_output, capsys)
    checks.check_mlp_forward_backward(mlp_tanh_on_output)
    out = capsys.readouterr().out
    assert "all your gradients are 0: is tanh applied to the output layer?" in out
    assert _verdict(checks.check_mlp_forward_backward, mlp_delta_variants, capsys)   # still accepted


def test_mlp_check_says_delta_L_is_right_when_only_hidden_layers_fail(capsys):
    checks.check_mlp_forward_backward(lambda p, X, y: mlp_delta_variants(p, X, y, dact=lambda a: 1 - a))
    out = capsys.readouterr().out
    assert "so δ_L is right; the error is in how δ goes back through the hidden layers" in out
