"""Checks for the visualization and adversarial lab (15): saliency_map, fgsm, pgd and gram_matrix.

References: autograd on small float64 models (a CNN with batch norm and dropout in eval
mode, so a model switched to training mode gives different numbers), known values on a
linear model whose input gradient is known in closed form (for two classes the gradient
of the cross-entropy has the sign of ``W[1 - y] - W[y]`` at every input), invariants
(the perturbation's L-infinity norm, the valid range [0, 1], the loss going up) and side
effects (the model stays in eval mode, no gradients collect in its parameters, the input
is not modified). ``gram_matrix`` is compared with ``torch.einsum``.
"""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_fgsm", "check_gram_matrix", "check_pgd", "check_saliency_map"]

# Linear two-class model on 2x2 single-channel images: W[1] - W[0] = [-2, 4, -1, 0], so the
# loss gradient for label 0 has signs [-1, +1, -1, 0] (and the opposite for label 1).
_W = [[1.0, -2.0, 0.5, 0.0], [-1.0, 2.0, -0.5, 0.0]]
_X_LINEAR = [0.05, 0.95, 0.5, 0.3]


def _cnn(seed: int, channels: int = 1, classes: int = 5, size: int = 8):
    """A float64 CNN in eval mode with non-trivial batch-norm statistics and dropout."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(8 * (size // 2) ** 2, classes),
    ).double()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
    return model.eval()


def _linear(W=None):
    """Flatten + Linear(4, 2) with bias 0 and the weights ``_W`` (float64, eval mode)."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(W or _W, dtype=torch.float64))
        model[1].bias.zero_()
    return model.eval()


def _images(seed: int, n: int, channels: int = 1, size: int = 8):
    """Images in [0, 1] with a quarter of the pixels exactly 0 or 1 (where clamping matters)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g, dtype=torch.float64)
    u = torch.rand(x.shape, generator=g, dtype=torch.float64)
    return torch.where(u < 0.15, torch.zeros_like(x), torch.where(u > 0.9, torch.ones_like(x), x))


def _labels(seed: int, n: int, classes: int = 5):
    import torch

    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed + 100))


def _input_grad(model, x, objective):
    import torch

    x = x.detach().clone().requires_grad_(True)
    grad, = torch.autograd.grad(objective(model(x)), x)
    return grad


def _ref_saliency(model, x, target):
    grad = _input_grad(model, x, lambda scores: scores.gather(1, target[:, None]).sum())
    return grad.abs().amax(dim=1)


def _ref_fgsm(model, x, y, eps):
    import torch.nn.functional as F

    grad = _input_grad(model, x, lambda logits: F.cross_entropy(logits, y))
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def _ref_pgd(model, x, y, eps, alpha, steps):
    import torch.nn.functional as F

    x_adv = x.detach().clone()
    for _ in range(steps):
        grad = _input_grad(model, x_adv, lambda logits: F.cross_entropy(logits, y))
        x_adv = x_adv + alpha * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv.detach()


def _buffers(model) -> dict:
    return {name: b.detach().clone() for name, b in model.named_buffers()}


def _side_effects(model, x, x_before, out, kind: str, buffers_before: dict | None = None) -> str | None:
    """Message when the student's call changed the model or the input, else None."""
    import torch

    if buffers_before is not None:
        changed = [n for n, b in model.named_buffers() if n in buffers_before and not torch.equal(b, buffers_before[n])]
        if changed:
            return (f"the model's batch-norm statistics changed ({changed[0]}): {kind} ran the model in training "
                    "mode; do not call model.train() (the caller puts the model in eval mode)")
    if model.training:
        return (f"the model was left in training mode: {kind} must not call model.train() (batch norm and "
                "dropout would behave differently); the caller puts the model in eval mode")
    leaked = [name for name, p in model.named_parameters() if p.grad is not None]
    if leaked:
        return (f"gradients collected in the model's parameters ({leaked[0]}.grad is set): use "
                "torch.autograd.grad(objective, x) to differentiate with respect to the input only, not .backward()")
    if not torch.equal(x, x_before):
        return "the input x was modified in place: work on a copy (x.clone().detach())"
    if kind != "saliency_map" and isinstance(out, torch.Tensor) and out.requires_grad:
        return "the result still carries autograd history: return it .detach()-ed"
    return None


def _compare_case(make, fn_args, reference, kind, atol=1e-9):
    """A case: build (model, inputs) with ``make``, compare with ``reference``, then the side effects."""

    def test(fn):
        model, args = make()
        x = args[0]
        x_before = x.clone()
        want = reference(model, *(a.clone() for a in args), **fn_args)
        buffers_before = _buffers(model)
        got = fn(model, *args, *fn_args.values())     # positional: a renamed parameter (epsilon) still works
        return (_side_effects(model, x, x_before, got, kind, buffers_before)
                or compare_values(want, got, atol=atol, rtol=1e-7))
    return test


