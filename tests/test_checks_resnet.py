"""The lab-05 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import check_verdict as _verdict
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models.resnet import BasicBlock as TVBlock

from utils.checks import resnet as checks


def make_block(zero_init=True, shortcut_bn=True, relu_after_add=True, always_project=False, bias=False,
               channels_only_projection=False, stride_on_conv2=False, relu_before_add=False):
    class Block(nn.Module):
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            s1, s2 = (1, stride) if stride_on_conv2 else (stride, 1)
            self.conv1 = nn.Conv2d(cin, cout, 3, s1, 1, bias=bias)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, s2, 1, bias=bias)
            self.bn2 = nn.BatchNorm2d(cout)
            if zero_init:
                nn.init.zeros_(self.bn2.weight)
            need = always_project or cin != cout or (stride != 1 and not channels_only_projection)
            layers = [nn.Conv2d(cin, cout, 1, stride, bias=False)] + ([nn.BatchNorm2d(cout)] if shortcut_bn else [])
            self.downsample = nn.Sequential(*layers) if need else None

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            if relu_before_add:
                return F.relu(out) + idt
            out = out + idt
            return F.relu(out) if relu_after_add else out

    return Block


def tv_style_block(cin, cout, stride=1):
    """Correct, written differently: subclass torchvision's block."""
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    block = TVBlock(cin, cout, stride, down)
    nn.init.zeros_(block.bn2.weight)
    return block


def test_block_check_accepts_correct(capsys):
    assert _verdict(checks.check_basic_block, make_block(), capsys)
    assert _verdict(checks.check_basic_block, tv_style_block, capsys)


@pytest.mark.parametrize("kwargs", [{"zero_init": False}, {"shortcut_bn": False}, {"relu_after_add": False},
                                    {"always_project": True}, {"bias": True}])
def test_block_check_rejects_mistakes(kwargs, capsys):
    assert not _verdict(checks.check_basic_block, make_block(**kwargs), capsys)


def test_resnet18_check(capsys):
    assert _verdict(checks.check_resnet18, lambda n: tv_resnet18(weights=None, num_classes=n), capsys)

    def three_blocks_per_stage(n):  # a ResNet-26-ish: too many parameters
        m = tv_resnet18(weights=None, num_classes=n)
        m.layer4.add_module("2", TVBlock(512, 512))
        return m

    assert not _verdict(checks.check_resnet18, three_blocks_per_stage, capsys)

    def fixed_pool(n):  # breaks on 32x32 inputs (7x7 average pooling instead of adaptive)
        m = tv_resnet18(weights=None, num_classes=n)
        m.avgpool = nn.AvgPool2d(7)
        return m

    assert not _verdict(checks.check_resnet18, fixed_pool, capsys)


def test_conv_grad_norms_check(capsys):
    def alt(model):
        out = []
        for name, p in model.named_parameters():
            mod = model.get_submodule(name.rsplit(".", 1)[0])
            if isinstance(mod, nn.Conv2d) and name.endswith("weight"):
                out.append(torch.linalg.vector_norm(p.grad).item())
        return out

    assert _verdict(checks.check_conv_grad_norms, alt, capsys)
    assert not _verdict(checks.check_conv_grad_norms,  # all parameters, not only conv weights
                        lambda m: [p.grad.norm().item() for p in m.parameters()], capsys)
    assert not _verdict(checks.check_conv_grad_norms,  # only the top level (children), misses nesting
                        lambda m: [c.weight.grad.norm().item() for c in m.children() if isinstance(c, nn.Conv2d)],
                        capsys)
    assert not _verdict(checks.check_conv_grad_norms,  # squared norms
                        lambda m: [m_.weight.grad.pow(2).sum().item() for m_ in m.modules()
                                   if isinstance(m_, nn.Conv2d)], capsys)


def test_resnet18_check_verifies_the_stem_and_accepts_any_global_pooling(capsys):
    class MeanPool(nn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    def mean_pool(n):
        m = tv_resnet18(weights=None, num_classes=n)
        m.avgpool = MeanPool()
        return m

    def functional_pool(n):
        m = tv_resnet18(weights=None, num_classes=n)
        m.avgpool = nn.Identity()
        m.forward = lambda x, m=m: m.fc(F.adaptive_avg_pool2d(m.layer4(m.layer3(m.layer2(m.layer1(
            m.maxpool(m.relu(m.bn1(m.conv1(x)))))))), 1).flatten(1))
        return m

    assert _verdict(checks.check_resnet18, mean_pool, capsys)
    assert _verdict(checks.check_resnet18, functional_pool, capsys)

    def stem_unpadded(n):  # same parameter count and the same 7 x 7 final map: only the stem shape shows it
        m = tv_resnet18(weights=None, num_classes=n)
        m.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=0, bias=False)
        return m

    def pool_unpadded(n):
        m = tv_resnet18(weights=None, num_classes=n)
        m.maxpool = nn.MaxPool2d(3, 2, 0)
        return m

    for wrong, words in ((stem_unpadded, "padding 3"), (pool_unpadded, "padding 1")):
        checks.check_resnet18(wrong)
        out = capsys.readouterr().out
        assert words in out and "✗ 5 of 6 cases passed" in out, out


def test_resnet18_check_rejects_missing_maxpool(capsys):
    def no_maxpool(n):
        m = tv_resnet18(weights=None, num_classes=n)
        m.maxpool = nn.Identity()
        return m

    assert not _verdict(checks.check_resnet18, no_maxpool, capsys)


def test_block_check_names_the_stride_mistakes(capsys):
    """A projection only when channels change, or the stride on conv2: both caught, with the reason."""
    assert not _verdict(checks.check_basic_block, make_block(channels_only_projection=True), capsys)
    checks.check_basic_block(make_block(channels_only_projection=True))
    assert "even when the channels agree" in capsys.readouterr().out
    assert not _verdict(checks.check_basic_block, make_block(stride_on_conv2=True), capsys)
    checks.check_basic_block(make_block(stride_on_conv2=True))
    assert "stride on conv1" in capsys.readouterr().out


def test_block_check_names_relu_before_the_add(capsys):
    """ReLU(F(x)) + x passes the zero-init case but gives negative outputs: the note says where the ReLU goes."""
    assert not _verdict(checks.check_basic_block, make_block(relu_before_add=True), capsys)
    checks.check_basic_block(make_block(relu_before_add=True))
    assert "the final ReLU must come after the add" in capsys.readouterr().out


def test_resnet18_check_names_a_biased_stem(capsys):
    def biased_stem(n):
        m = tv_resnet18(weights=None, num_classes=n)
        m.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
        return m

    assert not _verdict(checks.check_resnet18, biased_stem, capsys)
    checks.check_resnet18(biased_stem)
    out = capsys.readouterr().out
    assert "64 extra parameters: a bias on the 64-channel stem conv (BatchNorm follows, so bias=False)" in out, out
