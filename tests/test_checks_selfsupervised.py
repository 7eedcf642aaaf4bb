"""The lab-16 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from conftest import check_verdict as _verdict

from utils.checks import selfsupervised as checks


def free_energy_manual(E, beta):
    """Correct, written differently: subtract the minimum by hand, average with mean()."""
    m = E.min(dim=-1, keepdim=True).values
    return m.squeeze(-1) - torch.log(torch.exp(-beta * (E - m)).mean(dim=-1)) / beta


def test_free_energy_check(capsys):
    assert _verdict(checks.check_free_energy, checks.reference_free_energy, capsys)
    assert _verdict(checks.check_free_energy, free_energy_manual, capsys)

    def no_log_k(E, beta):
        return -torch.logsumexp(-beta * E, dim=-1) / beta

    def naive(E, beta):
        return -torch.log(torch.exp(-beta * E).mean(dim=-1)) / beta

    def first_axis(E, beta):
        return -(torch.logsumexp(-beta * E, dim=0) - math.log(E.shape[0])) / beta

    def sign_flipped(E, beta):
        return (torch.logsumexp(beta * E, dim=-1) - math.log(E.shape[-1])) / beta

    def times_beta(E, beta):
        return -(torch.logsumexp(-beta * E, dim=-1) - math.log(E.shape[-1])) * beta

    for wrong in (no_log_k, naive, first_axis, sign_flipped, times_beta):
        assert not _verdict(checks.check_free_energy, wrong, capsys), wrong.__name__


def test_free_energy_check_names_float32_log_k(capsys):
    """torch.log(torch.tensor(K)) is float32: its rounding, divided by beta, fails the float64 cases; say so."""
    def float32_log_k(E, beta):
        return -(torch.logsumexp(-beta * E, dim=-1) - torch.log(torch.tensor(E.shape[-1]))) / beta

    def numpy_log_k(E, beta):                               # correct, written differently: np.log(K) is float64
        return -(torch.logsumexp(-beta * E, dim=-1) - np.log(E.shape[-1])) / beta

    assert not checks.check_free_energy(float32_log_k)
    out = capsys.readouterr().out
    assert "log K computed in float32" in out and "math.log(K)" in out
    assert "torch.logsumexp(-beta * E_grid" not in out      # no solution line unless asked
    assert _verdict(checks.check_free_energy, numpy_log_k, capsys)


def _ista(y, W, lam, steps, eta=None, threshold=None, hard=False):
    eta = eta if eta is not None else 1.0 / torch.linalg.matrix_norm(W, ord=2) ** 2
    threshold = eta * lam if threshold is None else threshold
    z = torch.zeros(*y.shape[:-1], W.shape[1], dtype=y.dtype)
    for _ in range(steps):
        u = z - eta * (z @ W.T - y) @ W
        z = torch.where(u.abs() > threshold, u, 0.0) if hard else F.softshrink(u, float(threshold))
    return z


def ista_columns(y, W, lam, steps):
    """Correct, written differently: column vectors, NumPy's SVD for sigma_max, softshrink via relu."""
    sigma = np.linalg.svd(W.detach().cpu().numpy(), compute_uv=False)[0]
    eta = 1.0 / sigma ** 2
    Y = y.T if y.dim() == 2 else y[:, None]                    # (D, N)
    Z = torch.zeros(W.shape[1], Y.shape[1], dtype=y.dtype)
    for _ in range(steps):
        U = Z - eta * W.T @ (W @ Z - Y)
        Z = torch.relu(U - eta * lam) - torch.relu(-U - eta * lam)
    return Z.T if y.dim() == 2 else Z[:, 0]


def test_ista_check(capsys):
    assert _verdict(checks.check_ista, checks.reference_ista, capsys)
    assert _verdict(checks.check_ista, ista_columns, capsys)

    def step_not_squared(y, W, lam, steps):
        return _ista(y, W, lam, steps, eta=1.0 / torch.linalg.matrix_norm(W, ord=2))

    def frobenius_step(y, W, lam, steps):
        return _ista(y, W, lam, steps, eta=1.0 / torch.linalg.matrix_norm(W) ** 2)

    def threshold_not_scaled(y, W, lam, steps):
        return _ista(y, W, lam, steps, threshold=lam)

    def hard_threshold(y, W, lam, steps):
        return _ista(y, W, lam, steps, hard=True)

    def single_only(y, W, lam, steps):                      # z is always (K,): a batch is summed into one code
        eta = 1.0 / torch.linalg.matrix_norm(W, ord=2) ** 2
        z = torch.zeros(W.shape[1], dtype=y.dtype)
        for _ in range(steps):
            z = F.softshrink(z - eta * ((W @ z - y) @ W).reshape(-1, W.shape[1]).sum(0), float(eta * lam))
        return z

    def plus_gradient(y, W, lam, steps):
        eta = 1.0 / torch.linalg.matrix_norm(W, ord=2) ** 2
        z = torch.zeros(*y.shape[:-1], W.shape[1], dtype=y.dtype)
        for _ in range(steps):
            z = F.softshrink(z + eta * (z @ W.T - y) @ W, float(eta * lam))
        return z

    for wrong in (step_not_squared, frobenius_step, threshold_not_scaled, hard_threshold, single_only, plus_gradient):
        assert not _verdict(checks.check_ista, wrong, capsys), wrong.__name__


