"""Matplotlib helpers shared by the labs.

Every helper takes its data as arguments (never notebook globals), draws inside a local
style context (never changing rcParams globally), accepts ``ax=`` where one panel is
drawn, and returns the Figure; the notebook calls ``plt.show()``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ._validation import check_int

__all__ = [
    "COLORS",
    "style",
    "show_images",
    "tile_images",
    "plot_history",
    "plot_decision_regions",
    "show_filters",
    "plot_heatmap",
]

#: Colour-blind-safe palette (matplotlib's tab10): use COLORS[i] for model i across a lab.
COLORS = tuple(plt.get_cmap("tab10").colors)

_STYLE = {
    "figure.dpi": 80,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": plt.cycler(color=COLORS),
    "image.cmap": "viridis",
    "font.size": 10,
}


@contextlib.contextmanager
def style():
    """Context manager with the collection's plot style (rcParams restored afterwards)."""
    with plt.rc_context(_STYLE):
        yield


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def show_images(
    images,
    labels: Sequence | None = None,
    *,
    ncols: int = 8,
    title: str | None = None,
    cmap: str = "gray",
    size: float = 1.2,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    row_labels: Sequence[str] | None = None,
    colorbar: bool = False,
    cbar_label: str | None = None,
):
    """Grid of images.

    Args:
        images: Tensor/array[N, C, H, W] (C = 1 or 3) or [N, H, W], values in [vmin, vmax].
        labels: optional N captions.
        ncols: images per row.
        title: figure title.
        cmap: colour map for single-channel images.
        size: inches per image.
        vmin, vmax: colour range for single-channel images (None: per image; with
            ``colorbar=True``, None means the minimum/maximum over all images, so every
            panel shares the bar's scale).
        row_labels: optional text drawn left of each row, one per row (``ceil(N / ncols)``
            of them), e.g. ``["input", "reconstruction"]``.
        colorbar: draw one colour bar shared by all panels (single-channel images only;
            meant for value maps such as heatmaps drawn with a non-gray ``cmap``).
        cbar_label: label of the colour bar (what the colours measure, with units).

    Returns:
        matplotlib.figure.Figure

    Raises:
        TypeError: ``row_labels`` is a string or holds non-strings, or ``colorbar`` is not
            a bool.
        ValueError: wrong number of dims or channels, captions or row labels of the wrong
            length, ``vmin >= vmax``, or a colour bar asked for colour (RGB) images.
    """
    arr = _to_numpy(images)
    check_int("ncols", ncols, minimum=1)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(
            f"images: expected shape (N, C, H, W) with C in (1, 3) or (N, H, W), got {arr.shape}"
        )
    if labels is not None and len(labels) != len(arr):
        raise ValueError(f"labels: expected {len(arr)} captions, got {len(labels)}")
    if not isinstance(colorbar, bool):
        raise TypeError(f"colorbar: expected a bool, got {type(colorbar).__name__} {colorbar!r}")
    if vmin is not None and vmax is not None and not vmin < vmax:
        raise ValueError(f"vmin, vmax: expected vmin < vmax, got vmin={vmin!r}, vmax={vmax!r}")
    n = len(arr)
    ncols = min(ncols, max(n, 1))
    nrows = max(1, math.ceil(n / ncols))
    if row_labels is not None:
        if isinstance(row_labels, str) or not all(isinstance(r, str) for r in row_labels):
            raise TypeError(f"row_labels: expected a sequence of str, got {row_labels!r}")
        if len(row_labels) != nrows:
            raise ValueError(
                f"row_labels: expected {nrows} labels (one per row of {ncols} images), "
                f"got {len(row_labels)}"
            )
    if colorbar:
        if arr.shape[1] != 1:
            raise ValueError(
                "colorbar: expected single-channel images (a colour bar maps values to "
                f"colours), got {arr.shape[1]}-channel images"
            )
        finite = arr[np.isfinite(arr)]
        if vmin is None and finite.size:
            vmin = float(finite.min())
        if vmax is None and finite.size:
            vmax = float(finite.max())
    with style():
        bar_room = 1.1 if colorbar else 0.0  # inches right of the grid for the bar, its ticks and label
        width = size * ncols + bar_room
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, size * nrows + 0.4), squeeze=False)
        image = None
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i >= n:
                continue
            if arr.shape[1] == 1:
                image = ax.imshow(arr[i, 0], cmap=cmap, vmin=vmin, vmax=vmax)
            else:
                ax.imshow(np.clip(arr[i].transpose(1, 2, 0), 0, 1))
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
        for ax, text in zip(axes[:, 0], row_labels or ()):
            ax.axis("on")  # an Axes that is "off" hides its ylabel: show it, without ticks or frame
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
            ax.spines[:].set_visible(False)
            ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=9)
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0, 1 - bar_room / width, 1))
        if colorbar and image is not None:  # one bar as tall as the grid, in the room kept free
            boxes = [ax.get_position() for ax in axes.flat]
            bottom, top = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
            cax = fig.add_axes((1 - (bar_room - 0.1) / width, bottom, 0.15 / width, top - bottom))
            fig.colorbar(image, cax=cax, label=cbar_label or "")
    return fig


