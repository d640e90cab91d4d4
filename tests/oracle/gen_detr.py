# PyTorch references for DETR (tests/oracle/torch_detr.py, f64): the 2D sine positions of padding masks.
import os
import sys

import torch

from pxt import write_pxt
from torch_detr import sine_positions


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


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    positions(sys.argv[1])
