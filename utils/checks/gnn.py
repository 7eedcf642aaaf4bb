"""Checks for the graph neural network lab (13): normalized_adjacency, polynomial_filter,
GCNLayer, sage_layer and attention_message_passing.

References: a dense re-derivation of the GCN propagation matrix with hand-computed values
on small graphs, the eigendecomposition of the Laplacian for polynomial filters,
``torch_geometric.nn.GCNConv`` for the GCN layer and ``SAGEConv`` for the GraphSAGE layer
(dense references when PyG is missing),
and ``torch.nn.functional.scaled_dot_product_attention`` with a boolean mask for attention
restricted to the edges of a graph.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_attention_message_passing", "check_gcn_layer", "check_normalized_adjacency",
           "check_polynomial_filter", "check_sage_layer", "reference_normalized_adjacency", "reference_sage_layer",
           "undirected_edge_index"]


def undirected_edge_index(edges):
    """(2, 2E) long tensor listing every undirected edge (i, j) in both directions."""
    import torch

    e = torch.as_tensor(edges, dtype=torch.long).reshape(-1, 2).T       # (2, E)
    return torch.cat([e, e.flip(0)], dim=1)


def reference_normalized_adjacency(edge_index, num_nodes: int):
    """Dense D~^-1/2 (A + I) D~^-1/2 with D~ the degrees of A + I; float32 (N, N)."""
    import torch

    A = torch.zeros(num_nodes, num_nodes, device=edge_index.device)
    A[edge_index[1], edge_index[0]] = 1.0                                 # message j -> i in row i
    A_tilde = A + torch.eye(num_nodes, device=edge_index.device)
    d = A_tilde.sum(1).rsqrt()
    return d[:, None] * A_tilde * d[None, :]


def _random_graph(n, p, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    upper = torch.triu(torch.rand(n, n, generator=g) < p, diagonal=1)
    return undirected_edge_index(upper.nonzero())


@tiered
def check_normalized_adjacency(normalized_adjacency: Callable) -> bool:
    """Check ``normalized_adjacency(edge_index, num_nodes)`` -> dense (N, N) float32 tensor."""
    import torch

    path3 = torch.tensor([[1 / 2, 1 / math.sqrt(6), 0.0],                 # degrees of A + I: 2, 3, 2
                          [1 / math.sqrt(6), 1 / 3, 1 / math.sqrt(6)],
                          [0.0, 1 / math.sqrt(6), 1 / 2]])
    star = undirected_edge_index([[0, 1], [0, 2], [0, 3]])               # hub degree 4 with its self loop

    def ref(edge_index, n):
        return reference_normalized_adjacency(edge_index, n)

    def adj_case(name, args, expected):
        def test(fn):
            out = fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
            if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dtype != torch.float32:
                return (f"dtype: expected torch.float32, got {out.dtype}: build A with torch.zeros(N, N, "
                        "device=edge_index.device) (float32 by default) or convert the result with .float()")
            want = expected(*args) if callable(expected) else expected
            return compare_values(want, out, atol=1e-6, rtol=1e-5)
        return Case(name, test=test)

    def symmetric_case(fn):
        ei = _random_graph(12, 0.3, 1)
        out = fn(ei, 12)
        if not isinstance(out, torch.Tensor):
            return f"expected a torch.Tensor, got {type(out).__name__}"
        if (msg := compare_values(out.T.contiguous(), out, atol=1e-6, rtol=0, path="A_hat vs A_hat.T")):
            return msg + " (D^-1/2 on both sides keeps A_hat symmetric)"
        eig_max = torch.linalg.eigvalsh(out.double()).max().item()
        if abs(eig_max - 1) > 1e-5:
            return f"the largest eigenvalue of A_hat should be 1, got {eig_max:.4g}"
        return None

    cases = [
        adj_case("path 0-1-2: hand-computed values (degrees of A + I are 2, 3, 2)",
                 (undirected_edge_index([[0, 1], [1, 2]]), 3), path3),
        adj_case("star with hub 0: A_hat[0, 1] = 1/sqrt(4 * 2)", (star, 4), ref),
        adj_case("one edge: every entry 1/2", (undirected_edge_index([[0, 1]]), 2), torch.full((2, 2), 0.5)),
        adj_case("isolated node 2 (only its self loop: A_hat[2, 2] = 1)", (undirected_edge_index([[0, 1]]), 3), ref),
        adj_case("no edges at all: the identity", (torch.zeros(2, 0, dtype=torch.long), 3), torch.eye(3)),
        adj_case("random graph, 12 nodes", (_random_graph(12, 0.3, 0), 12), ref),
        adj_case("random graph, 40 nodes", (_random_graph(40, 0.1, 2), 40), ref),
        Case("symmetric, largest eigenvalue 1", test=symmetric_case),
        device_case(_random_graph(12, 0.3, 0), 12),
    ]
    return run_check(
        "normalized_adjacency(edge_index, num_nodes)", normalized_adjacency, cases,
        hint='add self loops, then scale entry (i, j) by 1 / sqrt(degree_i * degree_j), with the degrees counted after adding the loops',
        solution="A = torch.zeros(N, N, device=edge_index.device); A[edge_index[1], edge_index[0]] = 1; "
             "A_tilde = A + torch.eye(N, device=edge_index.device) (self loops); "
             "d = A_tilde.sum(1) (degrees of A + I, not of A); return d^-1/2[:, None] * A_tilde * d^-1/2[None, :] "
             "as float32 of shape (num_nodes, num_nodes). Create new tensors on edge_index's device: the notebook "
             "later passes edge_index on `device` (a GPU when there is one)",
    )


def _eig_filter(L, x, coeffs):
    import torch

    lam, U = torch.linalg.eigh(L.double())
    h = sum(c * lam ** k for k, c in enumerate(coeffs))                  # p(lambda), (N,)
    xd = x.double()
    return (U @ (h[:, None] * (U.T @ xd.reshape(len(xd), -1)))).reshape(xd.shape).to(x.dtype)


def _laplacian(edge_index, n):
    import torch

    A = torch.zeros(n, n, dtype=torch.float64)
    A[edge_index[0], edge_index[1]] = 1.0
    return torch.diag(A.sum(1)) - A


@tiered
def check_polynomial_filter(polynomial_filter: Callable) -> bool:
    """Check ``polynomial_filter(L, x, coeffs)`` = sum_k coeffs[k] L^k x against the spectral formula."""
    import torch

    g = torch.Generator().manual_seed(0)
    ring = _laplacian(undirected_edge_index([[i, (i + 1) % 8] for i in range(8)]), 8)
    grid_edges = [[r * 5 + c, r * 5 + c + 1] for r in range(5) for c in range(4)] + \
                 [[r * 5 + c, (r + 1) * 5 + c] for r in range(4) for c in range(5)]
    grid = _laplacian(undirected_edge_index(grid_edges), 25)
    rand = _laplacian(_random_graph(15, 0.3, 3), 15)

    def x_of(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def local_case(fn):
        delta = torch.zeros(25, dtype=torch.float64)
        delta[12] = 1.0                                                  # the centre of the 5 x 5 grid
        out = fn(grid, delta, [0.5, -0.3, 0.05])                          # degree 2: 2 hops at most
        if not isinstance(out, torch.Tensor) or out.shape != (25,):
            return f"expected a (25,) tensor, got {getattr(out, 'shape', type(out).__name__)}"
        rows, cols = torch.arange(25) // 5, torch.arange(25) % 5
        hops = (rows - 2).abs() + (cols - 2).abs()
        leak = out[hops > 2].abs().max().item()
        if leak > 1e-12:
            return f"a degree-2 filter of a delta must vanish beyond 2 hops, got {leak:.3g} there"
        return None

    def no_power_case(fn):
        from torch.overrides import TorchFunctionMode

        square = []

        class Spy(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                name = getattr(func, "__name__", "")
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                if "matrix_power" in name or (name in ("matmul", "__matmul__", "__rmatmul__", "mm", "bmm")
                                              and len(tensors) == 2
                                              and all(t.shape == (15, 15) for t in tensors)):
                    square.append(name)
                return func(*args, **kwargs)

        with Spy():
            fn(rand, x_of(15, 3), [1.0, -0.5, 0.1, -0.02])
        if square:
            return (f"your code forms a power of L ({square[0]} of two (N, N) matrices): that costs O(N^3) per "
                    "step and a dense matrix; multiply the (N, F) signal by L instead, power = L @ power")
        return None

    cases = [
        Case("coeffs [1]: the identity", (ring, x_of(8), [1.0]), expected=_eig_filter, atol=1e-10),
        Case("coeffs [0, 1]: L x", (ring, x_of(8), [0.0, 1.0]), expected=_eig_filter, atol=1e-10),
        Case("ring of 8, coeffs [1, -0.5, 0.1]", (ring, x_of(8), [1.0, -0.5, 0.1]), expected=_eig_filter,
             atol=1e-10),
        Case("grid 5 x 5, several channels x (25, 3), degree 4", (grid, x_of(25, 3), [1.0, -0.4, 0.06, -0.004,
             0.0001]), expected=_eig_filter, atol=1e-9),
        Case("random graph, coeffs as a tensor", (rand, x_of(15), torch.tensor([0.2, 0.3, -0.1],
             dtype=torch.float64)), expected=_eig_filter, atol=1e-10),
        Case("float32 input stays float32", (rand.float(), x_of(15).float(), [1.0, -0.2]),
             expected=_eig_filter, atol=1e-5),
        Case("a degree-2 filter is 2-hop local", test=local_case),
        Case("no power of L is formed (only products L @ (N, F) signal)", test=no_power_case),
        device_case(rand, x_of(15, 2), [1.0, -0.5, 0.1]),
    ]
    return run_check(
        "polynomial_filter(L, x, coeffs)", polynomial_filter, cases,
        hint='a polynomial in L applied to x needs only repeated multiplications by L, never a power of the matrix',
        solution="out = coeffs[0] * x; power = x; for c in coeffs[1:]: power = L @ power; out = out + c * power. "
             "coeffs[k] multiplies L^k (k = 0 is the identity); never form L^k itself",
    )


def _pyg_conv(name: str):
    """``torch_geometric.nn.<name>`` if torch_geometric imports, else None (its import warns about
    torch.jit.script); the checks then fall back to a dense reference."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch_geometric.nn as pyg_nn
    except Exception:  # noqa: BLE001 - fall back to the dense reference
        return None
    return getattr(pyg_nn, name, None)