def tile_images(images, ncols: int, *, pad: int = 1, pad_value: float = 0.5) -> np.ndarray:
    """Mosaic of equally sized images in one array, for one ``imshow`` (fast for large grids).

    Images fill rows left to right; each is surrounded by ``pad`` pixels of ``pad_value``
    so neighbouring tiles stay distinguishable; a last incomplete row is padded.

    Args:
        images: Tensor/array[N, C, H, W] (C = 1 or 3) or [N, H, W].
        ncols: images per row (>= 1).
        pad: border in pixels around every tile (>= 0).
        pad_value: value of the border pixels.

    Returns:
        np.ndarray: [rows * (H + 2 pad), ncols * (W + 2 pad)] for one channel, with a trailing
        channel axis of 3 for colour images.

    Raises:
        ValueError: wrong number of dims or channels, no images, bad ncols or pad.
    """
    arr = _to_numpy(images).astype(np.float64)
    check_int("ncols", ncols, minimum=1)
    check_int("pad", pad, minimum=0)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or len(arr) == 0:
        raise ValueError(
            f"images: expected a non-empty (N, C, H, W) with C in (1, 3) or (N, H, W), got {arr.shape}"
        )
    n, c, h, w = arr.shape
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * ncols, c, h + 2 * pad, w + 2 * pad), pad_value, dtype=np.float64)
    canvas[:n, :, pad:pad + h, pad:pad + w] = arr
    th, tw = h + 2 * pad, w + 2 * pad
    mosaic = canvas.reshape(nrows, ncols, c, th, tw).transpose(0, 3, 1, 4, 2)  # (rows, th, cols, tw, C)
    mosaic = mosaic.reshape(nrows * th, ncols * tw, c)
    return mosaic[..., 0] if c == 1 else mosaic


