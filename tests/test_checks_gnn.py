"""The lab-13 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import check_verdict as _verdict

from utils.checks import gnn as checks


def _accepts_and_rejects(check, right, wrong, capsys):
    """Every correct version passes, every mistake fails."""
    for fn in right:
        assert _verdict(check, fn, capsys), fn.__name__
    for fn in wrong:
        assert not _verdict(check, fn, capsys), fn.__name__


# ---- normalized_adjacency ---------------------------------------------------------------

def adjacency_ok(edge_index, num_nodes):
    """The notebook's solution."""
    A = torch.zeros(num_nodes, num_nodes, device=edge_index.device)
    A[edge_index[1], edge_index[0]] = 1.0
    A_tilde = A + torch.eye(num_nodes, device=edge_index.device)
    d_inv_sqrt = A_tilde.sum(1).rsqrt()
    return d_inv_sqrt[:, None] * A_tilde * d_inv_sqrt[None, :]


def adjacency_sparse(edge_index, num_nodes):
    """Correct, written differently: add self-loop edges, per-edge weights, a sparse tensor made dense."""
    loops = torch.arange(num_nodes, device=edge_index.device).repeat(2, 1)
    ei = torch.cat([edge_index, loops], dim=1)
    deg = torch.bincount(ei[1], minlength=num_nodes).double()
    w = (deg[ei[0]] * deg[ei[1]]).pow(-0.5)
    return torch.sparse_coo_tensor(ei.flip(0), w, (num_nodes, num_nodes),
                                   check_invariants=True).to_dense().float()


def adjacency_degree_of_a(edge_index, num_nodes):
    A = torch.zeros(num_nodes, num_nodes)
    A[edge_index[1], edge_index[0]] = 1.0
    d = A.sum(1).clamp(min=1).rsqrt()
    return d[:, None] * (A + torch.eye(num_nodes)) * d[None, :]


def adjacency_no_self_loop(edge_index, num_nodes):
    A = torch.zeros(num_nodes, num_nodes)
    A[edge_index[1], edge_index[0]] = 1.0
    d = A.sum(1).clamp(min=1).rsqrt()
    return d[:, None] * A * d[None, :]


def adjacency_random_walk(edge_index, num_nodes):
    """D~^-1 (A + I): row-normalised, not symmetric."""
    A = torch.zeros(num_nodes, num_nodes)
    A[edge_index[1], edge_index[0]] = 1.0
    A_tilde = A + torch.eye(num_nodes)
    return A_tilde / A_tilde.sum(1, keepdim=True)


def adjacency_max_index(edge_index, num_nodes):
    """Ignores num_nodes: loses trailing isolated nodes."""
    return adjacency_ok(edge_index, int(edge_index.max()) + 1 if edge_index.numel() else 0)


def adjacency_float64(edge_index, num_nodes):
    return adjacency_ok(edge_index, num_nodes).double()


def test_normalized_adjacency_check(capsys):
    assert _verdict(checks.check_normalized_adjacency, adjacency_ok, capsys)
    assert _verdict(checks.check_normalized_adjacency, adjacency_sparse, capsys)
    assert _verdict(checks.check_normalized_adjacency, checks.reference_normalized_adjacency, capsys)
    for wrong in (adjacency_degree_of_a, adjacency_no_self_loop, adjacency_random_walk, adjacency_max_index,
                  adjacency_float64):
        assert not _verdict(checks.check_normalized_adjacency, wrong, capsys), wrong.__name__


def test_degree_of_a_mistake_is_far_from_gcnconv():
    """The curriculum's note: using the degrees of A alone is visibly off (0.14 on a small graph)."""
    ei = checks.undirected_edge_index([[0, 1], [1, 2]])
    gap = (adjacency_degree_of_a(ei, 3) - adjacency_ok(ei, 3)).abs().max().item()
    assert gap > 0.1


# ---- polynomial_filter ------------------------------------------------------------------

def filter_ok(L, x, coeffs):
    """The notebook's solution."""
    out = coeffs[0] * x
    power = x
    for c in coeffs[1:]:
        power = L @ power
        out = out + c * power
    return out


def filter_horner(L, x, coeffs):
    """Correct, written differently: Horner's scheme from the highest degree down."""
    out = torch.zeros_like(x)
    for c in reversed(list(coeffs)):
        out = L @ out + c * x
    return out


def filter_reversed(L, x, coeffs):
    return filter_ok(L, x, list(coeffs)[::-1])


