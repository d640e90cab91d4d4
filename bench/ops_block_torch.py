# bench/ops_block_torch.py: the PyTorch (CPU) peer of bench/ops_block.cpp, the same block op for op,
# forward + backward; prints one JSON line with the same fields (median ms, GFLOP/s). Run with /usr/bin/python3.
#
# Block (N = B*T, C, H heads of D = C/H, V vocab), identical to bench_ops:
#   h = layer_norm(x) ; u = dropout(gelu(linear(h, W1, b1)), 0.1) ; r = x + linear(u, W2, b2)
#   q = heads(r) (B,H,T,D) ; p = softmax((q q^T / sqrt(D)) as (B*H*T, T)) ; o = merge(p @ q)
#   loss = cross_entropy(linear(o, Wv, bv), target, label_smoothing=0.1) ; loss.backward()
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F

from block_args import add_block_args


def block_gflop(B, T, C, H, V):
    N = B * T
    fwd = 2.0 * N * C * 4 * C + 2.0 * N * 4 * C * C + 2.0 * N * T * C + 2.0 * N * T * C + 2.0 * N * C * V
    return 3.0 * fwd * 1e-9


def block_nongemm_gbytes(B, T, C, H, V):
    N = B * T
    NC, S, NV = N * C, N * H * T, N * V
    return 4.0 * (55.0 * NC + 9.0 * S + 3.0 * NV) * 1e-9


def peak_gflops(threads):
    mhz, avx2, fma = 0.0, False, False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not mhz and line.startswith("cpu MHz"):
                    mhz = float(line.split(":")[1])
                if line.startswith("flags"):
                    avx2, fma = " avx2" in line, " fma" in line
    except OSError:
        pass
    mhz = float(os.environ.get("BENCH_CPU_MHZ", mhz))
    return threads * mhz * 1e-3 * (32 if avx2 and fma else 8)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    add_block_args(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(42)
    B, T, C, H, V = a.B, a.T, a.C, a.H, a.V
    N, D = B * T, C // H
    assert C % H == 0, "C must be divisible by H"

    def leaf(*shape):
        return torch.randn(*shape).requires_grad_(True)

    x = leaf(N, C)
    ln_w, ln_b = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
    W1 = (torch.randn(4 * C, C) / math.sqrt(C)).requires_grad_(True)
    b1 = torch.zeros(4 * C, requires_grad=True)
    W2 = (torch.randn(C, 4 * C) / math.sqrt(4 * C)).requires_grad_(True)
    b2 = torch.zeros(C, requires_grad=True)
    Wv = (torch.randn(V, C) / math.sqrt(C)).requires_grad_(True)
    bv = torch.zeros(V, requires_grad=True)
    target = torch.randint(0, V, (N,))
    params = [x, ln_w, ln_b, W1, b1, W2, b2, Wv, bv]
    scale = 1.0 / math.sqrt(D)

    def heads(r):
        return r.reshape(B, T, H, D).permute(0, 2, 1, 3).contiguous()

    def merge(o):
        return o.permute(0, 2, 1, 3).contiguous().reshape(N, C)

    def block_loss():
        h = F.layer_norm(x, (C,), ln_w, ln_b, 1e-5)
        u = F.dropout(F.gelu(F.linear(h, W1, b1)), 0.1, True)
        r = x + F.linear(u, W2, b2)
        q = heads(r)
        scores = torch.matmul(q, q.transpose(-2, -1)) * scale
        prob = torch.softmax(scores.reshape(B * H * T, T), dim=-1)
        o = merge(torch.matmul(prob.reshape(B, H, T, T), q))
        logits = F.linear(o, Wv, bv)
        return F.cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.1)

    head = {"impl": "torch", "torch": torch.__version__, "threads": a.threads, "B": B, "T": T, "C": C, "H": H,
            "V": V, "gemm_gflop": round(block_gflop(B, T, C, H, V), 3),
            "nongemm_gbytes": round(block_nongemm_gbytes(B, T, C, H, V), 3),
            "nominal_peak_gflops": round(peak_gflops(a.threads))}

    if a.breakdown:
        stages = [
            ("layer_norm", [leaf(N, C), ln_w, ln_b], lambda t: F.layer_norm(t[0], (C,), t[1], t[2], 1e-5)),
            ("linear_c_4c", [leaf(N, C), W1, b1], lambda t: F.linear(t[0], t[1], t[2])),
            ("gelu", [leaf(N, 4 * C)], lambda t: F.gelu(t[0])),
            ("dropout", [leaf(N, 4 * C)], lambda t: F.dropout(t[0], 0.1, True)),
            ("linear_4c_c", [leaf(N, 4 * C), W2, b2], lambda t: F.linear(t[0], t[1], t[2])),
            ("residual_add", [leaf(N, C), leaf(N, C)], lambda t: t[0] + t[1]),
            ("split_heads", [leaf(N, C)], lambda t: heads(t[0])),
            ("scores_qqT_scale", [leaf(B, H, T, D)], lambda t: torch.matmul(t[0], t[0].transpose(-2, -1)) * scale),
            ("softmax", [leaf(B * H * T, T)], lambda t: torch.softmax(t[0], dim=-1)),
            ("probs_at_v", [leaf(B, H, T, T), leaf(B, H, T, D)], lambda t: torch.matmul(t[0], t[1])),
            ("merge_heads", [leaf(B, H, T, D)], lambda t: merge(t[0])),
            ("linear_c_vocab", [leaf(N, C), Wv, bv], lambda t: F.linear(t[0], t[1], t[2])),
            ("cross_entropy_ls", [leaf(N, V)],
             lambda t: F.cross_entropy(t[0], target, ignore_index=-100, label_smoothing=0.1)),
        ]
        out, cpu = {}, {}
        for name, inputs, fn in stages:
            y0 = fn(inputs)
            gy = None if y0.dim() == 0 else torch.randn_like(y0)
            del y0

            def once():
                for t in inputs:
                    t.grad = None
                fn(inputs).backward(gy)

            for _ in range(a.warmup):
                once()
            t0 = time.perf_counter()
            once()
            one = (time.perf_counter() - t0) * 1e3
            inner = max(1, min(1000, math.ceil(20.0 / one))) if one > 0 else 1
            ts, cs = [], []
            for _ in range(a.reps):
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(inner):
                    once()
                ts.append((time.perf_counter() - t0) * 1e3 / inner)
                cs.append((time.process_time() - c0) * 1e3 / inner)
            out[name] = round(statistics.median(ts), 3)
            cpu[name] = round(statistics.median(cs), 3)
        head["breakdown_ms"] = out
        head["breakdown_cpu_ms"] = cpu
        print(json.dumps(head))
        return

    def step():
        for p in params:
            p.grad = None
        block_loss().backward()

    for _ in range(a.warmup):
        step()
    ts, cs = [], []
    for _ in range(a.reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        ts.append((time.perf_counter() - t0) * 1e3)
        cs.append((time.process_time() - c0) * 1e3)
    med = statistics.median(ts)
    head.update({"median_ms": round(med, 3), "min_ms": round(min(ts), 3),
                 "cpu_median_ms": round(statistics.median(cs), 3),
                 "gflops": round(head["gemm_gflop"] / (med * 1e-3), 2), "times_ms": [round(t, 3) for t in ts]})
    print(json.dumps(head))


if __name__ == "__main__":
    main()
