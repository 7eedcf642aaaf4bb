"""The likelihood-lab checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import check_failure_output as _failure_output
from conftest import check_verdict as _verdict

from utils.checks import likelihood as checks


# ------------------------------------------------------------------------------------ causal_mask
def _validate(k, t):
    if k % 2 == 0 or t not in ("A", "B"):
        raise ValueError(f"bad kernel_size {k} or mask_type {t}")


def mask_ok(kernel_size, mask_type):
    _validate(kernel_size, mask_type)
    c = kernel_size // 2
    m = torch.zeros(kernel_size, kernel_size)
    m[:c] = 1
    m[c, :c] = 1
    m[c, c] = float(mask_type == "B")
    return m


def mask_by_index(kernel_size, mask_type):
    """Correct, written differently: compare raster indices with the centre's."""
    _validate(kernel_size, mask_type)
    idx = torch.arange(kernel_size ** 2).view(kernel_size, kernel_size)
    centre = kernel_size ** 2 // 2
    return (idx < centre if mask_type == "A" else idx <= centre).to(torch.float32)


def mask_swapped(kernel_size, mask_type):
    return mask_ok(kernel_size, "B" if mask_type == "A" else "A")


def mask_transposed(kernel_size, mask_type):
    return mask_ok(kernel_size, mask_type).T.contiguous()


def mask_quadrant(kernel_size, mask_type):
    _validate(kernel_size, mask_type)
    c = kernel_size // 2
    m = torch.zeros(kernel_size, kernel_size)
    m[:c + 1, :c + 1] = 1
    m[c, c] = float(mask_type == "B")
    return m


def mask_full_row(kernel_size, mask_type):
    m = mask_ok(kernel_size, mask_type)
    c = kernel_size // 2
    m[c] = 1
    m[c, c] = float(mask_type == "B")
    return m


def mask_bool(kernel_size, mask_type):
    return mask_ok(kernel_size, mask_type).bool()


def mask_no_validation(kernel_size, mask_type):
    c = kernel_size // 2
    m = torch.zeros(kernel_size, kernel_size)
    m[:c] = 1
    m[c, :c] = 1
    m[c, c] = float(mask_type == "B")
    return m


def mask_float64(kernel_size, mask_type):
    return mask_ok(kernel_size, mask_type).double()


def mask_float64_swapped(kernel_size, mask_type):
    return mask_swapped(kernel_size, mask_type).double()


def mask_k1_special(kernel_size, mask_type):
    """Correct, written differently: the 1 x 1 kernel handled on its own, then a loop over the positions."""
    _validate(kernel_size, mask_type)
    if kernel_size == 1:
        return torch.full((1, 1), float(mask_type == "B"))
    m = torch.zeros(kernel_size, kernel_size)
    centre = kernel_size ** 2 // 2
    for i in range(centre + (mask_type == "B")):
        m[i // kernel_size, i % kernel_size] = 1.0
    return m


def test_causal_mask_accepts_correct_versions(capsys):
    assert _verdict(checks.check_causal_mask, mask_ok, capsys)
    assert _verdict(checks.check_causal_mask, mask_by_index, capsys)
    assert _verdict(checks.check_causal_mask, checks.reference_causal_mask, capsys)


def test_causal_mask_rejects_mistakes_with_their_message(capsys):
    for wrong, why in ((mask_swapped, "mask A and mask B are swapped"), (mask_transposed, "the mask is transposed"),
                       (mask_quadrant, "only the upper-left quadrant"), (mask_full_row, "the whole centre row is 1"),
                       (mask_bool, "expected a float tensor"), (mask_no_validation, "raise a ValueError instead")):
        out = _failure_output(checks.check_causal_mask, wrong, capsys)
        assert why in out, (wrong.__name__, out)
        assert "hint:" in out and "solution:" not in out
    checks.check_causal_mask(mask_swapped, show_solution=True)
    assert "solution: if k % 2 == 0" in capsys.readouterr().out


def test_causal_mask_kernel_size_1_and_dtype(capsys):
    assert _verdict(checks.check_causal_mask, mask_k1_special, capsys)
    out = _failure_output(checks.check_causal_mask, mask_float64, capsys)
    assert "got torch.float64" in out and "build it as float32: torch.zeros(k, k) or .float()" in out, out
    assert "transposed" not in out and "swapped" not in out and "values are wrong" not in out, out
    assert out.count("got torch.float64") == 7, out          # every size, k = 1 included, gets the dtype message
    out = _failure_output(checks.check_causal_mask, mask_float64_swapped, capsys)
    assert "got torch.float64" in out and "the values are wrong as well (mask A and mask B are swapped" in out, out
    for k, t in ((1, "A"), (1, "B")):                       # for k = 1 some "mistakes" equal the reference
        assert all(not torch.equal(wrong, checks.reference_causal_mask(k, t)) for wrong, _ in checks._mask_mistakes(k, t))


# ---------------------------------------------------------------------------------- MaskedConv2d
class ConvOk(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, **conv_kwargs)
        self.register_buffer("mask", mask_ok(kernel_size, mask_type))

    def forward(self, x):
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class ConvFunctional(nn.Conv2d):
    """Correct, written differently: F.conv2d with the layer's own settings, mask from raster indices."""

    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, **conv_kwargs)
        self.register_buffer("causal", mask_by_index(kernel_size, mask_type)[None, None])

    def forward(self, x):
        return F.conv2d(x, self.weight * self.causal, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvMaskedOnceInInit(ConvOk):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x):
        return self._conv_forward(x, self.weight, self.bias)


