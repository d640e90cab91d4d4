#!/usr/bin/python3
# bench/parallel/layer_times_torch.py: measures forward and backward time of the base translator's layer types at the
# shapes of one tensor-parallel shard (tp = 1, 2, 4, 8) with PyTorch, and writes the JSON scaling_model.py reads.
"""Per-layer compute times of the base translator (configs/translator_base.pbtxt) for the scaling model.

For each dtype (f32; bf16 autocast on CUDA), sentence length T and tokens per batch (B = tokens / T sentences,
T source and T target tokens each), and tp in --tp, it times with CUDA events (or perf_counter on the CPU), after
warm-up, the median of --reps repetitions of the items below. All variants of one dtype are timed round-robin
(one forward and one backward of each per round), so a load burst on a shared machine or clock drift spreads
over all of them instead of skewing the tp = N / tp = 1 and small / large batch ratios the model relies on.

* encoder / decoder: one post-norm (or pre-norm, as the config says) layer of one tp rank: heads / tp heads of
  d / heads, the QKV (or Q, KV) projection d -> 3d / tp, the output projection d / tp -> d, the FFN
  d -> d_ff / tp -> d, LayerNorms, residuals and dropout on the full (B, T, d) as Megatron replicates them. The
  decoder's self-attention is causal and its cross-attention reads a (B, T, d) memory. tp = 1 is the whole layer;
  torch.nn.TransformerEncoderLayer / DecoderLayer are timed beside it (kinds encoder_nn / decoder_nn) as a check.
* embed: the vocab-parallel lookup of the source and target ids in a (V / tp, d) table (ids outside the shard
  masked to zero when tp > 1), times sqrt(d), plus sinusoidal positions, dropout.
* logits_ce: (B T, d) @ (V / tp, d)^T and label-smoothed cross-entropy over those V / tp columns.
* the AdamW step over one rank's parameters (all 6 + 6 layers and the table) per tp and vocabulary.

Forward is timed on its own (autograd recording, as in training); backward is timed on its own after an
untimed forward. No communication is simulated: scaling_model.py adds it. Nothing is compiled or fused beyond what
eager PyTorch does (SDPA attention where this torch has it).

    GPU:  python3 bench/parallel/layer_times_torch.py --device cuda --out layer_times_h200.json
    CPU:  /usr/bin/python3 bench/parallel/layer_times_torch.py --device cpu --out bench/parallel/layer_times_cpu.json
"""
import argparse
import datetime
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench", "translator"))
import pbtxt_config  # noqa: E402  (needs the path above)
from scaling_model import layer_numel, rank_parameters  # noqa: E402  (same folder; the shapes' one source)

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
DECODER_TAKES_IS_CAUSAL = "tgt_is_causal" in inspect.signature(nn.TransformerDecoderLayer.forward).parameters


def attention(q, k, v, causal, dropout_p):
    """q (B, h, T, dh), k, v (B, h, S, dh) -> (B, h, T, dh); SDPA where this torch has it."""
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, T, S)
    if causal:
        T, S = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(T, S, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    p = F.dropout(torch.softmax(scores, dim=-1), dropout_p)
    return p @ v


class ShardAttention(nn.Module):
    """Heads [r h / tp, (r + 1) h / tp) of multi-head attention: column-parallel in-projection, row-parallel out."""

    def __init__(self, d, local_heads, head_dim, cross, dropout_p):
        super().__init__()
        width = local_heads * head_dim
        self.local_heads, self.head_dim, self.cross, self.dropout_p = local_heads, head_dim, cross, dropout_p
        if cross:
            self.q, self.kv = nn.Linear(d, width), nn.Linear(d, 2 * width)
        else:
            self.qkv = nn.Linear(d, 3 * width)
        self.out = nn.Linear(width, d)

    def forward(self, x, memory=None, causal=False):
        """x (B, T, d), memory (B, S, d) for cross-attention -> (B, T, d), the partial sum of this rank's heads."""
        B, T, _ = x.shape
        if self.cross:
            q, (k, v) = self.q(x), self.kv(memory).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)

        def heads(t):  # (B, S, h dh) -> (B, h, S, dh)
            return t.reshape(B, -1, self.local_heads, self.head_dim).transpose(1, 2)

        p = self.dropout_p if self.training else 0.0
        o = attention(heads(q), heads(k), heads(v), causal, p)  # (B, h, T, dh)
        return self.out(o.transpose(1, 2).reshape(B, T, -1))


