"""Checks for the YOLO-style detection lab (07): box IoU, NMS, YOLO decoding, training targets, average precision."""

from __future__ import annotations

from collections.abc import Callable

from .core import Case, compare_values, device_case, run_check, tiered

__all__ = ["check_box_iou", "check_nms", "check_decode_yolo", "check_build_targets", "check_average_precision",
           "reference_decode_yolo", "reference_build_targets", "random_boxes"]


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


def _box_mistake(expected, got, stride) -> str:
    """Name a typical decoding mistake when ``got`` boxes differ from the ``expected`` xyxy boxes ("" if none fits)."""
    import torch

    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return ""
    got = got.detach().cpu().float()
    centre, size = (expected[..., :2] + expected[..., 2:]) / 2, expected[..., 2:] - expected[..., :2]
    if torch.allclose(got, torch.cat([centre, size], -1), atol=1e-4, rtol=1e-5):
        return "; you returned (cx, cy, w, h); return corners (x1, y1, x2, y2) = centre -+ size / 2"
    got_size = got[..., 2:] - got[..., :2]
    if stride != 1 and torch.allclose(got_size, size * stride, atol=1e-3, rtol=1e-4):
        return (f"; sizes are stride times too large ({stride}x): anchors are already in pixels, "
                "so size = anchor * exp(t) needs no stride")
    return ""


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
        mistake = _box_mistake(expected, boxes[0, idx], 1) if msg and isinstance(boxes, torch.Tensor) \
            and boxes.dim() == 3 and boxes.shape[1] > idx else ""
        if mistake:
            return msg + mistake
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
                if msg and label == "boxes":
                    return msg + (_box_mistake(e, o, stride) or " (order: cell row, cell column, anchor)")
                if msg:
                    return msg
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

    def case(name, args, expected=reference):
        def test(fn):
            want = expected(*args) if callable(expected) else expected
            got = fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
            msg = compare_values(want, got, atol=1e-6, path="AP")
            try:
                higher = float(got) > want + 1e-6
            except (TypeError, ValueError, RuntimeError):
                higher = False
            if msg and higher:
                msg += ("; higher than expected: did you take the max precision to the right (VOC interpolation)? "
                        "This AP uses the precision at each recall step as it is")
            return msg
        return Case(name, test=test)

    g = torch.Generator().manual_seed(0)
    s = torch.randperm(30, generator=g).float() / 30 + 0.01
    tp = (torch.rand(30, generator=g) < 0.6).long()
    cases = [
        case("30 detections, 6 objects missed", (s, tp, int(tp.sum()) + 6)),
        case("every detection correct, all found -> 1", (s[:5], torch.ones(5, dtype=torch.long), 5)),
        case("unsorted scores: sort by score first", (s.flip(0), tp.flip(0), int(tp.sum()) + 2)),
        case("no true positive -> 0", (s[:4], torch.zeros(4, dtype=torch.long), 3)),
        case("known value: TP, TP, FP with 4 objects -> 0.5", (torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 0]), 4),
             expected=0.25 * 1.0 + 0.25 * 1.0),
        device_case(s, tp, int(tp.sum()) + 6),
    ]
    return run_check(
        "average_precision(scores, is_tp, num_gt)", average_precision, cases,
        hint='rank detections by score; precision and recall after each one; AP is the area under that curve, summed over the recall increments',
        solution="sort by decreasing score; cumulative TP count tp_k; precision_k = tp_k / k, recall_k = "
             "tp_k / num_gt; AP = sum over k of (recall_k - recall_(k-1)) * precision_k",
    )


def reference_build_targets(boxes_list, labels_list, anchors, S, stride):
    """Compact reference for the YOLO training targets, (N, S, S, B, 6) on ``anchors.device``.

    Per (image, cell row, cell column, anchor) slot: sigma(t_x), sigma(t_y), t_w, t_h, objectness,
    class. Each object fills the slot of the cell that contains its centre (floor of centre / stride)
    and of the anchor whose (w, h) has the highest IoU with its (w, h) when both are centred together.
    """
    import torch

    t = anchors.new_zeros(len(boxes_list), S, S, len(anchors), 6)
    for n, (boxes, labels) in enumerate(zip(boxes_list, labels_list)):
        if len(boxes) == 0:
            continue
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride                  # (K, 2) in cells
        wh = boxes[:, 2:] - boxes[:, :2]                                      # (K, 2) in pixels
        cell = centre.floor().long()                                          # (K, 2): column j, row i
        inter = torch.minimum(wh[:, None], anchors[None]).prod(-1)            # (K, B)
        best = (inter / (wh.prod(1)[:, None] + anchors.prod(1)[None] - inter)).argmax(1)
        values = torch.cat([centre - cell, torch.log(wh / anchors[best]),
                            torch.ones_like(wh[:, :1]), labels[:, None].to(t.dtype)], 1)
        t[n, cell[:, 1], cell[:, 0], best] = values
    return t