class ConvInPlace(ConvOk):
    def forward(self, x):
        with torch.no_grad():
            self.weight.mul_(self.mask)
        return self._conv_forward(x, self.weight, self.bias)


class ConvSwapped(ConvOk):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, "B" if mask_type == "A" else "A", **conv_kwargs)


class ConvTransposedMask(ConvOk):
    def forward(self, x):
        return self._conv_forward(x, self.weight * self.mask.T, self.bias)


class ConvQuadrantMask(ConvOk):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, mask_type, **conv_kwargs)
        self.mask = mask_quadrant(kernel_size, mask_type)


class ConvFullRowMask(ConvOk):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, mask_type, **conv_kwargs)
        self.mask = mask_full_row(kernel_size, mask_type)


class ConvPlainAttribute(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, **conv_kwargs)
        self.mask = mask_ok(kernel_size, mask_type)                      # not a buffer: stays on the CPU

    def forward(self, x):
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class ConvNotSubclass(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, **conv_kwargs)
        self.register_buffer("mask", mask_ok(kernel_size, mask_type))

    def forward(self, x):
        return F.conv2d(x, self.conv.weight * self.mask, self.conv.bias, padding=self.conv.padding)


class _Masked(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight):
        return weight * self.mask


class ConvParametrized(nn.Conv2d):
    """Correct, written differently: the mask as a torch.nn.utils.parametrize parametrization of the weight."""

    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, **conv_kwargs)
        torch.nn.utils.parametrize.register_parametrization(self, "weight", _Masked(mask_ok(kernel_size, mask_type)))


class ConvParametrizedSwapped(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, **conv_kwargs)
        torch.nn.utils.parametrize.register_parametrization(self, "weight", _Masked(mask_swapped(kernel_size, mask_type)))


class ConvDropsKwargs(ConvOk):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type, **conv_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, mask_type, padding=kernel_size // 2)


def test_masked_conv_accepts_correct_versions(capsys, recwarn):
    assert _verdict(checks.check_masked_conv2d, ConvOk, capsys)
    assert _verdict(checks.check_masked_conv2d, ConvFunctional, capsys)
    assert _verdict(checks.check_masked_conv2d, ConvParametrized, capsys)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)], [str(w.message) for w in recwarn]


def test_masked_conv_gradient_case_names_the_mistake(capsys):
    grad_line = "✗ the weight's gradient is 0 where the mask is 0: "
    for wrong in (ConvSwapped, ConvParametrizedSwapped):
        out = _failure_output(checks.check_masked_conv2d, wrong, capsys)
        assert grad_line + "mask type swapped" in out, (wrong.__name__, out)
        assert "applied to the weight's data" not in out and "the weight is not masked" not in out, out
    for wrong in (ConvMaskedOnceInInit, ConvInPlace):
        out = _failure_output(checks.check_masked_conv2d, wrong, capsys)
        assert grad_line + "the weight's gradient is not 0 where the mask is 0" in out, (wrong.__name__, out)
    for wrong, why in ((ConvTransposedMask, "the mask is transposed"), (ConvQuadrantMask, "only the upper-left quadrant"),
                       (ConvFullRowMask, "the whole centre row is 1")):
        out = _failure_output(checks.check_masked_conv2d, wrong, capsys)
        assert grad_line + "the gradient reaches the weight exactly where a wrong mask is 1: " + why in out, \
            (wrong.__name__, out)
        assert "applied to the weight's data" not in out, (wrong.__name__, out)


def test_masked_conv_rejects_mistakes_with_their_message(capsys):
    for wrong, why in ((ConvMaskedOnceInInit, "the weight is not masked"), (ConvInPlace, "changed self.weight in place"),
                       (ConvSwapped, "mask A and mask B are swapped"), (ConvTransposedMask, "the mask is transposed"),
                       (ConvNotSubclass, "expected an nn.Conv2d subclass")):
        out = _failure_output(checks.check_masked_conv2d, wrong, capsys)
        assert why in out, (wrong.__name__, out)
    out = _failure_output(checks.check_masked_conv2d, ConvDropsKwargs, capsys)
    assert "✗ conv_kwargs passed on" in out, out
    out = _failure_output(checks.check_masked_conv2d, ConvPlainAttribute, capsys)
    assert "✗ inputs on another device" in out and "register_buffer" in out, out


