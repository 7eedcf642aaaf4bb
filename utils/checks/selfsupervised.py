"""Checks for the self-supervised and energy-based lab (16): free_energy, ista and info_nce.

References: ``torch.logsumexp`` for the free energy (plus its limits: the minimum as beta -> inf,
the mean as beta -> 0), scikit-learn's ``Lasso(alpha=lam / D, fit_intercept=False)`` for the
converged ISTA code (sklearn minimises ``1/(2 D) ||y - W z||^2 + alpha ||z||_1``, which is our
energy divided by D), a reference ISTA for the first iterates (they depend on the step size,
the converged code does not), and ``F.cross_entropy`` on normalised similarities for InfoNCE.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_free_energy", "check_info_nce", "check_ista", "reference_free_energy",
           "reference_info_nce", "reference_ista", "lasso_solution"]


def reference_free_energy(E, beta: float):
    """F_beta = -(logsumexp(-beta E) - log K) / beta over the last axis (K values of z)."""
    import torch

    K = E.shape[-1]
    return -(torch.logsumexp(-beta * E, dim=-1) - math.log(K)) / beta


def reference_ista(y, W, lam: float, steps: int):
    """ISTA from z = 0 with step 1 / sigma_max(W)^2; y (D,) or (N, D), W (D, K) -> z (K,) or (N, K)."""
    import torch

    eta = 1.0 / torch.linalg.matrix_norm(W, ord=2) ** 2
    z = y.new_zeros(*y.shape[:-1], W.shape[1])
    for _ in range(steps):
        u = z - eta * (z @ W.T - y) @ W
        z = torch.sign(u) * torch.clamp(u.abs() - eta * lam, min=0)
    return z


def lasso_solution(y, W, lam: float):
    """The minimiser of 1/2 ||y - W z||^2 + lam ||z||_1 by scikit-learn's coordinate descent (y (D,))."""
    import numpy as np
    import torch
    from sklearn.linear_model import Lasso

    D = W.shape[0]
    model = Lasso(alpha=lam / D, fit_intercept=False, tol=1e-14, max_iter=200_000)
    model.fit(W.double().numpy(), y.double().numpy())
    return torch.as_tensor(np.asarray(model.coef_), dtype=y.dtype)


def reference_info_nce(z1, z2, temperature: float):
    """Cross-entropy of normalised z1 z2^T / temperature with targets arange(N) (row i: positive i)."""
    import torch
    import torch.nn.functional as F

    logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(z1), device=z1.device))


def _no_positive_in_denominator(z1, z2, temperature: float):
    """InfoNCE whose log-sum-exp skips the positive (j != i): the mistake it diagnoses."""
    import torch
    import torch.nn.functional as F

    logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature
    eye = torch.eye(len(z1), dtype=torch.bool, device=z1.device)
    return -(logits.diagonal() - torch.logsumexp(logits.masked_fill(eye, -math.inf), dim=1)).mean()


def _randn(seed, *shape, scale=1.0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=torch.float64)