_TARGET_CHANNELS = (
    ((0, 1), "centre offsets sigma(t_x), sigma(t_y) = x/s - j, y/s - i (fractions of a cell, in [0, 1))"),
    ((2, 3), "size targets t_w, t_h = log(w / p_w), log(h / p_h)"),
    ((4,), "objectness"),
    ((5,), "class"),
)


def _slots(t) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in idx) for idx in (t[..., 4] != 0).nonzero().tolist()]


def _diagnose_targets(expected, got, stride=None) -> str | None:
    """Explain how ``got`` differs from the expected target tensor: which slots, which values."""
    import torch

    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor of shape {tuple(expected.shape)}, got {type(got).__name__}"
    if got.shape != expected.shape:
        return (f"shape: expected {tuple(expected.shape)} = (images, rows S, columns S, anchors B, 6), "
                f"got {tuple(got.shape)}")
    msg = compare_values(expected, got, atol=1e-5, rtol=1e-5, path="targets")
    if msg is None:
        return None
    got = got.detach().cpu().float()
    want, have = _slots(expected), _slots(got)
    if want != have:
        def listed(slots):
            shown = ", ".join(f"({n}, {r}, {c}, {a})" for n, r, c, a in slots[:3])
            return (shown + (f" and {len(slots) - 3} more" if len(slots) > 3 else "")) or "none"
        missing, extra = [w for w in want if w not in have], [h for h in have if h not in want]
        text = (f"objectness 1 expected but missing in the slots (image, row, column, anchor) {listed(missing)}; "
                f"set instead in {listed(extra)}")
        if sorted((n, c, r, a) for n, r, c, a in have) == want:
            return text + ": rows and columns swapped? the row i comes from y, the column j from x"
        if len(have) == len(want) and all(h[:3] == w[:3] for h, w in zip(have, want)):
            return (text + ": right cells, wrong anchors; the responsible anchor has the highest IoU with the "
                    "box's (w, h) when both are centred together (not the nearest size or area)")
        if len(have) == len(want) and all(h[0] == w[0] and h[3] == w[3] and max(abs(h[1] - w[1]), abs(h[2] - w[2])) <= 1
                                          for h, w in zip(sorted(have), sorted(want))):
            return (text + ": off by one cell; the responsible cell contains the box's centre "
                    "((x1 + x2) / 2, (y1 + y2) / 2): row floor(y / s), column floor(x / s)")
        return text
    idx = tuple(torch.tensor(want, dtype=torch.long).T) if want else None
    for channels, label in _TARGET_CHANNELS:
        if idx is None:
            break
        e, g = expected[idx][:, list(channels)], got[idx][:, list(channels)]
        wrong = compare_values(e, g, atol=1e-5, rtol=1e-5, path=f"responsible slots, {label}")
        if not wrong:
            continue
        if len(channels) == 2 and torch.allclose(g, e.flip(1), atol=1e-5):
            first, second = ("x", "y") if channels == (0, 1) else ("w", "h")
            return wrong + (f": {first} and {second} swapped (channel {channels[0]} is for {first}, "
                            f"channel {channels[1]} for {second})")
        if channels == (2, 3) and torch.allclose(g, e.exp(), atol=1e-4):
            return wrong + ": the ratios w / p_w without the log (the network's t_w is decoded as p_w e^t_w)"
        if channels == (0, 1) and stride not in (None, 1) and torch.allclose(g, e * stride, atol=1e-4):
            return wrong + (f": offsets stride times too large ({stride}x): they are fractions of a cell, "
                            "x / s - j, not pixels")
        if channels == (0, 1) and torch.allclose(g, e - 0.5, atol=1e-5):
            return wrong + ": offsets measured from the cell's centre instead of its top-left corner"
        return wrong
    return msg + " (outside the responsible slots every value must be 0)"