def plot_history(
    history: dict,
    keys: Sequence[str] | None = None,
    *,
    title: str = "Training history",
    ax=None,
    label: str | None = None,
    color=None,
):
    """Plot loss / accuracy curves from :func:`utils.training.fit` (or any dict of lists).

    Losses and accuracies go to separate panels when ``ax`` is None.

    Args:
        history: dict with an optional ``"epoch"`` list and metric lists of equal length.
        keys: which metrics (default: every key but ``epoch``).
        title: figure title.
        ax: draw every curve on this Axes instead.
        label: prefix for legend entries (e.g. the model name when comparing runs).
        color: one colour for all curves of this history.

    Returns:
        matplotlib.figure.Figure

    Raises:
        ValueError: unknown keys or lists of different lengths.
    """
    if not isinstance(history, dict):
        raise TypeError(f"history: expected a dict of lists, got {type(history).__name__}")
    keys = list(keys) if keys is not None else [k for k in history if k != "epoch"]
    missing = [k for k in keys if k not in history]
    if missing or not keys:
        raise ValueError(f"keys: expected names among {sorted(history)}, got {keys}")
    lengths = {len(history[k]) for k in keys}
    if len(lengths) != 1:
        raise ValueError(f"history: expected lists of equal length, got lengths {sorted(lengths)}")
    length = lengths.pop()
    x = history.get("epoch") or list(range(1, length + 1))
    if len(x) != length:
        raise ValueError(f"history['epoch']: expected {length} entries, got {len(x)}")
    with style():
        if ax is not None:
            fig, axes = ax.figure, {k: ax for k in keys}
        else:
            groups = [[k for k in keys if "acc" not in k], [k for k in keys if "acc" in k]]
            groups = [g for g in groups if g]
            fig, axs = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.4), squeeze=False)
            axes = {k: axs[0, i] for i, g in enumerate(groups) for k in g}
            for i, g in enumerate(groups):
                axs[0, i].set_ylabel("accuracy" if "acc" in g[0] else "loss")
        for k in keys:
            style_kw = {"linestyle": "--"} if k.startswith("val") else {}
            name = f"{label} {k}" if label else k
            axes[k].plot(x, history[k], label=name, color=color, **style_kw)
            axes[k].set_xlabel("epoch")
            axes[k].legend()
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_decision_regions(
    predict: Callable,
    X,
    y,
    *,
    ax=None,
    title: str = "Decision regions",
    resolution: int = 200,
    margin: float = 0.5,
):
    """Colour the plane by the class ``predict`` assigns and scatter the data on top.

    Args:
        predict: maps an array/Tensor[M, 2] of points to M integer class labels
            (it receives a float32 torch Tensor on the CPU).
        X: Tensor/array[N, 2]; y: Tensor/array[N] integer labels.
        ax: Axes to draw on (default: a new figure).
        title: Axes title.
        resolution: grid points per axis.
        margin: padding around the data.

    Returns:
        matplotlib.figure.Figure
    """
    import torch

    Xn, yn = _to_numpy(X), _to_numpy(y).astype(int)
    if Xn.ndim != 2 or Xn.shape[1] != 2:
        raise ValueError(f"X: expected shape (N, 2), got {Xn.shape}")
    check_int("resolution", resolution, minimum=2)
    lo, hi = Xn.min(0) - margin, Xn.max(0) + margin
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    with torch.no_grad():
        zz = _to_numpy(predict(grid)).reshape(gx.shape)
    n_classes = int(max(yn.max(), zz.max())) + 1
    cmap = plt.matplotlib.colors.ListedColormap(COLORS[:n_classes])
    with style():
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(4.5, 4.5))
        ax.contourf(gx, gy, zz, levels=np.arange(n_classes + 1) - 0.5, cmap=cmap, alpha=0.25)
        ax.scatter(Xn[:, 0], Xn[:, 1], c=yn, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5,
                   s=12, edgecolors="k", linewidths=0.3)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(title)
        ax.grid(False)
    return fig


