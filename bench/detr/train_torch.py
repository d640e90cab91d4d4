#!/usr/bin/python3
# bench/detr/train_torch.py: the PyTorch reference of `parallax train` for DETR: the same config, shards, augmentation,
# model, set criterion, optimizer and schedule on the CPU, then COCO metrics (pycocotools) on the valid and test splits.
"""PyTorch reference DETR trainer, for Parallax's test AP beside a reference trained the same way (bench/README.md).

Mirrors launcher/detr_task.cpp, launcher/trainer.cpp and launcher/detr_eval.cpp:

* config: a Parallax .pbtxt read against configs/parallax.proto (bench/translator/pbtxt_config.py), `--set a.b=v`
  overrides; `--max-steps N` (or `--steps-from RUN_DIR`, the step a Parallax run reached) stops after N updates and
  switches train.max_minutes off unless `--max-minutes` is given; the schedule keeps train.max_steps;
* data: the shards read with h5py; data/detection_transforms.cpp's augmentation (flip; resize the shorter side to a
  random `scales` entry, or resize to a crop_resize_scales entry, random-size crop, resize to a `scales` entry; boxes
  clipped, empty ones dropped), its bilinear resize (half-pixel centres, no antialiasing, rounded to u8), ImageNet
  normalisation and bottom/right padding with a mask; a shuffled permutation per epoch, full batches only. Draws come
  from numpy's generator keyed by (seed, epoch, example), not Parallax's Philox streams: same distributions;
* model: tests/oracle/torch_detr.py's DETR over tests/oracle/torch_resnet.py's ResNet (torchvision's init, trainable
  BatchNorm2d unless model.detr.frozen_bn), f32, torch's generator seeded with train.seed;
* step: the reference's set criterion (Hungarian matching per decoder layer with scipy, weighted cross-entropy with
  eos_coef, L1 and GIoU over the batch's box count; every decoder layer when aux_loss), torch.optim.AdamW with the
  backbone in its own group at backbone_lr (conv1, bn1, layer1 frozen when freeze_stem; the whole backbone when
  backbone_lr is 0), core/optim/lr_schedule.h's lr per group, global-norm clipping, non-finite steps skipped;
* evaluation: every query of the last decoder layer (softmax, best real class, box in the original image's pixels),
  no threshold; ground-truth area = box area in pixels; pycocotools' 12 stats (tests/oracle/coco_oracle.py).
"""
import argparse
import json
import math
import os
import queue
import sys
import threading
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "oracle"))
sys.path.insert(0, os.path.join(REPO, "bench", "translator"))
import coco_oracle  # noqa: E402  (needs the paths above)
from torch_resnet import ResNet  # noqa: E402
from pbtxt_config import ConfigError, config_text, load_config, load_schema, model_kind  # noqa: E402
from pbtxt_config import parse_text_format, unquote  # noqa: E402
from torch_detr import DETR, hungarian_match, layer_losses  # noqa: E402
from train_common import Metrics, format_duration, format_rate, lr_at  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# data/detection_loader.h's DetectionAugment defaults, taken when the config's lists are empty.
DEFAULT_SCALES = [96, 104, 112, 120, 128]
DEFAULT_CROP_RESIZE_SCALES = [80, 100, 120]
# models/detr/coco_eval's stat names as launcher/detr_eval.cpp's coco_metric_key writes them.
COCO_KEYS = ["map", "ap50", "ap75", "aps", "apm", "apl", "ar1", "ar10", "ar100", "ars", "arm", "arl"]
# Keys of numpy's generators: (seed, epoch, domain) for an epoch's order, (seed, epoch, domain, example) for the
# draws of one example's augmentation.
PERMUTATION_DOMAIN, AUGMENT_DOMAIN = 0x50455231, 0x41554731  # "PER1", "AUG1"


# ----------------------------------------------------------------------------------------------------------
# Dataset: the index and the shards.

