# PyTorch references for DETR (tests/oracle/torch_detr.py, f64): the 2D sine positions of padding masks, and a
# small DETR's positions, per-layer predictions, matchings, loss terms and every parameter gradient.
import os
import sys

import numpy as np
import torch

from gen_resnet import randomise
from torch_resnet import ResNet
from pxt import write_pxt
from torch_detr import DETR, hungarian_match, layer_losses, parallax_named, sine_positions

# detr_vs_torch_test.cpp builds the same model.
NUM_CLASSES, QUERIES, D, HEADS, ENC, DEC, FF = 5, 6, 16, 2, 2, 2, 32
EOS_COEF, W_CE, W_BBOX, W_GIOU = 0.1, 1.0, 5.0, 2.0


def positions(out):
    """detr_positions.pxt: masks of several shapes (no padding, padded rows and columns, a fully padded row) and the
    reference's encodings, permuted to Parallax's (B, h * w, d)."""
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for i, (b, h, w, f) in enumerate([(2, 5, 7, 8), (3, 4, 4, 16), (1, 1, 3, 4)]):
        mask = torch.zeros(b, h, w, dtype=torch.bool)
        for k in range(b):
            rows, cols = torch.randint(1, h + 1, (1,), generator=g).item(), torch.randint(1, w + 1, (1,), generator=g).item()
            mask[k, rows:, :] = True
            mask[k, :, cols:] = True
        pos = sine_positions(mask, f)  # (B, 2F, h, w)
        tensors[f"mask{i}"] = mask
        tensors[f"pos{i}"] = pos.flatten(2).transpose(1, 2).contiguous()
    write_pxt(os.path.join(out, "detr_positions.pxt"), tensors)


def model_case(out, case, pre_norm, activation):
    """detr_<case>.pxt: a DETR on a quarter-width 2-stage ResNet-18 (frozen BN), three images (one padded, one
    without targets), the reference's forward, matchings and losses of every decoder layer, and the gradients of
    total = sum over layers of ce + 5 l1 / num_boxes + 2 giou / num_boxes."""
    torch.manual_seed(11)
    backbone = ResNet("resnet18", 0.25, 2, True)
    backbone.num_channels = 32
    randomise(backbone)
    model = DETR(backbone, NUM_CLASSES, QUERIES, d=D, heads=HEADS, enc=ENC, dec=DEC, ff=FF, dropout=0.0,
                 pre_norm=pre_norm, activation=activation).double()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so their wiring shows
        for name, p in model.named_parameters():
            if name.startswith("backbone"):
                continue
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
    model.train()
    images = torch.randn(3, 3, 40, 56)
    mask = torch.zeros(3, 40, 56, dtype=torch.bool)
    mask[1, 33:, :] = True
    mask[1, :, 41:] = True
    mask[2, :, 50:] = True
    images[mask[:, None].expand_as(images)] = 0.0
    targets = []
    for m in (3, 2, 0):
        boxes = torch.cat([0.2 + 0.6 * torch.rand(m, 2), 0.05 + 0.3 * torch.rand(m, 2)], 1).float().double()
        targets.append({"labels": torch.randint(0, NUM_CLASSES, (m,)), "boxes": boxes})
    num_boxes = max(sum(len(t["labels"]) for t in targets), 1)

    o = model(images, mask)
    tensors = {f"sd.{k}": v for k, v in parallax_named(model, model.state_dict().items()).items()}
    tensors.update(images=images, mask=mask, pos=o["pos"].flatten(2).transpose(1, 2).contiguous(),
                   feature_mask=o["mask"], num_boxes=np.array([num_boxes], dtype=np.int64))
    for b, t in enumerate(targets):
        tensors[f"target{b}.labels"], tensors[f"target{b}.boxes"] = t["labels"], t["boxes"]
    total = 0.0
    for layer in range(DEC):
        logits, boxes = o["logits"][layer], o["boxes"][layer]
        indices = hungarian_match(logits, boxes, targets)
        ce, l1, giou = layer_losses(logits, boxes, targets, NUM_CLASSES, EOS_COEF, num_boxes, indices)
        total = total + W_CE * ce + W_BBOX * l1 + W_GIOU * giou
        tensors[f"layer{layer}.logits"], tensors[f"layer{layer}.boxes"] = logits.detach(), boxes.detach()
        tensors[f"layer{layer}.losses"] = torch.stack([ce, l1, giou]).detach()
        for b, (src, tgt) in enumerate(indices):
            tensors[f"layer{layer}.match{b}.pred"], tensors[f"layer{layer}.match{b}.target"] = src, tgt
    total.backward()
    tensors["total"] = total.detach().reshape(1)
    grads = parallax_named(model, ((k, p.grad) for k, p in model.named_parameters()))
    tensors.update({f"grad.{k}": g for k, g in grads.items()})
    write_pxt(os.path.join(out, f"detr_{case}.pxt"), tensors)


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    positions(sys.argv[1])
    model_case(sys.argv[1], "post", pre_norm=False, activation="relu")
    model_case(sys.argv[1], "pre_gelu", pre_norm=True, activation="gelu")
