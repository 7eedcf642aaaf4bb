"""The lab-07 checks accept correct code written differently and reject typical mistakes."""

from __future__ import annotations

import re

import torch
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import nms as tv_nms

from utils.checks import detection as checks


def _verdict(check, fn, capsys) -> bool:
    verdict = check(fn)
    out = capsys.readouterr().out
    assert bool(re.search(r"^✓ all \d+ cases passed$", out, re.M)) == verdict
    return verdict


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
