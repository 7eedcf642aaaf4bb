"""Checks for the attention lab (12): attention_weights, scaled_dot_product_attention,
MultiHeadAttention and positional_encoding.

References: ``torch.nn.functional.scaled_dot_product_attention`` (its boolean ``attn_mask``
means True = may attend, as ours; with ``v`` the identity matrix its output *is* the weight
matrix), ``torch.nn.MultiheadAttention(batch_first=True)`` with the weights copied in (its
boolean mask means True = blocked), and for the positional encoding known values (row 0 is
[0, 1, 0, 1, ...]), the formula and its invariants. Rows that are fully masked are not tested.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered, to_device

__all__ = ["check_attention_weights", "check_multi_head_attention", "check_positional_encoding",
           "check_scaled_dot_product_attention", "reference_positional_encoding"]


def _causal(T, S):
    import torch

    return torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)


def _qkv(seed, lead, T, S, d, d_v=None, scale=1.0):
    import torch

    g = torch.Generator().manual_seed(seed)
    q = scale * torch.randn(*lead, T, d, generator=g, dtype=torch.float64)
    k = scale * torch.randn(*lead, S, d, generator=g, dtype=torch.float64)
    v = torch.randn(*lead, S, d_v or d, generator=g, dtype=torch.float64)
    return q, k, v


def _padding_mask(lengths, S):
    """(B, 1, S) mask broadcast over queries: key j of sample b is visible when j < lengths[b]."""
    import torch

    return (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None])[:, None, :]


def _sdpa_weights(q, k, mask=None):
    import torch
    import torch.nn.functional as F

    S = k.shape[-2]
    eye = torch.eye(S, dtype=q.dtype).expand(*k.shape[:-2], S, S)
    return F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)


def _attention_cases(with_v: bool):
    """Cases shared by the weights and the output checks: (name, args, kwargs)."""
    cases = []

    def add(name, seed, lead, T, S, d, d_v=None, mask=None, scale=1.0):
        q, k, v = _qkv(seed, lead, T, S, d, d_v, scale)
        args = (q, k, v) if with_v else (q, k)
        cases.append((name, args, {} if mask is None else {"mask": mask}))

    add("no mask, (B, T, d) = (2, 4, 8)", 0, (2,), 4, 4, 8)
    add("T != S (cross-attention), T = 3, S = 6", 1, (2,), 3, 6, 8)
    add("4-D inputs (B, heads, T, d) = (2, 3, 5, 4)", 2, (2, 3), 5, 5, 4)
    add("causal mask (T, S) = (5, 5)", 3, (2,), 5, 5, 8, mask=_causal(5, 5))
    add("padding mask (B, 1, S), lengths 6 and 3", 4, (2,), 4, 6, 8, mask=_padding_mask([6, 3], 6))
    add("large scores (softmax must stay finite)", 5, (1,), 4, 4, 16, scale=30.0)
    if with_v:
        add("d_v != d_k: scale by sqrt(d_k) = sqrt(q.shape[-1])", 6, (2,), 4, 5, 16, d_v=3)
    else:
        add("d = 64: the scale matters", 6, (2,), 4, 5, 64)
    return cases


def _manual_attention(q, k, v=None, mask=None, dim=-1, scaled=True, mask_after=False):
    """Attention with the softmax over ``dim`` (-1: the keys, right; -2: the queries, a typical slip), optionally
    with two other slips: no 1/sqrt(d_k) scale, or the mask applied to the weights after the softmax."""
    import torch

    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scaled else 1.0)
    if mask is not None and not mask_after:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=dim)
    if mask is not None and mask_after:
        w = w.masked_fill(~mask, 0.0)
    return w if v is None else w @ v


def _same(want, got):
    """True when ``got`` equals ``want`` at the check's tolerance, NaN where ``want`` has NaN."""
    import torch

    return bool(torch.isclose(got.detach().cpu().double(), want.double(), atol=1e-9, rtol=1e-7,
                              equal_nan=True).all())


