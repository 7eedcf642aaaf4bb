"""Checks for the MLP and backpropagation lab (02)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .core import FAIL, PASS, Case, compare_values, run_check, tiered

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


def _constant_ratio(expected, got) -> float | None:
    """The ratio got / expected when it is the same for every entry (within 1e-3), else None."""
    try:
        e, g = np.asarray(expected, dtype=np.float64), np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if e.shape != g.shape or not np.all(np.isfinite(g)) or np.any(np.abs(e) < 1e-3):
        return None
    ratios = g / e
    c = float(np.median(ratios))
    return c if np.allclose(ratios, c, rtol=1e-3, atol=0) else None


def _numgrad_case(name, f, x, expected, eps=None, atol=2e-7, rtol=1e-7) -> Case:
    def test(fn):
        x_in = x.copy()
        got = fn(f, x_in) if eps is None else fn(f, x_in, eps=eps)
        msg = compare_values(expected, got, atol=atol, rtol=rtol, path="gradient")
        if msg:
            ratio = _constant_ratio(expected, got)
            if ratio is not None and abs(ratio - 0.5) < 1e-3:
                return (f"{msg} (every entry is 1/2 of the expected value: x_plus and x_minus are the same "
                        "array (aliasing), so f_minus is evaluated at x itself; perturb a copy, or restore x[i] "
                        "between the two evaluations)")
            if ratio is not None and abs(ratio - 2) < 1e-3:
                return f"{msg} (every entry is 2 times the expected value: the central difference divides by 2 eps)"
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


def _scale_ratio(expected: list[np.ndarray], got: list[np.ndarray]) -> float | None:
    """The constant c with got = c * expected over all entries, or None when there is none."""
    e = np.concatenate([np.ravel(a) for a in expected])
    g = np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in got])
    if e.shape != g.shape or not np.all(np.isfinite(g)):
        return None
    big = np.abs(e) > 1e-8 * max(float(np.abs(e).max()), 1e-300)
    if not big.any():
        return None
    ratios = g[big] / e[big]
    c = float(np.median(ratios))
    return c if np.allclose(ratios, c, rtol=1e-6, atol=0) and np.allclose(g, c * e, rtol=1e-6, atol=1e-12) else None


def _mlp_case(name, sizes, n, seed, logit_shift=0.0) -> Case:
    rng = np.random.default_rng(seed)
    params = _random_params(sizes, rng)
    W_last, b_last = params[-1]
    params[-1] = (W_last, b_last + logit_shift)                 # every logit + shift: softmax unchanged, exp overflows
    X = rng.normal(size=(n, sizes[0]))
    y = rng.integers(0, sizes[-1], n)

    def test(fn):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # overflow is reported below
            got = fn([(W.copy(), b.copy()) for W, b in params], X.copy(), y.copy())
        if not isinstance(got, tuple | list) or len(got) != 2:
            return f"expected a tuple (loss, grads), got {type(got).__name__}"
        loss, grads = got
        exp_loss, exp_grads = reference_mlp_forward_backward(params, X, y)
        if not isinstance(grads, list | tuple) or len(grads) != len(params):
            return f"grads: expected a list of {len(params)} (dW, db) pairs, got {type(grads).__name__}"
        for layer, pair in enumerate(grads):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                return f"grads[{layer}]: expected a pair (dW, db)"
        try:
            not_finite = not np.isfinite(float(loss)) or not all(
                np.all(np.isfinite(np.asarray(t, dtype=np.float64))) for pair in grads for t in pair)
        except (TypeError, ValueError):                         # not numbers: compare_values reports it below
            not_finite = False
        if not_finite and logit_shift:
            return ("NaN or inf with large logits (up to about "
                    f"{np.abs(_logits(params, X)).max():.0f}): exp overflows; subtract each row's max before exp "
                    "(log-sum-exp), which leaves softmax unchanged")
        problems = []
        msg = compare_values(exp_loss, loss, atol=1e-10, rtol=1e-9, path="loss")
        if msg:
            problems.append(msg)
        # one status per layer, last layer first (the order of the backward pass)
        status, first_bad = [], None
        for layer in range(len(params) - 1, -1, -1):
            bad = []
            for label, e, g in (("dW", exp_grads[layer][0], grads[layer][0]), ("db", exp_grads[layer][1], grads[layer][1])):
                m = compare_values(e, np.asarray(g), atol=1e-9, rtol=1e-7, path=f"grads[{layer}] {label}")
                if m:
                    bad.append(label)
                    first_bad = first_bad or m
            status.append(f"grads[{layer}] " + (" ".join(f"{b} {FAIL}" for b in bad) if bad else PASS))
        if first_bad is None and not problems:
            return None
        if first_bad:
            problems.append(first_bad)
        ratio = _scale_ratio([t for pair in exp_grads for t in pair], [t for pair in grads for t in pair])
        if ratio == 0.0:
            problems.append("all your gradients are 0: is tanh applied to the output layer? At these logits "
                            "it saturates, tanh' = 0 stops every gradient; the output layer stays linear "
                            "(softmax follows it)" if logit_shift else "all your gradients are 0: does the "
                            "backward pass start from delta_L = (softmax - one-hot) / N?")
        elif n > 1 and ratio is not None and abs(ratio - n) < 1e-6 * n:
            problems.append(f"your gradients are N = {n} times too large: the loss is a mean over the batch, "
                            "so delta_L carries a 1/N")
        elif n > 1 and ratio is not None and abs(ratio - 1 / n) < 1e-6 / n:
            problems.append(f"your gradients are N = {n} times too small: divide by N once, in delta_L")
        elif ratio is not None and abs(ratio - 1) > 1e-6:
            problems.append(f"your gradients are {ratio:.4g} times the expected ones")
        elif first_bad and len(params) > 1:
            last_ok = status[0].endswith(PASS)
            problems.append("the last layer is right, so δ_L is right; the error is in how δ goes back through "
                            "the hidden layers: δ_l = (δ_{l+1} W_{l+1}) * f'(Z_l), f'(Z) = 1 - tanh(Z)^2" if last_ok else
                            "the last layer is already wrong: look at delta_L (softmax minus one-hot, over N) and "
                            "dW = delta^T A_prev")
        if _loss_is_sum(exp_loss, loss, n):
            problems.append(f"the loss is N = {n} times too large: take the mean over the batch, not the sum")
        return "; ".join(problems) + (f" [per layer, last first: {', '.join(status)}]" if first_bad else "")

    return Case(name, test=test)


def _loss_is_sum(expected: float, got, n: int) -> bool:
    """True when ``got`` is ``n`` times ``expected`` (a sum instead of a mean)."""
    try:
        g = float(got)
    except (TypeError, ValueError):
        return False
    return n > 1 and abs(expected) > 1e-12 and abs(g / expected - n) < 1e-6 * n


def _logits(params, X) -> np.ndarray:
    h = X
    for i, (W, b) in enumerate(params):
        h = h @ W.T + b
        if i < len(params) - 1:
            h = np.tanh(h)
    return h


@tiered
def check_mlp_forward_backward(mlp_forward_backward: Callable) -> bool:
    """Check ``mlp_forward_backward(params, X, y) -> (loss, grads)`` against autograd (float64)."""
    cases = [
        _mlp_case("one hidden layer 4-5-3, batch 6", [4, 5, 3], 6, 0),
        _mlp_case("two hidden layers 3-8-6-4, batch 10", [3, 8, 6, 4], 10, 1),
        _mlp_case("a single sample, 2-3-2", [2, 3, 2], 1, 2),
        _mlp_case("no hidden layer (softmax regression) 5-4", [5, 4], 7, 3),
        _mlp_case("wide and deep 10-16-16-16-10, batch 32", [10, 16, 16, 16, 10], 32, 4),
        _mlp_case("large logits (every logit + 1000, softmax unchanged): a stable softmax", [4, 8, 3], 6, 5,
                  logit_shift=1000.0),
    ]
    return run_check(
        "mlp_forward_backward(params, X, y)", mlp_forward_backward, cases,
        hint="keep every activation from the forward pass; subtract each row's max from the logits before exp; "
             "the backward pass starts from the softmax-minus-one-hot error of the mean loss and applies the chain "
             "rule layer by layer, with tanh's derivative in the hidden layers (the per-layer status shows where "
             "it first goes wrong)",
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
