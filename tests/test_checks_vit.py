"""The vision-transformer checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import check_failure_output as _failure_output
from conftest import check_verdict as _verdict

from utils.checks import vit as checks


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

def patchify_bare_error(images, patch):
    if images.shape[-2] % patch or images.shape[-1] % patch:
        raise ValueError()
    return patchify_ok(images, patch)


def patchify_vague_error(images, patch):
    if images.shape[-2] % patch or images.shape[-1] % patch:
        raise ValueError("image size not divisible by the patch size")
    return patchify_ok(images, patch)


def patchify_swapped(images, patch):
    return patchify_ok(images, patch).transpose(1, 2)                # (N, C * P * P, L)


def test_patchify_value_error_must_name_the_sizes(capsys):
    for wrong, said in ((patchify_bare_error, "a bare ValueError()"),
                        (patchify_vague_error, "ValueError('image size not divisible by the patch size')")):
        out = _failure_output(checks.check_patchify, wrong, capsys)
        assert f"raised {said}" in out and "does not name the sizes" in out, out
        assert "patch = 4 and H = 10" in out and "patch = 8 and W = 12" in out, out
        assert out.count("✗ ") == 3, out                                # the two error cases and the summary


def test_patchify_swapped_axes_are_diagnosed(capsys):
    out = _failure_output(checks.check_patchify, patchify_swapped, capsys)
    assert "axes 1 and 2 swapped: tokens go on axis 1, use .transpose(1, 2)" in out, out


def _lab_stub(cell_start: str) -> str:
    """The student's version of an exercise cell of lab 17, as utils.labs writes it into labs/."""
    import json
    from pathlib import Path

    from utils import labs

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "17_vision_transformers.ipynb").read_text())
    source = next("".join(c["source"]) for c in nb["cells"] if "".join(c["source"]).startswith(cell_start))
    return labs.strip_solutions(source)


def _solution_lines(check, wrong, capsys) -> list[str]:
    check(wrong, show_solution=True)
    out = capsys.readouterr().out
    assert "  solution: " in out, out
    return out.split("  solution: ", 1)[1].rstrip("\n").splitlines()


def _fill(stub: str, bodies: list[list[str]]) -> str:
    for body in bodies:
        stub = stub.replace("    # YOUR CODE HERE\n", "", 1)
        indent = next(line[: len(line) - len(line.lstrip())] for line in stub.splitlines()
                      if line.strip() == "raise NotImplementedError()")
        stub = stub.replace(f"{indent}raise NotImplementedError()", "\n".join(body), 1)
    return stub


def test_patchify_solution_line_runs_as_written_in_the_stub(capsys):
    lines = _solution_lines(checks.check_patchify, patchify_column_major, capsys)
    assert "patchify(images, patch)" in lines[0]
    source = _fill(_lab_stub("# Exercise 2.1"), [lines[1:]])
    namespace = {"torch": torch, "nn": nn, "F": F}
    exec(compile(source, "<stub>", "exec"), namespace)
    assert _verdict(checks.check_patchify, namespace["patchify"], capsys)


def test_patch_embedding_solution_runs_as_written_in_the_stub(capsys):
    lines = _solution_lines(checks.check_patch_embedding, EmbeddingNoBias, capsys)
    split = next(i for i, line in enumerate(lines) if line.strip().startswith("in forward("))
    init, forward = lines[2:split], lines[split + 1:]
    assert lines[1].strip().startswith("in __init__(self, in_channels, patch, dim)")
    source = _fill(_lab_stub("# Exercise 3.1"), [init, forward])
    namespace = {"torch": torch, "nn": nn, "F": F, "patchify": patchify_ok}
    exec(compile(source, "<stub>", "exec"), namespace)
    assert _verdict(checks.check_patch_embedding, namespace["PatchEmbedding"], capsys)


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


class EmbeddingSwapped(EmbeddingOk):
    def forward(self, x):
        return self.proj(patchify_ok(x, self.patch)).transpose(1, 2)      # (N, dim, L)


class EmbeddingLayerNorm(EmbeddingOk):
    def __init__(self, in_channels, patch, dim):
        super().__init__(in_channels, patch, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(super().forward(x))


class EmbeddingGelu(EmbeddingOk):
    def forward(self, x):
        return F.gelu(super().forward(x))


class EmbeddingPosition(EmbeddingOk):
    def __init__(self, in_channels, patch, dim):
        super().__init__(in_channels, patch, dim)
        self.pos = nn.Parameter(torch.randn(1, 1, dim))              # broadcast over any number of patches

    def forward(self, x):
        return super().forward(x) + self.pos


class EmbeddingClassToken(EmbeddingOk):
    def __init__(self, in_channels, patch, dim):
        super().__init__(in_channels, patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x):
        z = super().forward(x)
        return torch.cat([self.cls.expand(len(z), -1, -1), z], dim=1)


def test_patch_embedding_rejects_additions_after_proj(capsys):
    contract = "forward must return exactly self.proj(patchify(x)); the ViT adds the rest"
    for wrong, what in ((EmbeddingLayerNorm, "normalizes the tokens"), (EmbeddingGelu, "activation (GELU)"),
                        (EmbeddingPosition, "the same for every image"), (EmbeddingClassToken, "class token")):
        out = _failure_output(checks.check_patch_embedding, wrong, capsys)
        assert contract in out and what in out, (wrong.__name__, out)


def test_patch_embedding_swapped_axes_are_diagnosed(capsys):
    out = _failure_output(checks.check_patch_embedding, EmbeddingSwapped, capsys)
    assert "axes 1 and 2 swapped: tokens go on axis 1, use .transpose(1, 2)" in out, out


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


class EmbeddingScaled(EmbeddingOk):
    def forward(self, x):
        return super().forward(x) * self.proj.out_features ** 0.5        # x sqrt(dim), as for word embeddings


class EmbeddingDropout(EmbeddingOk):
    def __init__(self, in_channels, patch, dim):
        super().__init__(in_channels, patch, dim)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return self.drop(super().forward(x))                          # active: the check never calls .eval()


def test_patch_embedding_diagnoses_a_fixed_factor(capsys):
    out = _failure_output(checks.check_patch_embedding, EmbeddingScaled, capsys)
    assert "multiplies the tokens by a fixed factor" in out and "= sqrt(dim)" in out, out


def test_patch_embedding_diagnoses_train_mode_dropout(capsys):
    out = _failure_output(checks.check_patch_embedding, EmbeddingDropout, capsys)
    assert "two calls on the same input gave different outputs" in out and "dropout" in out, out
