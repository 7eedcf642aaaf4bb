"""The lab-04 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import check_verdict as _verdict

from utils.checks import convolution as checks


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


@pytest.mark.parametrize("wrong", [
    lambda n, k, s=1, p=0, d=1: np.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1,   # np.float64
    lambda n, k, s=1, p=0, d=1: float((n + 2 * p - d * (k - 1) - 1) // s + 1),
    lambda n, k, s=1, p=0, d=1: (n + 2 * p - d * (k - 1) - 1) / s + 1 if s == 1 else (n + 2 * p - d * (k - 1) - 1) // s + 1,
])
def test_output_size_check_rejects_a_float_with_its_cause(wrong, capsys):
    """The right value as a float passes nn.Conv2d's comparison but crashes nn.Linear(25 * L3, 10) later."""
    assert not checks.check_conv_output_size(wrong)
    out = capsys.readouterr().out
    assert "✗ n=28, k=3: output: expected an int, got float" in out
    assert "got float64 26.0: use integer division //" in out or "got float 26.0: use integer division //" in out
    assert "(the size feeds nn.Linear later)" in out


def test_output_size_check_accepts_numpy_and_math_ints(capsys):
    import math

    assert _verdict(checks.check_conv_output_size,
                    lambda n, k, s=1, p=0, d=1: np.int64(n + 2 * p - d * (k - 1) - 1) // s + 1, capsys)
    assert _verdict(checks.check_conv_output_size,
                    lambda n, k, s=1, p=0, d=1: math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1, capsys)


def test_conv2d_check_names_the_dtype_once(capsys):
    assert not checks.check_conv2d(conv_float32)
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("  ✗ 1 image"))
    assert line.endswith("output dtype: expected torch.float64, got torch.float32: allocate with x.new_zeros(...) "
                         "so the output keeps x's dtype and device")
    assert line.count("new_zeros") == 1


def conv_ceil(x, weight, bias=None, stride=1, padding=0, unfold=False):
    """Mistake: output size rounded up, which differs from floor only on the stride-3 case."""
    N, C, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H_out, W_out = -(-(H + 2 * padding - kh) // stride) + 1, -(-(W + 2 * padding - kw) // stride) + 1
    if unfold:
        cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)
        out = (weight.reshape(C_out, -1) @ cols).reshape(N, C_out, H_out, -1)
        return out if bias is None else out + bias.reshape(1, C_out, 1, 1)
    x = F.pad(x, (padding,) * 4)
    out = x.new_zeros(N, C_out, H_out, W_out)
    for i in range(kh):
        for j in range(kw):
            out = out + torch.einsum("nchw,oc->nohw", x[:, :, i:i + stride * H_out:stride, j:j + stride * W_out:stride],
                                     weight[:, :, i, j])
    return out if bias is None else out + bias[None, :, None, None]


@pytest.mark.parametrize("unfold", [False, True])
def test_conv2d_check_diagnoses_a_rounded_up_output_size(unfold, capsys):
    assert not checks.check_conv2d(lambda *a, **k: conv_ceil(*a, **k, unfold=unfold))
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("  ✗"))
    assert line.startswith("  ✗ stride 3, 5x5 kernel, padding 2: raised RuntimeError")
    assert "output size: use floor (//): (11 + 2*2 - 5) // 3 + 1 = 4 rows" in line
    assert "rounding up gives 5 x 4" in line


def test_conv2d_check_keeps_the_size_note_off_other_errors(capsys):
    def wrong_bias_shape(x, weight, bias=None, stride=1, padding=0):
        out = F.conv2d(x, weight, None, stride, padding)
        return out if bias is None else out + bias[:, None]   # (C_out, 1): broadcasts over the wrong axes
    assert not checks.check_conv2d(wrong_bias_shape)
    assert "output size: use floor" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ receptive field
def rf_loop(layers):
    """The notebook's recursion: r_l = r_{l-1} + d_l (k_l - 1) j_{l-1}, j_l = j_{l-1} s_l."""
    r, j = 1, 1
    for k, s, d in layers:
        r, j = r + d * (k - 1) * j, j * s
    return r, j


def rf_closed_form(layers):
    """Correct, written differently: r = 1 + sum_l d_l (k_l - 1) prod_{m<l} s_m, with NumPy."""
    if not layers:
        return 1, 1
    k, s, d = (np.array(col, dtype=np.int64) for col in zip(*layers))
    jumps = np.concatenate([[1], np.cumprod(s)[:-1]])
    return 1 + int((d * (k - 1) * jumps).sum()), int(np.prod(s))