def show_filters(weight, *, ncols: int = 8, title: str = "Filters", size: float = 1.0,
                 channel: int | None = 0, cmap: str = "RdBu_r", labels: Sequence | None = None,
                 symmetric: bool = True, hspace: float | None = None):
    """Show convolution kernels or feature maps, one panel each, colour-centred at 0.

    Args:
        weight: Tensor[C_out, C_in, kh, kw] kernels (``channel`` picks the input channel;
            None averages over C_in) or Tensor[C, H, W] feature maps.
        ncols: panels per row.
        title: figure title.
        size: inches per panel.
        channel: input channel to show for 4-D kernels.
        cmap: diverging colour map.
        labels: optional caption per panel.
        symmetric: colour range [-max|v|, max|v|] (kernels); False: [0, max] per panel
            (non-negative feature maps, e.g. after a ReLU).
        hspace: vertical gap between rows of panels, as a fraction of a panel's height
            (e.g. 0.1, so that rows do not touch); None keeps the tight layout's spacing.

    Returns:
        matplotlib.figure.Figure

    Raises:
        ValueError: ``hspace`` is negative.
    """
    if hspace is not None and not hspace >= 0:
        raise ValueError(f"hspace: expected a number >= 0 or None, got {hspace!r}")
    arr = _to_numpy(weight).astype(np.float64)
    if arr.ndim == 4:
        if channel is None:
            arr = arr.mean(1)
        else:
            check_int("channel", channel, minimum=0)
            if channel >= arr.shape[1]:
                raise ValueError(f"channel: expected < {arr.shape[1]}, got {channel}")
            arr = arr[:, channel]
    if arr.ndim != 3:
        raise ValueError(f"weight: expected (C_out, C_in, kh, kw) or (C, H, W), got {arr.shape}")
    check_int("ncols", ncols, minimum=1)
    n = len(arr)
    if n == 0:
        raise ValueError("weight: expected at least one kernel or map, got 0")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: expected {n} captions, got {len(labels)}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4),
                                 squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                lim = float(np.abs(arr[i]).max()) or 1.0
                ax.imshow(arr[i], cmap=cmap, vmin=-lim if symmetric else 0.0, vmax=lim)
                if labels is not None:
                    ax.set_title(str(labels[i]), fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        if hspace is not None:
            fig.subplots_adjust(hspace=hspace)
    return fig


def plot_heatmap(
    matrix,
    *,
    xlabels: Sequence[str] | None = None,
    ylabels: Sequence[str] | None = None,
    ax=None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    annotate: bool | None = None,
    fmt: str = "{:.2f}",
    cmap: str = "viridis",
    colorbar: bool = True,
    cbar_label: str | None = None,
):
    """Heatmap of a 2-D matrix (attention weights, confusion matrices, Q-tables).

    Args:
        matrix: Tensor/array[R, C].
        xlabels, ylabels: tick labels (length C and R).
        ax: Axes to draw on.
        title, xlabel, ylabel: texts.
        annotate: write each value in its cell (default: when R * C <= 144).
        fmt: format of annotations.
        cmap: colour map (sequential: viridis / cividis).
        colorbar: draw a colour bar.
        cbar_label: label of the colour bar (what the colours measure, e.g. "attention weight");
            ignored when ``colorbar`` is False.

    Returns:
        matplotlib.figure.Figure
    """
    arr = _to_numpy(matrix).astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"matrix: expected a 2-D matrix, got shape {arr.shape}")
    if xlabels is not None and len(xlabels) != arr.shape[1]:
        raise ValueError(f"xlabels: expected {arr.shape[1]} labels, got {len(xlabels)}")
    if ylabels is not None and len(ylabels) != arr.shape[0]:
        raise ValueError(f"ylabels: expected {arr.shape[0]} labels, got {len(ylabels)}")
    if annotate is None:
        annotate = arr.size <= 144
    with style():
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(
            figsize=(0.5 * arr.shape[1] + 2, 0.5 * arr.shape[0] + 1.5))
        im = ax.imshow(arr, cmap=cmap, aspect="auto")
        ax.grid(False)
        if xlabels is not None:
            ax.set_xticks(range(arr.shape[1]), [str(v) for v in xlabels], rotation=45, ha="right")
        if ylabels is not None:
            ax.set_yticks(range(arr.shape[0]), [str(v) for v in ylabels])
        if annotate:
            mid = (np.nanmax(arr) + np.nanmin(arr)) / 2
            for (r, c), v in np.ndenumerate(arr):
                ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=7,
                        color="black" if v > mid else "white")
        if colorbar:
            fig.colorbar(im, ax=ax, label=cbar_label or "")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        fig.tight_layout()
    return fig
