#!/usr/bin/python3
# bench/translator/step_torch.py: the PyTorch peer of bench_translator_step (step.cpp), on the CPU or a GPU: one
# translator training step (forward, loss, backward, AdamW) on the same fixed batch; prints one JSON line, same fields.
"""One training step of tests/oracle/torch_translator.py's TorchTranslator on the CPU.

Same model options, batch (SplitMix64 from --seed, drawn in step.cpp's order), loss (label-smoothed
cross-entropy summed over non-pad targets, torch_translator.loss, divided by their count), optimizer (torch.optim.AdamW, betas
0.9/0.98, eps 1e-9, no weight decay, torch's default CPU implementation) and thread count
(torch.set_num_threads). --profile prints torch.profiler's per-op table of a few steps to stderr.

--device cuda (torch >= 2.0 with a GPU): the model on GPU 0, eager; nn.MultiheadAttention computes attention with
torch.nn.functional.scaled_dot_product_attention (need_weights=False); --precision bf16 runs forward and loss
under torch.autocast(bfloat16) with f32 weights, gradients and AdamW state (fused=True). As in step.cpp, the step
time is the median of steps synchronised only at their end, the phase split comes from further steps with a
torch.cuda.synchronize() between phases, and peak_mem_bytes is torch.cuda.max_memory_allocated().
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

from step_args import add_model_args, add_run_args

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "oracle"))
from torch_translator import TorchTranslator, loss as translation_loss  # noqa: E402  (needs the path above)

PAD, BOS, EOS, FIRST_WORD = 0, 2, 3, 4  # data/tokenizer.h's special ids
MASK64 = (1 << 64) - 1


class SplitMix64:
    """step.cpp's SplitMix64, bit for bit."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self, lo, hi):
        return lo + self.next() % (hi - lo + 1)


def make_batch(B, min_len, max_len, vocab, seed):
    """step.cpp's make_batch: (src, tgt_in, tgt_out) i64 tensors, real token counts and the batch hash."""
    rng = SplitMix64(seed)
    lens = [(rng.uniform(min_len, max_len), rng.uniform(min_len, max_len)) for _ in range(B)]
    S, T = max(ls for ls, _ in lens), max(lt for _, lt in lens)
    src = [[PAD] * S for _ in range(B)]
    tin = [[PAD] * T for _ in range(B)]
    tout = [[PAD] * T for _ in range(B)]
    for b, (ls, lt) in enumerate(lens):
        for i in range(ls - 1):
            src[b][i] = rng.uniform(FIRST_WORD, vocab - 1)
        src[b][ls - 1] = EOS
        tin[b][0] = BOS
        for i in range(lt - 1):
            w = rng.uniform(FIRST_WORD, vocab - 1)
            tin[b][i + 1] = w
            tout[b][i] = w
        tout[b][lt - 1] = EOS
    h = 0
    for rows in (src, tin, tout):
        for row in rows:
            for v in row:
                h = (h * 1000003 + v) & MASK64
    ids = [torch.tensor(rows, dtype=torch.int64) for rows in (src, tin, tout)]
    return (*ids, sum(ls for ls, _ in lens), sum(lt for _, lt in lens), f"{h:016x}")


