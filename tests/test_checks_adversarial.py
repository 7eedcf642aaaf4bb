"""The lab-15 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import check_verdict as _verdict

from utils.checks import adversarial as checks


def _grad(model, x, objective):
    x = x.clone().detach().requires_grad_(True)
    grad, = torch.autograd.grad(objective(model(x)), x)
    return grad


# ---------------------------------------------------------------- saliency_map
def saliency_ok(model, x, target):
    grad = _grad(model, x, lambda s: s.gather(1, target[:, None]).sum())
    return grad.abs().amax(dim=1)


def saliency_func(model, x, target):
    """Correct, written differently: torch.func.vmap over per-image gradients, max via .values."""
    def score(xi, t):
        return model(xi[None])[0].gather(0, t[None]).sum()
    return torch.func.vmap(torch.func.grad(score))(x, target).abs().max(dim=1).values


def test_saliency_check(capsys):
    assert _verdict(checks.check_saliency_map, saliency_ok, capsys)
    assert _verdict(checks.check_saliency_map, saliency_func, capsys)

    def no_abs(model, x, target):
        return _grad(model, x, lambda s: s.gather(1, target[:, None]).sum()).amax(dim=1)

    def sum_channels(model, x, target):
        return _grad(model, x, lambda s: s.gather(1, target[:, None]).sum()).abs().sum(dim=1)

    def of_probability(model, x, target):
        return _grad(model, x, lambda s: s.softmax(1).gather(1, target[:, None]).sum()).abs().amax(dim=1)

    def of_loss(model, x, target):
        return _grad(model, x, lambda s: F.cross_entropy(s, target)).abs().amax(dim=1)

    def predicted_class(model, x, target):
        return saliency_ok(model, x, model(x).argmax(1))

    def leaks_grads(model, x, target):
        x = x.clone().requires_grad_(True)
        model(x).gather(1, target[:, None]).sum().backward()
        return x.grad.abs().amax(dim=1)

    def keeps_channel_dim(model, x, target):
        return saliency_ok(model, x, target)[:, None]

    for wrong in (no_abs, sum_channels, of_probability, of_loss, predicted_class, leaks_grads, keeps_channel_dim):
        assert not _verdict(checks.check_saliency_map, wrong, capsys), wrong.__name__


# ---------------------------------------------------------------- fgsm
def fgsm_ok(model, x, y, eps):
    grad = _grad(model, x, lambda logits: F.cross_entropy(logits, y))
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def fgsm_sum(model, x, y, eps):
    """Correct, written differently: summed loss, torch.where for the sign, min/max clamp, no_grad."""
    x_adv = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), y, reduction="sum")
    grad, = torch.autograd.grad(loss, [x_adv])
    with torch.no_grad():
        step = torch.where(grad > 0, 1.0, torch.where(grad < 0, -1.0, 0.0)).to(x.dtype)
        return torch.minimum(torch.maximum(x + eps * step, torch.zeros_like(x)), torch.ones_like(x))


def test_fgsm_check(capsys):
    assert _verdict(checks.check_fgsm, fgsm_ok, capsys)
    assert _verdict(checks.check_fgsm, fgsm_sum, capsys)

    def no_clamp(model, x, y, eps):
        return (x + eps * _grad(model, x, lambda s: F.cross_entropy(s, y)).sign()).detach()

    def raw_gradient(model, x, y, eps):
        return (x + eps * _grad(model, x, lambda s: F.cross_entropy(s, y))).clamp(0, 1).detach()

    def wrong_sign(model, x, y, eps):
        return (x - eps * _grad(model, x, lambda s: F.cross_entropy(s, y)).sign()).clamp(0, 1).detach()

    def train_mode(model, x, y, eps):
        model.train()
        return fgsm_ok(model, x, y, eps)

    def backward_leaks(model, x, y, eps):
        x_adv = x.clone().requires_grad_(True)
        F.cross_entropy(model(x_adv), y).backward()
        return (x + eps * x_adv.grad.sign()).clamp(0, 1)

    def in_place(model, x, y, eps):
        grad = _grad(model, x, lambda s: F.cross_entropy(s, y))
        return x.add_(eps * grad.sign()).clamp_(0, 1)

    def train_then_eval(model, x, y, eps):
        model.train()
        x_adv = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)   # batch statistics updated
        model.eval()
        return (x + eps * grad.sign()).clamp(0, 1).detach()

    for wrong in (no_clamp, raw_gradient, wrong_sign, train_mode, backward_leaks, in_place, train_then_eval):
        assert not _verdict(checks.check_fgsm, wrong, capsys), wrong.__name__


def test_fgsm_check_names_changed_batchnorm_statistics(capsys):
    def train_then_eval(model, x, y, eps):
        model.train()
        model(x)
        model.eval()
        return fgsm_ok(model, x, y, eps)

    assert not checks.check_fgsm(train_then_eval)
    assert "batch-norm statistics changed" in capsys.readouterr().out


# ---------------------------------------------------------------- pgd
def pgd_ok(model, x, y, eps, alpha, steps):
    x_adv = x.clone().detach()
    for _ in range(steps):
        grad = _grad(model, x_adv, lambda s: F.cross_entropy(s, y))
        x_adv = x_adv + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def pgd_delta(model, x, y, eps, alpha, steps):
    """Correct, written differently: optimizes delta, clamps to [0, 1] first, then to the eps-ball."""
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        grad, = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = ((x + delta + alpha * grad.sign()).clamp(0, 1) - x).clamp(-eps, eps)
    return (x + delta).detach()


def test_pgd_check(capsys):
    assert _verdict(checks.check_pgd, pgd_ok, capsys)
    assert _verdict(checks.check_pgd, pgd_delta, capsys)

    def project_at_end(model, x, y, eps, alpha, steps):
        x_adv = x.clone()
        for _ in range(steps):
            x_adv = (x_adv + alpha * _grad(model, x_adv, lambda s: F.cross_entropy(s, y)).sign()).clamp(0, 1)
        return torch.min(torch.max(x_adv, x - eps), x + eps).detach()

    def range_only(model, x, y, eps, alpha, steps):
        x_adv = x.clone()
        for _ in range(steps):
            x_adv = (x_adv + alpha * _grad(model, x_adv, lambda s: F.cross_entropy(s, y)).sign()).clamp(0, 1)
        return x_adv.detach()

    def random_start(model, x, y, eps, alpha, steps):
        g = torch.Generator().manual_seed(0)
        start = (x + eps * (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1)).clamp(0, 1)
        return pgd_ok(model, start, y, eps, alpha, steps).clamp(x - eps, x + eps)

    def stale_gradient(model, x, y, eps, alpha, steps):
        sign = _grad(model, x, lambda s: F.cross_entropy(s, y)).sign()
        x_adv = x.clone()
        for _ in range(steps):
            x_adv = torch.min(torch.max(x_adv + alpha * sign, x - eps), x + eps).clamp(0, 1)
        return x_adv

    def ball_around_iterate(model, x, y, eps, alpha, steps):
        x_adv = x.clone()
        for _ in range(steps):
            step = (alpha * _grad(model, x_adv, lambda s: F.cross_entropy(s, y)).sign()).clamp(-eps, eps)
            x_adv = (x_adv + step).clamp(0, 1)
        return x_adv.detach()

    def no_sign(model, x, y, eps, alpha, steps):
        x_adv = x.clone()
        for _ in range(steps):
            x_adv = x_adv + alpha * _grad(model, x_adv, lambda s: F.cross_entropy(s, y))
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        return x_adv.detach()

    for wrong in (project_at_end, range_only, random_start, stale_gradient, ball_around_iterate, no_sign):
        assert not _verdict(checks.check_pgd, wrong, capsys), wrong.__name__


# ---------------------------------------------------------------- gram_matrix
def gram_ok(features):
    N, C, H, W = features.shape
    f = features.reshape(N, C, H * W)
    return f @ f.transpose(1, 2) / (H * W)


def gram_loop(features):
    """Correct, written differently: a loop over the batch, torch.mm, mean over positions via flatten."""
    out = []
    for f in features:
        flat = f.flatten(1)
        out.append(torch.mm(flat, flat.t()) / flat.shape[1])
    return torch.stack(out)


def test_gram_check(capsys):
    assert _verdict(checks.check_gram_matrix, gram_ok, capsys)
    assert _verdict(checks.check_gram_matrix, gram_loop, capsys)

    def by_chw(features):
        return gram_ok(features) / features.shape[1]

    def not_normalized(features):
        return gram_ok(features) * features.shape[-1] * features.shape[-2]

    def positions_gram(features):
        N, C, H, W = features.shape
        f = features.reshape(N, C, H * W)
        return f.transpose(1, 2) @ f / (H * W)

    def wrong_reshape(features):
        N, C, H, W = features.shape
        f = features.reshape(N, H * W, C).transpose(1, 2)
        return f @ f.transpose(1, 2) / (H * W)

    def numpy_detached(features):
        return torch.from_numpy(gram_ok(features.detach()).numpy())

    for wrong in (by_chw, not_normalized, positions_gram, wrong_reshape, numpy_detached):
        assert not _verdict(checks.check_gram_matrix, wrong, capsys), wrong.__name__


def test_gram_check_names_the_normalisation(capsys):
    def gram_chw(features):
        N, C, H, W = features.shape
        f = features.reshape(N, C, H * W)
        return f @ f.transpose(1, 2) / (C * H * W)

    def gram_unnormalised(features):
        f = features.flatten(2)
        return f @ f.transpose(1, 2)

    for wrong, words in ((gram_chw, "divided by C * H * W (the normalisation of Johnson et al. 2016"),
                         (gram_unnormalised, "not divided at all")):
        assert not _verdict(checks.check_gram_matrix, wrong, capsys)
        checks.check_gram_matrix(wrong)
        assert words in capsys.readouterr().out


def test_gram_check_names_the_tutorial_normalisation_and_batch_flattening(capsys):
    def gram_nchw(features):                              # the PyTorch neural-style tutorial's gram_matrix
        N, C, H, W = features.shape
        f = features.reshape(N, C, H * W)
        return f @ f.transpose(1, 2) / (N * C * H * W)

    def gram_flat_batch(features):                        # the tutorial's view(N * C, H * W): (N*C, N*C)
        N, C, H, W = features.shape
        f = features.view(N * C, H * W)
        return f @ f.t() / (H * W)

    for wrong, words in ((gram_nchw, "divided by N * C * H * W"), (gram_flat_batch, "each image needs its own")):
        assert not _verdict(checks.check_gram_matrix, wrong, capsys)
        checks.check_gram_matrix(wrong)
        assert words in capsys.readouterr().out, wrong.__name__


def test_attack_checks_call_positionally(capsys):
    """A student who renames a parameter (eps -> epsilon, steps -> n_steps) is not rejected for it."""
    def fgsm_renamed(model, x, y, epsilon):
        return fgsm_ok(model, x, y, epsilon)

    def pgd_renamed(model, x, y, epsilon, step_size, n_steps):
        return pgd_ok(model, x, y, epsilon, step_size, n_steps)

    assert _verdict(checks.check_fgsm, fgsm_renamed, capsys)
    assert _verdict(checks.check_pgd, pgd_renamed, capsys)
