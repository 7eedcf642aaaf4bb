"""Checks for the convolution lab (04): conv2d, output sizes, Gaussian kernels and receptive fields."""

from __future__ import annotations

from collections.abc import Callable

from ..device import one_cpu_thread
from .core import Case, _describe, compare_values, device_case, run_check, tiered

__all__ = ["check_conv2d", "check_conv_output_size", "check_gaussian_kernel", "check_receptive_field"]


_FLOAT32_HINT = ("looks like float32 arithmetic: allocate with x.new_zeros(...) so the output keeps x's dtype "
                 "(here float64)")


def _is_int(value) -> bool:
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _not_an_int(value, path="output") -> str:
    import numpy as np

    shown = value if isinstance(value, (float, np.floating)) else repr(value)   # 14.0, not np.float64(14.0)
    return (f"{path}: expected an int, got {type(value).__name__} {shown}: use integer division // "
            "(the size feeds nn.Linear later)")


#: Seconds for conv2d forward + backward on (2, 1, 64, 64) with a 3x3 kernel, one thread. Measured on the
#: course machine (2 busy cores): kernel-offset loop 0.007 s, F.unfold 0.002 s, per-output-pixel loop 1.2 s.
_SPEED_LIMIT_S = 0.1


def _conv2d_case(x, w, kwargs):
    """A conv2d case against F.conv2d that names float32 arithmetic on float64 inputs, and an output size
    rounded up (a broadcast error between two slices of different lengths), as the causes."""
    import math
    import re

    import torch
    import torch.nn.functional as F

    kh, kw, s, p = w.shape[-2], w.shape[-1], kwargs["stride"], kwargs["padding"]
    H, W = x.shape[-2:]
    floor = ((H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1)
    ceil = (math.ceil((H + 2 * p - kh) / s) + 1, math.ceil((W + 2 * p - kw) / s) + 1)
    size_note = (f"output size: use floor (//): ({H} + 2*{p} - {kh}) // {s} + 1 = {floor[0]} rows and "
                 f"({W} + 2*{p} - {kw}) // {s} + 1 = {floor[1]} columns; rounding up gives {ceil[0]} x {ceil[1]}, "
                 "and a window that would hang over the padded border does not count")

    def test(fn):
        expected = F.conv2d(x, w, **kwargs)
        try:
            got = fn(x.clone(), w.clone(), **{k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})
        except RuntimeError as exc:   # slices of the two rounded sizes that cannot be added
            numbers = set(re.findall(r"\d+", str(exc)))   # e.g. "size of tensor a (5) must match ... b (4)"
            if re.search(r"size|shape", str(exc)) and any(str(c) in numbers for c, f in zip(ceil, floor) if c != f):
                return f"{_describe(exc)}; {size_note}"
            raise
        if torch.is_tensor(got) and got.is_floating_point() and got.dtype != expected.dtype:
            return (f"output dtype: expected {expected.dtype}, got {got.dtype}: allocate with x.new_zeros(...) "
                    "so the output keeps x's dtype and device")
        msg = compare_values(expected, got, atol=1e-9, rtol=1e-7)
        if msg and torch.is_tensor(got) and ceil != floor and tuple(got.shape[-2:]) == ceil:
            msg += f"; {size_note}"
        elif msg and torch.is_tensor(got) and got.shape == expected.shape and got.is_floating_point():
            err = (got.detach().cpu().double() - expected).abs().max().item()
            if 0 < err <= 1e-5 * max(expected.abs().max().item(), 1.0):   # float32 rounding, not a wrong formula
                msg += f"; {_FLOAT32_HINT}"
        return msg

    return test


@tiered
def check_conv2d(conv2d: Callable) -> bool:
    """Check ``conv2d(x, weight, bias=None, stride=1, padding=0)`` against ``F.conv2d``."""
    import torch

    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    settings = [
        ("1 image, 1 channel, 3x3 kernel", (1, 1, 5, 5), (1, 1, 3, 3), False, 1, 0),
        ("2x3 kernel on a 6x6 image", (1, 1, 6, 6), (1, 1, 2, 3), False, 1, 0),
        ("batch 2, 3 -> 4 channels, with bias", (2, 3, 7, 6), (4, 3, 3, 3), True, 1, 0),
        ("padding 1", (2, 2, 5, 5), (3, 2, 3, 3), True, 1, 1),
        ("stride 2, padding 1, odd size", (1, 3, 9, 7), (2, 3, 3, 3), True, 2, 1),
        ("stride 3, 5x5 kernel, padding 2", (2, 1, 11, 10), (2, 1, 5, 5), False, 3, 2),
        ("1x1 convolution (channel mixing)", (2, 5, 4, 4), (3, 5, 1, 1), True, 1, 0),
    ]
    cases = []
    for name, xs, ws, with_bias, s, p in settings:
        x, w = rand(*xs), rand(*ws)
        b = rand(ws[0]) if with_bias else None
        kwargs = {"bias": b, "stride": s, "padding": p}
        cases.append(Case(name, test=_conv2d_case(x, w, kwargs)))

    def speed(fn):
        import time

        x, w = rand(2, 1, 64, 64), rand(1, 1, 3, 3)

        def timed(f):   # forward and backward, as in training: a per-pixel loop's backward is the slow part
            xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
            with one_cpu_thread():  # tiny ops on oversubscribed threads can be 100x slower on a busy machine
                start = time.perf_counter()
                f(xg, wg, None, 1, 1).sum().backward()
                return time.perf_counter() - start

        seconds = timed(fn)
        if seconds > _SPEED_LIMIT_S:  # other jobs may share the cores: best of two
            seconds = min(seconds, timed(fn))
        if seconds > _SPEED_LIMIT_S:
            return (f"correct maybe, but slow: forward + backward took {seconds:.2f} s on 2 images of 64x64 "
                    f"(limit {_SPEED_LIMIT_S} s; looping over the kernel offsets takes about 0.01 s). A loop over "
                    "output pixels writes thousands of slices, and autograd walks back through every one, so "
                    "section 3's training loop would take many minutes: loop over the kernel offsets (k×k steps), "
                    "not over output pixels")
        return None

    cases.append(Case(f"fast enough to train: forward + backward, 2 images of 64x64 (under {_SPEED_LIMIT_S} s)",
                      test=speed))
    cases.append(device_case(rand(2, 3, 7, 6), rand(4, 3, 3, 3), rand(4), stride=2, padding=1))
    return run_check(
        "conv2d(x, weight, bias, stride, padding)", conv2d, cases,
        hint="PyTorch's convolution is a cross-correlation (no kernel flip); each output pixel sums input times kernel over a window that moves by the stride over the zero-padded input",
        solution="which cases fail tells you what to fix: every value case but the 1x1 one -> the kernel is flipped "
             "(PyTorch does not flip); padded cases -> pad all four sides; bias cases -> add the bias "
             "per output channel; stride cases -> slice with step s and use the output-size formula",
    )


@tiered
def check_conv_output_size(conv_output_size: Callable) -> bool:
    """Check ``conv_output_size(n, k, s=1, p=0, d=1)`` against ``nn.Conv2d`` on a grid of settings."""
    import torch

    def reference(n, k, s=1, p=0, d=1):
        conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
        with torch.no_grad():
            return int(conv(torch.zeros(1, 1, n, n)).shape[-1])

    grid = [(28, 3), (28, 3, 1, 1), (28, 5, 2, 2), (7, 3, 2, 0), (32, 3, 2, 1), (10, 4, 3, 1),
            (9, 3, 1, 0, 2), (64, 7, 2, 3), (5, 5), (13, 3, 2, 0, 3)]

    def case(args):
        names = ["n", "k", "s", "p", "d"][: len(args)]
        kwargs = dict(zip(names[2:], args[2:]))

        def test(fn):
            got = fn(*args[:2], **kwargs)
            msg = compare_values(reference(*args[:2], **kwargs), got)
            if msg is None and not _is_int(got):   # right value, wrong type: nn.Linear(25 * L3, ...) rejects it
                msg = _not_an_int(got)
            return msg

        return Case(", ".join(f"{a}={v}" for a, v in zip(names, args)), test=test)

    return run_check(
        "conv_output_size(n, k, s, p, d)", conv_output_size, [case(args) for args in grid],
        hint='count how many window positions fit into the padded input when the window (dilated kernel) moves by the stride',
        solution="floor((n + 2p - d(k - 1) - 1) / s) + 1; use integer division //",
    )


@tiered
def check_gaussian_kernel(gaussian_kernel: Callable) -> bool:
    """Check ``gaussian_kernel(size, sigma)`` against SciPy's Gaussian window (outer product, sum 1)."""
    import numpy as np
    import torch
    from scipy.signal.windows import gaussian

    def reference(size, sigma):
        w = gaussian(size, sigma)
        k = np.outer(w, w)
        return torch.tensor(k / k.sum(), dtype=torch.float32)

    def shifted(size, sigma, shift):
        """The reference centred ``shift`` pixels off (size - 1) / 2, e.g. on pixel size // 2."""
        r = np.arange(size) - (size - 1) / 2 - shift
        w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
        return torch.tensor(w / w.sum(), dtype=torch.float32)

    def case(n, s):
        def test(fn):
            got = fn(n, s)
            if torch.is_tensor(got) and got.dtype != torch.float32:
                return (f"dtype: expected torch.float32, got {got.dtype}: a kernel for float32 images must be "
                        "float32 too; call .float() on the result or build it with dtype=torch.float32")
            msg = compare_values(reference(n, s), got, atol=1e-6, rtol=1e-5)
            if msg and torch.is_tensor(got) and tuple(got.shape) == (n, n):
                total = float(got.detach().double().sum())
                if abs(total - 1) > 1e-4:
                    msg += f"; your kernel sums to {total:.4g}, not 1: divide by its sum"
                elif n % 2 == 0 and any(compare_values(shifted(n, s, h), got, atol=1e-6, rtol=1e-5) is None
                                        for h in (0.5, -0.5)):
                    msg += ("; your kernel is centred on a pixel, half a pixel off: for even size the centre lies "
                            "between the two middle pixels, at (size - 1) / 2")
            return msg

        return Case(f"size {n}, sigma {s}", test=test)

    cases = [case(n, s) for n, s in ((5, 1.0), (3, 0.5), (7, 2.0), (9, 1.5), (1, 1.0), (4, 1.0))]
    return run_check(
        "gaussian_kernel(size, sigma)", gaussian_kernel, cases,
        hint='a 2-D Gaussian centred at ((size - 1) / 2, (size - 1) / 2), normalised so its entries sum to 1',
        solution="coordinates centred on 0: torch.arange(size) - (size - 1) / 2; weights "
             "exp(-(x^2 + y^2) / (2 sigma^2)); divide by the sum; return float32 (size, size)",
    )


def _receptive_field_by_autograd(layers) -> tuple[int, int]:
    """(r, jump) of a stack of 1-D layers, measured: the span of the input pixels on which the gradient of
    output unit 0 is non-zero (all-ones kernels, no padding), and how far that span moves for unit 1."""
    import torch

    stack = torch.nn.Sequential(*[torch.nn.Conv1d(1, 1, k, stride=s, dilation=d, bias=False) for k, s, d in layers])
    for conv in stack:
        torch.nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 512, dtype=torch.float64, requires_grad=True)
    out = stack.double()(x)[0, 0]
    spans = []
    for unit in (0, 1):
        grad, = torch.autograd.grad(out[unit], x, retain_graph=True)
        support = grad[0, 0].nonzero().flatten()
        spans.append((int(support.min()), int(support.max())))
    return spans[0][1] - spans[0][0] + 1, spans[1][0] - spans[0][0]   # 512 pixels: room for fields up to ~250


