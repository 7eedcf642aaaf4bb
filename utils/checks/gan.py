"""Checks for the GAN lab (09): discriminator_loss and generator_loss, in logit space."""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered, to_device

__all__ = ["check_discriminator_loss", "check_gan_step", "check_generator_loss", "reference_discriminator_loss",
           "reference_gan_step", "reference_generator_loss"]


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


SIGN_NOTE = "opposite sign: both are losses to minimise"


def _scale_note(want, got, half_note=None):
    """What a wrong loss (or its gradient) has in common with the reference: the opposite sign
    (``got = -want``) or, with ``half_note``, a factor 1/2 (``got = want / 2``); None otherwise."""
    import torch

    if not isinstance(got, torch.Tensor) or got.numel() != want.numel() or not want.abs().max() > 1e-6:
        return None
    g, w = got.detach().cpu().double().reshape(want.shape), want.detach().cpu().double()
    if torch.allclose(g, -w, atol=1e-9, rtol=1e-5):
        return SIGN_NOTE
    if half_note and torch.allclose(g, w / 2, atol=1e-9, rtol=1e-5):
        return half_note
    return None


def _loss_case(reference, args, kwargs=None, *, atol=1e-10, rtol=1e-6, half_note=None):
    """The loss's value against the reference's; a wrong sign (or a factor 1/2) is named."""
    kwargs = kwargs or {}

    def test(fn):
        want = reference(*args, **kwargs)
        got = fn(*[a.clone() for a in args], **kwargs)
        msg = compare_values(want, got, atol=atol, rtol=rtol)
        note = msg and _scale_note(want, got, half_note)
        return f"{note}; {msg}" if note else msg

    return test


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
                note = _scale_note(a.grad, b.grad, "half the reference's: a factor 0.5 in the loss?")
                return f"{note}; {msg}" if note else msg
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
    each_on_its_own = "average the real and the fake terms each on its own, then add"

    def value_case(real, fake):
        """The value, with a note for a factor 1/2, one mean over the real and fake terms together (the
        same as a factor 1/2 when the two sets have the same size), or the opposite sign."""
        def test(fn):
            want = reference_discriminator_loss(real, fake)
            got = fn(real.clone(), fake.clone())
            msg = compare_values(want, got, atol=1e-10)
            if msg and isinstance(got, torch.Tensor) and got.numel() == 1:
                joint = (torch.nn.functional.softplus(-real).sum() + torch.nn.functional.softplus(fake).sum()) / (
                    real.numel() + fake.numel())
                half = ("a factor 0.5, or one mean over both sets" if real.numel() == fake.numel()
                        else "a factor 0.5")
                note = _scale_note(want, got, f"your value is half the reference ({half}): {each_on_its_own}")
                if note:
                    return f"{note}; {msg}" if note == SIGN_NOTE else note
                if torch.allclose(got.detach().double().reshape(()), joint, atol=1e-10):
                    return f"your value is one mean over all the real and fake logits together: {each_on_its_own}"
            return msg
        return test

    cases = [
        Case("random logits, 8 real and 8 fake", test=value_case(r, f)),
        Case("(N, 1) logits, 6 real and 20 fake (each set averaged on its own)", test=value_case(r1, f5)),
        Case("perfect discriminator (real +30, fake -30) -> loss near 0",
             (torch.full((4,), 30.0, dtype=torch.float64), torch.full((4,), -30.0, dtype=torch.float64)),
             expected=reference_discriminator_loss, atol=1e-10),
        Case("float32 logits of size 200-300: finite (stay in logit space)",
             test=_loss_case(reference_discriminator_loss, (big_r, big_f), atol=1e-3, rtol=1e-6,
                             half_note=f"your value is half the reference (a factor 0.5?): {each_on_its_own}")),
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
        Case("non-saturating (default), random logits", test=_loss_case(reference_generator_loss, (f,))),
        Case("saturating=True, random logits", test=_loss_case(reference_generator_loss, (f,), {"saturating": True})),
        Case("(N, 1) logits, non-saturating",
             test=_loss_case(reference_generator_loss, (f1,), {"saturating": False})),
        Case("float32 logits of size 200: finite, non-saturating",
             test=_loss_case(reference_generator_loss, (big,), atol=1e-3, rtol=1e-6)),
        Case("float32 logits of size 200: finite, saturating",
             test=_loss_case(reference_generator_loss, (big,), {"saturating": True}, atol=1e-3, rtol=1e-6)),
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


def reference_gan_step(G, D, opt_g, opt_d, real, z, saturating=False):
    """One alternating step: the discriminator on real and DETACHED fakes, then the generator on the
    same fakes through the updated discriminator. Returns (loss_d, loss_g) as floats."""
    fake = G(z)
    loss_d = reference_discriminator_loss(D(real), D(fake.detach()))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = reference_generator_loss(D(fake), saturating)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item()


def _gan_setup(seed):
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)

    def mlp(cin, cout):
        net = nn.Sequential(nn.Linear(cin, 6), nn.Tanh(), nn.Linear(6, cout)).double()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
        return net

    G, D = mlp(3, 2), mlp(2, 1)
    real = torch.randn(16, 2, generator=gen, dtype=torch.float64) + 1.0
    z = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    return G, D, real, z


