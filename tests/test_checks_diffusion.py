"""The lab-10 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import math

import numpy as np
import torch
from conftest import check_verdict as _verdict

from utils.checks import diffusion as checks


def schedule_numpy(T, kind):
    """Correct, written differently: NumPy, float32 output, loop for the cosine betas."""
    if kind == "linear":
        if T < 50:
            raise ValueError(f"T: expected >= 50 for the linear schedule, got {T}")
        betas = np.linspace(0.1 / T, 20.0 / T, T)
    elif kind == "cosine":
        def abar(u):
            return math.cos((u / T + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = np.array([min(1 - abar(t + 1) / abar(t), 0.999) for t in range(T)])
    else:
        raise ValueError(f"kind: expected 'linear' or 'cosine', got {kind!r}")
    alphas = 1 - betas
    return tuple(torch.tensor(v, dtype=torch.float32) for v in (betas, alphas, np.cumprod(alphas)))


def schedule_no_scaling(T, kind):
    if kind == "linear":
        if T < 50:
            raise ValueError("T")
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
        return betas, 1 - betas, torch.cumprod(1 - betas, 0)
    return checks.reference_schedule(T, kind)


def schedule_no_raise(T, kind):
    """No ValueError for a small T (where the scaled betas would exceed 1)."""
    if kind != "linear":
        return checks.reference_schedule(T, kind)
    betas = torch.linspace(0.1 / T, 20.0 / T, T, dtype=torch.float64)
    return betas, 1 - betas, torch.cumprod(1 - betas, 0)


def schedule_cosine_unclipped(T, kind):
    if kind == "cosine":
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = 1 - f[1:] / f[:-1]
        return betas, 1 - betas, torch.cumprod(1 - betas, 0)
    return schedule_numpy(T, kind)


def schedule_cumsum(T, kind):
    betas, alphas, _ = schedule_numpy(T, kind)
    return betas, alphas, 1 - torch.cumsum(betas, 0)


def test_make_schedule_check(capsys):
    assert _verdict(checks.check_make_schedule, schedule_numpy, capsys)
    assert not _verdict(checks.check_make_schedule, schedule_no_scaling, capsys)
    assert not _verdict(checks.check_make_schedule, schedule_no_raise, capsys)
    assert not _verdict(checks.check_make_schedule, schedule_cosine_unclipped, capsys)
    assert not _verdict(checks.check_make_schedule, schedule_cumsum, capsys)


def test_make_schedule_refusing_every_small_T_fails(capsys):
    """The T >= 50 limit is the linear schedule's: a check placed before the branch on kind refuses cosine too."""
    def refuses_small_T(T, kind):
        if T < 50:
            raise ValueError(f"T: expected >= 50, got {T}")
        return schedule_numpy(T, kind)

    assert not _verdict(checks.check_make_schedule, refuses_small_T, capsys)
    checks.check_make_schedule(refuses_small_T)
    assert "✗ cosine, T = 20 is allowed" in capsys.readouterr().out


def schedule_float32_cosine(T, kind):
    """The cosine schedule computed in float32 (as some public code does): up to 0.1 % off by cancellation."""
    if kind not in ("linear", "cosine") or (kind == "linear" and T < 50):
        raise ValueError(f"bad kind or T: {kind!r}, {T}")
    betas = torch.linspace(0.1 / T, 20.0 / T, T) if kind == "linear" else checks._float32_cosine_betas(T)
    return betas, 1 - betas, torch.cumprod(1 - betas, 0)


def test_make_schedule_wants_float64_computation_and_float32_results(capsys):
    checks.check_make_schedule(schedule_float32_cosine)
    out = capsys.readouterr().out
    assert "cosine, T = 1000: betas:" in out and "computed in float32" in out and "in float64" in out
    assert not _verdict(checks.check_make_schedule, schedule_float32_cosine, capsys)
    checks.check_make_schedule(checks.reference_schedule)          # float64 results: the network is float32
    out = capsys.readouterr().out
    assert "expected float32, got torch.float64" in out

    def float64_then_float(T, kind):
        return tuple(v.float() for v in checks.reference_schedule(T, kind))
    assert _verdict(checks.check_make_schedule, float64_then_float, capsys)