def step_gflop(a, B, S, T):
    """step.cpp's step_gflop: 6 x weights x padded positions + 12 B d (Le S^2 + Ld (T^2 + T S)), in GFLOP."""
    d, f, V, Le, Ld = a.d_model, a.d_ff, a.vocab, a.encoder_layers, a.decoder_layers
    Ns, Nt = B * S, B * T
    weights = (Ns * Le * (4 * d * d + 2 * d * f) + Nt * Ld * (6 * d * d + 2 * d * f) + Ns * Ld * 2 * d * d
               + Nt * d * V)
    attention = 12.0 * B * d * (Le * S * S + Ld * (T * T + T * S))
    return (6.0 * weights + attention) * 1e-9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    add_model_args(ap)
    ap.add_argument("--profile", action="store_true", help="per-op table of 3 profiled steps on stderr")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--precision", default="f32", choices=("f32", "bf16"))
    a = ap.parse_args()
    on_gpu = a.device == "cuda"
    if on_gpu and not torch.cuda.is_available():
        sys.exit(f"step_torch.py: --device cuda: torch {torch.__version__} sees no GPU")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device("cuda", 0) if on_gpu else torch.device("cpu")
    if on_gpu:  # as Parallax: cuBLAS without TF32 for f32 products
        torch.backends.cuda.matmul.allow_tf32 = False

    model = TorchTranslator(src_vocab=a.vocab, tgt_vocab=a.vocab, d_model=a.d_model, num_heads=a.heads,
                            encoder_layers=a.encoder_layers, decoder_layers=a.decoder_layers, d_ff=a.d_ff,
                            dropout=a.dropout, attention_dropout=a.attention_dropout, activation=a.activation,
                            pre_norm=bool(a.pre_norm), share_embeddings=bool(a.share_embeddings),
                            tie_output=bool(a.tie_output), max_positions=1024, pad_id=PAD)
    model.train()
    model.to(device)
    extra = {"fused": True} if on_gpu else {}
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0, **extra)
    src, tgt_in, tgt_out, src_tokens, tgt_tokens, batch_hash = make_batch(a.B, a.min_len, a.max_len, a.vocab, a.seed)
    src, tgt_in, tgt_out = src.to(device), tgt_in.to(device), tgt_out.to(device)
    B, S, T = src.shape[0], src.shape[1], tgt_in.shape[1]
    gflop = step_gflop(a, B, S, T)
    autocast = a.precision == "bf16"
    sync_phases = False

    def phase_end():
        if on_gpu and sync_phases:
            torch.cuda.synchronize()

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(src, tgt_in)
            loss = translation_loss(logits, tgt_out, PAD, a.label_smoothing) / tgt_tokens
        phase_end()
        t1 = time.perf_counter()
        loss.backward()
        phase_end()
        t2 = time.perf_counter()
        opt.step()
        value = loss.item()  # on a GPU: waits for the step's device work
        t3 = time.perf_counter()
        return value, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3

    first_loss = None
    for _ in range(a.warmup):
        loss, *_ = step()
        first_loss = loss if first_loss is None else first_loss
    total, fwd, bwd, upd, cpu = [], [], [], [], []
    if on_gpu:  # steps as training runs them give the total; steps synchronised between phases give the split
        for _ in range(a.reps):
            c0 = time.process_time()
            loss, f, b, u = step()
            cpu.append((time.process_time() - c0) * 1e3)
            first_loss = loss if first_loss is None else first_loss
            total.append(f + b + u)
        sync_phases = True
        for _ in range(a.reps):
            _, f, b, u = step()
            fwd.append(f)
            bwd.append(b)
            upd.append(u)
    for _ in range(0 if on_gpu else a.reps):
        c0 = time.process_time()
        loss, f, b, u = step()
        cpu.append((time.process_time() - c0) * 1e3)
        first_loss = loss if first_loss is None else first_loss
        total.append(f + b + u)
        fwd.append(f)
        bwd.append(b)
        upd.append(u)

    if a.profile:
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
        sync_phases = False
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(3):
                step()
        key = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=30), file=sys.stderr)

    med = statistics.median(total)
    print(json.dumps({
        "impl": "torch", "torch": torch.__version__, "threads": a.threads, "B": B, "S": S, "T": T,
        "src_tokens": src_tokens, "tgt_tokens": tgt_tokens, "batch_hash": batch_hash,
        "params": sum(p.numel() for p in model.parameters()), "gflop": round(gflop, 4),
        "first_loss": round(first_loss, 4), "median_ms": round(med, 3), "min_ms": round(min(total), 3),
        "cpu_median_ms": round(statistics.median(cpu), 3), "fwd_ms": round(statistics.median(fwd), 3),
        "bwd_ms": round(statistics.median(bwd), 3), "opt_ms": round(statistics.median(upd), 3),
        "gflops": round(gflop / (med * 1e-3), 2), "device": a.device, "precision": a.precision,
        "tokens_per_s": round(tgt_tokens / (med * 1e-3), 1),
        "peak_mem_bytes": torch.cuda.max_memory_allocated() if on_gpu else 0,
        "reserved_mem_bytes": torch.cuda.max_memory_reserved() if on_gpu else 0}))


if __name__ == "__main__":
    main()
