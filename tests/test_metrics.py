from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from utils.metrics import MiniFID, accuracy, frechet_distance, mini_fid, mmd2_biased, mmd2_unbiased

# ---------------------------------------------------------------------------- accuracy


def test_accuracy_matches_manual():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 5, generator=g)
    y = torch.randint(0, 5, (40,), generator=g)
    manual = sum(int(row.argmax()) == int(t) for row, t in zip(logits, y, strict=True)) / 40
    result = accuracy(logits, y)
    assert isinstance(result, float)
    assert result == pytest.approx(manual)


def test_accuracy_extremes():
    logits = torch.tensor([[2.0, 1.0], [0.1, 0.3], [5.0, -1.0]])
    assert accuracy(logits, torch.tensor([0, 0, 0])) == pytest.approx(2 / 3)
    assert accuracy(logits, torch.tensor([0, 1, 0])) == 1.0
    assert accuracy(logits, torch.tensor([1, 0, 1])) == 0.0
    assert accuracy(logits.softmax(dim=1), torch.tensor([0, 1, 0])) == 1.0


@pytest.mark.parametrize(
    ("logits", "y", "error"),
    [
        ([[1.0, 0.0]], torch.tensor([0]), TypeError),
        (torch.tensor([[1.0, 0.0]]), [0], TypeError),
        (np.zeros((2, 2)), torch.tensor([0, 1]), TypeError),
        (torch.tensor([1.0, 0.0]), torch.tensor([0, 1]), ValueError),
        (torch.zeros(2, 2, 2), torch.tensor([0, 1]), ValueError),
        (torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long), ValueError),
        (torch.zeros(3, 3), torch.tensor([0, 1]), ValueError),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), ValueError),
    ],
)
def test_accuracy_bad_input(logits, y, error):
    with pytest.raises(error):
        accuracy(logits, y)


# ---------------------------------------------------------------------------- frechet_distance


def _closed_form(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    ridge = eps * np.eye(a.shape[1])
    cov_a = np.cov(a, rowvar=False) + ridge
    cov_b = np.cov(b, rowvar=False) + ridge
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    covmean = np.real(covmean)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


@pytest.fixture(scope="module")
def gaussians():
    rng = np.random.default_rng(0)
    d = 6
    A = rng.normal(size=(d, d))
    B = rng.normal(size=(d, d)) * 0.5
    a = rng.normal(size=(400, d)) @ A + 1.0
    b = rng.normal(size=(300, d)) @ B - 0.5
    return a, b


def test_frechet_identical_sets_is_zero(gaussians):
    a, _ = gaussians
    scale = np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, a) < 1e-6 * scale
    assert frechet_distance(torch.tensor(a), torch.tensor(a)) < 1e-6 * scale


def test_frechet_matches_scipy_closed_form(gaussians):
    a, b = gaussians
    expected = _closed_form(a, b)
    assert expected > 1.0
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, b, eps=0.1) == pytest.approx(_closed_form(a, b, 0.1), rel=1e-6)


def test_frechet_accepts_tensors_and_float32(gaussians):
    a, b = gaussians
    ref = frechet_distance(a, b)
    assert frechet_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(ref, rel=1e-12)
    assert frechet_distance(torch.tensor(a, dtype=torch.float32), b) == pytest.approx(
        ref, rel=1e-5
    )
    t = torch.tensor(a, requires_grad=True)
    assert frechet_distance(t, b) == pytest.approx(ref, rel=1e-12)


def test_frechet_mean_shift_adds_squared_norm(gaussians):
    a, b = gaussians
    d = np.array([1.0, -2.0, 0.5, 3.0, 0.0, -1.5])
    assert frechet_distance(a + d, a) == pytest.approx(float(d @ d), rel=1e-6)
    base = frechet_distance(a, b)
    shifted = frechet_distance(a + d, b + d)
    assert shifted == pytest.approx(base, rel=1e-9)