def filter_off_by_one(L, x, coeffs):
    """coeffs[k] multiplies L^(k+1)."""
    return filter_ok(L, L @ x, coeffs)


def filter_elementwise_power(L, x, coeffs):
    """L ** k is an element-wise power, not the matrix power."""
    out = coeffs[0] * x
    for k, c in enumerate(coeffs[1:], start=1):
        out = out + c * (L ** k) @ x
    return out


def filter_float64(L, x, coeffs):
    return filter_ok(L.double(), x.double(), coeffs)


def test_polynomial_filter_check(capsys):
    assert _verdict(checks.check_polynomial_filter, filter_ok, capsys)
    assert _verdict(checks.check_polynomial_filter, filter_horner, capsys)
    for wrong in (filter_reversed, filter_off_by_one, filter_elementwise_power, filter_float64):
        assert not _verdict(checks.check_polynomial_filter, wrong, capsys), wrong.__name__


# ---- GCNLayer ---------------------------------------------------------------------------

class GCNLayerOk(nn.Module):
    """The notebook's solution."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x, edge_index):
        return adjacency_ok(edge_index, x.shape[0]) @ self.lin(x) + self.bias


class GCNLayerScatter(nn.Module):
    """Correct, written differently: message passing with per-edge weights and index_add_."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features, bias=False)
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-0.1, 0.1))

    def forward(self, x, edge_index):
        n = x.shape[0]
        loops = torch.arange(n, device=x.device).repeat(2, 1)
        src, dst = torch.cat([edge_index, loops], dim=1)
        deg = x.new_zeros(n).index_add_(0, dst, x.new_ones(len(dst)))
        norm = (deg[src] * deg[dst]).rsqrt()
        h = self.lin(x)
        return torch.zeros_like(h).index_add_(0, dst, norm[:, None] * h[src]) + self.bias


class GCNLayerBiasInside(GCNLayerOk):
    """Adds the bias before aggregating."""

    def forward(self, x, edge_index):
        return adjacency_ok(edge_index, x.shape[0]) @ (self.lin(x) + self.bias)


class GCNLayerLinBias(GCNLayerOk):
    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features)
        self.lin = nn.Linear(in_features, out_features)


class GCNLayerNoSelfLoop(GCNLayerOk):
    def forward(self, x, edge_index):
        return adjacency_no_self_loop(edge_index, x.shape[0]) @ self.lin(x) + self.bias


class GCNLayerRandomWalk(GCNLayerOk):
    def forward(self, x, edge_index):
        return adjacency_random_walk(edge_index, x.shape[0]) @ self.lin(x) + self.bias


class GCNLayerDetached(GCNLayerOk):
    def forward(self, x, edge_index):
        return (adjacency_ok(edge_index, x.shape[0]) @ self.lin(x) + self.bias).detach()


class GCNLayerPlainBias(GCNLayerOk):
    """bias as a plain tensor: no gradient, invisible to the optimiser."""

    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features)
        del self.bias
        self.bias = torch.zeros(out_features)


class GCNLayerWeightData(GCNLayerOk):
    """Uses lin.weight.data: the bias gets a gradient, the weight does not."""

    def forward(self, x, edge_index):
        return adjacency_ok(edge_index, x.shape[0]) @ (x @ self.lin.weight.data.T) + self.bias


def test_gcn_layer_check(capsys):
    _accepts_and_rejects(checks.check_gcn_layer, (GCNLayerOk, GCNLayerScatter),
                         (GCNLayerBiasInside, GCNLayerLinBias, GCNLayerNoSelfLoop, GCNLayerRandomWalk,
                          GCNLayerDetached, GCNLayerPlainBias, GCNLayerWeightData), capsys)


def test_gcn_layer_gradient_messages_name_the_parameter(capsys):
    checks.check_gcn_layer(GCNLayerPlainBias)
    out = capsys.readouterr().out
    assert "no gradient reached layer.bias: layer.bias is a plain Tensor" in out
    assert "lin.weight or bias" not in out
    checks.check_gcn_layer(GCNLayerWeightData)
    out = capsys.readouterr().out
    assert "no gradient reached layer.lin.weight: keep" in out and "layer.bias" not in out.split("hint:")[0]
    checks.check_gcn_layer(GCNLayerDetached)
    assert "the output does not require grad" in capsys.readouterr().out