@tiered
def check_gcn_layer(GCNLayer: type) -> bool:  # noqa: N803 - the class is the argument
    """Check ``GCNLayer(in_features, out_features)``: attributes, and forward(x, edge_index) vs GCNConv."""
    import torch
    import torch.nn as nn

    GCNConv = _pyg_conv("GCNConv")

    def attributes_case(cls):
        layer = cls(5, 3)
        if not isinstance(layer, nn.Module):
            return f"expected an nn.Module, got {type(layer).__name__}"
        lin = getattr(layer, "lin", None)
        if not isinstance(lin, nn.Linear):
            return f"layer.lin: expected an nn.Linear, got {type(lin).__name__}"
        if (lin.in_features, lin.out_features) != (5, 3):
            return f"layer.lin: expected Linear(5, 3), got Linear({lin.in_features}, {lin.out_features})"
        if lin.bias is not None:
            return "layer.lin must have no bias (bias=False): the bias is added after aggregation"
        bias = getattr(layer, "bias", None)
        if not isinstance(bias, nn.Parameter) or tuple(bias.shape) != (3,):
            return f"layer.bias: expected an nn.Parameter of shape (3,), got {getattr(bias, 'shape', bias)!r}"
        return None

    def forward_case(edge_index, n, fin, fout, seed):
        def test(cls):
            gen = torch.Generator().manual_seed(seed)
            W = torch.randn(fout, fin, generator=gen) / math.sqrt(fin)
            b = torch.randn(fout, generator=gen)
            x = torch.randn(n, fin, generator=gen)
            layer = cls(fin, fout)
            with torch.no_grad():
                layer.lin.weight.copy_(W)
                layer.bias.copy_(b)
            out = layer(x, edge_index)
            if GCNConv is not None:
                conv = GCNConv(fin, fout)
                with torch.no_grad():
                    conv.lin.weight.copy_(W)
                    conv.bias.copy_(b)
                    want = conv(x, edge_index)
            else:
                want = reference_normalized_adjacency(edge_index, n) @ (x @ W.T) + b
            return compare_values(want, out, atol=1e-5, rtol=1e-5, path="layer(x, edge_index)")
        return test

    def grad_case(cls):
        layer = cls(4, 2)
        out = layer(torch.randn(6, 4, generator=torch.Generator().manual_seed(5)),
                    undirected_edge_index([[0, 1], [1, 2], [3, 4]]))
        if not getattr(out, "requires_grad", False):
            return ("the output does not require grad (no gradient can reach layer.lin.weight or layer.bias): "
                    "keep the computation inside autograd (no .detach(), .data or torch.no_grad() in forward)")
        out.square().sum().backward()
        missing = [name for name, p in (("layer.lin.weight", layer.lin.weight),
                                                  ("layer.bias", getattr(layer, "bias", None)))
                   if getattr(p, "grad", None) is None]
        if not missing:
            return None
        msg = f"no gradient reached {' and '.join(missing)}"
        bias = getattr(layer, "bias", None)
        if "layer.bias" in missing and not isinstance(bias, nn.Parameter):
            return msg + (f": layer.bias is a plain {type(bias).__name__}, not an nn.Parameter, so autograd "
                          "does not track it and the optimiser never sees it")
        return msg + ": keep the computation inside autograd (no .detach(), .data or torch.no_grad() in forward)"

    ref_name = "GCNConv" if GCNConv is not None else "the dense formula (torch_geometric not found)"
    cases = [
        Case("attributes: lin = Linear(5, 3, bias=False), bias = Parameter (3,)", test=attributes_case),
        Case(f"path 0-1-2, 4 -> 2 features, vs {ref_name}",
             test=forward_case(undirected_edge_index([[0, 1], [1, 2]]), 3, 4, 2, 0)),
        Case("star with an isolated node, 3 -> 5 features",
             test=forward_case(undirected_edge_index([[0, 1], [0, 2], [0, 3]]), 5, 3, 5, 1)),
        Case("random graph, 30 nodes, 8 -> 4 features", test=forward_case(_random_graph(30, 0.15, 4), 30, 8, 4, 2)),
        Case("random graph, 50 nodes, 16 -> 16 features",
             test=forward_case(_random_graph(50, 0.08, 6), 50, 16, 16, 3)),
        Case("gradients reach lin.weight and bias", test=grad_case),
        device_case(run=lambda cls, device: cls(5, 3).to(device)(
            torch.randn(12, 5, device=device), _random_graph(12, 0.3, 0).to(device))),
    ]
    return run_check(
        "GCNLayer(in_features, out_features)", GCNLayer, cases,
        hint='a linear map of the node features without bias, propagated with the normalised adjacency, then a bias that autograd can train',
        solution="__init__: self.lin = nn.Linear(in_features, out_features, bias=False); self.bias = "
             "nn.Parameter(torch.zeros(out_features)). forward: normalized_adjacency(edge_index, x.shape[0]) @ "
             "self.lin(x) + self.bias (transform, aggregate with self loops, then add the bias)",
    )


