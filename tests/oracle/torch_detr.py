# The PyTorch twin of facebookresearch/detr (models/detr.py, transformer.py, matcher.py, position_encoding.py,
# util/box_ops.py) written from its math, and the mapping from its state dict to Parallax's parameter names.
"""PyTorch reference of Parallax's Detr (models/detr/detr.h) and SetCriterion (models/detr/criterion.h).

Used by tests/oracle/gen_detr.py and bench/detr/. The layers are the reference's own (not torch.nn's
Transformer*Layer): positions are added to queries and keys (never values) at every layer, the decoder starts
from zeros and adds the query embedding at every layer, every decoder layer's output goes through the shared
final LayerNorm (return_intermediate), and the matcher solves each image's assignment with scipy.
"""
import math

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn


# ---- boxes (util/box_ops.py) ----

def box_cxcywh_to_xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_area(b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def generalized_box_iou(a, b):
    """(N, 4) x (M, 4) xyxy -> (N, M) GIoU."""
    area_a, area_b = box_area(a), box_area(b)
    lt = torch.max(a[:, None, :2], b[:, :2])
    rb = torch.min(a[:, None, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b - inter
    iou = inter / union
    lt = torch.min(a[:, None, :2], b[:, :2])
    rb = torch.max(a[:, None, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / area


# ---- positions (position_encoding.py, PositionEmbeddingSine with normalize=True) ----

def sine_positions(mask, num_pos_feats, temperature=10000.0, scale=2 * math.pi, dtype=torch.float64):
    """mask (B, h, w) bool, True = padding -> (B, 2 F, h, w)."""
    not_mask = (~mask).to(dtype)
    y = not_mask.cumsum(1)
    x = not_mask.cumsum(2)
    eps = 1e-6
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=dtype)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x[:, :, :, None] / dim_t
    pos_y = y[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


# ---- transformer (transformer.py, post-norm and pre-norm) ----

class EncoderLayer(nn.Module):
    def __init__(self, d, heads, ff, dropout, pre_norm, activation):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout, self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.pre_norm, self.act = pre_norm, getattr(F, activation)

    def forward(self, src, key_padding_mask, pos):  # (S, B, d)
        if self.pre_norm:
            s = self.norm1(src)
            src = src + self.dropout1(self.self_attn(s + pos, s + pos, s, key_padding_mask=key_padding_mask)[0])
            s = self.norm2(src)
            return src + self.dropout2(self.linear2(self.dropout(self.act(self.linear1(s)))))
        src = self.norm1(src + self.dropout1(self.self_attn(src + pos, src + pos, src,
                                                            key_padding_mask=key_padding_mask)[0]))
        return self.norm2(src + self.dropout2(self.linear2(self.dropout(self.act(self.linear1(src))))))


class DecoderLayer(nn.Module):
    def __init__(self, d, heads, ff, dropout, pre_norm, activation):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d, heads, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.pre_norm, self.act = pre_norm, getattr(F, activation)

    def forward(self, tgt, memory, memory_key_padding_mask, pos, query_pos):  # (T, B, d), (S, B, d)
        if self.pre_norm:
            t = self.norm1(tgt)
            tgt = tgt + self.dropout1(self.self_attn(t + query_pos, t + query_pos, t)[0])
            t = self.norm2(tgt)
            tgt = tgt + self.dropout2(self.multihead_attn(t + query_pos, memory + pos, memory,
                                                          key_padding_mask=memory_key_padding_mask)[0])
            t = self.norm3(tgt)
            return tgt + self.dropout3(self.linear2(self.dropout(self.act(self.linear1(t)))))
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(tgt + query_pos, tgt + query_pos, tgt)[0]))
        tgt = self.norm2(tgt + self.dropout2(self.multihead_attn(tgt + query_pos, memory + pos, memory,
                                                                 key_padding_mask=memory_key_padding_mask)[0]))
        return self.norm3(tgt + self.dropout3(self.linear2(self.dropout(self.act(self.linear1(tgt))))))


class Transformer(nn.Module):
    def __init__(self, d, heads, enc, dec, ff, dropout, pre_norm, activation):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(EncoderLayer(d, heads, ff, dropout, pre_norm, activation)
                                            for _ in range(enc))
        self.encoder.norm = nn.LayerNorm(d) if pre_norm else None
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(DecoderLayer(d, heads, ff, dropout, pre_norm, activation)
                                            for _ in range(dec))
        self.decoder.norm = nn.LayerNorm(d)
        for p in self.parameters():  # the reference's _reset_parameters
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src, mask, query_embed, pos):
        """src (B, d, h, w), mask (B, h, w), query_embed (Q, d), pos (B, d, h, w) -> hs (L, B, Q, d), memory."""
        b = src.shape[0]
        src = src.flatten(2).permute(2, 0, 1)
        pos = pos.flatten(2).permute(2, 0, 1)
        query_pos = query_embed.unsqueeze(1).repeat(1, b, 1)
        mask = mask.flatten(1)
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, mask, pos)
        if self.encoder.norm is not None:
            memory = self.encoder.norm(memory)
        out, hs = torch.zeros_like(query_pos), []
        for layer in self.decoder.layers:
            out = layer(out, memory, mask, pos, query_pos)
            hs.append(self.decoder.norm(out))
        return torch.stack(hs).transpose(1, 2), memory.transpose(0, 1)


class DETR(nn.Module):
    """backbone: a module mapping (B, 3, H, W) to (B, C, h, w) with `num_channels` = C."""

    def __init__(self, backbone, num_classes, num_queries, d=256, heads=8, enc=6, dec=6, ff=2048, dropout=0.1,
                 pre_norm=False, activation="relu"):
        super().__init__()
        self.backbone = backbone
        self.transformer = Transformer(d, heads, enc, dec, ff, dropout, pre_norm, activation)
        self.class_embed = nn.Linear(d, num_classes + 1)
        self.bbox_embed = nn.Module()
        self.bbox_embed.layers = nn.ModuleList([nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 4)])
        self.query_embed = nn.Embedding(num_queries, d)
        self.input_proj = nn.Conv2d(backbone.num_channels, d, kernel_size=1)
        self.d = d

    def forward(self, images, mask):
        """images (B, 3, H, W), mask (B, H, W) -> dict with features, feature mask, positions, memory, and per
        decoder layer logits (L, B, Q, C + 1) and boxes (L, B, Q, 4)."""
        features = self.backbone(images)
        small = F.interpolate(mask[None].float(), size=features.shape[-2:]).to(torch.bool)[0]
        pos = sine_positions(small, self.d // 2, dtype=features.dtype)
        hs, memory = self.transformer(self.input_proj(features), small, self.query_embed.weight, pos)
        box = hs
        for i, layer in enumerate(self.bbox_embed.layers):
            box = layer(box)
            if i < 2:
                box = F.relu(box)
        return {"features": features, "mask": small, "pos": pos, "memory": memory,
                "logits": self.class_embed(hs), "boxes": box.sigmoid()}


# ---- matching and the set criterion (matcher.py, detr.py's SetCriterion) ----

@torch.no_grad()
def hungarian_match(logits, boxes, targets, cost_class=1.0, cost_bbox=5.0, cost_giou=2.0):
    """logits (B, Q, C + 1), boxes (B, Q, 4), targets [{labels (M), boxes (M, 4)}] -> [(pred idx, target idx)]."""
    b, q = logits.shape[:2]
    prob = logits.flatten(0, 1).softmax(-1)
    out_bbox = boxes.flatten(0, 1)
    tgt_ids = torch.cat([t["labels"] for t in targets])
    tgt_bbox = torch.cat([t["boxes"] for t in targets])
    c = (cost_bbox * torch.cdist(out_bbox, tgt_bbox, p=1) - cost_class * prob[:, tgt_ids]
         - cost_giou * generalized_box_iou(box_cxcywh_to_xyxy(out_bbox), box_cxcywh_to_xyxy(tgt_bbox)))
    c = c.view(b, q, -1).cpu()
    sizes = [len(t["boxes"]) for t in targets]
    out = []
    for i, part in enumerate(c.split(sizes, -1)):
        rows, cols = linear_sum_assignment(part[i].numpy())
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return out


def layer_losses(logits, boxes, targets, num_classes, eos_coef, num_boxes, indices):
    """The reference's loss_ce, loss_bbox, loss_giou of one decoder layer for given matches."""
    batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    target_classes = torch.full(logits.shape[:2], num_classes, dtype=torch.int64)
    target_classes[batch_idx, src_idx] = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
    weight = torch.ones(num_classes + 1, dtype=logits.dtype)
    weight[-1] = eos_coef
    loss_ce = F.cross_entropy(logits.transpose(1, 2), target_classes, weight)
    src_boxes = boxes[batch_idx, src_idx]
    target_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
    loss_bbox = F.l1_loss(src_boxes, target_boxes, reduction="none").sum() / num_boxes
    giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(target_boxes)))
    loss_giou = (1 - giou).sum() / num_boxes
    return loss_ce, loss_bbox, loss_giou


# ---- Parallax's names ----

def _to_parallax(name, value, d):
    """(torch name, tensor) -> [(Parallax name, tensor)]: in_proj splits for cross-attention."""
    name = name.replace("linear1", "ff.fc1").replace("linear2", "ff.fc2").replace("out_proj", "out")
    if ".multihead_attn." in name:
        name = name.replace(".multihead_attn.", ".cross_attn.")
        if "in_proj_" in name:
            kind = name.rsplit("in_proj_", 1)[1]
            prefix = name.rsplit("in_proj_", 1)[0]
            return [(prefix + "q." + kind, value[:d]), (prefix + "kv." + kind, value[d:])]
    return [(name.replace("in_proj_", "qkv."), value)]


def parallax_named(model, named_tensors):
    out = {}
    for name, value in named_tensors:
        for px_name, t in _to_parallax(name, value, model.d):
            out[px_name] = t
    return out
