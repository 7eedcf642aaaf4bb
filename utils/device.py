"""Pick the compute device and describe the environment.

The only place in the collection where accelerator names appear: notebooks call
:func:`get_device` and move models and tensors to what it returns.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from contextlib import contextmanager

__all__ = ["get_device", "describe_environment", "one_cpu_thread", "DEVICE_ENV_VAR"]

#: Environment variable that overrides the automatic choice, e.g. ``DL_LABS_DEVICE=cpu``.
DEVICE_ENV_VAR = "DL_LABS_DEVICE"

_DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def get_device(preferred: str | None = None):
    """Return the device the labs should use: CUDA, else Apple MPS, else CPU.

    Args:
        preferred: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` to force a device.
            When ``None``, the environment variable ``DL_LABS_DEVICE`` is used if set,
            otherwise the best available device is picked (cuda > mps > cpu).

    Returns:
        torch.device: the chosen device.

    Raises:
        ValueError: the requested name is not a device name, or that device is not
            available on this machine.
    """
    import torch

    source = "argument preferred"
    if preferred is None:
        preferred = os.environ.get(DEVICE_ENV_VAR) or None
        source = f"environment variable {DEVICE_ENV_VAR}"
    if preferred is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")

    if not isinstance(preferred, str) or not _DEVICE_PATTERN.match(preferred.strip().lower()):
        raise ValueError(
            f"{source}: expected 'cpu', 'cuda', 'cuda:N' or 'mps', got {preferred!r}"
        )
    name = preferred.strip().lower()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{source}: asked for {name!r} but CUDA is not available here")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"{source}: asked for {name!r} but only {torch.cuda.device_count()} CUDA "
                "device(s) exist"
            )
    if name == "mps" and not _mps_available(torch):
        raise ValueError(f"{source}: asked for 'mps' but MPS is not available here")
    return torch.device(name)


def describe_environment(device=None) -> dict[str, str]:
    """Collect the facts a student or instructor needs when something differs.

    Args:
        device: the device in use (default: :func:`get_device`).

    Returns:
        dict[str, str]: python, platform, torch, torchvision, numpy versions, the device
        (with the GPU name when there is one), why it was picked, CPU threads and the
        CPU kernel family PyTorch uses.
    """
    import numpy as np
    import torch

    if device is None:
        device = get_device()
    info: dict[str, str] = {
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = "not installed"
    info["device"] = str(device)
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    override = os.environ.get(DEVICE_ENV_VAR)
    if override and str(torch.device(override.strip().lower())) == str(torch.device(device)):
        info["device_reason"] = f"set by {DEVICE_ENV_VAR}={override}"
    elif torch.device(device).type == "cpu":
        info["device_reason"] = "no CUDA or MPS device found, using the CPU"
    else:
        info["device_reason"] = f"{torch.device(device).type} is available and preferred"
    info["cpu_threads"] = str(torch.get_num_threads())
    cpu = getattr(torch.backends, "cpu", None)
    if cpu is not None and hasattr(cpu, "get_cpu_capability"):
        info["cpu_capability"] = cpu.get_cpu_capability()
    return info


@contextmanager
def one_cpu_thread():
    """Run a block with PyTorch on one CPU thread; the thread count is restored afterwards, also after an error.

    For loops of tiny matrix products: two threads that wait for each other (or for a core another
    job is using) can be many times slower than one. GPU work is unaffected.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
