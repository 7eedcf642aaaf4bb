"""Checks for the MLP and backpropagation lab (02)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .core import Case, compare_values, run_check, tiered

__all__ = ["check_numerical_gradient", "check_mlp_forward_backward", "check_count_parameters",
           "reference_numerical_gradient", "reference_mlp_forward_backward"]


def reference_numerical_gradient(f: Callable, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences, one coordinate at a time (compact reference)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        f_plus = f(x)
        x[idx] = old - eps
        f_minus = f(x)
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def _numgrad_case(name, f, x, expected, eps=None, atol=2e-7, rtol=1e-7) -> Case:
    def test(fn):
        x_in = x.copy()
        got = fn(f, x_in) if eps is None else fn(f, x_in, eps=eps)
        msg = compare_values(expected, got, atol=atol, rtol=rtol, path="gradient")
        if msg:
            return msg
        # restoring by arithmetic (x[i] += eps, -= 2 eps, += eps) leaves ~1e-16: only a missing restore counts
        if not np.allclose(x_in, x, rtol=0, atol=1e-10):
            worst = float(np.max(np.abs(x_in - x)))
            return (f"x was modified (by up to {worst:.2g}): restore each entry after perturbing it, e.g. "
                    "save old = x[i] and write it back")
        return None

    return Case(name, test=test)


@tiered
def check_numerical_gradient(numerical_gradient: Callable) -> bool:
    """Check ``numerical_gradient(f, x, eps=1e-6)`` (central differences, same shape as x)."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=5)
    M = rng.normal(size=(3, 4))
    A = rng.normal(size=(4, 4))
    cubic_x = np.array([0.5, -1.0, 2.0])
    cases = [
        _numgrad_case("f(x) = sum(x^2) -> 2x (5,)", lambda x: float(np.sum(x**2)), v, 2 * v),
        _numgrad_case("f(X) = sum(sin(X)) -> cos(X), shape (3, 4) kept", lambda x: float(np.sin(x).sum()),
                      M, np.cos(M)),
        _numgrad_case("f(x) = x^T A x -> (A + A^T) x", lambda x: float(x @ A @ x), v[:4], (A + A.T) @ v[:4],
                      atol=1e-6),
        _numgrad_case("eps is used: f = sum(x^3) with eps=1e-3 (central difference = 3x^2 + eps^2)",
                      lambda x: float(np.sum(x**3)), cubic_x, 3 * cubic_x**2 + 1e-6, eps=1e-3,
                      atol=1e-9, rtol=1e-9),
        _numgrad_case("a scalar stored as a (1,) array", lambda x: float(np.exp(x[0])),
                      np.array([0.3]), np.exp(np.array([0.3]))),
    ]
    return run_check(
        "numerical_gradient(f, x, eps)", numerical_gradient, cases,
        hint='perturb one coordinate at a time by +eps and -eps, take the central difference, and leave x as you found it',
        solution="for each index i: save old = x[i]; x[i] = old + eps -> f_plus; x[i] = old - eps -> f_minus; "
             "x[i] = old (restore); "
             "grad[i] = (f_plus - f_minus) / (2 eps). np.ndindex(x.shape) visits every index",
    )


def reference_mlp_forward_backward(params, X, y):
    """Autograd reference in float64: tanh hidden layers, softmax output, mean cross-entropy."""
    import torch
    import torch.nn.functional as F

    tensors = [(torch.tensor(W, dtype=torch.float64, requires_grad=True),
                torch.tensor(b, dtype=torch.float64, requires_grad=True)) for W, b in params]
    h = torch.tensor(X, dtype=torch.float64)
    for i, (W, b) in enumerate(tensors):
        h = h @ W.T + b
        if i < len(tensors) - 1:
            h = torch.tanh(h)
    loss = F.cross_entropy(h, torch.tensor(y, dtype=torch.int64))
    loss.backward()
    return float(loss.detach()), [(W.grad.numpy(), b.grad.numpy()) for W, b in tensors]


