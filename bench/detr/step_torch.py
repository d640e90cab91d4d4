#!/usr/bin/python3
# bench/detr/step_torch.py: the PyTorch peer of bench_detr_step (step.cpp): one DETR training step of
# tests/oracle/torch_detr.py's DETR on torch_resnet.py's backbone, on the CPU; prints one JSON line, same fields.
"""One DETR training step in PyTorch, built from the same config file as bench_detr_step.

Model: torch_detr.DETR (the reference's layers) over torch_resnet.ResNet (FrozenBatchNorm2d or BatchNorm2d as
model.detr.frozen_bn says), the backbone frozen as Detr freezes it (everything with backbone_lr 0, else conv1, bn1
and layer1 unless freeze_stem is off), f32, training mode. Optimizer: torch.optim.AdamW (its default CPU
implementation) over the same two groups, the transformer and heads at optimizer.lr and the backbone at
model.detr.backbone_lr, with the config's betas, eps and weight decay. The batch is step_batch.make_batch from
--sizes and --seed, the one step_vs_torch.py writes for bench_detr_step. Per step, timed apart:

  forward    zero_grad excluded; the model's forward (the feature mask and sine positions are computed inside it)
  matcher    torch_detr.hungarian_match of every decoder layer (softmax, cost matrices, scipy's assignment)
  loss       torch_detr.layer_losses of every layer, summed with the loss weights (L1 and GIoU / the box count)
  backward   loss.backward()
  optimizer  zero_grad(set_to_none) + AdamW.step()

backbone_ms: the backbone's forward + backward alone with a fixed random upstream gradient. The FLOP count takes
every backbone convolution's shape from forward hooks (with whether its weight and its input need gradients) and
the transformer's from the same formula as step.cpp. --profile prints torch.profiler's table of one step to stderr
and adds conv_ms, the time under aten::convolution and aten::convolution_backward.
"""
import argparse
import os
import statistics
import sys
import time
import json

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "oracle"))
sys.path.insert(0, os.path.join(HERE, "..", "translator"))
from pbtxt_config import load_config, load_schema  # noqa: E402  (needs the paths above)
from step_batch import digest, make_batch, parse_sizes  # noqa: E402
from torch_detr import DETR, hungarian_match, layer_losses  # noqa: E402
from torch_resnet import ResNet  # noqa: E402

PROTO = os.path.join(HERE, "..", "..", "configs", "parallax.proto")


def transformer_flop(m, num_classes, n, S, backbone_channels, heads_layers):
    """step.cpp's transformer_flop: products of the input projection, transformer and heads, x3 (fwd, dX, dW)."""
    d, f, Le, Ld, Q = m["d_model"], m["d_ff"], m["encoder_layers"], m["decoder_layers"], m["num_queries"]
    macs = (n * S * (backbone_channels * d + Le * (4 * d * d + 2 * d * f) + Ld * 2 * d * d)
            + n * Q * (Ld * (6 * d * d + 2 * d * f) + heads_layers * (d * (num_classes + 1) + 2 * d * d + 4 * d))
            + n * d * (Le * 2.0 * S * S + Ld * (2.0 * Q * Q + 2.0 * Q * S)))
    return 3 * 2 * macs