#: (name, layers as (k, s, d)); the expected (r, jump) comes from autograd, see _receptive_field_by_autograd
_RF_CASES = [
    ("no layers: a pixel sees itself", []),
    ("one 5x5 convolution", [(5, 1, 1)]),
    ("the lab's CNN: conv 3, pool 2, conv 3, pool 2", [(3, 1, 1), (2, 2, 1), (3, 1, 1), (2, 2, 1)]),
    ("three stride-2 3x3 convolutions", [(3, 2, 1), (3, 2, 1), (3, 2, 1)]),
    ("dilated stack, d = 1, 2, 4 (as in WaveNet)", [(3, 1, 1), (3, 1, 2), (3, 1, 4)]),
    ("ResNet stem: 7x7 stride 2, 3x3 max pool stride 2", [(7, 2, 1), (3, 2, 1)]),
    ("stride and dilation together", [(3, 2, 2), (3, 1, 3), (2, 2, 1)]),
    ("the MNIST-1D CNN of section 6", [(5, 2, 1), (3, 2, 1), (3, 2, 1)]),
]


def _rf_mistakes(layers) -> dict[str, tuple[int, int]]:
    """The (r, jump) of typical wrong versions, with what each one does wrong."""
    def run(step, r0=1):
        r, j = r0, 1
        for k, s, d in layers:
            r, j = step(r, j, k, s, d)
        return r, j

    return {
        "each layer's d(k - 1) steps are steps of its own input, j input pixels each: multiply them by the jump "
        "of the layers before (the product of their strides)": run(lambda r, j, k, s, d: (r + d * (k - 1), j * s)),
        "the dilation is missing: a kernel of size k with dilation d spans d(k - 1) + 1 input steps":
            run(lambda r, j, k, s, d: (r + (k - 1) * j, j * s)),
        "a dilated kernel spans d(k - 1) + 1 input steps, not dk": run(lambda r, j, k, s, d: (r + (d * k - 1) * j, j * s)),
        "start from r = 1 (with no layers a unit is one pixel), not 0": run(lambda r, j, k, s, d: (r + d * (k - 1) * j, j * s), 0),
        "grow r with the jump before this layer's stride (j_{l-1}), then update the jump":
            run(lambda r, j, k, s, d: (r + d * (k - 1) * j * s, j * s)),
        "the jump is the product of the strides, not their sum": run(lambda r, j, k, s, d: (r + d * (k - 1) * j, j + s - 1)),
    }