def test_gcn_layer_matches_pyg():
    from torch_geometric.nn import GCNConv

    ei = checks.undirected_edge_index([[0, 1], [1, 2], [2, 3], [0, 3], [3, 4]])
    conv, layer = GCNConv(3, 2), GCNLayerOk(3, 2)
    with torch.no_grad():
        conv.bias.normal_()
        layer.lin.weight.copy_(conv.lin.weight)
        layer.bias.copy_(conv.bias)
    x = torch.randn(6, 3)
    torch.testing.assert_close(layer(x, ei), conv(x, ei), atol=1e-5, rtol=1e-5)


# ---- attention_message_passing ----------------------------------------------------------

def attention_ok(q, k, v, edge_index):
    """The notebook's solution."""
    src, dst = edge_index
    n = q.shape[0]
    scores = (q[dst] * k[src]).sum(-1) / math.sqrt(q.shape[-1])          # (E,)
    top = torch.full((n,), -math.inf, dtype=scores.dtype, device=q.device).scatter_reduce(0, dst, scores, "amax")
    w = (scores - top[dst]).exp()
    denom = torch.zeros(n, dtype=scores.dtype, device=q.device).index_add_(0, dst, w)
    alpha = w / denom[dst]
    return torch.zeros(n, v.shape[-1], dtype=v.dtype, device=q.device).index_add_(0, dst, alpha[:, None] * v[src])


def attention_pyg(q, k, v, edge_index):
    """Correct, written differently: torch_geometric.utils.softmax and a loop-free dense gather."""
    from torch_geometric.utils import softmax

    src, dst = edge_index
    alpha = softmax((q[dst] * k[src]).sum(-1) / q.shape[-1] ** 0.5, dst, num_nodes=q.shape[0])
    out = torch.zeros(q.shape[0], v.shape[-1], dtype=v.dtype, device=q.device)
    return out.index_add(0, dst, alpha.unsqueeze(-1) * v[src])


def attention_global_softmax(q, k, v, edge_index):
    src, dst = edge_index
    alpha = torch.softmax((q[dst] * k[src]).sum(-1) / math.sqrt(q.shape[-1]), dim=0)
    return torch.zeros(q.shape[0], v.shape[-1], dtype=v.dtype, device=q.device).index_add_(0, dst, alpha[:, None] * v[src])


def _attention_no_max(q, k, v, edge_index, group):
    """Softmax without max subtraction, normalised over the edges sharing edge_index[group]."""
    src, dst = edge_index
    w = ((q[dst] * k[src]).sum(-1) / math.sqrt(q.shape[-1])).exp()
    alpha = w / torch.zeros(q.shape[0], dtype=w.dtype, device=q.device).index_add_(0, edge_index[group], w)[edge_index[group]]
    return torch.zeros(q.shape[0], v.shape[-1], dtype=v.dtype, device=q.device).index_add_(0, dst, alpha[:, None] * v[src])


def attention_grouped_by_source(q, k, v, edge_index):
    """Normalises over the edges leaving each node instead of those arriving."""
    return _attention_no_max(q, k, v, edge_index, group=0)


def attention_no_scaling(q, k, v, edge_index):
    return attention_ok(q * math.sqrt(q.shape[-1]), k, v, edge_index)


def attention_unstable(q, k, v, edge_index):
    """No max subtraction: overflows to NaN for large scores."""
    return _attention_no_max(q, k, v, edge_index, group=1)


def attention_amax_from_zero(q, k, v, edge_index):
    """scatter_reduce 'amax' into zeros with the default include_self=True: the group max is clamped at >= 0,
    so when every score of a group is very negative all its exps underflow to 0 and 0 / 0 gives NaN."""
    src, dst = edge_index
    n = q.shape[0]
    scores = (q[dst] * k[src]).sum(-1) / math.sqrt(q.shape[-1])
    top = torch.zeros(n, dtype=scores.dtype, device=q.device).scatter_reduce(0, dst, scores, "amax")
    w = (scores - top[dst]).exp()
    alpha = w / torch.zeros(n, dtype=scores.dtype, device=q.device).index_add_(0, dst, w)[dst]
    return torch.zeros(n, v.shape[-1], dtype=v.dtype, device=q.device).index_add_(0, dst, alpha[:, None] * v[src])


def attention_float32_buffers(q, k, v, edge_index):
    """Correct softmax, but the output buffer is zeros(N, d_v) in the default dtype: index_add_ of float64 fails."""
    src, dst = edge_index
    alpha = attention_ok(q, k, torch.eye(q.shape[0], dtype=v.dtype, device=q.device), edge_index)[dst, src]   # alpha per edge
    return torch.zeros(q.shape[0], v.shape[-1], device=q.device).index_add_(0, dst, alpha[:, None] * v[src])


