# pycocotools oracle for models/detr/coco_eval: hand-made cases and random detections over labelme's example
# annotations, each written with pycocotools' 12 stats and table to coco_eval.json for coco_eval_test.cpp.
#
# Usage: gen_coco_eval.py <outdir>. Writes <outdir>/coco_eval.json:
#   {"iou_thresholds": [...], "recall_thresholds": [...],
#    "cases": {name: {"input": document (see coco_oracle.py), "stats": [12], "summary": text}}}
# Without pycocotools it writes <outdir>/coco_eval.skip (one line: why) instead, and the test skips.
import glob
import json
import os
import sys

import numpy as np

import coco_oracle

LABELME = "/usr/share/doc/labelme-examples/examples"


def ann(image, cat, box, area=None, crowd=0):
    return {"image_id": image, "category_id": cat, "bbox": list(box),
            "area": box[2] * box[3] if area is None else area, "iscrowd": crowd}


def det(image, cat, box, score):
    return {"image_id": image, "category_id": cat, "bbox": list(box), "score": score}


def doc(images, categories, annotations, detections):
    return {"images": images, "categories": categories, "annotations": annotations, "detections": detections}


def hand_made_cases():
    cases = {}

    # Every annotation found once, boxes of all three area ranges.
    gts = [ann(1, 1, [10, 10, 20, 20]), ann(1, 2, [50, 50, 60, 40]), ann(2, 1, [0, 0, 150, 120]),
           ann(2, 1, [200, 30, 5, 8]), ann(3, 2, [30, 40, 100.5, 99.25])]
    cases["perfect"] = doc([1, 2, 3], [1, 2], gts,
                           [det(g["image_id"], g["category_id"], g["bbox"], 0.9 - 0.1 * i) for i, g in enumerate(gts)])

    cases["no_detections"] = doc([1, 2], [1, 2], gts[:4], [])

    # Category 3 has no annotation (its detections count nowhere); category 2 has only small ones, so its
    # medium and large precision stays -1 too.
    cases["category_without_gt"] = doc(
        [1, 2], [1, 2, 3],
        [ann(1, 1, [10, 10, 50, 50]), ann(2, 1, [0, 0, 100, 100]), ann(1, 2, [5, 5, 10, 10])],
        [det(1, 1, [12, 10, 50, 50], 0.8), det(2, 1, [0, 0, 60, 100], 0.7), det(1, 2, [5, 5, 10, 11], 0.6),
         det(1, 3, [10, 10, 50, 50], 0.95), det(2, 3, [0, 0, 100, 100], 0.5), det(2, 2, [60, 60, 40, 40], 0.3)])

    # Crowd regions absorb any number of detections (IoU over the detection's area), a regular annotation
    # inside one is still matched first, and an image whose only annotation is a crowd has nothing to find.
    cases["crowd"] = doc(
        [1, 2], [1],
        [ann(1, 1, [0, 0, 200, 200], crowd=1), ann(1, 1, [20, 20, 40, 40]), ann(2, 1, [50, 50, 100, 100], crowd=1),
         ann(1, 1, [60, 120, 30, 30])],
        [det(1, 1, [20, 20, 40, 40], 0.5), det(1, 1, [21, 20, 40, 40], 0.9), det(1, 1, [100, 100, 30, 30], 0.8),
         det(1, 1, [150, 150, 80, 80], 0.7), det(1, 1, [180, 180, 40, 40], 0.65), det(1, 1, [120, 10, 20, 20], 0.6),
         det(1, 1, [60, 121, 30, 30], 0.55), det(1, 1, [300, 300, 20, 20], 0.85),
         det(2, 1, [60, 60, 20, 20], 0.99), det(2, 1, [40, 40, 30, 30], 0.4), det(2, 1, [10, 10, 20, 20], 0.3)])

    # Equal scores within and across images: accumulate's stable sort orders them by image, then by rank.
    anns, dets = [], []
    for img in range(1, 5):
        anns += [ann(img, 1, [10, 10, 40, 40]), ann(img, 1, [100, 100, 40, 40])]
        hit = [10, 10, 40, 40] if img % 2 else [100, 100, 40, 40]
        miss = [300, 300, 40, 40]
        dets += [det(img, 1, miss if img % 3 == 0 else hit, 0.5), det(img, 1, miss, 0.5),
                 det(img, 1, [100, 100, 40, 40] if img % 2 else [10, 10, 40, 40], 0.25)]
    cases["score_ties_across_images"] = doc([1, 2, 3, 4], [1], anns, dets)

    # Area ranges: the annotation's area field (not its box) decides, both ends inclusive (1024, 9216 are in
    # two ranges); unmatched detections outside a range are ignored there, matched ones follow their match.
    cases["area_ranges"] = doc(
        [1, 2], [1, 2],
        [ann(1, 1, [0, 0, 32, 32], area=1024), ann(1, 1, [100, 0, 96, 96], area=9216),
         ann(1, 1, [0, 100, 50, 50], area=900.0), ann(1, 2, [200, 200, 120, 120], area=5000.5),
         ann(2, 1, [10, 10, 10, 10]), ann(2, 2, [0, 0, 300, 200], area=30000), ann(2, 2, [0, 250, 20, 20])],
        [det(1, 1, [0, 0, 32, 32], 0.9), det(1, 1, [100, 0, 96, 96], 0.8), det(1, 1, [0, 100, 50, 50], 0.7),
         det(1, 1, [300, 300, 31, 33], 0.95), det(1, 1, [300, 0, 100, 100], 0.6), det(1, 2, [200, 200, 120, 125], 0.9),
         det(2, 1, [10, 10, 10, 11], 0.5), det(2, 1, [50, 50, 5, 5], 0.55), det(2, 2, [0, 0, 300, 210], 0.8),
         det(2, 2, [0, 250, 20, 21], 0.7), det(2, 2, [400, 400, 200, 200], 0.75)])

    # More than 100 detections in one image and category: only the 100 best count (and 1 / 10 for AR@1/10).
    rng = np.random.default_rng(7)
    anns = [ann(1, 1, [float(x), float(y), 8.0, 8.0]) for x in range(0, 120, 10) for y in range(0, 120, 10)]
    dets = []
    for i, a in enumerate(anns):
        dets.append(det(1, 1, a["bbox"], float(rng.uniform(0.2, 1.0))))
        if i % 3 == 0:
            dets.append(det(1, 1, [500.0 + i, 500.0, 8.0, 8.0], float(rng.uniform(0.0, 1.0))))
    anns += [ann(2, 2, [0, 0, 50, 50]), ann(2, 1, [300, 300, 9, 9])]
    dets += [det(2, 2, [0, 0, 50, 50], 0.3), det(2, 1, [300, 300, 9, 9], 0.01)]
    cases["max_dets"] = doc([1, 2], [1, 2], anns, dets)

    # Image 2 has detections and no annotation: all its detections are false positives.
    cases["image_without_gt"] = doc(
        [1, 2, 3], [1],
        [ann(1, 1, [10, 10, 50, 50]), ann(3, 1, [0, 0, 20, 20])],
        [det(1, 1, [10, 10, 50, 50], 0.6), det(2, 1, [10, 10, 50, 50], 0.9), det(2, 1, [70, 10, 50, 50], 0.8),
         det(3, 1, [0, 0, 20, 21], 0.7)])

    # IoUs that equal the thresholds (h / 100 for a 100 x h box over a 100 x 100 one) and just miss them.
    anns, dets = [], []
    for i, h in enumerate([50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 49.99, 74.99, 100]):
        anns.append(ann(i + 1, 1, [0, 0, 100, 100]))
        dets.append(det(i + 1, 1, [0, 0, 100, h], 1.0 - 0.01 * i))
    cases["iou_at_thresholds"] = doc(list(range(1, 14)), [1], anns, dets)

    # Greedy matching: the higher score takes the best box; equal IoUs go to the later annotation; a
    # detection prefers a regular annotation to an ignored (crowd) one even at a lower IoU.
    cases["greedy_order"] = doc(
        [1, 2], [1],
        [ann(1, 1, [0, 0, 100, 100]), ann(1, 1, [0, 0, 100, 100]), ann(1, 1, [10, 0, 100, 100]),
         ann(2, 1, [0, 0, 100, 100], crowd=1), ann(2, 1, [20, 0, 100, 100])],
        [det(1, 1, [5, 0, 100, 100], 0.9), det(1, 1, [5, 0, 100, 100], 0.8), det(1, 1, [0, 0, 100, 100], 0.7),
         det(1, 1, [0, 0, 100, 100], 0.6), det(2, 1, [0, 0, 100, 100], 0.9), det(2, 1, [15, 0, 100, 100], 0.8)])

    # Bad input as pycocotools takes it: negative and zero sizes, a zero-area annotation, an annotation and a
    # detection of an unlisted category, an annotation on an unlisted image, unsorted and repeated ids.
    cases["odd_input"] = doc(
        [30, 10, 20, 10], [7, 3],
        [ann(10, 7, [0, 0, 50, 50]), ann(10, 7, [100, 100, 0, 20]), ann(20, 3, [5, 5, 40, 30]),
         ann(20, 5, [5, 5, 40, 30]), ann(40, 3, [0, 0, 10, 10]), ann(30, 3, [0, 0, 100, 100], area=-5.0)],
        [det(10, 7, [50, 50, -50, -50], 0.9), det(10, 7, [0, 0, 50, -50], 0.8), det(10, 7, [0, 0, 0, 50], 0.7),
         det(10, 7, [100, 100, 0, 20], 0.75), det(10, 7, [0, 0, 50, 50], 0.4), det(20, 3, [5, 5, 40, 30], 0.5),
         det(20, 5, [5, 5, 40, 30], 0.99), det(30, 3, [-10, -10, -20, -30], 0.6), det(30, 3, [0, 0, 100, 100], 0.2)])

    # NaN ("nan", see coco_oracle.py): a NaN score sorts last; a NaN coordinate makes NaN IoUs, which pass
    # every threshold test; a NaN area is in every range.
    cases["nan_input"] = doc(
        [1, 2], [1],
        [ann(1, 1, [0, 0, 50, 50]), ann(1, 1, [100, 0, 50, 50]), ann(2, 1, [0, 0, 20, 20], area="nan"),
         ann(2, 1, [50, 50, 200, 200])],
        [det(1, 1, ["nan", 0, 50, 50], 0.9), det(1, 1, [0, 0, 50, 50], "nan"), det(1, 1, [100, 0, 50, 50], 0.5),
         det(2, 1, [0, 0, 20, 20], 0.8), det(2, 1, [50, 50, 200, "nan"], 0.7), det(2, 1, [300, 300, 5, 5], "nan")])
    return cases


