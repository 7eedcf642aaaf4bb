"""Checks for the YOLO-style detection lab (07): box IoU, NMS, YOLO decoding, average precision."""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_box_iou", "check_nms", "check_decode_yolo", "check_average_precision",
           "reference_decode_yolo", "random_boxes"]


def random_boxes(n: int, generator, size: float = 64.0):
    """n random xyxy boxes with x2 > x1, y2 > y1 inside [0, size]."""
    import torch

    xy = torch.rand(n, 2, generator=generator) * size * 0.8
    wh = torch.rand(n, 2, generator=generator) * size * 0.3 + 1.0
    return torch.cat([xy, xy + wh], dim=1)


@tiered
def check_box_iou(box_iou: Callable) -> bool:
    """Check ``box_iou(boxes1, boxes2)`` against ``torchvision.ops.box_iou``."""
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    g = torch.Generator().manual_seed(0)
    a, b = random_boxes(7, g), random_boxes(5, g)
    cases = [
        Case("7 x 5 random boxes", (a, b), expected=tv_box_iou, atol=1e-6),
        Case("a set against itself (diagonal = 1)", (a[:3], a[:3].clone()), expected=tv_box_iou, atol=1e-6),
        Case("disjoint boxes -> 0", (torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[5.0, 5, 6, 7], [2.0, 0, 4, 2]])),
             expected=tv_box_iou, atol=1e-6),
        Case("nested box", (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[2.0, 2, 4, 6]])), expected=tv_box_iou, atol=1e-6),
        Case("empty second set -> shape (N, 0)", (a, torch.zeros(0, 4)), expected=tv_box_iou, atol=1e-6),
        device_case(a, b),
    ]
    return run_check(
        "box_iou(boxes1, boxes2)", box_iou, cases,
        hint='IoU = intersection area / union area for every pair of boxes; the intersection is empty when the boxes do not overlap',
        solution="broadcast (N, 1, 2) against (1, M, 2): the intersection's corners are max of the top-left "
             "and min of the bottom-right corners; clamp its width and height at 0; inter / (a1 + a2 - inter)",
    )


@tiered
def check_nms(nms: Callable) -> bool:
    """Check ``nms(boxes, scores, iou_threshold)`` returns exactly ``torchvision.ops.nms``'s indices."""
    import torch
    from torchvision.ops import nms as tv_nms

    g = torch.Generator().manual_seed(1)

    def case(name, n, thr, clustered=False):
        boxes = random_boxes(n, g, size=20.0 if clustered else 64.0)
        scores = torch.randperm(n, generator=g).float() / n + 0.01       # distinct scores

        def test(fn):
            got = fn(boxes.clone(), scores.clone(), thr)
            if not isinstance(got, torch.Tensor) or got.dtype != torch.int64:
                empty = " (with no boxes too: torch.tensor([]) is float32 unless you pass dtype=torch.int64)" \
                    if n == 0 else ""
                return (f"expected an int64 tensor of indices, got "
                        f"{getattr(got, 'dtype', type(got).__name__)}{empty}")
            return _compare_kept(tv_nms(boxes, scores, thr), got)
        return Case(name, test=test)

    cases = [
        case("20 scattered boxes, threshold 0.5", 20, 0.5),
        case("30 clustered boxes, threshold 0.5", 30, 0.5, clustered=True),
        case("30 clustered boxes, threshold 0.2", 30, 0.2, clustered=True),
        case("threshold 0.9 keeps almost everything", 25, 0.9, clustered=True),
        case("a single box", 1, 0.5),
        case("no boxes at all (a class without detections): an empty int64 tensor", 0, 0.5),
    ]

    def tie_case(fn):
        boxes = torch.tensor([[0.0, 0, 2, 1], [0.0, 0, 1, 1]])          # IoU exactly 0.5
        scores = torch.tensor([0.9, 0.8])
        got = fn(boxes, scores, 0.5)
        return compare_values(tv_nms(boxes, scores, 0.5), got, path="kept indices when IoU == threshold "
                              "(suppress only if IoU > threshold)")

    cases.append(Case("IoU exactly at the threshold is kept", test=tie_case))

    def chain_case(fn):
        # A overlaps B, B overlaps C, A and C barely overlap: B is suppressed by A, so C survives
        boxes = torch.tensor([[0.0, 0, 10, 10], [4.0, 0, 14, 10], [8.0, 0, 18, 10]])   # IoU(A,B) = IoU(B,C) = 0.43
        scores = torch.tensor([0.9, 0.8, 0.7])
        got = fn(boxes, scores, 0.3)
        msg = _compare_kept(tv_nms(boxes, scores, 0.3), got)
        if msg and isinstance(got, torch.Tensor) and got.tolist() == [0]:
            msg += (" (C overlaps only B, which A already removed: compare a box only with the boxes you "
                    "kept, not with every higher-scoring box)")
        return msg

    cases.append(Case("chain A-B-C: a suppressed box suppresses nothing", test=chain_case))
    cases.append(device_case(random_boxes(10, g), torch.rand(10, generator=g), 0.5))
    return run_check(
        "nms(boxes, scores, iou_threshold)", nms, cases,
        hint='greedy: the highest-scoring remaining box is kept, and every box that overlaps a kept box by more than the threshold is dropped',
        solution="visit boxes by decreasing score; keep a box unless its IoU with an already kept box is "
             "> iou_threshold (strictly greater); return the kept indices (int64, also when empty) in visiting order",
    )


