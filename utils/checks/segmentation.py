"""Checks for the U-Net and segmentation lab (06): conv_matrix, iou_per_class and UNet."""

from __future__ import annotations

from collections.abc import Callable

from ..training import count_params
from .core import Case, Skipped, compare_values, device_case, run_check, tiered

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
                elif torch.is_tensor(M) and M.dim() == 2 and compare_values(ref.T, M, atol=1e-12, rtol=0) is None:
                    msg += ("; that is M transposed: one row per output pixel, one column per input pixel, "
                            "shape (H_out * W_out, H * W) (with stride 1 and same-size padding M transposed is "
                            "also the matrix of the flipped kernel: PyTorch's conv2d does not flip it)")
                elif compare_values(reference_conv_matrix(kernel.flip(0, 1), size, s, p), M, atol=1e-12, rtol=0,
                                    path="matrix") is None:
                    msg += ("; that is the matrix of the flipped kernel (a true convolution): PyTorch's conv2d "
                            "does not flip the kernel (cross-correlation), so use kernel[u, v] as it is")
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

    def diagnosis(ref, got):
        """A named mistake when ``got`` (num_classes,) matches one, else None."""
        g_ = got.detach().cpu().float()
        known = ~ref.isnan() & ~g_.isnan()
        if not torch.equal(ref.isnan(), g_.isnan()):
            return None
        if (known & (ref > 0)).any() and torch.allclose(g_[known], (ref / (1 + ref))[known], atol=1e-5):
            return ("; that divides by |P| + |T|, which counts the intersection twice (a perfect prediction "
                    "gives 0.5): the union is |P ∪ T| = |P| + |T| - |P ∩ T|, the pixels in either map")
        partial = known & (ref > 0) & (ref < 1)                   # where IoU, Dice and a truncated ratio differ
        if not partial.any():
            return None
        if torch.allclose(g_[known], (2 * ref / (1 + ref))[known], atol=1e-5):
            return ("; that is the Dice coefficient 2|P ∩ T| / (|P| + |T|) = 2 IoU / (1 + IoU), larger than "
                    "the IoU |P ∩ T| / |P ∪ T| whenever the regions differ")
        if (g_[partial] == 0).all() and torch.equal(g_[known & ~partial], ref[known & ~partial]):
            return ("; every IoU between 0 and 1 came out as 0 (only 0 and 1 remain): an integer division "
                    "(// or a result stored in an integer tensor) truncates intersection / union")
        return None

    def value_case(pred, target, num_classes, batch=False):
        def test(fn):
            got = fn(pred.clone(), target.clone(), num_classes)
            if torch.is_tensor(got) and got.is_floating_point() and got.dtype != torch.float32:
                return f"output dtype: expected torch.float32, got {got.dtype} (return float32, e.g. .float())"
            ref = reference(pred, target, num_classes)
            msg = compare_values(ref, got, atol=1e-6)
            if not msg or not torch.is_tensor(got) or tuple(got.shape) != (num_classes,):
                return msg
            named = diagnosis(ref, got)
            if named:
                return msg + named
            if batch:
                per_image = torch.stack([reference(a, b, num_classes) for a, b in zip(pred, target)]).nanmean(0)
                if torch.allclose(got.detach().cpu().float(), per_image, atol=1e-5, equal_nan=True):
                    return msg + ("; that is the mean of per-image IoUs: count the pixels over the whole tensor "
                                  "(all images together), as jaccard_score does on the flattened maps")
                single = fn(pred[0].clone(), target[0].clone(), num_classes)
                if compare_values(reference(pred[0], target[0], num_classes), single, atol=1e-6) is None:
                    msg += ("; a single map comes out right, so count the pixels over the whole batch "
                            "(all images together), not per image")
            return msg

        return test

    cases = [
        Case("random maps (2 images), 4 classes (vs jaccard_score)", test=value_case(p, t, 4, batch=True)),
        Case("perfect prediction -> all ones", test=value_case(t, t.clone(), 4)),
        Case("class 3 absent from both -> NaN", test=value_case(absent_p, absent_t, 4)),
        Case("a class only in the prediction -> IoU 0", test=value_case(only_pred_p, only_pred, 2)),
        Case("a single (H, W) map", test=value_case(p[0], t[0], 4)),
        device_case(p, t, 4),
    ]
    return run_check(
        "iou_per_class(pred, target, num_classes)", iou_per_class, cases,
        hint='per class, compare the predicted and the true region: intersection over union, undefined (NaN) when the class appears in neither',
        solution="classes = torch.arange(num_classes, device=pred.device)[:, None]; p = pred.reshape(1, -1) == classes "
             "and t = target.reshape(1, -1) == classes (one row per class); intersection = (p & t).sum(1), "
             "union = (p | t).sum(1); return intersection / union (float32; 0 / 0 = NaN for a class in neither map)",
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

    seeds = range(5)                                              # fresh weights and inputs per seed

    def outputs(cls, seed, **kwargs):
        torch.manual_seed(seed)
        model = cls(1, 3, 4, **kwargs).eval()
        with torch.no_grad():
            return model(torch.randn(2, 1, 16, 16))

    def zero_share(out):
        return (out == 0).float().mean().item() if torch.is_tensor(out) and out.numel() else 0.0

    def skips_case(cls):
        torch.manual_seed(0)
        n1, n2 = count_params(cls(1, 3, 4)), count_params(cls(1, 3, 4, skips=False))
        if n1 != n2:
            return f"skips=False should keep the same layers (same parameter count), got {n1} vs {n2}"
        pairs = [(outputs(cls, seed), outputs(cls, seed, skips=False)) for seed in seeds[:3]]
        if any(not torch.allclose(a, b) for a, b in pairs):
            return None
        if min(zero_share(a) for a, _ in pairs) > 0.5:            # e.g. a ReLU after the head: nothing to compare
            return Skipped("not decided: most outputs are exactly 0 with and without skips; see the logits case")
        return "skips=False gives the same output as skips=True: feed zeros instead of the skip"

    def concat_operands(cls, skips):
        """Per torch.cat (or concat, concatenate, hstack) of >= 2 tensors in one forward pass:
        (spatial size, [is each operand all zeros?])."""
        from torch.overrides import TorchFunctionMode

        joins = {torch.cat, torch.concat, torch.concatenate, torch.hstack}

        class ConcatSpy(TorchFunctionMode):
            def __init__(self):
                super().__init__()
                self.calls = []

            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                if func in joins:
                    parts = args[0] if args else kwargs.get("tensors", ())
                    parts = [t for t in parts if torch.is_tensor(t)]
                    if len(parts) >= 2 and torch.is_tensor(out) and out.dim() == 4:
                        self.calls.append((tuple(out.shape[-2:]), [bool((t == 0).all()) for t in parts]))
                return out

        torch.manual_seed(0)
        model = cls(1, 3, 4, skips=skips).eval()
        with ConcatSpy() as spy, torch.no_grad():
            model(torch.randn(2, 1, 16, 16))
        return spy.calls

    def zeroed_skips_case(cls):
        with_skips, without = concat_operands(cls, True), concat_operands(cls, False)
        if len(with_skips) < 2 or len(without) != len(with_skips):
            return Skipped(f"not decided: saw {len(with_skips)} and {len(without)} concatenations (torch.cat) "
                           "with and without skips, expected one per decoder level (2)")
        by_size = sorted(range(len(without)), key=lambda i: -without[i][0][0])   # level 1 = full resolution

        def where(i):
            level = by_size.index(i) + 1
            h, w = without[i][0]
            return f"decoder level {level} (the {h}x{w} concatenation)"

        for i, (_, zeros) in enumerate(without):
            if sum(zeros) == 0:
                return (f"with skips=False the skip at {where(i)} is not zero: every decoder level must "
                        "concatenate torch.zeros_like(skip) instead of the skip (a half ablation is not a fair one)")
            if sum(zeros) > 1:
                return (f"with skips=False {sum(zeros)} operands at {where(i)} are all zeros: replace only the skip, "
                        "keep the upsampled decoder map")
        for i, (_, zeros) in enumerate(with_skips):
            if any(zeros):
                return (f"with skips=True the skip at {where(i)} is all zeros: concatenate the encoder map of the "
                        "same size there (zeros only when skips=False)")
        return None

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
        for skips in (True, False):
            torch.manual_seed(0)
            model = cls(1, 3, 4, skips=skips)
            model(torch.randn(2, 1, 16, 16)).sum().backward()
            missing = list(dict.fromkeys(n.rsplit(".", 2)[0] if n.count(".") > 1 else n.split(".")[0]
                                         for n, p in model.named_parameters() if p.grad is None))
            if missing and skips:
                return f"layers that get no gradient (unused?): {', '.join(missing[:5])}"
            if missing:
                return (f"with skips=False these layers get no gradient: {', '.join(missing[:5])}; only the skip "
                        "(the encoder map) is replaced by zeros, the upsampled decoder path stays in use")
        return None

    def logits_case(cls):
        outs = [outputs(cls, seed) for seed in seeds]
        if not all(torch.is_tensor(o) and o.dim() == 4 and o.shape[1] == 3 for o in outs):
            return None                                           # the shape cases report this
        if any(torch.allclose(o.sum(1), torch.ones_like(o.sum(1)), atol=1e-4) for o in outs):
            return ("the outputs are probabilities (summing to 1 over the classes): return "
                    "raw logits (F.cross_entropy applies log-softmax itself)")
        zeros = sum(zero_share(o) for o in outs) / len(outs)
        if all(bool((o >= 0).all()) for o in outs) and (zeros > 0.1 or not all(bool((o <= 1).all()) for o in outs)):
            return (f"the outputs are never negative over {len(outs)} random initialisations"
                    + (f" and {zeros:.0%} of them are exactly 0" if zeros > 0.1 else "")
                    + ": no activation after the 1×1 head (a ReLU there clips the logits, and negative scores "
                    "are how the network says 'not this class')")
        if all(bool(((o >= 0) & (o <= 1)).all()) for o in outs):
            return (f"the outputs look like probabilities (all in [0, 1] over {len(outs)} random initialisations): return "
                    "raw logits (F.cross_entropy applies log-softmax itself)")
        return None

    cases = [
        Case("1 -> 4 classes, base 8, 32x32 input keeps its size", test=shape_case(1, 4, 8, (32, 32))),
        Case("3 -> 2 classes, base 4, 16x24 input", test=shape_case(3, 2, 4, (16, 24))),
        Case("layout: channels c, 2c, 4c, concatenated skips (parameter count)", test=layout_case),
        Case("skips=False: same parameters, different output", test=skips_case),
        Case("every parameter receives a gradient", test=grad_case),
        Case("skips=False zeros the skip at every decoder level, skips=True at none", test=zeroed_skips_case),
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
