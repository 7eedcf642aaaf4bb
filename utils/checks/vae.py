"""Checks for the autoencoder and VAE lab (08): reparameterize, gaussian_kl and elbo_loss."""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_elbo_loss", "check_gaussian_kl", "check_reparameterize", "reference_elbo_loss",
           "reference_gaussian_kl"]


def reference_gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the last dimension, by torch.distributions."""
    import torch
    from torch.distributions import Normal, kl_divergence

    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return kl_divergence(q, p).sum(-1)


def reference_elbo_loss(x, logits, mu, logvar, beta=1.0):
    """Negative ELBO: Bernoulli reconstruction (summed over pixels) + beta * KL, averaged over the batch."""
    import torch.nn.functional as F

    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").reshape(len(x), -1).sum(1)
    return (rec + beta * reference_gaussian_kl(mu, logvar)).mean()


@tiered
def check_reparameterize(reparameterize: Callable) -> bool:
    """Check ``reparameterize(mu, logvar)`` by its statistics and its gradients."""
    import torch

    def stats_case(fn):
        torch.manual_seed(0)
        mu = torch.tensor([[-2.0, 0.0, 3.0]], dtype=torch.float64).repeat(100_000, 1)
        logvar = torch.tensor([[0.0, -2.0, 1.5]], dtype=torch.float64).repeat(100_000, 1)
        z = fn(mu, logvar)
        if not isinstance(z, torch.Tensor) or z.shape != mu.shape:
            return f"expected a tensor of shape {tuple(mu.shape)}, got {getattr(z, 'shape', type(z).__name__)}"
        std = torch.exp(0.5 * logvar[0])
        msg = compare_values(mu[0], z.mean(0), atol=0.02, rtol=0, path="sample mean")
        if msg:
            return msg
        msg = compare_values(std, z.std(0), atol=0, rtol=0.02, path="sample std")
        if msg:
            return msg + " (logvar is log sigma^2, so sigma = exp(0.5 * logvar))"
        return None

    def grad_case(fn):
        torch.manual_seed(1)
        mu = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
        logvar = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
        z = fn(mu, logvar)
        if not isinstance(z, torch.Tensor) or not z.requires_grad:
            return "the output does not depend on mu and logvar through autograd (no detach, no torch.no_grad)"
        z.sum().backward()
        missing = [name for name, t in (("mu", mu), ("logvar", logvar)) if t.grad is None]
        if missing:
            return (f"no gradient reached {' or '.join(missing)}: z must be computed from "
                    f"{' and '.join(missing)} without .detach(), .item() or torch.no_grad()")
        msg = compare_values(torch.ones_like(mu), mu.grad, atol=1e-9, rtol=0, path="dz/dmu")
        if msg:
            if not mu.grad.any():
                msg += ("; torch.normal(mu, std) and Normal(...).sample() do not pass gradients to mu: "
                        "write mu + sigma * eps")
            return msg
        eps = (z.detach() - mu.detach()) / torch.exp(0.5 * logvar.detach())
        want = 0.5 * torch.exp(0.5 * logvar.detach()) * eps
        return compare_values(want, logvar.grad, atol=1e-9, rtol=1e-7, path="dz/dlogvar (= 0.5 sigma eps)")

    def fresh_case(fn):
        mu, logvar = torch.zeros(1000), torch.zeros(1000)
        torch.manual_seed(2)
        if torch.equal(fn(mu, logvar), fn(mu, logvar)):
            return "two calls gave the same z: draw new noise on every call"
        return None

    def dtype_case(fn):
        z = fn(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64))
        return None if z.dtype == torch.float64 else f"float64 inputs gave dtype {z.dtype}: use torch.randn_like(mu)"

    cases = [
        Case("mean mu and std exp(logvar / 2) over 100,000 draws", test=stats_case),
        Case("gradients: dz/dmu = 1, dz/dlogvar = sigma * eps / 2", test=grad_case),
        Case("new noise on every call", test=fresh_case),
        Case("keeps the dtype of mu", test=dtype_case),
        device_case(inputs=lambda: (torch.randn(4, 3), torch.randn(4, 3))),
    ]
    return run_check(
        "reparameterize(mu, logvar)", reparameterize, cases,
        hint='a sample written as a deterministic function of mu, logvar and independent standard noise, so gradients reach mu and logvar',
        solution="z = mu + exp(0.5 * logvar) * eps with eps = torch.randn_like(mu); the noise is the only "
             "random part, so gradients flow to mu and logvar",
    )


@tiered
def check_gaussian_kl(gaussian_kl: Callable) -> bool:
    """Check ``gaussian_kl(mu, logvar)`` against torch.distributions.kl_divergence."""
    import torch

    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    big_mu = 10 * torch.randn(3, 16, generator=g, dtype=torch.float64)
    big_lv = 4 * torch.randn(3, 16, generator=g, dtype=torch.float64)
    cases = [
        Case("standard normal posterior -> KL 0", (torch.zeros(2, 3), torch.zeros(2, 3)),
             expected=reference_gaussian_kl, atol=1e-6),
        Case("mu = 1, logvar = 0 in 3 dims -> KL 1.5", (torch.ones(1, 3), torch.zeros(1, 3)),
             expected=reference_gaussian_kl, atol=1e-6),
        Case("random (6, 4) float64", (mu, logvar), expected=reference_gaussian_kl, atol=1e-10, rtol=1e-10),
        Case("wide values, K = 16", (big_mu, big_lv), expected=reference_gaussian_kl, atol=1e-8, rtol=1e-10),
        Case("a single latent dimension (5, 1)", (mu[:5, :1], logvar[:5, :1]), expected=reference_gaussian_kl,
             atol=1e-10, rtol=1e-10),
        device_case(mu, logvar),
    ]
    return run_check(
        "gaussian_kl(mu, logvar)", gaussian_kl, cases,
        hint='the closed-form KL between a diagonal Gaussian and the standard normal, summed over the latent dimensions, one value per sample',
        solution="per dimension KL = 0.5 * (mu^2 + exp(logvar) - 1 - logvar); sum over the latent dimension "
             "(dim=-1) and keep the batch: the result has shape (N,)",
    )


@tiered
def check_elbo_loss(elbo_loss: Callable) -> bool:
    """Check ``elbo_loss(x, logits, mu, logvar, beta=1.0)`` against BCE-with-logits + KL."""
    import torch

    g = torch.Generator().manual_seed(0)

    def inputs(n, shape, k, scale=1.0):
        x = torch.rand(n, *shape, generator=g, dtype=torch.float64)
        logits = scale * torch.randn(n, *shape, generator=g, dtype=torch.float64)
        return (x, logits, torch.randn(n, k, generator=g, dtype=torch.float64),
                torch.randn(n, k, generator=g, dtype=torch.float64))

    flat, images, extreme = inputs(5, (64,), 2), inputs(4, (1, 8, 8), 3), inputs(3, (10,), 2, scale=200.0)
    binary = (flat[0].round(), *flat[1:])

    def case(name, args, beta=None, atol=1e-8):
        kwargs = {} if beta is None else {"beta": beta}

        def test(fn):
            got = fn(*[a.clone() for a in args], **kwargs)
            expected = reference_elbo_loss(*args, **kwargs)
            msg = compare_values(expected, got, atol=atol, rtol=1e-10, path="loss")
            if msg and isinstance(got, torch.Tensor) and got.numel() == 1:
                import torch.nn.functional as F

                x, logits, mu, logvar = args
                b = 1.0 if beta is None else beta
                per_pixel = (F.binary_cross_entropy_with_logits(logits, x) + b * reference_gaussian_kl(mu, logvar).mean())
                if torch.allclose(got.detach().cpu().double(), per_pixel, atol=1e-6, rtol=1e-8):
                    msg += (f" (that is the BCE averaged over the {x[0].numel()} pixels instead of summed: the KL "
                            "then dominates and the samples blur into one average digit; use reduction='none' "
                            "and sum over every dimension but the batch)")
            return msg
        return Case(name, test=test)

    cases = [
        case("flat (5, 64) data, beta = 1", flat),
        case("images (4, 1, 8, 8): sum over all pixels", images),
        case("beta = 4", flat, beta=4.0),
        case("beta = 0: reconstruction only", images, beta=0.0),
        case("binary targets", binary),
        case("logits of size 200: finite (stay in logit space)", extreme, atol=1e-6),
        device_case(*images, beta=2.0),
    ]
    return run_check(
        "elbo_loss(x, logits, mu, logvar, beta)", elbo_loss, cases,
        hint='the negative ELBO per sample is the reconstruction loss summed over its pixels plus beta times its KL; average over the batch',
        solution="F.binary_cross_entropy_with_logits(logits, x, reduction='none') summed over every "
             "dimension but the batch, plus beta * gaussian_kl(mu, logvar), then the mean over the batch "
             "(a scalar)",
    )