def test_frechet_is_symmetric(gaussians):
    a, b = gaussians
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_frechet_one_feature():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, (500, 1))
    b = rng.normal(2.0, 3.0, (500, 1))
    va, vb = np.var(a, ddof=1) + 1e-6, np.var(b, ddof=1) + 1e-6
    expected = (a.mean() - b.mean()) ** 2 + va + vb - 2 * np.sqrt(va * vb)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("a", "b", "kwargs"),
    [
        (np.zeros(5), np.zeros((5, 1)), {}),
        (np.zeros((5, 2, 2)), np.zeros((5, 2, 2)), {}),
        (np.ones((5, 3)), np.ones((5, 4)), {}),
        (np.ones((1, 3)), np.ones((5, 3)), {}),
        (np.ones((5, 3)), np.ones((1, 3)), {}),
        (np.full((5, 3), np.nan), np.ones((5, 3)), {}),
        (np.ones((5, 3)), np.array([[np.inf, 0, 0]] * 5), {}),
        (np.ones((5, 3)), np.ones((5, 3)), {"eps": -1e-3}),
    ],
)
def test_frechet_bad_input(a, b, kwargs):
    with pytest.raises(ValueError):
        frechet_distance(a, b, **kwargs)


# ---------------------------------------------------------------------------- mini_fid


def _flat(x):
    return x.flatten(1)


@pytest.fixture(scope="module")
def real():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1200, 2, 2, generator=g) * 0.5 + 0.2


def test_mini_fid_real_like_is_near_zero(real):
    g = torch.Generator().manual_seed(5)
    generated = torch.randn(400, 2, 2, generator=g) * 0.5 + 0.2
    result = mini_fid(_flat, generated, real)
    assert isinstance(result, MiniFID)
    assert result.fd_real < result.fd_noise
    assert abs(result.score) < 0.1
    assert result.score == pytest.approx(
        (result.fd_gen - result.fd_real) / (result.fd_noise - result.fd_real)
    )


def test_mini_fid_noise_is_near_one(real):
    low, high = real.min(), real.max()
    g = torch.Generator().manual_seed(7)
    generated = torch.rand(400, 2, 2, generator=g) * (high - low) + low
    result = mini_fid(_flat, generated, real)
    assert result.score == pytest.approx(1.0, abs=0.2)
    assert result.fd_real <= result.fd_gen


def test_mini_fid_bad_samples(real):
    generated = torch.full((400, 2, 2), 3.0) + torch.randn(400, 2, 2) * 0.01
    result = mini_fid(_flat, generated, real)
    assert result.fd_real <= result.fd_gen
    assert result.score > 0.5
    rounded = result.rounded(2)
    assert set(rounded) == {"fd_gen", "fd_real", "fd_noise", "score"}
    assert rounded["fd_gen"] == round(result.fd_gen, 2)


def test_mini_fid_uses_first_2n_real_rows(real):
    generated = real[600:800] + 0.1
    a = mini_fid(_flat, generated, real[:400])
    b = mini_fid(_flat, generated, real)
    assert a.fd_gen == b.fd_gen and a.fd_real == b.fd_real


def test_mini_fid_deterministic(real):
    generated = real[:300] * 1.5
    assert mini_fid(_flat, generated, real) == mini_fid(_flat, generated, real)
    g1 = torch.Generator().manual_seed(1)
    other = mini_fid(_flat, generated, real, generator=g1)
    assert other.fd_gen == mini_fid(_flat, generated, real).fd_gen
    assert other.fd_noise != mini_fid(_flat, generated, real).fd_noise


def test_mini_fid_calls_extract_without_grad(real):
    seen = []

    def extract(x):
        seen.append(torch.is_grad_enabled())
        return x.flatten(1)

    mini_fid(extract, real[:100], real)
    assert seen == [False] * 4


def test_mini_fid_too_few_real(real):
    with pytest.raises(ValueError, match="2 \\* 400"):
        mini_fid(_flat, real[:400], real[:799])


def test_mini_fid_shape_mismatch(real):
    with pytest.raises(ValueError):
        mini_fid(_flat, torch.zeros(10, 4), real)
    with pytest.raises(ValueError):
        mini_fid(_flat, torch.zeros(10, 2, 3), real)


def test_mini_fid_not_tensors(real):
    with pytest.raises(TypeError):
        mini_fid(_flat, np.zeros((10, 2, 2)), real)
    with pytest.raises(TypeError):
        mini_fid(_flat, real[:10], real.numpy())