@tiered
def check_free_energy(free_energy: Callable) -> bool:
    """Check ``free_energy(E_grid, beta)`` (last axis of ``E_grid`` = the K values of z)."""
    import torch

    def diagnose(msg, E, beta, got):
        """Name the cause when ``got`` is the free energy with log K rounded to float32."""
        if msg is None or not isinstance(got, torch.Tensor) or E.dtype != torch.float64:
            return msg
        log_k32 = torch.log(torch.tensor(float(E.shape[-1]), dtype=torch.float32)).to(E.dtype)
        if compare_values(-(torch.logsumexp(-beta * E, dim=-1) - log_k32) / beta, got, atol=1e-12, rtol=1e-6) is None:
            return f"{msg} (log K computed in float32? K is a Python int: use math.log(K) or dtype=E_grid.dtype)"
        return msg

    def exact_case(name, E, beta, expected, atol, rtol=0.0):
        def test(fn):
            got = fn(E.clone(), beta)
            want = expected(E, beta) if callable(expected) else expected
            return diagnose(compare_values(want, got, atol=atol, rtol=rtol), E, beta, got)
        return Case(name, test=test)

    def limit_case(beta, reduce, what):
        def test(fn):
            E = _randn(3, 4, 30)
            got = fn(E.clone(), beta)
            msg = compare_values(reduce(E), got, atol=2e-3, rtol=0, path=f"F at beta = {beta:g}")
            return diagnose(None if msg is None else f"{msg} (should be close to {what})", E, beta, got)
        return test

    def stable_case(sign):
        def test(fn):
            E = sign * (400 + 50 * _randn(4, 3, 20).abs())
            got = fn(E.clone(), 10.0)
            if isinstance(got, torch.Tensor) and not torch.isfinite(got).all():
                return ("got inf or NaN: exp(-beta E) under- or overflows; use torch.logsumexp, which subtracts "
                        "the largest term before exponentiating")
            return diagnose(compare_values(reference_free_energy(E, 10.0), got, atol=1e-8, rtol=1e-10), E, 10.0, got)
        return test

    E01 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    cases = [
        exact_case("E = [0, 0] (a flat energy): F = 0 for any beta", torch.zeros(2, dtype=torch.float64), 3.0,
                   torch.tensor(0.0, dtype=torch.float64), atol=1e-12),
        exact_case("E = [0, 1], beta = 1: F = log 2 - log(1 + e^-1) = 0.3799", E01, 1.0,
                   torch.tensor(math.log(2) - math.log(1 + math.exp(-1)), dtype=torch.float64), atol=1e-10),
        exact_case("grid (3, 4, 50), beta = 2: reduce over the LAST axis", _randn(0, 3, 4, 50), 2.0,
                   reference_free_energy, atol=1e-10, rtol=1e-10),
        exact_case("grid (5, 7), beta = 0.3", _randn(1, 5, 7, scale=3.0), 0.3, reference_free_energy,
                   atol=1e-10, rtol=1e-10),
        Case("beta = 1e4 -> close to min_z E", test=limit_case(1e4, lambda E: E.min(-1).values, "the minimum")),
        Case("beta = 1e-6 -> close to the mean over z", test=limit_case(1e-6, lambda E: E.mean(-1), "the mean")),
        Case("large energies (~450), beta = 10: finite", test=stable_case(1.0)),
        Case("large negative energies (~-450), beta = 10: finite", test=stable_case(-1.0)),
        Case("float32 in, float32 out", args=(_randn(2, 6, 9).float(), 1.5), expected=reference_free_energy,
             atol=1e-5, rtol=1e-5),
        device_case(_randn(0, 3, 4, 50), 2.0),
    ]
    return run_check(
        "free_energy(E_grid, beta)", free_energy, cases,
        hint='a soft minimum over the latent grid: -1/beta times the log of the AVERAGE of exp(-beta E), computed stably',
        solution="K = E_grid.shape[-1]; return -(torch.logsumexp(-beta * E_grid, dim=-1) - math.log(K)) / beta "
             "(the - log K makes it an average over z, so a flat energy has F = E)",
    )


#: PyTorch's complaint when a float32 tensor meets a float64 one in a matrix product
_DTYPE_MISMATCH = re.compile(r"same dtype|expected scalar type|float != double|double != float", re.IGNORECASE)


def _advise_on_dtype(ista: Callable) -> Callable:
    """Wrap ``ista`` so that a float32-vs-float64 error names its usual cause, a code z created
    without ``dtype=y.dtype``; the exception keeps its traceback (the student's line)."""
    @functools.wraps(ista)
    def wrapped(*args, **kwargs):
        try:
            return ista(*args, **kwargs)
        except RuntimeError as exc:
            if exc.args and isinstance(exc.args[0], str) and _DTYPE_MISMATCH.search(exc.args[0]):
                first, *rest = exc.args[0].splitlines() or [""]
                exc.args = ("\n".join([f"{first} (create z with dtype=y.dtype)", *rest]),) + exc.args[1:]
            raise
    return wrapped


def _ascent_ista(y, W, lam: float, steps: int):
    """ISTA with the gradient's sign flipped (u = z + eta W^T (W z - y)): the mistake it diagnoses."""
    import torch

    eta = 1.0 / torch.linalg.matrix_norm(W, ord=2) ** 2
    z = y.new_zeros(*y.shape[:-1], W.shape[1])
    for _ in range(steps):
        u = z + eta * (z @ W.T - y) @ W
        z = torch.sign(u) * torch.clamp(u.abs() - eta * lam, min=0)
    return z


_ASCENT = ("that is gradient ascent: the gradient of 1/2 ||y - W z||^2 is W^T (W z - y), i.e. (z @ W.T - y) @ W, "
           "and the step must go against it, or the error grows and the codes diverge")


