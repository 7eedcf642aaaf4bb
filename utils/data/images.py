"""Image and signal datasets: scikit-learn digits, MNIST-1D and Fashion-MNIST."""

from __future__ import annotations

import gzip
import random
import shutil
import urllib.error
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._validation import check_float, check_int
from ._paths import data_dir, sha256_file

__all__ = [
    "ImageDataset",
    "load_digits",
    "load_mnist1d",
    "load_fashion_mnist",
    "train_val_split",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SHA256",
    "DEBIAN_FASHION_MNIST_DIR",
]

#: Fixed seed of every split and subsample (independent of ``DL_LABS_SEED``).
SPLIT_SEED = 0

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: SHA-256 of the decompressed official files (the content torchvision also reads).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: SHA-256 of the cached MNIST-1D arrays (x, y, x_test, y_test as float32/int64 bytes).
MNIST1D_SHA256 = "b09ad3e22c854bc5a1948b85c373aab653ceb38c9170f5ed05b7d054e4160db9"
#: When the bytes differ (another CPU, NumPy or SciPy rounds the generated signals differently):
#: the labels must be identical and the signals equal up to rounding, tested by these sums
#: (float64): sum of x^2, sum of |x|, and sum of x^2 weighted by the row number / rows (order).
MNIST1D_LABELS_SHA256 = "6feec4a017698c7fe237c8854cbd2e338c6dd5c16240f6fa79daefaaa129e169"
MNIST1D_SIGNAL_SUMS = {
    "x": (159248.25384650432, 118338.29510155294, 80176.67416838797),
    "x_test": (40751.74617684711, 29977.87754976499, 20411.05622765779),
}
MNIST1D_RTOL = 1e-5


@dataclass(frozen=True)
class ImageDataset:
    """A fixed train/test split of float32 inputs and int64 labels.

    Attributes:
        name: dataset name.
        X_train: Tensor[N_train, ...] float32 (images: (N, C, H, W) in [0, 1]).
        y_train: Tensor[N_train] int64 labels.
        X_test: Tensor[N_test, ...] float32.
        y_test: Tensor[N_test] int64.
        classes: class names, index = label.
    """

    name: str
    X_train: object
    y_train: object
    X_test: object
    y_test: object
    classes: tuple[str, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}: X_train {tuple(self.X_train.shape)} "
            f"{str(self.X_train.dtype).replace('torch.', '')}, X_test {tuple(self.X_test.shape)}, "
            f"{self.num_classes} classes)"
        )


def _to_tensors(*arrays, dtypes):
    import torch

    return tuple(torch.as_tensor(np.ascontiguousarray(a), dtype=d) for a, d in zip(arrays, dtypes, strict=False))


def train_val_split(X, y, val_fraction: float = 0.1, seed: int = SPLIT_SEED):
    """Carve a validation set out of training data with a fixed permutation.

    Args:
        X: Tensor[N, ...] inputs.
        y: Tensor[N] labels.
        val_fraction: fraction in (0, 1) that goes to validation.
        seed: seed of the permutation (fixed by default, not ``DL_LABS_SEED``).

    Returns:
        tuple: (X_train, y_train, X_val, y_val).

    Raises:
        ValueError: lengths differ or ``val_fraction`` is not in (0, 1).
    """
    import torch

    check_float("val_fraction", val_fraction, minimum=0.0, maximum=1.0, strict_min=True)
    if val_fraction >= 1.0:
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    if len(X) != len(y):
        raise ValueError(f"X and y: expected the same length, got {len(X)} and {len(y)}")
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(val_fraction * len(X))))
    if n_val >= len(X):
        raise ValueError(
            f"val_fraction: {val_fraction} of {len(X)} rows leaves no training rows"
        )
    val, train = perm[:n_val], perm[n_val:]
    return X[train], y[train], X[val], y[val]