def _neighbour_sum_count(x, edge_index):
    """(sum of x_j over the edges j -> i, number of such edges) per target i."""
    import torch

    src, dst = edge_index
    total = torch.zeros(x.shape[0], x.shape[1], dtype=x.dtype).index_add_(0, dst, x[src])
    count = torch.zeros(x.shape[0], dtype=x.dtype).index_add_(0, dst, torch.ones(len(dst), dtype=x.dtype))
    return total, count


def reference_sage_layer(x, edge_index, weight, bias):
    """Dense GraphSAGE (mean aggregator): [x_i || mean_{j -> i} x_j] W^T + b, the mean 0 without in-edges."""
    import torch

    total, count = _neighbour_sum_count(x, edge_index)
    return torch.cat([x, total / count.clamp(min=1)[:, None]], dim=1) @ weight.T + bias


def _sage_mistakes(x, edge_index, weight, bias):
    """What the typical mistakes return, keyed by the advice that names each one."""
    import torch

    f = x.shape[1]
    total, count = _neighbour_sum_count(x, edge_index)
    w_self, w_neigh = weight[:, :f], weight[:, f:]
    mean = total / count.clamp(min=1)[:, None]
    return {
        "the neighbours are summed, not averaged: divide by the number of neighbours":
            x @ w_self.T + total @ w_neigh.T + bias,
        "the node itself is inside the mean: average over the neighbours j only, x_i enters through the first "
        "half of the concatenation": x @ w_self.T + ((total + x) / (count + 1)[:, None]) @ w_neigh.T + bias,
        "divided by degree + 1: the mean is over the neighbours only (divide by the degree, 1 for isolated nodes)":
            x @ w_self.T + (total / (count + 1)[:, None]) @ w_neigh.T + bias,
        "the self term is missing: concatenate x_i with the neighbour mean, weight = [W_self | W_neigh]":
            mean @ w_neigh.T + bias,
        "the halves are swapped: concatenate [x_i || mean], the node's own features first":
            torch.cat([mean, x], dim=1) @ weight.T + bias,
    }