@tiered
def check_ista(ista: Callable) -> bool:
    """Check ``ista(y, W, lam, steps)``: first iterates vs a reference ISTA, converged codes vs sklearn's Lasso."""
    import torch

    def note_divergence(msg, got):
        """Add the usual causes when the codes are inf, NaN or huge (they are O(1) here, never above 1e3)."""
        if msg is None or not isinstance(got, torch.Tensor) or not got.is_floating_point() or not got.numel():
            return msg
        if (~torch.isfinite(got)).any() or got.abs().max() > 1e3:
            return (f"{msg} (the codes diverge: ISTA blows up when the step goes up the gradient, "
                    "+W^T (W z - y), or is larger than 1 / sigma_max(W)^2)")
        return msg

    def problem(seed, D, K, N=None):
        W = _randn(seed, D, K) / math.sqrt(D)
        y = _randn(seed + 100, *(() if N is None else (N,)), D)
        return y, W

    def iterate_case(seed, D, K, lam, steps, N=None):
        def test(fn):
            y, W = problem(seed, D, K, N)
            want = reference_ista(y, W, lam, steps)
            got = fn(y.clone(), W.clone(), lam, steps)
            msg = compare_values(want, got, atol=1e-9, rtol=1e-7, path=f"z after {steps} step(s)")
            if msg is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
                return msg
            if compare_values(_ascent_ista(y, W, lam, steps), got, atol=1e-9, rtol=1e-7) is None:
                return f"{msg} ({_ASCENT})"
            eta = 1 / torch.linalg.matrix_norm(W, ord=2).item() ** 2
            u = eta * W.T @ y.T if N is not None else eta * W.T @ y
            if steps == 1 and compare_values(torch.where(u.abs() > eta * lam, u, 0.0).T if N else
                                             torch.where(u.abs() > eta * lam, u, 0.0), got, atol=1e-9) is None:
                return msg + " (that is hard thresholding: soft thresholding also moves survivors towards 0 by eta*lam)"
            return msg + " (check the step eta = 1 / sigma_max(W)^2 and the threshold eta * lam)"
        return test

    def lasso_case(seed, D, K, lam, steps):
        def test(fn):
            y, W = problem(seed, D, K)
            got = fn(y.clone(), W.clone(), lam, steps)
            return note_divergence(compare_values(lasso_solution(y, W, lam), got, atol=1e-6, rtol=0,
                                                  path=f"z after {steps} steps vs Lasso(alpha=lam / D)"), got)
        return test

    def batch_case(fn):
        y, W = problem(5, 8, 6, N=4)
        got = fn(y.clone(), W.clone(), 0.1, 3000)
        want = torch.stack([lasso_solution(y[i], W, 0.1) for i in range(4)])
        return note_divergence(compare_values(want, got, atol=1e-6, rtol=0, path="codes of a batch y (4, 8)"), got)

    def zero_case(fn):
        y, W = problem(6, 10, 5)
        lam = 1.01 * (W.T @ y).abs().max().item()                  # above ||W^T y||_inf the code is exactly 0
        got = fn(y.clone(), W.clone(), lam, 50)
        return compare_values(torch.zeros(5, dtype=torch.float64), got, atol=0, rtol=0,
                              path="z for lam > max |W^T y| (must be exactly 0)")

    def least_squares_case(fn):
        y, W = problem(7, 12, 4)
        want = torch.linalg.lstsq(W, y[:, None]).solution[:, 0]
        got = fn(y.clone(), W.clone(), 0.0, 500)
        return note_divergence(compare_values(want, got, atol=1e-8, rtol=0, path="lam = 0: least squares"), got)

    def float32_case(fn):
        y, W = problem(8, 6, 4)
        got = fn(y.float(), W.float(), 0.05, 20)
        return note_divergence(compare_values(reference_ista(y.float(), W.float(), 0.05, 20), got, atol=1e-5, rtol=1e-4),
                               got)

    cases = [
        Case("one step from z = 0: shrink(eta W^T y, eta lam)", test=iterate_case(0, 8, 12, 0.2, 1)),
        Case("five steps, W with sigma_max(W) != 1", test=iterate_case(1, 6, 10, 0.1, 5)),
        Case("ten steps on a batch y (3, 8)", test=iterate_case(2, 8, 12, 0.2, 10, N=3)),
        Case("converged, D = 10, K = 6, lam = 0.1 vs sklearn Lasso", test=lasso_case(3, 10, 6, 0.1, 400)),
        Case("converged, overcomplete D = 6, K = 10, lam = 0.3 vs sklearn Lasso", test=lasso_case(4, 6, 10, 0.3, 3000)),
        Case("converged batch y (4, 8) vs Lasso row by row", test=batch_case),
        Case("large lam: the code is exactly zero", test=zero_case),
        Case("lam = 0: the least-squares solution", test=least_squares_case),
        Case("float32 in, float32 out", test=float32_case),
        device_case(*problem(5, 8, 12, N=3), 0.2, 5),
    ]
    return run_check(
        "ista(y, W, lam, steps)", _advise_on_dtype(ista), cases,
        hint='alternate a gradient step on the reconstruction error (step 1 / largest singular value squared) with soft-thresholding, starting from z = 0',
        solution="eta = 1 / torch.linalg.matrix_norm(W, ord=2) ** 2; z = torch.zeros(*y.shape[:-1], K, dtype=y.dtype, "
             "device=y.device); repeat: "
             "u = z - eta * (z @ W.T - y) @ W; z = sign(u) * clamp(|u| - eta * lam, min=0) "
             "(rows of y are samples, so W acts on the right as W.T)",
    )


