# A torchvision-compatible ResNet (BasicBlock, Bottleneck v1.5, DETR's FrozenBatchNorm2d) from torch.nn layers,
# without pooling head: the reference of core/nn/resnet for gen_resnet.py and the backbone of bench/detr/.
import torch
import torch.nn.functional as F
from torch import nn

# depth -> (the code gen_resnet writes in <case>.cfg, bottleneck blocks, blocks per stage)
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
        self.num_channels = cin  # the last stage's channels (DETR's input projection reads it)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for s in range(self.stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return x
