# pycocotools' COCOeval (bbox) on one JSON document of ground truth and detections: the oracle of
# models/detr/coco_eval. Imported by gen_coco_eval.py; run as a script by tests/models/coco_eval_test.cpp.
#
# Document: {"images": [id, ...], "categories": [id, ...],
#            "annotations": [{"image_id", "category_id", "bbox": [x, y, w, h], "area", "iscrowd"}, ...],
#            "detections": [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]}
# Annotation ids are their positions + 1 (COCO's ids start at 1; pycocotools treats a matched id 0 as no match).
# A number may be the string "nan" (strict JSON has no NaN): a bbox entry, an area or a score.
#
# Usage as a script: coco_oracle.py <document.json> <result.json>; result: {"stats": [12], "summary": text}.
import contextlib
import io
import json
import sys


def missing_reason():
    """Why pycocotools cannot be used here, or '' when it can."""
    try:
        import pycocotools.coco  # noqa: F401
        import pycocotools.cocoeval  # noqa: F401
    except Exception as e:  # ImportError, or a broken binary extension
        return f"pycocotools is not importable by {sys.executable} ({type(e).__name__}: {e})"
    return ""


def _nan(x):
    return float("nan") if x == "nan" else x


def _with_nans(item):
    item = dict(item, bbox=[_nan(v) for v in item["bbox"]])
    for key in ("area", "score"):
        if key in item:
            item[key] = _nan(item[key])
    return item


def evaluate(doc):
    """The 12 stats and summarize()'s printed table, as DETR's reference evaluator runs pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress lines
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i} for i in doc["images"]],
            "categories": [{"id": c} for c in doc["categories"]],
            "annotations": [dict(_with_nans(a), id=n + 1) for n, a in enumerate(doc["annotations"])],
        }
        gt.createIndex()
        results = [_with_nans(d) for d in doc["detections"]]  # copies: loadRes adds fields to them
        # loadRes cannot take an empty list; DETR's CocoEvaluator uses an empty COCO() then.
        dt = gt.loadRes(results) if results else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        ev.summarize()
    return {"stats": [float(s) for s in ev.stats], "summary": table.getvalue()}


def thresholds():
    """COCOeval's default IoU and recall thresholds."""
    from pycocotools.cocoeval import Params

    p = Params(iouType="bbox")
    return [float(t) for t in p.iouThrs], [float(r) for r in p.recThrs]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: coco_oracle.py <document.json> <result.json>")
    reason = missing_reason()
    if reason:
        sys.exit(reason)
    with open(sys.argv[1]) as f:
        document = json.load(f)
    with open(sys.argv[2], "w") as f:
        json.dump(evaluate(document), f)