def q_sample_ok(x0, t, noise, alpha_bars):
    a = alpha_bars[t].view(-1, *([1] * (x0.ndim - 1)))
    return torch.sqrt(a) * x0 + torch.sqrt(1 - a) * noise


def q_sample_einsum(x0, t, noise, alpha_bars):
    """Correct, written differently."""
    a = alpha_bars[t]
    flat = torch.einsum("n,nd->nd", a.sqrt(), x0.flatten(1)) + torch.einsum("n,nd->nd", (1 - a).sqrt(), noise.flatten(1))
    return flat.reshape(x0.shape)


def test_q_sample_check(capsys):
    assert _verdict(checks.check_q_sample, q_sample_ok, capsys)
    assert _verdict(checks.check_q_sample, q_sample_einsum, capsys)
    assert not _verdict(checks.check_q_sample,  # no square roots
                        lambda x0, t, n, ab: ab[t].view(-1, *([1] * (x0.ndim - 1))) * x0
                        + (1 - ab[t].view(-1, *([1] * (x0.ndim - 1)))) * n, capsys)
    assert not _verdict(checks.check_q_sample,  # off by one
                        lambda x0, t, n, ab: q_sample_ok(x0, (t - 1).clamp(min=0), n, ab), capsys)
    assert not _verdict(checks.check_q_sample,  # only works for 2-D inputs
                        lambda x0, t, n, ab: ab[t][:, None].sqrt() * x0 + (1 - ab[t][:, None]).sqrt() * n, capsys)


def ddpm_ok(model_eps, x_t, t, schedule, noise):
    betas, alphas, abar = schedule
    eps = model_eps(x_t, torch.full((len(x_t),), t, dtype=torch.long, device=x_t.device))
    mean = (x_t - betas[t] / (1 - abar[t]).sqrt() * eps) / alphas[t].sqrt()
    if t == 0:
        return mean
    var = (1 - abar[t - 1]) / (1 - abar[t]) * betas[t]
    return mean + var.sqrt() * noise


