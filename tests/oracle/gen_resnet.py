# PyTorch reference for core/nn/resnet: torch_resnet.py's torchvision-compatible ResNet (torchvision is
# not installed), run in float64 forward and backward; written as resnet.pxt for tests/core/resnet_vs_torch_test.cpp.
#
# Per case <c>: <c>.sd.<key> the state dict (torchvision's names), <c>.x, <c>.y, <c>.gy, <c>.gx, <c>.grad.<param>
# for every parameter, <c>.after.<key> every buffer after the forward (running statistics of trainable batch norms
# in train mode), and <c>.cfg = [depth code, width in 1/1000, stages, frozen, train mode].
import os
import sys

import numpy as np
import torch
from torch import nn

from pxt import write_pxt
from torch_resnet import DEPTHS, FrozenBatchNorm2d, ResNet


def randomise(model):
    """Non-trivial weights and statistics in every batch norm, kaiming-normal convs."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.weight.shape[0]
                m.weight.copy_(1.0 + 0.2 * torch.randn(n))
                m.bias.copy_(0.1 * torch.randn(n))
                m.running_mean.copy_(0.1 * torch.randn(n))
                m.running_var.copy_(0.5 + torch.rand(n))


def run(out, case, depth, width, stages, frozen, train, shape):
    model = ResNet(depth, width, stages, frozen).double()
    randomise(model)
    model.train(train)
    for k, v in model.state_dict().items():
        out[f"{case}.sd.{k}"] = v.clone()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y = model(x)
    gy = torch.randn_like(y)
    y.backward(gy)
    out[f"{case}.x"] = x.detach()
    out[f"{case}.y"] = y.detach()
    out[f"{case}.gy"] = gy
    out[f"{case}.gx"] = x.grad
    for k, p in model.named_parameters():
        out[f"{case}.grad.{k}"] = p.grad
    for k, b in model.named_buffers():
        out[f"{case}.after.{k}"] = b.clone()
    out[f"{case}.cfg"] = np.array([DEPTHS[depth][0], round(width * 1000), stages, int(frozen), int(train)],
                                  dtype=np.int64)


def main():
    outdir = sys.argv[1]
    torch.manual_seed(7)
    out = {}
    run(out, "basic_frozen", "resnet18", 0.25, 2, True, True, (2, 3, 32, 24))
    run(out, "bottleneck_frozen", "resnet50", 0.25, 3, True, True, (2, 3, 48, 40))
    run(out, "basic_bn_train", "resnet18", 0.25, 3, False, True, (2, 3, 40, 32))
    run(out, "bottleneck_bn_train", "resnet50", 0.125, 2, False, True, (3, 3, 24, 28))
    run(out, "resnet34_bn_eval", "resnet34", 0.125, 4, False, False, (1, 3, 64, 48))
    write_pxt(os.path.join(outdir, "resnet.pxt"), out)


if __name__ == "__main__":
    main()