# ---------------------------------------------------------------------------- mmd2_biased


def _mmd_loops(X: np.ndarray, Y: np.ndarray, sigma: float) -> float:
    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma**2))

    kxx = sum(k(a, b) for a in X for b in X) / (len(X) ** 2)
    kyy = sum(k(a, b) for a in Y for b in Y) / (len(Y) ** 2)
    kxy = sum(k(a, b) for a in X for b in Y) / (len(X) * len(Y))
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
def test_mmd_matches_double_loop(sigma):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))
    Y = rng.normal(size=(4, 3)) + 0.7
    result = mmd2_biased(torch.tensor(X, dtype=torch.float32), torch.tensor(Y), sigma)
    assert isinstance(result, float)
    expected = _mmd_loops(X.astype(np.float32).astype(np.float64), Y, sigma)
    assert result == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_mmd_zero_for_identical_sets():
    X = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    assert abs(mmd2_biased(X, X.clone(), 1.0)) < 1e-10


def test_mmd_grows_with_shift():
    X = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    small = mmd2_biased(X, X + 0.1, 1.0)
    large = mmd2_biased(X, X + 1.0, 1.0)
    assert 0 < small < large


@pytest.mark.parametrize(("sigma", "error"), [(0.0, ValueError), (-1.0, ValueError),
                                              (float("nan"), ValueError), ("1", TypeError)])
def test_mmd_bad_sigma(sigma, error):
    with pytest.raises(error):
        mmd2_biased(torch.zeros(3, 2), torch.zeros(3, 2), sigma)


def test_mmd_bad_shapes():
    with pytest.raises(ValueError, match="same dimension"):
        mmd2_biased(torch.zeros(3, 2), torch.zeros(3, 3), 1.0)
    with pytest.raises(ValueError):
        mmd2_biased(torch.zeros(3), torch.zeros(3, 1), 1.0)
    with pytest.raises(TypeError):
        mmd2_biased(np.zeros((3, 2)), torch.zeros(3, 2), 1.0)


def test_mmd2_biased_computes_in_float64_on_the_cpu(monkeypatch):
    """MPS has no float64: the float64 work must happen after the move to the CPU."""
    casts = []
    original = torch.Tensor.double

    def spy(self, *args, **kwargs):
        casts.append(self.device.type)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "double", spy)
    moves = []
    original_cpu = torch.Tensor.cpu

    def spy_cpu(self, *args, **kwargs):
        moves.append(len(casts))  # how many casts happened before this move
        return original_cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", spy_cpu)
    mmd2_biased(torch.zeros(4, 2), torch.ones(4, 2), 1.0)
    assert casts == ["cpu", "cpu"] and moves == [0, 1], (casts, moves)


# ---------------------------------------------------------------------------- mmd2_unbiased


def _mmd_unbiased_loops(X: np.ndarray, Y: np.ndarray, sigma: float) -> float:
    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma**2))

    n, m = len(X), len(Y)
    kxx = sum(k(X[i], X[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(Y[i], Y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(a, b) for a in X for b in Y) / (n * m)
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
def test_mmd_unbiased_matches_double_loop(sigma):
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.4
    assert mmd2_unbiased(torch.tensor(X), torch.tensor(Y), sigma) == pytest.approx(
        _mmd_unbiased_loops(X, Y, sigma), rel=1e-9, abs=1e-12)


def test_mmd_unbiased_removes_the_biased_floor():
    """Two samples of one distribution: the biased estimate sits near its 2/N-type floor, the unbiased
    one averages 0 (over 40 pairs its mean is far below the biased mean and within noise of 0)."""
    gen = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(40, 2, generator=gen), torch.randn(40, 2, generator=gen)) for _ in range(40)]
    biased = np.mean([mmd2_biased(a, b, 1.0) for a, b in pairs])
    unbiased = [mmd2_unbiased(a, b, 1.0) for a, b in pairs]
    assert min(unbiased) < 0 < biased
    assert abs(np.mean(unbiased)) < 0.2 * biased


def test_mmd_unbiased_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd2_unbiased(torch.zeros(1, 2), torch.zeros(3, 2), 1.0)