# ---------------------------------------------------------------------------------- bits_per_dim
def bpd_ok(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x) / math.log(2)


def bpd_logsigmoid(logits, x):
    """Correct, written differently: log-sigmoids, log2 via a division, per-image sums."""
    log_p = x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)
    return -(log_p.flatten(1).sum(1) / x[0].numel()).mean() / math.log(2)


def bpd_nats(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x)


def bpd_per_image(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean() / math.log(2)


def bpd_swapped(logits, x):
    return F.binary_cross_entropy_with_logits(x, torch.sigmoid(logits)) / math.log(2)


def bpd_sigmoid_twice(logits, x):
    return F.binary_cross_entropy_with_logits(torch.sigmoid(logits), x) / math.log(2)


def bpd_unstable(logits, x):
    p = torch.sigmoid(logits)
    return -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).mean() / math.log(2)


def bpd_bce_on_probabilities(logits, x):
    return F.binary_cross_entropy(torch.sigmoid(logits), x) / math.log(2)


def bpd_log_likelihood(logits, x):
    return -F.binary_cross_entropy_with_logits(logits, x) / math.log(2)


def bpd_times_ln2(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x) * math.log(2)


def bpd_clamped(logits, x):
    p = torch.sigmoid(logits).clamp(1e-7, 1 - 1e-7)
    return -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).mean() / math.log(2)


def bpd_plus_eps(logits, x):
    p = torch.sigmoid(logits)
    return -(x * torch.log(p + 1e-8) + (1 - x) * torch.log(1 - p + 1e-8)).mean() / math.log(2)


def bpd_item(logits, x):
    return bpd_ok(logits, x).item()


def bpd_cpu_constant(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x) / torch.log(torch.tensor([2.0], dtype=logits.dtype))


def test_bits_per_dim_accepts_correct_versions(capsys):
    assert _verdict(checks.check_bits_per_dim, bpd_ok, capsys)
    assert _verdict(checks.check_bits_per_dim, bpd_logsigmoid, capsys)


def test_bits_per_dim_rejects_mistakes_with_their_message(capsys):
    for wrong, why in ((bpd_nats, "the value is in nats"), (bpd_per_image, "this is bits per image"),
                       (bpd_swapped, "the arguments are swapped"), (bpd_sigmoid_twice, "went through a sigmoid"),
                       (bpd_unstable, "sigmoid then log"), (bpd_item, "returned a Python float"),
                       (bpd_bce_on_probabilities, "F.binary_cross_entropy on the probabilities"),
                       (bpd_log_likelihood, "the sign is flipped: this is the log-likelihood"),
                       (bpd_times_ln2, "multiplied by ln 2"),
                       (bpd_clamped, "the probabilities are clamped (eps = 1e-07)"),
                       (bpd_plus_eps, "the probabilities are clamped (eps = 1e-08)")):
        out = _failure_output(checks.check_bits_per_dim, wrong, capsys)
        assert why in out, (wrong.__name__, out)
    out = _failure_output(checks.check_bits_per_dim, bpd_cpu_constant, capsys)
    assert "✗ inputs on another device" in out, out


# -------------------------------------------------------------------------------- AffineCoupling
class CouplingOk(nn.Module):
    def __init__(self, dim, hidden, mask):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * dim))

    def scale_shift(self, xm):
        raw, shift = self.net(xm).chunk(2, dim=1)
        return torch.tanh(raw) * (1 - self.mask), shift * (1 - self.mask)

    def forward(self, x):
        s, t = self.scale_shift(x * self.mask)
        return x * torch.exp(s) + t, s.sum(1)

    def inverse(self, z):
        s, t = self.scale_shift(z * self.mask)
        return (z - t) * torch.exp(-s)


class CouplingIndexed(nn.Module):
    """Correct, written differently: gather the two parts by index, separate s and t networks, a learned
    scale factor on tanh, and a scatter back."""

    def __init__(self, dim, hidden, mask):
        super().__init__()
        self.register_buffer("keep", mask.bool().nonzero().flatten())
        self.register_buffer("change", (~mask.bool()).nonzero().flatten())
        n_in, n_out = len(self.keep), len(self.change)
        self.s_net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))
        self.t_net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))
        self.scale = nn.Parameter(torch.ones(n_out))

    def forward(self, x):
        a, b = x[:, self.keep], x[:, self.change]
        s = self.scale * torch.tanh(self.s_net(a))
        z = x.clone()
        z[:, self.change] = b * s.exp() + self.t_net(a)
        return z, s.sum(-1)

    def inverse(self, z):
        a, b = z[:, self.keep], z[:, self.change]
        s = self.scale * torch.tanh(self.s_net(a))
        x = z.clone()
        x[:, self.change] = (b - self.t_net(a)) * (-s).exp()
        return x