def test_attention_message_passing_check(capsys):
    assert _verdict(checks.check_attention_message_passing, attention_ok, capsys)
    assert _verdict(checks.check_attention_message_passing, attention_pyg, capsys)
    for wrong in (attention_global_softmax, attention_grouped_by_source, attention_no_scaling, attention_unstable,
                  attention_amax_from_zero, attention_float32_buffers):
        assert not _verdict(checks.check_attention_message_passing, wrong, capsys), wrong.__name__


def _failed_lines(check, fn, capsys):
    check(fn)
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ✗")]


def test_attention_messages_point_the_right_way(capsys):
    """NaN from an unstable softmax is named as such; a missing 1/sqrt(d) is not blamed on stability."""
    check = checks.check_attention_message_passing
    lines = _failed_lines(check, attention_amax_from_zero, capsys)
    assert len(lines) == 1 and "large negative scores" in lines[0] and "NaN or inf" in lines[0], lines
    assert "-inf" in lines[0]
    lines = _failed_lines(check, attention_unstable, capsys)
    assert any("large positive scores" in line and "NaN or inf" in line for line in lines), lines
    lines = _failed_lines(check, attention_no_scaling, capsys)
    assert lines and all("without the 1/sqrt(d) scale" in line for line in lines), lines
    assert not any("NaN" in line or "subtract" in line for line in lines), lines


def test_attention_on_complete_graph_is_dense_attention():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    idx = torch.arange(5)
    complete = torch.stack([idx.repeat_interleave(5), idx.repeat(5)])
    dense = F.scaled_dot_product_attention(q[None], k[None], v[None])[0]
    torch.testing.assert_close(attention_ok(q, k, v, complete), dense, atol=1e-12, rtol=0)


def test_checks_never_raise(capsys):
    def broken(*args):
        raise RuntimeError("boom")

    for check in (checks.check_normalized_adjacency, checks.check_polynomial_filter, checks.check_gcn_layer,
                  checks.check_attention_message_passing):
        assert not _verdict(check, broken, capsys)
    assert not _verdict(checks.check_gcn_layer, lambda *a: (_ for _ in ()).throw(NotImplementedError()), capsys)


def test_normalized_adjacency_float64_message(capsys):
    assert not checks.check_normalized_adjacency(adjacency_float64)
    out = capsys.readouterr().out
    assert "expected torch.float32, got torch.float64" in out and ".float()" in out, out
    assert "x.new_zeros" not in out, out


def filter_matrix_power(L, x, coeffs):
    """Right values, but forms L^k, which the exercise forbids."""
    return sum(c * torch.linalg.matrix_power(L, k) @ x for k, c in enumerate(coeffs))


def filter_accumulated_power(L, x, coeffs):
    """Right values, but builds L^k by repeated (N, N) @ (N, N) products."""
    out, P = coeffs[0] * x, torch.eye(L.shape[0], dtype=L.dtype, device=L.device)
    for c in coeffs[1:]:
        P = P @ L
        out = out + c * (P @ x)
    return out


def test_polynomial_filter_rejects_powers_of_l(capsys):
    for wrong in (filter_matrix_power, filter_accumulated_power):
        assert not _verdict(checks.check_polynomial_filter, wrong, capsys), wrong.__name__
    assert not checks.check_polynomial_filter(filter_matrix_power)
    out = capsys.readouterr().out
    assert "✗ no power of L is formed" in out and "forms a power of L" in out, out
    assert out.count("✗") == 2, out          # only that case (and the summary) fails: the values are right


# ---- sage_layer -------------------------------------------------------------------------

def sage_ok(x, edge_index, weight, bias):
    """The notebook's solution."""
    src, dst = edge_index
    n = x.shape[0]
    total = x.new_zeros(n, x.shape[1]).index_add_(0, dst, x[src])
    count = x.new_zeros(n).index_add_(0, dst, x.new_ones(len(dst)))
    mean = total / count.clamp(min=1)[:, None]
    return torch.cat([x, mean], dim=1) @ weight.T + bias


def sage_two_linears(x, edge_index, weight, bias):
    """Correct, written differently: lin_self(x) + lin_neigh(mean), the mean from a dense row-normalised A."""
    f = x.shape[1]
    A = torch.zeros(x.shape[0], x.shape[0], dtype=x.dtype, device=x.device)
    A[edge_index[1], edge_index[0]] = 1.0
    mean = (A / A.sum(1, keepdim=True).clamp(min=1)) @ x
    return F.linear(x, weight[:, :f]) + F.linear(mean, weight[:, f:], bias)


