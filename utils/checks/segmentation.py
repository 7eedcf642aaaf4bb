"""Checks for the U-Net and segmentation lab (06): conv_matrix, iou_per_class and UNet."""

from __future__ import annotations

from collections.abc import Callable

from ..training import count_params
from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_conv_matrix", "check_iou_per_class", "check_unet", "reference_conv_matrix"]


def reference_conv_matrix(kernel, input_size, stride=1, padding=0):
    """The Jacobian of single-channel F.conv2d w.r.t. its flattened input (compact reference)."""
    import torch
    import torch.nn.functional as F

    H, W = input_size

    def conv(flat):
        x = flat.reshape(1, 1, H, W)
        return F.conv2d(x, kernel[None, None].to(flat.dtype), stride=stride, padding=padding).reshape(-1)

    return torch.autograd.functional.jacobian(conv, kernel.new_zeros(H * W))


def _is_column_major(ref, M, size, stride, padding, kernel_shape) -> bool:
    """True when ``M`` equals the reference with rows or columns flattened column-major (w * H + h)."""
    import torch

    if not torch.is_tensor(M) or tuple(M.shape) != tuple(ref.shape):
        return False
    H, W = size
    H_out = (H + 2 * padding - kernel_shape[0]) // stride + 1
    W_out = (W + 2 * padding - kernel_shape[1]) // stride + 1
    cols = torch.arange(H * W).reshape(H, W).T.reshape(-1)              # column-major order of the inputs
    rows = torch.arange(H_out * W_out).reshape(H_out, W_out).T.reshape(-1)
    got = M.detach().cpu().to(ref.dtype)
    return any(torch.allclose(got, ref[r][:, c]) for r, c in ((rows, cols), (torch.arange(len(rows)), cols),
                                                              (rows, torch.arange(len(cols)))))