def load_digits(test_fraction: float = 0.2) -> ImageDataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, bundled, offline).

    The split is stratified with a fixed seed: 1,437 train / 360 test by default.

    Returns:
        ImageDataset: X (N, 1, 8, 8) float32 in [0, 1], y (N,) int64 in 0..9.
    """
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    check_float("test_fraction", test_fraction, minimum=0.0, maximum=1.0, strict_min=True)
    bunch = datasets.load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    X_tr, X_te, y_tr, y_te = train_test_split(
        images, bunch.target, test_size=test_fraction, random_state=SPLIT_SEED,
        stratify=bunch.target,
    )
    import torch

    X_tr, X_te = _to_tensors(X_tr, X_te, dtypes=(torch.float32, torch.float32))
    y_tr, y_te = _to_tensors(y_tr, y_te, dtypes=(torch.int64, torch.int64))
    return ImageDataset("digits", X_tr, y_tr, X_te, y_te, tuple(str(i) for i in range(10)))


def _mnist1d_arrays() -> dict[str, np.ndarray]:
    """Generate MNIST-1D offline with the package defaults, leaving global RNGs untouched."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ImportError(
            "MNIST-1D needs the 'mnist1d' package: pip install mnist1d==0.0.2.post1 "
            "(it is in requirements.txt; `make` installs it)"
        ) from exc
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(get_dataset_args())  # reseeds random and numpy internally
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x": raw["x"].astype(np.float32),
        "y": raw["y"].astype(np.int64),
        "x_test": raw["x_test"].astype(np.float32),
        "y_test": raw["y_test"].astype(np.int64),
    }


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for key in ("x", "y", "x_test", "y_test"):
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def _signal_sums(x: np.ndarray) -> tuple[float, float, float]:
    v = x.astype(np.float64)
    rows = np.arange(1, len(v) + 1, dtype=np.float64)[:, None]
    return float((v**2).sum()), float(np.abs(v).sum()), float(((v**2) * rows).sum() / len(v))


def mnist1d_mismatch(arrays: dict[str, np.ndarray]) -> str | None:
    """Why the arrays are not the reference MNIST-1D (None: they are). Bitwise equal, or the
    same labels and the same signals up to floating-point rounding (relative 1e-5 on the sums
    of :data:`MNIST1D_SIGNAL_SUMS`)."""
    import hashlib

    if _arrays_digest(arrays) == MNIST1D_SHA256:
        return None
    shapes = {k: arrays[k].shape for k in ("x", "y", "x_test", "y_test")}
    if shapes != {"x": (4000, 40), "y": (4000,), "x_test": (1000, 40), "y_test": (1000,)}:
        return f"shapes {shapes}, expected x (4000, 40), y (4000,), x_test (1000, 40), y_test (1000,)"
    labels = np.ascontiguousarray(arrays["y"].astype(np.int64)).tobytes() + \
        np.ascontiguousarray(arrays["y_test"].astype(np.int64)).tobytes()
    if hashlib.sha256(labels).hexdigest() != MNIST1D_LABELS_SHA256:
        return "the labels differ from the reference (a different generator or its arguments)"
    for key, expected in MNIST1D_SIGNAL_SUMS.items():
        got = _signal_sums(arrays[key])
        if not np.allclose(got, expected, rtol=MNIST1D_RTOL, atol=0):
            return (f"the signals {key} differ beyond rounding: sums (x^2, |x|, weighted x^2) "
                    f"{tuple(round(g, 3) for g in got)}, expected {tuple(round(e, 3) for e in expected)}")
    return None


def load_mnist1d() -> ImageDataset:
    """MNIST-1D (Greydanus & Kobak): 4,000 train / 1,000 test signals of length 40, 10 classes.

    Generated offline by ``mnist1d.data.make_dataset(get_dataset_args())`` and cached in
    ``data_dir()/mnist1d.npz`` (the package's ``get_dataset`` downloads; it is not used).

    Returns:
        ImageDataset: X (N, 40) float32 (roughly zero-mean, not in [0, 1]: these are signals,
        not images), y (N,) int64. Use ``X[:, None, :]`` for a 1-D CNN.
    """
    import torch

    path = data_dir() / "mnist1d.npz"
    arrays = None
    if path.is_file():
        try:
            with np.load(path) as cached:
                arrays = {k: cached[k] for k in ("x", "y", "x_test", "y_test")}
            if mnist1d_mismatch(arrays) is not None:
                arrays = None  # stale cache: regenerate
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            arrays = None  # corrupt cache: regenerate
    if arrays is None:
        arrays = _mnist1d_arrays()
        problem = mnist1d_mismatch(arrays)
        if problem is not None:
            from importlib import metadata

            try:
                installed = metadata.version("mnist1d")
            except metadata.PackageNotFoundError:
                installed = "unknown"
            raise RuntimeError(
                f"MNIST-1D: the generated data are not the course's: {problem}. The labs and their "
                f"stored results use mnist1d 0.0.2.post1 (installed: {installed}); "
                "pip install 'mnist1d>=0.0.2,<0.0.3'"
            )
        np.savez(path, **arrays)
    X_tr, X_te = _to_tensors(arrays["x"], arrays["x_test"], dtypes=(torch.float32, torch.float32))
    y_tr, y_te = _to_tensors(arrays["y"], arrays["y_test"], dtypes=(torch.int64, torch.int64))
    return ImageDataset("mnist1d", X_tr, y_tr, X_te, y_te, tuple(str(i) for i in range(10)))


