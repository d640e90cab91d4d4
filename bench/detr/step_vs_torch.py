#!/usr/bin/python3
# bench/detr/step_vs_torch.py: runs bench_detr_step (Parallax) and step_torch.py (PyTorch) on the same DETR config,
# batch and threads, several processes each, interleaved; prints medians, the phase split, shares and ratios.
"""Compare one DETR training step (forward, Hungarian matching, losses on every decoder layer, backward, AdamW with
the backbone's lr group) of Parallax and PyTorch on the CPU.

Configs (--configs):
  tiny  configs/detr_fashion_tiny.pbtxt: quarter-width ResNet-18 of 3 stages with trainable batch norms, d 128,
        2+2 layers, 20 queries, 10 classes; 16 images of 128x128
  r50   bench/detr/detr_r50.pbtxt, the reference's defaults: ResNet-50 with frozen batch norms (conv1, bn1, layer1
        frozen), d 256, 6+6 layers, 8 heads, FFN 2048, 100 queries, 91 classes; 2 images of 800x1066 and 800x1200,
        padded to 800x1200
The batch (step_batch.py: random images, padding masks, 1..8 random boxes per image from --seed) is written to a
PXT file for bench_detr_step; step_torch.py draws the same one and both print its digest, which must agree, as
must the trainable parameter counts and the FLOP counts (Parallax walks the ResNet's layout; PyTorch hooks the
convolutions it runs). Each run is one process that builds the model, warms up and times --reps steps; the
driver alternates the two sides (which goes first alternates too) and takes the median over runs.
ratio = parallax_ms / torch_ms: below 1.0 Parallax is faster (target <= 1.0). It builds nothing.
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.append(os.path.join(HERE, "..", "translator"))
from ops_vs_torch import load, run_interleaved  # noqa: E402  (same runner and load reading)
from step_batch import make_batch, parse_sizes, write_batch  # noqa: E402


def _translator_driver():
    """bench/translator/step_vs_torch.py (bench_gemm's reference rate, medians over runs) under its own name."""
    spec = importlib.util.spec_from_file_location("translator_step_vs_torch",
                                                  os.path.join(HERE, "..", "translator", "step_vs_torch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_TRANSLATOR = _translator_driver()
gemm_reference, med = _TRANSLATOR.gemm_reference, _TRANSLATOR.med

REPO = os.path.join(HERE, "..", "..")
CONFIGS = {
    "tiny": {"config": os.path.join(REPO, "configs", "detr_fashion_tiny.pbtxt"), "num_classes": 10,
             "sizes": "16@128x128", "runs": 5, "reps": 5, "warmup": 2, "backbone_reps": 5},
    "r50": {"config": os.path.join(HERE, "detr_r50.pbtxt"), "num_classes": 91, "sizes": "800x1066,800x1200",
            "runs": 3, "reps": 2, "warmup": 1, "backbone_reps": 1},
}
PHASES = ("fwd_ms", "matcher_ms", "loss_ms", "bwd_ms", "opt_ms")
SAME = ("B", "H", "W", "feat_h", "feat_w", "num_boxes", "labels_sum", "trainable_params",
        "backbone_trainable_params", "decoder_outputs")


def check_same(px, th, name):
    """Both sides must have run the same batch, freeze and architecture, else the ratio means nothing."""
    for key in SAME:
        if px[key] != th[key]:
            sys.exit(f"{name}: parallax and torch differ in {key}: {px[key]} vs {th[key]}")
    if abs(px["images_sum"] - th["images_sum"]) > 1e-6 * max(1.0, abs(th["images_sum"])) + 1e-2:
        sys.exit(f"{name}: the batches differ: images sum {px['images_sum']} vs {th['images_sum']}")
    for key in ("backbone_gflop", "transformer_gflop"):
        if abs(px[key] - th[key]) > 1e-3 * th[key]:
            sys.exit(f"{name}: FLOP counts differ in {key}: {px[key]} vs {th[key]}")


def pct(part, whole):
    return 100.0 * part / whole


def ratio(a, b):
    """a / b to two places; '-' unless both are positive (step - backbone, timed apart, can come out negative when
    the load changed between the two)."""
    return f"{a / b:.2f}" if a > 0 and b > 0 else "-"


def compare(name, preset, a, bench, env, batch_dir):
    runs, reps, warmup, backbone_reps = (getattr(a, k) if getattr(a, k) is not None else preset[k]
                                         for k in ("runs", "reps", "warmup", "backbone_reps"))
    sizes = parse_sizes(preset["sizes"])
    batch = make_batch(sizes, preset["num_classes"], a.seed)
    batch_path = os.path.join(batch_dir, f"{name}.pxt")
    write_batch(batch_path, batch)
    common = ["--config", preset["config"], "--num-classes", str(preset["num_classes"]), "--threads", str(a.threads),
              "--warmup", str(warmup), "--reps", str(reps), "--backbone-reps", str(backbone_reps)]
    px_cmd = [bench] + common + ["--batch", batch_path]
    th_cmd = [a.python, os.path.join(HERE, "step_torch.py")] + common + ["--sizes", preset["sizes"],
                                                                          "--seed", str(a.seed)]
    load_before = load()
    px_runs, th_runs = run_interleaved(px_cmd, th_cmd, runs, env)
    px0, th0 = px_runs[0], th_runs[0]
    check_same(px0, th0, name)
    px_ms, th_ms, gflop = med(px_runs, "median_ms"), med(th_runs, "median_ms"), px0["gflop"]

    print(f"## {name}: {os.path.relpath(preset['config'], REPO)}, {preset['num_classes']} classes; "
          f"{px0['trainable_params'] / 1e6:.2f} M trainable parameters ({px0['backbone_trainable_params'] / 1e6:.2f} M "
          f"in the backbone group); aux losses on {px0['decoder_outputs']} decoder outputs")
    print(f"# batch {px0['B']} images {preset['sizes']} padded to {px0['H']}x{px0['W']} (feature map "
          f"{px0['feat_h']}x{px0['feat_w']}), {px0['num_boxes']} target boxes; threads={a.threads}, {runs} runs x "
          f"{reps} steps (after {warmup} warm-up), interleaved; torch {th0['torch']}, "
          f"OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"# first loss: parallax {px0['first_loss']:.3f}, torch {th0['first_loss']:.3f} (same init distributions "
          f"in most layers, different draws)")
    m, k, n = (int(x) for x in px0["ref_gemm"].split("x"))
    gemm = None if a.no_gemm_ref else gemm_reference(a.build_dir, a.threads, m, k, n, env)
    ref = f"; OpenBLAS on a layer3 3x3 conv as GEMM {px0['ref_gemm']} (fwd+bwd): {gemm:.0f} GFLOP/s" if gemm else ""
    print(f"# model work {gflop:.2f} GFLOP per step: backbone convolutions {px0['backbone_gflop']:.2f} "
          f"({pct(px0['backbone_gflop'], gflop):.0f}%), input projection + transformer + heads "
          f"{px0['transformer_gflop']:.2f}; measured FMA peak {px0['peak_gflops']:.0f} GFLOP/s{ref}")
    print(f"# load before {load_before}, after {load()}")
    print(f"#   parallax run medians (ms): {[r['median_ms'] for r in px_runs]}")
    print(f"#   torch    run medians (ms): {[r['median_ms'] for r in th_runs]}")
    print(f"parallax: median {px_ms:9.1f} ms  {gflop / px_ms * 1e3:7.1f} GFLOP/s")
    print(f"torch:    median {th_ms:9.1f} ms  {gflop / th_ms * 1e3:7.1f} GFLOP/s")
    print(f"ratio parallax/torch (time) = {px_ms / th_ms:.3f}  (target <= 1.0)")
    pairs = [p["median_ms"] / t["median_ms"] for p, t in zip(px_runs, th_runs)]
    print(f"# per run pair (adjacent processes): ratios {[round(r, 3) for r in pairs]}, median "
          f"{statistics.median(pairs):.3f}")
    # Phases, then the backbone's forward + backward timed alone and the rest of the step (step - backbone).
    px_cpu, th_cpu = med(px_runs, "cpu_median_ms"), med(th_runs, "cpu_median_ms")
    rows = [(p[:-3], med(px_runs, p), med(th_runs, p), med(px_runs, p[:-3] + "_cpu_ms"),
             med(th_runs, p[:-3] + "_cpu_ms")) for p in PHASES]
    px_bb, th_bb = med(px_runs, "backbone_ms"), med(th_runs, "backbone_ms")
    px_bb_cpu, th_bb_cpu = med(px_runs, "backbone_cpu_ms"), med(th_runs, "backbone_cpu_ms")
    rows += [("backbone", px_bb, th_bb, px_bb_cpu, th_bb_cpu),
             ("rest", px_ms - px_bb, th_ms - th_bb, px_cpu - px_bb_cpu, th_cpu - th_bb_cpu)]
    print(f"# {'phase':<9} {'px_ms':>9} {'px_%':>6} {'torch_ms':>9} {'torch_%':>7} {'px/torch':>8} | {'px_cpu':>9} "
          f"{'torch_cpu':>9} {'cpu_ratio':>9}")
    for label, p, t, pc, tc in rows:
        print(f"# {label:<9} {p:9.1f} {pct(p, px_ms):5.1f}% {t:9.1f} {pct(t, th_ms):6.1f}% {ratio(p, t):>8} | "
              f"{pc:9.1f} {tc:9.1f} {ratio(pc, tc):>9}")
    print(f"# {'step':<9} {px_ms:9.1f} {100:5.1f}% {th_ms:9.1f} {100:6.1f}% {px_ms / th_ms:8.2f} | {px_cpu:9.1f} "
          f"{th_cpu:9.1f} {px_cpu / th_cpu:9.2f}")
    print("#   (medians over runs of per-run medians; % of the side's median step; cpu: process CPU ms, all threads:")
    print("#   the work done when --threads 1, plus spin-waiting with more; backbone: its forward + backward timed")
    print("#   alone after the steps, convolutions with their norms, ReLUs, pooling; rest: step - backbone)")
    p, t = med(px_runs, "matcher_ms"), med(th_runs, "matcher_ms")
    call = med(px_runs, "match_call_ms")
    print(f"# matching, {px0['decoder_outputs']} layers x {px0['B']} images: parallax {p:.2f} ms = "
          f"{pct(p, px_ms):.2f}% of its step ({call:.2f} ms of it in HungarianMatcher::match, the rest the f64 "
          f"softmax and host copies), "
          f"torch {t:.2f} ms = {pct(t, th_ms):.2f}% (torch_detr.hungarian_match: cost matrices in torch, scipy)")
    print(f"SUMMARY detr_step config={name} B={px0['B']} H={px0['H']} W={px0['W']} threads={a.threads} "
          f"px_ms={px_ms:.1f} torch_ms={th_ms:.1f} px_gflops={gflop / px_ms * 1e3:.1f} "
          f"torch_gflops={gflop / th_ms * 1e3:.1f} px_matcher_pct={pct(med(px_runs, 'matcher_ms'), px_ms):.2f} "
          f"torch_matcher_pct={pct(med(th_runs, 'matcher_ms'), th_ms):.2f} px_backbone_pct={pct(px_bb, px_ms):.1f} "
          f"torch_backbone_pct={pct(th_bb, th_ms):.1f} ratio_px_over_torch={px_ms / th_ms:.3f}")
    sys.stdout.flush()
    if a.profile:
        prof = subprocess.run(th_cmd + ["--profile", "--reps", "1", "--backbone-reps", "0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        print(f"# torch.profiler, one step, ops by self CPU time:\n{prof.stderr}{prof.stdout}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.environ.get("PARALLAX_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with torch and scipy for the peer")
    ap.add_argument("--configs", default="tiny,r50", help=f"comma-separated, of {','.join(CONFIGS)}")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PARALLAX_NUM_THREADS", "2")))
    ap.add_argument("--runs", type=int, help="processes per side and config (default: tiny 5, r50 3)")
    ap.add_argument("--reps", type=int, help="timed steps per process (default: tiny 5, r50 2)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default: tiny 2, r50 1; at least 1 in torch)")
    ap.add_argument("--backbone-reps", type=int, help="timed backbone fwd+bwd rounds (default: tiny 5, r50 1)")
    ap.add_argument("--seed", type=int, default=1, help="the batch's")
    ap.add_argument("--omp-wait-policy", choices=("passive", "active"),
                    help="OMP_WAIT_POLICY for both sides (default: the environment's)")
    ap.add_argument("--no-gemm-ref", action="store_true", help="skip the bench_gemm reference rate")
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's per-op table and conv_ms")
    a = ap.parse_args()
    names = [c for c in a.configs.split(",") if c]
    for c in names:
        if c not in CONFIGS:
            sys.exit(f"--configs: unknown config {c!r} (known: {', '.join(CONFIGS)})")
    bench = os.path.join(a.build_dir, "bench", "bench_detr_step")
    if not os.access(bench, os.X_OK):
        sys.exit(f"{bench} not found: build it with cmake --build {a.build_dir} --target bench_detr_step")
    env = dict(os.environ)
    for k in ("PARALLAX_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(a.threads)
    if a.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = a.omp_wait_policy
    with tempfile.TemporaryDirectory(prefix="detr_step_") as batch_dir:
        for c in names:
            compare(c, CONFIGS[c], a, bench, env, batch_dir)


if __name__ == "__main__":
    main()