class ShardLayer(nn.Module):
    """One tp rank's encoder (self-attention, FFN) or decoder (causal self-, cross-attention, FFN) layer."""

    def __init__(self, dims, tp, decoder):
        super().__init__()
        d, h, ff = dims["d_model"], dims["num_heads"], dims["d_ff"]
        self.decoder, self.pre_norm = decoder, dims["pre_norm"]
        self.self_attn = ShardAttention(d, h // tp, d // h, False, dims["attention_dropout"])
        self.norm1 = nn.LayerNorm(d)
        if decoder:
            self.cross_attn = ShardAttention(d, h // tp, d // h, True, dims["attention_dropout"])
            self.norm2 = nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, ff // tp), nn.Linear(ff // tp, d)
        setattr(self, "norm3" if decoder else "norm2", nn.LayerNorm(d))
        self.activation = F.relu if dims["activation"] == "relu" else F.gelu
        self.dropout = nn.Dropout(dims["dropout"])

    def sublayers(self):
        """[(norm, block)] in order; a block maps the (normed) x to its (B, T, d) output."""
        out = [(self.norm1, lambda x, m: self.self_attn(x, causal=self.decoder))]
        if self.decoder:
            out.append((self.norm2, lambda x, m: self.cross_attn(x, memory=m)))
        ff = lambda x, m: self.ff2(self.dropout(self.activation(self.ff1(x))))  # noqa: E731
        out.append((self.norm3 if self.decoder else self.norm2, ff))
        return out

    def forward(self, x, memory=None):
        """x (B, T, d), memory (B, S, d) (decoder) -> (B, T, d)."""
        for norm, block in self.sublayers():
            if self.pre_norm:
                x = x + self.dropout(block(norm(x), memory))
            else:
                x = norm(x + self.dropout(block(x, memory)))
        return x


class ShardEmbedding(nn.Module):
    """Rows [r V / tp, (r + 1) V / tp) of the shared table; lookups of the source and target ids."""

    def __init__(self, dims, tp, vocab, max_len):
        super().__init__()
        self.tp, self.rows, self.scale = tp, vocab // tp, math.sqrt(dims["d_model"])
        self.embed = nn.Embedding(self.rows, dims["d_model"])
        pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # sinusoids as tests/oracle builds them
        angle = pos / torch.pow(10000.0, torch.arange(0, dims["d_model"], 2, dtype=torch.float32) / dims["d_model"])
        self.register_buffer("pe", torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1), persistent=False)
        self.dropout = nn.Dropout(dims["dropout"])

    def lookup(self, ids):
        """ids (B, T) in [0, V) -> (B, T, d), zero rows for ids of other shards (summed by the all-reduce)."""
        if self.tp == 1:
            e = self.embed(ids)
        else:
            start = 0  # rank 0's shard; every rank does the same work
            inside = (ids >= start) & (ids < start + self.rows)
            e = self.embed((ids - start) * inside) * inside.unsqueeze(-1)
        return self.dropout(e * self.scale + self.pe[: ids.shape[1]])

    def forward(self, src, tgt):
        return self.lookup(src), self.lookup(tgt)


class Timer:
    """Times calls on `device`: CUDA events read after one synchronize at the end, or perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn):
        """Runs fn(); returns a handle whose milliseconds `resolve` gives."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            return start, end
        t0 = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - t0)

    def resolve(self, handles):
        if self.cuda:
            torch.cuda.synchronize()
            return [s.elapsed_time(e) for s, e in handles]
        return handles