@tiered
def check_info_nce(info_nce: Callable) -> bool:
    """Check ``info_nce(z1, z2, temperature)`` against ``F.cross_entropy`` on normalised similarities."""
    import torch
    import torch.nn.functional as F

    def diagnosed(seed, N, d, temperature, scale1=1.0, scale2=1.0):
        def test(fn):
            z1, z2 = _randn(seed, N, d, scale=scale1), _randn(seed + 1, N, d, scale=scale2)
            z2 = z2 + 0.5 * z1 * scale2 / scale1                      # positives more similar than negatives
            want = reference_info_nce(z1, z2, temperature)
            got = fn(z1.clone(), z2.clone(), temperature)
            msg = compare_values(want, got, atol=1e-9, rtol=1e-7, path="loss")
            if msg is None or not isinstance(got, torch.Tensor) or got.numel() != 1:
                return msg
            for other, why in ((reference_info_nce(z2, z1, temperature), "the transposed direction (z2 z1^T)"),
                               (reference_info_nce(z1, z2, temperature) * N, "a sum over the batch, not the mean"),
                               (reference_info_nce(z1, z2, 1.0), "no temperature"),
                               (torch.nn.functional.cross_entropy(z1 @ z2.T / temperature, torch.arange(N)),
                                "no L2 normalisation"),
                               ((reference_info_nce(z1, z2, temperature) + reference_info_nce(z2, z1, temperature)) / 2,
                                "the average of both directions, as in SimCLR; info_nce is one direction, z1 to z2"),
                               (torch.nn.functional.cross_entropy(
                                   F.normalize(z1, dim=0) @ F.normalize(z2, dim=0).T / temperature, torch.arange(N)),
                                "normalised over the batch axis; normalise each row (each embedding), dim=1"),
                               (reference_info_nce(z1, z2, 1 / temperature),
                                "the similarities multiplied by the temperature; divide them by it"),
                               (_no_positive_in_denominator(z1, z2, temperature),
                                "the positive left out of the denominator: the softmax of row i runs over all N "
                                "columns, its own positive included")):
                if compare_values(other, got, atol=1e-9, rtol=1e-7) is None:
                    return f"{msg} (that is {why})"
            return msg
        return test

    def known_case(fn):
        z = torch.eye(4, dtype=torch.float64) * 3.0               # orthogonal: cos = 1 on the diagonal, 0 elsewhere
        return compare_values(torch.tensor(math.log(1 + 3 / math.e), dtype=torch.float64), fn(z, z.clone(), 1.0),
                              atol=1e-10, path="loss for 4 orthogonal pairs, temperature 1 (log(1 + 3/e))")

    def grad_case(fn):
        z1 = _randn(20, 6, 5).requires_grad_(True)
        z2 = _randn(21, 6, 5).requires_grad_(True)
        loss = fn(z1, z2, 0.2)
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            return "the loss does not require grad: build it from torch operations on z1 and z2 (no .detach() or NumPy)"
        g1, g2 = torch.autograd.grad(loss, (z1, z2))
        a1 = z1.detach().clone().requires_grad_(True)
        a2 = z2.detach().clone().requires_grad_(True)
        w1, w2 = torch.autograd.grad(reference_info_nce(a1, a2, 0.2), (a1, a2))
        return compare_values((w1, w2), (g1, g2), atol=1e-9, rtol=1e-7, path="gradients (dz1, dz2)")

    cases = [
        Case("4 orthogonal pairs, temperature 1 (known value)", test=known_case),
        Case("N = 8, d = 16, temperature 0.1", test=diagnosed(0, 8, 16, 0.1)),
        Case("N = 5, d = 3, temperature 0.5", test=diagnosed(2, 5, 3, 0.5)),
        Case("unnormalised inputs (norms ~10 and ~0.1), temperature 0.2",
             test=diagnosed(4, 6, 8, 0.2, scale1=10.0, scale2=0.1)),
        Case("N = 32, d = 4, temperature 1.0", test=diagnosed(6, 32, 4, 1.0)),
        Case("gradients match", test=grad_case),
        Case("float32 in, float32 out", args=(_randn(8, 7, 5).float(), _randn(9, 7, 5).float(), 0.3),
             expected=reference_info_nce, atol=1e-5, rtol=1e-5),
        device_case(_randn(0, 8, 16), _randn(1, 8, 16), 0.1),
    ]
    return run_check(
        "info_nce(z1, z2, temperature)", info_nce, cases,
        hint='cosine similarities between every z1 and every z2, divided by the temperature, form a classification problem whose correct class for row i is i',
        solution="z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1); logits = z1 @ z2.T / temperature (N, N), "
             "row i scores z1[i] against every z2[j]; return F.cross_entropy(logits, torch.arange(N, device=z1.device)) (a mean)",
    )