@tiered
def check_sage_layer(sage_layer: Callable) -> bool:
    """Check ``sage_layer(x, edge_index, weight, bias)`` against PyG's ``SAGEConv`` with copied weights."""
    import torch

    SAGEConv = _pyg_conv("SAGEConv")

    def case(edge_index, n, fin, fout, seed):
        def test(fn):
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(n, fin, generator=gen)
            weight = torch.randn(fout, 2 * fin, generator=gen) / math.sqrt(2 * fin)
            bias = torch.randn(fout, generator=gen)
            out = fn(x.clone(), edge_index.clone(), weight.clone(), bias.clone())
            if SAGEConv is not None:
                with torch.random.fork_rng(devices=[]):                 # its initialisation draws from torch's RNG
                    conv = SAGEConv(fin, fout)                          # mean aggregator, root weight
                with torch.no_grad():
                    conv.lin_r.weight.copy_(weight[:, :fin])            # self term
                    conv.lin_l.weight.copy_(weight[:, fin:])            # neighbour mean, with the bias
                    conv.lin_l.bias.copy_(bias)
                    want = conv(x, edge_index)
            else:
                want = reference_sage_layer(x, edge_index, weight, bias)
            msg = compare_values(want, out, atol=1e-5, rtol=1e-5, path="sage_layer(x, edge_index, weight, bias)")
            if msg and isinstance(out, torch.Tensor) and out.shape == want.shape:
                if not torch.isfinite(out).all():
                    return msg + (" (NaN or inf: a node without incoming edges divides 0 by 0; clamp the count "
                                  "at 1, its mean is 0)")
                for advice, wrong in _sage_mistakes(x, edge_index, weight, bias).items():
                    if torch.allclose(out.detach().float(), wrong, atol=1e-5, rtol=1e-5):
                        return msg + f" ({advice})"
                flipped = reference_sage_layer(x, edge_index.flip(0), weight, bias)
                if torch.allclose(out.detach().float(), flipped, atol=1e-5, rtol=1e-5):
                    return msg + (" (you average over the targets of edges leaving i: node i averages the "
                                  "sources j of the edges j -> i, i.e. aggregate at edge_index[1])")
            return msg
        return test

    directed = torch.tensor([[0, 1, 2, 3, 3], [1, 2, 0, 0, 1]])         # 0->1, 1->2, 2->0, 3->0, 3->1; 3 gets none
    ref_name = "SAGEConv" if SAGEConv is not None else "the dense formula (torch_geometric not found)"
    g = torch.Generator().manual_seed(9)
    cases = [
        Case(f"path 0-1-2, 3 -> 2 features, vs {ref_name} with copied weights",
             test=case(undirected_edge_index([[0, 1], [1, 2]]), 3, 3, 2, 0)),
        Case("star with hub 0 and an isolated node 4 (its mean is 0)",
             test=case(undirected_edge_index([[0, 1], [0, 2], [0, 3]]), 5, 4, 3, 1)),
        Case("directed graph: node i averages the sources of the edges j -> i; node 3 receives nothing",
             test=case(directed, 4, 2, 2, 2)),
        Case("random graph, 30 nodes, 8 -> 4 features", test=case(_random_graph(30, 0.15, 4), 30, 8, 4, 3)),
        Case("random graph, 50 nodes, 16 -> 16 features", test=case(_random_graph(50, 0.08, 6), 50, 16, 16, 4)),
        device_case(torch.randn(12, 5, generator=g), _random_graph(12, 0.3, 0), torch.randn(3, 10, generator=g),
                    torch.randn(3, generator=g)),
    ]
    return run_check(
        "sage_layer(x, edge_index, weight, bias)", sage_layer, cases,
        hint="average the features of each node's in-neighbours (0 for a node without any), put the node's own "
             "features in front of that mean, then apply one linear map",
        solution="src, dst = edge_index; total = x.new_zeros(N, F).index_add_(0, dst, x[src]); count = "
             "x.new_zeros(N).index_add_(0, dst, x.new_ones(E)); mean = total / count.clamp(min=1)[:, None]; "
             "return torch.cat([x, mean], dim=1) @ weight.T + bias. Create new tensors with new_zeros / new_ones "
             "so that they follow x's device",
    )


