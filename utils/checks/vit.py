"""Checks for the vision-transformer lab: ``patchify`` and ``PatchEmbedding``.

References: ``F.unfold(images, patch, stride=patch).transpose(1, 2)`` for the patch layout
(row-major patches, each flattened channel-first), and ``nn.Conv2d(C, dim, patch, stride=patch)``
for the patch embedding, compared in both directions: the convolution's weights copied into the
student's ``proj`` layer, and the student's own weights copied into a convolution.
"""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_patchify", "check_patch_embedding", "reference_patchify"]


def reference_patchify(images, patch: int):
    """(N, C, H, W) -> (N, L, C * patch * patch), the layout of ``F.unfold(...).transpose(1, 2)``.

    Raises:
        ValueError: H or W is not divisible by ``patch``.
    """
    import torch.nn.functional as F

    H, W = images.shape[-2:]
    if H % patch or W % patch:
        raise ValueError(f"patch = {patch} must divide H = {H} and W = {W}")
    return F.unfold(images, patch, stride=patch).transpose(1, 2)


def _layouts(x, P):
    """Typical wrong layouts of the same patches, with the explanation of each."""
    N, C, H, W = x.shape
    h, w = H // P, W // P
    six = x.reshape(N, C, h, P, w, P)                               # (N, C, h, P, w, P)
    return (
        (six.permute(0, 4, 2, 1, 3, 5).reshape(N, h * w, C * P * P),
         "the patches are in column-major order: they must run along each row first (row-major), as F.unfold "
         "orders them, so patch l sits at row l // (W / patch), column l % (W / patch)"),
        (six.permute(0, 2, 4, 3, 5, 1).reshape(N, h * w, C * P * P),
         "each patch is flattened channel-last (P, P, C): flatten it channel-first, (C, P, P), the layout of a "
         "Conv2d weight"),
        (six.permute(0, 2, 4, 1, 5, 3).reshape(N, h * w, C * P * P),
         "the pixels inside each patch are transposed (column by column): flatten each patch row by row"),
        (x.reshape(N, h * w, C * P * P) if (C * H * W) % (h * w) == 0 else None,
         "a plain reshape mixes pixels of different patches: split H and W into (H / P, P) and (W / P, P), "
         "permute so that the two patch-grid axes come first, then flatten"),
    )


#: the diagnosis of an output whose token and feature axes are exchanged
_SWAPPED = "axes 1 and 2 swapped: tokens go on axis 1, use .transpose(1, 2)"

#: the contract of PatchEmbedding.forward, quoted when something is added after proj
_ONLY_PROJ = "forward must return exactly self.proj(patchify(x)); the ViT adds the rest"


def _images(seed, shape):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _patchify_case(shape, P, seed):
    def test(fn):
        import torch

        x = _images(seed, shape)
        want = reference_patchify(x, P)
        got = fn(x.clone(), P)
        msg = compare_values(want, got, atol=0.0, rtol=0.0)
        if msg and isinstance(got, torch.Tensor) and got.shape == want.transpose(1, 2).shape and \
                torch.equal(got.detach().cpu().double(), want.transpose(1, 2)):
            return f"{msg} ({_SWAPPED}: (N, L, C * patch * patch), not (N, C * patch * patch, L))"
        if msg is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
            if msg and isinstance(got, torch.Tensor) and got.shape != want.shape:
                msg += (f" (L = (H / patch) * (W / patch) = {want.shape[1]} patches of C * patch * patch = "
                        f"{want.shape[2]} numbers each)")
            return msg
        for wrong, why in _layouts(x, P):
            if wrong is not None and wrong.shape == got.shape and torch.equal(got.detach().cpu().double(), wrong):
                return f"{msg} ({why})"
        return msg
    return test


def _raises_case(shape, P):
    H, W = shape[-2:]
    bad = H if H % P else W                                         # the size patch does not divide
    side = "H" if H % P else "W"

    def test(fn):
        import re

        x = _images(0, shape)
        try:
            got = fn(x, P)
        except ValueError as exc:
            numbers = {int(n) for n in re.findall(r"\d+", str(exc))}
            if {bad, P} <= numbers:
                return None
            said = f"ValueError({str(exc)!r})" if str(exc) else "a bare ValueError()"
            return (f"raised {said}, which does not name the sizes: say which size the patch does not divide, "
                    f"e.g. ValueError(f\"patch = {{patch}} must divide H = {{H}} and W = {{W}}\"), here "
                    f"patch = {P} and {side} = {bad}")
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other error is the wrong kind
            return (f"raised {type(exc).__name__} ({str(exc).splitlines()[0] if str(exc) else ''}): expected a "
                    "ValueError that says patch must divide H and W")
        return (f"returned a result of shape {tuple(getattr(got, 'shape', ()))} for H, W = {shape[-2:]} and patch = "
                f"{P}: raise a ValueError instead, since part of the image would be silently dropped")
    return test


