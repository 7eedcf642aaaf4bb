"""Seeded synthetic image tasks: segmentation scenes and detection canvases.

Both draw the same three shape classes (circle, square, triangle) of varying size and
brightness on a textured, noisy background, so a model must use shape, not intensity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_float, check_int

__all__ = [
    "SHAPE_CLASSES",
    "SegmentationScenes",
    "DetectionCanvases",
    "make_segmentation_scenes",
    "make_detection_canvases",
]

SHAPE_CLASSES = ("circle", "square", "triangle")


def _shape_mask(kind: int, cx: float, cy: float, r: float, yy: np.ndarray, xx: np.ndarray):
    """Boolean mask of a shape centred at (cx, cy) with half-size r (kind: 0, 1, 2)."""
    if kind == 0:
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if kind == 1:
        return (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    # upward triangle with apex (cx, cy - r) and base y = cy + r
    inside_y = (yy >= cy - r) & (yy <= cy + r)
    half_width = (yy - (cy - r)) / 2.0
    return inside_y & (np.abs(xx - cx) <= half_width)


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray):
    fx, fy = rng.uniform(0.05, 0.25, 2)
    phase = rng.uniform(0, 2 * np.pi, 2)
    texture = 0.5 * (np.sin(fx * xx + phase[0]) * np.sin(fy * yy + phase[1]))
    base = rng.uniform(0.15, 0.35)
    return base + 0.1 * texture + rng.normal(0.0, 0.05, (size, size))


@dataclass(frozen=True)
class SegmentationScenes:
    """Images with per-pixel labels.

    Attributes:
        images: Tensor[N, 1, H, W] float32 in [0, 1].
        masks: Tensor[N, H, W] int64; 0 = background, k = SHAPE_CLASSES[k - 1].
        classes: ("background", "circle", "square", "triangle").
    """

    images: object
    masks: object
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class DetectionCanvases:
    """Images with object boxes.

    Attributes:
        images: Tensor[N, 1, H, W] float32 in [0, 1].
        boxes: list of N Tensor[K_i, 4] float32, xyxy in pixels (x2, y2 exclusive).
        labels: list of N Tensor[K_i] int64, index into ``classes``.
        classes: SHAPE_CLASSES.
    """

    images: object
    boxes: list
    labels: list
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)


def _overlaps(box, boxes, margin: float) -> bool:
    x1, y1, x2, y2 = box
    return any(
        x1 < bx2 + margin and bx1 < x2 + margin and y1 < by2 + margin and by1 < y2 + margin
        for bx1, by1, bx2, by2 in boxes
    )


def _draw_objects(rng, size, n_objects, min_size, max_size, allow_overlap):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    image = _background(rng, size, yy, xx)
    label_map = np.zeros((size, size), dtype=np.int64)
    boxes, labels = [], []
    for _ in range(n_objects):
        for _attempt in range(50):
            kind = int(rng.integers(0, 3))
            r = rng.uniform(min_size, max_size) / 2.0
            cx, cy = rng.uniform(r + 1, size - r - 1, 2)
            mask = _shape_mask(kind, cx, cy, r, yy, xx)
            rows, cols = np.nonzero(mask)
            box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            if allow_overlap or not _overlaps(box, boxes, margin=2):
                break
        else:
            continue
        brightness = rng.uniform(0.55, 0.95)
        image[mask] = brightness + rng.normal(0.0, 0.05, mask.sum())
        label_map[mask] = kind + 1
        boxes.append(box)
        labels.append(kind)
    return np.clip(image, 0.0, 1.0).astype(np.float32), label_map, boxes, labels


def make_segmentation_scenes(
    n: int = 512, size: int = 64, max_shapes: int = 4, seed: int = 0
) -> SegmentationScenes:
    """Scenes of 1..``max_shapes`` shapes (possibly overlapping; later ones on top).

    Args:
        n: number of scenes.
        size: image height and width in pixels (>= 16).
        max_shapes: most shapes per scene.
        seed: generator seed (the same seed gives the same scenes).

    Returns:
        SegmentationScenes: images (n, 1, size, size), masks (n, size, size).
    """
    import torch

    check_int("n", n, minimum=1)
    check_int("size", size, minimum=16)
    check_int("max_shapes", max_shapes, minimum=1)
    rng = np.random.default_rng(seed)
    images = np.empty((n, 1, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=np.int64)
    for i in range(n):
        k = int(rng.integers(1, max_shapes + 1))
        images[i, 0], masks[i], _, _ = _draw_objects(
            rng, size, k, size / 8, size / 3, allow_overlap=True
        )
    return SegmentationScenes(
        torch.from_numpy(images), torch.from_numpy(masks), ("background",) + SHAPE_CLASSES
    )


def make_detection_canvases(
    n: int = 512,
    size: int = 64,
    max_objects: int = 4,
    min_size: float = 8.0,
    max_size: float = 24.0,
    seed: int = 0,
) -> DetectionCanvases:
    """Canvases with 1..``max_objects`` non-overlapping shapes and their tight boxes.

    Args:
        n: number of canvases.
        size: image height and width in pixels (>= 16).
        max_objects: most objects per canvas.
        min_size, max_size: range of object sizes in pixels (diameter / side).
        seed: generator seed.

    Returns:
        DetectionCanvases: images (n, 1, size, size) and per-image boxes/labels.

    Raises:
        ValueError: sizes out of range (``max_size`` must fit in the canvas).
    """
    import torch

    check_int("n", n, minimum=1)
    check_int("size", size, minimum=16)
    check_int("max_objects", max_objects, minimum=1)
    check_float("min_size", min_size, minimum=2.0)
    check_float("max_size", max_size, minimum=min_size)
    if max_size > size - 4:
        raise ValueError(f"max_size: expected at most size - 4 = {size - 4}, got {max_size!r}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, 1, size, size), dtype=np.float32)
    all_boxes, all_labels = [], []
    for i in range(n):
        k = int(rng.integers(1, max_objects + 1))
        images[i, 0], _, boxes, labels = _draw_objects(
            rng, size, k, min_size, max_size, allow_overlap=False
        )
        all_boxes.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        all_labels.append(torch.tensor(labels, dtype=torch.int64))
    return DetectionCanvases(torch.from_numpy(images), all_boxes, all_labels, SHAPE_CLASSES)