def _masked_attention(q, k, v, edge_index):
    """softmax over the in-neighbours j of each target i (edge j -> i); zeros without in-edges."""
    import torch
    import torch.nn.functional as F

    n = q.shape[0]
    mask = torch.zeros(n, k.shape[0], dtype=torch.bool)
    mask[edge_index[1], edge_index[0]] = True                              # row i: who sends to i
    out = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask[None])[0]
    return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))


def _attention_case(q, k, v, edge_index, atol, large_scores=False):
    """A case comparing with masked dense attention; names the missing 1/sqrt(d) scale when that is the
    difference, and for large scores reports NaN / inf (a stability problem) apart from wrong values."""
    import torch

    def test(fn):
        out = fn(q.clone(), k.clone(), v.clone(), edge_index.clone())
        if not isinstance(out, torch.Tensor):
            return f"expected a torch.Tensor, got {type(out).__name__}"
        if large_scores and out.shape == v.shape and out.is_floating_point() and not torch.isfinite(out).all():
            bad = int((~torch.isfinite(out)).any(1).sum())
            return (f"NaN or inf in {bad} of {len(out)} output rows: exp overflowed, or every exp of a group "
                    "underflowed to 0 (0 / 0). Subtract each target's maximum score before exp, a maximum over "
                    "the scores only: start scatter_reduce 'amax' from -inf (or use include_self=False), not from 0")
        msg = compare_values(_masked_attention(q, k, v, edge_index), out, atol=atol, rtol=1e-5)
        if msg and out.shape == v.shape and out.dtype == v.dtype:
            unscaled = _masked_attention(q * math.sqrt(q.shape[-1]), k, v, edge_index)
            if compare_values(unscaled, out, atol=atol, rtol=1e-5) is None:
                msg += " (this is attention without the 1/sqrt(d) scale: divide the scores by sqrt(d))"
        return msg
    return test


