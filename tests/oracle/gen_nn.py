# PyTorch references for core/nn: Linear, LayerNorm, Embedding and FeedForward (eval) forward and
# backward; each module's state dict is written under "<case>.sd.<key>" for load_state_dict.
import os
import sys

import torch
import torch.nn.functional as F

from pxt import write_pxt


class FeedForward(torch.nn.Module):
    """fc2(dropout(act(fc1(x)))), the inner block of torch.nn.TransformerEncoderLayer."""

    def __init__(self, d_model, d_ff, activation, p):
        super().__init__()
        self.fc1 = torch.nn.Linear(d_model, d_ff)
        self.dropout = torch.nn.Dropout(p)
        self.fc2 = torch.nn.Linear(d_ff, d_model)
        self.act = F.relu if activation == "relu" else F.gelu

    def forward(self, x):
        return self.fc2(self.dropout(self.act(self.fc1(x))))


def run(out, case, module, x, ids=False):
    """Forward x, backward a random upstream gradient; write sd, x, gy, y, gx (float x) and param grads."""
    module.eval()
    for k, v in module.state_dict().items():
        out[f"{case}.sd.{k}"] = v
    if not ids:
        x = x.clone().requires_grad_(True)
    y = module(x)
    gy = torch.randn_like(y)
    y.backward(gy)
    out[f"{case}.x"] = x.detach()
    out[f"{case}.gy"] = gy
    out[f"{case}.y"] = y.detach()
    if not ids:
        out[f"{case}.gx"] = x.grad
    for k, p in module.named_parameters():
        out[f"{case}.grad.{k}"] = p.grad


def main():
    outdir = sys.argv[1]
    torch.manual_seed(1)
    out = {}
    run(out, "linear", torch.nn.Linear(5, 3), torch.randn(2, 4, 5))
    run(out, "linear_nobias", torch.nn.Linear(4, 6, bias=False), torch.randn(7, 4))
    ln = torch.nn.LayerNorm(6)
    with torch.no_grad():
        ln.weight.copy_(1.0 + 0.3 * torch.randn(6))
        ln.bias.copy_(0.2 * torch.randn(6))
    run(out, "layernorm", ln, 2.0 * torch.randn(3, 2, 6) + 0.5)
    ln_eps = torch.nn.LayerNorm(5, eps=1e-3, elementwise_affine=False)
    run(out, "layernorm_plain", ln_eps, torch.randn(4, 5))
    ids = torch.tensor([[1, 4, 1, 0, 9], [3, 3, 3, 7, 2], [9, 8, 0, 1, 4]], dtype=torch.int64)
    run(out, "embedding", torch.nn.Embedding(10, 4), ids, ids=True)
    run(out, "ff_gelu", FeedForward(6, 12, "gelu", 0.1), torch.randn(2, 3, 6))
    run(out, "ff_relu", FeedForward(6, 10, "relu", 0.3), torch.randn(5, 6))
    write_pxt(os.path.join(outdir, "nn.pxt"), out)


if __name__ == "__main__":
    main()