class ConvCounter:
    """Forward hooks on the backbone's convolutions: FLOPs of each, forward + weight gradient when the weight trains
    + input gradient when the input requires grad (what autograd then computes)."""

    def __init__(self, backbone):
        self.flop = 0.0
        self.handles = [mod.register_forward_hook(self.hook) for mod in backbone.modules()
                        if isinstance(mod, torch.nn.Conv2d)]

    def hook(self, conv, inputs, out):
        kh, kw = conv.kernel_size
        forward = 2.0 * out.numel() * conv.in_channels * kh * kw
        self.flop += forward * (1 + conv.weight.requires_grad + inputs[0].requires_grad)

    def remove(self):
        for h in self.handles:
            h.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--num-classes", type=int, required=True)
    ap.add_argument("--sizes", required=True, help="images, as step_batch.parse_sizes: 16@128x128, 800x1066,800x1200")
    ap.add_argument("--seed", type=int, default=1, help="the batch's")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PARALLAX_NUM_THREADS", "2")))
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backbone-reps", type=int, help="default: --reps")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    c = load_config(a.config, [], load_schema(PROTO))
    m, o = c["model"]["detr"], c["optimizer"]
    frozen_backbone = m["backbone_lr"] <= 0
    backbone = ResNet(m["backbone"], m["backbone_width"], m["backbone_stages"], m["frozen_bn"])
    for name, p in backbone.named_parameters():  # Detr's freeze (DetrOptions.train_backbone, freeze_stem)
        if frozen_backbone or (m["freeze_stem"] and name.split(".")[0] in ("conv1", "bn1", "layer1")):
            p.requires_grad_(False)
    model = DETR(backbone, a.num_classes, m["num_queries"], d=m["d_model"], heads=m["num_heads"],
                 enc=m["encoder_layers"], dec=m["decoder_layers"], ff=m["d_ff"], dropout=m["dropout"],
                 pre_norm=m["pre_norm"], activation=m["activation"])
    model.train()
    in_backbone = {id(p) for p in backbone.parameters()}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in in_backbone]}]
    backbone_params = [p for p in backbone.parameters() if p.requires_grad]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": m["backbone_lr"]})
    opt = torch.optim.AdamW(groups, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                            weight_decay=o["weight_decay"])

    batch = make_batch(parse_sizes(a.sizes), a.num_classes, a.seed)
    images, mask = torch.from_numpy(batch["images"]), torch.from_numpy(batch["mask"])
    targets = [{"labels": torch.from_numpy(lb), "boxes": torch.from_numpy(bx)}
               for lb, bx in zip(batch["labels"], batch["boxes"])]
    count = max(float(sum(len(t["labels"]) for t in targets)), 1.0)  # DetrTask's normaliser at dp 1
    layers = m["decoder_layers"] if m["aux_loss"] else 1
    weights = (m["loss_ce"], m["loss_bbox"], m["loss_giou"])
    costs = {"cost_class": m["cost_class"], "cost_bbox": m["cost_bbox"], "cost_giou": m["cost_giou"]}

    def mark():
        return time.perf_counter(), time.process_time()

    def step():
        """The loss, [(wall ms, process CPU ms)] of the phases and the feature map's shape."""
        t0 = mark()
        opt.zero_grad(set_to_none=True)
        t1 = mark()
        out = model(images, mask)
        logits, boxes = out["logits"][-layers:], out["boxes"][-layers:]
        t2 = mark()
        matches = [hungarian_match(logits[i], boxes[i], targets, **costs) for i in range(layers)]
        t3 = mark()
        loss = 0
        for i in range(layers):
            terms = layer_losses(logits[i], boxes[i], targets, a.num_classes, m["eos_coef"], count, matches[i])
            loss = loss + sum(w * t for w, t in zip(weights, terms))
        value = loss.item()
        t4 = mark()
        loss.backward()
        t5 = mark()
        opt.step()
        t6 = mark()
        ms = [tuple((y[c] - x[c]) * 1e3 for c in (0, 1)) for x, y in ((t1, t2), (t2, t3), (t3, t4), (t4, t5))]
        ms.append(tuple((t1[c] - t0[c] + t6[c] - t5[c]) * 1e3 for c in (0, 1)))
        return value, ms, out["features"].shape

    counter = ConvCounter(backbone)
    first_loss, _, feature_shape = step()  # the first step counts FLOPs (and warms up)
    counter.remove()
    for _ in range(a.warmup - 1):
        step()
    rows = [step()[1] for _ in range(a.reps)]

    backbone_ms, backbone_cpu_ms = [], []
    gen = torch.Generator().manual_seed(7)
    gy = None
    for r in range((a.reps if a.backbone_reps is None else a.backbone_reps) + 1):  # one untimed round first
        opt.zero_grad(set_to_none=True)
        t0 = mark()
        y = backbone(images)
        gy = torch.randn(y.shape, generator=gen) if gy is None else gy
        if y.requires_grad:
            y.backward(gy)
        t1 = mark()
        if r > 0:
            backbone_ms.append((t1[0] - t0[0]) * 1e3)
            backbone_cpu_ms.append((t1[1] - t0[1]) * 1e3)

    conv_ms = None
    if a.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
        averages = prof.key_averages()
        conv_ms = sum(e.cpu_time_total for e in averages
                      if e.key in ("aten::convolution", "aten::convolution_backward")) * 1e-3
        print(averages.table(sort_by="self_cpu_time_total", row_limit=30), file=sys.stderr)

    n, _, height, width = images.shape
    feat_h, feat_w = feature_shape[-2:]
    backbone_gflop = counter.flop * 1e-9
    transformer_gflop = transformer_flop(m, a.num_classes, n, feat_h * feat_w, backbone.num_channels, layers) * 1e-9
    gflop = backbone_gflop + transformer_gflop
    total = [sum(wall for wall, _ in r) for r in rows]
    med = statistics.median(total)
    phase = {}
    for i, name in enumerate(("fwd", "matcher", "loss", "bwd", "opt")):
        phase[f"{name}_ms"] = round(statistics.median(r[i][0] for r in rows), 3)
        phase[f"{name}_cpu_ms"] = round(statistics.median(r[i][1] for r in rows), 3)
    print(json.dumps({
        "impl": "torch", "torch": torch.__version__, "threads": a.threads, "B": n, "H": height, "W": width,
        "feat_h": feat_h, "feat_w": feat_w, **digest(batch),
        "trainable_params": sum(p.numel() for g in groups for p in g["params"]),
        "backbone_trainable_params": sum(p.numel() for p in backbone_params), "decoder_outputs": layers,
        "backbone_gflop": round(backbone_gflop, 4), "transformer_gflop": round(transformer_gflop, 4),
        "gflop": round(gflop, 4), "first_loss": round(first_loss, 4), "median_ms": round(med, 3),
        "min_ms": round(min(total), 3),
        "cpu_median_ms": round(statistics.median(sum(c for _, c in r) for r in rows), 3), **phase,
        "backbone_ms": round(statistics.median(backbone_ms), 3) if backbone_ms else 0.0,
        "backbone_cpu_ms": round(statistics.median(backbone_cpu_ms), 3) if backbone_cpu_ms else 0.0,
        "conv_ms": None if conv_ms is None else round(conv_ms, 3), "gflops": round(gflop / (med * 1e-3), 2)}))


if __name__ == "__main__":
    main()
