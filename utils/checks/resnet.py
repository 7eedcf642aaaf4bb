"""Checks for the ResNet lab (05): BasicBlock, resnet18 and per-layer gradient norms."""

from __future__ import annotations

from collections.abc import Callable

from ..training import count_params
from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_basic_block", "check_resnet18", "check_conv_grad_norms"]


def _torchvision_block(in_channels, out_channels, stride):
    import torch.nn as nn
    from torchvision.models.resnet import BasicBlock as TVBlock

    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    return TVBlock(in_channels, out_channels, stride, downsample)


@tiered
def check_basic_block(BasicBlock: Callable) -> bool:
    """Check ``BasicBlock(in_channels, out_channels, stride=1)`` against torchvision's block."""
    import torch

    def layout_case(cin, cout, stride):
        def test(cls):
            torch.manual_seed(0)
            mine, ref = cls(cin, cout, stride), _torchvision_block(cin, cout, stride)
            for name in ("conv1", "bn1", "conv2", "bn2", "downsample"):
                if not hasattr(mine, name):
                    return f"missing attribute {name!r} (torchvision's names: conv1, bn1, conv2, bn2, downsample)"
            if (mine.downsample is None) != (ref.downsample is None):
                need = "needs" if ref.downsample is not None else "must not have"
                why = (" (stride 2 halves H and W, so the shortcut needs a 1x1 conv with that stride even when the "
                       "channels agree)" if ref.downsample is not None and cin == cout else "")
                return f"with in={cin}, out={cout}, stride={stride} the block {need} a downsample shortcut{why}"
            mk = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
            rk = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
            missing, unexpected = sorted(set(rk) - set(mk)), sorted(set(mk) - set(rk))
            if missing or unexpected:
                return (f"parameters differ from torchvision's block: missing {missing[:4]}, "
                        f"unexpected {unexpected[:4]}")
            wrong = [f"{k}: {mk[k]} vs {rk[k]}" for k in rk if mk[k] != rk[k]]
            if wrong:
                return f"wrong shapes (yours vs torchvision's): {wrong[:3]}"
            if getattr(mine.conv1, "stride", None) != (stride, stride) or getattr(mine.conv2, "stride", None) != (1, 1):
                return (f"conv1 has stride {getattr(mine.conv1, 'stride', None)} and conv2 "
                        f"{getattr(mine.conv2, 'stride', None)}: torchvision puts the block's stride on conv1 "
                        "(and on the 1x1 downsample), conv2 always has stride 1")
            return None
        return test

    def forward_case(cin, cout, stride, training):
        def test(cls):
            torch.manual_seed(1)
            ref = _torchvision_block(cin, cout, stride).double()
            for m in ref.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    torch.nn.init.uniform_(m.weight, 0.5, 1.5)
                    torch.nn.init.uniform_(m.bias, -0.5, 0.5)
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 1.5)
            mine = cls(cin, cout, stride).double()
            try:
                mine.load_state_dict(ref.state_dict())
            except RuntimeError:
                return "cannot load torchvision's weights into your block: fix the layout cases first"
            mine.train(training)
            ref.train(training)
            x = torch.randn(2, cin, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
            with torch.no_grad():
                expected, got = ref(x), mine(x)
            if torch.is_tensor(got) and got.shape == expected.shape and bool((got < 0).any()):
                return ("your block's output has negative values: the final ReLU must come after the add, "
                        "ReLU(bn2(conv2(...)) + shortcut(x))")
            return compare_values(expected, got, atol=1e-10, rtol=1e-8, path="block output")
        return test

    def zero_init_case(cls):
        torch.manual_seed(0)
        block = cls(16, 16, 1)
        if not torch.equal(block.bn2.weight.detach(), torch.zeros(16)):
            return "bn2.weight should start at zero (zero-init of the last BN gamma)"
        x = torch.relu(torch.randn(4, 16, 6, 6, generator=torch.Generator().manual_seed(3)))
        with torch.no_grad():
            y = block(x)
        return compare_values(x, y, atol=0, rtol=0, path="fresh block on ReLU(randn)")

    cases = [
        Case("attributes and parameters like torchvision, 16 -> 16, stride 1", test=layout_case(16, 16, 1)),
        Case("projection shortcut when shape changes, 16 -> 32, stride 2", test=layout_case(16, 32, 2)),
        Case("shortcut when only channels change, 8 -> 16, stride 1", test=layout_case(8, 16, 1)),
        Case("projection shortcut when only the stride changes, 16 -> 16, stride 2", test=layout_case(16, 16, 2)),
        Case("forward equals torchvision's with its weights (eval mode)", test=forward_case(16, 16, 1, False)),
        Case("forward equals torchvision's, 8 -> 16, stride 2 (train mode)", test=forward_case(8, 16, 2, True)),
        Case("zero-init: a fresh block returns its (non-negative) input exactly", test=zero_init_case),
        device_case(run=lambda cls, device: cls(8, 16, 2).to(device)(torch.randn(2, 8, 8, 8, device=device))),
    ]
    return run_check(
        "BasicBlock(in_channels, out_channels, stride)", BasicBlock, cases,
        hint='two 3x3 convolutions with batch norm, added to a shortcut that matches shapes only when they change, then ReLU; the block starts as the identity path',
        solution="conv1 (3x3, stride, bias=False) -> bn1 -> relu -> conv2 (3x3) -> bn2, plus the shortcut: "
             "identity, or downsample = Sequential(1x1 conv with the stride, BatchNorm2d) when the "
             "shape changes; add, then ReLU; nn.init.zeros_(self.bn2.weight)",
    )


@tiered
def check_resnet18(resnet18: Callable) -> bool:
    """Check ``resnet18(num_classes)``: parameter count and output shape equal torchvision's."""
    import torch
    from torchvision.models import resnet18 as tv_resnet18

    def count_case(num_classes):
        def test(fn):
            mine = fn(num_classes)
            expected = count_params(tv_resnet18(weights=None, num_classes=num_classes))
            got = count_params(mine)
            stem = next((m for m in mine.modules() if isinstance(m, torch.nn.Conv2d)), None)
            if got - expected == 64 and stem is not None and stem.bias is not None:
                return ("64 extra parameters: a bias on the 64-channel stem conv (BatchNorm follows, "
                        "so bias=False)")
            if got != expected:
                return f"{got:,} parameters, torchvision's resnet18 has {expected:,}"
            return None
        return test

    def shape_case(num_classes, size):
        def test(fn):
            model = fn(num_classes).eval()
            x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                out = model(x)
            if tuple(out.shape) != (2, num_classes):
                return f"output shape {tuple(out.shape)}, expected (2, {num_classes})"
            return None
        return test

    def feature_map_case(fn):
        """Shapes of the convolutions, in the order they run, for a 224 x 224 input (any pooling code)."""
        model = fn(10).eval()
        seen = []
        hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((tuple(inp[0].shape), tuple(out.shape))))
                 for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        try:
            with torch.no_grad():
                model(torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
        finally:
            for h in hooks:
                h.remove()
        if len(seen) < 2:
            return "expected the stem convolution and the blocks' convolutions (nn.Conv2d layers)"
        if seen[0][1] != (1, 64, 112, 112):
            return (f"the stem convolution gives {seen[0][1]} for a 224x224 input, expected (1, 64, 112, 112): "
                    "7x7 kernel, stride 2, padding 3")
        if seen[1][0] != (1, 64, 56, 56):
            return (f"the first block receives {seen[1][0]}, expected (1, 64, 56, 56): after the stem, a 3x3 "
                    "max-pool with stride 2 and padding 1")
        if seen[-1][1] != (1, 512, 7, 7):
            return (f"the last convolution gives {seen[-1][1]}, expected (1, 512, 7, 7): the stage strides are "
                    "1, 2, 2, 2")
        return None

    cases = [
        Case("parameter count, 10 classes", test=count_case(10)),
        Case("parameter count, 1000 classes", test=count_case(1000)),
        Case("output shape (2, 10) for 3x64x64 inputs", test=shape_case(10, 64)),
        Case("output shape (2, 7) for 3x32x32 inputs (adaptive pooling)", test=shape_case(7, 32)),
        Case("224x224 input: stem 64 x 112 x 112, after pooling 56 x 56, last block 512 x 7 x 7",
             test=feature_map_case),
        device_case(run=lambda fn, device: fn(10).to(device)(torch.randn(2, 3, 32, 32, device=device))),
    ]
    return run_check(
        "resnet18(num_classes)", resnet18, cases,
        hint='a stem that divides the resolution by 4, four stages of two blocks that double the channels and halve the resolution (except the first), global pooling and a linear layer',
        solution="stem: 7x7 conv (64, stride 2, padding 3, bias=False), BN, ReLU, 3x3 max-pool (stride 2, "
             "padding 1); four stages of two blocks with 64, 128, 256, 512 channels (stride 2 at the "
             "first block of stages 2-4); adaptive average pooling to 1x1; a linear layer",
    )


@tiered
def check_conv_grad_norms(conv_grad_norms: Callable) -> bool:
    """Check ``conv_grad_norms(model)``: the L2 norm of each Conv2d weight's gradient, in order."""
    import torch

    def reference(model):
        return [m.weight.grad.norm().item() for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    def case(builder):
        def test(fn):
            torch.manual_seed(0)
            model = builder()
            x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
            model(x).pow(2).mean().backward()
            expected = reference(model)
            got = fn(model)
            if not isinstance(got, (list, tuple)):
                return f"expected a list of floats, got {type(got).__name__}"
            if not all(isinstance(v, float) for v in got):
                return "expected Python floats (use .item()), got " + type(got[0]).__name__ if got else "an empty list"
            return compare_values(expected, list(got), atol=1e-7, rtol=1e-6, path="norms")
        return test

    nn = torch.nn
    cases = [
        Case("3 convolutions in a Sequential", test=case(lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)))),
        Case("convolutions mixed with linear and BN layers (only Conv2d counts)", test=case(lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(),
            nn.Linear(144, 3)))),
        Case("nested modules (conv inside a block)", test=case(lambda: nn.Sequential(
            nn.Conv2d(1, 3, 3), nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU()), nn.Conv2d(3, 1, 3)))),
    ]
    return run_check(
        "conv_grad_norms(model)", conv_grad_norms, cases,
        hint="visit every convolution of the model, nested ones included, in order, and report the norm of its weight's gradient",
        solution="iterate over model.modules() (it recurses into blocks), keep isinstance(m, nn.Conv2d), "
             "and return m.weight.grad.norm().item() for each, in order",
    )
