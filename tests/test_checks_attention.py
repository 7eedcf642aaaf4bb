"""The lab-12 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import check_failure_output as _failure_output
from conftest import check_verdict as _verdict

from utils.checks import attention as checks


def weights_ok(q, k, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)


def weights_manual(q, k, mask=None):
    """Correct, written differently: einsum, a large negative number, a hand-written stable softmax."""
    scores = torch.einsum("...td,...sd->...ts", q, k) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.full_like(scores, -1e30))
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def test_attention_weights_check(capsys):
    assert _verdict(checks.check_attention_weights, weights_ok, capsys)
    assert _verdict(checks.check_attention_weights, weights_manual, capsys)

    def no_scale(q, k, mask=None):
        return weights_ok(q * math.sqrt(q.shape[-1]), k, mask)

    def scale_by_d(q, k, mask=None):
        return weights_ok(q / math.sqrt(q.shape[-1]), k, mask)

    def softmax_over_queries(q, k, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-2)

    def inverted_mask(q, k, mask=None):
        return weights_ok(q, k, None if mask is None else ~mask | mask.all(-1, keepdim=True))

    def mask_after_softmax(q, k, mask=None):
        w = weights_ok(q, k)
        return w if mask is None else w * mask

    def unstable(q, k, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        e = torch.exp(scores) if mask is None else torch.exp(scores) * mask
        return e / e.sum(-1, keepdim=True)

    for wrong in (no_scale, scale_by_d, softmax_over_queries, inverted_mask, mask_after_softmax, unstable):
        assert not _verdict(checks.check_attention_weights, wrong, capsys), wrong.__name__


def sdpa_ok(q, k, v, mask=None):
    return weights_ok(q, k, mask) @ v


def test_sdpa_check(capsys):
    assert _verdict(checks.check_scaled_dot_product_attention, sdpa_ok, capsys)
    assert _verdict(checks.check_scaled_dot_product_attention,
                    lambda q, k, v, mask=None: torch.einsum("...ts,...sd->...td", weights_manual(q, k, mask), v),
                    capsys)
    assert not _verdict(checks.check_scaled_dot_product_attention,  # scales by v's size
                        lambda q, k, v, mask=None: weights_ok(q * math.sqrt(q.shape[-1] / v.shape[-1]), k, mask) @ v,
                        capsys)
    assert not _verdict(checks.check_scaled_dot_product_attention,  # ignores the mask
                        lambda q, k, v, mask=None: weights_ok(q, k) @ v, capsys)
    assert not _verdict(checks.check_scaled_dot_product_attention,  # PyTorch's mask convention inverted
                        lambda q, k, v, mask=None: F.scaled_dot_product_attention(
                            q, k, v, attn_mask=None if mask is None else ~mask | mask.all(-1, keepdim=True)),
                        capsys)


class MHAOk(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.h, self.dh = num_heads, d_model // num_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def split(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.dh).transpose(1, 2)

    def forward(self, q, k, v, mask=None):
        B, T, d = q.shape
        q, k, v = self.split(self.q_proj(q)), self.split(self.k_proj(k)), self.split(self.v_proj(v))
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None]
        out = sdpa_ok(q, k, v, mask)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, d))


class MHAPerHead(nn.Module):
    """Correct, written differently: a Python loop over heads, weight slices, torch.cat."""

    def __init__(self, d_model, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, q, k, v, mask=None):
        Q, K, V = self.q_proj(q), self.k_proj(k), self.v_proj(v)
        dh = Q.shape[-1] // self.num_heads
        heads = [weights_manual(Q[..., i * dh:(i + 1) * dh], K[..., i * dh:(i + 1) * dh], mask)
                 @ V[..., i * dh:(i + 1) * dh] for i in range(self.num_heads)]
        return self.out_proj(torch.cat(heads, dim=-1))


def test_multi_head_attention_check(capsys):
    assert _verdict(checks.check_multi_head_attention, MHAOk, capsys)
    assert _verdict(checks.check_multi_head_attention, MHAPerHead, capsys)

    class NoTranspose(MHAOk):
        def split(self, x):
            B, T, _ = x.shape
            return x.reshape(B, self.h, T, self.dh)

    class ScaleByDModel(MHAOk):
        def forward(self, q, k, v, mask=None):
            return super().forward(q * math.sqrt(self.h), k, v, mask)   # softmax(q k / sqrt(d_head)) -> sqrt(d)

    class NoOutProj(MHAOk):
        def forward(self, q, k, v, mask=None):
            out = super().forward(q, k, v, mask)
            return F.linear(out - self.out_proj.bias, torch.linalg.inv(self.out_proj.weight))

    class NoBias(MHAOk):
        def __init__(self, d_model, num_heads):
            super().__init__(d_model, num_heads)
            self.q_proj = nn.Linear(d_model, d_model, bias=False)

    class MaskIgnored(MHAOk):
        def forward(self, q, k, v, mask=None):
            return super().forward(q, k, v, None)

    for wrong in (NoTranspose, ScaleByDModel, NoOutProj, NoBias, MaskIgnored):
        assert not _verdict(checks.check_multi_head_attention, wrong, capsys), wrong.__name__


def pe_loop(seq_len, d_model):
    """Correct, written differently: Python loops in float64, converted at the end."""
    pe = torch.zeros(seq_len, d_model, dtype=torch.float64)
    for pos in range(seq_len):
        for j in range(0, d_model, 2):
            pe[pos, j] = math.sin(pos / 10000 ** (j / d_model))
            if j + 1 < d_model:
                pe[pos, j + 1] = math.cos(pos / 10000 ** (j / d_model))
    return pe.float()


def test_positional_encoding_check(capsys):
    assert _verdict(checks.check_positional_encoding, checks.reference_positional_encoding, capsys)
    assert _verdict(checks.check_positional_encoding, pe_loop, capsys)

    def concatenated(seq_len, d_model):
        pe = checks.reference_positional_encoding(seq_len, d_model)
        return torch.cat([pe[:, 0::2], pe[:, 1::2]], dim=1)

    def i_not_2i(seq_len, d_model):
        pos = torch.arange(seq_len)[:, None].double()
        angle = pos / 10000 ** (torch.arange(d_model // 2).double() / d_model)
        pe = torch.zeros(seq_len, d_model, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = angle.sin(), angle.cos()
        return pe

    def sin_cos_swapped(seq_len, d_model):
        pe = checks.reference_positional_encoding(seq_len, d_model)
        return pe[:, [j + 1 if j % 2 == 0 else j - 1 for j in range(d_model)]]

    def transposed(seq_len, d_model):
        return checks.reference_positional_encoding(seq_len, d_model).T

    def float64(seq_len, d_model):
        return checks.reference_positional_encoding(seq_len, d_model).double()

    for wrong in (concatenated, i_not_2i, sin_cos_swapped, transposed, float64):
        assert not _verdict(checks.check_positional_encoding, wrong, capsys), wrong.__name__


def test_inverted_mask_diagnosis(capsys):
    """The natural slip masked_fill(mask, -inf) empties whole rows (NaN there): still diagnosed as inverted."""
    def inverted(q, k, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        return scores.softmax(dim=-1)

    for check, fn in ((checks.check_attention_weights, inverted),
                      (checks.check_scaled_dot_product_attention, lambda q, k, v, mask=None: inverted(q, k, mask) @ v)):
        out = _failure_output(check, fn, capsys)
        failed = [line for line in out.splitlines() if line.startswith("  ✗")]
        assert len(failed) == 2 and all("mask is inverted" in line for line in failed), out
        assert "NaN or inf: use torch.softmax" not in out, out


def test_softmax_over_queries_diagnosis(capsys):
    def over_queries(q, k, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-2)

    out = _failure_output(checks.check_attention_weights, over_queries, capsys)
    assert "padding mask" in out and "softmax runs over the queries, dim=-2" in out, out
    assert "NaN or inf: use torch.softmax" not in out, out


def test_multi_head_attention_diagnoses(capsys):
    class NoTranspose(MHAOk):
        def split(self, x):
            B, T, _ = x.shape
            return x.reshape(B, self.h, T, self.dh)

    class MergeNoTranspose(MHAOk):
        def forward(self, q, k, v, mask=None):
            B, T, d = q.shape
            q, k, v = self.split(self.q_proj(q)), self.split(self.k_proj(k)), self.split(self.v_proj(v))
            if mask is not None and mask.dim() == 3:
                mask = mask[:, None]
            return self.out_proj(sdpa_ok(q, k, v, mask).reshape(B, T, d))

    class NoOutProj(MHAOk):
        def forward(self, q, k, v, mask=None):
            out = super().forward(q, k, v, mask)
            return F.linear(out - self.out_proj.bias, torch.linalg.inv(self.out_proj.weight))

    class ScaleByDModel(MHAOk):
        def forward(self, q, k, v, mask=None):
            B, T, d = q.shape
            q, k, v = self.split(self.q_proj(q)), self.split(self.k_proj(k)), self.split(self.v_proj(v))
            if mask is not None and mask.dim() == 3:
                mask = mask[:, None]
            out = sdpa_ok(q / math.sqrt(self.h), k, v, mask)              # scores / sqrt(d_model)
            return self.out_proj(out.transpose(1, 2).reshape(B, T, d))

    for wrong, why in ((NoTranspose, "split without a transpose"), (MergeNoTranspose, "merged without a transpose"),
                       (NoOutProj, "not passed through out_proj"), (ScaleByDModel, "scaled by sqrt(d_model)")):
        out = _failure_output(checks.check_multi_head_attention, wrong, capsys)
        assert why in out, (wrong.__name__, out)
    out = _failure_output(checks.check_multi_head_attention, NoTranspose, capsys)
    assert "out_proj" not in out.split("hint:")[0].split("cross-attention")[1].splitlines()[0], out


def test_attention_diagnoses_missing_scale_and_mask_after_softmax(capsys):
    def no_scale(q, k, mask=None):
        return weights_ok(q * math.sqrt(q.shape[-1]), k, mask)

    def mask_after_softmax(q, k, mask=None):
        w = weights_ok(q, k)
        return w if mask is None else w.masked_fill(~mask, 0.0)

    def sdpa_no_scale(q, k, v, mask=None):
        return no_scale(q, k, mask) @ v

    for check, wrong, why in ((checks.check_attention_weights, no_scale, "missing the 1/sqrt(d_k) scale"),
                              (checks.check_scaled_dot_product_attention, sdpa_no_scale, "missing the 1/sqrt(d_k) scale"),
                              (checks.check_attention_weights, mask_after_softmax, "masking after the softmax")):
        out = _failure_output(check, wrong, capsys)
        assert why in out, (wrong.__name__, out)
        assert "hint:" in out and "solution:" not in out
        check(wrong, show_solution=True)
        assert "solution:" in capsys.readouterr().out


def test_multi_head_attention_names_a_mask_not_broadcast_over_heads(capsys):
    class MaskNotExpanded(MHAOk):
        def forward(self, q, k, v, mask=None):
            B, T, d = q.shape
            q, k, v = self.split(self.q_proj(q)), self.split(self.k_proj(k)), self.split(self.v_proj(v))
            return self.out_proj(sdpa_ok(q, k, v, mask).transpose(1, 2).reshape(B, T, d))   # (B, T, S) as is

    out = _failure_output(checks.check_multi_head_attention, MaskNotExpanded, capsys)
    assert "✗ per-sample mask (B, T, S)" in out and "the mask must broadcast over heads: unsqueeze(1)" in out, out
    assert "✓ causal mask (T, T)" in out


def test_positional_encoding_names_i_instead_of_2i(capsys):
    def i_not_2i(seq_len, d_model):
        pos = torch.arange(seq_len)[:, None].float()
        angle = pos / 10000 ** (torch.arange(d_model // 2).float() / d_model)
        pe = torch.zeros(seq_len, d_model)
        pe[:, 0::2], pe[:, 1::2] = angle.sin(), angle.cos()
        return pe

    out = _failure_output(checks.check_positional_encoding, i_not_2i, capsys)
    assert "✗ known values at position 3" in out and "it must be 2i / d_model" in out, out
    assert "✗ seq_len = 50, d_model = 32 (the formula)" in out
    checks.check_positional_encoding(i_not_2i, show_solution=True)
    assert "solution: pos = arange(seq_len)" in capsys.readouterr().out
