# PyTorch references for core/optim: SGD and AdamW trajectories on fixed gradient sequences,
# clip_grad_norm_, and the lr schedules (torch's LambdaLR/StepLR where equivalent, formulas otherwise).
import math
import os
import sys

import numpy as np
import torch

from pxt import write_pxt

K = 6  # optimizer steps per trajectory
SKIP = (2, 1)  # at step index 2, parameter 1 has no gradient (skipped, its per-parameter step lags)
SHAPES = [(3, 4), (5,)]

# name -> (optimizer class, per-group options, dtype, {step index: lr for every group before that step})
CONFIGS = {
    "sgd_plain": ("sgd", [dict(lr=0.1)], torch.float32, {}),
    "sgd_momentum": ("sgd", [dict(lr=0.1, momentum=0.9)], torch.float32, {}),
    "sgd_dampening": ("sgd", [dict(lr=0.05, momentum=0.8, dampening=0.3)], torch.float32, {}),
    "sgd_nesterov_wd": ("sgd", [dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)], torch.float32, {}),
    "sgd_wd": ("sgd", [dict(lr=0.1, weight_decay=0.1)], torch.float32, {}),
    "adamw_default": ("adamw", [dict(lr=1e-3)], torch.float32, {}),
    "adamw_custom": ("adamw", [dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)], torch.float32, {}),
    "adamw_groups": ("adamw", [dict(lr=0.02, weight_decay=0.1), dict(lr=0.001, weight_decay=0.0)], torch.float32,
                     {3: [0.01, 0.004]}),
    "adamw_f64": ("adamw", [dict(lr=0.01, weight_decay=0.05)], torch.float64, {}),
    "sgd_groups_f64": ("sgd", [dict(lr=0.1, momentum=0.9), dict(lr=0.01, momentum=0.9, weight_decay=0.2)],
                       torch.float64, {4: [0.05, 0.02]}),
}


def make(name, out, p0, grads):
    kind, groups, dtype, lr_changes = CONFIGS[name]
    params = [torch.nn.Parameter(p.clone().to(dtype)) for p in p0]
    if len(groups) == 1:
        pg = [dict(params=params, **groups[0])]
    else:
        pg = [dict(params=[params[i]], **groups[i]) for i in range(len(groups))]
    if kind == "sgd":
        opt = torch.optim.SGD(pg, lr=groups[0]["lr"])
    else:
        opt = torch.optim.AdamW(pg, lr=groups[0]["lr"])
    for k in range(K):
        if k in lr_changes:
            for g, lr in zip(opt.param_groups, lr_changes[k]):
                g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        for j, p in enumerate(params):
            if (k, j) != SKIP:
                p.grad = grads[k][j].clone().to(dtype)
        opt.step()
        for j, p in enumerate(params):
            out[f"{name}.step{k + 1}.{j}"] = p.detach().clone()


def schedules(out):
    steps = 40
    base = 0.5

    def record(sched_factory, lam=None):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=base)
        sched = sched_factory(opt)
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            p.grad = torch.zeros(1)
            opt.step()
            sched.step()
        return np.array(lrs, dtype=np.float64)

    warmup = 8
    # LambdaLR's factor for update k (1-based) is lambda(k - 1).
    inv = lambda e: min((e + 1) / warmup, math.sqrt(warmup / (e + 1)))
    out["sched.inverse_sqrt"] = record(lambda o: torch.optim.lr_scheduler.LambdaLR(o, inv))
    out["sched.step_decay"] = record(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5))
    out["sched.constant"] = record(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1.0))
    # Cosine with warmup 5, total 30, min ratio 0.1, written out in Python.
    w, total, ratio = 5, 30, 0.1
    cos = []
    for k in range(1, steps + 1):
        if k <= w:
            cos.append(base * k / w)
        else:
            q = min(1.0, (k - w) / (total - w))
            lo = base * ratio
            cos.append(lo + (base - lo) * 0.5 * (1 + math.cos(math.pi * q)))
    out["sched.cosine"] = np.array(cos, dtype=np.float64)
    # The post-warmup part equals torch's CosineAnnealingLR (T_max = total - w, eta_min = base * ratio).
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - w, eta_min=base * ratio)
    tail = []
    for _ in range(total - w + 1):
        tail.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros(1)
        opt.step()
        sched.step()
    out["sched.cosine_torch_tail"] = np.array(tail, dtype=np.float64)  # updates w .. total


def clipping(out):
    g = torch.Generator().manual_seed(11)
    shapes = [(4, 3), (7,), (2, 2)]
    grads = [torch.randn(s, generator=g) for s in shapes]
    for j, x in enumerate(grads):
        out[f"clip.g.{j}"] = x
    for label, max_norm in (("small", 1.0), ("large", 1e3)):
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p, x in zip(params, grads):
            p.grad = x.clone()
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        out[f"clip.{label}.total"] = total.detach().to(torch.float64)
        for j, p in enumerate(params):
            out[f"clip.{label}.g.{j}"] = p.grad


def main():
    outdir = sys.argv[1]
    torch.manual_seed(0)
    out = {}
    p0 = [torch.randn(s) for s in SHAPES]
    grads = [[torch.randn(s) * (1.0 + k) for s in SHAPES] for k in range(K)]
    for j, p in enumerate(p0):
        out[f"p0.{j}"] = p
    for k in range(K):
        for j in range(len(SHAPES)):
            out[f"grad.{k}.{j}"] = grads[k][j]
    for name in CONFIGS:
        make(name, out, p0, grads)
    schedules(out)
    clipping(out)
    write_pxt(os.path.join(outdir, "optim.pxt"), out)


if __name__ == "__main__":
    main()