class DetectionData:
    """A parallax.detection dataset directory: its splits' shard paths and category names."""

    def __init__(self, directory):
        path = os.path.join(directory, "dataset.pbtxt")
        if not os.path.isfile(path):
            raise ConfigError(f"{directory}: data.dir has no dataset.pbtxt (build it with `make data`)")
        self.dir, self.splits, self.category_names = directory, {}, []
        for name, value, _ in parse_text_format(open(path, encoding="utf-8").read(), path):
            if name == "schema" and unquote(value) != "parallax.detection":
                raise ConfigError(f"{path}: a {unquote(value)} dataset, DETR needs parallax.detection")
            if name == "category_names":
                self.category_names.append(unquote(value))
            if name == "splits":
                split_name = next(unquote(v) for n, v, _ in value if n == "name")
                self.splits[split_name] = [os.path.join(directory, unquote(f)) for n, shard, _ in value
                                           if n == "shards" for k, f, _ in shard if k == "file"]
        if not self.category_names:
            raise ConfigError(f"{path}: no category_names")

    def split(self, name):
        if name not in self.splits:
            raise ConfigError(f"{self.dir}: no split '{name}' (splits: {', '.join(self.splits)})")
        return DetectionSplit(self.splits[name])


class DetectionSplit:
    """The examples of one split, shards in index order (example ids as Parallax's loader numbers them); the
    annotations are read up front, the pixels of an image when it is asked for."""

    def __init__(self, paths):
        self.shards = []
        for path in paths:
            f = h5py.File(path, "r")
            self.shards.append({"file": f, "images": f["images"], "image_offsets": f["image_offsets"][:],
                                "image_shapes": f["image_shapes"][:], "boxes": f["boxes"][:].reshape(-1, 4),
                                "labels": f["labels"][:], "box_offsets": f["box_offsets"][:]})
        counts = [len(s["image_shapes"]) for s in self.shards]
        self.starts = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self):
        return int(self.starts[-1])

    def read(self, example):
        """Example id -> (image (H, W, 3) u8, boxes (M, 4) f32 normalised cx, cy, w, h, labels (M,) i64)."""
        k = int(np.searchsorted(self.starts, example, side="right")) - 1
        s, i = self.shards[k], example - int(self.starts[k])
        h, w, c = (int(v) for v in s["image_shapes"][i])
        image = s["images"][s["image_offsets"][i]:s["image_offsets"][i + 1]].reshape(h, w, c)
        b0, b1 = s["box_offsets"][i], s["box_offsets"][i + 1]
        return image, s["boxes"][b0:b1].copy(), s["labels"][b0:b1].astype(np.int64)


# ----------------------------------------------------------------------------------------------------------
# Augmentation: data/detection_transforms.cpp in numpy and torch.

def size_with_aspect_ratio(height, width, size, max_size):
    """DETR's get_size_with_aspect_ratio as detection_transforms.cpp computes it: (height, width)."""
    if max_size > 0:
        shorter, longer = min(height, width), max(height, width)
        if longer / shorter * size > max_size:
            size = round(max_size * shorter / longer)  # half to even, as nearbyint
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize_image(image, height, width):
    """data/image_io.cpp's resize_bilinear: half-pixel centres, no antialiasing, computed in f64 and rounded to u8."""
    if image.shape[:2] == (height, width):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].double()
    y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=False)
    return torch.floor(y + 0.5).clamp_(max=255)[0].permute(1, 2, 0).to(torch.uint8).numpy()


def resize(sample, size, max_size):
    image, boxes, labels = sample
    return resize_image(image, *size_with_aspect_ratio(*image.shape[:2], size, max_size)), boxes, labels


def hflip(sample):
    image, boxes, labels = sample
    boxes = boxes.copy()
    boxes[:, 0] = 1 - boxes[:, 0]
    return image[:, ::-1], boxes, labels


def crop(sample, top, left, height, width):
    """Rows [top, top + height), columns [left, left + width); boxes clipped to the region (f32, as Parallax), those
    left without width or height dropped."""
    image, boxes, labels = sample
    im_h, im_w = np.float32(image.shape[0]), np.float32(image.shape[1])
    cx, cy, w, h = boxes.T
    half = np.float32(0.5)
    x0 = np.clip((cx - half * w) * im_w - np.float32(left), 0, np.float32(width))
    x1 = np.clip((cx + half * w) * im_w - np.float32(left), 0, np.float32(width))
    y0 = np.clip((cy - half * h) * im_h - np.float32(top), 0, np.float32(height))
    y1 = np.clip((cy + half * h) * im_h - np.float32(top), 0, np.float32(height))
    keep = (x1 > x0) & (y1 > y0)
    x0, x1, y0, y1 = x0[keep], x1[keep], y0[keep], y1[keep]
    boxes = np.stack([half * (x0 + x1) / np.float32(width), half * (y0 + y1) / np.float32(height),
                      (x1 - x0) / np.float32(width), (y1 - y0) / np.float32(height)], axis=1).astype(np.float32)
    return image[top:top + height, left:left + width], boxes, labels[keep]


