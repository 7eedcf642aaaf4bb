"""Checks for the autoencoder and VAE lab (08): reparameterize, gaussian_kl, elbo_loss, vae_forward
and kl_per_dim."""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_elbo_loss", "check_gaussian_kl", "check_kl_per_dim", "check_reparameterize", "check_vae_forward",
           "reference_elbo_loss", "reference_gaussian_kl", "reference_kl_per_dim"]


def reference_gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the last dimension, by torch.distributions."""
    import torch
    from torch.distributions import Normal, kl_divergence

    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return kl_divergence(q, p).sum(-1)


def reference_kl_per_dim(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) of each latent dimension, averaged over the batch: (N, K) -> (K,)."""
    import torch
    from torch.distributions import Normal, kl_divergence

    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return kl_divergence(q, p).mean(0)


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


class _Affine:
    """A decoder stand-in that remembers its input ``z`` and returns ``2 z + 1`` (not a probability)."""

    def __init__(self):
        self.seen = None

    def __call__(self, z):
        self.seen = z
        return 2 * z + 1


@tiered
def check_vae_forward(vae_forward: Callable) -> bool:
    """Check ``vae_forward(encoder, decoder, x)`` -> (logits, mu, logvar) with a known encoder."""
    import torch
    from torch import nn

    K, D = 3, 5

    def encoder_of(dtype=torch.float64):
        torch.manual_seed(0)
        return nn.Linear(D, 2 * K).to(dtype)

    x = torch.randn(4, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def outputs(fn, encoder, decoder, inputs):
        out = fn(encoder, decoder, inputs)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            return None, f"expected a tuple (logits, mu, logvar), got {type(out).__name__}"
        return out, None

    def split_case(fn):
        encoder, decoder = encoder_of(), _Affine()
        out, msg = outputs(fn, encoder, decoder, x)
        if msg:
            return msg
        with torch.no_grad():
            h = encoder(x)
        first, mu, logvar = out
        if (isinstance(first, torch.Tensor) and first.shape == (len(x), K)
                and torch.allclose(first.detach().to(h.dtype), h[:, :K])):
            return "the first element is mu, not the logits: return (logits, mu, logvar) in that order"
        for name, got in (("mu", mu), ("logvar", logvar)):
            if not isinstance(got, torch.Tensor) or got.shape != (len(x), K):
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                return (f"{name}: expected shape {(len(x), K)} (the encoder's {2 * K} outputs split in two along "
                        f"the feature dimension), got {shape}")
        if torch.allclose(mu.detach(), h[:, K:]) and torch.allclose(logvar.detach(), h[:, :K]):
            return "mu and logvar are swapped: the first K encoder outputs are mu, the last K are logvar"
        if (decoder.seen is not None and decoder.seen.shape == mu.shape and torch.equal(mu.detach(), decoder.seen.detach())
                and not torch.allclose(mu.detach(), h[:, :K])):
            return "the returned mu is the sampled z: return the encoder's mean, the KL term needs it"
        return (compare_values(h[:, :K], mu, atol=1e-12, rtol=0, path="mu (the first K encoder outputs)")
                or compare_values(h[:, K:], logvar, atol=1e-12, rtol=0, path="logvar (the last K encoder outputs)"))

    def logits_case(fn):
        decoder = _Affine()
        out, msg = outputs(fn, encoder_of(), decoder, x)
        if msg:
            return msg
        if decoder.seen is None:
            return "the decoder was never called: the logits are decoder(z)"
        msg = compare_values(decoder(decoder.seen), out[0], atol=1e-12, rtol=0, path="logits")
        if msg and isinstance(out[0], torch.Tensor) and out[0].shape == decoder.seen.shape:
            if torch.allclose(out[0].detach(), torch.sigmoid(decoder(decoder.seen)).detach()):
                msg += " (that is sigmoid(decoder(z)): return the logits, elbo_loss works in logit space)"
        return msg

    def sample_case(fn):
        encoder, decoder = encoder_of(), _Affine()
        many = x[:1].repeat(100_000, 1)                               # one image, 100,000 draws of z
        out, msg = outputs(fn, encoder, decoder, many)
        if msg:
            return msg
        z = decoder.seen
        with torch.no_grad():
            mu, logvar = encoder(x[:1]).chunk(2, dim=1)
        if z is None or z.shape != (len(many), K):
            return f"the decoder should receive z of shape {(len(many), K)}, got {None if z is None else tuple(z.shape)}"
        z = z.detach()
        if z.std(0).max() < 1e-6:
            return "the decoder received the same z for every draw (mu itself?): decode a sample z = reparameterize(mu, logvar)"
        msg = compare_values(mu[0], z.mean(0), atol=0.02, rtol=0, path="mean of the decoded z")
        return msg or compare_values(torch.exp(0.5 * logvar[0]), z.std(0), atol=0, rtol=0.02,
                                     path="std of the decoded z (sigma = exp(0.5 * logvar))")

    def grad_case(fn):
        encoder = encoder_of()
        out, msg = outputs(fn, encoder, _Affine(), x)
        if msg:
            return msg
        if not isinstance(out[0], torch.Tensor) or not out[0].requires_grad:
            return "the logits do not depend on the encoder through autograd (no detach, no torch.no_grad)"
        out[0].sum().backward()
        grad = encoder.weight.grad
        if grad is None:
            return "no gradient reached the encoder from the logits"
        missing = [name for name, rows in (("mu", grad[:K]), ("logvar", grad[K:])) if not rows.any()]
        if missing:
            return (f"no gradient reached the encoder's {' or '.join(missing)} outputs through the logits: "
                    "z must be computed from mu and logvar without .detach()")
        return None

    def fresh_case(fn):
        encoder = encoder_of()
        a, b = fn(encoder, _Affine(), x)[0], fn(encoder, _Affine(), x)[0]
        return "two calls gave the same logits: draw a new z on every call" if torch.equal(a, b) else None

    cases = [
        Case("mu = first K encoder outputs, logvar = last K, shapes (N, K)", test=split_case),
        Case("returns the decoder's output as logits", test=logits_case),
        Case("the decoder receives z ~ N(mu, sigma^2) (100,000 draws)", test=sample_case),
        Case("gradients reach the encoder through mu and logvar", test=grad_case),
        Case("a new z on every call", test=fresh_case),
        device_case(encoder_of(torch.float32), nn.Linear(K, D), x.float(), name="x"),
    ]
    return run_check(
        "vae_forward(encoder, decoder, x)", vae_forward, cases,
        hint="the encoder gives the posterior's parameters, a reparameterized sample of it goes through the "
             "decoder, and the loss needs the decoder's logits and both parameters",
        solution="mu, logvar = encoder(x).chunk(2, dim=1); return decoder(reparameterize(mu, logvar)), mu, logvar",
    )


@tiered
def check_kl_per_dim(kl_per_dim: Callable) -> bool:
    """Check ``kl_per_dim(mu, logvar)`` -> (K,) against torch.distributions.kl_divergence."""
    import torch

    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    collapsed_mu, collapsed_lv = mu.clone(), logvar.clone()
    collapsed_mu[:, 2] = 0.0
    collapsed_lv[:, 2] = 0.0

    def case(name, args, atol=1e-10):
        def test(fn):
            got = fn(*[a.clone() for a in args])
            expected = reference_kl_per_dim(*args)
            n, k = args[0].shape
            if isinstance(got, torch.Tensor) and got.shape != expected.shape:
                if got.shape == (n,) and n != k:
                    return (f"shape {tuple(got.shape)}: one value per sample (a sum or mean over the latent "
                            f"dimensions); expected {tuple(expected.shape)}, one value per latent dimension, "
                            "averaged over the batch (dim 0)")
                return f"shape: expected {tuple(expected.shape)} (one value per latent dimension), got {tuple(got.shape)}"
            msg = compare_values(expected, got, atol=atol, rtol=1e-10, path="KL per dimension")
            if msg and isinstance(got, torch.Tensor) and n > 1 and torch.allclose(got.detach().cpu(), n * expected):
                msg += f" (that is {n} times the expected value: the sum over the batch instead of the mean)"
            return msg
        return Case(name, test=test)

    cases = [
        case("standard normal posterior -> zeros of shape (K,)", (torch.zeros(5, 3), torch.zeros(5, 3)), atol=1e-6),
        case("random (6, 4) float64", (mu, logvar)),
        case("a collapsed dimension (mu = 0, logvar = 0 in dimension 2) -> 0 there", (collapsed_mu, collapsed_lv)),
        case("a batch of one (1, 4)", (mu[:1], logvar[:1])),
        case("wide values, (3, 16)", (10 * torch.randn(3, 16, generator=g, dtype=torch.float64),
                                      4 * torch.randn(3, 16, generator=g, dtype=torch.float64)), atol=1e-8),
        device_case(mu, logvar),
    ]
    return run_check(
        "kl_per_dim(mu, logvar)", kl_per_dim, cases,
        hint="the closed-form Gaussian KL of each latent dimension, averaged over the samples of the batch, "
             "one value per dimension",
        solution="(0.5 * (mu^2 + exp(logvar) - 1 - logvar)).mean(dim=0): the per-dimension KL, averaged "
                 "over the batch, shape (K,)",
    )
