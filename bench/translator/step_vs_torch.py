#!/usr/bin/python3
# bench/translator/step_vs_torch.py: runs bench_translator_step (Parallax) and step_torch.py (PyTorch) on the
# same model config, batch and threads (or GPU), several processes each, interleaved; prints medians and ratios.
"""Compare one translator training step (forward + loss + backward + AdamW) of Parallax and PyTorch.

Each run is one process that builds the model, warms up and times --reps steps, and reports their
median (and the median forward, backward and optimizer phases). The driver alternates Parallax and
PyTorch runs (which goes first alternates too) and takes the median over runs, per config.
ratio = parallax_ms / torch_ms: below 1.0 Parallax is faster (target <= 1.0). It builds nothing.

--device cuda (on a GPU machine; default config base32k: d 512, 6+6 layers, 8 heads, FFN 2048, vocab 32,000,
800 sentences of 26..36 tokens = ~25,000 target tokens, bf16): Parallax in bf16 (f32 masters) against the
machine's PyTorch (--python, default python3: eager, scaled_dot_product_attention inside nn.MultiheadAttention,
bf16 autocast, fused AdamW) on the same batch; per side the training throughput (real target tokens per second
of the median step), the peak GPU memory (Parallax: the caching allocator's peak_allocated_bytes; torch:
torch.cuda.max_memory_allocated), the forward / backward / optimizer split and the model FLOPs utilisation
    MFU = step_gflop / step time / --peak-tflops (989: H100 SXM and H200 dense bf16)
with step_gflop (step.cpp) = 6 x (weight multiply-adds per padded position, summed: encoder 4d^2 + 2d dff,
decoder 6d^2 + 2d dff, cross-attention k/v of the memory 2d^2 per source position and decoder layer, output
projection d V) + 12 B d (Le S^2 + Ld (T^2 + T S)) for the attention scores and their products with V
(full T x T, causal or not); embeddings, softmax, norms, loss and AdamW are not counted. Without a GPU it
prints one line and exits 0.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from ops_vs_torch import load, run_interleaved, run_json  # noqa: E402  (same runner and load reading)
from step_args import CONFIGS, GPU_RUN_DEFAULTS, MODEL_KEYS, RUN_KEYS, add_run_args, flags  # noqa: E402

PHASES = ("fwd_ms", "bwd_ms", "opt_ms")


def gemm_reference(build_dir, threads, M, K, N, env):
    """OpenBLAS's rate (GFLOP/s) on this model's FFN fc1 GEMMs (M x K -> N, fwd + bwd) from bench_gemm, or None."""
    exe = os.path.join(build_dir, "bench", "bench_gemm")
    if not os.access(exe, os.X_OK):
        return None
    p = subprocess.run([exe, "--threads", str(threads), "--shapes", f"{M}x{K}x{N}", "--reps", "3"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    m = re.search(r"^SUMMARY bench_gemm .* raw_gflops=([0-9.]+)", p.stdout, re.M)
    return float(m.group(1)) if p.returncode == 0 and m else None


def med(runs, key):
    """Median over runs of one field of their JSON lines."""
    return statistics.median(r[key] for r in runs)


def check_same(px, th, config):
    """Both sides must have run the same batch and the same architecture, else the ratio means nothing."""
    for key in ("B", "S", "T", "src_tokens", "tgt_tokens", "batch_hash", "params"):
        if px[key] != th[key]:
            sys.exit(f"{config}: parallax and torch differ in {key}: {px[key]} vs {th[key]}")
    if abs(px["gflop"] - th["gflop"]) > 1e-3 * px["gflop"]:
        sys.exit(f"{config}: FLOP counts differ: {px['gflop']} vs {th['gflop']}")


def print_phases(px_runs, th_runs, note):
    """The forward / backward / optimizer split of both sides: medians over runs, and their ratio."""
    print(f"# {'phase':<10} {'px_ms':>9} {'torch_ms':>9} {'px/torch':>9}   ({note})")
    for phase in PHASES:
        p, t = med(px_runs, phase), med(th_runs, phase)
        print(f"# {phase[:-3]:<10} {p:9.1f} {t:9.1f} {p / t:9.2f}")


def print_torch_profile(th_cmd, env, clock):
    """torch.profiler's table of 3 steps (the torch side run again with --profile), ops by self `clock` time."""
    p = subprocess.run(th_cmd + ["--profile"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    print(f"# torch.profiler, 3 steps, ops by self {clock} time:\n{p.stderr}")


def compare(config, a, bench, env):
    common = flags(CONFIGS[config], MODEL_KEYS) + flags(a, RUN_KEYS)
    px_cmd = [bench] + common
    th_cmd = [a.python, os.path.join(HERE, "step_torch.py")] + common
    load_before = load()
    px_runs, th_runs = run_interleaved(px_cmd, th_cmd, a.runs, env)
    px0, th0 = px_runs[0], th_runs[0]
    check_same(px0, th0, config)
    px_ms, th_ms, gflop = med(px_runs, "median_ms"), med(th_runs, "median_ms"), px0["gflop"]
    c = CONFIGS[config]
    B, S, T = px0["B"], px0["S"], px0["T"]
    print(f"## {config}: d={c['d_model']} layers={c['encoder_layers']}+{c['decoder_layers']} heads={c['heads']} "
          f"ffn={c['d_ff']} {'pre' if c['pre_norm'] else 'post'}-norm vocab={c['vocab']} shared+tied; "
          f"{px0['params'] / 1e6:.2f} M params")
    print(f"# batch B={B} S={S} T={T} (padded), {px0['src_tokens']} + {px0['tgt_tokens']} real tokens "
          f"({100.0 * (1 - (px0['src_tokens'] + px0['tgt_tokens']) / (B * (S + T))):.0f}% padding), "
          f"dropout={a.dropout} attention_dropout={a.attention_dropout} label_smoothing={a.label_smoothing}; "
          f"threads={a.threads}, {a.runs} runs x {a.reps} steps (after {a.warmup} warm-up), interleaved; "
          f"torch {th0['torch']}, OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"# first loss: parallax {px0['first_loss']:.3f}, torch {th0['first_loss']:.3f} (same init distributions, "
          f"different draws: they should agree to a few %)")
    gemm = None if a.no_gemm_ref else gemm_reference(a.build_dir, a.threads, B * T, c["d_model"], c["d_ff"], env)
    ref = f"; OpenBLAS on the FFN GEMM {B * T}x{c['d_model']}x{c['d_ff']} (fwd+bwd): {gemm:.0f} GFLOP/s" if gemm else ""
    print(f"# model work {gflop:.2f} GFLOP per step; measured FMA peak {px0['peak_gflops']:.0f} GFLOP/s{ref}")
    print(f"# load before {load_before}, after {load()}")
    print(f"#   parallax run medians (ms): {[r['median_ms'] for r in px_runs]}")
    print(f"#   torch    run medians (ms): {[r['median_ms'] for r in th_runs]}")
    print(f"parallax: median {px_ms:8.1f} ms  {gflop / px_ms * 1e3:7.1f} GFLOP/s")
    print(f"torch:    median {th_ms:8.1f} ms  {gflop / th_ms * 1e3:7.1f} GFLOP/s")
    print(f"ratio parallax/torch (time) = {px_ms / th_ms:.3f}  (target <= 1.0)")
    print_phases(px_runs, th_runs, "median over runs of per-run medians")
    px_cpu, th_cpu = med(px_runs, "cpu_median_ms"), med(th_runs, "cpu_median_ms")
    print(f"# process CPU time per step: parallax {px_cpu:.1f} ms, torch {th_cpu:.1f} ms, ratio {px_cpu / th_cpu:.3f}")
    print(f"SUMMARY translator_step config={config} B={B} S={S} T={T} threads={a.threads} px_ms={px_ms:.2f} "
          f"torch_ms={th_ms:.2f} px_gflops={gflop / px_ms * 1e3:.1f} torch_gflops={gflop / th_ms * 1e3:.1f} "
          f"ratio_px_over_torch={px_ms / th_ms:.3f}")
    if a.profile:
        print_torch_profile(th_cmd, env, "CPU")
    sys.stdout.flush()


def gib(n):
    return n / 2**30


def gpu_names():
    """The GPUs nvidia-smi lists ("GPU 0: NVIDIA H200 (UUID: ...)"), none without a driver or GPU."""
    try:
        p = subprocess.run(["nvidia-smi", "-L"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in p.stdout.splitlines() if re.match(r"GPU [0-9]+:", line)]


def compare_gpu(config, a, bench, env):
    """One config on GPU 0: throughput, peak memory, MFU and the phase split of both sides."""
    common = flags(CONFIGS[config], MODEL_KEYS) + flags(a, RUN_KEYS) + ["--device", "cuda", "--precision",
                                                                         a.precision]
    px_cmd = [bench] + common
    th_cmd = [a.python, os.path.join(HERE, "step_torch.py")] + common
    px_runs, th_runs = run_interleaved(px_cmd, th_cmd, a.runs, env)
    px0, th0 = px_runs[0], th_runs[0]
    check_same(px0, th0, config)
    c = CONFIGS[config]
    B, S, T, gflop = px0["B"], px0["S"], px0["T"], px0["gflop"]
    tokens = px0["tgt_tokens"]
    gpu = re.sub(r"^GPU [0-9]+: | \(UUID: .*\)$", "", gpu_names()[0])
    print(f"## {config} on {gpu}: d={c['d_model']} layers={c['encoder_layers']}+{c['decoder_layers']} "
          f"heads={c['heads']} ffn={c['d_ff']} {'pre' if c['pre_norm'] else 'post'}-norm vocab={c['vocab']} "
          f"shared+tied; {px0['params'] / 1e6:.2f} M params; {a.precision}")
    print(f"# batch B={B} S={S} T={T} (padded), {px0['src_tokens']} + {tokens} real tokens "
          f"({100.0 * (1 - (px0['src_tokens'] + tokens) / (B * (S + T))):.0f}% padding), dropout={a.dropout}; "
          f"{a.runs} runs x {a.reps} steps (after {a.warmup} warm-up), interleaved; torch {th0['torch']}")
    print(f"# first loss: parallax {px0['first_loss']:.3f}, torch {th0['first_loss']:.3f}; model work {gflop:.1f} "
          f"GFLOP per step; MFU against {a.peak_tflops:.0f} TFLOP/s bf16 dense")
    print(f"#   parallax run medians (ms): {[r['median_ms'] for r in px_runs]}")
    print(f"#   torch    run medians (ms): {[r['median_ms'] for r in th_runs]}")
    rows = []
    for name, runs in (("parallax", px_runs), ("torch", th_runs)):
        ms = med(runs, "median_ms")
        peak = max(r["peak_mem_bytes"] for r in runs)
        mfu = gflop / (ms * 1e-3) / (a.peak_tflops * 1e3)
        rows.append((name, ms, tokens / (ms * 1e-3), peak, mfu))
        print(f"{name + ':':<9} median {ms:8.1f} ms  {tokens / (ms * 1e-3):9.0f} tgt tok/s  "
              f"{gflop / ms:6.1f} TFLOP/s  MFU {100 * mfu:5.1f}%  peak mem {gib(peak):6.2f} GiB")
    (_, px_ms, px_tps, px_peak, px_mfu), (_, th_ms, th_tps, th_peak, th_mfu) = rows
    print(f"ratio parallax/torch: time {px_ms / th_ms:.3f} (target <= 1.0), throughput {px_tps / th_tps:.3f}, "
          f"peak memory {px_peak / th_peak:.3f}")
    print_phases(px_runs, th_runs, "steps synchronised between phases")
    print(f"# host CPU time per step: parallax {med(px_runs, 'cpu_median_ms'):.1f} ms, "
          f"torch {med(th_runs, 'cpu_median_ms'):.1f} ms")
    print(f"SUMMARY translator_step_gpu config={config} precision={a.precision} B={B} S={S} T={T} "
          f"tgt_tokens={tokens} px_ms={px_ms:.2f} torch_ms={th_ms:.2f} px_tok_s={px_tps:.0f} "
          f"torch_tok_s={th_tps:.0f} px_mfu={px_mfu:.4f} torch_mfu={th_mfu:.4f} px_peak_gib={gib(px_peak):.3f} "
          f"torch_peak_gib={gib(th_peak):.3f} ratio_px_over_torch={px_ms / th_ms:.3f}")
    if a.profile:
        print_torch_profile(th_cmd, env, "CUDA")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.environ.get("PARALLAX_BUILD_DIR", os.path.join(HERE, "..", "..", "build")))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cuda: on GPU 0 against the machine's PyTorch (run defaults: step_args.GPU_RUN_DEFAULTS)")
    ap.add_argument("--precision", choices=("f32", "bf16"), help="default: f32 on the CPU, bf16 on a GPU")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="dense bf16 peak for MFU (H100 SXM and H200: 989)")
    ap.add_argument("--python", help="interpreter with torch for the peer (default: /usr/bin/python3 on the CPU, "
                                     "python3 on a GPU)")
    ap.add_argument("--runs", type=int, help="processes per side and config (interleaved; default 5, GPU 1)")
    ap.add_argument("--configs", help=f"comma-separated, of {','.join(CONFIGS)} (default tiny,base; GPU base32k)")
    ap.add_argument("--omp-wait-policy", choices=("passive", "active"),
                    help="OMP_WAIT_POLICY for both sides (default: the environment's)")
    ap.add_argument("--no-gemm-ref", action="store_true", help="skip the bench_gemm reference rate")
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's per-op table")
    add_run_args(ap)
    if ap.parse_known_args()[0].device == "cuda":
        ap.set_defaults(**GPU_RUN_DEFAULTS)
    a = ap.parse_args()
    gpu = a.device == "cuda"
    a.precision = a.precision or ("bf16" if gpu else "f32")
    a.python = a.python or ("python3" if gpu else "/usr/bin/python3")
    a.runs = a.runs or (1 if gpu else 5)
    a.configs = a.configs or ("base32k" if gpu else "tiny,base")
    if gpu and not gpu_names():
        print("step_vs_torch: --device cuda: no GPU here (nvidia-smi lists none); nothing measured")
        return
    if not gpu and a.precision != "f32":
        sys.exit("step_vs_torch: --precision bf16 needs --device cuda")
    configs = [c for c in a.configs.split(",") if c]
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"--configs: unknown config {c!r} (known: {', '.join(CONFIGS)})")

    bench = os.path.join(a.build_dir, "bench", "bench_translator_step")
    if not os.access(bench, os.X_OK):
        sys.exit(f"{bench} not found: build it with cmake --build {a.build_dir} --target bench_translator_step")
    env = dict(os.environ)
    for k in ("PARALLAX_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(a.threads)
    if a.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = a.omp_wait_policy
    for c in configs:
        (compare_gpu if gpu else compare)(c, a, bench, env)


if __name__ == "__main__":
    main()
