"""Seeding and deterministic settings."""

from __future__ import annotations

import os
import random

from ._config import DEFAULT_SEED

__all__ = ["seed_everything", "get_seed", "seed_for", "SEED_ENV_VAR", "EXPERIMENTS_PER_SEED"]

#: Environment variable that overrides the default seed, e.g. ``DL_LABS_SEED=3``.
SEED_ENV_VAR = "DL_LABS_SEED"
#: How many experiment numbers one run seed holds: :func:`seed_for` maps experiment ``k`` of
#: run seed ``s`` to ``s * EXPERIMENTS_PER_SEED + k``.
EXPERIMENTS_PER_SEED = 1_000_000


def get_seed(seed: int | None = None) -> int:
    """Resolve the seed: the argument, else ``DL_LABS_SEED``, else the default (0).

    Raises:
        TypeError: ``seed`` is not an int.
        ValueError: ``seed`` is negative, or ``DL_LABS_SEED`` is not a non-negative integer.
    """
    if seed is None:
        raw = os.environ.get(SEED_ENV_VAR)
        if raw is None or raw.strip() == "":
            return DEFAULT_SEED
        try:
            seed = int(raw)
        except ValueError:
            raise ValueError(
                f"environment variable {SEED_ENV_VAR}: expected a non-negative integer, "
                f"got {raw!r}"
            ) from None
        if not 0 <= seed < 2**32:
            raise ValueError(
                f"environment variable {SEED_ENV_VAR}: expected a non-negative integer, "
                f"got {raw!r}"
            )
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed: expected an int in [0, 2**32), got {seed!r}")
    return seed


def seed_for(k: int, seed: int | None = None) -> int:
    """The seed of the ``k``-th random experiment of a run, derived from the run's seed.

    Notebooks never hard-code a seed for a generator that decides an outcome; they write
    ``torch.Generator().manual_seed(seed_for(0))`` or ``np.random.default_rng(seed_for(3))``,
    so that ``DL_LABS_SEED`` (and a seed sweep over it) moves every such draw, while each
    experiment keeps a stream of its own. With the default run seed 0, experiment ``k``
    gets seed ``k``; with run seed ``s`` it gets ``s * EXPERIMENTS_PER_SEED + k``.

    Args:
        k: the experiment's number, an int in ``[0, EXPERIMENTS_PER_SEED)``.
        seed: the run seed; ``None`` uses ``DL_LABS_SEED`` if set, else 0 (see :func:`get_seed`).

    Returns:
        int: a seed for ``torch.manual_seed``, ``torch.Generator().manual_seed`` or
        ``np.random.default_rng``.

    Raises:
        TypeError: ``k`` is not an int.
        ValueError: ``k`` is out of range; see also :func:`get_seed`.
    """
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k: expected an int experiment number, got {type(k).__name__} {k!r}")
    if not 0 <= k < EXPERIMENTS_PER_SEED:
        raise ValueError(f"k: expected an int in [0, {EXPERIMENTS_PER_SEED}), got {k!r}")
    return get_seed(seed) * EXPERIMENTS_PER_SEED + k


def seed_everything(seed: int | None = None, *, deterministic: bool = True) -> int:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) and ask for deterministic kernels.

    Args:
        seed: the seed; ``None`` uses ``DL_LABS_SEED`` if set, else 0.
        deterministic: if True, ``torch.use_deterministic_algorithms(True, warn_only=True)``
            (some GPU backward passes have no deterministic version: they warn, not fail),
            cuDNN autotuning off, and TF32 off for matrix products and cuDNN convolutions
            (so float32 results agree with the CPU's to float32 precision on every GPU).

    Returns:
        int: the seed actually used (print it when it matters).

    Raises:
        TypeError, ValueError: see :func:`get_seed`.
    """
    seed = get_seed(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is optional for the package
        return seed
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs this for deterministic matmuls on CUDA >= 10.2; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        mkldnn = getattr(torch.backends, "mkldnn", None)
        if mkldnn is not None and hasattr(mkldnn, "deterministic"):
            # oneDNN (CPU convolutions) may otherwise reduce in a run-dependent order
            mkldnn.deterministic = True
        # TF32 (on by default for cuDNN convolutions on Ampere and newer GPUs) rounds float32
        # inputs to 10 mantissa bits: library comparisons at 1e-5 would then mean less on a
        # GPU than on a CPU. Full float32 everywhere.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return seed