@tiered
def check_attention_message_passing(attention_message_passing: Callable) -> bool:
    """Check ``attention_message_passing(q, k, v, edge_index)`` against masked dense attention."""
    import torch

    g = torch.Generator().manual_seed(0)

    def qkv(n, d, dv, scale=1.0):
        return (scale * torch.randn(n, d, generator=g, dtype=torch.float64),
                torch.randn(n, d, generator=g, dtype=torch.float64),
                torch.randn(n, dv, generator=g, dtype=torch.float64))

    def complete(n, self_loops=True):
        idx = torch.arange(n)
        src, dst = idx.repeat_interleave(n), idx.repeat(n)
        keep = torch.ones_like(src, dtype=torch.bool) if self_loops else src != dst
        return torch.stack([src[keep], dst[keep]])

    directed = torch.tensor([[0, 1, 2, 3, 3], [1, 2, 0, 0, 1]])            # 0->1, 1->2, 2->0, 3->0, 3->1; 3 gets none
    # every score about -1800: exp(score) underflows to 0 unless the group's own maximum is subtracted
    g_neg = torch.Generator().manual_seed(1)
    q_neg = 30 * (1 + 0.1 * torch.randn(6, 4, generator=g_neg, dtype=torch.float64))
    v_neg = torch.randn(6, 3, generator=g_neg, dtype=torch.float64)

    cases = [
        Case("complete graph with self loops, N = 6, d = 4: full attention",
             test=_attention_case(*qkv(6, 4, 3), complete(6), atol=1e-10)),
        Case("complete graph without self loops, N = 5", test=_attention_case(*qkv(5, 8, 2), complete(5, False),
             atol=1e-10)),
        Case("directed graph: softmax over the senders of each target; node 3 receives nothing -> zeros",
             test=_attention_case(*qkv(4, 4, 2), directed, atol=1e-10)),
        Case("random undirected graph, 20 nodes", test=_attention_case(*qkv(20, 8, 8), _random_graph(20, 0.25, 7),
             atol=1e-10)),
        Case("large positive scores (q scaled by 300), N = 7",
             test=_attention_case(*qkv(7, 4, 3, scale=300.0), complete(7), atol=1e-8, large_scores=True)),
        Case("large negative scores (q = 30 (1 + noise), k = -q: all scores near -1800), N = 6",
             test=_attention_case(q_neg, -q_neg, v_neg, complete(6), atol=1e-8, large_scores=True)),
        device_case(*qkv(6, 4, 3), directed),
    ]
    return run_check(
        "attention_message_passing(q, k, v, edge_index)", attention_message_passing, cases,
        hint="one score per edge, a softmax over the edges that arrive at each node (stabilised by each group's maximum), then a weighted sum of the senders' values",
        solution="src, dst = edge_index; scores = (q[dst] * k[src]).sum(-1) / sqrt(d); normalise per target: "
             "top = scores.new_full((N,), -inf).scatter_reduce(0, dst, scores, 'amax') (start from -inf, not 0), "
             "w = (scores - top[dst]).exp(), divide by the sum over the same group "
             "(scores.new_zeros(N).index_add_(0, dst, w)); out = v.new_zeros(N, d_v).index_add_(0, dst, "
             "alpha[:, None] * v[src]). Create new tensors with new_zeros / new_full (or dtype=v.dtype, "
             "device=v.device) so that they match the inputs' dtype and device",
    )
