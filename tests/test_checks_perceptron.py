"""The lab-01 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils.checks import perceptron as checks


def _quiet(check, fn, capsys) -> bool:
    verdict = check(fn)
    out = capsys.readouterr().out
    assert bool(re.search(r"^✓ all \d+ cases passed$", out, re.M)) == verdict
    return verdict


# ----- perceptron_fit -------------------------------------------------------------------------
def perceptron_vectorised_style(X, y, epochs, lr):
    """Correct, written differently: augmented weight vector, lists, ints."""
    wb = np.zeros(X.shape[1] + 1)
    Xa = np.hstack([X, np.ones((len(X), 1))])
    history = []
    for _ in range(epochs):
        n = 0
        for i in range(len(Xa)):
            pred = 1 if Xa[i] @ wb > 0 else 0
            delta = y[i] - pred
            if delta:
                wb += lr * delta * Xa[i]
                n += 1
        history.append(n)
        if not n:
            break
    return wb[:-1], float(wb[-1]), history


def perceptron_ge(X, y, epochs, lr):
    w, b, errs = np.zeros(X.shape[1]), 0.0, []
    for _ in range(epochs):
        n = 0
        for xi, yi in zip(X, y, strict=False):
            yh = float(w @ xi + b >= 0)  # mistake: >= instead of >
            if yh != yi:
                w, b, n = w + lr * (yi - yh) * xi, b + lr * (yi - yh), n + 1
        errs.append(n)
        if n == 0:
            break
    return w, b, errs


def perceptron_no_early_stop(X, y, epochs, lr):
    w, b, errs = np.zeros(X.shape[1]), 0.0, []
    for _ in range(epochs):
        n = 0
        for xi, yi in zip(X, y, strict=False):
            yh = float(w @ xi + b > 0)
            if yh != yi:
                w, b, n = w + lr * (yi - yh) * xi, b + lr * (yi - yh), n + 1
        errs.append(n)
    return w, b, errs


def perceptron_no_bias(X, y, epochs, lr):
    w, errs = np.zeros(X.shape[1]), []
    for _ in range(epochs):
        n = 0
        for xi, yi in zip(X, y, strict=False):
            yh = float(w @ xi > 0)
            if yh != yi:
                w, n = w + lr * (yi - yh) * xi, n + 1
        errs.append(n)
        if n == 0:
            break
    return w, 0.0, errs


def perceptron_batch_update(X, y, epochs, lr):
    w, b, errs = np.zeros(X.shape[1]), 0.0, []
    for _ in range(epochs):
        yh = (X @ w + b > 0).astype(float)  # mistake: one batch update per epoch
        d = y - yh
        w, b = w + lr * d @ X, b + lr * d.sum()
        errs.append(int((d != 0).sum()))
        if errs[-1] == 0:
            break
    return w, b, errs


def test_perceptron_check_accepts_reference_and_alternative(capsys):
    assert _quiet(checks.check_perceptron_fit, checks.reference_perceptron_fit, capsys)
    assert _quiet(checks.check_perceptron_fit, perceptron_vectorised_style, capsys)


@pytest.mark.parametrize("wrong", [perceptron_ge, perceptron_no_early_stop, perceptron_no_bias,
                                   perceptron_batch_update])
def test_perceptron_check_rejects_mistakes(wrong, capsys):
    assert not _quiet(checks.check_perceptron_fit, wrong, capsys)


# ----- hinge_loss -----------------------------------------------------------------------------
def hinge_alternative(scores, y, w, lam):
    return 0.5 * lam * w.dot(w) + F.relu(1 - y * scores).sum()


@pytest.mark.parametrize("wrong", [
    lambda s, y, w, lam: lam / 2 * (w**2).sum() + torch.clamp(1 - y * s, min=0).mean(),  # mean
    lambda s, y, w, lam: lam * (w**2).sum() + torch.clamp(1 - y * s, min=0).sum(),  # no 1/2
    lambda s, y, w, lam: lam / 2 * (w**2).sum() + (1 - y * s).sum(),  # no max(0, .)
    lambda s, y, w, lam: torch.clamp(1 - y * s, min=0).sum(),  # no regulariser
    lambda s, y, w, lam: float(lam / 2 * (w**2).sum().detach() + torch.clamp(1 - y * s, min=0).sum().detach()),  # no grad
])
def test_hinge_check_rejects_mistakes(wrong, capsys):
    assert not _quiet(checks.check_hinge_loss, wrong, capsys)


def test_hinge_check_accepts_alternative(capsys):
    assert _quiet(checks.check_hinge_loss, hinge_alternative, capsys)


# ----- softmax_cross_entropy ------------------------------------------------------------------
def ce_alternative(logits, y):
    return (torch.logsumexp(logits, dim=1) - logits[torch.arange(len(y)), y]).mean()


@pytest.mark.parametrize("wrong", [
    lambda z, y: -torch.log(torch.exp(z)[torch.arange(len(y)), y] / torch.exp(z).sum(1)).mean(),  # unstable
    lambda z, y: (torch.logsumexp(z, 1) - z[torch.arange(len(y)), y]).sum(),  # sum, not mean
    lambda z, y: (torch.logsumexp(z, 0).mean() - z[torch.arange(len(y)), y].mean()),  # wrong dim
    lambda z, y: -torch.log_softmax(z, 1)[:, 0].mean(),  # ignores labels
])
def test_ce_check_rejects_mistakes(wrong, capsys):
    assert not _quiet(checks.check_softmax_cross_entropy, wrong, capsys)


def test_ce_check_accepts_alternative_and_torch(capsys):
    assert _quiet(checks.check_softmax_cross_entropy, ce_alternative, capsys)
    assert _quiet(checks.check_softmax_cross_entropy, F.cross_entropy, capsys)


# ----- softmax_cross_entropy_grad (lab 01, Exercise 4.2) --------------------------------------
def ce_grad_softmax_minus_onehot(logits, y):
    p = torch.softmax(logits, dim=1)
    return (p - torch.nn.functional.one_hot(y, logits.shape[1]).to(p.dtype)) / len(y)


def ce_grad_in_place(logits, y):
    p = torch.softmax(logits, dim=1)
    p[torch.arange(len(y), device=logits.device), y] -= 1
    return p / len(y)


def _grad_ok(fn, capsys) -> bool:
    ok = checks.check_softmax_cross_entropy_grad(fn)
    capsys.readouterr()
    return ok


def test_softmax_cross_entropy_grad_check(capsys):
    assert _grad_ok(ce_grad_softmax_minus_onehot, capsys)
    assert _grad_ok(ce_grad_in_place, capsys)
    for wrong, why in ((lambda z, y: ce_grad_in_place(z, y) * len(y), "SUM over the batch"),
                       (lambda z, y: -ce_grad_in_place(z, y), "sign is flipped")):
        assert not _grad_ok(wrong, capsys)
        checks.check_softmax_cross_entropy_grad(wrong)
        assert why in capsys.readouterr().out

    def naive_exp(z, y):                     # exp overflows (float64) for logits of 800
        e = torch.exp(z)
        p = e / e.sum(1, keepdim=True)
        p[torch.arange(len(y)), y] -= 1
        return p / len(y)
    assert not _grad_ok(naive_exp, capsys)

    def eye_on_cpu(z, y):                    # torch.eye(C)[y] indexes a CPU matrix with y: a GPU trap
        return (torch.softmax(z, dim=1) - torch.eye(z.shape[1], dtype=z.dtype)[y]) / len(y)
    assert not _grad_ok(eye_on_cpu, capsys)


# ----- feedback that names the right cause (review of lab 01) ----------------------------------
def perceptron_plus_minus_one(X, y, epochs, lr):
    """Mistake: labels mapped to -1/+1 and an update whenever y * score <= 0 (a zero score is an error)."""
    w, b, errs, t = np.zeros(X.shape[1]), 0.0, [], 2 * np.asarray(y) - 1
    for _ in range(epochs):
        n = 0
        for xi, ti in zip(X, t, strict=False):
            if ti * (w @ xi + b) <= 0:
                w, b, n = w + lr * ti * xi, b + lr * ti, n + 1
        errs.append(n)
        if n == 0:
            break
    return w, b, errs


def _out(check, fn, capsys) -> str:
    check(fn)
    return capsys.readouterr().out


def test_perceptron_wrong_updates_are_not_blamed_on_the_stop(capsys):
    for wrong in (perceptron_ge, perceptron_no_bias, perceptron_batch_update):
        out = _out(checks.check_perceptron_fit, wrong, capsys)
        assert "your updates differ from the rule before any early stop" in out
        assert "stop after the first epoch without errors)" not in out
    out = _out(checks.check_perceptron_fit, perceptron_ge, capsys)
    assert "already correct data: one epoch, no update: epoch 1: expected 0 updates, got 1" in out
    assert "> 0 (a score of exactly 0 predicts 0)" in out and "update b as well as w" in out


def test_perceptron_missing_stop_is_named(capsys):
    out = _out(checks.check_perceptron_fit, perceptron_no_early_stop, capsys)
    assert "(stop after the first epoch without errors)" in out
    assert "your updates differ" not in out


def test_perceptron_blob_case_needs_several_epochs_and_rejects_the_zero_score_update(capsys):
    assert not _quiet(checks.check_perceptron_fit, perceptron_plus_minus_one, capsys)
    out = _out(checks.check_perceptron_fit, perceptron_plus_minus_one, capsys)
    assert "✗ separable 3-D blobs" in out
    out = _out(checks.check_perceptron_fit, checks.reference_perceptron_fit, capsys)
    assert "✓ separable 3-D blobs" in out


def test_ce_check_names_a_summed_loss_and_a_flipped_sign(capsys):
    out = _out(checks.check_softmax_cross_entropy,
               lambda z, y: (torch.logsumexp(z, 1) - z[torch.arange(len(y)), y]).sum(), capsys)
    assert "N = 16 times the mean: average over the batch" in out
    out = _out(checks.check_softmax_cross_entropy,
               lambda z, y: (z[torch.arange(len(y)), y] - torch.logsumexp(z, 1)).mean(), capsys)
    assert "the sign is flipped" in out


def test_ce_grad_float32_result_is_a_dtype_problem_not_a_row_sum_problem(capsys):
    out = _out(checks.check_softmax_cross_entropy_grad, lambda z, y: ce_grad_in_place(z, y).float(), capsys)
    assert "✓ rows sum to zero" in out and "each row of the gradient should sum to 0" not in out
    assert "dtype: expected torch.float64, got torch.float32" in out


def test_one_hot_without_num_classes_is_named(capsys):
    """F.one_hot(y) infers C from y.max() + 1: a case whose labels omit the last class catches it."""
    def grad_one_hot_inferred(z, y):
        return (torch.softmax(z, 1) - F.one_hot(y).to(z.dtype)) / len(y)

    def loss_one_hot_inferred(z, y):
        m = z.max(1, keepdim=True).values
        log_p = z - m - torch.log(torch.exp(z - m).sum(1, keepdim=True))
        return -(F.one_hot(y).to(z.dtype) * log_p).sum(1).mean()

    for check, wrong in ((checks.check_softmax_cross_entropy_grad, grad_one_hot_inferred),
                         (checks.check_softmax_cross_entropy, loss_one_hot_inferred)):
        out = _out(check, wrong, capsys)
        assert "✗ labels omit the last class" in out
        assert "F.one_hot(y) infers C from y.max() + 1" in out and "num_classes=logits.shape[1]" in out

    def loss_one_hot_num_classes(z, y):            # the same code with num_classes: correct
        m = z.max(1, keepdim=True).values
        log_p = z - m - torch.log(torch.exp(z - m).sum(1, keepdim=True))
        return -(F.one_hot(y, z.shape[1]).to(z.dtype) * log_p).sum(1).mean()
    assert _quiet(checks.check_softmax_cross_entropy, loss_one_hot_num_classes, capsys)
    assert _grad_ok(ce_grad_softmax_minus_onehot, capsys)
    assert "✓ labels omit the last class" in _out(checks.check_softmax_cross_entropy_grad, ce_grad_in_place, capsys)
