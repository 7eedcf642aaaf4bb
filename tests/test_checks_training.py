"""The lab-03 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import pytest
import torch
from conftest import check_verdict as _verdict

from utils.checks import training as checks


# ----- SGD with momentum ----------------------------------------------------------------------
def sgd_alternative(p, grad, buf, lr, momentum, nesterov=False):
    new_buf = grad if buf is None else momentum * buf + grad
    step = grad + momentum * new_buf if nesterov else new_buf
    p.add_(step, alpha=-lr)
    return new_buf


def sgd_dampened(p, grad, buf, lr, momentum, nesterov=False):
    buf = (1 - momentum) * grad if buf is None else momentum * buf + (1 - momentum) * grad
    p.sub_(lr * (grad + momentum * buf if nesterov else buf))
    return buf


def sgd_not_in_place(p, grad, buf, lr, momentum, nesterov=False):
    buf = grad.clone() if buf is None else momentum * buf + grad
    p = p - lr * (grad + momentum * buf if nesterov else buf)  # rebinds the name: caller's p unchanged
    return buf


def sgd_first_step_zero_buffer(p, grad, buf, lr, momentum, nesterov=False):
    buf = torch.zeros_like(grad) if buf is None else buf
    buf = momentum * buf + grad
    p.sub_(lr * (grad + momentum * buf if nesterov else buf))
    return buf


def sgd_wrong_nesterov(p, grad, buf, lr, momentum, nesterov=False):
    buf = grad.clone() if buf is None else momentum * buf + grad
    p.sub_(lr * buf)  # ignores nesterov
    return buf


def sgd_plus_sign(p, grad, buf, lr, momentum, nesterov=False):
    buf = grad.clone() if buf is None else momentum * buf + grad
    p.add_(lr * (grad + momentum * buf if nesterov else buf))
    return buf


def test_sgd_check_accepts_correct(capsys):
    assert _verdict(checks.check_sgd_momentum_step, sgd_alternative, capsys)
    # starting from a zero buffer is the same as PyTorch's buf = grad on step 1
    assert _verdict(checks.check_sgd_momentum_step, sgd_first_step_zero_buffer, capsys)


@pytest.mark.parametrize("wrong", [sgd_dampened, sgd_not_in_place, sgd_wrong_nesterov, sgd_plus_sign])
def test_sgd_check_rejects_mistakes(wrong, capsys):
    assert not _verdict(checks.check_sgd_momentum_step, wrong, capsys)


# ----- Adam -----------------------------------------------------------------------------------
def adam_alternative(p, grad, state, lr, betas=(0.9, 0.999), eps=1e-8):
    b1, b2 = betas
    state["step"] = state["step"] + 1
    t = state["step"]
    state["exp_avg"].lerp_(grad, 1 - b1)
    state["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
    denom = (state["exp_avg_sq"] / (1 - b2**t)).sqrt().add_(eps)
    p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1**t))


def _adam(p, grad, state, lr, betas=(0.9, 0.999), eps=1e-8, correct=True, eps_inside=False, inc=True):
    b1, b2 = betas
    if inc:
        state["step"] += 1
    t = max(state["step"], 1)
    state["exp_avg"].mul_(b1).add_((1 - b1) * grad)
    state["exp_avg_sq"].mul_(b2).add_((1 - b2) * grad * grad)
    m = state["exp_avg"] / (1 - b1**t) if correct else state["exp_avg"]
    v = state["exp_avg_sq"] / (1 - b2**t) if correct else state["exp_avg_sq"]
    p.sub_(lr * m / ((v + eps).sqrt() if eps_inside else v.sqrt() + eps))


def test_adam_check_accepts_correct(capsys):
    assert _verdict(checks.check_adam_step, adam_alternative, capsys)
    assert _verdict(checks.check_adam_step, _adam, capsys)


@pytest.mark.parametrize("kwargs", [{"correct": False}, {"eps_inside": True}, {"inc": False}])
def test_adam_check_rejects_mistakes(kwargs, capsys):
    assert not _verdict(checks.check_adam_step, lambda *a, **k: _adam(*a, **k, **kwargs), capsys)


# ----- batch norm -----------------------------------------------------------------------------
def bn_alternative(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    C = x.shape[1]
    flat = x.transpose(0, 1).reshape(C, -1)  # (C, n)
    if training:
        mean, var = flat.mean(1), flat.var(1, correction=0)
        running_mean = running_mean + momentum * (mean - running_mean)
        running_var = running_var + momentum * (flat.var(1, correction=1) - running_var)
    else:
        mean, var = running_mean, running_var
    view = (1, C) + (1,) * (x.ndim - 2)
    y = (x - mean.view(view)) * torch.rsqrt(var.view(view) + eps) * gamma.view(view) + beta.view(view)
    return y, running_mean, running_var


def _bn(x, gamma, beta, rm, rv, training, momentum, eps, unbiased_running=True, dims=None,
        flip_momentum=False, eval_uses_batch=False):
    dims = dims if dims is not None else [0] + list(range(2, x.ndim))
    shape = [1, -1] + [1] * (x.ndim - 2)
    if training or eval_uses_batch:
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        mean, var = mean.reshape(-1)[: x.shape[1]], var.reshape(-1)[: x.shape[1]]
        n = x.numel() // x.shape[1]
        rvar = var * n / (n - 1) if unbiased_running else var
        a = momentum if not flip_momentum else 1 - momentum
        if training:
            rm, rv = (1 - a) * rm + a * mean, (1 - a) * rv + a * rvar
    else:
        mean, var = rm, rv
    y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    return gamma.reshape(shape) * y + beta.reshape(shape), rm, rv


def test_bn_check_accepts_correct(capsys):
    assert _verdict(checks.check_batchnorm_forward, bn_alternative, capsys)
    assert _verdict(checks.check_batchnorm_forward, _bn, capsys)


@pytest.mark.parametrize("kwargs", [{"unbiased_running": False}, {"dims": [0]}, {"flip_momentum": True},
                                    {"eval_uses_batch": True}])
def test_bn_check_rejects_mistakes(kwargs, capsys):
    assert not _verdict(checks.check_batchnorm_forward, lambda *a: _bn(*a, **kwargs), capsys)


# ----- dropout --------------------------------------------------------------------------------
def dropout_alternative(x, p, training):
    if not training:
        return x
    keep = torch.bernoulli(torch.full_like(x, 1 - p))
    return x * keep / (1 - p)


@pytest.mark.parametrize("wrong", [
    lambda x, p, t: x * (torch.rand_like(x) >= p) if t else x,  # no rescaling
    lambda x, p, t: x * (torch.rand_like(x) >= p) / p if t else x,  # scaled by 1/p
    lambda x, p, t: x * (torch.rand_like(x) < p) / (1 - p) if t else x,  # keeps with probability p
    lambda x, p, t: x * (torch.rand_like(x) >= p) / (1 - p),  # also drops in eval
    lambda x, p, t: x * (1 - p) if t else x,  # deterministic scaling, no mask
])
def test_dropout_check_rejects_mistakes(wrong, capsys):
    assert not _verdict(checks.check_dropout, wrong, capsys)


def test_dropout_check_accepts_correct(capsys):
    assert _verdict(checks.check_dropout, dropout_alternative, capsys)
    assert _verdict(checks.check_dropout, lambda x, p, t: torch.nn.functional.dropout(x, p, t), capsys)


# ----- batch-norm backward (a check ready for lab 03) -----------------------------------------
def _dims(x):
    return [0] + list(range(2, x.ndim))


def bn_backward_compact(dy, x, gamma, eps, unbiased=False):
    """Correct: the compact formula (unbiased=True is the mistake of normalising with the unbiased variance)."""
    D = _dims(x)
    shape = [1, -1] + [1] * (x.ndim - 2)
    mean, var = x.mean(D, keepdim=True), x.var(D, unbiased=unbiased, keepdim=True)
    x_hat = (x - mean) / torch.sqrt(var + eps)
    dx = gamma.reshape(shape) / torch.sqrt(var + eps) * (
        dy - dy.mean(D, keepdim=True) - x_hat * (dy * x_hat).mean(D, keepdim=True))
    return dx, (dy * x_hat).sum(D), dy.sum(D)


def bn_backward_chain_rule(dy, x, gamma, eps):
    """Correct, written differently: the step-by-step chain rule through mean and variance."""
    D = _dims(x)
    shape = [1, -1] + [1] * (x.ndim - 2)
    m = x.numel() // x.shape[1]
    mu = x.mean(D, keepdim=True)
    xc = x - mu
    var = (xc ** 2).mean(D, keepdim=True)
    inv = 1 / torch.sqrt(var + eps)
    x_hat = xc * inv
    dx_hat = dy * gamma.reshape(shape)
    dvar = (dx_hat * xc).sum(D, keepdim=True) * -0.5 * inv ** 3
    dmu = (-dx_hat * inv).sum(D, keepdim=True) + dvar * (-2 * xc).mean(D, keepdim=True)
    dx = dx_hat * inv + dvar * 2 * xc / m + dmu / m
    return dx, (dy * x_hat).sum(D), dy.sum(D)


def bn_backward_constant_stats(dy, x, gamma, eps):
    D = _dims(x)
    shape = [1, -1] + [1] * (x.ndim - 2)
    var = x.var(D, unbiased=False, keepdim=True)
    x_hat = (x - x.mean(D, keepdim=True)) / torch.sqrt(var + eps)
    return dy * gamma.reshape(shape) / torch.sqrt(var + eps), (dy * x_hat).sum(D), dy.sum(D)


def bn_backward_unbiased(dy, x, gamma, eps):
    return bn_backward_compact(dy, x, gamma, eps, unbiased=True)


def bn_backward_dgamma_per_batch(dy, x, gamma, eps):
    dx, _, dbeta = bn_backward_compact(dy, x, gamma, eps)
    D = _dims(x)
    x_hat = (x - x.mean(D, keepdim=True)) / torch.sqrt(x.var(D, unbiased=False, keepdim=True) + eps)
    return dx, (dy * x_hat).sum(0), dbeta                       # sums over N only


def test_batchnorm_backward_check(capsys):
    assert _verdict(checks.check_batchnorm_backward, checks.reference_batchnorm_backward, capsys)
    assert _verdict(checks.check_batchnorm_backward, bn_backward_compact, capsys)
    assert _verdict(checks.check_batchnorm_backward, bn_backward_chain_rule, capsys)
    for wrong in (bn_backward_constant_stats, bn_backward_unbiased, bn_backward_dgamma_per_batch):
        assert not _verdict(checks.check_batchnorm_backward, wrong, capsys), wrong.__name__
    checks.check_batchnorm_backward(bn_backward_constant_stats)
    assert "treats the batch mean and variance as constants" in capsys.readouterr().out


# ----- review fixes: in-place dropout, autograd inside a backward pass, device advice -------------
def dropout_in_place(x, p, training):
    if not training:
        return x
    x.mul_((torch.rand_like(x) >= p) / (1 - p))
    return x


def test_dropout_check_rejects_in_place(capsys):
    assert not _verdict(checks.check_dropout, dropout_in_place, capsys)
    checks.check_dropout(dropout_in_place)
    assert "dropout changed its input in place" in capsys.readouterr().out


def bn_backward_by_autograd(dy, x, gamma, eps):
    """Wrong for a backward pass: autograd is off there (grad mode disabled)."""
    x_ = x.detach().clone().requires_grad_(True)
    g_ = gamma.detach().clone().requires_grad_(True)
    b_ = torch.zeros_like(g_, requires_grad=True)
    y = torch.nn.functional.batch_norm(x_, None, None, g_, b_, training=True, eps=eps)
    return torch.autograd.grad(y, (x_, g_, b_), dy)


def test_batchnorm_backward_check_rejects_autograd(capsys):
    assert not _verdict(checks.check_batchnorm_backward, bn_backward_by_autograd, capsys)
    checks.check_batchnorm_backward(bn_backward_by_autograd)
    assert "computed with autograd? Write the three terms by hand" in capsys.readouterr().out
    # with grad mode switched back on explicitly it works inside autograd.Function.backward too
    def with_enable_grad(*args):
        with torch.enable_grad():
            return bn_backward_by_autograd(*args)
    assert _verdict(checks.check_batchnorm_backward, with_enable_grad, capsys)


def sgd_cpu_buffer(p, grad, buf, lr, momentum, nesterov=False):
    buf = torch.zeros(tuple(grad.shape), dtype=grad.dtype) if buf is None else buf   # CPU: wrong on a GPU
    buf = momentum * buf + grad
    p.sub_(lr * (grad + momentum * buf if nesterov else buf))
    return buf


def test_sgd_device_advice_names_p(capsys):
    checks.check_sgd_momentum_step(sgd_cpu_buffer)
    out = capsys.readouterr().out
    device_line = next(line for line in out.splitlines() if "inputs on another device" in line)
    assert "p's device" in device_line and "x an input tensor" not in device_line, device_line


# ----- second review: named mistakes ------------------------------------------------------------
def sgd_dampened_first_grad(p, grad, buf, lr, momentum, nesterov=False):
    buf = grad.clone() if buf is None else momentum * buf + (1 - momentum) * grad   # PyTorch's dampening=momentum
    p.sub_(lr * (grad + momentum * buf if nesterov else buf))
    return buf


@pytest.mark.parametrize("wrong", [sgd_dampened, sgd_dampened_first_grad])
def test_sgd_check_names_dampening(wrong, capsys):
    assert not checks.check_sgd_momentum_step(wrong)
    out = capsys.readouterr().out
    assert "(1 - momentum) dampening" in out
    assert "✓ momentum 0 (plain SGD)" in out


def test_sgd_check_no_dampening_note_for_other_mistakes(capsys):
    assert not checks.check_sgd_momentum_step(sgd_plus_sign)
    assert "dampening" not in capsys.readouterr().out.split("hint:")[0]


def bn_updates_running_in_place(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    y, rm, rv = _bn(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    if training:
        running_mean.copy_(rm)
        running_var.copy_(rv)
    return y, running_mean, running_var


def bn_centres_x_in_place(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    y, rm, rv = _bn(x.clone(), gamma, beta, running_mean, running_var, training, momentum, eps)
    x.sub_(x.mean())                                            # scratch work on the caller's tensor
    return y, rm, rv


@pytest.mark.parametrize("wrong, name", [(bn_updates_running_in_place, "running_mean"),
                                         (bn_centres_x_in_place, "x")])
def test_bn_check_rejects_in_place_changes(wrong, name, capsys):
    assert not _verdict(checks.check_batchnorm_forward, wrong, capsys)
    checks.check_batchnorm_forward(wrong)
    assert f"{name} was changed in place" in capsys.readouterr().out


def bn_unbiased_normalisation(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    y, rm, rv = _bn(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    if training:
        D, shape = [0, *range(2, x.ndim)], [1, -1] + [1] * (x.ndim - 2)
        var = x.var(D, unbiased=True, keepdim=True)
        y = (x - x.mean(D, keepdim=True)) / torch.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)
    return y, rm, rv


def test_bn_check_names_unbiased_normalisation(capsys):
    assert not _verdict(checks.check_batchnorm_forward, bn_unbiased_normalisation, capsys)
    checks.check_batchnorm_forward(bn_unbiased_normalisation)
    out = capsys.readouterr().out
    assert out.count("normalised with the unbiased variance") == 3             # the three training cases
    assert "✓ eval mode uses the running statistics" in out
    checks.check_batchnorm_forward(lambda *a: _bn(*a, dims=[0]))                 # another mistake: no such note
    assert "unbiased variance" not in capsys.readouterr().out.split("hint:")[0]


def bn_backward_no_variance_term(dy, x, gamma, eps):
    D = _dims(x)
    shape = [1, -1] + [1] * (x.ndim - 2)
    var = x.var(D, unbiased=False, keepdim=True)
    x_hat = (x - x.mean(D, keepdim=True)) / torch.sqrt(var + eps)
    dx = gamma.reshape(shape) / torch.sqrt(var + eps) * (dy - dy.mean(D, keepdim=True))
    return dx, (dy * x_hat).sum(D), dy.sum(D)


def test_batchnorm_backward_check_names_missing_variance_term(capsys):
    assert not _verdict(checks.check_batchnorm_backward, bn_backward_no_variance_term, capsys)
    checks.check_batchnorm_backward(bn_backward_no_variance_term)
    out = capsys.readouterr().out
    assert "missing the variance term" in out and "constants" not in out
    checks.check_batchnorm_backward(bn_backward_constant_stats)
    assert "missing the variance term" not in capsys.readouterr().out