@tiered
def check_conv_matrix(conv_matrix: Callable) -> bool:
    """Check ``conv_matrix(kernel, input_size, stride, padding)`` against conv2d and conv_transpose2d."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)

    def case(name, k, size, s, p):
        kernel = torch.randn(k, generator=g, dtype=torch.float64)

        def test(fn):
            M = fn(kernel.clone(), size, s, p)
            ref = reference_conv_matrix(kernel, size, s, p)
            msg = compare_values(ref, M, atol=1e-12, rtol=0, path="matrix")
            if msg:
                if _is_column_major(ref, M, size, s, p, kernel.shape):
                    msg += "; check the flattening order: input pixel (h, w) is column h * W + w (row-major)"
                return msg
            x = torch.randn(1, 1, *size, generator=g, dtype=torch.float64)
            y = F.conv2d(x, kernel[None, None], stride=s, padding=p)
            msg = compare_values(y.reshape(-1), M @ x.reshape(-1), atol=1e-10, rtol=1e-8, path="M @ x vs conv2d")
            if msg:
                return msg
            if (size[0] + 2 * p - k[0]) % s == 0 and (size[1] + 2 * p - k[1]) % s == 0:
                up = F.conv_transpose2d(y, kernel[None, None], stride=s, padding=p)
                return compare_values(up.reshape(-1), M.T @ y.reshape(-1), atol=1e-10, rtol=1e-8,
                                      path="M.T @ y vs conv_transpose2d")
            return None

        return Case(name, test=test)

    cases = [
        case("3x3 kernel, 4x4 input", (3, 3), (4, 4), 1, 0),
        case("2x3 kernel, 5x6 input", (2, 3), (5, 6), 1, 0),
        case("padding 1 (zero rows and columns have no entries)", (3, 3), (4, 5), 1, 1),
        case("stride 2, padding 1, 3x3 on 5x5 (transpose = conv_transpose2d)", (3, 3), (5, 5), 2, 1),
        case("stride 2, 2x2 kernel on 6x6", (2, 2), (6, 6), 2, 0),
        device_case(inputs=lambda: (torch.randn(3, 3), (5, 5), 1, 1)),
    ]
    return run_check(
        "conv_matrix(kernel, input_size, stride, padding)", conv_matrix, cases,
        hint="each row of M is one output pixel; it holds the kernel's weights at the columns of the input pixels its window covers",
        solution="row r = (i, j) of the output, column c = (h, w) of the input: M[r, c] = kernel[u, v] with "
             "h = i * stride - padding + u and w = j * stride - padding + v; skip taps that fall in the "
             "padding; allocate M with kernel.new_zeros(...) (the kernel's dtype and device)",
    )


@tiered
def check_iou_per_class(iou_per_class: Callable) -> bool:
    """Check ``iou_per_class(pred, target, num_classes)`` against scikit-learn's jaccard_score."""
    import numpy as np
    import torch
    from sklearn.metrics import jaccard_score

    def reference(pred, target, num_classes):
        t, p = target.reshape(-1).numpy(), pred.reshape(-1).numpy()
        scores = jaccard_score(t, p, labels=list(range(num_classes)), average=None, zero_division=0)
        absent = [c for c in range(num_classes) if not ((t == c) | (p == c)).any()]
        scores[absent] = np.nan                                   # undefined: absent from both maps
        return torch.tensor(scores, dtype=torch.float32)

    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 4, (2, 6, 6), generator=g)
    p = torch.where(torch.rand(t.shape, generator=g) < 0.7, t, torch.randint(0, 4, t.shape, generator=g))
    absent_t, absent_p = t.clamp(max=2), p.clamp(max=2)
    only_pred = torch.zeros(3, 3, dtype=torch.int64)
    only_pred_p = only_pred.clone()
    only_pred_p[0, 0] = 1
    def batch_case(pred, target, num_classes):
        def test(fn):
            got = fn(pred.clone(), target.clone(), num_classes)
            if torch.is_tensor(got) and got.is_floating_point() and got.dtype != torch.float32:
                return f"output dtype: expected torch.float32, got {got.dtype} (return float32, e.g. .float())"
            msg = compare_values(reference(pred, target, num_classes), got, atol=1e-6)
            if msg and torch.is_tensor(got) and tuple(got.shape) == (num_classes,):
                per_image = torch.stack([reference(a, b, num_classes) for a, b in zip(pred, target)]).nanmean(0)
                if torch.allclose(got.detach().cpu().float(), per_image, atol=1e-5, equal_nan=True):
                    msg += ("; that is the mean of per-image IoUs: count the pixels over the whole tensor "
                            "(all images together), as jaccard_score does on the flattened maps")
                else:
                    msg += "; count the pixels over the whole tensor (all images together), not per image"
            return msg

        return test

    cases = [
        Case("random maps (2 images), 4 classes (vs jaccard_score)", test=batch_case(p, t, 4)),
        Case("perfect prediction -> all ones", (t, t.clone(), 4), expected=reference, atol=1e-6),
        Case("class 3 absent from both -> NaN", (absent_p, absent_t, 4), expected=reference, atol=1e-6),
        Case("a class only in the prediction -> IoU 0", (only_pred_p, only_pred, 2), expected=reference, atol=1e-6),
        Case("a single (H, W) map", (p[0], t[0], 4), expected=reference, atol=1e-6),
        device_case(p, t, 4),
    ]
    return run_check(
        "iou_per_class(pred, target, num_classes)", iou_per_class, cases,
        hint='per class, compare the predicted and the true region: intersection over union, undefined (NaN) when the class appears in neither',
        solution="for each class c: intersection = ((pred == c) & (target == c)).sum(), union = "
             "((pred == c) | (target == c)).sum(); IoU = intersection / union as float, NaN when the "
             "union is 0; return a float tensor of shape (num_classes,)",
    )