def _fashion_raw_dir(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def _verified(raw: Path) -> bool:
    return all(
        (raw / name).is_file() and sha256_file(raw / name) == digest
        for name, digest in FASHION_MNIST_SHA256.items()
    )


def ensure_fashion_mnist(root: Path | None = None, *, download: bool = True) -> Path:
    """Make sure the decompressed, checksum-verified Fashion-MNIST files exist.

    Looks in ``root/FashionMNIST/raw`` (torchvision's layout; ``root`` defaults to
    :func:`data_dir`), then decompresses Debian's ``dataset-fashion-mnist`` package from
    /usr/share/datasets/fashion-mnist, then (if ``download``) lets torchvision download it.

    Returns:
        Path: the ``raw`` folder with the four verified files.

    Raises:
        FileNotFoundError: no copy could be found or fetched; the message says how to get one.
        RuntimeError: files exist but their checksums are wrong.
    """
    root = Path(root) if root is not None else data_dir()
    raw = _fashion_raw_dir(root)
    if _verified(raw):
        return raw
    if all((DEBIAN_FASHION_MNIST_DIR / f"{name}.gz").is_file() for name in FASHION_MNIST_SHA256):
        raw.mkdir(parents=True, exist_ok=True)
        for name in FASHION_MNIST_SHA256:
            with gzip.open(DEBIAN_FASHION_MNIST_DIR / f"{name}.gz", "rb") as src:
                with open(raw / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    elif download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(root), train=True, download=True)
            FashionMNIST(str(root), train=False, download=True)
        except (urllib.error.URLError, OSError, RuntimeError, ImportError):
            pass
    if _verified(raw):
        return raw
    bad = [n for n in FASHION_MNIST_SHA256 if (raw / n).is_file()]
    if bad:
        raise RuntimeError(
            f"Fashion-MNIST files in {raw} fail their SHA-256 check ({', '.join(bad)}); "
            "delete that folder and run `make data` again"
        )
    raise FileNotFoundError(
        "Fashion-MNIST not found. Get it in one of these ways:\n"
        "  * Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist  (then `make data`)\n"
        "  * online once: python -m utils.data prepare  (torchvision downloads it into "
        f"{root})\n"
        "  * or copy the four decompressed files into "
        f"{raw} (names: {', '.join(FASHION_MNIST_SHA256)})"
    )


def _read_idx(path: Path) -> np.ndarray:
    with open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _subsample(n_total: int, n: int | None, name: str) -> np.ndarray | None:
    if n is None:
        return None
    check_int(name, n, minimum=1)
    if n > n_total:
        raise ValueError(f"{name}: expected at most {n_total}, got {n}")
    return np.sort(np.random.default_rng(SPLIT_SEED).permutation(n_total)[:n])


def load_fashion_mnist(
    n_train: int | None = None, n_test: int | None = None, *, download: bool = True
) -> ImageDataset:
    """Fashion-MNIST (Zalando): 60,000 train / 10,000 test 28x28 grey images, 10 classes.

    Args:
        n_train: keep a fixed random subset of this many training images (None: all).
        n_test: the same for the test set.
        download: allow a one-time torchvision download when no local copy exists.

    Returns:
        ImageDataset: X (N, 1, 28, 28) float32 in [0, 1], y (N,) int64.

    Raises:
        FileNotFoundError: the data are not available (the message says how to get them).
        ValueError: ``n_train``/``n_test`` out of range.
    """
    import torch

    for arg, n, total in (("n_train", n_train, 60000), ("n_test", n_test, 10000)):
        _subsample(total, n, arg)  # validate before reading anything
    raw = ensure_fashion_mnist(download=download)
    splits = []
    for prefix, n, arg in (("train", n_train, "n_train"), ("t10k", n_test, "n_test")):
        images = _read_idx(raw / f"{prefix}-images-idx3-ubyte")
        labels = _read_idx(raw / f"{prefix}-labels-idx1-ubyte")
        keep = _subsample(len(labels), n, arg)
        if keep is not None:
            images, labels = images[keep], labels[keep]
        X = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        splits += [X, torch.from_numpy(labels.astype(np.int64))]
    return ImageDataset("fashion_mnist", *splits, FASHION_MNIST_CLASSES)