@tiered
def check_saliency_map(saliency_map: Callable) -> bool:
    """Check ``saliency_map(model, x, target)`` -> (N, H, W): max over channels of |d score_target / d x|."""
    import torch

    def linear_case(fn):
        """Known values: for scores = W x + b the gradient of score_t is W[t], whatever x is."""
        model = _linear()
        x = torch.tensor([_X_LINEAR, [0.2, 0.4, 0.6, 0.8]], dtype=torch.float64).view(2, 1, 2, 2)
        target = torch.tensor([0, 1])
        want = torch.tensor(_W, dtype=torch.float64).abs().view(2, 2, 2)
        return compare_values(want, fn(model, x, target), atol=1e-12, path="saliency of a linear model (|W[t]|)")

    def linear_rgb_case(fn):
        """Known values with 3 channels: the maximum of |W[t]| over the channel dimension."""
        g = torch.Generator().manual_seed(7)
        W = torch.randn(3, 3 * 2 * 2, generator=g, dtype=torch.float64)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double().eval()
        with torch.no_grad():
            model[1].weight.copy_(W)
        x, target = torch.rand(3, 3, 2, 2, generator=g, dtype=torch.float64), torch.tensor([2, 0, 2])
        want = W[target].abs().view(3, 3, 2, 2).amax(dim=1)
        return compare_values(want, fn(model, x, target), atol=1e-12, path="max over channels of |W[t]|")

    def cnn(seed, n, channels=1):
        return lambda: (_cnn(seed, channels), (_images(seed, n, channels), _labels(seed, n)))

    cases = [
        Case("linear model, known gradient |W[target]|", test=linear_case),
        Case("linear model on 3-channel images: max over channels", test=linear_rgb_case),
        Case("CNN (batch norm, eval mode), N = 4, vs autograd", test=_compare_case(cnn(0, 4), {}, _ref_saliency,
                                                                                   "saliency_map")),
        Case("CNN on 3-channel images, N = 3", test=_compare_case(cnn(1, 3, channels=3), {}, _ref_saliency,
                                                                  "saliency_map")),
        Case("a single image (N = 1)", test=_compare_case(cnn(2, 1), {}, _ref_saliency, "saliency_map")),
        device_case(inputs=lambda: (_cnn(5), _images(5, 3), _labels(5, 3))),
    ]
    return run_check(
        "saliency_map(model, x, target)", saliency_map, cases,
        hint="the saliency is the gradient of the target class's raw score with respect to the input pixels, taken without touching the model's parameters; then its absolute value, reduced over channels",
        solution="x = x.clone().detach().requires_grad_(True); score = model(x).gather(1, target[:, None]).sum() "
             "(the raw class scores, not softmax probabilities or the loss); grad, = torch.autograd.grad(score, x); "
             "return grad.abs().amax(dim=1)  # (N, H, W)",
    )


def _loss_increases(model, x, y, out):
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        before, after = F.cross_entropy(model(x), y).item(), F.cross_entropy(model(out), y).item()
    return None if after > before else f"the loss did not increase: {before:.4f} before, {after:.4f} after"


def _invariant_case(make, call, eps, kind):
    """Range, L-infinity norm, loss increase and side effects on a CNN."""
    import torch

    def test(fn):
        model, (x, y) = make()
        x_before, buffers_before = x.clone(), _buffers(model)
        out = call(fn, model, x, y)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            return f"expected a tensor of shape {tuple(x.shape)}, got {getattr(out, 'shape', type(out).__name__)}"
        msg = _side_effects(model, x, x_before, out, kind, buffers_before)
        if msg:
            return msg
        out = out.detach()
        if out.min() < 0 or out.max() > 1:
            return (f"values outside the valid range [0, 1] (min {out.min().item():.4f}, max {out.max().item():.4f}): "
                    "clamp the result with .clamp(0, 1)")
        linf = (out - x).abs().max().item()
        if linf > eps + 1e-6:
            return f"||x_adv - x||_inf = {linf:.4f} > eps = {eps}: the perturbation must stay in the eps-ball around x"
        return _loss_increases(model, x, y, out)
    return test


