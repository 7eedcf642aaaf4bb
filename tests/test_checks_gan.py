"""The lab-09 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import check_verdict as _verdict

from utils.checks import gan as checks


def d_loss_softplus(real_logits, fake_logits):
    """Correct, written differently: softplus form."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def d_loss_logsigmoid(real_logits, fake_logits):
    """Correct, written differently: log-sigmoid form."""
    return -F.logsigmoid(real_logits).mean() - F.logsigmoid(-fake_logits).mean()


def test_discriminator_loss_check(capsys):
    assert _verdict(checks.check_discriminator_loss, checks.reference_discriminator_loss, capsys)
    assert _verdict(checks.check_discriminator_loss, d_loss_softplus, capsys)
    assert _verdict(checks.check_discriminator_loss, d_loss_logsigmoid, capsys)
    assert not _verdict(checks.check_discriminator_loss,  # unstable: log of a sigmoid
                        lambda r, f: -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean(),
                        capsys)
    assert not _verdict(checks.check_discriminator_loss,  # unstable on the real logits only
                        lambda r, f: -torch.log(torch.sigmoid(r)).mean() + F.softplus(f).mean(), capsys)
    assert not _verdict(checks.check_discriminator_loss, lambda r, f: d_loss_softplus(f, r), capsys)  # targets swapped
    assert not _verdict(checks.check_discriminator_loss,  # one mean over the concatenation
                        lambda r, f: torch.cat([F.softplus(-r), F.softplus(f)]).mean(), capsys)
    assert not _verdict(checks.check_discriminator_loss,  # sums instead of means
                        lambda r, f: F.softplus(-r).sum() + F.softplus(f).sum(), capsys)
    assert not _verdict(checks.check_discriminator_loss,  # detached
                        lambda r, f: d_loss_softplus(r, f).detach(), capsys)


def g_loss_logsigmoid(fake_logits, saturating=False):
    """Correct, written differently."""
    if saturating:
        return F.logsigmoid(-fake_logits).mean()
    return -F.logsigmoid(fake_logits).mean()


def test_generator_loss_check(capsys):
    assert _verdict(checks.check_generator_loss, checks.reference_generator_loss, capsys)
    assert _verdict(checks.check_generator_loss, g_loss_logsigmoid, capsys)
    assert not _verdict(checks.check_generator_loss,  # saturating form with the wrong sign
                        lambda f, saturating=False: F.softplus(f).mean() if saturating else F.softplus(-f).mean(),
                        capsys)
    assert not _verdict(checks.check_generator_loss,  # ignores the flag
                        lambda f, saturating=False: F.softplus(-f).mean(), capsys)
    assert not _verdict(checks.check_generator_loss,  # unstable probability form
                        lambda f, saturating=False: torch.log(1 - torch.sigmoid(f)).mean() if saturating
                        else -torch.log(torch.sigmoid(f)).mean(), capsys)
    assert not _verdict(checks.check_generator_loss,  # unstable in the non-saturating branch only
                        lambda f, saturating=False: -F.softplus(f).mean() if saturating
                        else -torch.log(torch.sigmoid(f)).mean(), capsys)
    assert not _verdict(checks.check_generator_loss,  # maximises the discriminator's loss on fakes (sign)
                        lambda f, saturating=False: -F.softplus(f).mean() if saturating else -F.softplus(-f).mean(),
                        capsys)


# ----- the alternating training step (a check ready for lab 09) -------------------------------
def gan_step_requires_grad(G, D, opt_g, opt_d, real, z, saturating=False):
    """Correct, written differently: no detach, but the generator is frozen during D's step, and D
    during G's step."""
    G.requires_grad_(False)
    loss_d = checks.reference_discriminator_loss(D(real), D(G(z)))
    G.requires_grad_(True)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    D.requires_grad_(False)
    loss_g = checks.reference_generator_loss(D(G(z)), saturating)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    D.requires_grad_(True)
    return loss_d.item(), loss_g.item()


def _gan_mistake(kind):
    def step(G, D, opt_g, opt_d, real, z, saturating=False):
        fake = G(z)
        loss_d = checks.reference_discriminator_loss(D(real), D(fake if kind.startswith("no detach") else fake.detach()))
        if kind != "no zero_grad":
            opt_d.zero_grad()
        loss_d.backward(retain_graph=kind == "no detach, graph retained")
        opt_d.step()
        loss_g = checks.reference_generator_loss(D(fake), saturating if kind != "always non-saturating" else False)
        if kind not in ("no zero_grad", "no detach, graph retained"):
            opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        return loss_d.item(), loss_g.item()
    return step


def gan_step_generator_first(G, D, opt_g, opt_d, real, z, saturating=False):
    fake = G(z)
    loss_g = checks.reference_generator_loss(D(fake), saturating)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    loss_d = checks.reference_discriminator_loss(D(real), D(fake.detach()))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    return loss_d.item(), loss_g.item()


def test_gan_step_check(capsys):
    def ok(fn):
        result = checks.check_gan_step(fn)
        out = capsys.readouterr().out
        return result, out

    assert ok(checks.reference_gan_step)[0]
    assert ok(gan_step_requires_grad)[0]
    for kind in ("no detach", "no detach, graph retained", "no zero_grad", "always non-saturating"):
        assert not ok(_gan_mistake(kind))[0], kind
    assert not ok(gan_step_generator_first)[0]
    assert "detach the fakes" in ok(_gan_mistake("no detach"))[1]                 # the graph-freed error
    assert "detach the fakes" in ok(_gan_mistake("no detach, graph retained"))[1]  # gradients into G twice