def _compare_kept(expected, got) -> str | None:
    """Compare kept indices; name the case "right boxes, wrong order" instead of reporting index differences."""
    import torch

    if (isinstance(got, torch.Tensor) and got.dtype == expected.dtype and got.shape == expected.shape
            and not torch.equal(got.cpu(), expected)
            and sorted(got.tolist()) == sorted(expected.tolist())):
        return (f"right boxes, wrong order: got {got.tolist()}, expected {expected.tolist()}; "
                "return the kept indices by decreasing score")
    return compare_values(expected, got, path="kept indices")


def reference_decode_yolo(output, anchors, stride):
    """Compact reference: sigmoid offsets + cell, exp sizes * anchors, xyxy in pixels."""
    import torch

    N, _, S, _ = output.shape
    B = anchors.shape[0]
    out = output.reshape(N, B, -1, S, S).permute(0, 3, 4, 1, 2)            # (N, S_y, S_x, B, 5 + C)
    cells = torch.arange(S, device=output.device)
    cy, cx = torch.meshgrid(cells, cells, indexing="ij")
    bx = (cx[None, :, :, None] + torch.sigmoid(out[..., 0])) * stride
    by = (cy[None, :, :, None] + torch.sigmoid(out[..., 1])) * stride
    bw = anchors[:, 0] * torch.exp(out[..., 2])
    bh = anchors[:, 1] * torch.exp(out[..., 3])
    boxes = torch.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], dim=-1)
    return (boxes.reshape(N, -1, 4), torch.sigmoid(out[..., 4]).reshape(N, -1),
            torch.softmax(out[..., 5:], dim=-1).reshape(N, S * S * B, -1))