@tiered
def check_fgsm(fgsm: Callable) -> bool:
    """Check ``fgsm(model, x, y, eps)`` = clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1)."""
    import torch

    x_lin = torch.tensor([_X_LINEAR], dtype=torch.float64).view(1, 1, 2, 2)

    def known(y, want):
        def test(fn):
            got = fn(_linear(), x_lin.clone(), torch.tensor([y]), 0.1)
            return compare_values(torch.tensor(want, dtype=torch.float64).view(1, 1, 2, 2), got, atol=1e-9,
                                  path=f"x_adv for x = {_X_LINEAR}, y = {y}, eps = 0.1")
        return test

    def cnn(seed, n, channels=1):
        return lambda: (_cnn(seed, channels), (_images(seed, n, channels), _labels(seed, n)))

    cases = [
        Case("linear model, label 0: signs [-1, +1, -1, 0], clamped to [0, 1]", test=known(0, [0.0, 1.0, 0.4, 0.3])),
        Case("linear model, label 1: the opposite signs", test=known(1, [0.15, 0.85, 0.6, 0.3])),
        Case("CNN, N = 6, eps = 0.1, vs reference", test=_compare_case(cnn(0, 6), {"eps": 0.1}, _ref_fgsm, "fgsm")),
        Case("CNN on 3-channel images, eps = 0.03", test=_compare_case(cnn(1, 4, 3), {"eps": 0.03}, _ref_fgsm, "fgsm")),
        Case("eps = 0 returns x", test=_compare_case(cnn(2, 3), {"eps": 0.0}, lambda m, x, y, eps: x, "fgsm")),
        Case("invariants: range [0, 1], ||delta||_inf <= eps, loss goes up, model untouched",
             test=_invariant_case(cnn(3, 8), lambda fn, m, x, y: fn(m, x, y, 0.05), 0.05, "fgsm")),
        device_case(inputs=lambda: (_cnn(5), _images(5, 3), _labels(5, 3), 0.1)),
    ]
    return run_check(
        "fgsm(model, x, y, eps)", fgsm, cases,
        hint="one step of size eps in the direction of the SIGN of the loss gradient with respect to the input, then back into the valid pixel range; the model's parameters must not collect gradients",
        solution="x_adv = x.clone().detach().requires_grad_(True); loss = F.cross_entropy(model(x_adv), y); "
             "grad, = torch.autograd.grad(loss, x_adv)  (not loss.backward(): no gradients into the model); "
             "return (x + eps * grad.sign()).clamp(0, 1).detach()  (plus: it increases the loss)",
    )


@tiered
def check_pgd(pgd: Callable) -> bool:
    """Check ``pgd(model, x, y, eps, alpha, steps)``: no random start, projection after every step."""
    import torch

    x_lin = torch.tensor([_X_LINEAR], dtype=torch.float64).view(1, 1, 2, 2)

    def known(fn):
        """The linear model's gradient sign never changes, so after 4 steps of 0.04 every pixel that
        can move has moved by eps = 0.1 (not 0.16): the eps-ball must be enforced at each step."""
        got = fn(_linear(), x_lin.clone(), torch.tensor([0]), 0.1, 0.04, 4)
        return compare_values(torch.tensor([0.0, 1.0, 0.4, 0.3], dtype=torch.float64).view(1, 1, 2, 2), got,
                              atol=1e-9, path="x_adv after 4 steps of 0.04 with eps = 0.1")

    def cnn(seed, n, channels=1):
        return lambda: (_cnn(seed, channels), (_images(seed, n, channels), _labels(seed, n)))

    def fgsm_case(fn):
        model, (x, y) = cnn(4, 5)()
        return compare_values(_ref_fgsm(model, x, y, 0.1), fn(model, x, y, 0.1, 0.1, 1), atol=1e-9,
                              path="one step with alpha = eps (should equal FGSM)")

    cases = [
        Case("linear model: 4 steps of 0.04, eps = 0.1 (projection onto the eps-ball)", test=known),
        Case("one step with alpha = eps equals FGSM", test=fgsm_case),
        Case("CNN, eps = 0.1, alpha = 0.025, 10 steps, vs reference",
             test=_compare_case(cnn(0, 6), {"eps": 0.1, "alpha": 0.025, "steps": 10}, _ref_pgd, "pgd")),
        Case("CNN, eps = 0.05, alpha = 0.02, 5 steps, 3 channels",
             test=_compare_case(cnn(1, 4, 3), {"eps": 0.05, "alpha": 0.02, "steps": 5}, _ref_pgd, "pgd")),
        Case("steps = 0 returns x (no random start)",
             test=_compare_case(cnn(2, 3), {"eps": 0.1, "alpha": 0.02, "steps": 0}, lambda m, x, *a, **k: x, "pgd")),
        Case("invariants: range [0, 1], ||delta||_inf <= eps, loss goes up, model untouched",
             test=_invariant_case(cnn(3, 8), lambda fn, m, x, y: fn(m, x, y, 0.05, 0.02, 6), 0.05, "pgd")),
        device_case(inputs=lambda: (_cnn(5), _images(5, 3), _labels(5, 3), 0.1, 0.025, 3)),
    ]
    return run_check(
        "pgd(model, x, y, eps, alpha, steps)", pgd, cases,
        hint='repeat small signed-gradient steps from x itself, and after each step project back into the eps-box around the ORIGINAL x and into the pixel range',
        solution="start at x_adv = x (no random start); each step: the gradient of the loss at the CURRENT x_adv "
             "(torch.autograd.grad), x_adv = x_adv + alpha * grad.sign(), then project: "
             "x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)  (around the ORIGINAL x, every step)",
    )


