"""The lab-08 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from utils.checks import vae as checks


def _verdict(check, fn, capsys) -> bool:
    verdict = check(fn)
    out = capsys.readouterr().out
    assert bool(re.search(r"^✓ all \d+ cases passed$", out, re.M)) == verdict
    return verdict


def reparam(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def reparam_sqrt(mu, logvar):
    """Correct, written differently."""
    eps = torch.empty_like(mu).normal_()
    return torch.addcmul(mu, logvar.exp().sqrt(), eps)


def test_reparameterize_check(capsys):
    assert _verdict(checks.check_reparameterize, reparam, capsys)
    assert _verdict(checks.check_reparameterize, reparam_sqrt, capsys)
    assert not _verdict(checks.check_reparameterize,  # sigma = exp(logvar)
                        lambda mu, lv: mu + torch.exp(lv) * torch.randn_like(mu), capsys)
    assert not _verdict(checks.check_reparameterize,  # logvar used as the std
                        lambda mu, lv: mu + lv * torch.randn_like(mu), capsys)
    assert not _verdict(checks.check_reparameterize,  # sampling outside the graph
                        lambda mu, lv: torch.normal(mu.detach(), torch.exp(0.5 * lv.detach())), capsys)
    assert not _verdict(checks.check_reparameterize, lambda mu, lv: mu, capsys)  # no noise
    assert not _verdict(checks.check_reparameterize,  # float32 noise: result silently downcast
                        lambda mu, lv: (mu + torch.exp(0.5 * lv) * torch.randn(mu.shape)).float(), capsys)


def kl_formula(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def test_gaussian_kl_check(capsys):
    assert _verdict(checks.check_gaussian_kl, checks.reference_gaussian_kl, capsys)
    assert _verdict(checks.check_gaussian_kl, kl_formula, capsys)
    assert not _verdict(checks.check_gaussian_kl, lambda mu, lv: kl_formula(mu, lv).mean(), capsys)  # batch mean
    assert not _verdict(checks.check_gaussian_kl, lambda mu, lv: 2 * kl_formula(mu, lv), capsys)  # no 1/2
    assert not _verdict(checks.check_gaussian_kl,  # mean over latent dims
                        lambda mu, lv: -0.5 * torch.mean(1 + lv - mu.pow(2) - lv.exp(), dim=-1), capsys)
    assert not _verdict(checks.check_gaussian_kl,  # logvar treated as log sigma
                        lambda mu, lv: kl_formula(mu, 2 * lv), capsys)


def elbo_alternative(x, logits, mu, logvar, beta=1.0):
    """Correct, written differently: log-sigmoid form."""
    log_p = x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)
    rec = -log_p.flatten(1).sum(1)
    return (rec + beta * kl_formula(mu, logvar)).mean()


def test_elbo_loss_check(capsys):
    assert _verdict(checks.check_elbo_loss, checks.reference_elbo_loss, capsys)
    assert _verdict(checks.check_elbo_loss, elbo_alternative, capsys)
    assert not _verdict(checks.check_elbo_loss,  # BCE averaged over pixels
                        lambda x, lg, mu, lv, beta=1.0: F.binary_cross_entropy_with_logits(lg, x)
                        + beta * kl_formula(mu, lv).mean(), capsys)
    assert not _verdict(checks.check_elbo_loss,  # beta ignored
                        lambda x, lg, mu, lv, beta=1.0: checks.reference_elbo_loss(x, lg, mu, lv), capsys)
    assert not _verdict(checks.check_elbo_loss,  # summed over the batch
                        lambda x, lg, mu, lv, beta=1.0: len(x) * checks.reference_elbo_loss(x, lg, mu, lv, beta),
                        capsys)
    assert not _verdict(checks.check_elbo_loss,  # probabilities then log: overflows for large logits
                        lambda x, lg, mu, lv, beta=1.0: (F.binary_cross_entropy(torch.sigmoid(lg), x,
                                                                                reduction="none").flatten(1).sum(1)
                                                         + beta * kl_formula(mu, lv)).mean(), capsys)
    assert not _verdict(checks.check_elbo_loss,  # only flattens the second dimension
                        lambda x, lg, mu, lv, beta=1.0: (F.binary_cross_entropy_with_logits(
                            lg, x, reduction="none").sum(1).mean() + beta * kl_formula(mu, lv).mean()), capsys)


def test_check_messages_name_the_mistake(capsys):
    checks.check_elbo_loss(lambda x, lg, mu, lv, beta=1.0: F.binary_cross_entropy_with_logits(lg, x)
                           + beta * kl_formula(mu, lv).mean())
    assert "averaged over the 64 pixels instead of summed" in capsys.readouterr().out

    assert not _verdict(checks.check_reparameterize,  # torch.normal: no gradient to mu
                        lambda mu, lv: torch.normal(mu, torch.exp(0.5 * lv)), capsys)
    checks.check_reparameterize(lambda mu, lv: torch.normal(mu, torch.exp(0.5 * lv)))
    assert "write mu + sigma * eps" in capsys.readouterr().out

    def std_detached(mu, lv):
        return mu + torch.exp(0.5 * lv).detach() * torch.randn_like(mu)

    assert not _verdict(checks.check_reparameterize, std_detached, capsys)
    checks.check_reparameterize(std_detached)
    out = capsys.readouterr().out
    assert "no gradient reached logvar" in out and "no gradient reached mu" not in out