def random_size_crop(sample, min_side, max_side, rng):
    """DETR's RandomSizeCrop: sides uniform in [min_side, min(side, max_side)] (the width first), placed uniformly."""
    im_h, im_w = sample[0].shape[:2]

    def side(extent):
        hi = min(extent, max_side)
        return int(rng.integers(min(min_side, hi), hi + 1))

    w = side(im_w)
    h = side(im_h)
    top, left = int(rng.integers(0, im_h - h + 1)), int(rng.integers(0, im_w - w + 1))
    return crop(sample, top, left, h, w)


def augment_options(config):
    """launcher/detr_task.cpp's augment_options: the config's data.augment with the loader's default lists."""
    a = dict(config["data"]["augment"])
    a["scales"] = a["scales"] or DEFAULT_SCALES
    a["crop_resize_scales"] = a["crop_resize_scales"] or DEFAULT_CROP_RESIZE_SCALES
    return a


def augment(sample, options, rng):
    """The train pipeline: RandomHorizontalFlip, then RandomSelect(RandomResize(scales, max_size),
    [RandomResize(crop_resize_scales), RandomSizeCrop, RandomResize(scales, max_size)])."""
    if rng.random() < options["flip_prob"]:
        sample = hflip(sample)
    scales = options["scales"]
    if rng.random() < 0.5:
        return resize(sample, scales[rng.integers(len(scales))], options["max_size"])
    crop_scales = options["crop_resize_scales"]
    sample = resize(sample, crop_scales[rng.integers(len(crop_scales))], 0)
    sample = random_size_crop(sample, options["crop_min"], options["crop_max"], rng)
    return resize(sample, scales[rng.integers(len(scales))], options["max_size"])


def collate(samples):
    """[(image, boxes, labels)] -> images (B, 3, H, W) f32 normalised and zero-padded at the bottom and right,
    mask (B, H, W) true on padding, targets [{"boxes" (M, 4) f32, "labels" (M,) i64}]."""
    height = max(s[0].shape[0] for s in samples)
    width = max(s[0].shape[1] for s in samples)
    images = torch.zeros(len(samples), 3, height, width)
    mask = torch.ones(len(samples), height, width, dtype=torch.bool)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    for i, (image, _, _) in enumerate(samples):
        h, w = image.shape[:2]
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        images[i, :, :h, :w] = (pixels - mean) / std
        mask[i, :h, :w] = False
    targets = [{"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)} for _, boxes, labels in samples]
    return images, mask, targets


def train_batches(split, config):
    """Endless (or train.max_epochs) stream of (epoch, collated batch): a shuffled permutation per epoch cut into
    full batches of train.batch_size, every example augmented with draws keyed by (seed, epoch, example)."""
    t = config["train"]
    options = augment_options(config)
    epoch = 0
    while t["max_epochs"] == 0 or epoch < t["max_epochs"]:
        order = np.random.default_rng([t["seed"], epoch, PERMUTATION_DOMAIN]).permutation(len(split))
        for start in range(0, len(order) - t["batch_size"] + 1, t["batch_size"]):
            samples = [augment(split.read(int(i)), options,
                               np.random.default_rng([t["seed"], epoch, AUGMENT_DOMAIN, int(i)]))
                       for i in order[start:start + t["batch_size"]]]
            yield epoch, collate(samples)
        epoch += 1


class Prefetcher:
    """Runs a generator on a thread, `depth` items ahead (data.prefetch), as Parallax's loader does."""

    def __init__(self, items, depth):
        self.queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, args=(items,), daemon=True)
        self.thread.start()

    def _run(self, items):
        try:
            for item in items:
                self.queue.put(("item", item))
            self.queue.put(("end", None))
        except BaseException as e:  # handed to the consumer, raised there
            self.queue.put(("error", e))

    def next(self):
        kind, value = self.queue.get()
        if kind == "error":
            raise value
        return None if kind == "end" else value


# ----------------------------------------------------------------------------------------------------------
# Model, criterion, optimizer.

def build_model(config, num_classes):
    """torch_detr.DETR over the config's ResNet, with Parallax's freezing rule; torch's generator at train.seed."""
    m = config["model"]["detr"]
    torch.manual_seed(config["train"]["seed"])
    backbone = ResNet(m["backbone"], m["backbone_width"], m["backbone_stages"], m["frozen_bn"])
    convs = [module for module in backbone.modules() if isinstance(module, nn.Conv2d)]
    for conv in convs:  # torchvision's (and core/nn/resnet's) init; batch norms start at weight 1, bias 0
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    backbone.num_channels = convs[-1].out_channels  # the last block's output, by its last conv or its downsample
    model = DETR(backbone, num_classes, m["num_queries"], d=m["d_model"], heads=m["num_heads"],
                 enc=m["encoder_layers"], dec=m["decoder_layers"], ff=m["d_ff"], dropout=m["dropout"],
                 pre_norm=m["pre_norm"], activation=m["activation"])
    stem = ("conv1.", "bn1.", "layer1.") if m["freeze_stem"] else ()
    for name, p in backbone.named_parameters():
        if m["backbone_lr"] == 0 or name.startswith(stem):
            p.requires_grad_(False)
    return model


def optimizer_groups(model, config):
    """AdamW over the trainable parameters: the backbone's at model.detr.backbone_lr, the rest at optimizer.lr."""
    o, m = config["optimizer"], config["model"]["detr"]
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    in_backbone = {id(p) for p in backbone}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in in_backbone]
    groups = [{"params": other, "lr": o["lr"], "initial_lr": o["lr"]}]
    if backbone:
        groups.append({"params": backbone, "lr": m["backbone_lr"], "initial_lr": m["backbone_lr"]})
    return torch.optim.AdamW(groups, betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=o["weight_decay"])


