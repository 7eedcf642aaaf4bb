"""Dataset loaders and generators. Every split is fixed (it does not depend on the seed).

Loaders return float32 inputs (images (N, C, H, W) in [0, 1]) and int64 labels:

========================  =========================================  ======================
function                  shapes                                     source
========================  =========================================  ======================
load_digits()             (1437 | 360, 1, 8, 8)                      scikit-learn, bundled
load_mnist1d()            (4000 | 1000, 40)                          mnist1d, generated
load_fashion_mnist()      (60000 | 10000, 1, 28, 28)                 Debian pkg / download
load_names()              4182 / 465 / 516 names                     names package
make_blobs/spiral/...     (N, 2)                                     generated from a seed
make_segmentation_scenes  (N, 1, 64, 64) + masks (N, 64, 64)         generated from a seed
make_detection_canvases   (N, 1, 64, 64) + boxes, labels             generated from a seed
========================  =========================================  ======================

``python -m utils.data prepare`` fetches/generates everything once (``make data`` runs it).
"""

from __future__ import annotations

from ._paths import DATA_ENV_VAR, data_dir
from .images import (
    FASHION_MNIST_CLASSES,
    ImageDataset,
    ensure_fashion_mnist,
    load_digits,
    load_fashion_mnist,
    load_mnist1d,
    train_val_split,
)
from .names import BOUNDARY, IGNORE_INDEX, NamesData, bigram_nll, load_names
from .synthetic import (
    SHAPE_CLASSES,
    DetectionCanvases,
    SegmentationScenes,
    make_detection_canvases,
    make_segmentation_scenes,
)
from .toy import (
    make_blobs,
    make_gaussian_ring,
    make_moons,
    make_rings,
    make_spiral,
    ring_centers,
)

__all__ = [
    "DATA_ENV_VAR",
    "data_dir",
    "ImageDataset",
    "load_digits",
    "load_mnist1d",
    "load_fashion_mnist",
    "ensure_fashion_mnist",
    "train_val_split",
    "FASHION_MNIST_CLASSES",
    "NamesData",
    "load_names",
    "bigram_nll",
    "BOUNDARY",
    "IGNORE_INDEX",
    "make_blobs",
    "make_spiral",
    "make_moons",
    "make_rings",
    "make_gaussian_ring",
    "ring_centers",
    "SHAPE_CLASSES",
    "SegmentationScenes",
    "DetectionCanvases",
    "make_segmentation_scenes",
    "make_detection_canvases",
    "dataset_status",
]


def dataset_status(*, download: bool = False) -> dict[str, str]:
    """Check every dataset the labs use without raising.

    Args:
        download: allow a one-time download of Fashion-MNIST when it is missing.

    Returns:
        dict[str, str]: dataset name -> ``"ok (...)"`` or ``"MISSING: <how to get it>"``.
    """
    status: dict[str, str] = {}
    probes = {
        "digits": lambda: repr(load_digits()),
        "mnist1d": lambda: repr(load_mnist1d()),
        "fashion_mnist": lambda: (ensure_fashion_mnist(download=download) and "4 files, SHA-256 verified"),
        "names": lambda: repr(load_names()),
    }
    for name, probe in probes.items():
        try:
            status[name] = "ok: " + probe()
        except Exception as exc:  # report, never raise: this feeds the setup notebook
            first = str(exc).splitlines()
            status[name] = "MISSING: " + " ".join(line.strip() for line in first)
    return status
