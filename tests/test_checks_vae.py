"""The lab-08 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import check_verdict as _verdict

from utils.checks import vae as checks


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


def vae_forward(encoder, decoder, x):
    mu, logvar = encoder(x).chunk(2, dim=1)
    return decoder(reparam(mu, logvar)), mu, logvar


def vae_forward_split(encoder, decoder, x):
    """Correct, written differently: slicing and an inline sample."""
    h = encoder(x)
    k = h.shape[-1] // 2
    mu, logvar = h[..., :k], h[..., k:]
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)
    return decoder(z), mu, logvar


def test_vae_forward_check(capsys):
    assert _verdict(checks.check_vae_forward, vae_forward, capsys)
    assert _verdict(checks.check_vae_forward, vae_forward_split, capsys)

    def decodes_mu(enc, dec, x):
        mu, lv = enc(x).chunk(2, dim=1)
        return dec(mu), mu, lv

    def swapped(enc, dec, x):
        lv, mu = enc(x).chunk(2, dim=1)
        return dec(reparam(mu, lv)), mu, lv

    def probabilities(enc, dec, x):
        mu, lv = enc(x).chunk(2, dim=1)
        return torch.sigmoid(dec(reparam(mu, lv))), mu, lv

    def detached(enc, dec, x):
        mu, lv = enc(x).chunk(2, dim=1)
        return dec(reparam(mu.detach(), lv.detach())), mu, lv

    def batch_split(enc, dec, x):
        mu, lv = enc(x).chunk(2, dim=0)
        return dec(reparam(mu, lv)), mu, lv

    def returns_z(enc, dec, x):
        mu, lv = enc(x).chunk(2, dim=1)
        z = reparam(mu, lv)
        return dec(z), z, lv

    def cpu_noise(enc, dec, x):
        mu, lv = enc(x).chunk(2, dim=1)
        return dec(mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, dtype=mu.dtype)), mu, lv

    def wrong_order(enc, dec, x):
        mu, lv = enc(x).chunk(2, dim=1)
        return mu, lv, dec(reparam(mu, lv))

    for mistake in (decodes_mu, swapped, probabilities, detached, batch_split, returns_z, wrong_order):
        assert not _verdict(checks.check_vae_forward, mistake, capsys), mistake.__name__
    named = {decodes_mu: "decode a sample z = reparameterize(mu, logvar)", swapped: "mu and logvar are swapped",
             probabilities: "return the logits", returns_z: "the returned mu is the sampled z",
             wrong_order: "return (logits, mu, logvar) in that order"}
    for mistake, message in named.items():
        checks.check_vae_forward(mistake)
        assert message in capsys.readouterr().out, mistake.__name__
    # decoding the mean returns the right mu: the split case passes and no message calls mu the sampled z
    checks.check_vae_forward(decodes_mu)
    out = capsys.readouterr().out
    assert "✓ mu = first K encoder outputs" in out and "the returned mu is the sampled z" not in out
    # the device probe: noise drawn on the CPU fails (on meta when there is no accelerator)
    checks.check_vae_forward(cpu_noise)
    out = capsys.readouterr().out
    assert "✗ inputs on another device" in out and "✓ the decoder receives z" in out


def kl_per_dim_formula(mu, logvar):
    """Correct, written differently: through the per-sample formula, one column at a time."""
    return torch.stack([-0.5 * torch.mean(1 + logvar[:, k] - mu[:, k] ** 2 - logvar[:, k].exp())
                        for k in range(mu.shape[1])])


def test_kl_per_dim_check(capsys):
    assert _verdict(checks.check_kl_per_dim, checks.reference_kl_per_dim, capsys)
    assert _verdict(checks.check_kl_per_dim, kl_per_dim_formula, capsys)

    def per_element(mu, lv):
        return 0.5 * (mu.pow(2) + lv.exp() - 1 - lv)

    mistakes = {
        "summed over the latent dimensions": lambda mu, lv: per_element(mu, lv).sum(1),
        "mean over the latent dimensions": lambda mu, lv: per_element(mu, lv).mean(1),
        "summed over the batch": lambda mu, lv: per_element(mu, lv).sum(0),
        "one scalar": lambda mu, lv: per_element(mu, lv).mean(),
        "no 1/2": lambda mu, lv: 2 * per_element(mu, lv).mean(0),
        "logvar treated as log sigma": lambda mu, lv: per_element(mu, 2 * lv).mean(0),
    }
    for name, mistake in mistakes.items():
        assert not _verdict(checks.check_kl_per_dim, mistake, capsys), name
    checks.check_kl_per_dim(mistakes["summed over the latent dimensions"])
    assert "one value per sample" in capsys.readouterr().out
    checks.check_kl_per_dim(mistakes["summed over the batch"])
    assert "the sum over the batch instead of the mean" in capsys.readouterr().out


def test_new_checks_have_both_tiers(capsys):
    checks.check_kl_per_dim(lambda mu, lv: mu.sum(0))
    out = capsys.readouterr().out
    assert "hint:" in out and "show_solution=True" in out and "solution:" not in out
    checks.check_kl_per_dim(lambda mu, lv: mu.sum(0), show_solution=True)
    assert ".mean(dim=0)" in capsys.readouterr().out
    checks.check_vae_forward(lambda enc, dec, x: (dec(x), x, x))
    out = capsys.readouterr().out
    assert "hint:" in out and "solution:" not in out
    checks.check_vae_forward(lambda enc, dec, x: (dec(x), x, x), show_solution=True)
    assert "chunk(2, dim=1)" in capsys.readouterr().out