def matmul_flops(kind, dims, tp, B, T, vocab):
    """Forward GEMM + attention-score FLOPs of one shard (for the printed TFLOP/s only)."""
    d, ff, N = dims["d_model"], dims["d_ff"], B * T
    attn_self = 2 * N * d * (3 * d // tp) + 2 * 2 * N * T * (d // tp) + 2 * N * (d // tp) * d
    attn_cross = 2 * N * d * (d // tp) + 2 * N * d * (2 * d // tp) + 2 * 2 * N * T * (d // tp) + 2 * N * (d // tp) * d
    ffn = 2 * 2 * N * d * (ff // tp)
    return {"encoder": attn_self + ffn, "encoder_nn": attn_self + ffn, "decoder": attn_self + attn_cross + ffn,
            "decoder_nn": attn_self + attn_cross + ffn, "embed": 0, "logits_ce": 2 * N * d * (vocab // tp)}[kind]


class Variant:
    """One layer type at one shard shape with its inputs: forward, and backward after an untimed forward."""

    def __init__(self, kind, dims, tp, dtype, B, T, vocab, device, check_vocab):
        self.kind, self.tp, self.dtype, self.B, self.T, self.vocab = kind, tp, dtype, B, T, vocab
        d, gen = dims["d_model"], torch.Generator(device=device).manual_seed(0)  # inputs drawn on the device
        self.autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
        self.label_smoothing = dims["label_smoothing"]

        def randn(*shape):
            return torch.randn(*shape, generator=gen, device=device)

        if kind in ("encoder", "decoder"):
            self.module = ShardLayer(dims, tp, kind == "decoder").to(device).train()
        elif kind in ("encoder_nn", "decoder_nn"):
            cls = nn.TransformerEncoderLayer if kind == "encoder_nn" else nn.TransformerDecoderLayer
            self.module = cls(d, dims["num_heads"], dims["d_ff"], dims["dropout"], dims["activation"],
                              batch_first=True, norm_first=dims["pre_norm"]).to(device).train()
            self.module.self_attn.dropout = dims["attention_dropout"]
            if kind == "decoder_nn":
                self.module.multihead_attn.dropout = dims["attention_dropout"]
        elif kind == "embed":
            self.module = ShardEmbedding(dims, tp, vocab, T).to(device).train()
        else:  # logits_ce
            self.module = nn.Linear(d, vocab // tp, bias=False).to(device)
        if kind != "logits_ce":  # the tied table is counted once, with embed
            expected = layer_numel(dims, tp, vocab or check_vocab)[kind.replace("_nn", "")]
            got = sum(p.numel() for p in self.module.parameters())
            if got != expected:
                raise RuntimeError(f"{kind} tp={tp}: {got} parameters, scaling_model.rank_parameters says {expected}")
        self.x = randn(B, T, d).requires_grad_()  # (B, T, d) layer input / decoder output
        self.memory = randn(B, T, d).requires_grad_()  # (B, S = T, d) encoder output
        self.causal_mask = torch.triu(torch.full((T, T), float("-inf"), device=device), 1)  # (T, T)
        self.ids = [torch.randint(0, vocab or 1, (B, T), generator=gen, device=device) for _ in range(2)]  # (B, T)
        self.target = torch.randint(0, max(1, (vocab or 1) // tp), (B * T,), generator=gen, device=device)  # (B T)
        self.grads = [randn(B, T, d), randn(B, T, d)]  # (B, T, d) upstream gradients
        self.outputs = []  # of the untimed forward that the timed backward consumes
        self.fwd_ms, self.bwd_ms = [], []

    def forward(self):
        m, x = self.module, self.x
        with self.autocast:
            if self.kind in ("encoder", "encoder_nn"):
                return [m(x)]
            if self.kind == "decoder":
                return [m(x, self.memory)]
            if self.kind == "decoder_nn":
                extra = {"tgt_is_causal": True} if DECODER_TAKES_IS_CAUSAL else {}
                return [m(x, self.memory, tgt_mask=self.causal_mask, **extra)]
            if self.kind == "embed":
                return list(m(*self.ids))
            logits = m(x.reshape(self.B * self.T, -1))  # (B T, V / tp)
            return [F.cross_entropy(logits.float(), self.target, label_smoothing=self.label_smoothing)]

    def clear_grads(self):
        for t in list(self.module.parameters()) + [self.x, self.memory]:
            t.grad = None

    def forward_untimed(self):
        self.clear_grads()
        self.outputs = self.forward()

    def backward(self):
        if self.kind == "logits_ce":
            self.outputs[0].backward()
        else:
            torch.autograd.backward(self.outputs, [g.to(o.dtype) for o, g in zip(self.outputs, self.grads)])
        self.outputs = []

    def row(self):
        return {"kind": self.kind, "tp": self.tp, "dtype": self.dtype, "seq_len": self.T, "batch": self.B,
                "tokens": self.B * self.T, "vocab": self.vocab if self.kind in ("embed", "logits_ce") else None,
                "fwd_ms": statistics.median(self.fwd_ms), "bwd_ms": statistics.median(self.bwd_ms),
                "fwd_ms_samples": [round(v, 4) for v in self.fwd_ms],
                "bwd_ms_samples": [round(v, 4) for v in self.bwd_ms]}


def measure_interleaved(variants, warmup, reps, timer, progress):
    """Warms every variant up, then times them round-robin, one forward and one backward (after an untimed
    forward) of each per round, so load or clock drift during the run spreads over all of them instead of
    biasing their ratios; progress(round) after each round."""
    for v in variants:
        for _ in range(warmup):
            v.clear_grads()
            v.forward()
            v.forward_untimed()
            v.backward()
    fwd, bwd = {id(v): [] for v in variants}, {id(v): [] for v in variants}
    for round_index in range(reps):
        for v in variants:
            v.clear_grads()
            fwd[id(v)].append(timer(v.forward))
            v.forward_untimed()
            bwd[id(v)].append(timer(v.backward))
        progress(round_index + 1)
    for v in variants:
        v.fwd_ms, v.bwd_ms = timer.resolve(fwd[id(v)]), timer.resolve(bwd[id(v)])


def measure_optimizers(dims, tps, vocab, warmup, reps, timer, device):
    """Median AdamW step (the config's betas and eps) over tensors shaped as one rank's parameters
    (scaling_model.rank_parameters), for every tp, timed round-robin."""
    optimizers = []
    for tp in tps:
        params = [torch.zeros(numel, device=device, requires_grad=True) for _, _, numel, _ in
                  rank_parameters(dims, tp, vocab)]
        for p in params:
            p.grad = torch.full_like(p, 1e-3)
        opt = torch.optim.AdamW(params, lr=7e-4, betas=(dims["beta1"], dims["beta2"]), eps=dims["eps"],
                                weight_decay=0.0)
        optimizers.append((tp, sum(p.numel() for p in params), opt))
    for _, _, opt in optimizers:
        for _ in range(warmup):
            opt.step()
    handles = {tp: [] for tp in tps}
    for _ in range(reps):
        for tp, _, opt in optimizers:
            handles[tp].append(timer(opt.step))
    out = []
    for tp, n_params, _ in optimizers:
        samples = timer.resolve(handles[tp])
        out.append({"tp": tp, "vocab": vocab, "n_params": n_params, "step_ms": statistics.median(samples),
                    "samples": [round(v, 4) for v in samples]})
    return out


def csv(kind):
    return lambda text: [kind(v) for v in text.split(",") if v]


def parse_args(argv):
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    ap.add_argument("--out", help="JSON file to write (default layer_times_<device>.json here)")
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "translator_base.pbtxt"))
    ap.add_argument("--tokens", type=csv(int), help="tokens per side per batch (B = tokens / T); default "
                    "cuda 1024,4096,25000, cpu 128,512")
    ap.add_argument("--seq-lens", type=csv(int), default=[64, 128], help="T, source and target")
    ap.add_argument("--dtypes", type=csv(str), help="f32 and/or bf16 (autocast); default cuda f32,bf16, cpu f32")
    ap.add_argument("--tp", type=csv(int), default=[1, 2, 4, 8])
    ap.add_argument("--vocab", type=csv(int), help="joint vocabularies; default cuda 8000,32000 (the project's "
                    "SentencePiece default; WMT-sized), cpu 8000")
    ap.add_argument("--warmup", type=int, help="untimed calls of each variant first; default cuda 3, cpu 2")
    ap.add_argument("--reps", type=int, default=10, help="timed calls; the median is kept")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PARALLAX_NUM_THREADS", "2")),
                    help="CPU threads (torch.set_num_threads)")
    a = ap.parse_args(argv)
    on_gpu = a.device == "cuda"
    if on_gpu and not cuda:
        ap.error("--device cuda: this torch sees no CUDA device")
    a.tokens = a.tokens or ([1024, 4096, 25000] if on_gpu else [128, 512])
    a.dtypes = a.dtypes or (["f32", "bf16"] if on_gpu else ["f32"])
    a.vocab = a.vocab or ([8000, 32000] if on_gpu else [8000])
    a.warmup = a.warmup if a.warmup is not None else (3 if on_gpu else 2)
    a.out = a.out or os.path.join(HERE, f"layer_times_{a.device}.json")
    for d in a.dtypes:
        if d not in ("f32", "bf16"):
            ap.error(f"--dtypes: {d!r} is neither f32 nor bf16")
    if a.reps < 1 or a.warmup < 0:
        ap.error("--reps must be >= 1 and --warmup >= 0")
    return a


def model_dims(config_path):
    proto = os.path.join(REPO, "configs", "parallax.proto")
    config = pbtxt_config.load_config(config_path, [], pbtxt_config.load_schema(proto))
    if pbtxt_config.model_kind(config) != "translator":
        raise SystemExit(f"{config_path}: a {pbtxt_config.model_kind(config)} config; the layers timed are the "
                         "translator's")
    m = config["model"]["translator"]
    dims = {k: m[k] for k in ("d_model", "num_heads", "d_ff", "encoder_layers", "decoder_layers", "pre_norm",
                              "dropout", "attention_dropout", "activation", "share_embeddings", "tie_output")}
    dims["label_smoothing"] = config["train"]["label_smoothing"]
    dims.update({k: config["optimizer"][k] for k in ("beta1", "beta2", "eps")})
    dims["config"] = os.path.relpath(config_path, REPO)
    if not (dims["share_embeddings"] and dims["tie_output"]):
        raise SystemExit(f"{config_path}: the model expects one shared, tied embedding table")
    return dims


def main(argv):
    a = parse_args(argv)
    device = torch.device(a.device)
    torch.manual_seed(0)
    if device.type == "cpu":
        torch.set_num_threads(a.threads)
    dims = model_dims(a.config)
    for tp in a.tp:
        for what, size in (("num_heads", dims["num_heads"]), ("d_ff", dims["d_ff"])) + tuple(
                ("vocab", v) for v in a.vocab):
            if size % tp:
                raise SystemExit(f"--tp {tp} does not divide {what} {size}")
    meta = {"device": a.device, "torch": torch.__version__, "python": platform.python_version(),
            "host": platform.node(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "warmup": a.warmup, "reps": a.reps, "sdpa": HAS_SDPA, "timer": "cuda events" if a.device == "cuda"
            else "perf_counter", "bf16": "torch.autocast (f32 weights)", "tokens": "B x T per side (source and "
            "target T each); tokens/s in the model count target tokens"}
    if device.type == "cuda":
        meta["device_name"] = torch.cuda.get_device_name(device)
        meta["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        meta["cuda"] = torch.version.cuda
    else:
        meta["device_name"] = f"{platform.processor() or platform.machine()} CPU, {a.threads} threads"
        meta["threads"] = a.threads
    print(f"layer times on {meta['device_name']} (torch {torch.__version__}, sdpa {HAS_SDPA}); "
          f"d {dims['d_model']}, heads {dims['num_heads']}, d_ff {dims['d_ff']}, tokens {a.tokens}, "
          f"T {a.seq_lens}, dtypes {a.dtypes}, tp {a.tp}, vocab {a.vocab}", flush=True)

    t_start, rows, optimizer = time.perf_counter(), [], []
    timer = Timer(device)
    for dtype in a.dtypes:
        variants = []
        for T in a.seq_lens:
            for tokens in a.tokens:
                B = max(1, round(tokens / T))
                jobs = [("encoder_nn", 1, None), ("decoder_nn", 1, None)]
                jobs += [(kind, tp, None) for kind in ("encoder", "decoder") for tp in a.tp]
                jobs += [(kind, tp, v) for v in a.vocab for kind in ("embed", "logits_ce") for tp in a.tp]
                variants += [Variant(kind, dims, tp, dtype, B, T, vocab, device, a.vocab[0])
                             for kind, tp, vocab in jobs]

        def progress(done, dtype=dtype, count=len(variants)):
            print(f"[{time.perf_counter() - t_start:6.1f}s] {dtype}: round {done}/{a.reps} of {count} layer "
                  f"variants timed", flush=True)

        measure_interleaved(variants, a.warmup, a.reps, timer, progress)
        for v in variants:
            row = v.row()
            rows.append(row)
            flops = 3 * matmul_flops(v.kind, dims, v.tp, v.B, v.T, v.vocab or 0)
            rate = f"{flops / (row['fwd_ms'] + row['bwd_ms']) / 1e9:8.3f} TFLOP/s" if flops else ""
            print(f"{dtype:4} T={v.T:<4} tokens={v.B * v.T:<6} {v.kind:10} tp={v.tp} "
                  f"{'' if v.vocab is None else f'V={v.vocab:<6}'}fwd {row['fwd_ms']:9.3f} ms  "
                  f"bwd {row['bwd_ms']:9.3f} ms {rate}", flush=True)
        del variants
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write(a.out, meta, dims, rows, optimizer, time.perf_counter() - t_start, complete=False)
    for vocab in a.vocab:
        for o in measure_optimizers(dims, a.tp, vocab, a.warmup, a.reps, timer, device):
            optimizer.append(o)
            print(f"[{time.perf_counter() - t_start:6.1f}s] AdamW tp={o['tp']} V={vocab}: "
                  f"{o['n_params'] / 1e6:.2f}M parameters, {o['step_ms']:.3f} ms", flush=True)
    meta = write(a.out, meta, dims, rows, optimizer, time.perf_counter() - t_start, complete=True)
    print(f"wrote {a.out} ({len(rows)} layer rows, {len(optimizer)} optimizer rows) in {meta['seconds']} s")


def write(path, meta, dims, rows, optimizer, seconds, complete):
    """The JSON scaling_model.py reads, replaced atomically; `complete` false while rows are still to come."""
    meta = dict(meta, seconds=round(seconds, 1), complete=complete)
    model = {k: dims[k] for k in ("d_model", "num_heads", "d_ff", "encoder_layers", "decoder_layers", "pre_norm",
                                  "dropout", "attention_dropout", "activation", "label_smoothing", "config")}
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"schema": "parallax.layer_times/1", "meta": meta, "model": model, "measurements": rows,
                   "optimizer": optimizer}, f, indent=1)
    os.replace(path + ".tmp", path)
    return meta


if __name__ == "__main__":
    main(sys.argv[1:])
