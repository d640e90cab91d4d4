# bench/detr/step_batch.py: the synthetic batch both sides of the DETR step benchmark train on (padded random images,
# padding masks, 1..8 random boxes per image, drawn by numpy from one seed) and its PXT file for bench_detr_step.
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "oracle"))
from pxt import write_pxt  # noqa: E402  (needs the path above)


def parse_sizes(spec):
    """'16@128x128' or '800x1066,800x1200' (N@ repeats a size) -> [(height, width)] per image."""
    sizes = []
    for part in spec.split(","):
        m = re.fullmatch(r"(?:(\d+)@)?(\d+)x(\d+)", part.strip())
        if m is None:
            raise ValueError(f"--sizes: {part!r} is not HxW or N@HxW")
        sizes += [(int(m.group(2)), int(m.group(3)))] * int(m.group(1) or 1)
    return sizes


def make_batch(sizes, num_classes, seed):
    """Images (B, 3, H, W) f32 standard normal inside each image's (h, w) and zero on the padding, the mask (B, H, W)
    (True = padding, right and bottom as DETR pads), and per image 1..8 boxes (cx, cy, w, h) inside (0, 1) with
    labels in [0, num_classes)."""
    rng = np.random.default_rng(seed)
    H, W = max(h for h, _ in sizes), max(w for _, w in sizes)
    images = np.zeros((len(sizes), 3, H, W), dtype=np.float32)
    mask = np.ones((len(sizes), H, W), dtype=np.bool_)
    labels, boxes = [], []
    for b, (h, w) in enumerate(sizes):
        images[b, :, :h, :w] = rng.standard_normal((3, h, w), dtype=np.float32)
        mask[b, :h, :w] = False
        m = int(rng.integers(1, 9))
        labels.append(rng.integers(0, num_classes, size=m, dtype=np.int64))
        wh = rng.uniform(0.05, 0.5, size=(m, 2))
        centre = wh / 2 + rng.uniform(0.0, 1.0, size=(m, 2)) * (1 - wh)  # the box stays inside the image
        boxes.append(np.concatenate([centre, wh], axis=1).astype(np.float32))
    return {"images": images, "mask": mask, "labels": labels, "boxes": boxes}


def digest(batch):
    """What bench_detr_step prints of the batch it read: equal values mean both sides train on the same one."""
    return {"images_sum": round(float(batch["images"].sum(dtype=np.float64)), 3),
            "num_boxes": int(sum(len(x) for x in batch["labels"])),
            "labels_sum": int(sum(int(x.sum()) for x in batch["labels"]))}


def write_batch(path, batch):
    """PXT: images, mask, labels.<b> (M_b,) i64, boxes.<b> (M_b, 4) f32."""
    tensors = {"images": batch["images"], "mask": batch["mask"]}
    for b, (labels, boxes) in enumerate(zip(batch["labels"], batch["boxes"])):
        tensors[f"labels.{b}"] = labels
        tensors[f"boxes.{b}"] = boxes
    write_pxt(path, tensors)
