"""Checks for the diffusion lab (10): make_schedule, q_sample, diffusion_loss, ddpm_step and ddim_step.

No library call is the reference here: the checks use published values (DDPM's linear
schedule at T = 1000, the cosine formula of Nichol & Dhariwal), invariants (alpha_bar is
the running product of 1 - beta) and an independent identity (with the true noise, the
DDPM mean equals the closed-form posterior mean of q(x_{t-1} | x_t, x_0)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered, to_device

__all__ = ["check_ddim_step", "check_ddpm_step", "check_diffusion_loss", "check_make_schedule", "check_q_sample",
           "reference_ddim_step", "reference_schedule"]


def reference_schedule(T: int, kind: str):
    """(betas, alphas, alpha_bars) as float64 tensors of shape (T,); compact reference."""
    import torch

    if kind not in ("linear", "cosine"):
        raise ValueError(f"kind: expected 'linear' or 'cosine', got {kind!r}")
    if kind == "linear" and T < 50:
        raise ValueError(f"T: expected >= 50 for the scaled linear schedule, got {T}")
    if kind == "linear":
        betas = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64)
    else:
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    alphas = 1 - betas
    return betas, alphas, torch.cumprod(alphas, 0)


def _as_schedule(out, T):
    """Return an error message, or None when ``out`` is a tuple of three (T,) float tensors."""
    import torch

    if not isinstance(out, tuple | list) or len(out) != 3:
        return f"expected a tuple (betas, alphas, alpha_bars), got {type(out).__name__}"
    for name, v in zip(("betas", "alphas", "alpha_bars"), out):
        if not isinstance(v, torch.Tensor) or v.shape != (T,) or not v.is_floating_point():
            return f"{name}: expected a float tensor of shape ({T},), got {getattr(v, 'shape', type(v).__name__)}"
        if v.dtype != torch.float32:
            return (f"{name}: expected float32, got {v.dtype}: the network and q_sample work in float32 "
                    "(compute in float64 if you like, then return .float())")
    return None


def _float32_cosine_betas(T):
    """The cosine betas computed in float32: 1 - abar[t+1] / abar[t] cancels, up to 0.1 % off at T = 1000."""
    import torch

    s = 0.008
    f = torch.cos((torch.arange(T + 1, dtype=torch.float32) / T + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


@tiered
def check_make_schedule(make_schedule: Callable) -> bool:
    """Check ``make_schedule(T, kind)`` for the linear and cosine schedules."""
    import torch

    def values_case(T, kind):
        def test(fn):
            out = fn(T, kind)
            msg = _as_schedule(out, T)
            if msg:
                return msg
            want = reference_schedule(T, kind)
            for name, w, g in zip(("betas", "alphas", "alpha_bars"), want, out):
                msg = compare_values(w, g.double(), atol=1e-7, rtol=1e-5, path=name)
                if msg and kind == "cosine" and name == "betas" and \
                        compare_values(_float32_cosine_betas(T), g.float(), atol=1e-9, rtol=1e-6) is None:
                    return (msg + " (computed in float32: 1 - alpha_bar(t + 1) / alpha_bar(t) loses digits to "
                            "cancellation; compute the cosine schedule in float64, then return .float())")
                if msg:
                    return msg
            return None
        return test

    def invariants_case(fn):
        betas, alphas, abar = (v.double() for v in fn(200, "linear"))
        if (msg := compare_values(1 - betas, alphas, atol=1e-7, rtol=0, path="alphas vs 1 - betas")):
            return msg
        if (msg := compare_values(torch.cumprod(alphas, 0), abar, atol=1e-7, rtol=1e-5,
                                  path="alpha_bars vs cumprod(alphas)")):
            return msg
        if abar[-1] > 1e-3:
            return f"alpha_bar at t = T - 1 is {abar[-1]:.3g}: the last step should be (almost) pure noise"
        return None

    def ddpm_values_case(fn):
        betas = fn(1000, "linear")[0].double()
        want = torch.tensor([1e-4, 0.02], dtype=torch.float64)
        return compare_values(want, betas[[0, -1]], atol=1e-9, rtol=1e-6, path="betas[0], betas[-1] at T = 1000")

    def raises_case(T, kind, what):
        def test(fn):
            try:
                fn(T, kind)
            except ValueError:
                return None
            except Exception as exc:  # noqa: BLE001 - report the wrong exception type
                return f"{what}: expected a ValueError, got {type(exc).__name__}"
            return f"{what}: expected a ValueError, nothing was raised"
        return test

    cases = [
        Case("linear, T = 1000: DDPM's betas 1e-4 .. 0.02", test=ddpm_values_case),
        Case("linear, T = 200 (betas scaled by 1000 / T)", test=values_case(200, "linear")),
        Case("linear, T = 50", test=values_case(50, "linear")),
        Case("cosine, T = 200 (s = 0.008, betas clipped at 0.999)", test=values_case(200, "cosine")),
        Case("cosine, T = 1000", test=values_case(1000, "cosine")),
        Case("alphas = 1 - betas, alpha_bars = cumprod, alpha_bar[T-1] ~ 0", test=invariants_case),
        Case("cosine, T = 20 is allowed (only the linear schedule needs T >= 50)", test=values_case(20, "cosine")),
        Case("linear with T = 20 raises ValueError", test=raises_case(20, "linear", "T = 20")),
        Case("unknown kind raises ValueError", test=raises_case(200, "quadratic", "kind 'quadratic'")),
    ]
    return run_check(
        "make_schedule(T, kind)", make_schedule, cases,
        hint='betas give the noise added per step; alphas = 1 - betas, and alpha_bar is their running product; the cosine schedule is defined through alpha_bar',
        solution="linear: torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T); cosine: f(u) = cos((u / T + s) / "
             "(1 + s) * pi / 2)^2 for u = 0..T, alpha_bar(u) = f(u) / f(0), beta_t = 1 - alpha_bar(t+1) / "
             "alpha_bar(t) clipped at 0.999, computed in float64; then alphas = 1 - betas and alpha_bars = "
             "torch.cumprod(alphas, 0), all returned as float32",
    )


@tiered
def check_q_sample(q_sample: Callable) -> bool:
    """Check ``q_sample(x0, t, noise, alpha_bars)`` = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
    import torch

    g = torch.Generator().manual_seed(0)
    abar = reference_schedule(200, "linear")[2]

    def expected(x0, t, noise, alpha_bars):
        a = alpha_bars[t].reshape(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def inputs(shape, t):
        return (torch.randn(shape, generator=g, dtype=torch.float64), t,
                torch.randn(shape, generator=g, dtype=torch.float64), abar)

    t5 = torch.tensor([0, 1, 50, 150, 199])
    cases = [
        Case("2-D points (5, 2), t = 0, 1, 50, 150, 199", inputs((5, 2), t5), expected=expected, atol=1e-12),
        Case("images (5, 1, 8, 8): alpha_bar broadcast over pixels", inputs((5, 1, 8, 8), t5), expected=expected,
             atol=1e-12),
        Case("t = 0 is almost x0", inputs((3, 4), torch.zeros(3, dtype=torch.long)), expected=expected, atol=1e-12),
        Case("t = T - 1 is almost the noise", inputs((3, 4), torch.full((3,), 199)), expected=expected, atol=1e-12),
        Case("a single sample (1, 3)", inputs((1, 3), torch.tensor([77])), expected=expected, atol=1e-12),
        device_case(*inputs((5, 1, 8, 8), t5)),
    ]
    return run_check(
        "q_sample(x0, t, noise, alpha_bars)", q_sample, cases,
        hint='the closed form of the forward process: x_t mixes x0 and the noise with weights sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t), one t per sample',
        solution="a = alpha_bars[t] reshaped to (N, 1, ..., 1) so it broadcasts over x0's other dimensions; "
             "return a.sqrt() * x0 + (1 - a).sqrt() * noise (alpha_bar, not alpha; t indexes directly, "
             "no t - 1)",
    )


@tiered
def check_diffusion_loss(diffusion_loss: Callable) -> bool:
    """Check ``diffusion_loss(model, x0, alpha_bars, generator)``: t ~ U{0..T-1} and the noise drawn with
    ``generator``, x_t = q_sample(x0, t, noise), the mean squared error between model(x_t, t) and the noise."""
    import torch

    T = 50
    abar = reference_schedule(T, "linear")[2].float()
    x0 = 2 * torch.randn(8_000, 2, generator=torch.Generator().manual_seed(0))           # float32, variance 4

    class Oracle:
        """Recovers the noise from x_t, t and the known x0: predicts it (to float32 rounding) when x_t is right."""

        def __init__(self):
            self.t = None

        def __call__(self, x_t, t_batch):
            self.t = t_batch
            a = abar[t_batch.long()].reshape(-1, *([1] * (x_t.ndim - 1)))
            return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    def call(fn, model, seed=1):
        return fn(model, x0.clone(), abar.clone(), torch.Generator().manual_seed(seed))

    def scalar(out):
        if not isinstance(out, torch.Tensor) or out.shape != ():
            return f"expected a scalar tensor (shape ()), got {getattr(out, 'shape', type(out).__name__)}"
        return None

    def oracle_case(fn):
        model = Oracle()
        out = call(fn, model)
        msg = scalar(out)
        if msg or model.t is None:
            return msg or "the model was never called"
        if out.item() > 1e-6:
            return (f"a model that predicts the true noise exactly got loss {out.item():.3g}, expected ~0: the "
                    "target is the noise, and x_t must be q_sample(x0, t, noise, alpha_bars) "
                    "(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise)")
        return None

    def zero_case(fn):
        out = call(fn, lambda x_t, t_batch: torch.zeros_like(x_t))
        msg = scalar(out)
        if msg:
            return msg
        if abs(out.item() - 1.0) > 0.05:
            return (f"a model that predicts zeros got loss {out.item():.3f}, expected about 1.0 (the noise's variance"
                    "; 4.0 would mean the target is x0, whose variance here is 4): the mean over all elements of "
                    "(model(x_t, t) - noise)^2")
        return None

    def t_case(fn):
        model = Oracle()
        call(fn, model)
        t = model.t
        if not isinstance(t, torch.Tensor) or t.dtype != torch.long or tuple(t.shape) != (len(x0),):
            return f"the model must get t as a ({len(x0)},) long tensor, one step per sample, got {t!r}"[:200]
        counts = torch.bincount(t.clamp(min=0), minlength=T + 1)
        if t.min() != 0 or t.max() != T - 1:
            return (f"t ranges over {t.min().item()}..{t.max().item()}, expected 0..{T - 1} (T = len(alpha_bars) "
                    f"= {T}; index 0 is the first noising step)")
        expected = len(t) / T
        if ((counts[:T] - expected).abs() > 5 * expected ** 0.5).any():
            return f"t is not uniform on 0..{T - 1}: counts range {counts[:T].min().item()}..{counts[:T].max().item()}, expected about {expected:.0f} each"
        return None

    def generator_case(fn):
        g = torch.Generator().manual_seed(3)
        before = g.get_state()
        model = lambda x_t, t_batch: torch.zeros_like(x_t)            # noqa: E731
        torch.manual_seed(11)
        a = fn(model, x0.clone(), abar.clone(), g)
        if torch.equal(g.get_state(), before):
            return "the generator was not used: draw t and the noise with generator=generator"
        torch.manual_seed(12)
        b = fn(model, x0.clone(), abar.clone(), torch.Generator().manual_seed(3))
        if not torch.equal(a, b):
            return "the same generator seed gave different losses: every draw (t and the noise) must use generator"
        return None

    def on_device(fn, device):
        on = to_device(abar, device)

        def model(x_t, t_batch):                                    # like the lab's time embedding: t meets
            return x_t * (1 + t_batch[:, None].to(x_t.dtype) * on[:1])   # a device tensor

        return fn(model, to_device(x0[:64], device), on, torch.Generator().manual_seed(0))

    cases = [
        Case("returns a scalar; a model predicting the true noise gets ~0", test=oracle_case),
        Case("a model predicting zeros gets about 1.0 (the noise is the target)", test=zero_case),
        Case(f"t ~ U{{0..{T - 1}}} (T = len(alpha_bars)), a (N,) long tensor", test=t_case),
        Case("every draw comes from generator (same seed, same loss)", test=generator_case),
        device_case(run=on_device),
    ]
    return run_check(
        "diffusion_loss(model, x0, alpha_bars, generator)", diffusion_loss, cases,
        hint="one random step per sample and fresh Gaussian noise, both from the generator; noise x0 to that step "
             "in closed form and regress the model's output on the noise",
        solution="t = torch.randint(0, len(alpha_bars), (N,), generator=generator).to(x0.device); noise = "
                 "torch.randn(x0.shape, generator=generator).to(x0.device); return F.mse_loss(model(q_sample(x0, t, "
                 "noise, alpha_bars), t), noise)",
    )


@tiered
def check_ddpm_step(ddpm_step: Callable) -> bool:
    """Check ``ddpm_step(model_eps, x_t, t, schedule, noise)`` via the posterior q(x_{t-1} | x_t, x_0)."""
    import torch

    schedule = reference_schedule(200, "linear")
    betas, alphas, abar = schedule

    def posterior(x0, x_t, t):
        """Mean and variance of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7), written independently."""
        prev = abar[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64)
        mean = (prev.sqrt() * betas[t] / (1 - abar[t])) * x0 + (alphas[t].sqrt() * (1 - prev) / (1 - abar[t])) * x_t
        return mean, (1 - prev) / (1 - abar[t]) * betas[t]

    def case(shape, t, seed):
        def test(fn):
            gen = torch.Generator().manual_seed(seed)
            x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
            eps = torch.randn(shape, generator=gen, dtype=torch.float64)
            x_t = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * eps
            z = torch.randn(shape, generator=gen, dtype=torch.float64)
            calls = []

            def model_eps(x, t_batch):                          # an oracle: returns the true noise
                calls.append((tuple(x.shape), t_batch))
                return eps.clone()

            out = fn(model_eps, x_t.clone(), t, schedule, z.clone())
            if not calls:
                return "model_eps was never called"
            _, t_batch = calls[0]
            if not isinstance(t_batch, torch.Tensor) or t_batch.dtype != torch.long or \
                    tuple(t_batch.shape) != (shape[0],) or not (t_batch == t).all():
                return (f"model_eps must get a ({shape[0]},) long tensor filled with t = {t}, "
                        f"got {t_batch!r}"[:200])
            mean, var = posterior(x0, x_t, t)
            want = mean + (var.sqrt() * z if t > 0 else 0.0)
            msg = compare_values(want, out, atol=1e-9, rtol=1e-7, path="x_{t-1}")
            if msg and t == 0 and isinstance(out, torch.Tensor) and out.shape == mean.shape:
                extra = (out.detach().to(mean.dtype) - mean).flatten()
                c = (extra @ z.flatten()) / (z.flatten() @ z.flatten())       # out - mean = c z: noise was added
                if c.abs() > 1e-6 and compare_values(c * z.flatten(), extra, atol=1e-9, rtol=1e-7) is None:
                    return msg + " (at t = 0 return the mean: no noise is added)"
            if msg and t > 0 and compare_values(mean + betas[t].sqrt() * z, out, atol=1e-9, rtol=1e-7) is None:
                return msg + (" (your variance is beta_t; this lab uses the posterior variance beta_tilde_t = "
                              "(1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t)")
            return msg
        return test

    def on_device(fn, device):
        x_t, noise = (to_device(torch.randn(4, 2), device) for _ in range(2))
        on = to_device(schedule, device)

        def model_eps(x, t_batch):                              # like the lab's time embedding: the
            return x * (1 + t_batch[:, None].to(x.dtype) * on[0][:1])   # steps meet a device tensor

        return [fn(model_eps, x_t, t, on, noise) for t in (10, 0)]

    cases = [
        Case("2-D points, t = 100: mean = posterior mean, std = sqrt(beta_tilde)", test=case((6, 2), 100, 0)),
        Case("images (3, 1, 8, 8), t = 10", test=case((3, 1, 8, 8), 10, 1)),
        Case("t = 1 (beta_tilde uses alpha_bar[0])", test=case((4, 3), 1, 2)),
        Case("t = 199, the first reverse step", test=case((4, 2), 199, 3)),
        Case("t = 0: the mean, no noise added", test=case((5, 2), 0, 4)),
        device_case(run=on_device),
    ]
    return run_check(
        "ddpm_step(model_eps, x_t, t, schedule, noise)", ddpm_step, cases,
        hint="the reverse step's mean removes the predicted noise from x_t and rescales; its variance is the posterior's, and the last step (t = 0) adds no noise",
        solution="eps = model_eps(x_t, torch.full((N,), t, dtype=torch.long, device=x_t.device)); mean = (x_t - beta_t / "
             "sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_t); beta_tilde = (1 - alpha_bar_{t-1}) / "
             "(1 - alpha_bar_t) * beta_t; return mean + sqrt(beta_tilde) * noise for t > 0 and mean at t = 0",
    )


def reference_ddim_step(model_eps, x_t, t: int, s: int, alpha_bars):
    """Deterministic DDIM (eta = 0) from step t to step s < t; s = -1 is the clean end (alpha_bar = 1)."""
    import torch

    eps = model_eps(x_t, torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device))
    abar_t = alpha_bars[t]
    abar_s = alpha_bars[s] if s >= 0 else torch.ones((), dtype=alpha_bars.dtype, device=alpha_bars.device)
    x0_hat = (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    return abar_s.sqrt() * x0_hat + (1 - abar_s).sqrt() * eps


@tiered
def check_ddim_step(ddim_step: Callable) -> bool:
    """Check ``ddim_step(model_eps, x_t, t, s, alpha_bars)``: with the true noise it lands exactly on
    sqrt(alpha_bar_s) x0 + sqrt(1 - alpha_bar_s) eps, the point q(x_s | x0) reaches with the same noise."""
    import torch

    abar = reference_schedule(200, "linear")[2]

    def oracle_case(shape, t, s, seed):
        def test(fn):
            gen = torch.Generator().manual_seed(seed)
            x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
            eps = torch.randn(shape, generator=gen, dtype=torch.float64)
            x_t = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * eps
            calls = []

            def model_eps(x, t_batch):                          # an oracle: returns the true noise
                calls.append(t_batch)
                return eps.clone()

            out = fn(model_eps, x_t.clone(), t, s, abar.clone())
            if not calls:
                return "model_eps was never called"
            t_batch = calls[0]
            if not isinstance(t_batch, torch.Tensor) or t_batch.dtype != torch.long or \
                    tuple(t_batch.shape) != (shape[0],) or not (t_batch == t).all():
                return f"model_eps must get a ({shape[0]},) long tensor filled with t = {t}, got {t_batch!r}"[:200]
            a_s = abar[s] if s >= 0 else torch.tensor(1.0, dtype=torch.float64)
            want = a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps
            msg = compare_values(want, out, atol=1e-9, rtol=1e-7, path="x_s")
            if not msg:
                return None

            def matches(variant):
                return compare_values(variant, out, atol=1e-9, rtol=1e-7) is None

            if s < 0 and matches(abar[-1].sqrt() * x0 + (1 - abar[-1]).sqrt() * eps):
                return msg + " (s = -1 is the clean end: alpha_bar = 1, so x_s is the estimate of x0; " \
                             "alpha_bars[-1] would read the LAST step)"
            if s == 0 and matches(x0):
                return msg + " (s = 0 is one noising step (alpha_bar_0 = 1 - beta_0 < 1), not the data; " \
                             "only s = -1 is the data)"
            if matches(a_s.sqrt() * x0.clamp(-1, 1) + (1 - a_s).sqrt() * eps):
                return msg + " (the estimate of x0 was clipped to [-1, 1]: do not clip it here)"
            return msg
        return test

    def model_case(fn):
        """A non-oracle network: the step must reuse the predicted noise, not draw fresh noise."""
        gen = torch.Generator().manual_seed(7)
        x_t = torch.randn(5, 3, generator=gen, dtype=torch.float64)

        def model_eps(x, t_batch):
            return torch.tanh(x) * (1 + t_batch[:, None].to(x.dtype) / 200)

        got = fn(model_eps, x_t.clone(), 120, 60, abar.clone())
        again = fn(model_eps, x_t.clone(), 120, 60, abar.clone())
        if isinstance(got, torch.Tensor) and isinstance(again, torch.Tensor) and not torch.equal(got, again):
            return "two calls gave different results: DDIM with eta = 0 is deterministic (no fresh noise)"
        return compare_values(reference_ddim_step(model_eps, x_t, 120, 60, abar), got, atol=1e-9, rtol=1e-7,
                              path="x_s for a network's (imperfect) noise estimate")

    def float32_case(fn):
        x_t = torch.randn(4, 2, generator=torch.Generator().manual_seed(8))
        out = fn(lambda x, tb: 0.5 * x, x_t.clone(), 50, 25, abar.float())
        if not isinstance(out, torch.Tensor) or out.dtype != torch.float32:
            return f"float32 inputs gave {getattr(out, 'dtype', type(out).__name__)}: keep the inputs' dtype"
        return None

    def on_device(fn, device):
        x_t = to_device(torch.randn(4, 2), device)
        on = to_device(abar, device)
        return fn(lambda x, t_batch: x * (1 + t_batch[:, None].to(x.dtype) * on[:1]), x_t, 30, 10, on)

    cases = [
        Case("true noise, t = 100 -> s = 50: lands on sqrt(abar_s) x0 + sqrt(1 - abar_s) eps",
             test=oracle_case((6, 2), 100, 50, 0)),
        Case("images (3, 1, 8, 8), t = 199 -> s = 0", test=oracle_case((3, 1, 8, 8), 199, 0, 1)),
        Case("one step, t = 10 -> s = 9", test=oracle_case((4, 3), 10, 9, 2)),
        Case("to the clean end, t = 40 -> s = -1: the estimate of x0", test=oracle_case((5, 2), 40, -1, 3)),
        Case("a network's noise estimate: deterministic, the predicted noise reused", test=model_case),
        Case("float32 in, float32 out", test=float32_case),
        device_case(run=on_device),
    ]
    return run_check(
        "ddim_step(model_eps, x_t, t, s, alpha_bars)", ddim_step, cases,
        hint="estimate the clean data from x_t and the predicted noise, then move it to the noise level of step s "
             "with the SAME predicted noise (eta = 0: no fresh noise); s = -1 means alpha_bar = 1",
        solution="eps = model_eps(x_t, torch.full((N,), t, dtype=torch.long, device=x_t.device)); x0_hat = (x_t - "
                 "sqrt(1 - abar_t) * eps) / sqrt(abar_t); abar_s = alpha_bars[s] if s >= 0 else 1; return "
                 "sqrt(abar_s) * x0_hat + sqrt(1 - abar_s) * eps",
    )
