"""The lab-07 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import check_verdict as _verdict
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import nms as tv_nms

from utils.checks import detection as checks


def iou_loops(b1, b2):
    out = torch.zeros(len(b1), len(b2))
    for i, a in enumerate(b1.tolist()):
        for j, b in enumerate(b2.tolist()):
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = w * h
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            out[i, j] = inter / union
    return out


def test_box_iou_check(capsys):
    assert _verdict(checks.check_box_iou, iou_loops, capsys)
    assert _verdict(checks.check_box_iou, tv_box_iou, capsys)

    def no_clamp(b1, b2):  # negative overlaps of disjoint boxes are not clamped
        lt = torch.maximum(b1[:, None, :2], b2[None, :, :2])
        rb = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
        inter = (rb - lt).prod(-1)
        a1 = (b1[:, 2:] - b1[:, :2]).prod(1)
        a2 = (b2[:, 2:] - b2[:, :2]).prod(1)
        return inter / (a1[:, None] + a2[None] - inter)

    def inter_over_min(b1, b2):  # intersection over the smaller area
        lt = torch.maximum(b1[:, None, :2], b2[None, :, :2])
        inter = (torch.minimum(b1[:, None, 2:], b2[None, :, 2:]) - lt).clamp(min=0).prod(-1)
        a1 = (b1[:, 2:] - b1[:, :2]).prod(1)
        a2 = (b2[:, 2:] - b2[:, :2]).prod(1)
        return inter / torch.minimum(a1[:, None], a2[None])

    assert not _verdict(checks.check_box_iou, no_clamp, capsys)
    assert not _verdict(checks.check_box_iou, inter_over_min, capsys)


def test_nms_check(capsys):
    def nms_while(boxes, scores, thr):
        order = scores.argsort(descending=True)
        keep = []
        while len(order):
            i = order[0]
            keep.append(int(i))
            order = order[1:][tv_box_iou(boxes[i:i + 1], boxes[order[1:]])[0] <= thr]
        return torch.tensor(keep, dtype=torch.int64)

    assert _verdict(checks.check_nms, nms_while, capsys)
    assert _verdict(checks.check_nms, tv_nms, capsys)
    assert not _verdict(checks.check_nms,  # sorted indices instead of score order
                        lambda b, s, t: tv_nms(b, s, t).sort().values, capsys)
    assert not _verdict(checks.check_nms,  # ">=" suppression, i.e. threshold semantics off: keeps fewer
                        lambda b, s, t: tv_nms(b, s, t * 0.9), capsys)
    assert not _verdict(checks.check_nms,  # python list of ints
                        lambda b, s, t: tv_nms(b, s, t).tolist(), capsys)


def test_nms_check_rejects_a_float_or_crashing_empty_result(capsys):
    """torch.tensor(keep) is float32 when keep is empty; torch.stack(keep) raises: both crash a class without boxes."""
    def tensor_of_list(boxes, scores, thr):
        return torch.tensor(tv_nms(boxes, scores, thr).tolist())

    def stacked(boxes, scores, thr):
        return torch.stack(list(tv_nms(boxes, scores, thr)))

    for wrong in (tensor_of_list, stacked):
        assert not _verdict(checks.check_nms, wrong, capsys)
    checks.check_nms(tensor_of_list)
    assert "no boxes at all" in capsys.readouterr().out


def test_decode_check(capsys):
    assert _verdict(checks.check_decode_yolo, checks.reference_decode_yolo, capsys)

    def column_major(output, anchors, stride):  # swaps rows and columns
        boxes, obj, cls = checks.reference_decode_yolo(output.transpose(2, 3), anchors, stride)
        return boxes, obj, cls

    def no_sigmoid(output, anchors, stride):
        out = output.clone()
        B = anchors.shape[0]
        N, _, S, _ = out.shape
        v = out.view(N, B, -1, S, S)
        v[:, :, :2] = torch.logit(v[:, :, :2].clamp(0.01, 0.99))  # so that sigmoid(.) returns the raw value
        return checks.reference_decode_yolo(out, anchors, stride)

    assert not _verdict(checks.check_decode_yolo, column_major, capsys)
    assert not _verdict(checks.check_decode_yolo, no_sigmoid, capsys)


def test_average_precision_check(capsys):
    def ap_loop(scores, is_tp, num_gt):
        pairs = sorted(zip(scores.tolist(), is_tp.tolist()), reverse=True)
        tp, prev_recall, ap = 0, 0.0, 0.0
        for k, (_, hit) in enumerate(pairs, 1):
            tp += hit
            recall = tp / num_gt
            ap += (recall - prev_recall) * tp / k
            prev_recall = recall
        return ap

    assert _verdict(checks.check_average_precision, ap_loop, capsys)
    assert not _verdict(checks.check_average_precision,  # forgets to sort
                        lambda s, t, n: ap_loop(torch.arange(len(s), 0, -1).float(), t, n), capsys)
    assert not _verdict(checks.check_average_precision,  # recall over detected TP, not num_gt
                        lambda s, t, n: ap_loop(s, t, max(int(t.sum()), 1)), capsys)


def test_nms_check_explains_wrong_order_and_suppression_by_removed_boxes(capsys):
    assert not _verdict(checks.check_nms, lambda b, s, t: tv_nms(b, s, t).sort().values, capsys)
    checks.check_nms(lambda b, s, t: tv_nms(b, s, t).sort().values)
    assert "right boxes, wrong order" in capsys.readouterr().out

    def nms_any_higher(boxes, scores, thr):  # suppresses by every higher-scoring box, kept or not
        order = scores.argsort(descending=True)
        iou = tv_box_iou(boxes, boxes)
        keep = [i for k, i in enumerate(order.tolist()) if all(iou[i, j] <= thr for j in order[:k].tolist())]
        return torch.tensor(keep, dtype=torch.int64)

    assert not _verdict(checks.check_nms, nms_any_higher, capsys)
    checks.check_nms(nms_any_higher)
    out = capsys.readouterr().out
    assert "✗ chain A-B-C" in out and "compare a box only with the boxes you kept" in out


def test_decode_check_names_swapped_rows_and_columns(capsys):
    def grid_swapped(output, anchors, stride):  # x from the row index, y from the column index
        N, _, S, _ = output.shape
        out = output.reshape(N, anchors.shape[0], -1, S, S).permute(0, 3, 4, 1, 2)
        rows, cols = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
        bx = (rows[None, :, :, None] + torch.sigmoid(out[..., 0])) * stride
        by = (cols[None, :, :, None] + torch.sigmoid(out[..., 1])) * stride
        bw, bh = anchors[:, 0] * torch.exp(out[..., 2]), anchors[:, 1] * torch.exp(out[..., 3])
        boxes = torch.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], dim=-1)
        return (boxes.reshape(N, -1, 4), torch.sigmoid(out[..., 4]).reshape(N, -1),
                torch.softmax(out[..., 5:], dim=-1).reshape(N, S * S * anchors.shape[0], -1))

    assert not _verdict(checks.check_decode_yolo, grid_swapped, capsys)
    checks.check_decode_yolo(grid_swapped)
    out = capsys.readouterr().out
    assert "(x, y) = (6.4, 3.7) instead of (3.4, 6.7)" in out and "rows and columns swapped" in out

    checks.check_decode_yolo(lambda o, a, s: checks.reference_decode_yolo(o.transpose(2, 3), a, s))
    assert "read from another cell" in capsys.readouterr().out


def test_decode_check_names_pixel_anchors_times_stride_and_centre_size_boxes(capsys):
    def anchors_times_stride(output, anchors, stride):  # anchors taken as cell units
        return checks.reference_decode_yolo(output, anchors * stride, stride)

    def centre_size(output, anchors, stride):  # returns (cx, cy, w, h) instead of corners
        boxes, obj, cls = checks.reference_decode_yolo(output, anchors, stride)
        return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1), obj, cls

    assert not _verdict(checks.check_decode_yolo, anchors_times_stride, capsys)
    checks.check_decode_yolo(anchors_times_stride)
    out = capsys.readouterr().out
    assert "sizes are stride times too large (16x): anchors are already in pixels" in out, out
    assert not _verdict(checks.check_decode_yolo, centre_size, capsys)
    checks.check_decode_yolo(centre_size)
    out = capsys.readouterr().out
    assert "✗ worked example" in out and "you returned (cx, cy, w, h); return corners" in out, out
    checks.check_decode_yolo(centre_size, show_solution=True)
    assert "solution: reshape to (N, B, 5 + C, S, S)" in capsys.readouterr().out


def test_average_precision_check_names_voc_interpolation(capsys):
    def ap_interpolated(scores, is_tp, num_gt):  # VOC-style: precision replaced by its max to the right
        order = scores.argsort(descending=True)
        tp_cum = is_tp[order].float().cumsum(0)
        precision = tp_cum / torch.arange(1, len(tp_cum) + 1)
        precision = precision.flip(0).cummax(0).values.flip(0)
        recall = tp_cum / num_gt
        return float(((recall - torch.cat([recall.new_zeros(1), recall[:-1]])) * precision).sum())

    assert not _verdict(checks.check_average_precision, ap_interpolated, capsys)
    checks.check_average_precision(ap_interpolated)
    out = capsys.readouterr().out
    assert "did you take the max precision to the right (VOC interpolation)?" in out, out
    assert "hint:" in out and "solution:" not in out


def test_average_precision_check_rejects_an_ascending_sort(capsys):
    def ap_ascending(scores, is_tp, num_gt):
        order = scores.argsort()
        tp_cum = is_tp[order].float().cumsum(0)
        precision = tp_cum / torch.arange(1, len(tp_cum) + 1)
        recall = tp_cum / num_gt
        return float(((recall - torch.cat([recall.new_zeros(1), recall[:-1]])) * precision).sum())

    assert not _verdict(checks.check_average_precision, ap_ascending, capsys)
    checks.check_average_precision(ap_ascending)
    assert "✗ known value: TP, TP, FP" in capsys.readouterr().out


# ---------------------------------------------------------------------------- build_targets


def targets_loop(boxes_list, labels_list, anchors, S, stride, cell_of=math.floor):
    """A second correct implementation: plain Python per box, IoU of centred shapes by hand."""
    t = torch.zeros(len(boxes_list), S, S, len(anchors), 6, device=anchors.device)
    for n, (boxes, labels) in enumerate(zip(boxes_list, labels_list)):
        for (x1, y1, x2, y2), c in zip(boxes.tolist(), labels.tolist()):
            w, h = x2 - x1, y2 - y1
            cx, cy = (x1 + x2) / (2 * stride), (y1 + y2) / (2 * stride)
            j, i = cell_of(cx), cell_of(cy)
            ious = [min(w, pw) * min(h, ph) / (w * h + pw * ph - min(w, pw) * min(h, ph)) for pw, ph in anchors.tolist()]
            a = max(range(len(ious)), key=ious.__getitem__)
            pw, ph = anchors[a].tolist()
            t[n, i, j, a] = torch.tensor([cx - j, cy - i, math.log(w / pw), math.log(h / ph), 1.0, float(c)])
    return t


def _mistake(**change):
    """The reference with one thing done wrong (by keyword): a typical student mistake."""
    def build(boxes_list, labels_list, anchors, S, stride):
        t = anchors.new_zeros(len(boxes_list), S, S, len(anchors), 6) if not change.get("cpu") else \
            torch.zeros(len(boxes_list), S, S, len(anchors), 6)
        for n, (boxes, labels) in enumerate(zip(boxes_list, labels_list)):
            if len(boxes) == 0:
                continue
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride
            if change.get("corner"):
                centre = boxes[:, :2] / stride                                  # top-left corner, not the centre
            wh = boxes[:, 2:] - boxes[:, :2]
            cell = centre.round().long() if change.get("round") else centre.floor().long()
            cell = cell.clamp(max=S - 1)
            if change.get("nearest_size"):                                       # Euclidean distance of (w, h)
                best = (wh[:, None] - anchors[None]).norm(dim=-1).argmin(1)
            else:
                inter = torch.minimum(wh[:, None], anchors[None]).prod(-1)
                iou = inter / (wh.prod(1)[:, None] + anchors.prod(1)[None] - inter)
                best = iou.argmin(1) if change.get("argmin") else iou.argmax(1)
            offsets = centre - cell
            if change.get("pixel_offsets"):
                offsets = offsets * stride                                      # in pixels, not cells
            if change.get("swap_offsets"):
                offsets = offsets.flip(1)
            sizes = wh / anchors[best] if change.get("no_log") else torch.log(wh / anchors[best])
            if change.get("swap_wh"):
                sizes = torch.log(wh.flip(1) / anchors[best])
            values = torch.cat([offsets, sizes, torch.ones_like(wh[:, :1]), labels[:, None].float()], 1)
            row, col = (cell[:, 0], cell[:, 1]) if change.get("swap_cells") else (cell[:, 1], cell[:, 0])
            t[n, row, col, best] = values
        return t
    return build


def test_build_targets_accepts_correct_implementations(capsys):
    assert _verdict(checks.check_build_targets, checks.reference_build_targets, capsys)
    assert _verdict(checks.check_build_targets, targets_loop, capsys)


@pytest.mark.parametrize(("mistake", "explained"), [
    ("swap_cells", "rows and columns swapped"),
    ("swap_offsets", "x and y swapped"),
    ("round", "off by one cell"),
    ("no_log", "without the log"),
    ("nearest_size", "right cells, wrong anchors"),
    ("argmin", "right cells, wrong anchors"),
    ("swap_wh", "w and h swapped"),
    ("corner", "✗ worked example"),
    ("pixel_offsets", "offsets stride times too large (8x)"),
    ("cpu", "created a tensor on the CPU"),
])
def test_build_targets_rejects_typical_mistakes(mistake, explained, capsys):
    wrong = _mistake(**{mistake: True})
    assert not _verdict(checks.check_build_targets, wrong, capsys)
    checks.check_build_targets(wrong)
    out = capsys.readouterr().out
    assert explained in out, out
    assert "hint:" in out and "solution:" not in out                       # tier 1: what and the concept
    checks.check_build_targets(wrong, show_solution=True)
    assert "solution: t = zeros(N, S, S, B, 6)" in capsys.readouterr().out   # tier 2, when asked for


def test_build_targets_checks_the_empty_image_and_the_cell_border(capsys):
    def crashes_without_objects(boxes_list, labels_list, anchors, S, stride):
        if any(len(b) == 0 for b in boxes_list):
            torch.stack([])                                                    # like torch.cat of an empty list
        return checks.reference_build_targets(boxes_list, labels_list, anchors, S, stride)

    assert not _verdict(checks.check_build_targets, crashes_without_objects, capsys)
    checks.check_build_targets(crashes_without_objects)
    assert "✗ an image without objects" in capsys.readouterr().out

    def half_open_the_other_way(*args):  # ceil - 1: a centre on a border goes to the cell before it
        return targets_loop(*args, cell_of=lambda v: math.ceil(v) - 1)

    assert not _verdict(checks.check_build_targets, half_open_the_other_way, capsys)
    checks.check_build_targets(half_open_the_other_way)
    out = capsys.readouterr().out
    assert "✓ worked example" in out and "✗ centre exactly on a cell border" in out, out


def test_build_targets_reference_on_known_values():
    anchors = torch.tensor([[8.0, 8.0], [18.0, 18.0]])
    t = checks.reference_build_targets([torch.tensor([[14.75, 31.75, 27.25, 44.25]])], [torch.tensor([2])], anchors, 8, 8)
    assert t.shape == (1, 8, 8, 2, 6) and int(t[..., 4].sum()) == 1
    expected = torch.tensor([0.625, 0.75, math.log(12.5 / 18), math.log(12.5 / 18), 1.0, 2.0])
    torch.testing.assert_close(t[0, 4, 2, 1], expected)
