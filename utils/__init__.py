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

__version__ = "0.1.0"

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