def rf_effective_kernels(layers):
    """Correct, the other common form: effective kernel k_eff = d(k - 1) + 1, r += (k_eff - 1) j."""
    import math

    r = 1
    for i, (k, _, d) in enumerate(layers):
        r += (d * (k - 1) + 1 - 1) * math.prod(s for _, s, _ in layers[:i])
    return r, math.prod(s for _, s, _ in layers)


def test_receptive_field_reference_is_autograd_and_matches_known_values():
    from utils.checks.convolution import _RF_CASES, _receptive_field_by_autograd

    known = {"no layers: a pixel sees itself": (1, 1), "one 5x5 convolution": (5, 1),
             "the lab's CNN: conv 3, pool 2, conv 3, pool 2": (10, 4), "three stride-2 3x3 convolutions": (15, 8),
             "dilated stack, d = 1, 2, 4 (as in WaveNet)": (15, 1),
             "ResNet stem: 7x7 stride 2, 3x3 max pool stride 2": (11, 4), "stride and dilation together": (19, 4),
             "the MNIST-1D CNN of section 6": (17, 8)}
    assert {name: _receptive_field_by_autograd(layers) for name, layers in _RF_CASES} == known
    assert _receptive_field_by_autograd([(3, 1, 2)]) == (5, 1)   # a lone dilated kernel: span 5, holes included


@pytest.mark.parametrize("fn", [rf_loop, rf_closed_form, rf_effective_kernels])
def test_receptive_field_check_accepts_correct(fn, capsys):
    assert _verdict(checks.check_receptive_field, fn, capsys)


def _rf(step, r0=1):
    def fn(layers):
        r, j = r0, 1
        for k, s, d in layers:
            r, j = step(r, j, k, s, d)
        return r, j
    return fn


@pytest.mark.parametrize("wrong, first_failure, message", [
    (_rf(lambda r, j, k, s, d: (r + d * (k - 1), j * s)),
     "the lab's CNN: conv 3, pool 2, conv 3, pool 2: (r, jump): expected (10, 4), got (7, 4)",
     "multiply them by the jump of the layers before (the product of their strides)"),
    (_rf(lambda r, j, k, s, d: (r + (k - 1) * j, j * s)),
     "dilated stack, d = 1, 2, 4 (as in WaveNet): (r, jump): expected (15, 1), got (7, 1)",
     "the dilation is missing: a kernel of size k with dilation d spans d(k - 1) + 1 input steps"),
    (_rf(lambda r, j, k, s, d: (r + d * (k - 1) * j, j * s), r0=0),
     "no layers: a pixel sees itself: (r, jump): expected (1, 1), got (0, 1)",
     "start from r = 1 (with no layers a unit is one pixel), not 0"),
    (_rf(lambda r, j, k, s, d: (r + d * (k - 1) * j * s, j * s)),
     "the lab's CNN: conv 3, pool 2, conv 3, pool 2: (r, jump): expected (10, 4), got (13, 4)",
     "grow r with the jump before this layer's stride"),
    (_rf(lambda r, j, k, s, d: (r + (d * k - 1) * j, j * s)),
     "dilated stack, d = 1, 2, 4 (as in WaveNet): (r, jump): expected (15, 1), got (19, 1)",
     "a dilated kernel spans d(k - 1) + 1 input steps, not dk"),
    (_rf(lambda r, j, k, s, d: (r + d * (k - 1) * j, j + s - 1)),
     "the lab's CNN: conv 3, pool 2, conv 3, pool 2: (r, jump): expected (10, 4), got (10, 3)",
     "the jump is the product of the strides, not their sum"),
])
def test_receptive_field_check_rejects_mistakes(wrong, first_failure, message, capsys):
    assert not checks.check_receptive_field(wrong)
    out = capsys.readouterr().out
    first = next(line for line in out.splitlines() if line.startswith("  ✗"))
    assert first.startswith(f"  ✗ {first_failure}") and message in first, first


def test_receptive_field_check_wants_a_tuple_of_ints(capsys):
    assert not checks.check_receptive_field(lambda layers: rf_loop(layers)[0])
    assert "expected a tuple (r, jump), got int" in capsys.readouterr().out
    assert not checks.check_receptive_field(lambda layers: tuple(float(v) for v in rf_loop(layers)))
    assert "output[0]: expected an int, got float 1.0" in capsys.readouterr().out
    assert not checks.check_receptive_field(lambda layers: (_ for _ in ()).throw(NotImplementedError()))
    assert "not implemented yet" in capsys.readouterr().out