@tiered
def check_gan_step(gan_step: Callable) -> bool:
    """Check ``gan_step(G, D, opt_g, opt_d, real, z, saturating=False)`` against the alternating reference."""
    import copy

    import torch

    detach_advice = ("detach the fakes in the discriminator's loss (D(fake.detach())), so its backward pass "
                     "stops at the fake samples and leaves the generator's graph for the generator's step")

    stale_advice = ("autograd found D's weights changed after they were used: the generator's logits must come from "
                    "the UPDATED discriminator, so call D(fake) again after opt_d.step() instead of reusing the "
                    "logits computed before it")
    # PyTorch's own wording of these two errors says little to a student: re-raised with what went wrong
    second_backward = ("backward went through the generator's graph a second time: detach the fake batch for D's "
                       "step (D(fake.detach()))")
    stale_logits = ("the generator's loss reused D's logits from before opt_d.step(): call D(fake) again after "
                    "D's update")

    def run(fn, G, D, real, z, saturating, steps):
        opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=0.1), torch.optim.SGD(D.parameters(), lr=0.1)
        out = None
        for _ in range(steps):
            try:
                out = fn(G, D, opt_g, opt_d, real, z, saturating=saturating)
            except RuntimeError as exc:
                if "backward through the graph a second time" in str(exc):
                    raise RuntimeError(second_backward) from exc
                if "modified by an inplace operation" in str(exc):
                    raise RuntimeError(stale_logits) from exc
                raise
        return out

    def explain(exc):
        """The note for one of the two re-raised errors above, or None for any other error."""
        if str(exc) == second_backward:
            return f"the discriminator's backward went through the generator; {detach_advice}"
        if str(exc) == stale_logits:
            return stale_advice
        return None

    def same_parameters(reference_nets, nets, steps):
        """None when both networks' parameters equal the reference's, else the first difference."""
        for name, a, b in zip(("discriminator", "generator"), reference_nets, nets):
            for (pname, p), q in zip(a.named_parameters(), b.parameters()):
                msg = compare_values(p.detach(), q.detach(), atol=1e-10, rtol=1e-8,
                                     path=f"{name} parameter {pname} after {steps} step(s)")
                if msg:
                    return msg
        return None

    def compare_case(saturating, steps, seed):
        def test(fn):
            G, D, real, z = _gan_setup(seed)
            G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
            want = run(reference_gan_step, G, D, real, z, saturating, steps)
            try:
                got = run(fn, G2, D2, real.clone(), z.clone(), saturating, steps)
            except RuntimeError as exc:
                if explain(exc) is None:
                    raise
                return explain(exc)
            msg = same_parameters((D, G), (D2, G2), steps)
            if msg and saturating:                              # the step of the non-saturating loss instead?
                G3, D3, real3, z3 = _gan_setup(seed)
                run(reference_gan_step, G3, D3, real3, z3, False, steps)
                if same_parameters((D3, G3), (D2, G2), steps) is None:
                    return ("with saturating=True your step takes the non-saturating step: pass `saturating` to "
                            "`generator_loss` (generator_loss(D(fake), saturating)); check_generator_loss tests "
                            "that generator_loss uses it")
            if msg:
                why = (" (is the discriminator updated first, on real and fake, then the generator on the "
                       "same fakes through the UPDATED discriminator? are both gradients zeroed?)")
                return msg + why
            if not isinstance(got, tuple | list) or len(got) != 2:
                return "return (loss_d, loss_g)"
            if not all(isinstance(v, float) for v in got):
                kinds = ", ".join(type(v).__name__ for v in got)
                return f"return Python floats (loss_d.item(), loss_g.item()), not {kinds}"
            return compare_values(tuple(float(v) for v in want), tuple(float(v) for v in got), atol=1e-10,
                                  rtol=1e-8, path="(loss_d, loss_g)")
        return test

    def detach_case(fn):
        """The discriminator's step must not backpropagate into the generator."""
        G, D, real, z = _gan_setup(3)
        count = {"n": 0}
        handles = [p.register_hook(lambda g: count.__setitem__("n", count["n"] + 1) or g) for p in G.parameters()]
        try:
            run(fn, G, D, real, z, False, 1)
        except RuntimeError as exc:
            if explain(exc) is None:
                raise
            return explain(exc)
        finally:
            for h in handles:
                h.remove()
        per_param = count["n"] / len(handles)
        if per_param > 1:
            return f"the generator's parameters received gradients twice in one step: {detach_advice}"
        if per_param < 1:
            return "the generator's parameters received no gradient: its loss must be computed from D(fake)"
        return None

    cases = [
        Case("one step, non-saturating: both networks' parameters as the reference", test=compare_case(False, 1, 0)),
        Case("three steps: gradients zeroed before every backward pass", test=compare_case(False, 3, 1)),
        Case("saturating loss", test=compare_case(True, 2, 2)),
        Case("the discriminator's step does not reach the generator (detach)", test=detach_case),
        device_case(run=lambda fn, device: run(fn, *to_device(_gan_setup(4), device), False, 1),
                    data_note="undecided here: the step returns .item() values, as asked, and the stand-in device "
                              "has no values; on a GPU this case runs for real"),
    ]
    return run_check(
        "gan_step(G, D, opt_g, opt_d, real, z, saturating)", gan_step, cases,
        hint="first the discriminator learns to tell real from fake while the generator is held fixed (the fakes "
             "are cut off from the generator's graph), then the generator learns to fool the updated "
             "discriminator; each network's optimiser steps only on its own loss",
        solution="fake = G(z); loss_d = discriminator_loss(D(real), D(fake.detach())); opt_d.zero_grad(); "
                 "loss_d.backward(); opt_d.step(); loss_g = generator_loss(D(fake), saturating); opt_g.zero_grad(); "
                 "loss_g.backward(); opt_g.step(); return loss_d.item(), loss_g.item()",
    )