def _diagnosed(args, kwargs, reference):
    """A case that compares with ``reference`` and, on a mismatch, names the usual causes: an inverted mask
    (tested before the NaN hint, since inverting a mask empties rows and an empty row is NaN), a softmax
    over the queries, and an unstable softmax."""
    import torch

    def test(fn):
        want = reference(*args, **kwargs)
        got = fn(*(a.clone() for a in args), **{k: v.clone() for k, v in kwargs.items()})
        msg = compare_values(want, got, atol=1e-9, rtol=1e-7)
        if msg is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return msg
        q, k = args[0], args[1]
        mask = kwargs.get("mask")
        if mask is not None:
            inverted = ~mask
            full = torch.broadcast_to(inverted, (*torch.broadcast_shapes(inverted.shape[:-1], q.shape[:-1]),
                                                 k.shape[-2]))
            empty = ~full.any(dim=-1, keepdim=True)                 # rows the inverted mask empties: not compared
            want_inv = reference(*args, mask=inverted | empty)
            if _same(want_inv, torch.where(empty, want_inv, got.detach().cpu().to(want_inv.dtype))):
                return msg + " (your mask is inverted: True means the query MAY attend to that key, so block " \
                             "the scores where the mask is False: masked_fill(~mask, -inf))"
        if _same(_manual_attention(*args, mask=mask, dim=-2), got):
            return msg + (" (the softmax runs over the queries, dim=-2: it must run over the keys, dim=-1, so "
                          "that each query's weights sum to 1)")
        if _same(_manual_attention(*args, mask=mask, scaled=False), got):
            return msg + (" (missing the 1/sqrt(d_k) scale: without it the scores grow with d_k and the softmax "
                          "saturates)")
        if mask is not None and _same(_manual_attention(*args, mask=mask, mask_after=True), got):
            return msg + (" (masking after the softmax: zeroing the blocked weights leaves rows that no longer sum "
                          "to 1; block the scores before the softmax)")
        if not torch.isfinite(got).all():
            return msg + (" (NaN or inf: use torch.softmax, which subtracts each row's maximum, and set blocked "
                          "scores to -inf before it, not after)")
        return msg
    return test


@tiered
def check_attention_weights(attention_weights: Callable) -> bool:
    """Check ``attention_weights(q, k, mask=None)`` -> (..., T, S) softmax weights."""
    cases = [Case(name, test=_diagnosed(args, kwargs, _sdpa_weights))
             for name, args, kwargs in _attention_cases(with_v=False)]
    cases.append(device_case(*_qkv(9, (2,), 5, 5, 4)[:2], mask=_causal(5, 5)))
    return run_check(
        "attention_weights(q, k, mask=None)", attention_weights, cases,
        hint='scores are scaled dot products of queries with keys; masked positions must get zero weight, so block them before the softmax, which runs over the keys',
        solution="scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]); where mask is False set the score "
             "to -inf (scores.masked_fill(~mask, float('-inf'))) BEFORE the softmax; softmax over the last "
             "dimension (the keys)",
    )