def info_nce_manual(z1, z2, temperature):
    """Correct, written differently: cosine similarity by broadcasting, log-softmax by hand."""
    sim = F.cosine_similarity(z1[:, None, :], z2[None, :, :], dim=-1) / temperature
    log_p = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -log_p.diagonal().mean()


def test_info_nce_check(capsys):
    assert _verdict(checks.check_info_nce, checks.reference_info_nce, capsys)
    assert _verdict(checks.check_info_nce, info_nce_manual, capsys)

    def no_normalisation(z1, z2, t):
        return F.cross_entropy(z1 @ z2.T / t, torch.arange(len(z1)))

    def no_temperature(z1, z2, t):
        return checks.reference_info_nce(z1, z2, 1.0)

    def transposed(z1, z2, t):
        return checks.reference_info_nce(z2, z1, t)

    def summed(z1, z2, t):
        return checks.reference_info_nce(z1, z2, t) * len(z1)

    def detached(z1, z2, t):
        return checks.reference_info_nce(z1.detach(), z2.detach(), t)

    def multiplied_by_t(z1, z2, t):
        return checks.reference_info_nce(z1, z2, 1 / t)

    for wrong in (no_normalisation, no_temperature, transposed, summed, detached, multiplied_by_t):
        assert not _verdict(checks.check_info_nce, wrong, capsys), wrong.__name__


def test_info_nce_check_names_symmetric_and_batch_axis(capsys):
    """The SimCLR average of both directions and F.normalize(dim=0) are rejected with their cause named."""
    def symmetric(z1, z2, t):
        return (checks.reference_info_nce(z1, z2, t) + checks.reference_info_nce(z2, z1, t)) / 2

    def batch_axis(z1, z2, t):
        logits = F.normalize(z1, dim=0) @ F.normalize(z2, dim=0).T / t
        return F.cross_entropy(logits, torch.arange(len(z1), device=z1.device))

    for wrong, why in ((symmetric, "average of both directions"), (batch_axis, "normalised over the batch axis")):
        assert not checks.check_info_nce(wrong), wrong.__name__
        assert why in capsys.readouterr().out, wrong.__name__


def test_ista_check_names_gradient_ascent_and_float32_codes(capsys):
    """A step up the gradient diverges: the message names the sign, not eta or the threshold. A code
    z created in float32 meets float64 inputs: PyTorch's dtype error gets its cause appended."""
    def ascent(y, W, lam, steps):                          # (y - W z) is minus the residual: ascent
        eta = 1.0 / torch.linalg.matrix_norm(W, ord=2) ** 2
        z = torch.zeros(*y.shape[:-1], W.shape[1], dtype=y.dtype, device=y.device)
        for _ in range(steps):
            z = F.softshrink(z - eta * (y - z @ W.T) @ W, float(eta * lam))
        return z

    def float32_code(y, W, lam, steps):                    # torch.zeros(K) is float32
        eta = 1.0 / torch.linalg.matrix_norm(W, ord=2) ** 2
        z = torch.zeros(*y.shape[:-1], W.shape[1], device=y.device)
        for _ in range(steps):
            z = F.softshrink(z - eta * (z @ W.T - y) @ W, float(eta * lam))
        return z

    def ista_new_zeros(y, W, lam, steps):                   # correct, written differently: y.new_zeros, a while loop
        eta = torch.linalg.svdvals(W)[0] ** -2
        z, k = y.new_zeros(*y.shape[:-1], W.shape[1]), 0
        while k < steps:
            u = z + eta * (y - z @ W.T) @ W
            z, k = u.sign() * (u.abs() - eta * lam).clamp_min(0), k + 1
        return z

    assert not checks.check_ista(ascent)
    out = capsys.readouterr().out
    assert "that is gradient ascent" in out and "the codes diverge" in out
    assert "check the step eta" not in out                  # the step size is not to blame
    assert not checks.check_ista(float32_code)
    out = capsys.readouterr().out
    assert "float != double (create z with dtype=y.dtype)" in out
    assert "line " in out                                   # the student's line is still named
    assert "dtype=y.dtype, device=y.device" not in out     # no solution line unless asked
    assert _verdict(checks.check_ista, ista_new_zeros, capsys)


def test_info_nce_check_names_multiplied_temperature_and_missing_positive(capsys):
    """Similarities times tau instead of divided, and a denominator without the positive pair, are
    rejected with their cause named."""
    def times_tau(z1, z2, t):
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        return F.cross_entropy(z1 @ z2.T * t, torch.arange(len(z1), device=z1.device))

    def no_positive_below(z1, z2, t):
        sim = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / t
        eye = torch.eye(len(sim), dtype=torch.bool, device=sim.device)
        return (torch.logsumexp(sim.masked_fill(eye, -math.inf), dim=1) - sim.diagonal()).mean()

    for wrong, why in ((times_tau, "multiplied by the temperature"),
                       (no_positive_below, "the positive left out of the denominator")):
        assert not checks.check_info_nce(wrong), wrong.__name__
        assert why in capsys.readouterr().out, wrong.__name__
