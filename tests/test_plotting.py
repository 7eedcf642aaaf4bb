from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from utils.plotting import (
    COLORS,
    plot_decision_regions,
    plot_heatmap,
    plot_history,
    show_filters,
    show_images,
    style,
    tile_images,
)

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def rc_unchanged():
    """Fail the test if a helper changed the global rcParams."""
    before = dict(matplotlib.rcParams)
    yield
    after = dict(matplotlib.rcParams)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"rcParams changed: {sorted(changed)}"


HISTORY = {
    "epoch": [1, 2, 3],
    "train_loss": [1.0, 0.6, 0.4],
    "train_acc": [0.5, 0.7, 0.8],
    "val_loss": [1.1, 0.8, 0.7],
    "val_acc": [0.45, 0.6, 0.7],
}


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_palette():
    assert len(COLORS) == 10
    assert all(len(c) == 3 for c in COLORS)


def test_style_is_local(rc_unchanged):
    dpi = matplotlib.rcParams["figure.dpi"]
    with style():
        assert matplotlib.rcParams["figure.dpi"] == 80
        assert matplotlib.rcParams["axes.spines.top"] is False
    assert matplotlib.rcParams["figure.dpi"] == dpi


# ---------------------------------------------------------------------------- show_images


def test_show_images_grid(rc_unchanged):
    images = torch.rand(10, 1, 8, 8)
    fig = show_images(images, labels=list(range(10)), ncols=4, title="digits")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 12  # 3 rows x 4 columns, the last 2 empty
    assert _titles(fig)[:10] == [str(i) for i in range(10)]
    assert _titles(fig)[10:] == ["", ""]
    assert sum(len(ax.images) for ax in fig.axes) == 10
    assert fig._suptitle.get_text() == "digits"


def test_show_images_variants(rc_unchanged):
    assert len(show_images(np.random.rand(3, 8, 8)).axes) == 3  # (N, H, W), ncols shrinks
    fig = show_images(torch.rand(2, 3, 5, 5) * 2)  # RGB, out-of-range values clipped
    assert len(fig.axes) == 2
    assert fig.axes[0].images[0].get_array().max() <= 1.0
    fig = show_images(torch.rand(5, 1, 4, 4, requires_grad=True), ncols=8)
    assert len(fig.axes) == 5


@pytest.mark.parametrize(
    "images",
    [torch.rand(4, 8), torch.rand(4, 2, 8, 8), torch.rand(4, 1, 1, 8, 8), np.zeros(5)],
)
def test_show_images_bad_dims(images):
    with pytest.raises(ValueError, match="images"):
        show_images(images)


def test_show_images_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        show_images(torch.rand(4, 1, 8, 8), labels=["a", "b", "c"])
    with pytest.raises(ValueError):
        show_images(torch.rand(4, 1, 8, 8), ncols=0)


def test_show_images_row_labels(rc_unchanged):
    fig = show_images(torch.rand(6, 1, 8, 8), ncols=3, row_labels=["input", "output"])
    assert len(fig.axes) == 6 and sum(len(ax.images) for ax in fig.axes) == 6
    assert [ax.get_ylabel() for ax in fig.axes] == ["input", "", "", "output", "", ""]
    first = fig.axes[0]
    assert first.axison and first.yaxis.label.get_visible()      # shown, although the others are "off"
    assert list(first.get_xticks()) == [] and list(first.get_yticks()) == []
    assert not any(spine.get_visible() for spine in first.spines.values())
    assert not fig.axes[1].axison                                 # the other panels stay bare
    # a last incomplete row still counts: 5 images in rows of 3 need 2 labels
    fig = show_images(torch.rand(5, 8, 8), ncols=3, row_labels=("a", "b"))
    assert [ax.get_ylabel() for ax in fig.axes[::3]] == ["a", "b"]


