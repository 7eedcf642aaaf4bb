"""Checks for the likelihood-models lab (18): ``causal_mask``, ``MaskedConv2d``, ``bits_per_dim``
and ``AffineCoupling``.

References: the raster-order definition of the causal mask (pixel ``(r, c)`` of a ``k x k``
kernel is "before" the centre when ``r * k + c < centre``); ``nn.Conv2d`` with the weight
multiplied by that mask beforehand (the masked convolution must equal it for any weight, also
after the weight changed, as it does in training); ``F.binary_cross_entropy_with_logits``
divided by ``ln 2`` (bits per dimension); and, for the coupling layer, exact properties: the
inverse undoes the forward map, the pass-through dimensions are copied, the Jacobian is
triangular and ``log_det`` equals ``log |det J|`` of the Jacobian computed by autograd
(``torch.autograd.functional.jacobian``, float64, CPU). The coupling layer's parameters are
re-drawn at random before the properties are tested, so a layer initialised as the identity
(a zero last layer, a common and good choice) is still tested on a non-trivial map.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_causal_mask", "check_masked_conv2d", "check_bits_per_dim", "check_affine_coupling",
           "reference_causal_mask", "reference_bits_per_dim"]


# ----------------------------------------------------------------------------------- causal mask
def reference_causal_mask(kernel_size: int, mask_type: str):
    """(k, k) float32 mask: 1 at the positions before the centre in raster order (rows above it, and
    the centre row left of it); the centre itself too for mask type "B".

    Raises:
        ValueError: ``kernel_size`` not a positive odd int, or ``mask_type`` not "A" or "B".
    """
    import torch

    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: expected a positive odd int, got {kernel_size!r}")
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type: expected 'A' or 'B', got {mask_type!r}")
    k = kernel_size
    order = torch.arange(k * k).reshape(k, k)                        # raster index of each kernel position
    centre = (k * k) // 2
    return (order < centre).float() + (order == centre).float() * (mask_type == "B")


def _mask_mistakes(k: int, t: str):
    """Wrong masks of the same size, with the explanation of each; a "mistake" that equals the reference
    (for k = 1 several do) is left out, so a correct mask never gets a mistake's diagnosis."""
    import torch

    ref = reference_causal_mask(k, t)
    c = k // 2
    other = reference_causal_mask(k, "B" if t == "A" else "A")
    quadrant = torch.zeros(k, k)
    quadrant[:c + 1, :c + 1] = 1
    quadrant[c, c] = float(t == "B")
    full_row = ref.clone()
    full_row[c] = 1
    full_row[c, c] = float(t == "B")
    mistakes = (
        (other, "mask A and mask B are swapped: mask A (first layer) excludes the centre, the pixel being "
                "predicted; mask B (later layers) includes it, since there the centre holds features of earlier "
                "pixels only"),
        (ref.T.contiguous(), "the mask is transposed: the rows above the centre (first index smaller) are all 1, and "
                             "in the centre row only the columns left of it"),
        (quadrant, "only the upper-left quadrant is 1: in raster order every pixel of an earlier row comes before "
                   "the centre, including those to the right of it, so rows above the centre must be 1 entirely"),
        (full_row, "the whole centre row is 1: pixels to the right of the centre come later in raster order and "
                   "must be 0"),
        (torch.flip(ref, (0, 1)), "the mask is reversed: the ones belong above and left of the centre (the past), "
                                  "not below and right"),
    )
    return tuple((wrong, why) for wrong, why in mistakes if not torch.equal(wrong, ref))


def _mask_diagnosis(got, k: int, t: str) -> str | None:
    """The explanation of the known mistake that ``got`` (a (k, k) tensor) equals, or None."""
    import torch

    values = got.detach().cpu().float()
    for wrong, why in _mask_mistakes(k, t):
        if torch.equal(values, wrong):
            return why
    return None