@tiered
def check_scaled_dot_product_attention(scaled_dot_product_attention: Callable) -> bool:
    """Check ``scaled_dot_product_attention(q, k, v, mask=None)`` against PyTorch's."""
    import torch.nn.functional as F

    def reference(q, k, v, mask=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    cases = [Case(name, test=_diagnosed(args, kwargs, reference))
             for name, args, kwargs in _attention_cases(with_v=True)]
    cases.append(device_case(*_qkv(9, (2,), 5, 5, 4), mask=_causal(5, 5)))
    return run_check(
        "scaled_dot_product_attention(q, k, v, mask=None)", scaled_dot_product_attention, cases,
        hint='the output is a weighted average of the values, with the attention weights of the previous exercise',
        solution="return attention_weights(q, k, mask) @ v: softmax(q k^T / sqrt(d_k)) with masked scores set to "
             "-inf before the softmax; d_k = q.shape[-1], not v's size",
    )


def _copy_into(student, ref, d):
    import torch

    W, b = ref.in_proj_weight, ref.in_proj_bias
    with torch.no_grad():
        for k, name in enumerate(("q_proj", "k_proj", "v_proj")):
            getattr(student, name).weight.copy_(W[k * d:(k + 1) * d])
            getattr(student, name).bias.copy_(b[k * d:(k + 1) * d])
        student.out_proj.weight.copy_(ref.out_proj.weight)
        student.out_proj.bias.copy_(ref.out_proj.bias)


def _mha_variant(ref, q, k, v, mask, h, *, split_transpose=True, merge_transpose=True, out_proj=True,
                 scale_d_model=False):
    """``ref``'s multi-head attention computed by hand, optionally with one typical slip, for the diagnoses."""
    import torch

    B, T, d = q.shape
    W, b = ref.in_proj_weight, ref.in_proj_bias

    def split(x, i):
        x = x @ W[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d]                       # (B, L, d)
        if split_transpose:
            return x.view(B, -1, h, d // h).transpose(1, 2)                         # (B, h, L, d_head)
        return x.reshape(B, h, -1, d // h)                                          # slip: no transpose

    qh, kh, vh = split(q, 0), split(k, 1), split(v, 2)
    scores = qh @ kh.transpose(-2, -1) / math.sqrt(d if scale_d_model else d // h)  # (B, h, T, S)
    if mask is not None:
        scores = scores.masked_fill(~(mask[:, None] if mask.dim() == 3 else mask), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ vh                                        # (B, h, T, d_head)
    out = out.transpose(1, 2).reshape(B, T, d) if merge_transpose else out.reshape(B, T, d)
    return out @ ref.out_proj.weight.T + ref.out_proj.bias if out_proj else out


_MHA_SLIPS = (
    ({"split_transpose": False}, "the heads are split without a transpose: .view(B, L, num_heads, d_head) then "
                                 ".transpose(1, 2), so that every head sees all positions of its own slice of features"),
    ({"merge_transpose": False}, "the heads are merged without a transpose: (B, heads, T, d_head) needs "
                                 ".transpose(1, 2) before .reshape(B, T, d_model)"),
    ({"out_proj": False}, "the merged heads are not passed through out_proj"),
    ({"scale_d_model": True}, "the scores are scaled by sqrt(d_model); each head's scale is sqrt(d_head) = "
                              "sqrt(d_model / num_heads)"),
)


@tiered
def check_multi_head_attention(MultiHeadAttention) -> bool:
    """Check the class ``MultiHeadAttention(d_model, num_heads)`` against ``nn.MultiheadAttention``."""
    import torch

    def structure_case(cls):
        d, h = 12, 3
        m = cls(d, h)
        if not isinstance(m, torch.nn.Module):
            return f"expected an nn.Module, got {type(m).__name__}"
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            layer = getattr(m, name, None)
            if not isinstance(layer, torch.nn.Linear):
                return f"attribute {name}: expected an nn.Linear, got {type(layer).__name__}"
            if (layer.in_features, layer.out_features) != (d, d) or layer.bias is None:
                return f"{name}: expected nn.Linear({d}, {d}) with bias, got {layer}"
        n = sum(p.numel() for p in m.parameters())
        if n != 4 * d * d + 4 * d:
            return f"expected {4 * d * d + 4 * d} parameters (four {d}x{d} projections with biases), got {n}"
        return None

    def case(d, h, B, T, S, mask=None, seed=0, self_attention=True):
        def test(cls):
            torch.manual_seed(seed)
            ref = torch.nn.MultiheadAttention(d, h, batch_first=True).double()
            with torch.no_grad():                                   # non-zero biases, so each one matters
                ref.in_proj_bias.normal_()
                ref.out_proj.bias.normal_()
            m = cls(d, h).double()
            _copy_into(m, ref, d)
            g = torch.Generator().manual_seed(seed)
            q = torch.randn(B, T, d, generator=g, dtype=torch.float64)
            k = q if self_attention else torch.randn(B, S, d, generator=g, dtype=torch.float64)
            v = q if self_attention else torch.randn(B, S, d, generator=g, dtype=torch.float64)
            blocked = None
            if mask is not None:
                blocked = ~mask if mask.dim() == 2 else (~mask).repeat_interleave(h, dim=0)
            with torch.no_grad():
                want, _ = ref(q, k, v, attn_mask=blocked, need_weights=False)
                try:
                    got = m(q, k, v) if mask is None else m(q, k, v, mask=mask)
                except RuntimeError as exc:
                    if mask is None or mask.dim() != 3:
                        raise
                    return (f"RuntimeError: {str(exc).splitlines()[0]}: the mask must broadcast over heads: "
                            "unsqueeze(1) turns the (B, T, S) mask into (B, 1, T, S) for the (B, heads, T, S) scores")
            msg = compare_values(want, got, atol=1e-9, rtol=1e-7)
            if msg is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
                return msg
            with torch.no_grad():
                for slip, why in _MHA_SLIPS:
                    if compare_values(_mha_variant(ref, q, k, v, mask, h, **slip), got, atol=1e-9,
                                      rtol=1e-7) is None:
                        return f"{msg} ({why})"
            return msg
        return test

    cases = [
        Case("attributes q_proj, k_proj, v_proj, out_proj: nn.Linear(d, d) with bias", test=structure_case),
        Case("self-attention, d_model = 8, 2 heads, (B, T) = (2, 5)", test=case(8, 2, 2, 5, 5)),
        Case("cross-attention, T = 3 queries, S = 6 keys", test=case(8, 2, 2, 3, 6, self_attention=False, seed=1)),
        Case("causal mask (T, T), 4 heads", test=case(16, 4, 2, 6, 6, mask=_causal(6, 6), seed=2)),
        Case("per-sample mask (B, T, S), B = 3, 2 heads", test=case(8, 2, 3, 4, 5, self_attention=False, seed=3,
                                                    mask=_padding_mask([5, 2, 4], 5).expand(3, 4, 5))),
        Case("one head (= single attention with projections)", test=case(6, 1, 3, 4, 4, seed=4)),
        Case("d_model = 12, 3 heads of size 4", test=case(12, 3, 1, 7, 7, seed=5)),
        device_case(run=lambda cls, device: cls(8, 2).to(device)(
            *to_device(_qkv(9, (2,), 5, 5, 8), device), mask=to_device(_causal(5, 5), device))),
    ]
    return run_check(
        "MultiHeadAttention(d_model, num_heads)", MultiHeadAttention, cases,
        hint='project once, split the model dimension into heads, attend in every head separately (with the head size in the scale), merge the heads back and project',
        solution="project q, k, v; split d_model into heads: .view(B, T, num_heads, d_head).transpose(1, 2) -> "
             "(B, heads, T, d_head); attend per head with the scale sqrt(d_head); a (B, T, S) mask needs "
             "mask[:, None] to broadcast over heads; merge back with .transpose(1, 2).reshape(B, T, d_model); "
             "then out_proj",
    )


def reference_positional_encoding(seq_len: int, d_model: int):
    """(seq_len, d_model) float32: sin on even, cos on odd features, frequency 1 / 10000^(2i / d_model)."""
    import torch

    pos = torch.arange(seq_len, dtype=torch.float64)[:, None]
    i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = pos / 10000.0 ** (i / d_model)
    pe = torch.zeros(seq_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.float()


def _pe_mistake(got, seq_len: int, d_model: int) -> str:
    """Name the exponent slip i / d_model (i the pair index) instead of 2i / d_model ("" if it does not explain ``got``)."""
    import torch

    pos = torch.arange(seq_len, dtype=torch.float64)[:, None]
    angle = pos / 10000.0 ** (torch.arange(d_model // 2 + d_model % 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(seq_len, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle[:, : d_model // 2])
    if isinstance(got, torch.Tensor) and got.shape == pe.shape and \
            torch.allclose(got.detach().cpu().double(), pe, atol=1e-5):
        return (" (the exponent is i / d_model with i the pair index 0, 1, 2, ...: it must be 2i / d_model, the even "
                "feature index over d_model, so the frequencies fall from 1 to about 1/10000)")
    return ""


@tiered
def check_positional_encoding(positional_encoding: Callable) -> bool:
    """Check ``positional_encoding(seq_len, d_model)`` by known values, the formula and invariants."""
    import torch

    def first_row_case(fn):
        pe = fn(5, 8)
        if not isinstance(pe, torch.Tensor) or tuple(pe.shape) != (5, 8):
            return f"expected a (seq_len, d_model) = (5, 8) tensor, got {getattr(pe, 'shape', type(pe).__name__)}"
        want = torch.tensor([0.0, 1.0] * 4)
        return compare_values(want, pe[0].float(), atol=1e-6, path="position 0 (sin 0 = 0, cos 0 = 1, interleaved)")

    def known_case(fn):
        pe = fn(4, 4).double()
        # position 3, feature 1: cos(3 / 10000^0) = cos 3; feature 2: sin(3 / 10000^(2/4)) = sin(0.03)
        want = torch.tensor([math.sin(3.0), math.cos(3.0), math.sin(0.03), math.cos(0.03)], dtype=torch.float64)
        msg = compare_values(want, pe[3], atol=1e-6, path="position 3 of d_model = 4")
        return msg + _pe_mistake(pe, 4, 4) if msg else None

    def norm_case(fn):
        pe = fn(30, 16).double()
        want = torch.full((30,), math.sqrt(8.0), dtype=torch.float64)
        return compare_values(want, pe.norm(dim=1), atol=1e-5,
                              path="row norms (each sin/cos pair has norm 1: sqrt(d_model / 2))")

    def relative_case(fn):
        """<PE(t), PE(t + k)> depends on k only: sum_i cos(k w_i)."""
        pe = fn(40, 16).double()
        dots = (pe[:-5] * pe[5:]).sum(1)
        return compare_values(dots[:1].expand_as(dots).clone(), dots, atol=1e-5,
                              path="<PE(t), PE(t + 5)> for every t (should not depend on t)")

    def dtype_case(fn):
        pe = fn(6, 4)
        if not isinstance(pe, torch.Tensor) or pe.dtype != torch.get_default_dtype():
            return (f"expected a {torch.get_default_dtype()} tensor (it is added to float32 embeddings), got "
                    f"{getattr(pe, 'dtype', type(pe).__name__)}; create it with torch functions or convert with .float()")
        return None

    def formula(seq_len, d_model):
        def test(fn):
            got = fn(seq_len, d_model)
            msg = compare_values(reference_positional_encoding(seq_len, d_model),
                                 got.float() if isinstance(got, torch.Tensor) else got, atol=1e-5, rtol=1e-5)
            return msg + _pe_mistake(got, seq_len, d_model) if msg else None
        return test

    cases = [
        Case("position 0 is [0, 1, 0, 1, ...]", test=first_row_case),
        Case("known values at position 3, d_model = 4", test=known_case),
        Case("seq_len = 50, d_model = 32 (the formula)", test=formula(50, 32)),
        Case("seq_len = 1, d_model = 2", test=formula(1, 2)),
        Case("every row has norm sqrt(d_model / 2)", test=norm_case),
        Case("dot products depend only on the offset", test=relative_case),
        Case("float32, like the embeddings it is added to", test=dtype_case),
    ]
    return run_check(
        "positional_encoding(seq_len, d_model)", positional_encoding, cases,
        hint='each pair of features (2i, 2i + 1) is a sine and a cosine of the position at one frequency, the frequencies falling geometrically with i',
        solution="pos = arange(seq_len)[:, None]; two_i = arange(0, d_model, 2) (the even feature indices 2i); "
             "angle = pos / 10000 ** (two_i / d_model); pe[:, 0::2] = sin(angle); pe[:, 1::2] = cos(angle) "
             "(interleaved, not concatenated)",
    )
