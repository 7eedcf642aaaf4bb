"""Checks for the perceptron and linear-classifier lab (01)."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_perceptron_fit", "check_hinge_loss", "check_softmax_cross_entropy",
           "check_softmax_cross_entropy_grad",
           "reference_perceptron_fit"]


_ONE_HOT = ("F.one_hot(y) infers C from y.max() + 1, and these labels omit the last class: "
            "pass num_classes=logits.shape[1]")


def _call_diagnosing_one_hot(fn, logits, y):
    """Return ``(fn(logits, y), None)``, or ``(None, message)`` when fn fails only because a
    one-hot built without ``num_classes`` has fewer columns than ``logits``."""
    try:
        return fn(logits, y), None
    except RuntimeError as exc:
        C, inferred = logits.shape[1], int(y.max()) + 1
        sizes = re.search(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)", str(exc))
        if inferred < C and sizes and {int(sizes[1]), int(sizes[2])} == {C, inferred}:
            return None, _ONE_HOT
        raise


def reference_perceptron_fit(X: np.ndarray, y: np.ndarray, epochs: int, lr: float):
    """Compact reference of the perceptron rule (no library implements this exact variant:
    scikit-learn's Perceptron also updates on a zero score)."""
    w, b, errors = np.zeros(X.shape[1]), 0.0, []
    for _ in range(epochs):
        n_err = 0
        for xi, yi in zip(X, y, strict=False):
            y_hat = float(w @ xi + b > 0)
            if y_hat != yi:
                w = w + lr * (yi - y_hat) * xi
                b = b + lr * (yi - y_hat)
                n_err += 1
        errors.append(n_err)
        if n_err == 0:
            break
    return w, b, errors


def _as_result(out):
    """Normalise (w, b, errors) so that NumPy/float/list variants compare equally."""
    w, b, errors = out
    return np.asarray(w, dtype=np.float64), float(b), [int(e) for e in errors]


def _perceptron_case(name, X, y, epochs, lr) -> Case:
    def test(fn):
        got = fn(X.copy(), y.copy(), epochs, lr)
        if not isinstance(got, tuple) or len(got) != 3:
            return f"expected a tuple (w, b, errors_per_epoch), got {type(got).__name__}"
        try:
            got = _as_result(got)
        except (TypeError, ValueError) as exc:
            return f"could not read (w, b, errors_per_epoch): {exc}"
        expected = _as_result(reference_perceptron_fit(X, y, epochs, lr))
        want, have = expected[2], got[2]
        first_diff = next((k for k, (e, g) in enumerate(zip(want, have)) if e != g), None)
        if first_diff is not None:      # the updates themselves differ, whatever the stopping rule
            n_want = f"{want[first_diff]} update" + ("" if want[first_diff] == 1 else "s")
            return (f"epoch {first_diff + 1}: expected {n_want}, got {have[first_diff]} "
                    f"(your updates differ from the rule before any early stop): expected {want}, got {have}")
        if len(have) != len(want):      # one list is a prefix of the other: only the stop differs
            return (f"errors_per_epoch has {len(have)} entries, expected {len(want)} "
                    f"(stop after the first epoch without errors): expected {want}, got {have}")
        for label, e, g in zip(("w", "b", "errors_per_epoch"), expected, got):
            msg = compare_values(e, g, atol=1e-9, rtol=1e-9, path=label)
            if msg:
                return msg
        return None

    return Case(name, test=test)


@tiered
def check_perceptron_fit(perceptron_fit: Callable) -> bool:
    """Check ``perceptron_fit(X, y, epochs, lr) -> (w, b, errors_per_epoch)``."""
    rng = np.random.default_rng(3)
    gates = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    # close blobs (centres at -1 and +1, std 1): still separable, but several epochs of updates
    blobs = np.concatenate([rng.normal(-1, 1.0, (20, 3)), rng.normal(1, 1.0, (20, 3))])
    blob_y = np.repeat([0.0, 1.0], 20)
    order = rng.permutation(40)
    order = np.roll(order, -int(np.argmax(blob_y[order] == 0)))   # a class-0 row first, met with w = 0, b = 0
    cases = [
        _perceptron_case("AND gate, lr=1 (known values)", gates, np.array([0, 0, 0, 1.0]), 20, 1.0),
        _perceptron_case("OR gate, lr=0.5", gates, np.array([0, 1, 1, 1.0]), 20, 0.5),
        _perceptron_case("XOR never converges: all 7 epochs run", gates, np.array([0, 1, 1, 0.0]), 7, 1.0),
        _perceptron_case("separable 3-D blobs (rows pre-shuffled), lr=0.1", blobs[order], blob_y[order], 50, 0.1),
        _perceptron_case("already correct data: one epoch, no update",
                         np.array([[-1.0, 0.0], [-2.0, 1.0]]), np.array([0, 0.0]), 10, 1.0),
    ]
    return run_check(
        "perceptron_fit(X, y, epochs, lr)", perceptron_fit, cases,
        hint="Rosenblatt's rule: visit the samples in order; predict 1 only when w·x + b > 0 (a score of exactly 0 "
             "predicts 0); change w and b only when a sample is misclassified, and update b as well as w; "
             "stop after an epoch without errors",
        solution="start from w = 0, b = 0; visit samples in the given order; predict y_hat = "
             "float(w @ x + b > 0) (strictly greater); update w += lr * (y - y_hat) * x and "
             "b += lr * (y - y_hat); count updates per epoch and stop after an epoch with none",
    )


def _ref_hinge(scores, y, w, lam):
    from sklearn.metrics import hinge_loss

    n = len(y)
    data = float(hinge_loss(y.numpy(), scores.detach().numpy().astype(np.float64))) * n
    return float(lam / 2 * (w.double() ** 2).sum()) + data


@tiered
def check_hinge_loss(hinge_loss: Callable) -> bool:
    """Check ``hinge_loss(scores, y, w, lam)`` = lam/2 ||w||^2 + sum_i max(0, 1 - y_i s_i)."""
    import torch

    g = torch.Generator().manual_seed(0)
    s = torch.randn(30, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 2, (30,), generator=g) * 2 - 1
    w = torch.randn(5, generator=g, dtype=torch.float64)

    def grad_case(fn):
        sc = s.clone().requires_grad_(True)
        wc = w.clone().requires_grad_(True)
        out = fn(sc, y.clone(), wc, 0.1)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return "return a torch scalar built from the inputs, so autograd can train with it"
        out.backward()
        if wc.grad is None or sc.grad is None:
            return ("your loss does not depend on w and scores through autograd: keep every step "
                    "in torch (no .item(), .numpy() or float())")
        expected_w = 0.1 * w
        msg = compare_values(expected_w, wc.grad, atol=1e-9, rtol=1e-7, path="d loss / d w")
        if msg:
            return msg
        margin_active = (1 - y * s) > 0
        expected_s = torch.where(margin_active, -y.double(), torch.zeros_like(s))
        return compare_values(expected_s, sc.grad, atol=1e-9, rtol=1e-7, path="d loss / d scores")

    cases = [
        Case("all margins satisfied, lam=0 -> 0",
             (torch.tensor([2.0, -3.0]), torch.tensor([1, -1]), torch.zeros(2), 0.0), expected=0.0),
        Case("known values: s=(0.5, 0.5), y=(1, -1), w=(3, 4), lam=0.1",
             (torch.tensor([0.5, 0.5]), torch.tensor([1, -1]), torch.tensor([3.0, 4.0]), 0.1),
             expected=0.5 + 1.5 + 0.05 * 25),
        Case("30 random scores vs scikit-learn hinge_loss x N + L2", (s, y, w, 0.3),
             expected=_ref_hinge, atol=1e-8, rtol=1e-8),
        Case("a sum over samples, not a mean (N=30, lam=0)", (s, y, w, 0.0),
             expected=_ref_hinge, atol=1e-8, rtol=1e-8),
        Case("gradients w.r.t. w and the scores (autograd)", test=grad_case),
        device_case(s, y, w, 0.3),
    ]
    return run_check(
        "hinge_loss(scores, y, w, lam)", hinge_loss, cases,
        hint='a sum over samples of how far each one falls short of margin 1, plus the L2 penalty on w',
        solution="the data term is a SUM over samples of max(0, 1 - y_i s_i) (torch.clamp does the max); "
             "the regularizer is lam / 2 times the squared norm of w; stay in torch for autograd",
    )


@tiered
def check_softmax_cross_entropy(softmax_cross_entropy: Callable) -> bool:
    """Check ``softmax_cross_entropy(logits, y)`` against ``torch.nn.functional.cross_entropy``."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    big = torch.tensor([[1000.0, 0.0, -1000.0], [-500.0, 800.0, 790.0]])
    big_y = torch.tensor([1, 2])

    def diagnosed(z, t, atol):
        """Compare with F.cross_entropy; name a summed loss or a flipped sign."""
        def test(fn):
            want = F.cross_entropy(z, t)
            got, one_hot = _call_diagnosing_one_hot(fn, z.clone(), t.clone())
            if one_hot:
                return one_hot
            msg = compare_values(want, got, atol=atol, rtol=1e-5)
            if msg is None:
                return None
            n = len(t)
            others = [(-want, "the sign is flipped: the loss is -log p(true class), which is >= 0")]
            if n > 1:
                others.insert(0, (want * n, f"N = {n} times the mean: average over the batch, do not sum"))
            for other, why in others:
                if compare_values(other, got, atol=atol * n, rtol=1e-5) is None:
                    return f"{msg} (that is {why})"
            return msg
        return test

    def grad_case(fn):
        x = logits.clone().double().requires_grad_(True)
        out = fn(x, y)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return "return a torch scalar built from the logits, so autograd can train with it"
        out.backward()
        if x.grad is None:
            return "your loss does not depend on the logits through autograd: keep every step in torch"
        ref = logits.clone().double().requires_grad_(True)
        F.cross_entropy(ref, y).backward()
        return compare_values(ref.grad, x.grad, atol=1e-10, rtol=1e-7, path="d loss / d logits")

    cases = [
        Case("16 x 10 random logits", test=diagnosed(logits, y, 1e-6)),
        Case("uniform logits give log(C) = log(4)", test=diagnosed(torch.zeros(3, 4), torch.tensor([0, 1, 3]), 1e-6)),
        Case("one sample", (logits[:1], y[:1]), expected=F.cross_entropy, atol=1e-6),
        Case("labels omit the last class (N = 6, C = 5, y in 0..3)",
             test=diagnosed(logits[:6, :5], torch.tensor([0, 3, 1, 2, 3, 0]), 1e-6)),
        Case("huge logits (+-1000): numerically stable, finite", (big, big_y),
             expected=F.cross_entropy, atol=1e-4),
        Case("gradient equals PyTorch's (float64)", test=grad_case),
        device_case(logits, y),
    ]
    return run_check(
        "softmax_cross_entropy(logits, y)", softmax_cross_entropy, cases,
        hint='log-softmax without overflow: shift each row by its maximum first; the loss is the batch mean of -log p(true class)',
        solution="subtract the row maximum before exponentiating (log-sum-exp trick); the loss "
             "is the mean over the batch of logsumexp(logits_i) - logits_i[y_i]",
    )


@tiered
def check_softmax_cross_entropy_grad(softmax_cross_entropy_grad: Callable) -> bool:
    """Check ``softmax_cross_entropy_grad(logits, y)``: d(mean cross-entropy)/d(logits), against autograd."""
    import torch
    import torch.nn.functional as F

    def autograd_reference(logits, y):
        z = logits.detach().clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(z, y), z)
        return grad

    def diagnosed(N, C, seed, scale=1.0, n_labels=None):
        def test(fn):
            g = torch.Generator().manual_seed(seed)
            logits = scale * torch.randn(N, C, generator=g, dtype=torch.float64)
            y = torch.randint(0, n_labels or C, (N,), generator=g)
            got, one_hot = _call_diagnosing_one_hot(fn, logits.clone(), y.clone())
            if one_hot:
                return one_hot
            want = autograd_reference(logits, y)
            msg = compare_values(want, got, atol=1e-10, rtol=1e-7, path="gradient")
            if msg is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
                return msg
            for other, why in ((want * N, "the gradient of the SUM over the batch: divide by N for the mean"),
                               (-want, "the sign is flipped: softmax minus one-hot, not one-hot minus softmax")):
                if compare_values(other, got, atol=1e-10, rtol=1e-7) is None:
                    return f"{msg} (that is {why})"
            return msg
        return test

    def rows_sum_to_zero(fn):
        logits = torch.randn(7, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        got = fn(logits, torch.tensor([0, 1, 2, 3, 0, 1, 2]))
        if not isinstance(got, torch.Tensor) or got.ndim != 2:
            return "expected an (N, C) tensor"
        if not got.is_floating_point():
            return f"expected a floating-point gradient, got dtype {got.dtype}"
        # tolerance from the returned dtype: a float32 result is judged (and its dtype reported) elsewhere
        tol = max(1e-12, 16 * torch.finfo(got.dtype).eps)
        if got.sum(1).abs().max() > tol:
            return "each row of the gradient should sum to 0 (softmax sums to 1, the one-hot too)"
        return None

    cases = [
        Case("N = 8, C = 5 vs autograd", test=diagnosed(8, 5, 0)),
        Case("one sample, 3 classes", test=diagnosed(1, 3, 1)),
        Case("labels omit the last class (N = 6, C = 5, y in 0..3)", test=diagnosed(6, 5, 3, n_labels=4)),
        Case("large logits (about +-800, float64): finite, stable softmax", test=diagnosed(6, 4, 2, scale=800.0)),
        Case("rows sum to zero", test=rows_sum_to_zero),
        device_case(inputs=lambda: (torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0]))),
    ]
    return run_check(
        "softmax_cross_entropy_grad(logits, y)", softmax_cross_entropy_grad, cases,
        hint="differentiate -log softmax(z)_y by hand: every logit gets its probability, the true class one less; "
             "the loss is a mean over the batch",
        solution="p = torch.softmax(logits, dim=1); p[torch.arange(N, device=logits.device), y] -= 1; return p / N",
    )