def test_show_images_defaults_unchanged(rc_unchanged):
    """Without the new options the figure is the same as before: bare panels, no colour bar."""
    fig = show_images(torch.rand(4, 1, 8, 8), ncols=2)
    assert len(fig.axes) == 4
    assert not any(ax.axison for ax in fig.axes)
    assert fig.axes[0].images[0].get_clim() == (0.0, 1.0)
    assert fig.get_size_inches() == pytest.approx((2 * 1.2, 2 * 1.2 + 0.4))


def test_show_images_colorbar(rc_unchanged):
    images = torch.linspace(-3, 5, 4 * 16).reshape(4, 1, 4, 4)
    fig = show_images(images, ncols=2, cmap="viridis", vmin=None, vmax=None, colorbar=True,
                      cbar_label="activation (a.u.)")
    assert len(fig.axes) == 5                                     # 4 panels + the bar
    bar = fig.axes[-1]
    assert bar.get_ylabel() == "activation (a.u.)"
    clims = {ax.images[0].get_clim() for ax in fig.axes[:4]}
    assert clims == {(-3.0, 5.0)}                                 # one shared scale, from all images
    assert bar.get_position().x0 > max(ax.get_position().x1 for ax in fig.axes[:4])
    fig = show_images(images, cmap="RdBu_r", vmin=-5, vmax=5, colorbar=True)
    assert fig.axes[0].images[0].get_clim() == (-5, 5) and fig.axes[-1].get_ylabel() == ""


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"row_labels": ["only one"]}, ValueError, r"row_labels: expected 2 labels.*got 1"),
        ({"row_labels": "ab"}, TypeError, "row_labels: expected a sequence of str"),
        ({"row_labels": [1, 2]}, TypeError, "row_labels"),
        ({"colorbar": "yes"}, TypeError, "colorbar: expected a bool, got str"),
        ({"vmin": 1.0, "vmax": 0.0}, ValueError, "vmin, vmax: expected vmin < vmax"),
    ],
)
def test_show_images_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        show_images(torch.rand(4, 1, 8, 8), ncols=2, **kwargs)


def test_show_images_colorbar_needs_one_channel():
    with pytest.raises(ValueError, match="colorbar: expected single-channel images.*got 3-channel"):
        show_images(torch.rand(2, 3, 8, 8), colorbar=True)


# ---------------------------------------------------------------------------- plot_history


def test_plot_history_two_panels(rc_unchanged):
    fig = plot_history(HISTORY, title="run")
    assert isinstance(fig, Figure)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_ylabel() == "loss" and acc_ax.get_ylabel() == "accuracy"
    assert [line.get_label() for line in loss_ax.lines] == ["train_loss", "val_loss"]
    assert [line.get_label() for line in acc_ax.lines] == ["train_acc", "val_acc"]
    assert loss_ax.lines[1].get_linestyle() == "--"
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3]
    assert fig._suptitle.get_text() == "run"


def test_plot_history_selected_keys_and_no_epoch(rc_unchanged):
    fig = plot_history({"loss": [3.0, 2.0, 1.0, 0.5]}, label="model A", color="red")
    assert len(fig.axes) == 1
    (line,) = fig.axes[0].lines
    assert line.get_label() == "model A loss"
    assert list(line.get_xdata()) == [1, 2, 3, 4]
    fig = plot_history(HISTORY, keys=["val_acc"])
    assert len(fig.axes) == 1 and fig.axes[0].get_ylabel() == "accuracy"


def test_plot_history_on_given_axes(rc_unchanged):
    fig, ax = plt.subplots()
    out = plot_history(HISTORY, ax=ax, label="a")
    plot_history(HISTORY, ax=ax, label="b")
    assert out is fig
    assert len(fig.axes) == 1 and len(ax.lines) == 8