#: the body of patchify(images, patch), runnable as written in the stub (its parameter names)
_PATCHIFY_SOLUTION = (
    "replace `raise NotImplementedError()` in patchify(images, patch) by\n"
    "    N, C, H, W = images.shape\n"
    "    if H % patch or W % patch:\n"
    "        raise ValueError(f\"patch = {patch} must divide H = {H} and W = {W}\")\n"
    "    x = images.reshape(N, C, H // patch, patch, W // patch, patch)   # (N, C, h, P, w, P)\n"
    "    x = x.permute(0, 2, 4, 1, 3, 5)                                  # (N, h, w, C, P, P)\n"
    "    return x.reshape(N, (H // patch) * (W // patch), C * patch * patch)"
)


@tiered
def check_patchify(patchify: Callable) -> bool:
    """Check ``patchify(images, patch)`` -> (N, L, C * patch * patch) against ``F.unfold``."""
    cases = [
        Case("(N, C, H, W) = (2, 3, 8, 8), patch = 4: the F.unfold layout", test=_patchify_case((2, 3, 8, 8), 4, 0)),
        Case("non-square image (1, 2, 6, 12), patch = 3", test=_patchify_case((1, 2, 6, 12), 3, 1)),
        Case("one channel (3, 1, 28, 28), patch = 7", test=_patchify_case((3, 1, 28, 28), 7, 2)),
        Case("patch = 1: every pixel is a patch", test=_patchify_case((2, 3, 3, 5), 1, 3)),
        Case("patch = H = W: the whole image is one patch", test=_patchify_case((2, 2, 4, 4), 4, 4)),
        Case("H = 10 not divisible by patch = 4: ValueError", test=_raises_case((1, 1, 10, 8), 4)),
        Case("W = 12 not divisible by patch = 8: ValueError", test=_raises_case((1, 3, 8, 12), 8)),
        device_case(_images(5, (2, 3, 8, 8)).float(), 4),
    ]
    return run_check(
        "patchify(images, patch)", patchify, cases,
        hint="an image is a grid of (H / patch) x (W / patch) non-overlapping patches; list them row by row and "
             "flatten each channel-first, (C, patch, patch), exactly as F.unfold with stride = kernel size does",
        solution=_PATCHIFY_SOLUTION,
    )


def _embedding_case(C, P, dim, shape, seed, direction):
    """Compare the student's module with ``nn.Conv2d(C, dim, P, stride=P)``: ``direction`` "conv->yours" copies the
    convolution's weights into ``proj``; "yours->conv" copies the student's freshly initialised weights into a conv."""

    def test(cls):
        import torch

        torch.manual_seed(seed)
        module = cls(C, P, dim).double()
        proj = getattr(module, "proj", None)
        if not isinstance(proj, torch.nn.Linear):
            return f"attribute proj: expected an nn.Linear, got {type(proj).__name__}"
        if (proj.in_features, proj.out_features) != (C * P * P, dim) or proj.bias is None:
            return f"proj: expected nn.Linear({C * P * P}, {dim}) with bias (C * patch * patch inputs), got {proj}"
        conv = torch.nn.Conv2d(C, dim, P, stride=P).double()
        with torch.no_grad():
            if direction == "conv->yours":
                conv.bias.normal_()
                proj.weight.copy_(conv.weight.reshape(dim, C * P * P))
                proj.bias.copy_(conv.bias)
            else:
                conv.weight.copy_(proj.weight.reshape(dim, C, P, P))
                conv.bias.copy_(proj.bias)
            x = _images(seed, shape)
            want = conv(x).flatten(2).transpose(1, 2)                   # (N, L, dim)
            got = module(x.clone())
        msg = compare_values(want, got, atol=1e-10, rtol=1e-8)
        if msg is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
            if msg and isinstance(got, torch.Tensor):
                N, L = want.shape[:2]
                if tuple(got.shape) == tuple(conv(x).shape):
                    msg += " (the output must be a sequence of tokens, (N, L, dim), not a (N, dim, H/P, W/P) map)"
                elif tuple(got.shape) == (N, dim, L):
                    msg += f" ({_SWAPPED}: (N, L, dim), not (N, dim, L))"
                elif tuple(got.shape) == (N, L + 1, dim):
                    msg += f" (one token too many, a class token? {_ONLY_PROJ})"
            return msg
        patches = reference_patchify(x, P)
        with torch.no_grad():
            again = module(x.clone())
            if isinstance(again, torch.Tensor) and again.shape == got.shape and not torch.equal(again, got):
                return msg + (" (two calls on the same input gave different outputs: your forward is random, e.g. "
                              f"dropout active in training mode; {_ONLY_PROJ})")
            if P * P * C == dim and compare_values(patches @ proj.weight + proj.bias, got, atol=1e-10,
                                                   rtol=1e-8) is None:
                return msg + (" (the weight is used transposed: nn.Linear computes x @ W.T + b; call self.proj(x), "
                              "not x @ self.proj.weight)")
            for wrong, why in _layouts(x, P):
                if wrong is not None and wrong.shape == patches.shape and \
                        compare_values(proj(wrong), got, atol=1e-10, rtol=1e-8) is None:
                    return f"{msg} (your patches do not have the Conv2d weight's layout: {why})"
            if compare_values(patches @ proj.weight.T, got, atol=1e-10, rtol=1e-8) is None:
                return msg + " (the bias is missing)"
            added = _added_after_proj(want, got.detach().to(want.dtype))
            if added:
                return f"{msg} (your forward {added} after proj: {_ONLY_PROJ})"
        return msg
    return test


