"""The lab-06 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import check_verdict as _verdict

from utils.checks import segmentation as checks


def conv_matrix_basis(kernel, input_size, stride=1, padding=0):
    """Correct, written differently: convolve every basis image."""
    H, W = input_size
    eye = torch.eye(H * W, dtype=kernel.dtype, device=kernel.device).reshape(H * W, 1, H, W)
    cols = F.conv2d(eye, kernel[None, None], stride=stride, padding=padding)  # (HW, 1, Ho, Wo)
    return cols.reshape(H * W, -1).T


def test_conv_matrix_check(capsys):
    assert _verdict(checks.check_conv_matrix, checks.reference_conv_matrix, capsys)
    assert _verdict(checks.check_conv_matrix, conv_matrix_basis, capsys)
    assert not _verdict(checks.check_conv_matrix,  # transposed result
                        lambda k, size, s=1, p=0: conv_matrix_basis(k, size, s, p).T, capsys)
    assert not _verdict(checks.check_conv_matrix,  # flipped kernel
                        lambda k, size, s=1, p=0: conv_matrix_basis(k.flip(0, 1), size, s, p), capsys)
    assert not _verdict(checks.check_conv_matrix,  # ignores padding
                        lambda k, size, s=1, p=0: conv_matrix_basis(k, size, s, 0), capsys)


def iou_vectorised(pred, target, num_classes):
    p = F.one_hot(pred.reshape(-1), num_classes).bool()
    t = F.one_hot(target.reshape(-1), num_classes).bool()
    inter, union = (p & t).sum(0).float(), (p | t).sum(0).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.tensor(float("nan")))


def test_iou_check(capsys):
    assert _verdict(checks.check_iou_per_class, iou_vectorised, capsys)
    assert not _verdict(checks.check_iou_per_class,  # zero instead of NaN for absent classes
                        lambda p, t, n: torch.nan_to_num(iou_vectorised(p, t, n), nan=0.0), capsys)
    assert not _verdict(checks.check_iou_per_class,  # Dice instead of IoU
                        lambda p, t, n: 2 * iou_vectorised(p, t, n) / (1 + iou_vectorised(p, t, n)), capsys)
    assert not _verdict(checks.check_iou_per_class,  # pixel accuracy per class (recall)
                        lambda p, t, n: torch.stack([((p == c) & (t == c)).sum() / (t == c).sum().clamp(min=1)
                                                     for c in range(n)]).float(), capsys)


def _double(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def _unet_cls(zeros_instead=True, add_skip=False, up_bias=True):
    class Net(nn.Module):
        def __init__(self, cin, ncls, c, skips=True):
            super().__init__()
            self.skips = skips
            m = 1 if add_skip else 2
            self.e1, self.e2, self.b = _double(cin, c), _double(c, 2 * c), _double(2 * c, 4 * c)
            self.u2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2, bias=up_bias)
            self.d2 = _double(m * 2 * c, 2 * c)
            self.u1, self.d1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2, bias=up_bias), _double(m * c, c)
            self.head = nn.Conv2d(c, ncls, 1)

        def join(self, up, skip):
            if add_skip:
                return up + skip
            if self.skips or not zeros_instead:
                return torch.cat([up, skip], 1)
            return torch.cat([up, torch.zeros_like(skip)], 1)

        def forward(self, x):
            e1 = self.e1(x)
            e2 = self.e2(F.max_pool2d(e1, 2))
            b = self.b(F.max_pool2d(e2, 2))
            return self.head(self.d1(self.join(self.u1(self.d2(self.join(self.u2(b), e2))), e1)))

    return Net


def test_unet_check(capsys):
    assert _verdict(checks.check_unet, _unet_cls(), capsys)
    assert _verdict(checks.check_unet, _unet_cls(up_bias=False), capsys)  # bias-free upsampling is legitimate
    assert not _verdict(checks.check_unet, _unet_cls(zeros_instead=False), capsys)  # skips flag ignored
    assert not _verdict(checks.check_unet, _unet_cls(add_skip=True), capsys)  # adds instead of concatenating

    def shrinking(cin, ncls, c, skips=True):  # forgets to upsample: output is H/2 x W/2
        return nn.Sequential(nn.Conv2d(cin, c, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(c, ncls, 1))

    assert not _verdict(checks.check_unet, shrinking, capsys)


def test_unet_check_rejects_probabilities(capsys):
    base = _unet_cls()
    for squash in (lambda z: z.softmax(1), torch.sigmoid):
        class Probs(base):
            def forward(self, x, squash=squash):
                return squash(super().forward(x))

        assert not checks.check_unet(Probs)
        out = capsys.readouterr().out
        assert "✗ outputs are logits" in out and "return raw logits" in out


def test_iou_check_explains_per_image_mean(capsys):
    def per_image_mean(pred, target, num_classes):
        return torch.stack([iou_vectorised(p, t, num_classes) for p, t in zip(pred, target)]).nanmean(0)

    assert not checks.check_iou_per_class(per_image_mean)
    out = capsys.readouterr().out
    assert "mean of per-image IoUs: count the pixels over the whole tensor" in out
    assert not checks.check_iou_per_class(lambda p, t, n: iou_vectorised(p, t, n).double())
    assert "expected torch.float32, got torch.float64 (return float32" in capsys.readouterr().out


def test_conv_matrix_check_names_column_major(capsys):
    def column_major(kernel, input_size, stride=1, padding=0):
        H, W = input_size
        M = conv_matrix_basis(kernel, input_size, stride, padding)
        return M[:, torch.arange(H * W).reshape(H, W).T.reshape(-1)]

    assert not checks.check_conv_matrix(column_major)
    assert "check the flattening order: input pixel (h, w) is column h * W + w" in capsys.readouterr().out


def _ordered_unet(order, relu_head=False, zeros_up=False):
    """A correct U-Net whose modules are created in ``order`` (so each gets other initial weights)."""
    class Net(nn.Module):
        def __init__(self, cin, ncls, c, skips=True):
            super().__init__()
            self.skips = skips
            make = {"enc1": lambda: _double(cin, c), "enc2": lambda: _double(c, 2 * c),
                    "bottom": lambda: _double(2 * c, 4 * c), "up2": lambda: nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2),
                    "dec2": lambda: _double(4 * c, 2 * c), "up1": lambda: nn.ConvTranspose2d(2 * c, c, 2, stride=2),
                    "dec1": lambda: _double(2 * c, c), "head": lambda: nn.Conv2d(c, ncls, 1)}
            for name in order:
                setattr(self, name, make[name]())

        def join(self, up, skip):
            if self.skips:
                return torch.cat([up, skip], 1)
            if zeros_up:                                          # wrong: drops the decoder path, keeps the skip
                return torch.cat([torch.zeros_like(up), skip], 1)
            return torch.cat([up, torch.zeros_like(skip)], 1)

        def forward(self, x):
            e1 = self.enc1(x)
            e2 = self.enc2(F.max_pool2d(e1, 2))
            b = self.bottom(F.max_pool2d(e2, 2))
            out = self.head(self.dec1(self.join(self.up1(self.dec2(self.join(self.up2(b), e2))), e1)))
            return F.relu(out) if relu_head else out

    return Net


_ORDERS = [
    ["enc1", "bottom", "up2", "dec2", "up1", "dec1", "head", "enc2"],   # rejected by the old single-seed test
    ["dec2", "bottom", "up1", "dec1", "up2", "head", "enc2", "enc1"],
    ["enc1", "up1", "head", "enc2", "dec2", "bottom", "dec1", "up2"],
    ["enc1", "enc2", "head", "up1", "bottom", "dec2", "up2", "dec1"],
    ["head", "dec1", "up1", "dec2", "up2", "bottom", "enc2", "enc1"],
]


def test_unet_check_accepts_any_creation_order(capsys):
    for order in _ORDERS:
        assert _verdict(checks.check_unet, _ordered_unet(order), capsys), order


def test_unet_check_names_relu_after_head(capsys):
    assert not checks.check_unet(_ordered_unet(_ORDERS[0], relu_head=True))
    out = capsys.readouterr().out
    assert "✗ outputs are logits" in out and "no activation after the 1×1 head" in out
    assert "skips=False gives the same output" not in out and "look like probabilities" not in out


def test_unet_check_rejects_zeroed_decoder_path(capsys):
    assert not checks.check_unet(_ordered_unet(_ORDERS[0], zeros_up=True))
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "with skips=False these layers get no gradient:" in ln)
    assert all(name in line for name in ("enc2", "bottom", "up2", "dec2", "up1")) and "enc1" not in line


def test_iou_check_names_dice_and_integer_division(capsys):
    assert not checks.check_iou_per_class(lambda p, t, n: 2 * iou_vectorised(p, t, n) / (1 + iou_vectorised(p, t, n)))
    out = capsys.readouterr().out
    assert "that is the Dice coefficient" in out and "not per image" not in out
    assert not checks.check_iou_per_class(lambda p, t, n: torch.stack(
        [((p == c) & (t == c)).sum() // ((p == c) | (t == c)).sum().clamp(min=1) for c in range(n)]).float())
    out = capsys.readouterr().out
    assert "an integer division" in out and "not per image" not in out


def test_iou_check_per_image_hint_only_when_single_map_passes(capsys):
    def first_image_only(pred, target, num_classes):  # right on one map, ignores the rest of a batch
        return iou_vectorised(pred[0] if pred.dim() == 3 else pred, target[0] if target.dim() == 3 else target,
                              num_classes)

    assert not checks.check_iou_per_class(first_image_only)
    assert "a single map comes out right, so count the pixels over the whole batch" in capsys.readouterr().out
    assert not checks.check_iou_per_class(  # recall: wrong everywhere, so no per-image suffix
        lambda p, t, n: torch.stack([((p == c) & (t == c)).sum() / (t == c).sum().clamp(min=1) for c in range(n)]).float())
    assert "not per image" not in capsys.readouterr().out


def test_conv_matrix_check_names_flipped_kernel(capsys):
    assert not checks.check_conv_matrix(lambda k, size, s=1, p=0: conv_matrix_basis(k.flip(0, 1), size, s, p))
    assert "PyTorch's conv2d does not flip the kernel (cross-correlation)" in capsys.readouterr().out
    assert not checks.check_conv_matrix(lambda k, size, s=1, p=0: conv_matrix_basis(k, size, s, p).T)
    out = capsys.readouterr().out
    assert "does not flip the kernel" not in out and "that is M transposed: one row per output pixel" in out


def test_iou_check_names_sum_as_union(capsys):
    def sum_as_union(pred, target, num_classes):  # |P| + |T| counts the intersection twice
        p = F.one_hot(pred.reshape(-1), num_classes)
        t = F.one_hot(target.reshape(-1), num_classes)
        return ((p & t).sum(0) / (p.sum(0) + t.sum(0))).float()

    assert not _verdict(checks.check_iou_per_class, sum_as_union, capsys)
    assert not checks.check_iou_per_class(sum_as_union)
    out = capsys.readouterr().out
    assert "✗ perfect prediction -> all ones" in out and "that counts the intersection twice" not in out
    assert "which counts the intersection twice (a perfect prediction gives 0.5)" in out
    assert not checks.check_iou_per_class(lambda p, t, n: 2 * iou_vectorised(p, t, n) / (1 + iou_vectorised(p, t, n)))
    assert "counts the intersection twice" not in capsys.readouterr().out


def _half_ablation_unet(zero_deep_always=False, zero_deep_never=False):
    """Wrong U-Nets that the output-only skips case accepted: one skip is ignored by the flag."""
    class Net(nn.Module):
        def __init__(self, cin, ncls, c, skips=True):
            super().__init__()
            self.skips = skips
            self.e1, self.e2, self.b = _double(cin, c), _double(c, 2 * c), _double(2 * c, 4 * c)
            self.u2, self.d2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2), _double(4 * c, 2 * c)
            self.u1, self.d1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2), _double(2 * c, c)
            self.h = nn.Conv2d(c, ncls, 1)

        def forward(self, x):
            e1 = self.e1(x)
            e2 = self.e2(F.max_pool2d(e1, 2))
            b = self.b(F.max_pool2d(e2, 2))
            deep = torch.zeros_like(e2) if zero_deep_always or (not self.skips and not zero_deep_never) else e2
            d2 = self.d2(torch.cat([self.u2(b), deep], 1))
            return self.h(self.d1(torch.cat([self.u1(d2), e1 if self.skips else torch.zeros_like(e1)], 1)))

    return Net


def test_unet_check_rejects_half_ablations(capsys):
    assert _verdict(checks.check_unet, _half_ablation_unet(), capsys)  # both flags off: the correct network
    assert not checks.check_unet(_half_ablation_unet(zero_deep_never=True))  # skips=False keeps the deep skip
    out = capsys.readouterr().out
    assert "with skips=False the skip at decoder level 2 (the 8x8 concatenation) is not zero" in out
    assert "✓ skips=False: same parameters, different output" in out  # the output-only case cannot see it
    assert not checks.check_unet(_half_ablation_unet(zero_deep_always=True))  # the deep skip is always zeros
    assert "with skips=True the skip at decoder level 2 (the 8x8 concatenation) is all zeros" in capsys.readouterr().out


def test_unet_check_accepts_other_concatenations(capsys):
    class Concat(_unet_cls()):  # torch.concat / torch.concatenate / tensors= keyword: the same check applies
        def join(self, up, skip):
            skip = skip if self.skips else skip * 0
            return torch.concatenate(tensors=(up, skip), dim=1) if up.shape[-1] > 8 else torch.concat((up, skip), 1)

    assert checks.check_unet(Concat)
    assert "✓ skips=False zeros the skip at every decoder level, skips=True at none" in capsys.readouterr().out