def sage_sum(x, edge_index, weight, bias):
    src, dst = edge_index
    total = torch.zeros_like(x).index_add_(0, dst, x[src])
    return torch.cat([x, total], dim=1) @ weight.T + bias


def sage_mean_with_self(x, edge_index, weight, bias):
    src, dst = edge_index
    total = x.clone().index_add_(0, dst, x[src])
    count = torch.ones(x.shape[0]).index_add_(0, dst, torch.ones(len(dst)))
    return torch.cat([x, total / count[:, None]], dim=1) @ weight.T + bias


def sage_no_self(x, edge_index, weight, bias):
    src, dst = edge_index
    total = torch.zeros_like(x).index_add_(0, dst, x[src])
    count = torch.zeros(x.shape[0]).index_add_(0, dst, torch.ones(len(dst)))
    return (total / count.clamp(min=1)[:, None]) @ weight[:, x.shape[1]:].T + bias


def sage_degree_plus_one(x, edge_index, weight, bias):
    src, dst = edge_index
    total = torch.zeros_like(x).index_add_(0, dst, x[src])
    count = torch.zeros(x.shape[0]).index_add_(0, dst, torch.ones(len(dst)))
    return torch.cat([x, total / (count + 1)[:, None]], dim=1) @ weight.T + bias


def sage_zero_division(x, edge_index, weight, bias):
    """No clamp: isolated nodes get 0 / 0 = NaN."""
    src, dst = edge_index
    total = torch.zeros_like(x).index_add_(0, dst, x[src])
    count = torch.zeros(x.shape[0]).index_add_(0, dst, torch.ones(len(dst)))
    return torch.cat([x, total / count[:, None]], dim=1) @ weight.T + bias


def sage_by_source(x, edge_index, weight, bias):
    """Aggregates at the source: the direction of the messages reversed."""
    return sage_ok(x, edge_index.flip(0), weight, bias)


def sage_cpu_buffers(x, edge_index, weight, bias):
    """Right values on the CPU, but the sum and the count are created on the CPU whatever x's device."""
    src, dst = edge_index
    total = torch.zeros(x.shape[0], x.shape[1]).index_add_(0, dst, x[src])
    count = torch.zeros(x.shape[0]).index_add_(0, dst, torch.ones(len(dst)))
    return torch.cat([x, total / count.clamp(min=1)[:, None]], dim=1) @ weight.T + bias


def test_sage_layer_check(capsys):
    _accepts_and_rejects(checks.check_sage_layer, (sage_ok, sage_two_linears),
                         (sage_sum, sage_mean_with_self, sage_no_self, sage_degree_plus_one, sage_zero_division,
                          sage_by_source, sage_cpu_buffers), capsys)


def test_sage_layer_messages_name_the_mistake(capsys):
    expected = {sage_sum: "summed, not averaged", sage_mean_with_self: "the node itself is inside the mean",
                sage_no_self: "the self term is missing", sage_degree_plus_one: "divided by degree + 1",
                sage_zero_division: "divides 0 by 0", sage_by_source: "aggregate at edge_index[1]"}
    for wrong, phrase in expected.items():
        checks.check_sage_layer(wrong)
        out = capsys.readouterr().out
        assert phrase in out, (wrong.__name__, out)
        assert "index_add_(0, dst, x[src])" not in out                   # tier 1: no solution line
    checks.check_sage_layer(sage_sum, show_solution=True)
    assert "count.clamp(min=1)" in capsys.readouterr().out               # tier 2: the solution line


def test_sage_layer_matches_sageconv():
    from torch_geometric.nn import SAGEConv

    ei = checks.undirected_edge_index([[0, 1], [1, 2], [2, 3], [0, 3], [3, 4]])   # node 5 isolated
    conv = SAGEConv(3, 2)
    weight = torch.cat([conv.lin_r.weight, conv.lin_l.weight], dim=1).detach()
    x = torch.randn(6, 3)
    torch.testing.assert_close(sage_ok(x, ei, weight, conv.lin_l.bias.detach()), conv(x, ei).detach(),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(checks.reference_sage_layer(x, ei, weight, conv.lin_l.bias.detach()),
                               conv(x, ei).detach(), atol=1e-5, rtol=1e-5)


def test_sage_layer_check_never_raises(capsys):
    assert not _verdict(checks.check_sage_layer, lambda *a: 1 / 0, capsys)
    assert not _verdict(checks.check_sage_layer, lambda *a: (_ for _ in ()).throw(NotImplementedError()), capsys)