def test_gan_step_check_names_the_unpassed_saturating_flag(capsys):
    """Only the saturating case fails, and the step equals the non-saturating one: the flag is named."""
    assert not checks.check_gan_step(_gan_mistake("always non-saturating"))
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("  ✗")]
    assert len(failed) == 1 and "saturating loss" in failed[0], failed
    assert "pass `saturating` to `generator_loss`" in failed[0]
    assert not checks.check_gan_step(gan_step_generator_first)          # another mistake: not blamed on the flag
    assert "pass `saturating`" not in capsys.readouterr().out


def test_gan_step_check_names_tensor_returns_and_stale_logits(capsys):
    """Loss tensors instead of floats, and the generator's logits reused from before D's update."""
    def returns_tensors(G, D, opt_g, opt_d, real, z, saturating=False):
        fake = G(z)
        loss_d = checks.reference_discriminator_loss(D(real), D(fake.detach()))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = checks.reference_generator_loss(D(fake), saturating)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        return loss_d.detach(), loss_g.detach()

    def stale_logits(G, D, opt_g, opt_d, real, z, saturating=False):
        fake = G(z)
        fake_logits = D(fake)                                  # computed once, before D's update
        loss_d = checks.reference_discriminator_loss(D(real), D(fake.detach()))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = checks.reference_generator_loss(fake_logits, saturating)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        return loss_d.item(), loss_g.item()

    assert not checks.check_gan_step(returns_tensors)
    assert "return Python floats" in capsys.readouterr().out
    assert not checks.check_gan_step(stale_logits)
    assert "UPDATED discriminator" in capsys.readouterr().out


def test_gan_step_device_note_does_not_blame_the_required_item(capsys):
    from utils.checks.core import probe_device

    assert checks.check_gan_step(checks.reference_gan_step)
    out = capsys.readouterr().out
    if probe_device().type == "meta":
        assert "returns .item() values, as asked" in out and "your code needs tensor values" not in out


def test_discriminator_loss_check_names_the_joint_mean(capsys):
    """One mean over real and fake together: half the reference when both sets have 8 logits."""
    joint = lambda r, f: torch.cat([F.softplus(-r).flatten(), F.softplus(f).flatten()]).mean()  # noqa: E731
    assert not _verdict(checks.check_discriminator_loss, joint, capsys)
    checks.check_discriminator_loss(joint)
    out = capsys.readouterr().out
    assert ("your value is half the reference (a factor 0.5, or one mean over both sets): average the real and "
            "the fake terms each on its own, then add") in out
    assert "one mean over all the real and fake logits together" in out        # the 6-vs-20 case


def test_discriminator_loss_check_names_a_factor_half(capsys):
    """0.5 * (mean + mean): named as a factor 0.5 in every value case, also where the sets differ in size."""
    halved = lambda r, f: 0.5 * d_loss_softplus(r, f)  # noqa: E731
    assert not _verdict(checks.check_discriminator_loss, halved, capsys)
    checks.check_discriminator_loss(halved)
    out = capsys.readouterr().out
    assert "half the reference (a factor 0.5, or one mean over both sets)" in out       # 8 real, 8 fake
    assert "half the reference (a factor 0.5): average the real and the fake terms" in out   # 6 real, 20 fake
    assert "half the reference's: a factor 0.5 in the loss?" in out                   # the gradient case
    assert "one mean over all the real and fake logits together" not in out


def test_loss_checks_name_the_opposite_sign(capsys):
    """A loss to maximise instead of minimise: every failing value and gradient case says so."""
    cases = [
        (checks.check_discriminator_loss, lambda r, f: -d_loss_softplus(r, f)),
        (checks.check_generator_loss,       # non-saturating branch negated
         lambda f, saturating=False: -F.softplus(f).mean() if saturating else -F.softplus(-f).mean()),
        (checks.check_generator_loss,       # saturating branch negated: -log(1 - D(G(z))), a loss to maximise
         lambda f, saturating=False: F.softplus(f).mean() if saturating else F.softplus(-f).mean()),
    ]
    for check, wrong in cases:
        assert not _verdict(check, wrong, capsys)
        check(wrong)
        failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ✗")]
        assert failed and all("opposite sign: both are losses to minimise" in line for line in failed), failed
    checks.check_generator_loss(g_loss_logsigmoid)                 # a correct loss gets no such note
    assert "opposite sign" not in capsys.readouterr().out


def test_gan_step_notes_read_for_a_student(capsys):
    """No internal exception names in the notes; the missing detach is named in words."""
    for mistake in (_gan_mistake("no detach"), _gan_mistake("no detach, graph retained")):
        assert not checks.check_gan_step(mistake)
        out = capsys.readouterr().out
        assert "_SecondBackward" not in out and "_StaleLogits" not in out, out
        assert "detach the fake" in out, out
    checks.check_gan_step(_gan_mistake("no detach"))
    out = capsys.readouterr().out
    assert "raised _" not in out and "raised RuntimeError: :" not in out, out
    for line in out.splitlines():                   # a device note, when there is one, explains in words
        if "another device" in line and "raised" in line:
            assert "backward went through the generator's graph a second time" in line, line