def polygon_area(points):
    x, y = np.asarray(points, dtype=np.float64).T
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def labelme_images():
    """(width, height, [(label, xywh box, area)]) per labelme example file; polygons and rectangles only."""
    files = sorted(glob.glob(f"{LABELME}/*/data_annotated/*.json") + glob.glob(f"{LABELME}/tutorial/*.json") +
                   glob.glob(f"{LABELME}/primitives/*.json"))
    images = []
    for path in files:
        with open(path) as f:
            d = json.load(f)
        objects = []
        for s in d["shapes"]:
            if s["shape_type"] not in ("polygon", "rectangle"):
                continue
            pts = np.asarray(s["points"], dtype=np.float64)
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            box = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
            area = polygon_area(pts) if s["shape_type"] == "polygon" else box[2] * box[3]
            objects.append((s["label"], box, area))
        images.append((d["imageWidth"], d["imageHeight"], objects))
    return images


def labelme_case(seed, copies=4):
    """Each labelme example `copies` times as its own image, with jittered and random detections and scores.
    "__ignore__" regions are crowds; images without shapes have no annotations; category 999 has none."""
    rng = np.random.default_rng(seed)
    images = labelme_images()
    names = sorted({label for _, _, objs in images for label, _, _ in objs if label != "__ignore__"})
    cat_of = {name: i + 1 for i, name in enumerate(names)}
    categories = list(cat_of.values()) + [999]
    anns, dets, image_ids = [], [], []
    for copy_index in range(copies):
        for width, height, objects in images:
            img = len(image_ids) + 1
            image_ids.append(img)
            own = [cat_of[label] for label, _, _ in objects if label != "__ignore__"] or [1]
            for label, box, area in objects:
                crowd = int(label == "__ignore__")
                cat = int(rng.choice(own)) if crowd else cat_of[label]
                anns.append(ann(img, cat, box, area=area, crowd=crowd))
                for _ in range(int(rng.integers(0, 4))):
                    x, y, w, h = box
                    noise = rng.normal(0, rng.uniform(0.01, 0.2), 4) * [w, h, w, h]
                    wrong = rng.random() < 0.15
                    dets.append(det(img, int(rng.choice(categories)) if wrong else cat,
                                    [x + noise[0], y + noise[1], w + noise[2], h + noise[3]],
                                    float(rng.uniform(0.3, 1.0))))
            many = copy_index == 0 and img % 5 == 0  # over 100 detections of one category in this image
            for _ in range(int(rng.integers(5, 40)) + (110 if many else 0)):
                w, h = rng.uniform(2, width / 2), rng.uniform(2, height / 2)
                dets.append(det(img, 1 if many else int(rng.choice(categories)),
                                [rng.uniform(0, width - w), rng.uniform(0, height - h), w, h],
                                float(rng.uniform(0.0, 0.6))))
    for d in dets:  # a third of the scores on a coarse grid: ties within and across images
        if rng.random() < 0.3:
            d["score"] = round(d["score"], 1)
    order = rng.permutation(len(dets))  # results files are in no particular order
    return doc(image_ids, categories, anns, [dets[i] for i in order])


def main(outdir):
    out = os.path.join(outdir, "coco_eval.json")
    skip = os.path.join(outdir, "coco_eval.skip")
    for stale in (out, skip):
        if os.path.exists(stale):
            os.remove(stale)
    reason = coco_oracle.missing_reason()
    if reason:
        with open(skip, "w") as f:
            f.write(reason + "\n")
        return
    cases = hand_made_cases()
    if os.path.isdir(LABELME):
        for seed in range(3):
            cases[f"labelme_{seed}"] = labelme_case(seed)
    iou_thresholds, recall_thresholds = coco_oracle.thresholds()
    result = {"iou_thresholds": iou_thresholds, "recall_thresholds": recall_thresholds, "cases": {}}
    for name, document in cases.items():
        result["cases"][name] = dict(coco_oracle.evaluate(document), input=document)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
