"""Student self-checks: ``utils.checks.<lab topic>.check_<function>(student_fn)``.

Each check runs the student's function on several cases against a reference (a library
call or known values), prints one line per case and a summary, and returns True/False.
It never raises into the notebook. The framework is in :mod:`utils.checks.core`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .core import Case, compare_values, device_case, run_check

__all__ = ["Case", "compare_values", "device_case", "run_check", "adversarial", "attention", "backprop",
           "convolution", "detection", "diffusion", "gan", "gnn", "perceptron", "qlearning",
           "resnet", "rnn", "segmentation", "selfsupervised", "setup", "training", "vae", "vit", "likelihood", "policy"]

_TOPICS = {"adversarial", "attention", "backprop", "convolution", "detection", "diffusion", "gan",
           "gnn", "perceptron", "qlearning", "resnet", "rnn", "segmentation", "selfsupervised",
           "setup", "training", "vae", "vit", "likelihood", "policy"}


def __getattr__(name: str) -> Any:
    if name in _TOPICS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'utils.checks' has no attribute {name!r}")
