"""Seeded 2-D toy datasets (spiral, moons, rings, 8-Gaussian ring)."""

from __future__ import annotations

import numpy as np

from .._validation import check_float, check_int

__all__ = [
    "make_blobs", "make_spiral", "make_moons", "make_rings", "make_gaussian_ring", "ring_centers",
]


def _tensors(X: np.ndarray, y: np.ndarray):
    import torch

    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)


def make_spiral(n_per_class: int = 100, n_classes: int = 3, noise: float = 0.2, seed: int = 0):
    """Interleaved spiral arms (the classic "not linearly separable" set).

    Arm ``k`` has radius r in [0, 1] and angle 4r + 2*pi*k/n_classes plus Gaussian noise of
    std ``noise`` on the angle.

    Returns:
        tuple: X Tensor[n_per_class * n_classes, 2] float32, y Tensor[N] int64 (arm index).
    """
    check_int("n_per_class", n_per_class, minimum=1)
    check_int("n_classes", n_classes, minimum=2)
    check_float("noise", noise, minimum=0.0)
    rng = np.random.default_rng(seed)
    r = np.tile(np.linspace(0.0, 1.0, n_per_class), n_classes)
    k = np.repeat(np.arange(n_classes), n_per_class)
    theta = 4.0 * r + 2 * np.pi * k / n_classes + rng.normal(0.0, noise, r.shape)
    X = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    return _tensors(X, k)


def make_moons(n: int = 500, noise: float = 0.1, seed: int = 0):
    """Two interleaving half circles (scikit-learn's ``make_moons``), seeded.

    Returns:
        tuple: X Tensor[n, 2] float32, y Tensor[n] int64 in {0, 1}.
    """
    from sklearn.datasets import make_moons as sk_moons

    check_int("n", n, minimum=2)
    check_float("noise", noise, minimum=0.0)
    X, y = sk_moons(n_samples=n, noise=noise, random_state=seed)
    return _tensors(X, y)


def make_rings(n: int = 500, noise: float = 0.05, factor: float = 0.5, seed: int = 0):
    """Two concentric rings (scikit-learn's ``make_circles``), seeded.

    Returns:
        tuple: X Tensor[n, 2] float32, y Tensor[n] int64 (1 = inner ring).
    """
    from sklearn.datasets import make_circles

    check_int("n", n, minimum=2)
    check_float("noise", noise, minimum=0.0)
    check_float("factor", factor, minimum=0.0, maximum=1.0, strict_min=True)
    X, y = make_circles(n_samples=n, noise=noise, factor=factor, random_state=seed)
    return _tensors(X, y)


def ring_centers(n_modes: int = 8, radius: float = 2.0):
    """Centres of the Gaussian-ring modes: Tensor[n_modes, 2], mode k at angle 2*pi*k/n_modes."""
    import torch

    check_int("n_modes", n_modes, minimum=1)
    check_float("radius", radius, minimum=0.0, strict_min=True)
    angles = 2 * np.pi * np.arange(n_modes) / n_modes
    return torch.as_tensor(
        np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1), dtype=torch.float32
    )


def make_gaussian_ring(
    n: int = 2000, n_modes: int = 8, radius: float = 2.0, sigma: float = 0.05, seed: int = 0
):
    """Mixture of ``n_modes`` isotropic Gaussians (std ``sigma``) on a circle (GAN benchmark).

    Returns:
        tuple: X Tensor[n, 2] float32, y Tensor[n] int64 (the mode of each sample).
    """
    check_int("n", n, minimum=1)
    check_float("sigma", sigma, minimum=0.0, strict_min=True)
    centers = ring_centers(n_modes, radius).numpy()
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_modes, n)
    X = centers[y] + rng.normal(0.0, sigma, (n, 2))
    return _tensors(X, y)


def make_blobs(n: int = 200, centers: int = 2, std: float = 1.0, seed: int = 0):
    """Isotropic Gaussian blobs in 2-D (scikit-learn's ``make_blobs``), seeded.

    Args:
        n: number of points.
        centers: number of blobs (= classes).
        std: standard deviation of each blob.
        seed: seed of the centres and the points.

    Returns:
        tuple: X Tensor[n, 2] float32, y Tensor[n] int64 (blob index).
    """
    from sklearn.datasets import make_blobs as sk_blobs

    check_int("n", n, minimum=2)
    check_int("centers", centers, minimum=1)
    check_float("std", std, minimum=0.0, strict_min=True)
    X, y = sk_blobs(n_samples=n, centers=centers, cluster_std=std, random_state=seed)
    return _tensors(X, y)