def _mask_case(k: int, t: str):
    def test(fn):
        import torch

        want = reference_causal_mask(k, t)
        got = fn(k, t)
        if isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype != torch.float32:
            why = ("a float64 mask would turn the float32 weight it multiplies into float64" if got.is_floating_point()
                   else "the mask multiplies a float weight")
            msg = (f"dtype: expected a float tensor (torch.float32), got {got.dtype}: {why}; build it as float32: "
                   "torch.zeros(k, k) or .float()")
            if not torch.equal(got.detach().cpu().float(), want):
                wrong = _mask_diagnosis(got, k, t)
                msg += "; the values are wrong as well" + (f" ({wrong})" if wrong else "")
            return msg
        msg = compare_values(want, got, atol=0.0, rtol=0.0)
        if msg and isinstance(got, torch.Tensor) and got.shape == want.shape:
            wrong = _mask_diagnosis(got, k, t)
            if wrong:
                return f"{msg} ({wrong})"
        return msg
    return test


def _mask_raises_case(k, t):
    def test(fn):
        try:
            got = fn(k, t)
        except ValueError:
            return None
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other error is the wrong kind
            return f"raised {type(exc).__name__}: expected a ValueError that names the bad argument"
        return (f"returned {type(got).__name__} for kernel_size = {k!r}, mask_type = {t!r}: raise a ValueError "
                "instead (an even kernel has no centre; only mask types 'A' and 'B' exist)")
    return test


@tiered
def check_causal_mask(causal_mask: Callable) -> bool:
    """Check ``causal_mask(kernel_size, mask_type)`` -> (k, k) float mask against the raster-order definition."""
    cases = [Case(f"kernel_size = {k}, mask type {t}", test=_mask_case(k, t))
             for k, t in ((3, "A"), (3, "B"), (5, "A"), (5, "B"), (7, "B"))]
    cases += [
        Case("kernel_size = 1, mask A: all zeros (the pixel cannot see itself)", test=_mask_case(1, "A")),
        Case("kernel_size = 1, mask B: just the centre", test=_mask_case(1, "B")),
        Case("mask_type = 'C': ValueError", test=_mask_raises_case(3, "C")),
        Case("kernel_size = 4 (no centre): ValueError", test=_mask_raises_case(4, "A")),
    ]
    return run_check(
        "causal_mask(kernel_size, mask_type)", causal_mask, cases,
        hint="number the kernel positions in raster order (row by row, left to right); the centre has number "
             "(k * k) // 2; positions with a smaller number are the past (1), larger ones the future (0), and the "
             "centre itself is 1 only for mask B",
        solution="if k % 2 == 0 or mask_type not in ('A', 'B'): raise ValueError(...); c = k // 2; "
                 "m = torch.zeros(k, k); m[:c] = 1; m[c, :c] = 1; m[c, c] = float(mask_type == 'B'); return m",
    )


