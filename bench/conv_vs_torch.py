#!/usr/bin/python3
# bench/conv_vs_torch.py: runs bench_conv (Parallax) and conv_torch.py (PyTorch, oneDNN on the CPU) over the same
# conv shapes and threads, several processes each, interleaved; prints per shape both medians, GFLOP/s and the ratio.
"""Compare px::conv2d forward + backward with torch's F.conv2d on the CPU.

Default shapes: a ResNet-18 at 128x128, batch 16 (the stem's 7x7/2 without dL/dx, as for an input image; every
other conv with dL/dx), plus a Bottleneck's 1x1 convs. ratio = parallax_ms / torch_ms: below 1.0 Parallax is faster.
"""
import argparse
import os
import statistics
import sys

from ops_vs_torch import load, run_interleaved

HERE = os.path.dirname(os.path.abspath(__file__))

# name: n, cin, h, w, cout, k, stride, pad, x_grad
RESNET18_128_B16 = [
    ("stem_7x7s2_3-64_128", (16, 3, 128, 128, 64, 7, 2, 3, 0)),
    ("l1_3x3_64-64_32", (16, 64, 32, 32, 64, 3, 1, 1, 1)),
    ("l2_3x3s2_64-128_32", (16, 64, 32, 32, 128, 3, 2, 1, 1)),
    ("l2_1x1s2_64-128_32", (16, 64, 32, 32, 128, 1, 2, 0, 1)),
    ("l2_3x3_128-128_16", (16, 128, 16, 16, 128, 3, 1, 1, 1)),
    ("l3_3x3_256-256_8", (16, 256, 8, 8, 256, 3, 1, 1, 1)),
    ("l4_3x3_512-512_4", (16, 512, 4, 4, 512, 3, 1, 1, 1)),
    ("bottleneck_1x1_256-64_32", (16, 256, 32, 32, 64, 1, 1, 0, 1)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.environ.get("PARALLAX_BUILD_DIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with torch for the peer")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PARALLAX_NUM_THREADS", "2")))
    ap.add_argument("--runs", type=int, default=5, help="processes per side (interleaved)")
    ap.add_argument("--reps", type=int, default=7, help="timed samples per shape per process")
    ap.add_argument("--shapes", default=";".join(f"{n}:{','.join(map(str, s))}" for n, s in RESNET18_128_B16),
                    help="'name:n,cin,h,w,cout,k,stride,pad,x_grad;...'")
    a = ap.parse_args()

    bench = os.path.join(a.build_dir, "bench", "bench_conv")
    if not os.access(bench, os.X_OK):
        sys.exit(f"{bench} not found: build it with cmake --build {a.build_dir} --target bench_conv")
    env = dict(os.environ)
    for k in ("PARALLAX_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(a.threads)
    common = ["--threads", str(a.threads), "--reps", str(a.reps), "--shapes", a.shapes]
    px_cmd = [bench] + common
    th_cmd = [a.python, os.path.join(HERE, "conv_torch.py")] + common

    load_before = load()
    px_runs, th_runs = run_interleaved(px_cmd, th_cmd, a.runs, env)

    print(f"# conv2d fwd+bwd (dW, and dX where x_grad), threads={a.threads}, {a.runs} runs x {a.reps} samples each, "
          f"interleaved; torch {th_runs[0].get('torch', '?')} (oneDNN); measured FMA peak "
          f"{float(px_runs[0]['peak_gflops']):.0f} GFLOP/s; load before {load_before}, after {load()}")
    print(f"{'shape':<28} {'GFLOP':>7} {'px_ms':>8} {'torch_ms':>8} {'px_GF/s':>8} {'th_GF/s':>8} {'px/torch':>8}")
    ratios, px_total, th_total = [], 0.0, 0.0
    for name in px_runs[0]["shapes"]:
        gflop = px_runs[0]["shapes"][name]["gflop"]
        p = statistics.median(r["shapes"][name]["median_ms"] for r in px_runs)
        t = statistics.median(r["shapes"][name]["median_ms"] for r in th_runs)
        ratios.append(p / t)
        px_total, th_total = px_total + p, th_total + t
        print(f"{name:<28} {gflop:7.3f} {p:8.2f} {t:8.2f} {gflop / p * 1e3:8.1f} {gflop / t * 1e3:8.1f} {p / t:8.3f}")
    print(f"{'sum':<28} {'':>7} {px_total:8.2f} {th_total:8.2f} {'':>8} {'':>8} {px_total / th_total:8.3f}")
    print(f"SUMMARY conv_vs_torch threads={a.threads} px_ms={px_total:.2f} torch_ms={th_total:.2f} "
          f"ratio_px_over_torch={px_total / th_total:.3f} geomean_ratio={statistics.geometric_mean(ratios):.3f}")


if __name__ == "__main__":
    main()