@tiered
def check_unet(UNet: Callable) -> bool:
    """Check ``UNet(in_channels, num_classes, base_channels)``: shapes, skips flag and gradient flow."""
    import torch

    def shape_case(cin, classes, base, shape):
        def test(cls):
            torch.manual_seed(0)
            model = cls(cin, classes, base).eval()
            with torch.no_grad():
                out = model(torch.randn(2, cin, *shape))
            want = (2, classes, *shape)
            return None if tuple(out.shape) == want else f"output shape {tuple(out.shape)}, expected {want}"
        return test

    def skips_case(cls):
        torch.manual_seed(0)
        with_skips = cls(1, 3, 4)
        torch.manual_seed(0)
        without = cls(1, 3, 4, skips=False)
        n1, n2 = count_params(with_skips), count_params(without)
        if n1 != n2:
            return f"skips=False should keep the same layers (same parameter count), got {n1} vs {n2}"
        x = torch.randn(1, 1, 16, 16)
        with torch.no_grad():
            same = torch.allclose(with_skips.eval()(x), without.eval()(x))
        return "skips=False gives the same output as skips=True: feed zeros instead of the skip" if same else None

    def layout_case(cls):
        import torch.nn as nn

        def double_conv(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]

        c = 4

        def described(up_bias):
            return count_params(nn.ModuleList(
                double_conv(1, c) + double_conv(c, 2 * c) + double_conv(2 * c, 4 * c)
                + [nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2, bias=up_bias)] + double_conv(4 * c, 2 * c)
                + [nn.ConvTranspose2d(2 * c, c, 2, stride=2, bias=up_bias)] + double_conv(2 * c, c)
                + [nn.Conv2d(c, 3, 1)]))

        got = count_params(cls(1, 3, c))
        with_bias, without_bias = described(True), described(False)
        if got not in (with_bias, without_bias):
            return (f"{got} parameters, the described U-Net has {with_bias} ({without_bias} with bias=False in the "
                    "two transposed convolutions; both are fine): transposed convolutions halve the channels, "
                    "the decoder's double_conv takes the CONCATENATION (2x channels) of the upsampled map and "
                    "the skip, the 3x3 convolutions have no bias (BatchNorm follows) and the 1x1 head has one")
        return None

    def grad_case(cls):
        torch.manual_seed(0)
        model = cls(1, 3, 4)
        model(torch.randn(2, 1, 16, 16)).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        return f"parameters that get no gradient (unused layers?): {missing[:3]}" if missing else None

    def logits_case(cls):
        torch.manual_seed(0)
        model = cls(1, 3, 4).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 1, 16, 16))
        if not torch.is_tensor(out) or out.dim() != 4 or out.shape[1] != 3:
            return None                                           # the shape cases report this
        in_unit = bool(((out >= 0) & (out <= 1)).all())
        sums_to_one = bool(torch.allclose(out.sum(1), torch.ones_like(out.sum(1)), atol=1e-4))
        if in_unit or sums_to_one:
            return ("the outputs look like probabilities (all in [0, 1]" + (", summing to 1 over the classes"
                    if sums_to_one else "") + "): return raw logits (F.cross_entropy applies log-softmax itself)")
        return None

    cases = [
        Case("1 -> 4 classes, base 8, 32x32 input keeps its size", test=shape_case(1, 4, 8, (32, 32))),
        Case("3 -> 2 classes, base 4, 16x24 input", test=shape_case(3, 2, 4, (16, 24))),
        Case("layout: channels c, 2c, 4c, concatenated skips (parameter count)", test=layout_case),
        Case("skips=False: same parameters, different output", test=skips_case),
        Case("every parameter receives a gradient", test=grad_case),
        Case("outputs are logits (unnormalised scores), not probabilities", test=logits_case),
        device_case(run=lambda cls, device: [cls(1, 3, 4, skips=skips).to(device)(torch.randn(2, 1, 16, 16, device=device))
                                             for skips in (True, False)]),
    ]
    return run_check(
        "UNet(in_channels, num_classes, base_channels, skips=True)", UNet, cases,
        hint='encoder halves the resolution and doubles the channels; the decoder upsamples and concatenates the encoder map of the same size (zeros instead when skips=False); a 1x1 head gives the classes',
        solution="encoder: double_conv -> max-pool 2 -> double_conv ...; decoder: ConvTranspose2d(kernel 2, "
             "stride 2) halves the channels, torch.cat with the encoder feature map of the same size "
             "(torch.zeros_like(skip) when skips=False: zeros on the skip's device), double_conv; a 1x1 conv head gives num_classes maps",
    )
