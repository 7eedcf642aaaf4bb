"""Shared helpers for the deep-learning lab notebooks.

Every lab imports the same way::

    from utils import checks, data, metrics, plotting, get_device, seed_everything

Submodules are imported lazily, so tools that need no torch (``python -m utils.labs``)
start fast and the package itself does not require torch (Colab keeps its own build).
Nothing runs at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "checks",
    "data",
    "device",
    "labs",
    "metrics",
    "plotting",
    "reproducibility",
    "training",
    "get_device",
    "describe_environment",
    "seed_everything",
    "seed_for",
    "fit",
    "evaluate",
]



def _version() -> str:
    """The collection's version: in a checkout, its pyproject.toml (the source of the package
    metadata, also when an editable install's metadata is stale); else the installed
    distribution's metadata (``dl-labs``, e.g. on Colab)."""
    import re
    from importlib import metadata
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        text = pyproject.read_text(encoding="utf-8")
        match = re.search(r'^version\s*=\s*"([^"]+)"', text, flags=re.M)
        if match and re.search(r'^name\s*=\s*"dl-labs"', text, flags=re.M):
            return match.group(1)
    try:
        return metadata.version("dl-labs")
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

_SUBMODULES = {"checks", "data", "device", "labs", "metrics", "plotting", "reproducibility", "training"}
_FUNCTIONS = {
    "get_device": "device",
    "describe_environment": "device",
    "seed_everything": "reproducibility",
    "seed_for": "reproducibility",
    "fit": "training",
    "evaluate": "training",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FUNCTIONS:
        module = importlib.import_module(f"{__name__}.{_FUNCTIONS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