def _random_params(sizes, rng):
    return [(rng.normal(0, 1 / np.sqrt(i), (o, i)), rng.normal(0, 0.1, o)) for i, o in zip(sizes, sizes[1:])]


def _mlp_case(name, sizes, n, seed) -> Case:
    rng = np.random.default_rng(seed)
    params = _random_params(sizes, rng)
    X = rng.normal(size=(n, sizes[0]))
    y = rng.integers(0, sizes[-1], n)

    def test(fn):
        got = fn([(W.copy(), b.copy()) for W, b in params], X.copy(), y.copy())
        if not isinstance(got, tuple) or len(got) != 2:
            return f"expected a tuple (loss, grads), got {type(got).__name__}"
        loss, grads = got
        exp_loss, exp_grads = reference_mlp_forward_backward(params, X, y)
        msg = compare_values(exp_loss, loss, atol=1e-10, rtol=1e-9, path="loss")
        if msg:
            return msg
        if not isinstance(grads, (list, tuple)) or len(grads) != len(params):
            return f"grads: expected a list of {len(params)} (dW, db) pairs, got {type(grads).__name__}"
        for layer, ((eW, eb), pair) in enumerate(zip(exp_grads, grads)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                return f"grads[{layer}]: expected a pair (dW, db)"
            for label, e, g in (("dW", eW, pair[0]), ("db", eb, pair[1])):
                msg = compare_values(e, np.asarray(g), atol=1e-9, rtol=1e-7, path=f"grads[{layer}] {label}")
                if msg:
                    return msg
        return None

    return Case(name, test=test)


@tiered
def check_mlp_forward_backward(mlp_forward_backward: Callable) -> bool:
    """Check ``mlp_forward_backward(params, X, y) -> (loss, grads)`` against autograd (float64)."""
    cases = [
        _mlp_case("one hidden layer 4-5-3, batch 6", [4, 5, 3], 6, 0),
        _mlp_case("two hidden layers 3-8-6-4, batch 10", [3, 8, 6, 4], 10, 1),
        _mlp_case("a single sample, 2-3-2", [2, 3, 2], 1, 2),
        _mlp_case("no hidden layer (softmax regression) 5-4", [5, 4], 7, 3),
        _mlp_case("wide and deep 10-16-16-16-10, batch 32", [10, 16, 16, 16, 10], 32, 4),
    ]
    return run_check(
        "mlp_forward_backward(params, X, y)", mlp_forward_backward, cases,
        hint="keep every activation from the forward pass; the backward pass starts from the softmax-minus-one-hot error of the mean loss and applies the chain rule layer by layer, with tanh's derivative in the hidden layers",
        solution="store every activation on the way forward; start backward with "
             "delta = (softmax(z_L) - onehot(y)) / N; then dW = delta^T a_prev, db = delta.sum(0), "
             "delta_prev = (delta @ W) * (1 - a_prev**2) for tanh",
    )


@tiered
def check_count_parameters(count_parameters: Callable) -> bool:
    """Check ``count_parameters(layer_sizes)`` against an ``nn.Sequential`` of Linear layers."""
    import torch

    def reference(sizes):
        layers = [torch.nn.Linear(i, o) for i, o in zip(sizes, sizes[1:])]
        return sum(p.numel() for p in torch.nn.Sequential(*layers).parameters())

    cases = [Case(f"layer sizes {s}", (list(s),), expected=reference)
             for s in ([2, 1], [64, 128, 10], [40, 100, 100, 10], [8, 3, 8], [1, 50, 1])]
    return run_check(
        "count_parameters(layer_sizes)", count_parameters, cases,
        hint='each dense layer has one weight per (input, output) pair and one bias per output',
        solution="a dense layer from S_in to S_out has S_in * S_out weights and S_out biases",
    )
