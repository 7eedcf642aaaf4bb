"""Evaluation helpers shared by several labs: accuracy, Frechet distance / mini-FID, MMD."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._validation import check_float, check_tensor

__all__ = ["accuracy", "frechet_distance", "MiniFID", "mini_fid", "mmd2_biased", "mmd2_unbiased"]


def accuracy(logits, y) -> float:
    """Fraction of rows whose arg-max equals the label.

    Args:
        logits: Tensor[N, C] scores (or probabilities).
        y: Tensor[N] integer labels.

    Returns:
        float: accuracy in [0, 1].

    Raises:
        TypeError, ValueError: not tensors, wrong dims or lengths.
    """
    check_tensor("logits", logits, ndim=2)
    check_tensor("y", y, ndim=1)
    if len(logits) != len(y):
        raise ValueError(f"logits and y: expected the same length, got {len(logits)} and {len(y)}")
    if len(y) == 0:
        raise ValueError("y: expected at least one label, got an empty tensor")
    return (logits.argmax(dim=1) == y.to(logits.device)).float().mean().item()


def _as_float64(name: str, features) -> np.ndarray:
    try:
        import torch

        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (N, D) array of features, got shape {array.shape}")
    if array.shape[0] < 2:
        raise ValueError(f"{name}: expected at least 2 rows to fit a Gaussian, got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def frechet_distance(features_a, features_b, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussian fits of two feature sets (the quantity FID reports).

    .. math:: \\|\\mu_a - \\mu_b\\|^2 + \\mathrm{tr}\\big(\\Sigma_a + \\Sigma_b
              - 2 (\\Sigma_a^{1/2} \\Sigma_b \\Sigma_a^{1/2})^{1/2}\\big)

    with ``eps * I`` added to both covariances. The matrix square root uses symmetric
    eigen-decompositions, so it is real and deterministic.

    Args:
        features_a: Tensor/array[N_a, D].
        features_b: Tensor/array[N_b, D].
        eps: ridge added to each covariance (>= 0).

    Returns:
        float: the distance (>= 0 up to rounding).

    Raises:
        ValueError: shapes differ in D, fewer than 2 rows, NaNs, or eps < 0.
    """
    check_float("eps", eps, minimum=0.0)
    a = _as_float64("features_a", features_a)
    b = _as_float64("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features_a and features_b: expected the same feature size, got {a.shape[1]} and {b.shape[1]}"
        )
    ridge = eps * np.eye(a.shape[1])
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.cov(a, rowvar=False) + ridge
    cov_b = np.cov(b, rowvar=False) + ridge
    vals, vecs = np.linalg.eigh(cov_a)
    sqrt_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = sqrt_a @ cov_b @ sqrt_a
    middle = (middle + middle.T) / 2
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0, None)).sum()
    value = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    return float(max(value, 0.0))


@dataclass(frozen=True)
class MiniFID:
    """Result of :func:`mini_fid`.

    Attributes:
        fd_gen: FD(generated, real half B).
        fd_real: FD(real half A, real half B), the floor.
        fd_noise: FD(uniform noise, real half B), the ceiling.
        score: (fd_gen - fd_real) / (fd_noise - fd_real): 0 = like real data, 1 = like noise.
    """

    fd_gen: float
    fd_real: float
    fd_noise: float
    score: float

    def rounded(self, digits: int = 3) -> dict[str, float]:
        return {k: round(v, digits) for k, v in self.__dict__.items()}


