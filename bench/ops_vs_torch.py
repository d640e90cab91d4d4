#!/usr/bin/python3
# bench/ops_vs_torch.py: runs bench_ops (Parallax) and ops_block_torch.py (PyTorch) with the same sizes and
# threads, several runs each, interleaved; prints both medians, GFLOP/s and the time ratio parallax/torch.
"""Compare the Parallax ops block with its PyTorch peer.

Each run is one process that warms up and times --reps iterations (forward + backward) and reports their
median; the driver alternates Parallax and PyTorch runs (which goes first alternates too) and takes the
median over runs. ratio = parallax_ms / torch_ms: below 1.0 Parallax is faster (target <= 1.0).
With --breakdown it also times each stage alone in both and prints a per-stage table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from block_args import add_block_args

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE_KEYS = ("B", "T", "C", "H", "V")


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_json(cmd, env):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (rc {p.returncode}):\n{p.stdout}\n{p.stderr}")
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"{' '.join(cmd)} printed no JSON line:\n{p.stdout}\n{p.stderr}")
    return json.loads(lines[-1])


def run_interleaved(px_cmd, th_cmd, runs, env):
    """Runs both commands `runs` times, alternating which goes first; returns their JSON results."""
    px_runs, th_runs = [], []
    for i in range(runs):
        order = [(px_cmd, px_runs), (th_cmd, th_runs)]
        if i % 2:
            order.reverse()
        for cmd, sink in order:
            sink.append(run_json(cmd, env))
    return px_runs, th_runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.environ.get("PARALLAX_BUILD_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build")))
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with torch for the peer")
    ap.add_argument("--runs", type=int, default=5, help="processes per side (interleaved)")
    add_block_args(ap)
    a = ap.parse_args()

    bench_ops = os.path.join(a.build_dir, "bench", "bench_ops")
    if not os.access(bench_ops, os.X_OK):
        sys.exit(f"{bench_ops} not found: build it with cmake --build {a.build_dir} --target bench_ops")
    env = dict(os.environ)
    for k in ("PARALLAX_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(a.threads)
    common = ["--threads", str(a.threads), "--reps", str(a.reps), "--warmup", str(a.warmup)]
    for k in SIZE_KEYS:
        common += [f"--{k}", str(getattr(a, k))]
    px_cmd = [bench_ops] + common
    th_cmd = [a.python, os.path.join(HERE, "ops_block_torch.py")] + common

    load_before = load()
    px_runs, th_runs = run_interleaved(px_cmd, th_cmd, a.runs, env)
    px_med = statistics.median(r["median_ms"] for r in px_runs)
    th_med = statistics.median(r["median_ms"] for r in th_runs)
    gflop, gbytes, peak = px_runs[0]["gemm_gflop"], px_runs[0]["nongemm_gbytes"], px_runs[0]["peak_gflops"]
    sizes = " ".join(f"{k}={getattr(a, k)}" for k in SIZE_KEYS)
    print(f"# ops block fwd+bwd, {sizes} (N=B*T={a.B * a.T}), threads={a.threads}, {a.runs} runs x {a.reps} reps "
          f"each, interleaved; torch {th_runs[0].get('torch', '?')}")
    print(f"# GEMM work {gflop:.2f} GFLOP (fwd+bwd), non-GEMM traffic >= {gbytes:.3f} GB; measured FMA peak "
          f"{peak:.0f} GFLOP/s -> GEMM floor {gflop / peak * 1e3:.1f} ms")
    print(f"# load before {load_before}, after {load()}")
    print(f"#   parallax run medians (ms): {[r['median_ms'] for r in px_runs]}")
    print(f"#   torch    run medians (ms): {[r['median_ms'] for r in th_runs]}")
    print(f"parallax: median {px_med:8.2f} ms  {gflop / px_med * 1e3:7.1f} GFLOP/s")
    print(f"torch:    median {th_med:8.2f} ms  {gflop / th_med * 1e3:7.1f} GFLOP/s")
    print(f"ratio parallax/torch (time) = {px_med / th_med:.3f}  (target <= 1.0)")
    px_cpu = statistics.median(r["cpu_median_ms"] for r in px_runs)
    th_cpu = statistics.median(r["cpu_median_ms"] for r in th_runs)
    print(f"# process CPU time per iteration: parallax {px_cpu:.1f} ms, torch {th_cpu:.1f} ms, ratio "
          f"{px_cpu / th_cpu:.3f} (load-robust with --threads 1; with more threads it also counts spin-waiting)")
    print(f"SUMMARY ops_vs_torch {sizes.replace(' ', ' ')} threads={a.threads} px_ms={px_med:.2f} "
          f"torch_ms={th_med:.2f} px_gflops={gflop / px_med * 1e3:.1f} torch_gflops={gflop / th_med * 1e3:.1f} "
          f"ratio_px_over_torch={px_med / th_med:.3f}")

    if a.breakdown:
        px_b = run_json(px_cmd + ["--breakdown"], env)
        th_b = run_json(th_cmd + ["--breakdown"], env)
        th_b2 = run_json(th_cmd + ["--breakdown"], env)
        px_b2 = run_json(px_cmd + ["--breakdown"], env)
        px_c = [run["breakdown_cpu_ms"] for run in (px_b, px_b2)]
        th_c = [run["breakdown_cpu_ms"] for run in (th_b, th_b2)]
        px_b, px_b2, th_b, th_b2 = (run["breakdown_ms"] for run in (px_b, px_b2, th_b, th_b2))
        print("# per stage alone, forward + backward (min of 2 interleaved runs, each a median); wall ms and")
        print("# process CPU ms (CPU counts all threads: the load-robust one with --threads 1)")
        print(f"{'stage':<20} {'px_ms':>9} {'torch_ms':>9} {'px/torch':>9} {'px_cpu':>9} {'torch_cpu':>9} {'cpu_ratio':>9}")
        tp = tt = cp = ct = 0.0
        for name in px_b:
            p, t = min(px_b[name], px_b2[name]), min(th_b[name], th_b2[name])
            pc, tc = min(c[name] for c in px_c), min(c[name] for c in th_c)
            tp, tt, cp, ct = tp + p, tt + t, cp + pc, ct + tc
            print(f"{name:<20} {p:9.3f} {t:9.3f} {p / t:9.2f} {pc:9.3f} {tc:9.3f} {pc / tc:9.2f}")
        print(f"{'sum':<20} {tp:9.3f} {tt:9.3f} {tp / tt:9.2f} {cp:9.3f} {ct:9.3f} {cp / ct:9.2f}")


if __name__ == "__main__":
    main()
