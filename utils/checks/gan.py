"""Checks for the GAN lab (09): discriminator_loss and generator_loss, in logit space."""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered, to_device

__all__ = ["check_discriminator_loss", "check_generator_loss", "reference_discriminator_loss",
           "reference_generator_loss"]


def reference_discriminator_loss(real_logits, fake_logits):
    """BCE with target 1 on real and 0 on fake logits, each averaged: mean softplus(-r) + mean softplus(f)."""
    import torch
    import torch.nn.functional as F

    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def reference_generator_loss(fake_logits, saturating=False):
    """Non-saturating: mean -log D(G(z)) = mean softplus(-f); saturating: mean log(1 - D(G(z))) = -mean softplus(f)."""
    import torch.nn.functional as F

    if saturating:
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


def _grad_case(reference, *args, **kwargs):
    """Gradient of the student's loss w.r.t. every logit argument equals the reference's."""
    import torch

    def test(fn):
        mine = [a.clone().requires_grad_(True) for a in args]
        theirs = [a.clone().requires_grad_(True) for a in args]
        out = fn(*theirs, **kwargs)
        if not isinstance(out, torch.Tensor) or out.ndim != 0:
            return f"expected a scalar tensor, got {getattr(out, 'shape', type(out).__name__)}"
        if not out.requires_grad:
            return "the loss is not differentiable (detached, or computed outside autograd)"
        out.backward()
        reference(*mine, **kwargs).backward()
        for k, (a, b) in enumerate(zip(mine, theirs)):
            if b.grad is None:
                return f"no gradient reached logits argument {k}"
            msg = compare_values(a.grad, b.grad, atol=1e-9, rtol=1e-6, path=f"gradient w.r.t. argument {k}")
            if msg:
                return msg
        return None

    return test


@tiered
def check_discriminator_loss(discriminator_loss: Callable) -> bool:
    """Check ``discriminator_loss(real_logits, fake_logits)`` against BCE with logits."""
    import torch

    g = torch.Generator().manual_seed(0)
    r, f = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    r1, f5 = torch.randn(6, 1, generator=g, dtype=torch.float64), torch.randn(20, 1, generator=g, dtype=torch.float64)
    big_r = torch.tensor([200.0, -200.0, 50.0])                     # float32, as networks output
    big_f = torch.tensor([-300.0, 300.0])
    cases = [
        Case("random logits, 8 real and 8 fake", (r, f), expected=reference_discriminator_loss, atol=1e-10),
        Case("(N, 1) logits, 6 real and 20 fake (each set averaged on its own)", (r1, f5),
             expected=reference_discriminator_loss, atol=1e-10),
        Case("perfect discriminator (real +30, fake -30) -> loss near 0",
             (torch.full((4,), 30.0, dtype=torch.float64), torch.full((4,), -30.0, dtype=torch.float64)),
             expected=reference_discriminator_loss, atol=1e-10),
        Case("float32 logits of size 200-300: finite (stay in logit space)", (big_r, big_f),
             expected=reference_discriminator_loss, atol=1e-3, rtol=1e-6),
        Case("gradients equal the reference's", test=_grad_case(reference_discriminator_loss, r1, f5)),
        device_case(r1, f5),
    ]
    return run_check(
        "discriminator_loss(real_logits, fake_logits)", discriminator_loss, cases,
        hint='binary cross-entropy with target 1 for real and 0 for fake samples, each set averaged on its own, computed from logits (never log of a sigmoid)',
        solution="-log D(x) = softplus(-logit) for real samples and -log(1 - D(G(z))) = softplus(logit) for "
             "fakes: F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean() (or BCE with logits "
             "and targets 1 and 0); never take log(sigmoid(...))",
    )


@tiered
def check_generator_loss(generator_loss: Callable) -> bool:
    """Check ``generator_loss(fake_logits, saturating=False)``: both forms, stable and differentiable."""
    import torch

    g = torch.Generator().manual_seed(1)
    f = torch.randn(10, generator=g, dtype=torch.float64)
    f1 = torch.randn(7, 1, generator=g, dtype=torch.float64)
    big = torch.tensor([-200.0, 0.0, 200.0])                          # float32, as networks output
    confident_d = torch.full((5,), -8.0, dtype=torch.float64)        # D is sure the fakes are fake
    cases = [
        Case("non-saturating (default), random logits", (f,), expected=reference_generator_loss, atol=1e-10),
        Case("saturating=True, random logits", (f,), {"saturating": True},
             expected=lambda x, saturating: reference_generator_loss(x, saturating), atol=1e-10),
        Case("(N, 1) logits, non-saturating", (f1,), {"saturating": False},
             expected=lambda x, saturating: reference_generator_loss(x, saturating), atol=1e-10),
        Case("float32 logits of size 200: finite, non-saturating", (big,), expected=reference_generator_loss,
             atol=1e-3, rtol=1e-6),
        Case("float32 logits of size 200: finite, saturating", (big,), {"saturating": True},
             expected=lambda x, saturating: reference_generator_loss(x, saturating), atol=1e-3, rtol=1e-6),
        Case("gradients, non-saturating, D confident (logit -8): strong signal",
             test=_grad_case(reference_generator_loss, confident_d)),
        Case("gradients, saturating, D confident (logit -8): vanishing signal",
             test=_grad_case(reference_generator_loss, confident_d, saturating=True)),
        device_case(run=lambda fn, device: [fn(to_device(f1, device), saturating=s) for s in (False, True)]),
    ]
    return run_check(
        "generator_loss(fake_logits, saturating)", generator_loss, cases,
        hint='the saturating loss minimises log(1 - D(G(z))), the non-saturating one maximises log D(G(z)); both from logits, for stability',
        solution="non-saturating: minimise -log D(G(z)) = F.softplus(-fake_logits).mean(); saturating: minimise "
             "log(1 - D(G(z))) = -F.softplus(fake_logits).mean(); both are scalars to minimise",
    )
