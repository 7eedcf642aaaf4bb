"""Checks for the setup lab (00): a first exercise that shows how self-checks work."""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, device_case, run_check, tiered

__all__ = ["check_accuracy"]


def _reference_accuracy(logits, y) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y.numpy(), logits.argmax(dim=1).numpy()))


def _float_type(out) -> str | None:
    if isinstance(out, float):
        return None
    return f"expected a Python float, got {type(out).__name__} {out!r}"


def _cases() -> list[Case]:
    import torch

    g = torch.Generator().manual_seed(1)
    big_logits = torch.randn(50, 7, generator=g)
    big_y = torch.randint(0, 7, (50,), generator=g)
    return [
        Case("3 samples, 2 of 3 right",
             (torch.tensor([[2.0, 1.0], [0.1, 0.3], [5.0, -1.0]]), torch.tensor([0, 0, 0])),
             expected=_reference_accuracy),
        Case("all correct (4 samples, 3 classes)",
             (torch.eye(3)[[0, 2, 1, 1]] * 3.0, torch.tensor([0, 2, 1, 1])),
             expected=_reference_accuracy),
        Case("none correct",
             (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1])),
             expected=_reference_accuracy),
        Case("50 samples, 7 classes (vs scikit-learn accuracy_score)", (big_logits, big_y),
             expected=_reference_accuracy),
        Case("returns a Python float (use .item()), not a tensor",
             test=lambda fn: _float_type(fn(torch.tensor([[0.0, 1.0]]), torch.tensor([1])))),
        Case("one sample, negative logits",
             (torch.tensor([[-3.0, -1.0, -2.0]]), torch.tensor([1])),
             expected=_reference_accuracy),
        # the .item() a correct answer ends with needs values: on the data-free 'meta' stand-in this
        # case passes with an 'undecided' note; on a GPU it catches a label tensor rebuilt on the CPU
        device_case(big_logits, big_y),
    ]


@tiered
def check_accuracy(accuracy: Callable) -> bool:
    """Check ``accuracy(logits, y) -> float``: the fraction of rows whose arg-max is the label.

    Args:
        accuracy: the student's function; logits Tensor[N, C], y Tensor[N] int64.

    Returns:
        bool: True when every case passes.
    """
    return run_check(
        "accuracy(logits, y)", accuracy, _cases(),
        hint='compare the predicted class (the largest logit of each row) with the label and average: a Python float in [0, 1], not a percentage or a count',
        solution="take the arg-max over the class dimension (dim=1), compare with y, and return "
             "the mean as a Python float in [0, 1] (not a percentage, not a count)",
    )