def ddpm_via_x0(model_eps, x_t, t, schedule, noise):
    """Correct, written differently: predict x0, then the posterior mean formula."""
    betas, alphas, abar = schedule
    eps = model_eps(x_t, torch.full((x_t.shape[0],), t, dtype=torch.int64, device=x_t.device))
    x0 = (x_t - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
    prev = abar[t - 1] if t > 0 else torch.ones((), dtype=abar.dtype)
    mean = prev.sqrt() * betas[t] / (1 - abar[t]) * x0 + alphas[t].sqrt() * (1 - prev) / (1 - abar[t]) * x_t
    std = ((1 - prev) / (1 - abar[t]) * betas[t]).sqrt()
    return mean + std * noise


def test_ddpm_step_check(capsys):
    assert _verdict(checks.check_ddpm_step, ddpm_ok, capsys)
    assert _verdict(checks.check_ddpm_step, ddpm_via_x0, capsys)

    def beta_variance(model_eps, x_t, t, schedule, noise):
        betas, alphas, abar = schedule
        eps = model_eps(x_t, torch.full((len(x_t),), t, dtype=torch.long))
        mean = (x_t - betas[t] / (1 - abar[t]).sqrt() * eps) / alphas[t].sqrt()
        return mean + (betas[t].sqrt() * noise if t > 0 else 0)

    def noise_at_zero(model_eps, x_t, t, schedule, noise):
        out = ddpm_ok(model_eps, x_t, t, schedule, noise)
        return out + (schedule[0][0].sqrt() * noise if t == 0 else 0)

    def int_timestep(model_eps, x_t, t, schedule, noise):
        return ddpm_ok(lambda x, tb: model_eps(x, int(tb[0])), x_t, t, schedule, noise)

    def abar_in_mean(model_eps, x_t, t, schedule, noise):
        betas, alphas, abar = schedule
        eps = model_eps(x_t, torch.full((len(x_t),), t, dtype=torch.long))
        mean = (x_t - betas[t] / (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
        return mean if t == 0 else mean + ((1 - abar[t - 1]) / (1 - abar[t]) * betas[t]).sqrt() * noise

    for wrong in (beta_variance, noise_at_zero, int_timestep, abar_in_mean):
        assert not _verdict(checks.check_ddpm_step, wrong, capsys), wrong.__name__
    checks.check_ddpm_step(beta_variance)                      # Ho et al.'s other variance: named
    out = capsys.readouterr().out
    assert "your variance is beta_t" in out and "beta_tilde_t" in out
    checks.check_ddpm_step(abar_in_mean)                       # a different mistake: no variance hint
    assert "your variance is beta_t" not in capsys.readouterr().out


# ----- ddim_step (a check ready for lab 10's DDIM section) ------------------------------------
def ddim_ratio_form(model_eps, x_t, t, s, alpha_bars):
    """Correct, written differently: x_s = sqrt(abar_s / abar_t) (x_t - sqrt(1 - abar_t) eps) + sqrt(1 - abar_s) eps."""
    eps = model_eps(x_t, x_t.new_full((x_t.shape[0],), t, dtype=torch.long))
    a_t = alpha_bars[t]
    a_s = alpha_bars[s] if s >= 0 else torch.ones_like(a_t)
    return torch.sqrt(a_s / a_t) * (x_t - torch.sqrt(1 - a_t) * eps) + torch.sqrt(1 - a_s) * eps


def _ddim_mistake(kind):
    def step(model_eps, x_t, t, s, alpha_bars):
        eps = model_eps(x_t, torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device))
        a_t = alpha_bars[t]
        a_s = alpha_bars[s] if (s >= 0 or kind == "negative index") else torch.ones_like(a_t)
        if kind == "previous step":
            a_s = alpha_bars[t - 1]
        x0_hat = (x_t - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t)
        if kind == "only x0":
            return x0_hat
        if kind == "clipped x0":
            x0_hat = x0_hat.clamp(-1, 1)
        noise = torch.randn_like(x_t) if kind == "fresh noise" else eps
        return torch.sqrt(a_s) * x0_hat + torch.sqrt(1 - a_s) * noise
    return step


def ddim_cpu_t_batch(model_eps, x_t, t, s, alpha_bars):
    eps = model_eps(x_t, torch.full((x_t.shape[0],), t, dtype=torch.long))      # no device: a GPU trap
    a_t, a_s = alpha_bars[t], (alpha_bars[s] if s >= 0 else torch.ones_like(alpha_bars[t]))
    return torch.sqrt(a_s) * (x_t - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t) + torch.sqrt(1 - a_s) * eps


def test_ddim_step_check(capsys):
    assert _verdict(checks.check_ddim_step, checks.reference_ddim_step, capsys)
    assert _verdict(checks.check_ddim_step, ddim_ratio_form, capsys)
    for kind in ("fresh noise", "negative index", "previous step", "only x0"):
        assert not _verdict(checks.check_ddim_step, _ddim_mistake(kind), capsys), kind
    checks.check_ddim_step(_ddim_mistake("negative index"))
    assert "s = -1 is the clean end" in capsys.readouterr().out
    assert not _verdict(checks.check_ddim_step, _ddim_mistake("clipped x0"), capsys)
    checks.check_ddim_step(_ddim_mistake("clipped x0"))        # the hint names the clipping, not alpha_bars[-1]
    out = capsys.readouterr().out
    assert "clipped to [-1, 1]" in out and "s = -1 is the clean end" not in out
    checks.check_ddim_step(_ddim_mistake("fresh noise"))
    assert "deterministic" in capsys.readouterr().out
    assert not _verdict(checks.check_ddim_step, ddim_cpu_t_batch, capsys)
    checks.check_ddim_step(ddim_cpu_t_batch)
    assert "created a tensor on the CPU" in capsys.readouterr().out


# ----- diffusion_loss --------------------------------------------------------------------------
def _q(x0, t, noise, ab):
    a = ab[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def loss_ok(model, x0, alpha_bars, generator):
    t = torch.randint(0, len(alpha_bars), (x0.shape[0],), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    return torch.nn.functional.mse_loss(model(_q(x0, t, noise, alpha_bars), t), noise)


def loss_written_differently(model, x0, alpha_bars, generator):
    """Correct, written differently: noise drawn first, the square roots via pow, the mean by hand."""
    noise = torch.empty(x0.shape).normal_(generator=generator).to(x0.device)
    t = (torch.rand(x0.shape[0], generator=generator) * len(alpha_bars)).long().clamp(max=len(alpha_bars) - 1)
    t = t.to(x0.device)
    a = alpha_bars[t].view(-1, 1)
    x_t = a.pow(0.5) * x0 + (1 - a).pow(0.5) * noise
    return ((model(x_t, t) - noise) ** 2).mean()


def _loss_mistake(kind):
    def loss(model, x0, alpha_bars, generator):
        T = len(alpha_bars)
        g = None if kind == "global RNG" else generator
        low, high = (1, T) if kind == "t from 1" else (0, T)
        t = torch.randint(low, high, (x0.shape[0],), generator=g).to(x0.device)
        noise = torch.randn(x0.shape, generator=g).to(x0.device)
        a = alpha_bars[t].view(-1, 1)
        x_t = a * x0 + (1 - a) * noise if kind == "no sqrt" else a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = x0 if kind == "x0 target" else noise
        return torch.nn.functional.mse_loss(model(x_t, t), target)
    return loss


def test_diffusion_loss_check(capsys):
    assert _verdict(checks.check_diffusion_loss, loss_ok, capsys)
    assert _verdict(checks.check_diffusion_loss, loss_written_differently, capsys)
    named = {"x0 target": "the target is the noise", "t from 1": "expected 0..49",
             "no sqrt": "sqrt(alpha_bar_t) x0", "global RNG": "the generator was not used"}
    for kind, message in named.items():
        assert not _verdict(checks.check_diffusion_loss, _loss_mistake(kind), capsys), kind
        checks.check_diffusion_loss(_loss_mistake(kind))
        assert message in capsys.readouterr().out, kind
    checks.check_diffusion_loss(_loss_mistake("x0 target"))      # the zero model names x0's variance
    assert "4.0 would mean the target is x0" in capsys.readouterr().out

    def cpu_t(model, x0, alpha_bars, generator):                 # t left on the CPU: a GPU trap
        t = torch.randint(0, len(alpha_bars), (x0.shape[0],), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        return torch.nn.functional.mse_loss(model(_q(x0, t, noise, alpha_bars), t), noise)

    assert not _verdict(checks.check_diffusion_loss, cpu_t, capsys)
    checks.check_diffusion_loss(cpu_t)
    assert "created a tensor on the CPU" in capsys.readouterr().out


def test_ddpm_step_t0_hint_only_for_added_noise(capsys):
    def noise_at_zero(model_eps, x_t, t, schedule, noise):
        return ddpm_ok(model_eps, x_t, t, schedule, noise) + (schedule[0][0].sqrt() * noise if t == 0 else 0)

    def wrong_mean_at_zero(model_eps, x_t, t, schedule, noise):       # t = 0 returns x_t: no noise involved
        return x_t if t == 0 else ddpm_ok(model_eps, x_t, t, schedule, noise)

    checks.check_ddpm_step(noise_at_zero)
    assert "at t = 0 return the mean" in capsys.readouterr().out
    assert not _verdict(checks.check_ddpm_step, wrong_mean_at_zero, capsys)
    checks.check_ddpm_step(wrong_mean_at_zero)
    assert "at t = 0 return the mean" not in capsys.readouterr().out


def test_ddim_step_s0_is_not_the_data(capsys):
    def s0_clean(model_eps, x_t, t, s, alpha_bars):
        eps = model_eps(x_t, torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device))
        a_t = alpha_bars[t]
        a_s = alpha_bars[s] if s > 0 else torch.ones_like(a_t)
        return a_s.sqrt() * (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt() + (1 - a_s).sqrt() * eps

    assert not _verdict(checks.check_ddim_step, s0_clean, capsys)
    checks.check_ddim_step(s0_clean)
    out = capsys.readouterr().out
    assert "s = 0 is one noising step" in out and "only s = -1 is the data" in out