@pytest.mark.parametrize(
    ("history", "keys", "error"),
    [
        (HISTORY, ["test_loss"], ValueError),
        (HISTORY, [], ValueError),
        ({"epoch": [1, 2]}, None, ValueError),
        ({"a": [1, 2], "b": [1, 2, 3]}, None, ValueError),
        ([("loss", [1, 2])], None, TypeError),
        (None, None, TypeError),
    ],
)
def test_plot_history_bad_input(history, keys, error):
    with pytest.raises(error):
        plot_history(history, keys)


# ---------------------------------------------------------------------------- decision regions


def _blobs():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 2, generator=g)
    return X, (X[:, 0] > 0).long()


def test_plot_decision_regions(rc_unchanged):
    X, y = _blobs()
    calls = []

    def predict(points):
        calls.append(points)
        return (points[:, 0] > 0).long()

    fig = plot_decision_regions(predict, X, y, title="linear", resolution=30)
    assert isinstance(fig, Figure)
    assert _titles(fig) == ["linear"]
    (grid,) = calls
    assert isinstance(grid, torch.Tensor) and grid.dtype == torch.float32
    assert grid.shape == (900, 2)
    assert len(fig.axes[0].collections) >= 2  # filled contours and the scatter


def test_plot_decision_regions_numpy_and_axes(rc_unchanged):
    X, y = _blobs()
    fig, ax = plt.subplots()
    out = plot_decision_regions(lambda p: np.zeros(len(p), dtype=int), X.numpy(), y.numpy(),
                                ax=ax, resolution=10)
    assert out is fig and len(fig.axes) == 1


@pytest.mark.parametrize("X", [torch.zeros(10, 3), torch.zeros(10), torch.zeros(2, 5, 2)])
def test_plot_decision_regions_bad_X(X):
    with pytest.raises(ValueError, match="X"):
        plot_decision_regions(lambda p: p[:, 0].long(), X, torch.zeros(10, dtype=torch.long))


def test_plot_decision_regions_bad_resolution():
    X, y = _blobs()
    with pytest.raises(ValueError):
        plot_decision_regions(lambda p: p[:, 0].long(), X, y, resolution=1)


# ---------------------------------------------------------------------------- show_filters


def test_show_filters_kernels(rc_unchanged):
    w = torch.randn(6, 3, 5, 5)
    fig = show_filters(w, ncols=4, title="conv1")
    assert len(fig.axes) == 8  # 2 rows x 4
    assert sum(len(ax.images) for ax in fig.axes) == 6
    assert fig._suptitle.get_text() == "conv1"
    first = fig.axes[0].images[0]
    lim = float(w[0, 0].abs().max())
    assert first.get_clim() == pytest.approx((-lim, lim))
    assert len(show_filters(w, channel=None).axes) == 6
    assert len(show_filters(torch.zeros(3, 7, 7)).axes) == 3  # feature maps, all zero


@pytest.mark.parametrize(
    ("weight", "kwargs", "error"),
    [
        (torch.randn(6, 3, 5, 5), {"channel": 3}, ValueError),
        (torch.randn(6, 3, 5, 5), {"channel": -1}, ValueError),
        (torch.randn(6, 3, 5, 5), {"channel": 1.0}, TypeError),
        (torch.randn(5, 5), {}, ValueError),
        (torch.randn(6, 3, 5, 5), {"ncols": 0}, ValueError),
    ],
)
def test_show_filters_bad_input(weight, kwargs, error):
    with pytest.raises(error):
        show_filters(weight, **kwargs)


def test_show_filters_empty():
    with pytest.raises(ValueError):
        show_filters(torch.zeros(0, 1, 3, 3))


def test_show_filters_hspace(rc_unchanged):
    w = torch.randn(16, 1, 3, 3)
    fig = show_filters(w, ncols=8, hspace=0.1)
    assert fig.subplotpars.hspace == pytest.approx(0.1)
    assert fig.axes[8].get_position().y1 < fig.axes[0].get_position().y0  # a gap between the two rows
    with pytest.raises(ValueError):
        show_filters(w, hspace=-0.1)


# ---------------------------------------------------------------------------- plot_heatmap