def mini_fid(
    extract: Callable, generated, real, *, generator=None, eps: float = 1e-6
) -> MiniFID:
    """The collection's "mini-FID": Frechet distance in a lab-trained classifier's features.

    The held-out ``real`` set is split into two disjoint halves A and B of the size of
    ``generated``; noise is i.i.d. uniform over real's value range with generated's shape.
    FD(generated, B) is reported beside FD(A, B) (floor) and FD(noise, B) (ceiling).

    Args:
        extract: maps a batch Tensor[N, ...] to features Tensor[N, D] (e.g. a classifier's
            penultimate layer); called under ``torch.no_grad()``.
        generated: Tensor[N, ...] samples.
        real: Tensor[M, ...] held-out real data, M >= 2 N (the first 2 N rows are used).
        generator: torch.Generator for the noise (default: a fixed one, seed 0).
        eps: covariance ridge.

    Returns:
        MiniFID: the three distances and the normalised score.

    Raises:
        ValueError: mismatched shapes or too few real samples.
    """
    import torch

    check_tensor("generated", generated)
    check_tensor("real", real)
    n = len(generated)
    if generated.shape[1:] != real.shape[1:]:
        raise ValueError(
            f"generated and real: expected the same sample shape, got {tuple(generated.shape[1:])} "
            f"and {tuple(real.shape[1:])}"
        )
    if len(real) < 2 * n:
        raise ValueError(f"real: expected at least 2 * {n} = {2 * n} samples, got {len(real)}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    half_a, half_b = real[:n], real[n : 2 * n]
    low, high = real.min().item(), real.max().item()
    noise = torch.rand(generated.shape, generator=generator) * (high - low) + low
    with torch.no_grad():
        feats = {
            name: extract(batch.to(real.device)).detach()
            for name, batch in (("gen", generated), ("a", half_a), ("b", half_b), ("noise", noise))
        }
    fd_gen = frechet_distance(feats["gen"], feats["b"], eps)
    fd_real = frechet_distance(feats["a"], feats["b"], eps)
    fd_noise = frechet_distance(feats["noise"], feats["b"], eps)
    score = (fd_gen - fd_real) / (fd_noise - fd_real) if fd_noise > fd_real else float("nan")
    return MiniFID(fd_gen, fd_real, fd_noise, score)


def _gaussian_kernel_sums(X, Y, sigma: float):
    """Validated float64 CPU copies of X and Y, and the kernel matrices K_XX, K_YY, K_XY."""
    import torch

    check_tensor("X", X, ndim=2)
    check_tensor("Y", Y, ndim=2)
    check_float("sigma", sigma, minimum=0.0, strict_min=True)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y: expected the same dimension, got {X.shape[1]} and {Y.shape[1]}")
    X, Y = X.detach().cpu().double(), Y.detach().cpu().double()  # float64 on the CPU: MPS has none

    def kernel(A, B):
        return torch.exp(-torch.cdist(A, B).pow(2) / (2 * sigma**2))

    return kernel(X, X), kernel(Y, Y), kernel(X, Y)


def mmd2_biased(X, Y, sigma: float) -> float:
    """Biased estimate of the squared MMD with a Gaussian kernel k(a, b) = exp(-|a-b|^2 / (2 sigma^2)).

    MMD^2 = mean k(X, X) + mean k(Y, Y) - 2 mean k(X, Y) (diagonals included, hence biased: even two
    samples of one distribution give about (2 - 2 mean k) / N > 0).

    Args:
        X: Tensor[N, D]; Y: Tensor[M, D].
        sigma: kernel bandwidth (> 0).

    Inputs on any device are copied to the CPU and computed in float64 there (Apple's MPS
    has no float64).

    Returns:
        float: MMD^2 (>= 0).
    """
    kxx, kyy, kxy = _gaussian_kernel_sums(X, Y, sigma)
    return max(float(kxx.mean() + kyy.mean() - 2 * kxy.mean()), 0.0)


def mmd2_unbiased(X, Y, sigma: float) -> float:
    """Unbiased estimate of the squared MMD (Gretton et al. 2012) with the same Gaussian kernel.

    The within-sample means skip the diagonal k(a_i, a_i) = 1, so the expected value is 0 when X and Y
    come from one distribution; an estimate can then be slightly negative.

    Args:
        X: Tensor[N, D] with N >= 2; Y: Tensor[M, D] with M >= 2.
        sigma: kernel bandwidth (> 0).

    Inputs on any device are computed in float64 on the CPU, as in :func:`mmd2_biased`.

    Returns:
        float: MMD^2 (may be < 0).
    """
    for name, T in (("X", X), ("Y", Y)):
        if getattr(T, "ndim", None) == 2 and len(T) < 2:
            raise ValueError(f"{name}: expected at least 2 rows for the unbiased estimate, got {len(T)}")
    kxx, kyy, kxy = _gaussian_kernel_sums(X, Y, sigma)
    n, m = len(kxx), len(kyy)
    within = (kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1))
    return float(within - 2 * kxy.mean())