# -------------------------------------------------------------------------------- masked conv
def _weight_parameters(layer) -> list:
    """The trainable tensors the layer's weight is computed from: ``layer.weight`` itself, or, for a weight
    registered with ``torch.nn.utils.parametrize``, the parametrization's original(s)."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(layer, "weight"):
        return [p for _, p in layer.parametrizations.weight.named_parameters(recurse=False)]
    return [layer.weight]


def _conv_case(C_in, C_out, k, t, shape, seed, **kwargs):
    """Compare the student's layer with nn.Conv2d whose weight was masked beforehand, after
    re-drawing the weight at random (as training would change it)."""

    def test(cls):
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        torch.manual_seed(seed)
        layer = cls(C_in, C_out, k, t, **kwargs)
        if not isinstance(layer, nn.Conv2d):
            return (f"expected an nn.Conv2d subclass (class MaskedConv2d(nn.Conv2d)), got {type(layer).__name__}, "
                    "so that it keeps Conv2d's parameters, arguments and initialisation")
        layer = layer.double()
        if tuple(layer.weight.shape) != (C_out, C_in, k, k):
            return (f"weight shape: expected ({C_out}, {C_in}, {k}, {k}), got {tuple(layer.weight.shape)}: pass "
                    "in_channels, out_channels, kernel_size and **conv_kwargs on to nn.Conv2d's __init__")
        raw = _weight_parameters(layer)
        with torch.no_grad():
            for p in raw:                                              # training changes every entry
                p.normal_()
            if layer.bias is not None:
                layer.bias.normal_()
        reference = nn.Conv2d(C_in, C_out, k, **kwargs).double()
        with torch.no_grad():
            reference.weight.copy_(layer.weight * reference_causal_mask(k, t).double())
            if layer.bias is not None and reference.bias is not None:
                reference.bias.copy_(layer.bias)
        weight_before = [p.detach().clone() for p in raw]
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            want = reference(x)
            got = layer(x.clone())
        if not all(torch.equal(p.detach(), before) for p, before in zip(raw, weight_before)):
            return ("forward changed self.weight in place: compute a masked copy, self.weight * self.mask, and "
                    "convolve with it (F.conv2d or self._conv_forward), leaving the parameter as it is")
        msg = compare_values(want, got, atol=1e-10, rtol=1e-8)
        if msg is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return msg
        stride, padding = kwargs.get("stride", 1), kwargs.get("padding", 0)
        weight = raw[0] if len(raw) == 1 and raw[0].shape == layer.weight.shape else layer.weight

        def conv_with(mask):
            w = weight if mask is None else weight * mask.double()
            return F.conv2d(x, w, layer.bias, stride=stride, padding=padding)

        with torch.no_grad():
            if compare_values(conv_with(None), got, atol=1e-10, rtol=1e-8) is None:
                return msg + (" (the weight is not masked: multiply it by the mask in forward; masking once in "
                              "__init__ is undone by the first optimizer step)")
            for wrong, why in _mask_mistakes(k, t):
                if compare_values(conv_with(wrong), got, atol=1e-10, rtol=1e-8) is None:
                    return f"{msg} (your mask is wrong: {why})"
        return msg
    return test


def _grad_case(seed):
    """The weight's gradient must vanish where the mask is 0 (weight * mask in the graph). The gradient is
    read by torch.autograd.grad on the trainable weight (a parametrization's original, if any)."""

    def test(cls):
        import torch

        torch.manual_seed(seed)
        with warnings.catch_warnings():                                # this check's own business only
            warnings.simplefilter("ignore")
            layer = cls(2, 3, 3, "A", padding=1).double()
            x = torch.randn(2, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
            raw = _weight_parameters(layer)
            loss = layer(x).pow(2).sum()
            grads = torch.autograd.grad(loss, raw, allow_unused=True) if loss.requires_grad else [None]
        if any(g is None for g in grads):
            return "the weight got no gradient: use self.weight (times the mask) in forward, not a detached copy"
        grad = grads[0]
        if grad.shape != (3, 2, 3, 3):
            return None                                                # an unusual parametrization: not judged here
        flows = (grad != 0).any(0).any(0)                              # (3, 3): where the gradient reaches
        if torch.equal(flows, reference_causal_mask(3, "B") != 0):
            return ("mask type swapped: the weight of a mask-A layer gets a gradient at the centre too, exactly the "
                    "pattern of mask B; mask A (first layer) excludes the centre, mask B includes it")
        if torch.equal(flows, reference_causal_mask(3, "A") != 0):
            return None
        for wrong, why in _mask_mistakes(3, "A"):                      # a wrong mask, applied in forward
            if torch.equal(flows, wrong != 0):
                return f"the gradient reaches the weight exactly where a wrong mask is 1: {why}"
        if grad[:, :, reference_causal_mask(3, "A") == 0].abs().max().item() != 0:
            return ("the weight's gradient is not 0 where the mask is 0: the mask must be part of the computation "
                    "(weight * mask inside forward), not applied to the weight's data")
        return None
    return test


def _buffer_hint(case: Case) -> Case:
    """The device probe, with the advice for a mask kept as a plain attribute."""
    inner = case.test

    def test(cls):
        msg = inner(cls)
        if msg and "CPU" in msg:
            msg += (" (a mask kept as a plain attribute stays on the CPU when the layer moves: register it with "
                    "self.register_buffer('mask', ...), then .to(device) moves it with the weight)")
        return msg
    return Case(case.name, test=test)


@tiered
def check_masked_conv2d(MaskedConv2d) -> bool:
    """Check ``MaskedConv2d(in_channels, out_channels, kernel_size, mask_type, **conv_kwargs)`` against
    ``nn.Conv2d`` with the weight multiplied by the causal mask beforehand."""
    import torch

    def run(cls, device):
        layer = cls(2, 4, 3, "A", padding=1).to(device)
        return layer(torch.randn(2, 2, 6, 6).to(device))

    cases = [
        Case("mask A, 3 x 3, 1 -> 4 channels, padding = 1", test=_conv_case(1, 4, 3, "A", (2, 1, 8, 8), 0, padding=1)),
        Case("mask B, 3 x 3, 4 -> 4 channels, padding = 1", test=_conv_case(4, 4, 3, "B", (2, 4, 8, 8), 1, padding=1)),
        Case("mask A, 5 x 5, 2 -> 3 channels, padding = 2", test=_conv_case(2, 3, 5, "A", (1, 2, 7, 9), 2, padding=2)),
        Case("mask B, 1 x 1 (a plain linear map per pixel)", test=_conv_case(3, 2, 1, "B", (2, 3, 4, 4), 3)),
        Case("conv_kwargs passed on: bias = False, stride = 2", test=_conv_case(2, 2, 3, "B", (1, 2, 8, 8), 4,
                                                                              padding=1, bias=False, stride=2)),
        Case("the weight's gradient is 0 where the mask is 0", test=_grad_case(5)),
        _buffer_hint(device_case(run=run)),
    ]
    return run_check(
        "MaskedConv2d(in_channels, out_channels, kernel_size, mask_type, **conv_kwargs)", MaskedConv2d, cases,
        hint="subclass nn.Conv2d, keep causal_mask(kernel_size, mask_type) as a buffer, and in forward convolve with "
             "the masked weight self.weight * self.mask (the (k, k) mask broadcasts over (out, in, k, k)); the "
             "masked entries then never influence the output, whatever values training gives them",
        solution="__init__: super().__init__(in_channels, out_channels, kernel_size, **conv_kwargs); "
                 "self.register_buffer('mask', causal_mask(kernel_size, mask_type)); "
                 "forward(x): return self._conv_forward(x, self.weight * self.mask, self.bias)",
    )


# -------------------------------------------------------------------------------- bits per dim
def reference_bits_per_dim(logits, x):
    """Mean Bernoulli negative log-likelihood per dimension, in bits: a 0-d tensor."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits, x) / math.log(2)


def _bpd_mistakes(logits, x):
    import torch
    import torch.nn.functional as F

    D = x[0].numel()
    nats = F.binary_cross_entropy_with_logits(logits, x)
    with torch.no_grad():
        p = torch.sigmoid(logits)
        return (
            (nats, "the value is in nats: divide the natural-log likelihood by ln 2 to get bits"),
            (nats * D / math.log(2), "this is bits per image: divide by the number of dimensions per image as well"),
            (nats * D, "this is nats per image: average over the dimensions and divide by ln 2"),
            (nats * len(x) * D / math.log(2), "the likelihood is summed over the batch: average over the images"),
            (nats / math.log(10), "divide by ln 2 (bits), not ln 10"),
            (nats * math.log(2), "multiplied by ln 2: nats become bits by dividing by ln 2 (1 bit = ln 2 nats, so the "
                                 "number of bits is larger)"),
            (-nats / math.log(2), "the sign is flipped: this is the log-likelihood; bits per dimension measure the "
                                  "negative log-likelihood, which is >= 0"),
            (F.binary_cross_entropy(p, x) / math.log(2) if x.dtype == p.dtype else None,
             "F.binary_cross_entropy on the probabilities sigmoid(logits): for confident logits the sigmoid rounds to "
             "exactly 0 or 1 and the log is clamped at -100, so the value is wrong (and the gradient vanishes); pass "
             "the logits themselves to F.binary_cross_entropy_with_logits"),
            (F.binary_cross_entropy_with_logits(torch.sigmoid(logits), x) / math.log(2),
             "the logits went through a sigmoid before the cross-entropy with logits: pass the raw logits"),
            (F.binary_cross_entropy_with_logits(x, p) / math.log(2) if x.is_floating_point() else None,
             "the arguments are swapped: F.binary_cross_entropy_with_logits(input=logits, target=x)"),
            (F.binary_cross_entropy_with_logits(x, torch.sigmoid(logits)) / math.log(2),
             "the arguments are swapped: F.binary_cross_entropy_with_logits(input=logits, target=x)"),
        ) + tuple(_clamp_mistakes(p, x))


def _clamp_mistakes(p, x):
    """Bits per dimension from probabilities clamped to [eps, 1 - eps] or shifted by eps before the log: exact for
    moderate logits, wrong for confident ones."""
    import torch

    for eps in (1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-10, 1e-12):
        why = (f"the probabilities are clamped (eps = {eps:g}): that caps each pixel's loss at -log2(eps) bits and "
               "changes the value (and zeroes the gradient) wherever the model is confident; compute it from the "
               "logits, with F.binary_cross_entropy_with_logits or F.logsigmoid, which are exact and stable")
        for q, r in ((p.clamp(eps, 1 - eps), 1 - p.clamp(eps, 1 - eps)), (p + eps, 1 - p + eps)):
            yield -(x * torch.log(q) + (1 - x) * torch.log(r)).mean() / math.log(2), why


def _bpd_case(shape, seed, scale=2.0, constant=None):
    def test(fn):
        import torch

        g = torch.Generator().manual_seed(seed)
        logits = scale * torch.randn(*shape, generator=g, dtype=torch.float64) if constant is None else \
            torch.full(shape, float(constant), dtype=torch.float64)
        x = (torch.rand(*shape, generator=g) < 0.4).double()
        want = reference_bits_per_dim(logits, x)
        leaf = logits.clone().requires_grad_(True)
        got = fn(leaf, x.clone())
        if isinstance(got, float):
            return (f"returned a Python float ({got:.6g}): return the 0-d tensor, so that it can be trained on "
                    "(loss.backward()); leave .item() to the caller")
        msg = compare_values(want, got, atol=1e-9, rtol=1e-7)
        if msg is None:
            if isinstance(got, torch.Tensor) and not got.requires_grad:
                return "the result does not depend on the logits through autograd: keep it a tensor computation"
            return None
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            if not torch.isfinite(got).all():
                return (f"{msg} (not finite for logits up to |{logits.abs().max().item():.0f}|: sigmoid then log "
                        "under- or overflows; use F.binary_cross_entropy_with_logits or F.logsigmoid)")
            for wrong, why in _bpd_mistakes(logits, x):
                if wrong is not None and compare_values(wrong.reshape(()), got.detach().reshape(()),
                                                        atol=1e-9, rtol=1e-7) is None:
                    return f"{msg} ({why})"
        elif isinstance(got, torch.Tensor) and got.shape[:1] == (shape[0],):
            msg += " (average over the images as well: the result is one number for the batch)"
        return msg
    return test


@tiered
def check_bits_per_dim(bits_per_dim: Callable) -> bool:
    """Check ``bits_per_dim(logits, x)`` against ``F.binary_cross_entropy_with_logits(logits, x) / ln 2``."""
    import torch

    cases = [
        Case("logits 0 (p = 1/2 everywhere): exactly 1 bit per dimension", test=_bpd_case((4, 1, 8, 8), 0, constant=0)),
        Case("images (N, C, H, W) = (5, 1, 8, 8)", test=_bpd_case((5, 1, 8, 8), 1)),
        Case("flat (N, D) = (7, 64)", test=_bpd_case((7, 64), 2)),
        Case("non-square images (3, 2, 4, 6)", test=_bpd_case((3, 2, 4, 6), 3)),
        Case("confident logits (standard deviation 25): finite and exact", test=_bpd_case((4, 16), 4, scale=25.0)),
        device_case(inputs=lambda: (torch.randn(3, 1, 4, 4), (torch.rand(3, 1, 4, 4) < 0.5).float())),
    ]
    return run_check(
        "bits_per_dim(logits, x)", bits_per_dim, cases,
        hint="-log2 p(x) = -ln p(x) / ln 2; each pixel is a Bernoulli with probability sigmoid(logit), whose "
             "negative log-likelihood is the binary cross-entropy with logits; average it over every pixel of "
             "every image, then convert nats to bits",
        solution="return F.binary_cross_entropy_with_logits(logits, x) / math.log(2)",
    )


# ----------------------------------------------------------------------------- affine coupling
def _randomise(layer, seed, std=0.5):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _coupling(cls, dim, mask, seed, hidden=16, dtype=None):
    """(layer, problem): the student's layer built, moved to float64 (or dtype) and randomised."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    layer = cls(dim, hidden, torch.tensor(mask, dtype=torch.float32))
    if not isinstance(layer, nn.Module):
        return None, f"expected an nn.Module, got {type(layer).__name__}"
    if not callable(getattr(layer, "inverse", None)):
        return None, "the layer has no inverse(z) method"
    layer = layer.to(dtype or torch.float64)
    _randomise(layer, seed)
    return layer, None


def _split(out, N, dim):
    """(z, log_det, problem) from the forward output."""
    import torch

    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return None, None, f"forward(x) must return a pair (z, log_det), got {type(out).__name__}"
    z, log_det = out
    if not isinstance(z, torch.Tensor) or tuple(z.shape) != (N, dim):
        return None, None, f"z shape: expected ({N}, {dim}), got {tuple(getattr(z, 'shape', ()))}"
    if not isinstance(log_det, torch.Tensor) or tuple(log_det.shape) != (N,):
        shape = tuple(getattr(log_det, "shape", ()))
        why = " (sum the log-scales over the dimensions, dim=1, not over the batch)" if shape == () else \
            " (one number per example: sum over dim=1 and do not keep the dimension)"
        return None, None, f"log_det shape: expected ({N},), got {shape}{why}"
    return z, log_det, None


def _x(N, dim, seed, scale=1.5, dtype=None):
    import torch

    g = torch.Generator().manual_seed(1000 + seed)
    return scale * torch.randn(N, dim, generator=g, dtype=dtype or torch.float64)


def _forward(cls, dim, mask, seed, N, scale=1.5, dtype=None):
    """(layer, x, z, log_det, problem): the student's layer built and randomised, run (without autograd) on N
    fresh rows x; problem names what went wrong before the values could be compared."""
    import torch

    layer, problem = _coupling(cls, dim, mask, seed, dtype=dtype)
    if problem:
        return None, None, None, None, problem
    x = _x(N, dim, seed, scale, dtype)
    with torch.no_grad():
        z, log_det, problem = _split(layer(x.clone()), N, dim)
    return layer, x, z, log_det, problem


def _jacobians(layer, x):
    """(N, dim, dim) Jacobians dz/dx of the student's forward, one per row of x (float64, CPU)."""
    import torch
    from torch.autograd.functional import jacobian

    return torch.stack([jacobian(lambda v: layer(v[None])[0][0], row) for row in x])


def _shape_case(dim, mask, seed):
    def test(cls):
        import torch

        layer, x, z, _, problem = _forward(cls, dim, mask, seed, 5)
        if problem:
            return problem
        x_back = layer.inverse(z.clone())
        if not isinstance(x_back, torch.Tensor) or x_back.shape != x.shape:
            return f"inverse(z) shape: expected {tuple(x.shape)}, got {tuple(getattr(x_back, 'shape', ()))}"
        return None
    return test


def _pass_through_case(dim, mask, seed):
    def test(cls):
        import torch

        layer, x, z, _, problem = _forward(cls, dim, mask, seed, 6)
        if problem:
            return problem
        keep = torch.tensor(mask, dtype=torch.bool)
        if torch.equal(z[:, keep], x[:, keep]):
            if torch.equal(z[:, ~keep], x[:, ~keep]):
                return "z equals x: the dimensions where the mask is 0 must be scaled and shifted"
            return None
        if torch.equal(z[:, ~keep], x[:, ~keep]):
            return ("the dimensions where the mask is 0 pass through and those where it is 1 change: it is the other "
                    "way round (mask 1 = pass through unchanged and condition the others)")
        return (f"the pass-through dimensions {keep.nonzero().flatten().tolist()} (mask = 1) changed: z must equal x "
                "there exactly (z = mask * x + (1 - mask) * (x * exp(s) + t))")
    return test


def _structure_problem(layer, x, mask):
    """A diagnosis from the Jacobian's structure, or None."""
    import torch

    J = _jacobians(layer, x)                                         # (N, dim, dim)
    keep = torch.tensor(mask, dtype=torch.bool)
    change = ~keep
    eye = torch.eye(len(mask), dtype=J.dtype)
    if not torch.allclose(J[:, keep], eye[keep].expand(len(x), -1, -1), atol=1e-12):
        return "the pass-through rows of the Jacobian are not the identity: z must equal x where the mask is 1"
    block = J[:, change][:, :, change]                               # (N, n_change, n_change)
    off = block - torch.diag_embed(torch.diagonal(block, dim1=1, dim2=2))
    if off.abs().max().item() > 1e-10:
        return ("a transformed dimension depends on another transformed one (the Jacobian is not triangular): the "
                "scale and shift must be computed from the pass-through part x * mask only")
    if change.any() and keep.any() and J[:, change][:, :, keep].abs().max().item() == 0:
        return ("the transformed dimensions do not depend on the pass-through ones: compute s and t from x * mask "
                "(the conditioning), not from a constant")
    return None


def _inverse_case(dim, mask, seed, scale=1.5):
    def test(cls):
        layer, x, z, _, problem = _forward(cls, dim, mask, seed, 8, scale)
        if problem:
            return problem
        with __import__("torch").no_grad():
            x_back = layer.inverse(z.clone())
        msg = compare_values(x, x_back, atol=1e-5, rtol=0.0, path="inverse(forward(x))")
        if msg:
            structure = _structure_problem(layer, x[:3], mask)
            if structure:
                return f"{msg} ({structure})"
            return (f"{msg} (undo the steps in reverse order: the forward map scales by exp(s), then shifts by t. "
                    "Two usual causes: (a) undo the shift before the scale; (b) recompute s, t from z * mask (which "
                    "equals x * mask, so they are the forward pass's s, t), not from z)")
        return None
    return test


def _log_det_case(dim, mask, seed):
    def test(cls):
        import torch

        layer, x, z, log_det, problem = _forward(cls, dim, mask, seed, 6)
        if problem:
            return problem
        structure = _structure_problem(layer, x, mask)
        if structure:
            return structure
        J = _jacobians(layer, x)
        want = torch.linalg.slogdet(J).logabsdet                     # (N,)
        msg = compare_values(want, log_det.detach(), atol=1e-4, rtol=0.0, path="log_det")
        if msg:
            if compare_values(-want, log_det.detach(), atol=1e-4, rtol=0.0) is None:
                return f"{msg} (the sign is flipped: log|det dz/dx| = + sum of the log-scales s)"
            if compare_values(torch.exp(want), log_det.detach(), atol=1e-4, rtol=1e-6) is None:
                return f"{msg} (this is |det J|, not its logarithm: return the sum of the log-scales s)"
            return (f"{msg} (the Jacobian is triangular, so log|det| is the sum of its log-diagonal: the log-scales s "
                    "of the transformed dimensions only, 0 for the pass-through ones)")
        return None
    return test


def _bounded_case(dim, mask, seed):
    def test(cls):
        import torch

        layer, x, z, log_det, problem = _forward(cls, dim, mask, seed, 8, scale=1000.0, dtype=torch.float32)
        if problem:
            return problem
        bad = [name for name, value in (("z", z), ("log_det", log_det)) if not torch.isfinite(value).all()]
        if bad:
            return (f"inputs of size 1000 give infinite or NaN values in {' and '.join(bad)} (float32): the "
                    "log-scale is unbounded, so exp(s) overflows; bound it, e.g. s = torch.tanh(raw) (optionally "
                    "times a learned factor)")
        return None
    return test


@tiered
def check_affine_coupling(AffineCoupling) -> bool:
    """Check ``AffineCoupling(dim, hidden, mask)``: ``forward(x) -> (z, log_det)``, ``inverse(z) -> x``, by
    exact properties and the autograd Jacobian (float64, CPU)."""
    import torch

    def run(cls, device):
        layer = cls(2, 8, torch.tensor([1.0, 0.0])).to(device)
        z, log_det = layer(torch.randn(4, 2).to(device))
        return z, log_det, layer.inverse(z)

    m4, m5 = [1, 0, 1, 0], [0, 1, 1, 0, 1]
    cases = [
        Case("shapes: z (N, dim), log_det (N,), inverse(z) (N, dim)", test=_shape_case(4, m4, 0)),
        Case("dimensions where mask = 1 pass through unchanged", test=_pass_through_case(4, m4, 1)),
        Case("inverse(forward(x)) = x (< 1e-5), dim = 4", test=_inverse_case(4, m4, 2)),
        Case("log_det = log|det| of the autograd Jacobian (< 1e-4), dim = 4", test=_log_det_case(4, m4, 3)),
        Case("dim = 2, mask [0, 1] (the two-moons layout): inverse and log_det",
             test=lambda cls: _inverse_case(2, [0, 1], 4)(cls) or _log_det_case(2, [0, 1], 4)(cls)),
        Case("dim = 5, mask [0, 1, 1, 0, 1]: pass-through, inverse and log_det",
             test=lambda cls: (_pass_through_case(5, m5, 5)(cls) or _inverse_case(5, m5, 5)(cls)
                               or _log_det_case(5, m5, 5)(cls))),
        Case("inputs of size 1000 in float32: bounded scales keep the outputs finite", test=_bounded_case(4, m4, 6)),
        _buffer_hint(device_case(run=run)),
    ]
    return run_check(
        "AffineCoupling(dim, hidden, mask)", AffineCoupling, cases,
        hint="the dimensions with mask 1 are copied; a network reads only x * mask and outputs a log-scale s and a "
             "shift t for the others: z = x * mask + (1 - mask) * (x * exp(s) + t); the Jacobian is triangular "
             "with diagonal exp(s) on the transformed dimensions, so log_det = sum of s there; the inverse "
             "recomputes s and t from z * mask (= x * mask) and solves for x",
        solution="__init__: self.register_buffer('mask', mask.float()); self.net = nn.Sequential(nn.Linear(dim, "
                 "hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * dim)); "
                 "_scale_shift(xm): s, t = self.net(xm).chunk(2, dim=1); return torch.tanh(s) * (1 - self.mask), "
                 "t * (1 - self.mask); forward(x): s, t = self._scale_shift(x * self.mask); "
                 "return x * torch.exp(s) + t, s.sum(1); inverse(z): s, t = self._scale_shift(z * self.mask); "
                 "return (z - t) * torch.exp(-s)",
    )
