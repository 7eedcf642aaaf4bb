"""The vision-transformer checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks import vit as checks


def _verdict(check, fn, capsys) -> bool:
    verdict = check(fn)
    out = capsys.readouterr().out
    assert bool(re.search(r"^✓ all \d+ cases passed$", out, re.M)) == verdict
    return verdict


def _failure_output(check, fn, capsys) -> str:
    assert not check(fn)
    return capsys.readouterr().out


def _divisible(images, p):
    H, W = images.shape[-2:]
    if H % p or W % p:
        raise ValueError(f"patch {p} must divide {H} and {W}")


def patchify_ok(images, patch):
    N, C, H, W = images.shape
    _divisible(images, patch)
    x = images.reshape(N, C, H // patch, patch, W // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(N, (H // patch) * (W // patch), C * patch * patch)


def patchify_loops(images, patch):
    """Correct, written differently: Tensor.unfold twice, then a transpose and a flatten."""
    _divisible(images, patch)
    x = images.unfold(2, patch, patch).unfold(3, patch, patch)      # (N, C, h, w, P, P)
    x = x.permute(0, 2, 3, 1, 4, 5)                                  # (N, h, w, C, P, P)
    return x.flatten(3).flatten(1, 2)


def patchify_column_major(images, patch):
    N, C, H, W = images.shape
    _divisible(images, patch)
    x = images.reshape(N, C, H // patch, patch, W // patch, patch).permute(0, 4, 2, 1, 3, 5)
    return x.reshape(N, -1, C * patch * patch)


def patchify_channel_last(images, patch):
    N, C, H, W = images.shape
    _divisible(images, patch)
    x = images.reshape(N, C, H // patch, patch, W // patch, patch).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(N, -1, C * patch * patch)


def patchify_plain_reshape(images, patch):
    N, C, H, W = images.shape
    _divisible(images, patch)
    return images.reshape(N, (H // patch) * (W // patch), C * patch * patch)


def patchify_no_error(images, patch):
    return F.unfold(images, patch, stride=patch).transpose(1, 2)     # silently drops the border


def patchify_wrong_error(images, patch):
    assert images.shape[-1] % patch == 0 and images.shape[-2] % patch == 0, "not divisible"
    return F.unfold(images, patch, stride=patch).transpose(1, 2)


def patchify_cpu_index(images, patch):
    _divisible(images, patch)
    N, C, H, W = images.shape
    out = torch.zeros(N, (H // patch) * (W // patch), C * patch * patch, dtype=images.dtype)   # on the CPU
    out[:] = F.unfold(images, patch, stride=patch).transpose(1, 2)
    return out


def patchify_stub(images, patch):
    raise NotImplementedError()


def test_patchify_accepts_correct_versions(capsys):
    assert _verdict(checks.check_patchify, patchify_ok, capsys)
    assert _verdict(checks.check_patchify, patchify_loops, capsys)
    assert _verdict(checks.check_patchify, checks.reference_patchify, capsys)


def test_patchify_rejects_mistakes_with_their_message(capsys):
    for wrong, why in ((patchify_column_major, "column-major order"), (patchify_channel_last, "channel-last"),
                       (patchify_plain_reshape, "plain reshape mixes pixels"),
                       (patchify_no_error, "raise a ValueError instead"),
                       (patchify_wrong_error, "raised AssertionError")):
        out = _failure_output(checks.check_patchify, wrong, capsys)
        assert why in out, (wrong.__name__, out)
        assert "hint:" in out and "solution:" not in out
    checks.check_patchify(patchify_column_major, show_solution=True)
    assert "solution: if H % patch" in capsys.readouterr().out


def test_patchify_device_probe(capsys):
    out = _failure_output(checks.check_patchify, patchify_cpu_index, capsys)
    assert "✗ inputs on another device" in out, out


def test_stubs_are_reported_without_raising(capsys):
    assert not checks.check_patchify(patchify_stub)
    assert "not implemented yet" in capsys.readouterr().out

    class Stub(nn.Module):
        def __init__(self, in_channels, patch, dim):
            super().__init__()
            raise NotImplementedError()

    assert not checks.check_patch_embedding(Stub)
    assert "not implemented yet" in capsys.readouterr().out


class EmbeddingOk(nn.Module):
    def __init__(self, in_channels, patch, dim):
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(in_channels * patch * patch, dim)

    def forward(self, x):
        return self.proj(patchify_ok(x, self.patch))


class EmbeddingFunctional(nn.Module):
    """Correct, written differently: F.unfold and F.linear on the weights of proj."""

    def __init__(self, in_channels, patch, dim):
        super().__init__()
        self.p = patch
        self.proj = nn.Linear(in_channels * patch * patch, dim)

    def forward(self, x):
        return F.linear(F.unfold(x, self.p, stride=self.p).mT, self.proj.weight, self.proj.bias)


class EmbeddingChannelLast(EmbeddingOk):
    def forward(self, x):
        return self.proj(patchify_channel_last(x, self.patch))


class EmbeddingColumnMajor(EmbeddingOk):
    def forward(self, x):
        return self.proj(patchify_column_major(x, self.patch))


class EmbeddingWeightTransposed(EmbeddingOk):
    def forward(self, x):
        return patchify_ok(x, self.patch) @ self.proj.weight + self.proj.bias


class EmbeddingNoBias(EmbeddingOk):
    def forward(self, x):
        return patchify_ok(x, self.patch) @ self.proj.weight.T


class EmbeddingMap(EmbeddingOk):
    def forward(self, x):
        N, _, H, W = x.shape
        return self.proj(patchify_ok(x, self.patch)).transpose(1, 2).reshape(N, -1, H // self.patch, W // self.patch)


class EmbeddingConvInside(nn.Module):
    """Not the contract: a Conv2d instead of proj = nn.Linear."""

    def __init__(self, in_channels, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class EmbeddingCpuBias(EmbeddingOk):
    def forward(self, x):
        offset = torch.zeros(self.proj.out_features, dtype=x.dtype)             # created on the CPU
        return self.proj(patchify_ok(x, self.patch)) + offset


def test_patch_embedding_accepts_correct_versions(capsys):
    assert _verdict(checks.check_patch_embedding, EmbeddingOk, capsys)
    assert _verdict(checks.check_patch_embedding, EmbeddingFunctional, capsys)


def test_patch_embedding_rejects_mistakes_with_their_message(capsys):
    for wrong, why in ((EmbeddingChannelLast, "channel-last"), (EmbeddingColumnMajor, "column-major order"),
                       (EmbeddingWeightTransposed, "the weight is used transposed"),
                       (EmbeddingNoBias, "the bias is missing"),
                       (EmbeddingMap, "a sequence of tokens, (N, L, dim)"),
                       (EmbeddingConvInside, "attribute proj: expected an nn.Linear")):
        out = _failure_output(checks.check_patch_embedding, wrong, capsys)
        assert why in out, (wrong.__name__, out)
    out = _failure_output(checks.check_patch_embedding, EmbeddingCpuBias, capsys)
    assert "✗ inputs on another device" in out, out
