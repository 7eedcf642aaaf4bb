"""Where the collection keeps its data."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DATA_ENV_VAR = "DL_LABS_DATA"


def _repository_data_dir() -> Path | None:
    root = Path(__file__).resolve().parents[2]
    candidate = root / "data"
    if (candidate / "README.md").is_file() and (root / "pyproject.toml").is_file():
        return candidate
    return None


def data_dir(create: bool = True) -> Path:
    """Return the data folder: ``$DL_LABS_DATA`` if set, else the repository's ``data/``
    (when ``utils`` is used from a checkout), else a per-user cache folder
    (``$XDG_CACHE_HOME/dl-labs`` or ``~/.cache/dl-labs``, e.g. on Colab).

    Args:
        create: create the folder if it does not exist.

    Returns:
        Path: the folder.
    """
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        path = Path(env).expanduser()
    else:
        path = _repository_data_dir() or (
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dl-labs"
        )
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path) -> str:
    """Return the SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