@tiered
def check_gram_matrix(gram_matrix: Callable) -> bool:
    """Check ``gram_matrix(features)``: (N, C, H, W) -> (N, C, C), F F^T / (H * W), against einsum."""
    import torch

    def reference(f):
        return torch.einsum("nchw,ndhw->ncd", f, f) / (f.shape[-2] * f.shape[-1])

    def randn(*shape, seed=0):
        return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def normalised_case(fn):
        """Compare, and name the normalisation when the result is off by a constant factor."""
        f = randn(2, 3, 4, 5)
        want, got = reference(f), fn(f.clone())
        msg = compare_values(want, got, atol=1e-9)
        N, C, H, W = f.shape
        if msg is not None and isinstance(got, torch.Tensor) and tuple(got.shape) == (N * C, N * C):
            return (f"{msg} (each image needs its own Gram matrix: reshape to (N, C, H * W) and use a batched "
                    "matmul, not a view(N * C, H * W) that mixes the images of the batch)")
        if msg is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return msg
        for factor, why in ((1 / C, "divided by C * H * W (the normalisation of Johnson et al. 2016, perceptual "
                                    "losses); the Gram matrix here is the average over positions: divide by H * W only"),
                            (H * W, "not divided at all: divide by H * W, the number of positions"),
                            (1 / N, "divided by the batch size too: each image has its own Gram matrix"),
                            (1 / (N * C), "divided by N * C * H * W, as in the PyTorch neural-style tutorial, whose "
                                          "batch holds one image; here divide by H * W only")):
            if compare_values(want * factor, got, atol=1e-9) is None:
                return f"{msg} (that is {why})"
        return msg

    def ones_case(fn):
        got = fn(torch.ones(2, 3, 4, 5, dtype=torch.float64))
        return compare_values(torch.ones(2, 3, 3, dtype=torch.float64), got, atol=1e-12,
                              path="all-ones features (every entry is mean(1 * 1) = 1)")

    def grad_case(fn):
        f = randn(1, 4, 3, 3, seed=5).requires_grad_(True)
        out = fn(f)
        if not isinstance(out, torch.Tensor) or out.grad_fn is None:
            return "the result has no autograd history: use torch operations only, so style losses can backpropagate"
        grad, = torch.autograd.grad(out.sum(), f)
        want, = torch.autograd.grad(reference(f).sum(), f)
        return compare_values(want, grad, atol=1e-9, path="gradient of sum(G) with respect to the features")

    def dtype_case(fn):
        f = randn(2, 3, 4, 4, seed=6).float()
        return compare_values(reference(f), fn(f), atol=1e-5, path="float32 features")

    cases = [
        Case("random (N, C, H, W) = (2, 3, 4, 5) vs einsum", test=normalised_case),
        Case("all-ones features give an all-ones Gram matrix", test=ones_case),
        Case("many channels, few pixels: (1, 8, 2, 3)", args=(randn(1, 8, 2, 3, seed=1),), expected=reference,
             atol=1e-9),
        Case("batch of 3, one channel, (3, 1, 6, 6)", args=(randn(3, 1, 6, 6, seed=2),), expected=reference,
             atol=1e-9),
        Case("one pixel: G = f f^T, (2, 4, 1, 1)", args=(randn(2, 4, 1, 1, seed=3),), expected=reference, atol=1e-9),
        Case("float32 in, float32 out", test=dtype_case),
        Case("differentiable (style losses backpropagate through it)", test=grad_case),
        device_case(randn(2, 3, 4, 5, seed=7)),
    ]
    return run_check(
        "gram_matrix(features)", gram_matrix, cases,
        hint='the Gram matrix holds, for every pair of channels, the average over positions of the product of their activations',
        solution="N, C, H, W = features.shape; F = features.reshape(N, C, H * W); "
             "return F @ F.transpose(1, 2) / (H * W)  # (N, C, C): channel-by-channel averages over positions",
    )
