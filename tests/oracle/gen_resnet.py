# PyTorch reference for core/nn/resnet: a torchvision-compatible ResNet written from torch.nn layers (torchvision is
# not installed), run in float64 forward and backward; written as resnet.pxt for tests/core/resnet_vs_torch_test.cpp.
#
# Per case <c>: <c>.sd.<key> the state dict (torchvision's names), <c>.x, <c>.y, <c>.gy, <c>.gx, <c>.grad.<param>
# for every parameter, <c>.after.<key> every buffer after the forward (running statistics of trainable batch norms
# in train mode), and <c>.cfg = [depth code, width in 1/1000, stages, frozen, train mode].
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pxt import write_pxt

DEPTHS = {"resnet18": (0, False, [2, 2, 2, 2]), "resnet34": (1, False, [3, 4, 6, 3]),
          "resnet50": (2, True, [3, 4, 6, 3])}


class FrozenBatchNorm2d(nn.Module):
    """DETR's: weight, bias, running_mean, running_var as buffers; y = x * scale + shift."""

    def __init__(self, n):
        super().__init__()
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x):
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + 1e-5).rsqrt()
        shift = self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale + shift


def conv(cin, cout, k, stride):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, norm):
        super().__init__()
        self.conv1 = conv(cin, planes, 3, stride)
        self.bn1 = norm(planes)
        self.conv2 = conv(planes, planes, 3, 1)
        self.bn2 = norm(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(conv(cin, planes, 1, stride), norm(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, norm):
        super().__init__()
        self.conv1 = conv(cin, planes, 1, 1)
        self.bn1 = norm(planes)
        self.conv2 = conv(planes, planes, 3, stride)  # v1.5: the stride on the 3x3
        self.bn2 = norm(planes)
        self.conv3 = conv(planes, planes * 4, 1, 1)
        self.bn3 = norm(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(conv(cin, planes * 4, 1, stride), norm(planes * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    def __init__(self, depth, width, stages, frozen):
        super().__init__()
        _, bottleneck, blocks = DEPTHS[depth]
        block = Bottleneck if bottleneck else BasicBlock
        norm = FrozenBatchNorm2d if frozen else nn.BatchNorm2d
        base = max(8, round(64 * width))
        self.conv1 = conv(3, base, 7, 2)
        self.bn1 = norm(base)
        cin = base
        for s in range(stages):
            layer = []
            for b in range(blocks[s]):
                layer.append(block(cin, base << s, 2 if b == 0 and s > 0 else 1, norm))
                cin = (base << s) * block.expansion
            setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
        self.stages = stages

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for s in range(self.stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return x


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
