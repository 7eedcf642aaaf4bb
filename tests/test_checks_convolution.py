"""The lab-04 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils.checks import convolution as checks


def _verdict(check, fn, capsys) -> bool:
    verdict = check(fn)
    out = capsys.readouterr().out
    assert bool(re.search(r"^✓ all \d+ cases passed$", out, re.M)) == verdict
    return verdict


def conv_unfold(x, weight, bias=None, stride=1, padding=0):
    """Correct, written differently: im2col with F.unfold and one matrix product."""
    N, C, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (N, C*kh*kw, L)
    out = weight.reshape(C_out, -1) @ cols  # (N, C_out, L)
    H_out = (H + 2 * padding - kh) // stride + 1
    out = out.reshape(N, C_out, H_out, -1)
    return out if bias is None else out + bias.reshape(1, C_out, 1, 1)


def conv_loops(x, weight, bias=None, stride=1, padding=0, flip=False, ignore_bias=False,
               pad_one_side=False):
    """Per-pixel loops; flags inject typical mistakes."""
    if pad_one_side:
        x = F.pad(x, (0, 2 * padding, 0, 2 * padding))
    else:
        x = F.pad(x, (padding,) * 4)
    if flip:
        weight = weight.flip(-1, -2)
    N, C, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H_out, W_out = (H - kh) // stride + 1, (W - kw) // stride + 1
    out = x.new_zeros(N, C_out, H_out, W_out)
    for i in range(H_out):
        for j in range(W_out):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = torch.einsum("nchw,ochw->no", patch, weight)
    if bias is not None and not ignore_bias:
        out = out + bias[None, :, None, None]
    return out


def conv_offsets(x, weight, bias=None, stride=1, padding=0):
    """Correct, the notebook's way: one strided slice per kernel offset (kh * kw steps)."""
    N, C, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    x = F.pad(x, (padding,) * 4)
    H_out, W_out = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
    out = x.new_zeros(N, C_out, H_out, W_out)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * H_out:stride, j:j + stride * W_out:stride]
            out = out + torch.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])
    return out if bias is None else out + bias[None, :, None, None]


def test_conv2d_check_accepts_correct(capsys):
    assert _verdict(checks.check_conv2d, conv_unfold, capsys)
    assert _verdict(checks.check_conv2d, conv_offsets, capsys)
    assert _verdict(checks.check_conv2d, F.conv2d, capsys)


def test_conv2d_check_rejects_per_pixel_loop(capsys):
    """Right values, but its backward walks through one slice write per output pixel: far too slow to train."""
    assert not checks.check_conv2d(conv_loops)
    out = capsys.readouterr().out
    assert out.count("✗") == 2 and "✗ fast enough" in out and "✗ 8 of 9 cases passed" in out
    assert "loop over the kernel offsets (k×k steps), not over output pixels" in out


@pytest.mark.parametrize("kwargs", [{"flip": True}, {"ignore_bias": True}, {"pad_one_side": True}])
def test_conv2d_check_rejects_mistakes(kwargs, capsys):
    assert not _verdict(checks.check_conv2d, lambda *a, **k: conv_loops(*a, **k, **kwargs), capsys)


def test_conv2d_check_rejects_stride_ignored(capsys):
    assert not _verdict(checks.check_conv2d,
                        lambda x, w, bias=None, stride=1, padding=0: F.conv2d(x, w, bias, 1, padding), capsys)


def test_output_size_check(capsys):
    assert _verdict(checks.check_conv_output_size,
                    lambda n, k, s=1, p=0, d=1: int(np.floor((n + 2 * p - d * (k - 1) - 1) / s)) + 1, capsys)
    assert not _verdict(checks.check_conv_output_size,
                        lambda n, k, s=1, p=0, d=1: (n + 2 * p - k) // s + 1, capsys)  # no dilation
    assert not _verdict(checks.check_conv_output_size,
                        lambda n, k, s=1, p=0, d=1: int(np.ceil((n + 2 * p - d * (k - 1) - 1) / s)) + 1, capsys)
    assert not _verdict(checks.check_conv_output_size,
                        lambda n, k, s=1, p=0, d=1: (n + p - d * (k - 1) - 1) // s + 1, capsys)  # one-sided p


def gaussian_numpy(size, sigma):
    ax = np.linspace(-(size - 1) / 2, (size - 1) / 2, size)
    g = np.exp(-0.5 * (ax / sigma) ** 2)
    k = np.outer(g, g)
    return torch.from_numpy(k / k.sum()).float()


def test_gaussian_check(capsys):
    assert _verdict(checks.check_gaussian_kernel, gaussian_numpy, capsys)
    assert not _verdict(checks.check_gaussian_kernel,  # not normalized
                        lambda n, s: gaussian_numpy(n, s) * torch.exp(torch.tensor(0.0)) * 2, capsys)
    assert not _verdict(checks.check_gaussian_kernel,  # centred on pixel 0
                        lambda n, s: torch.roll(gaussian_numpy(n, s), 1, dims=0), capsys)
    assert not _verdict(checks.check_gaussian_kernel,  # sigma used as variance
                        lambda n, s: gaussian_numpy(n, s**0.5), capsys)


def test_gaussian_check_names_float32_and_keeps_centre_note_for_centring(capsys):
    assert not checks.check_gaussian_kernel(lambda n, s: gaussian_numpy(n, s).double())
    out = capsys.readouterr().out
    assert "expected torch.float32, got torch.float64" in out and "call .float()" in out
    assert "new_zeros" not in out

    assert not checks.check_gaussian_kernel(lambda n, s: gaussian_numpy(n, 2 * s))   # wrong width, well centred
    out = capsys.readouterr().out
    assert "✗ size 4, sigma 1.0" in out and "centre lies between" not in out


def conv_float32(x, weight, bias=None, stride=1, padding=0):
    """Mistake: allocates a float32 output (torch.zeros) and accumulates in place on float64 inputs."""
    N, C, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    x = F.pad(x, (padding,) * 4)
    H_out, W_out = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
    out = torch.zeros(N, C_out, H_out, W_out, device=x.device)
    for i in range(kh):
        for j in range(kw):
            out += torch.einsum("nchw,oc->nohw", x[:, :, i:i + stride * H_out:stride, j:j + stride * W_out:stride],
                                weight[:, :, i, j]).float()
    return out if bias is None else out + bias[None, :, None, None]


def test_conv2d_check_names_float32_arithmetic(capsys):
    assert not checks.check_conv2d(conv_float32)
    out = capsys.readouterr().out
    assert "looks like float32 arithmetic: allocate with x.new_zeros" in out   # the bias cases: float64 again


def test_gaussian_check_explains_even_size_and_normalisation(capsys):
    def middle_pixel(size, sigma):  # centred on pixel size // 2: right for odd sizes only
        r = torch.arange(size, dtype=torch.float32) - size // 2
        g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
        return g / g.sum()

    assert not checks.check_gaussian_kernel(middle_pixel)
    out = capsys.readouterr().out
    assert out.count("✗") == 2 and "✗ size 4, sigma 1.0" in out
    assert "for even size the centre lies between the two middle pixels" in out

    def analytic(size, sigma):  # 1 / (2 pi sigma^2) instead of dividing by the sum
        r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        return torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)

    assert not checks.check_gaussian_kernel(analytic)
    assert "not 1: divide by its sum" in capsys.readouterr().out