@tiered
def check_decode_yolo(decode_yolo: Callable) -> bool:
    """Check ``decode_yolo(output, anchors, stride)`` on known values and against a compact reference."""
    import math

    import torch

    def worked(fn):
        S, B, C = 13, 1, 2
        out = torch.zeros(1, B * (5 + C), S, S)
        def logit(p):
            return math.log(p / (1 - p))

        out[0, 0, 6, 3], out[0, 1, 6, 3] = logit(0.4), logit(0.7)           # t_x, t_y at row 6, column 3
        out[0, 2, 6, 3], out[0, 3, 6, 3] = math.log(2.0), 0.0               # w = 2 * anchor, h = anchor
        boxes, obj, cls = fn(out, torch.tensor([[10.0, 20.0]]), 1)
        idx = 6 * S + 3
        expected = torch.tensor([3.4 - 10.0, 6.7 - 10.0, 3.4 + 10.0, 6.7 + 10.0])
        msg = compare_values(expected, boxes[0, idx], atol=1e-5, rtol=1e-6,
                             path="box of cell (row 6, column 3); its centre must be (x, y) = (3.4, 6.7)")
        if msg and isinstance(boxes, torch.Tensor) and boxes.shape[-1:] == (4,) and boxes[0].shape[0] > idx:
            b = boxes[0, idx].detach().cpu().double()
            cx, cy = float((b[0] + b[2]) / 2), float((b[1] + b[3]) / 2)
            if abs(cx - 3.4) > 1e-4 or abs(cy - 6.7) > 1e-4:
                swapped = abs(cx - 6.4) < 1e-3 and abs(cy - 3.7) < 1e-3
                other_cell = abs(cx - 3.5) < 1e-3 and abs(cy - 6.5) < 1e-3     # sigmoid(0) = 0.5: offsets of another cell
                msg = (f"decoded centre of cell (row 6, column 3): (x, y) = ({cx:.1f}, {cy:.1f}) instead of (3.4, 6.7)"
                       + ("; rows and columns swapped? x comes from the column j, y from the row i" if swapped else "")
                       + ("; the offsets were read from another cell: the output is laid out (N, channels, rows, "
                          "columns)" if other_cell else ""))
        return msg

    def random_case(N, B, C, S, stride):
        def test(fn):
            g = torch.Generator().manual_seed(N * 100 + B)
            out = torch.randn(N, B * (5 + C), S, S, generator=g)
            anchors = torch.rand(B, 2, generator=g) * 20 + 4
            got = fn(out.clone(), anchors.clone(), stride)
            if not isinstance(got, tuple) or len(got) != 3:
                return "expected a tuple (boxes, objectness, class_probs)"
            exp = reference_decode_yolo(out, anchors, stride)
            for label, e, o in zip(("boxes", "objectness", "class_probs"), exp, got):
                msg = compare_values(e, o, atol=1e-4, rtol=1e-5, path=label)
                if msg:
                    return msg + " (order: cell row, cell column, anchor)" if label == "boxes" else msg
            return None
        return test

    cases = [
        Case("worked example: sigmoid offsets (0.4, 0.7) in row 6, column 3, stride 1", test=worked),
        Case("1 image, 1 anchor, 2 classes, 4x4 grid, stride 16", test=random_case(1, 1, 2, 4, 16)),
        Case("2 images, 3 anchors, 3 classes, 8x8 grid, stride 8", test=random_case(2, 3, 3, 8, 8)),
        Case("1 image, 2 anchors, 1 class, 5x5 grid, stride 32", test=random_case(1, 2, 1, 5, 32)),
        device_case(inputs=lambda: (torch.randn(2, 3 * 7, 4, 4), torch.rand(3, 2) * 20 + 4, 8)),
    ]
    return run_check(
        "decode_yolo(output, anchors, stride)", decode_yolo, cases,
        hint='each cell predicts offsets inside the cell (through a sigmoid) and sizes relative to its anchor (through an exponential); the flat order is row, column, anchor',
        solution="reshape to (N, B, 5 + C, S, S) and permute to (N, S, S, B, 5 + C) so the flat order is "
             "row, column, anchor; centre = (cell + sigmoid(t)) * stride; size = anchor * exp(t); "
             "corners = centre -+ size / 2; sigmoid on objectness, softmax over the C class logits",
    )


@tiered
def check_average_precision(average_precision: Callable) -> bool:
    """Check ``average_precision(scores, is_tp, num_gt)`` against scikit-learn (rescaled by TP / num_gt)."""
    import torch
    from sklearn.metrics import average_precision_score

    def reference(scores, is_tp, num_gt):
        tp = int(is_tp.sum())
        if tp == 0:
            return 0.0
        return float(average_precision_score(is_tp.numpy(), scores.numpy()) * tp / num_gt)

    g = torch.Generator().manual_seed(0)
    s = torch.randperm(30, generator=g).float() / 30 + 0.01
    tp = (torch.rand(30, generator=g) < 0.6).long()
    cases = [
        Case("30 detections, 6 objects missed", (s, tp, int(tp.sum()) + 6), expected=reference, atol=1e-6),
        Case("every detection correct, all found -> 1", (s[:5], torch.ones(5, dtype=torch.long), 5),
             expected=reference, atol=1e-6),
        Case("unsorted scores: sort by score first", (s.flip(0), tp.flip(0), int(tp.sum()) + 2),
             expected=reference, atol=1e-6),
        Case("no true positive -> 0", (s[:4], torch.zeros(4, dtype=torch.long), 3), expected=reference, atol=1e-6),
        Case("known value: TP, TP, FP with 4 objects -> 0.5", (torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 0]), 4),
             expected=0.25 * 1.0 + 0.25 * 1.0, atol=1e-6),
        device_case(s, tp, int(tp.sum()) + 6),
    ]
    return run_check(
        "average_precision(scores, is_tp, num_gt)", average_precision, cases,
        hint='rank detections by score; precision and recall after each one; AP is the area under that curve, summed over the recall increments',
        solution="sort by decreasing score; cumulative TP count tp_k; precision_k = tp_k / k, recall_k = "
             "tp_k / num_gt; AP = sum over k of (recall_k - recall_(k-1)) * precision_k",
    )
