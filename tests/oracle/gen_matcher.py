# scipy/PyTorch oracle for models/detr/ (linear_assignment, box_ops, matcher): writes matcher.pxt for
# tests/models/matcher_test.cpp. Usage: gen_matcher.py <outdir>.
#   lsa/<i>/cost (R, C) f32 or f64, lsa/<i>/total (f64: scipy's optimum, summed in f64), lsa/<i>/rows, cols
#     (scipy.optimize.linear_sum_assignment's answer), lsa/<i>/unique (bool: continuous costs, so the
#     optimal assignment is unique and the indices must match too).
#   giou/a, giou/b (N, 4) f64 xyxy; giou/iou (N,): torch's IoU of a[i], b[i]; giou/giou (N, N): torch's GIoU of
#     a[i], b[j] (pairs with a positive union and hull, zero-width boxes among them).
#   m/<i>/probs (B, Q, C+1), m/<i>/boxes (B, Q, 4) in f32 or f64; m/<i>/weights (3,) f64 (class, bbox, giou);
#     m/<i>/<b>/labels (M_b,) i64, m/<i>/<b>/tboxes (M_b, 4); m/<i>/<b>/cost (Q, M_b) f64: DETR's matching
#     cost computed with torch in f64 from the stored inputs; m/<i>/<b>/pred, m/<i>/<b>/target: scipy's
#     linear_sum_assignment of that cost.
import os
import sys

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from pxt import write_pxt

DTYPES = {"f32": np.float32, "f64": np.float64}


# DETR's box math, written from its definition (xyxy boxes; pairwise over (N, 4) x (M, 4)).
def cxcywh_to_xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def area(b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def pairwise_iou(a, b):
    lo = torch.max(a[:, None, :2], b[None, :, :2])
    hi = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (hi - lo).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a)[:, None] + area(b)[None, :] - inter
    return inter / union, union


def pairwise_giou(a, b):
    iou, union = pairwise_iou(a, b)
    lo = torch.min(a[:, None, :2], b[None, :, :2])
    hi = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (hi - lo).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull


def matching_cost(probs, boxes, labels, tboxes, w_class, w_bbox, w_giou):
    """probs (Q, C+1), boxes (Q, 4), labels (M,), tboxes (M, 4), all torch f64 -> (Q, M)."""
    cost_class = -probs[:, labels]
    cost_bbox = torch.cdist(boxes, tboxes, p=1)
    cost_giou = -pairwise_giou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(tboxes))
    return w_bbox * cost_bbox + w_class * cost_class + w_giou * cost_giou


def lsa_cases(rng, out):
    cases = []
    for dt in DTYPES:
        for shape in [(100, 20), (20, 100), (100, 100), (300, 50), (50, 300), (300, 300)]:
            cases.append((rng.uniform(-1, 1, shape), dt, True))
        cases.append((rng.lognormal(0, 3, (60, 80)), dt, True))  # values over ~6 decades
    cases.append((rng.integers(0, 5, (120, 90)).astype(np.float64), "f64", False))  # many ties
    big = rng.uniform(0, 10, (40, 70))
    big[rng.uniform(size=big.shape) < 0.5] = np.inf  # forbidden pairs, still feasible
    cases.append((big, "f64", True))
    for i, (cost, dt, unique) in enumerate(cases):
        cost = cost.astype(DTYPES[dt])
        rows, cols = linear_sum_assignment(cost)
        out[f"lsa/{i}/cost"] = cost
        out[f"lsa/{i}/total"] = np.array(cost.astype(np.float64)[rows, cols].sum())
        out[f"lsa/{i}/rows"] = rows.astype(np.int64)
        out[f"lsa/{i}/cols"] = cols.astype(np.int64)
        out[f"lsa/{i}/unique"] = np.array(unique)


def giou_cases(rng, out):
    n = 200
    c = rng.uniform(0, 1, (2, n, 2))
    wh = rng.uniform(0, 0.6, (2, n, 2))
    wh[0, :20, 0] = 0  # zero-width boxes against boxes of positive area
    a, b = (torch.tensor(np.concatenate([c[k] - wh[k] / 2, c[k] + wh[k] / 2], axis=1)) for k in range(2))
    b[20:30] = a[20:30]  # identical
    out["giou/a"], out["giou/b"] = a, b
    out["giou/iou"] = pairwise_iou(a, b)[0].diagonal()
    out["giou/giou"] = pairwise_giou(a, b)


def matcher_cases(rng, out):
    # (B, Q, C+1, targets per image, dtype, weights)
    cases = [(4, 100, 92, [0, 5, 20, 50], "f32", (1.0, 5.0, 2.0)),
             (3, 100, 92, [1, 30, 100], "f64", (1.0, 5.0, 2.0)),
             (2, 7, 5, [10, 3], "f64", (2.0, 1.0, 0.5))]  # more targets than queries
    for i, (B, Q, C, counts, dt, weights) in enumerate(cases):
        npdt = DTYPES[dt]
        logits = torch.tensor(rng.standard_normal((B, Q, C)) * 2)
        probs = logits.softmax(-1).numpy().astype(npdt)
        boxes = torch.tensor(rng.standard_normal((B, Q, 4))).sigmoid().numpy().astype(npdt)
        out[f"m/{i}/probs"], out[f"m/{i}/boxes"] = probs, boxes
        out[f"m/{i}/weights"] = np.array(weights)
        for b, M in enumerate(counts):
            labels = rng.integers(0, C - 1, M).astype(np.int64)
            tboxes = np.concatenate([rng.uniform(0.1, 0.9, (M, 2)), rng.uniform(0.01, 0.5, (M, 2))], 1)
            tboxes[:M // 10, 2] = 0  # a few zero-width targets
            tboxes = tboxes.astype(npdt)
            cost = matching_cost(torch.tensor(probs[b], dtype=torch.float64),
                                 torch.tensor(boxes[b], dtype=torch.float64), torch.tensor(labels),
                                 torch.tensor(tboxes, dtype=torch.float64), *weights)
            pred, target = linear_sum_assignment(cost.numpy())
            p = f"m/{i}/{b}/"
            out[p + "labels"], out[p + "tboxes"], out[p + "cost"] = labels, tboxes, cost
            out[p + "pred"], out[p + "target"] = pred.astype(np.int64), target.astype(np.int64)


def main():
    out = {}
    rng = np.random.default_rng(1234)
    lsa_cases(rng, out)
    giou_cases(rng, out)
    matcher_cases(rng, out)
    write_pxt(os.path.join(sys.argv[1], "matcher.pxt"), out)


if __name__ == "__main__":
    main()