class CouplingSignFlipped(CouplingOk):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, -log_det


class CouplingUnmaskedLogDet(CouplingOk):
    def forward(self, x):
        raw, shift = self.net(x * self.mask).chunk(2, dim=1)
        s = torch.tanh(raw)
        return x * self.mask + (1 - self.mask) * (x * torch.exp(s) + shift), s.sum(1)   # log_det over every dim


class CouplingSeesAll(CouplingOk):
    def forward(self, x):
        s, t = self.scale_shift(x)                                       # conditioner reads the whole x
        return x * torch.exp(s) + t, s.sum(1)


class CouplingFlippedMask(CouplingOk):
    def __init__(self, dim, hidden, mask):
        super().__init__(dim, hidden, 1 - mask.float())


class CouplingWrongInverse(CouplingOk):
    def inverse(self, z):
        s, t = self.scale_shift(z * self.mask)
        return z * torch.exp(-s) - t


class CouplingInverseFromZ(CouplingOk):
    def inverse(self, z):
        s, t = self.scale_shift(z)                                       # conditioner reads z, not z * mask
        return (z - t) * torch.exp(-s)


class CouplingBatchLogDet(CouplingOk):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, log_det.sum()


class CouplingUnbounded(CouplingOk):
    def scale_shift(self, xm):
        raw, shift = self.net(xm).chunk(2, dim=1)
        return raw * (1 - self.mask), shift * (1 - self.mask)


class CouplingPlainMask(CouplingOk):
    def __init__(self, dim, hidden, mask):
        super().__init__(dim, hidden, mask)
        del self.mask
        self.mask = mask.float()                                          # not a buffer: stays on the CPU


def test_affine_coupling_accepts_correct_versions(capsys):
    assert _verdict(checks.check_affine_coupling, CouplingOk, capsys)
    assert _verdict(checks.check_affine_coupling, CouplingIndexed, capsys)


def test_affine_coupling_rejects_mistakes_with_their_message(capsys):
    for wrong, why in ((CouplingSignFlipped, "the sign is flipped"),
                       (CouplingUnmaskedLogDet, "transformed dimensions only"),
                       (CouplingSeesAll, "computed from the pass-through part x * mask only"),
                       (CouplingFlippedMask, "it is the other way round"),
                       (CouplingWrongInverse, "undo the steps in reverse order"),
                       (CouplingBatchLogDet, "log_det shape: expected"),
                       (CouplingUnbounded, "NaN values in z (float32): the log-scale is unbounded")):
        out = _failure_output(checks.check_affine_coupling, wrong, capsys)
        assert why in out, (wrong.__name__, out)
    out = _failure_output(checks.check_affine_coupling, CouplingWrongInverse, capsys)
    assert "undo the shift before the scale" in out and "exp(-s)" not in out, out    # reasoning, not the formula
    for wrong in (CouplingWrongInverse, CouplingInverseFromZ):                     # both causes, either mistake
        out = _failure_output(checks.check_affine_coupling, wrong, capsys)
        assert "(a) undo the shift before the scale; (b) recompute s, t from z * mask" in out, (wrong.__name__, out)
        assert "exp(-s)" not in out and "(z - t)" not in out, out
    checks.check_affine_coupling(CouplingWrongInverse, show_solution=True)
    assert "return (z - t) * torch.exp(-s)" in capsys.readouterr().out
    out = _failure_output(checks.check_affine_coupling, CouplingPlainMask, capsys)
    assert "✗ inputs on another device" in out and "register_buffer" in out, out


# -------------------------------------------------------------------------------- never crash
def test_stubs_and_bad_input_are_reported_without_raising(capsys):
    def stub(*args):
        raise NotImplementedError()

    class StubModule(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            raise NotImplementedError()

    for check, fn in ((checks.check_causal_mask, stub), (checks.check_bits_per_dim, stub),
                      (checks.check_masked_conv2d, StubModule), (checks.check_affine_coupling, StubModule)):
        assert not check(fn)
        assert "not implemented yet" in capsys.readouterr().out
    for check in (checks.check_causal_mask, checks.check_bits_per_dim, checks.check_masked_conv2d,
                  checks.check_affine_coupling):
        assert not check(None)
        assert not check(lambda *a, **k: "nonsense")
        assert not check(lambda *a, **k: torch.zeros(3))
        capsys.readouterr()
