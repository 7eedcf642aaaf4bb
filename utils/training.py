"""A small, transparent training loop: :func:`fit` and :func:`evaluate`.

Labs that teach the loop write their own first; later labs reuse this one. Data are
either a tuple ``(X, y)`` of tensors (batched on the device: fast for small data) or any
iterable of ``(X, y)`` batches such as a ``torch.utils.data.DataLoader``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ._validation import check_choice, check_float, check_int

__all__ = ["batches", "count_params", "fit", "evaluate"]


def count_params(model, trainable_only: bool = False) -> int:
    """Number of scalar parameters of a ``torch.nn.Module``.

    Args:
        model: the module.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        int: the total number of entries of its parameter tensors.

    Raises:
        TypeError: ``model`` has no ``parameters()`` method.
    """
    if not callable(getattr(model, "parameters", None)):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def batches(X, y, batch_size: int, *, shuffle: bool = False, generator=None) -> Iterator[tuple]:
    """Yield ``(X[idx], y[idx])`` mini-batches of at most ``batch_size`` rows.

    Args:
        X: Tensor[N, ...]; y: Tensor[N, ...].
        batch_size: rows per batch (>= 1).
        shuffle: visit rows in a random order drawn from ``generator``.
        generator: torch.Generator for the permutation (default: the global RNG).

    Raises:
        ValueError: lengths differ or batch_size < 1.
    """
    import torch

    check_int("batch_size", batch_size, minimum=1)
    if len(X) != len(y):
        raise ValueError(f"X and y: expected the same length, got {len(X)} and {len(y)}")
    if shuffle:
        order = torch.randperm(len(X), generator=generator).to(X.device)
    else:
        order = torch.arange(len(X), device=X.device)
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        yield X[idx], y[idx]


def _iterate(data, batch_size, shuffle, generator, device) -> Iterable[tuple]:
    if isinstance(data, list) and len(data) == 2 and hasattr(data[0], "shape"):
        raise TypeError("data: got a list [X, y]; pass a tuple (X, y) of tensors")
    if isinstance(data, tuple) and len(data) == 2:
        X, y = data
        return batches(X.to(device), y.to(device), batch_size, shuffle=shuffle, generator=generator)
    if isinstance(data, Iterable):
        return ((xb.to(device), yb.to(device)) for xb, yb in data)
    raise TypeError(
        f"data: expected a tuple (X, y) of tensors or an iterable of (X, y) batches, "
        f"got {type(data).__name__}"
    )


def _num_batches(data, batch_size) -> int | None:
    if isinstance(data, tuple):
        return -(-len(data[0]) // batch_size)
    try:
        return len(data)
    except TypeError:
        return None


def _is_class_output(out, y) -> bool:
    """True when ``out`` is an (N, C) score tensor and ``y`` (N,) integer labels (accuracy applies)."""
    import torch

    return isinstance(out, torch.Tensor) and out.ndim == 2 and y.ndim == 1 and not y.is_floating_point()


def _default_loss():
    import torch.nn.functional as F

    return F.cross_entropy


def evaluate(model, data, *, loss_fn: Callable | None = None, batch_size: int = 512,
             device=None) -> dict[str, float]:
    """Average loss (and accuracy, for class labels) of ``model`` on ``data`` in eval mode.

    Args:
        model: a ``torch.nn.Module``.
        data: ``(X, y)`` tensors or an iterable of batches.
        loss_fn: ``loss_fn(output, y)`` returning a mean over the batch (default cross-entropy).
        batch_size: rows per forward pass for tensor data.
        device: where to run (default: the model's device).

    Returns:
        dict: ``{"loss": float, "accuracy": float}``; accuracy only when ``y`` holds integer
        class labels and the output is (N, C).
    """
    import torch

    loss_fn = loss_fn or _default_loss()
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count, has_acc = 0.0, 0, 0, True
    try:
        with torch.no_grad():
            for xb, yb in _iterate(data, batch_size, False, None, device):
                out = model(xb)
                total_loss += loss_fn(out, yb).item() * len(xb)
                if _is_class_output(out, yb):
                    correct += (out.argmax(1) == yb).sum().item()
                else:
                    has_acc = False
                count += len(xb)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("data: expected at least one sample, got none")
    result = {"loss": total_loss / count}
    if has_acc:
        result["accuracy"] = correct / count
    return result


def fit(
    model,
    train_data,
    *,
    epochs: int,
    lr: float = 1e-3,
    optimizer=None,
    loss_fn: Callable | None = None,
    batch_size: int = 64,
    val_data=None,
    scheduler: str | None = None,
    weight_decay: float = 0.0,
    device=None,
    generator=None,
    log_every: int | None = 1,
    progress: bool = True,
) -> dict[str, list]:
    """Train ``model`` and return its history (one entry per epoch).

    Args:
        model: a ``torch.nn.Module`` (moved to ``device``).
        train_data: ``(X, y)`` tensors (shuffled each epoch with ``generator``) or an
            iterable of batches.
        epochs: number of passes over the data (>= 1).
        lr: learning rate of the default optimizer (AdamW) and peak of a schedule.
        optimizer: a ready ``torch.optim`` optimizer (then ``lr``/``weight_decay`` are unused
            except by the schedule).
        loss_fn: ``loss_fn(output, y)`` -> mean loss (default cross-entropy). ``output`` is
            whatever the model returns (a tensor, or e.g. a tuple for a VAE).
        batch_size: batch size for tensor data.
        val_data: optional held-out data evaluated after every epoch.
        scheduler: None, ``"onecycle"`` or ``"cosine"`` (stepped every batch).
        weight_decay: AdamW weight decay of the default optimizer.
        device: default: the model's device.
        generator: torch.Generator for shuffling (default: the global RNG, seeded by
            :func:`utils.seed_everything`).
        log_every: print a rounded summary line every this many epochs (None: never).
        progress: show a tqdm progress bar over epochs.

    Returns:
        dict[str, list]: ``epoch``, ``train_loss`` and (when available) ``train_acc``,
        ``val_loss``, ``val_acc``; ready for :func:`utils.plotting.plot_history`.

    Raises:
        ValueError, TypeError: bad arguments.
    """
    import torch

    check_int("epochs", epochs, minimum=1)
    check_float("lr", lr, minimum=0.0, strict_min=True)
    check_int("batch_size", batch_size, minimum=1)
    if log_every is not None:
        check_int("log_every", log_every, minimum=1)
    if scheduler is not None:
        check_choice("scheduler", scheduler, ("onecycle", "cosine"))
    if device is None:
        device = next(model.parameters()).device
    model.to(device)
    loss_fn = loss_fn or _default_loss()
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = _num_batches(train_data, batch_size)
    sched = None
    if scheduler is not None:
        if steps_per_epoch is None:
            raise ValueError("scheduler: needs train_data with a known length")
        total = epochs * steps_per_epoch
        if scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)

    history: dict[str, list] = {"epoch": [], "train_loss": []}
    epoch_iter: Iterable[int] = range(1, epochs + 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(epoch_iter, desc="training", unit="epoch", leave=False)
        epoch_iter = bar
    for epoch in epoch_iter:
        model.train()
        total, correct, count, has_acc = 0.0, 0, 0, True
        for xb, yb in _iterate(train_data, batch_size, True, generator, device):
            out = model(xb)
            loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(xb)
            count += len(xb)
            if _is_class_output(out, yb):
                correct += (out.detach().argmax(1) == yb).sum().item()
            else:
                has_acc = False
        if count == 0:
            raise ValueError(
                "train_data: yielded no batches in epoch "
                f"{epoch} (a one-shot iterator is exhausted after one epoch: pass a DataLoader or (X, y))"
            )
        history["epoch"].append(epoch)
        history["train_loss"].append(total / max(count, 1))
        if has_acc:
            history.setdefault("train_acc", []).append(correct / max(count, 1))
        if val_data is not None:
            val = evaluate(model, val_data, loss_fn=loss_fn, device=device)
            history.setdefault("val_loss", []).append(val["loss"])
            if "accuracy" in val:
                history.setdefault("val_acc", []).append(val["accuracy"])
        if bar is not None:
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}")
        if log_every is not None and (epoch % log_every == 0 or epoch == epochs):
            parts = [f"epoch {epoch:>3}/{epochs}"]
            for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
                if key in history:
                    parts.append(f"{key} {history[key][-1]:.3f}")
            print("  ".join(parts))
    if bar is not None:
        bar.close()
    return history
