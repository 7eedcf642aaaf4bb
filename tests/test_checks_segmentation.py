"""The lab-06 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks import segmentation as checks


def _verdict(check, fn, capsys) -> bool:
    verdict = check(fn)
    out = capsys.readouterr().out
    assert bool(re.search(r"^✓ all \d+ cases passed$", out, re.M)) == verdict
    return verdict


def conv_matrix_basis(kernel, input_size, stride=1, padding=0):
    """Correct, written differently: convolve every basis image."""
    H, W = input_size
    eye = torch.eye(H * W, dtype=kernel.dtype).reshape(H * W, 1, H, W)
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


def _unet_cls(zeros_instead=True, add_skip=False):
    class Net(nn.Module):
        def __init__(self, cin, ncls, c, skips=True):
            super().__init__()
            self.skips = skips
            self.e1 = nn.Conv2d(cin, c, 3, padding=1)
            self.e2 = nn.Conv2d(c, 2 * c, 3, padding=1)
            self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
            self.d1 = nn.Conv2d(c if add_skip else 2 * c, c, 3, padding=1)
            self.head = nn.Conv2d(c, ncls, 1)

        def forward(self, x):
            e1 = F.relu(self.e1(x))
            u = self.up(F.relu(self.e2(F.max_pool2d(e1, 2))))
            if add_skip:
                joined = u + e1
            elif self.skips or not zeros_instead:
                joined = torch.cat([u, e1], 1)
            else:
                joined = torch.cat([u, torch.zeros_like(e1)], 1)
            return self.head(F.relu(self.d1(joined)))

    return Net


def test_unet_check(capsys):
    assert _verdict(checks.check_unet, _unet_cls(), capsys)
    assert not _verdict(checks.check_unet, _unet_cls(zeros_instead=False), capsys)  # skips flag ignored

    def shrinking(cin, ncls, c, skips=True):  # forgets to upsample: output is H/2 x W/2
        return nn.Sequential(nn.Conv2d(cin, c, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(c, ncls, 1))

    assert not _verdict(checks.check_unet, shrinking, capsys)