#: the two bodies of PatchEmbedding, runnable as written in the stub (its parameter names)
_EMBEDDING_SOLUTION = (
    "replace the two `raise NotImplementedError()` of PatchEmbedding by\n"
    "  in __init__(self, in_channels, patch, dim), after super().__init__():\n"
    "        self.patch = patch\n"
    "        self.proj = nn.Linear(in_channels * patch * patch, dim)\n"
    "  in forward(self, x):\n"
    "        return self.proj(patchify(x, self.patch))                      # (N, L, dim)"
)


def _added_after_proj(want, got) -> str | None:
    """What the student's forward did to the correct tokens ``want`` (N, L, dim), if it is recognisable:
    a normalization over the features, an elementwise activation, or a term that is the same for every
    image (a position embedding, a second bias)."""
    import torch
    import torch.nn.functional as F

    def same(a):
        return compare_values(a, got, atol=1e-8, rtol=1e-6) is None

    if same(F.layer_norm(want, want.shape[-1:])) or (
            torch.allclose(got.mean(-1), torch.zeros_like(got[..., 0]), atol=1e-6)
            and torch.allclose(got.var(-1, unbiased=False), torch.ones_like(got[..., 0]), atol=1e-3)):
        return "normalizes the tokens (a LayerNorm)"
    for name, act in (("ReLU", F.relu), ("GELU", F.gelu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid)):
        if same(act(want)):
            return f"applies an activation ({name})"
    scale = ((got * want).sum() / (want * want).sum()).item()           # least-squares factor got ~ scale * want
    if abs(scale - 1) > 1e-6 and same(scale * want):
        hint = next((f" = {name}" for name, v in (("sqrt(dim)", want.shape[-1] ** 0.5),
                                                  ("1 / sqrt(dim)", want.shape[-1] ** -0.5))
                     if abs(scale - v) < 1e-6 * v), "")
        return f"multiplies the tokens by a fixed factor {scale:.4g}{hint}"
    extra = got - want                                                  # (N, L, dim)
    if len(extra) > 1 and extra.abs().max() > 1e-8 and compare_values(extra[:1].expand_as(extra), extra,
                                                                       atol=1e-8, rtol=1e-6) is None:
        return "adds a term that is the same for every image (a position embedding or a second bias)"
    return None


@tiered
def check_patch_embedding(PatchEmbedding) -> bool:
    """Check ``PatchEmbedding(in_channels, patch, dim)`` against ``nn.Conv2d(in_channels, dim, patch, stride=patch)``."""
    import torch

    def run(cls, device):
        return cls(3, 4, 8).to(device)(torch.randn(2, 3, 8, 8).to(device))

    cases = [
        Case("conv weights copied into proj, C = 3, patch = 4, dim = 8",
             test=_embedding_case(3, 4, 8, (2, 3, 8, 8), 0, "conv->yours")),
        Case("your weights copied into the conv, C = 3, patch = 4, dim = 8",
             test=_embedding_case(3, 4, 8, (2, 3, 8, 8), 1, "yours->conv")),
        Case("non-square image (2, 1, 6, 9), patch = 3, dim = 5",
             test=_embedding_case(1, 3, 5, (2, 1, 6, 9), 2, "conv->yours")),
        Case("Fashion-MNIST size (4, 1, 28, 28), patch = 7, dim = 32",
             test=_embedding_case(1, 7, 32, (4, 1, 28, 28), 3, "yours->conv")),
        Case("dim = C * patch * patch = 16 (a square weight)",
             test=_embedding_case(1, 4, 16, (2, 1, 8, 8), 4, "conv->yours")),
        device_case(run=run),
    ]
    return run_check(
        "PatchEmbedding(in_channels, patch, dim)", PatchEmbedding, cases,
        hint="a linear map applied to every flattened patch is a convolution whose kernel and stride are both the "
             "patch size: the Conv2d weight (dim, C, P, P) flattened to (dim, C * P * P) is the Linear weight",
        solution=_EMBEDDING_SOLUTION,
    )
