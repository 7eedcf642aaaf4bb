"""Small argument validators shared by the public helpers (clear errors for bad input)."""

from __future__ import annotations

from typing import Any


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` if it is an int (not bool) >= ``minimum``; else raise.

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
) -> float:
    """Return ``float(value)`` if it is a real number in range; else raise.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if value != value:
        raise ValueError(f"{name}: expected a number, got NaN")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        bound = ">" if strict_min else ">="
        raise ValueError(f"{name}: expected a number {bound} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected a number <= {maximum}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; else raise ValueError."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_tensor(name: str, value: Any, *, ndim: int | tuple[int, ...] | None = None) -> Any:
    """Return ``value`` if it is a torch.Tensor with the given number of dims; else raise.

    Raises:
        TypeError: ``value`` is not a tensor.
        ValueError: wrong number of dimensions.
    """
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if value.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(
                f"{name}: expected a {want}-D tensor, got shape {tuple(value.shape)}"
            )
    return value