def set_criterion(out, targets, m, num_classes):
    """The reference's SetCriterion: per decoder layer (all with aux_loss, else the last) its own matching and
    loss_ce * CE + loss_bbox * L1 + loss_giou * (1 - GIoU), L1 and GIoU summed over the matches / the box count."""
    num_boxes = sum(len(t["labels"]) for t in targets)
    layers = range(out["logits"].shape[0]) if m["aux_loss"] else [out["logits"].shape[0] - 1]
    total = 0
    for layer in layers:
        logits, boxes = out["logits"][layer], out["boxes"][layer]
        if num_boxes > 0:
            indices = hungarian_match(logits, boxes, targets, m["cost_class"], m["cost_bbox"], m["cost_giou"])
        else:  # nothing to match: every query is "no object"
            empty = torch.zeros(0, dtype=torch.int64)
            indices = [(empty, empty)] * len(targets)
        ce, l1, giou = layer_losses(logits, boxes, targets, num_classes, m["eos_coef"], max(num_boxes, 1), indices)
        total = total + m["loss_ce"] * ce + m["loss_bbox"] * l1 + m["loss_giou"] * giou
    return total, max(num_boxes, 1)


# ----------------------------------------------------------------------------------------------------------
# Evaluation: launcher/detr_eval.cpp with pycocotools.

@torch.no_grad()
def evaluate(model, split, config, max_images):
    """COCO box metrics of the first max_images (0: all) examples: eval resize, every query of the last layer."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    a, e = config["data"]["augment"], config["eval"]
    n = len(split) if max_images == 0 else min(len(split), max_images)
    doc = {"images": list(range(n)), "categories": list(range(model.class_embed.out_features - 1)),
           "annotations": [], "detections": []}
    for first in range(0, n, e["batch_size"]):
        samples, sizes = [], []
        for example in range(first, min(n, first + e["batch_size"])):
            image, boxes, labels = split.read(example)
            sizes.append(image.shape[:2])
            samples.append(resize((image, boxes, labels), a["eval_size"], a["max_size"]))
        images, mask, targets = collate(samples)
        out = model(images, mask)
        probs = out["logits"][-1].double().softmax(-1)[..., :-1]
        scores, classes = probs.max(-1)
        for k, ((height, width), target) in enumerate(zip(sizes, targets)):
            image_id = first + k
            for box, label in zip(target["boxes"].double().tolist(), target["labels"].tolist()):
                x, y, w, h = xywh_pixels(box, height, width)
                doc["annotations"].append({"image_id": image_id, "category_id": label, "bbox": [x, y, w, h],
                                           "area": w * h, "iscrowd": 0})
            for box, label, score in zip(out["boxes"][-1][k].double().tolist(), classes[k].tolist(),
                                         scores[k].tolist()):
                doc["detections"].append({"image_id": image_id, "category_id": label,
                                          "bbox": xywh_pixels(box, height, width), "score": score})
    result = coco_oracle.evaluate(doc)
    model.train(was_training)
    return {"stats": result["stats"], "summary": result["summary"], "images": n,
            "seconds": time.perf_counter() - start}


def xywh_pixels(box, height, width):
    """Normalised (cx, cy, w, h) -> [x, y, w, h] in pixels, as models/detr/coco_eval's cxcywh_to_xywh_pixels."""
    cx, cy, w, h = box
    x0, y0, x1, y1 = (cx - 0.5 * w) * width, (cy - 0.5 * h) * height, (cx + 0.5 * w) * width, (cy + 0.5 * h) * height
    return [x0, y0, x1 - x0, y1 - y0]