@tiered
def check_receptive_field(receptive_field: Callable) -> bool:
    """Check ``receptive_field(layers) -> (r, jump)`` against autograd on stacks of (k, s, d) layers."""
    def case(name, layers):
        def test(fn):
            expected = _receptive_field_by_autograd(layers)
            got = fn([tuple(layer) for layer in layers])
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                return f"output: expected a tuple (r, jump), got {type(got).__name__} {got!r}"
            msg = compare_values(expected, tuple(got))
            if msg:
                msg = f"(r, jump): expected {expected}, got {tuple(got)}"
                causes = [why for why, wrong in _rf_mistakes(layers).items()
                          if wrong == tuple(got) and wrong != expected]
                return msg + (f"; {causes[0]}" if causes else "")
            bad = next((i for i, v in enumerate(got) if not _is_int(v)), None)
            if bad is not None:
                return (f"output[{bad}]: expected an int, got {type(got[bad]).__name__} {got[bad]}: sizes in "
                        "pixels are whole numbers (use int arithmetic)")
            return None

        return Case(name, test=test)

    return run_check(
        "receptive_field(layers)", receptive_field, [case(*c) for c in _RF_CASES],
        hint="walk the layers in order, keeping r (the field in input pixels) and the jump j (input pixels "
             "between neighbouring units); a layer widens the field by d(k - 1) of its input steps",
        solution="r, j = 1, 1; for k, s, d in layers: r, j = r + d * (k - 1) * j, j * s; return r, j",
    )
