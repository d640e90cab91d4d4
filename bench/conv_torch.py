# bench/conv_torch.py: the PyTorch (CPU) peer of bench_conv (bench/conv.cpp): F.conv2d forward + backward over
# the same shapes and threads; prints one JSON line with each shape's median ms. Run with /usr/bin/python3.
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def parse_shapes(spec):
    """'name:n,cin,h,w,cout,k,stride,pad,x_grad;...' -> [(name, [9 ints])]"""
    out = []
    for item in spec.split(";"):
        name, nums = item.split(":")
        out.append((name, [int(v) for v in nums.split(",")]))
    return out


def time_ms(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) * 1e3 / inner


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(42)
    result = {"impl": "torch", "torch": torch.__version__, "threads": a.threads, "shapes": {}}
    for name, (n, cin, h, w, cout, k, stride, pad, x_grad) in parse_shapes(a.shapes):
        x = torch.randn(n, cin, h, w).requires_grad_(bool(x_grad))
        wt = (torch.randn(cout, cin, k, k) * 0.05).requires_grad_(True)
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        gy = torch.randn(n, cout, oh, ow)

        def step():
            x.grad = None
            wt.grad = None
            F.conv2d(x, wt, None, stride, pad).backward(gy)

        for _ in range(a.warmup):
            step()
        one = time_ms(step, 1)
        inner = max(1, min(1000, int(50.0 / max(one, 1e-6) + 0.999)))
        t = [time_ms(step, inner) for _ in range(a.reps)]
        result["shapes"][name] = {"median_ms": statistics.median(t), "min_ms": min(t)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