def report_eval(metrics, step, split_name, r):
    s = r["stats"]
    print(f"eval  {step} | {split_name} mAP {s[0]:.4f} | AP50 {s[1]:.4f} | AP75 {s[2]:.4f} | AR100 {s[8]:.4f} on "
          f"{r['images']} images | {r['seconds']:.1f} s", flush=True)
    metrics.write(step, {f"{split_name}_{key}": value for key, value in zip(COCO_KEYS, s)})


# ----------------------------------------------------------------------------------------------------------
# Training: launcher/trainer.cpp's loop.

def train(model, data, config, args, metrics):
    """Trains until the step limit, the time limit or train.max_epochs; returns the number of updates done."""
    t, o, m = config["train"], config["optimizer"], config["model"]["detr"]
    num_classes = len(data.category_names)
    stop_step = args.max_steps or t["max_steps"]
    max_seconds = 60.0 * args.max_minutes if args.max_minutes is not None else \
        0.0 if args.max_steps else 60.0 * t["max_minutes"]
    log_every = args.log_every or config["log"]["every_steps"]
    eval_every = config["eval"]["every_steps"]
    train_split = data.split(config["data"]["train_split"])
    valid_split = data.split(config["data"]["valid_split"])
    print(f"data: {len(train_split)} training images, {len(valid_split)} valid, {num_classes} classes; batch "
          f"{t['batch_size']}, {len(train_split) // t['batch_size']} batches per epoch", flush=True)
    optimizer = optimizer_groups(model, config)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    batches = Prefetcher(train_batches(train_split, config), config["data"]["prefetch"])
    start, step, stop_reason = time.perf_counter(), 0, "step limit reached"
    window = {"steps": 0, "loss_sum": 0.0, "boxes": 0.0, "images": 0.0, "seconds": 0.0, "grad_norm": 0.0}
    model.train()
    while step < stop_step:
        step_start = time.perf_counter()
        item = batches.next()
        if item is None:
            stop_reason = "train.max_epochs reached"
            break
        images, mask, targets = item[1]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(config["schedule"], t["max_steps"], step + 1, group["initial_lr"])
        loss, boxes = set_criterion(model(images, mask), targets, m, num_classes)
        loss.backward()
        if o["clip_grad_norm"] > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, o["clip_grad_norm"]))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params
                                                                    if p.grad is not None])))
        loss_value = loss.item()
        if math.isfinite(loss_value) and math.isfinite(grad_norm):
            optimizer.step()
        else:
            print(f"step {step + 1}: non-finite loss {loss_value} or grad norm {grad_norm}; update skipped")
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seconds = time.perf_counter() - step_start
        # Parallax's logged loss: the window's loss sums (loss x box count) over its box counts.
        for key, value in (("steps", 1), ("loss_sum", loss_value * boxes), ("boxes", boxes),
                           ("images", len(targets)), ("seconds", seconds), ("grad_norm", grad_norm)):
            window[key] += value
        elapsed = time.perf_counter() - start
        out_of_time = max_seconds > 0 and elapsed >= max_seconds
        if step % log_every == 0 or step == stop_step or out_of_time:
            eta = elapsed / step * (stop_step - step)
            if max_seconds > 0:
                eta = min(eta, max(0.0, max_seconds - elapsed))
            lr = optimizer.param_groups[0]["lr"]
            line = {"loss": window["loss_sum"] / window["boxes"], "lr": lr,
                    "images_per_s": window["images"] / window["seconds"],
                    "step_time_s": window["seconds"] / window["steps"],
                    "grad_norm": window["grad_norm"] / window["steps"], "seconds": elapsed}
            print(f"step {step:{len(str(stop_step))}d}/{stop_step} | loss {line['loss']:.3f} | lr {lr:.1e} | "
                  f"{format_rate(line['images_per_s'])} img/s | {line['step_time_s']:.2f} s/step | "
                  f"ETA {format_duration(eta)}", flush=True)
            metrics.write(step, line)
            window = dict.fromkeys(window, 0.0)
        if eval_every > 0 and step % eval_every == 0 and step < stop_step and not out_of_time:
            report_eval(metrics, step, "valid", evaluate(model, valid_split, config, config["eval"]["max_images"]))
        if out_of_time:
            stop_reason = "time limit reached"
            break
    train_seconds = time.perf_counter() - start
    print(f"{stop_reason} at step {step}; {train_seconds:.0f} s", flush=True)
    return step, train_seconds