def test_plot_heatmap(rc_unchanged):
    m = np.arange(12, dtype=float).reshape(3, 4)
    fig = plot_heatmap(m, xlabels=list("abcd"), ylabels=["x", "y", "z"], title="attn",
                       xlabel="key", ylabel="query")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # heatmap + colour bar
    ax = fig.axes[0]
    assert ax.get_title() == "attn" and ax.get_xlabel() == "key" and ax.get_ylabel() == "query"
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    assert len(ax.texts) == 12
    assert ax.texts[5].get_text() == "5.00"


def test_plot_heatmap_options(rc_unchanged):
    fig = plot_heatmap(torch.rand(20, 20), colorbar=False)  # 400 cells: no annotation
    assert len(fig.axes) == 1 and len(fig.axes[0].texts) == 0
    fig, ax = plt.subplots()
    out = plot_heatmap(np.eye(2), ax=ax, annotate=True, fmt="{:.0f}", colorbar=False)
    assert out is fig
    assert [t.get_text() for t in ax.texts] == ["1", "0", "0", "1"]


def test_plot_heatmap_cbar_label(rc_unchanged):
    fig = plot_heatmap(np.eye(3), cbar_label="attention weight")
    assert fig.axes[-1].get_ylabel() == "attention weight"
    fig = plot_heatmap(np.eye(3))                                   # default: an unlabelled colour bar, as before
    assert len(fig.axes) == 2 and fig.axes[-1].get_ylabel() == ""
    fig = plot_heatmap(np.eye(3), colorbar=False, cbar_label="ignored")
    assert len(fig.axes) == 1


@pytest.mark.parametrize(
    ("matrix", "kwargs"),
    [
        (np.zeros((2, 3)), {"xlabels": ["a", "b"]}),
        (np.zeros((2, 3)), {"ylabels": ["a", "b", "c"]}),
        (np.zeros(3), {}),
        (np.zeros((2, 2, 2)), {}),
    ],
)
def test_plot_heatmap_bad_input(matrix, kwargs):
    with pytest.raises(ValueError):
        plot_heatmap(matrix, **kwargs)


def test_tile_images_layout():
    images = torch.arange(5 * 2 * 3, dtype=torch.float32).reshape(5, 1, 2, 3)
    mosaic = tile_images(images, ncols=2, pad=1, pad_value=-1.0)
    assert mosaic.shape == (3 * 4, 2 * 5)
    np.testing.assert_array_equal(mosaic[1:3, 1:4], images[0, 0].numpy())   # first tile, top left
    np.testing.assert_array_equal(mosaic[1:3, 6:9], images[1, 0].numpy())   # second tile, same row
    np.testing.assert_array_equal(mosaic[5:7, 1:4], images[2, 0].numpy())   # third tile, next row
    assert (mosaic[9:11, 6:9] == -1).all()                                  # missing sixth tile is padding
    assert (mosaic[0] == -1).all() and (mosaic[:, 0] == -1).all()


def test_tile_images_colour_and_no_pad():
    images = np.random.default_rng(0).random((4, 3, 2, 2))
    mosaic = tile_images(images, ncols=4, pad=0)
    assert mosaic.shape == (2, 8, 3)
    np.testing.assert_array_equal(mosaic[:, 2:4], images[1].transpose(1, 2, 0))
    assert tile_images(np.zeros((3, 4, 4)), ncols=1).shape == (18, 6)


@pytest.mark.parametrize("kwargs, match", [
    ({"images": np.zeros((2, 2, 4, 4)), "ncols": 2}, "images"),
    ({"images": np.zeros((0, 1, 4, 4)), "ncols": 2}, "images"),
    ({"images": np.zeros((2, 4, 4)), "ncols": 0}, "ncols"),
    ({"images": np.zeros((2, 4, 4)), "ncols": 2, "pad": -1}, "pad"),
])
def test_tile_images_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tile_images(**kwargs)