@tiered
def check_build_targets(build_targets: Callable) -> bool:
    """Check ``build_targets(boxes_list, labels_list, anchors, S, stride)`` against a compact reference
    on known values, a cell border, two objects in one cell, an image without objects and random scenes."""
    import torch

    anchors = torch.tensor([[8.0, 8.0], [18.0, 18.0]])
    one = [torch.tensor([[14.75, 31.75, 27.25, 44.25]])]                  # 12.5 px square centred at (21, 38)
    border = [torch.tensor([[19.0, 35.0, 29.0, 45.0]])]                   # centred at (24, 40): cell corner (5, 3)
    two = [torch.tensor([[6.5, 8.5, 13.5, 15.5], [3.0, 1.0, 23.0, 21.0]])]    # centres (10, 12) and (13, 11): cell (1, 1)
    empty = [torch.zeros(0, 4), torch.tensor([[40.0, 2.0, 52.0, 20.0]])]

    g = torch.Generator().manual_seed(7)
    scenes, classes = [], []
    for _ in range(3):                                                       # 65 x 65 canvases, 13 x 13 cells of 5 px
        boxes = random_boxes(6, g, size=65.0).clamp(max=64.9)
        scenes.append(boxes)
        classes.append(torch.randint(0, 4, (6,), generator=g))
    wide = torch.tensor([[6.0, 14.0], [16.0, 9.0], [24.0, 24.0]])
    keep = []                                                                # drop an object whose slot is taken
    for n, boxes in enumerate(scenes):
        seen, mask = set(), []
        for k in range(len(boxes)):
            slot = _slots(reference_build_targets([boxes[k:k + 1]], [classes[n][k:k + 1]], wide, 13, 5))[0][1:]
            mask.append(slot not in seen)
            seen.add(slot)
        keep.append(torch.tensor(mask))
    scenes = [b[m] for b, m in zip(scenes, keep)]
    classes = [c[m] for c, m in zip(classes, keep)]

    def case(name, boxes_list, labels_list, anchors, S, stride):
        def test(fn):
            args = ([b.clone() for b in boxes_list], [c.clone() for c in labels_list], anchors.clone(), S, stride)
            return _diagnose_targets(reference_build_targets(boxes_list, labels_list, anchors, S, stride), fn(*args),
                                     stride)
        return Case(name, test=test)

    cases = [
        case("worked example: a 12.5 px box centred at (x, y) = (21, 38), stride 8 -> row 4, column 2, anchor 1 (18x18)",
             one, [torch.tensor([2])], anchors, 8, 8),
        case("centre exactly on a cell border (24, 40) = 3 and 5 cells: column 3, row 5, offsets 0",
             border, [torch.tensor([1])], anchors, 8, 8),
        case("two objects in one cell: the small one on anchor 0, the large one on anchor 1",
             two, [torch.tensor([0, 2])], anchors, 8, 8),
        case("an image without objects (all zeros) next to one with an object", empty,
             [torch.zeros(0, dtype=torch.long), torch.tensor([1])], anchors, 8, 8),
        case(f"3 random canvases ({sum(map(len, scenes))} objects), 3 anchors of different shapes, 13x13 grid, "
             "stride 5", scenes, classes, wide, 13, 5),
        device_case(scenes, classes, wide, 13, 5),
    ]
    return run_check(
        "build_targets(boxes_list, labels_list, anchors, S, stride)", build_targets, cases,
        hint="each object fills exactly one slot: the cell that contains its centre and the anchor whose shape "
             "overlaps its shape best; the targets are what decode_yolo must turn back into the box",
        solution="t = zeros(N, S, S, B, 6) on anchors.device; per box: centre (cx, cy) = (x1 + x2, y1 + y2) / 2 / stride, "
             "column j = floor(cx), row i = floor(cy); a = argmax over anchors of min(w, p_w) min(h, p_h) / "
             "(w h + p_w p_h - min(w, p_w) min(h, p_h)); t[n, i, j, a] = (cx - j, cy - i, log(w / p_w), log(h / p_h), 1, class)",
    )