def steps_of_run(run_dir):
    """The step a Parallax run reached: the last record of its metrics.jsonl."""
    path = os.path.join(run_dir, "metrics.jsonl")
    try:
        lines = [line for line in open(path, encoding="utf-8") if line.strip()]
    except OSError as e:
        raise ConfigError(f"--steps-from: cannot read {path} ({e.strerror})") from None
    if not lines:
        raise ConfigError(f"--steps-from: {path} has no records")
    return int(json.loads(lines[-1])["step"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", help="Parallax config (.pbtxt), e.g. configs/detr_fashion_tiny.pbtxt; "
                        "default with --steps-from: RUN_DIR/config.pbtxt")
    parser.add_argument("--out", help="output directory: metrics.jsonl, config.pbtxt, model.pt "
                        "(default with --steps-from: RUN_DIR/torch_reference)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field, as `parallax train --set`")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="stop after N updates (the schedule keeps train.max_steps); no time limit unless "
                        "--max-minutes")
    parser.add_argument("--steps-from", metavar="RUN_DIR",
                        help="--max-steps = the last step in a Parallax run's metrics.jsonl")
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock limit (default train.max_minutes)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default train.threads, "
                        "0: all cores)")
    parser.add_argument("--log-every", type=int, default=0, help="progress line every N steps (default "
                        "log.every_steps)")
    parser.add_argument("--test-split", default="test", help="split evaluated at the end ('' for none)")
    parser.add_argument("--test-max-images", type=int, default=0, help="evaluate the first N test images (0: all)")
    args = parser.parse_args()
    if args.steps_from:
        args.config = args.config or os.path.join(args.steps_from, "config.pbtxt")
        args.out = args.out or os.path.join(args.steps_from, "torch_reference")
    if not args.config or not args.out:
        parser.error("a config and --out are required (or --steps-from RUN_DIR)")
    if args.max_steps < 0 or args.log_every < 0 or args.test_max_images < 0 or (args.threads or 0) < 0:
        parser.error("--max-steps, --log-every, --test-max-images and --threads must be >= 0")
    try:
        if args.steps_from and not args.max_steps:
            args.max_steps = steps_of_run(args.steps_from)
        run(args)
    except ConfigError as e:
        print(f"train_torch: {e}", file=sys.stderr)
        sys.exit(2)


def run(args):
    config = load_config(args.config, args.overrides, load_schema(os.path.join(REPO, "configs", "parallax.proto")))
    if model_kind(config) != "detr":
        raise ConfigError(f"{args.config}: a {model_kind(config)} config; this trainer needs "
                          "model { detr { ... } }")
    data = DetectionData(config["data"]["dir"])
    threads = args.threads if args.threads is not None else config["train"]["threads"]
    torch.set_num_threads(threads or os.cpu_count())
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.pbtxt"), "w", encoding="utf-8") as f:
        f.write(config_text(config) + "\n")
    metrics = Metrics(os.path.join(args.out, "metrics.jsonl"), "w")
    model = build_model(config, len(data.category_names))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters ({trainable / 1e6:.2f}M "
          f"trainable); torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    step, seconds = train(model, data, config, args, metrics)
    torch.save({"step": step, "model": model.state_dict()}, os.path.join(args.out, "model.pt"))
    valid = evaluate(model, data.split(config["data"]["valid_split"]), config, config["eval"]["max_images"])
    report_eval(metrics, step, "valid", valid)
    if args.test_split:
        test = evaluate(model, data.split(args.test_split), config, args.test_max_images)
        report_eval(metrics, step, args.test_split, test)
        print(test["summary"], end="")
    metrics.write(step, {"train_seconds": seconds})


if __name__ == "__main__":
    main()
