#!/usr/bin/python3
# bench/parallel/scaling_model.py: predicts the base translator's step time, throughput and scaling efficiency for
# every dp x tp layout up to 1,024 GPUs from per-layer compute times (measured, or assumed from FLOP counts).
"""Scaling model of the base translator (configs/translator_base.pbtxt) under Megatron tensor parallelism (tp)
and bucketed data-parallel gradient all-reduce (dp).

Compute, one of two sources with the same interface (time(kind, tp, tokens) -> forward, backward seconds, and the
AdamW step per tp):
  --compute measured (default): the JSON of layer_times_torch.py: forward and backward time of one encoder layer,
      one decoder layer, the vocab-parallel embedding and the output projection + cross-entropy, each at the shapes
      of one tp shard (tp = 1, 2, 4, 8), at a few token counts; and the AdamW step over one rank's parameters.
  --compute flops: ASSUMED, nothing measured: every layer's matrix products (FLOPs / (peak x GEMM efficiency), or
      their bytes / HBM bandwidth if larger) plus the bytes of its elementwise, LayerNorm, softmax and dropout
      passes / HBM bandwidth, no kernel faster than a floor; AdamW memory bound. Figures are flags (H200 defaults).
Assumed in both (flags below, defaults with their sources): link bandwidths and latencies, the collective
algorithms, 8 GPUs per node with tp inside a node, no compute/communication contention, TP collectives exposed.

    step = micro-batches x (forward + backward compute of the tp shard + exposed tp all-reduces)
           + exposed dp all-reduce (simulated bucket by bucket against the last backward) + optimizer step

Equations and every figure are in bench/parallel/SCALING.md. `--check` asserts the model's invariants on both
compute sources.
"""
import argparse
import bisect
import copy
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_TIMES = os.path.join(HERE, "layer_times_cpu.json")
DEFAULT_CONFIG = os.path.join(REPO, "configs", "translator_base.pbtxt")
TP_SIZES = (1, 2, 4, 8)
GPU_COUNTS = tuple(2 ** i for i in range(11))  # 1 .. 1024
LAYER_KINDS = ("embed", "encoder", "decoder", "logits_ce")
ACT_BYTES = {"f32": 4, "bf16": 2}  # bytes per activation element the tp all-reduces move, by compute dtype
GB = 1e9
# --compute flops: the default largest micro-batch, configs/translator_base.pbtxt's train.batch_tokens (its
# activations take a few GB of the H200's 141; memory is not modelled).
FLOPS_MAX_TOKENS = 25000


def shown(path):
    """A path as printed: relative to the repository when inside it."""
    full = os.path.abspath(path)
    return os.path.relpath(full, REPO) if full.startswith(REPO + os.sep) else path


class ModelError(Exception):
    """Bad input (a layer-times file or flag): printed as one line naming it, exit status 2."""


# ----------------------------------------------------------------------------------------------------------
# Parameters of one rank: the single source of the shapes (layer_times_torch.py checks its modules against it).

def rank_parameters(dims, tp, vocab):
    """[(module, name, numel, sharded)] of one tp rank in registration order (embedding, encoder, decoder).

    Megatron's split: QKV / Q / KV / FFN-in column-parallel (weight and bias / tp), attention-out and FFN-out
    row-parallel (weight / tp, bias replicated), LayerNorms replicated, the shared (tied) embedding split by
    vocabulary rows.
    """
    d, h, ff = dims["d_model"], dims["num_heads"], dims["d_ff"]
    for what, size in (("num_heads", h), ("d_ff", ff), ("vocab", vocab)):
        if size % tp:
            raise ModelError(f"tp {tp} does not divide {what} {size}")
    out = [("embed", "weight", vocab // tp * d, True)]

    def attention(prefix, cross):
        if cross:
            ps = [("q.weight", d // tp * d, True), ("q.bias", d // tp, True),
                  ("kv.weight", 2 * d // tp * d, True), ("kv.bias", 2 * d // tp, True)]
        else:
            ps = [("qkv.weight", 3 * d // tp * d, True), ("qkv.bias", 3 * d // tp, True)]
        ps += [("out.weight", d * (d // tp), True), ("out.bias", d, False)]
        return [(prefix + n, k, s) for n, k, s in ps]

    def norm(prefix):
        return [(prefix + ".weight", d, False), (prefix + ".bias", d, False)]

    feed_forward = [("ff1.weight", ff // tp * d, True), ("ff1.bias", ff // tp, True),
                    ("ff2.weight", d * (ff // tp), True), ("ff2.bias", d, False)]
    for i in range(dims["encoder_layers"]):
        ps = attention("self_attn.", False) + norm("norm1") + feed_forward + norm("norm2")
        out += [(f"encoder.{i}", n, k, s) for n, k, s in ps]
    for i in range(dims["decoder_layers"]):
        ps = (attention("self_attn.", False) + norm("norm1") + attention("cross_attn.", True) + norm("norm2") +
              feed_forward + norm("norm3"))
        out += [(f"decoder.{i}", n, k, s) for n, k, s in ps]
    return out


def layer_numel(dims, tp, vocab):
    """{'embed' | 'encoder' | 'decoder': parameters of one such layer on one rank}."""
    counts = {}
    for module, _, numel, _ in rank_parameters(dims, tp, vocab):
        kind = module.split(".")[0]
        if module in ("embed", "encoder.0", "decoder.0"):
            counts[kind] = counts.get(kind, 0) + numel
    return counts


# ----------------------------------------------------------------------------------------------------------
# Collectives (alpha-beta).

def latency_steps(n, latency):
    """Sequential message steps of an all-reduce over n ranks: ring 2(n-1); 'log' 2 ceil(log2 n) (tree / LL)."""
    if n <= 1:
        return 0
    return 2 * (n - 1) if latency == "ring" else 2 * math.ceil(math.log2(n))


def allreduce_time(nbytes, n, busbw, alpha, latency):
    """Seconds for an all-reduce of nbytes over n ranks: steps(n) alpha + 2 (n-1)/n nbytes / busbw."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return latency_steps(n, latency) * alpha + 2.0 * (n - 1) / n * nbytes / busbw


def half_allreduce_time(nbytes, n, busbw, alpha, latency):
    """A reduce-scatter (or all-gather) of nbytes: half of the all-reduce's steps and bytes."""
    return 0.5 * allreduce_time(nbytes, n, busbw, alpha, latency)


def tp_allreduce_time(nbytes, tp, hw):
    """A tp all-reduce: the tp ranks share a node, so NVLink."""
    return allreduce_time(nbytes, tp, hw.nvlink_busbw, hw.nvlink_alpha, hw.latency)


def dp_allreduce_time(nbytes, dp, tp, hw):
    """Hierarchical all-reduce over the dp group of one tp rank.

    g = min(dp, gpus_per_node / tp) peers share a node, m = dp / g nodes: reduce-scatter over NVLink among the
    g, all-reduce of the 1/g shard over InfiniBand among the m (each GPU its own NIC), all-gather over NVLink.
    The phases are sequential (NCCL pipelines them, so this errs high by up to the smaller phase).
    """
    local = min(dp, max(1, hw.gpus_per_node // tp))
    nodes = dp // local
    if nodes == 1:
        return allreduce_time(nbytes, local, hw.nvlink_busbw, hw.nvlink_alpha, hw.latency)
    intra = 2 * half_allreduce_time(nbytes, local, hw.nvlink_busbw, hw.nvlink_alpha, hw.latency)
    return intra + allreduce_time(nbytes / local, nodes, hw.ib_busbw, hw.ib_alpha, hw.latency)


# ----------------------------------------------------------------------------------------------------------
# Measured layer times.

class LayerTimes:
    """The measurements of one (dtype, seq_len, vocab): time(kind, tp, tokens) -> (forward s, backward s)."""

    measured = True

    @classmethod
    def load(cls, path, dtype, seq_len, vocab):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise ModelError(f"{path}: cannot read the layer-times file ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise ModelError(f"{path}: not JSON ({e})") from None
        try:
            return cls(data, path, dtype, seq_len, vocab)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ModelError(f"{path}: not a layer_times_torch.py file ({type(e).__name__}: {e})") from None

    def __init__(self, data, path, dtype, seq_len, vocab):
        if data.get("schema") != "parallax.layer_times/1":
            raise ModelError(f"{path}: schema is {data.get('schema')!r}, expected 'parallax.layer_times/1'")
        self.path, self.meta, self.dims = path, data["meta"], data["model"]
        rows = data["measurements"]
        self.dtype = dtype or ("bf16" if any(r["dtype"] == "bf16" for r in rows) else "f32")
        self.seq_len = seq_len or max(r["seq_len"] for r in rows)
        vocabs = sorted({r["vocab"] for r in rows if r["vocab"] is not None})
        self.vocab = vocab or (8000 if 8000 in vocabs else (vocabs[0] if vocabs else 0))
        self.points = {}  # (kind, tp) -> sorted [(tokens, fwd_s, bwd_s)]
        for r in rows:
            if r["kind"] not in LAYER_KINDS or r["dtype"] != self.dtype or r["seq_len"] != self.seq_len:
                continue
            if r["vocab"] is not None and r["vocab"] != self.vocab:
                continue
            self.points.setdefault((r["kind"], r["tp"]), []).append(
                (r["tokens"], r["fwd_ms"] / 1e3, r["bwd_ms"] / 1e3))
        for key in self.points:
            self.points[key].sort()
        self.optimizer = {o["tp"]: o["step_ms"] / 1e3 for o in data["optimizer"]
                          if o["vocab"] == self.vocab}
        missing = [f"{k} tp={t}" for k in LAYER_KINDS for t in TP_SIZES if (k, t) not in self.points]
        missing += [f"optimizer tp={t}" for t in TP_SIZES if t not in self.optimizer]
        if missing:
            raise ModelError(f"{path}: no measurement for dtype {self.dtype}, seq_len {self.seq_len}, vocab "
                             f"{self.vocab}: {', '.join(missing)} (see its meta for what was measured)")
        self.max_tokens = max(p[-1][0] for p in self.points.values())  # the default largest micro-batch

    def describe(self):
        m = self.meta
        partial = " INCOMPLETE (the measurement stopped early)," if m.get("complete") is False else ""
        return (f"compute: MEASURED layer times {shown(self.path)} ({m.get('device_name', m.get('device'))}, torch "
                f"{m.get('torch')}),{partial} dtype {self.dtype}, T = {self.seq_len}, vocab {self.vocab}, measured "
                f"up to {self.max_tokens} tokens")

    def time(self, kind, tp, tokens):
        """(forward, backward) seconds at `tokens` tokens per side: piecewise-linear through the measured points,
        extended along the end segments, never below the proportional share of the smallest point."""
        pts = self.points[(kind, tp)]
        xs = [p[0] for p in pts]
        out = []
        for col in (1, 2):
            if len(pts) == 1:
                out.append(pts[0][col] * tokens / pts[0][0])
                continue
            i = min(max(bisect.bisect_left(xs, tokens), 1), len(pts) - 1)
            (x0, y0), (x1, y1) = (xs[i - 1], pts[i - 1][col]), (xs[i], pts[i][col])
            value = y0 + (y1 - y0) * (tokens - x0) / (x1 - x0)
            if tokens < xs[0]:
                value = max(value, pts[0][col] * tokens / xs[0])
            out.append(max(value, 0.0))
        return tuple(out)


# ----------------------------------------------------------------------------------------------------------
# Assumed compute (--compute flops): times from FLOP and byte counts. Nothing in this section is measured.
# An op is ("gemm", name, m, n, k, batch): batch x (m x k @ k x n), 2 m n k batch FLOPs; or ("mem", name, bytes,
# kernels): an elementwise / LayerNorm / softmax / dropout / reduction pass that moves `bytes` through HBM.

def config_dims(path):
    """The model's dimensions from a translator config (through bench/translator/pbtxt_config.py, stdlib only)."""
    sys.path.insert(0, os.path.join(REPO, "bench", "translator"))
    import pbtxt_config  # noqa: E402  (needs the path above)
    try:
        schema = pbtxt_config.load_schema(os.path.join(REPO, "configs", "parallax.proto"))
        config = pbtxt_config.load_config(path, [], schema)
    except (OSError, pbtxt_config.ConfigError) as e:
        raise ModelError(f"{path}: cannot read the model config ({e})") from None
    if pbtxt_config.model_kind(config) != "translator":
        raise ModelError(f"{path}: a {pbtxt_config.model_kind(config)} config; the model here is the translator")
    model = config["model"]["translator"]
    return {k: model[k] for k in ("d_model", "num_heads", "d_ff", "encoder_layers", "decoder_layers", "pre_norm",
                                  "dropout", "attention_dropout", "activation")}


def layer_ops(kind, dims, tp, seq_len, vocab, tokens, act_bytes):
    """(forward ops, backward ops) of one tp rank's `kind` over `tokens` tokens per side (B = tokens / T sentences).

    GEMMs: every projection, the attention scores q k^T and context p v over the full T x T (as eager attention,
    core/nn/attention.cpp, computes them: causal masking saves nothing), the FFN and the tied output projection;
    each backward GEMM pair (dX = dY W^T, dW = X^T dY) has twice the forward's FLOPs and bytes. The embedding
    lookup has no GEMM. Memory passes count one read or write of an element at `act_bytes` (bf16 2, f32 4), dropout
    masks at 1 byte, the cross-entropy in f32; bias adds are fused into their GEMM. Per element, forward / backward:
    dropout 2 + mask / 2 + mask; residual add 3 / 3 (the gradient sum at the branch); LayerNorm 2 / 5 (dx, then
    dgamma and dbeta re-read x and dy); ReLU 2 / 3; scale and mask of the scores 2 / 2 each; softmax 2 / 3; head
    merge copy 2 / 2 and, backward, the head split's gradient copy 2 per projection output and each bias gradient 1.
    """
    d, h, ff = dims["d_model"], dims["num_heads"], dims["d_ff"]
    a, f, heads, dh, b = d // tp, ff // tp, h // tp, d // h, act_bytes
    n, sentences = tokens, tokens / seq_len
    scores = n * heads * seq_len  # elements of this rank's (B, h / tp, T, T) attention scores
    fwd, bwd = [], []

    def gemm(name, m, cols, k, batch=1):
        fwd.append(("gemm", name, m, cols, k, batch))
        bwd.extend([("gemm", name + ".dx", m, k, cols, batch), ("gemm", name + ".dw", k, cols, m, batch)])

    def passes(name, fwd_bytes, bwd_bytes, fwd_kernels=1, bwd_kernels=1):
        if fwd_bytes:
            fwd.append(("mem", name, fwd_bytes, fwd_kernels))
        if bwd_bytes:
            bwd.append(("mem", name, bwd_bytes, bwd_kernels))

    def dropout(name, elements, p):
        if p > 0:
            passes(name, elements * (2 * b + 1), elements * (2 * b + 1))

    def attention(name, causal, cross):
        for proj, width in (((".q", a), (".kv", 2 * a)) if cross else ((".qkv", 3 * a),)):
            gemm(name + proj, n, width, d)
            passes(name + proj + ".grad_heads_bias", 0, 3 * n * width * b)
        gemm(name + ".scores", seq_len, seq_len, dh, sentences * heads)
        passes(name + ".scale", 2 * scores * b, 2 * scores * b)
        if causal:
            passes(name + ".causal_mask", 2 * scores * b, 2 * scores * b)
        passes(name + ".softmax", 2 * scores * b, 3 * scores * b)
        dropout(name + ".attention_dropout", scores, dims["attention_dropout"])
        gemm(name + ".context", seq_len, dh, seq_len, sentences * heads)
        passes(name + ".merge_heads", 2 * n * a * b, 2 * n * a * b)
        gemm(name + ".out", n, d, a)
        passes(name + ".out.grad_bias", 0, n * d * b)

    def residual_norm(name):
        dropout(name + ".dropout", n * d, dims["dropout"])
        passes(name + ".residual", 3 * n * d * b, 3 * n * d * b)
        passes(name + ".layernorm", 2 * n * d * b, 5 * n * d * b, 1, 2)

    def feed_forward(name):
        gemm(name + ".ff1", n, f, d)
        passes(name + ".ff1.grad_bias", 0, n * f * b)
        passes(name + ".activation", 2 * n * f * b, 3 * n * f * b)
        dropout(name + ".dropout", n * f, dims["dropout"])
        gemm(name + ".ff2", n, d, f)
        passes(name + ".ff2.grad_bias", 0, n * d * b)

    if kind == "encoder":
        attention("self_attn", False, False)
        residual_norm("norm1")
        feed_forward("ffn")
        residual_norm("norm2")
    elif kind == "decoder":
        attention("self_attn", True, False)
        residual_norm("norm1")
        attention("cross_attn", False, True)
        passes("memory_grad_sum", 0, 3 * n * d * b)  # the memory's gradient summed over the decoder layers
        residual_norm("norm2")
        feed_forward("ffn")
        residual_norm("norm3")
    elif kind == "embed":
        for side in ("source", "target"):
            passes(side + ".gather", 2 * n * d * b, n * d * (b + 8))  # backward: index-add into the f32 table grad
            if tp > 1:
                passes(side + ".vocab_mask", 2 * n * d * b, 2 * n * d * b)  # zero the rows of other shards
            passes(side + ".scale", 2 * n * d * b, 2 * n * d * b)
            passes(side + ".positions", 2 * n * d * b, 0)
            dropout(side + ".dropout", n * d, dims["dropout"])
        passes("table_grad", 0, 4 * (vocab // tp) * d * 4, 0, 2)  # zero it, add the tied projection's dW (f32)
    elif kind == "logits_ce":
        v = vocab // tp
        gemm("logits", n, v, d)
        # f32 cross-entropy over the (N, V / tp) logits: cast (read b, write 4), max, sum-exp, target and sum
        # reads, probabilities written; backward reads them, writes the f32 gradient, casts it to b.
        passes("cross_entropy", n * v * (b + 20), n * v * (12 + b), 5, 3)
    else:
        raise ModelError(f"no FLOP count for layer kind {kind!r}")
    return fwd, bwd


def gemm_flops(ops, attention=None):
    """FLOPs of the GEMMs in ops; attention True / False: only / none of the scores and context products."""
    def is_attention(name):
        return any(part in ("scores", "context") for part in name.split("."))
    return sum(2 * m * cols * k * batch for _, name, m, cols, k, batch in (o for o in ops if o[0] == "gemm")
               if attention is None or attention == is_attention(name))


class FlopTimes:
    """Assumed compute with LayerTimes' interface: time(kind, tp, tokens) -> (forward s, backward s) and the AdamW
    step per tp, from layer_ops' counts and the figures of `figures` (the flags of parse_args)."""

    measured = False

    def __init__(self, dims, figures, dtype, seq_len, vocab):
        self.dims, self.dtype, self.seq_len, self.vocab = dims, dtype or "bf16", seq_len or 128, vocab or 8000
        self.act_bytes = ACT_BYTES[self.dtype]
        peak = {"bf16": 790.0, "f32": 67.0}[self.dtype] if figures.peak_tflops is None else figures.peak_tflops
        self.gemm_rate = peak * 1e12 * figures.gemm_efficiency
        self.hbm, self.floor = figures.hbm_tbs * 1e12, figures.kernel_floor_us * 1e-6
        self.figures, self.peak = figures, peak
        self.max_tokens = FLOPS_MAX_TOKENS
        self.path = f"flops({self.dtype}, T {self.seq_len}, V {self.vocab})"
        for name in ("gemm_efficiency", "hbm_tbs", "adam_bytes"):
            if getattr(figures, name) <= 0:
                raise ModelError(f"--{name.replace('_', '-')}: must be > 0")
        if peak <= 0 or figures.kernel_floor_us < 0:
            raise ModelError("--peak-tflops must be > 0 and --kernel-floor-us >= 0")
        self.optimizer = {}
        for tp in TP_SIZES:  # one fused kernel per tensor: read p, g, m, v and write p, m, v (f32)
            self.optimizer[tp] = sum(max(numel * figures.adam_bytes / self.hbm, self.floor)
                                     for _, _, numel, _ in rank_parameters(dims, tp, self.vocab))

    def op_seconds(self, op):
        """A GEMM: FLOPs / (peak x efficiency) or its operands' bytes / HBM, whichever is larger (the attention
        products and, at tp = 8, the 64-deep out-projection are memory bound); a memory pass: bytes / HBM; neither
        below kernels x the floor."""
        if op[0] == "gemm":
            _, _, m, cols, k, batch = op
            nbytes = (m * k + k * cols + m * cols) * batch * self.act_bytes
            return max(2 * m * cols * k * batch / self.gemm_rate, nbytes / self.hbm, self.floor)
        return max(op[2] / self.hbm, op[3] * self.floor)

    def time(self, kind, tp, tokens):
        fwd, bwd = layer_ops(kind, self.dims, tp, self.seq_len, self.vocab, tokens, self.act_bytes)
        return sum(map(self.op_seconds, fwd)), sum(map(self.op_seconds, bwd))

    def describe(self):
        f = self.figures
        return (f"compute: ASSUMED from FLOP and byte counts, not measured: {self.dtype} peak {self.peak:g} TFLOP/s "
                f"x GEMM efficiency {f.gemm_efficiency:g}, HBM {f.hbm_tbs:g} TB/s, kernel floor "
                f"{f.kernel_floor_us:g} us, AdamW {f.adam_bytes:g} B/parameter; T = {self.seq_len}, vocab {self.vocab}")


# ----------------------------------------------------------------------------------------------------------
# One layout.

def predict(times, hw, dp, tp, tokens_per_replica):
    """The step of one dp x tp layout with `tokens_per_replica` tokens per side per dp replica (one tp group)."""
    dims, vocab = times.dims, times.vocab
    d, n_enc, n_dec = dims["d_model"], dims["encoder_layers"], dims["decoder_layers"]
    micro = max(1, math.ceil(tokens_per_replica / hw.max_tokens_per_gpu))
    tokens = tokens_per_replica / micro  # per micro-batch
    t = {kind: times.time(kind, tp, tokens) for kind in LAYER_KINDS}

    act = tokens * d * ACT_BYTES[times.dtype]  # one (B*T, d) activation
    ar_act = tp_allreduce_time(act, tp, hw)
    ar_ce = tp_allreduce_time(tokens * 4, tp, hw)  # an f32 (B*T) vector of the vocab-parallel cross-entropy
    # Forward: row-parallel outputs (2 per encoder layer, 3 per decoder layer), the two embedding lookups,
    # the cross-entropy's max / sum-exp / target-and-sum. Backward: the input gradient of every
    # column-parallel block (2 per encoder layer; 3 + memory per decoder layer) and of the output projection.
    tp_fwd = (2 * n_enc + 3 * n_dec + 2) * ar_act + 3 * ar_ce
    tp_bwd = (2 * n_enc + 4 * n_dec + 1) * ar_act
    fwd = t["embed"][0] + n_enc * t["encoder"][0] + n_dec * t["decoder"][0] + t["logits_ce"][0]
    bwd = t["embed"][1] + n_enc * t["encoder"][1] + n_dec * t["decoder"][1] + t["logits_ce"][1]

    # Backward of the last micro-batch, in order, with the tp all-reduces on the critical path; `ready` is when
    # each module's gradients are final (the tied embedding's only after its lookups' backward).
    clock, ready = t["logits_ce"][1] + ar_act, {}
    for i in reversed(range(n_dec)):
        clock += t["decoder"][1] + 4 * ar_act
        ready[f"decoder.{i}"] = clock
    for i in reversed(range(n_enc)):
        clock += t["encoder"][1] + 2 * ar_act
        ready[f"encoder.{i}"] = clock
    clock += t["embed"][1]
    ready["embed"] = clock
    assert abs(clock - (bwd + tp_bwd)) <= 1e-9 * clock, "the backward timeline adds up to backward + tp comm"

    # DP buckets in reverse registration order (parallel/dp/grad_bucketer.h), all-reduced one after another.
    buckets, fill, bucket_ready = [], 0, 0.0
    for module, _, numel, _ in reversed(rank_parameters(dims, tp, vocab)):
        nbytes = numel * hw.grad_bytes
        if fill and fill + nbytes > hw.bucket_bytes:
            buckets.append((fill, bucket_ready))
            fill = 0
        fill += nbytes
        bucket_ready = max(bucket_ready, ready[module])
    buckets.append((fill, bucket_ready))
    comm_end, dp_comm = 0.0, 0.0
    for nbytes, when in buckets:
        cost = dp_allreduce_time(nbytes, dp, tp, hw)
        comm_end = max(comm_end, when) + cost
        dp_comm += cost
    dp_exposed = max(0.0, comm_end - clock) if dp > 1 else 0.0

    compute = micro * (fwd + bwd)
    tp_comm = micro * (tp_fwd + tp_bwd)
    opt = times.optimizer[tp]
    step = compute + tp_comm + dp_exposed + opt
    return {"gpus": dp * tp, "nodes": max(1, dp * tp // hw.gpus_per_node), "dp": dp, "tp": tp,
            "tokens_per_replica": tokens_per_replica, "micro_batches": micro, "compute_s": compute,
            "tp_comm_s": tp_comm, "dp_comm_s": dp_comm if dp > 1 else 0.0, "dp_exposed_s": dp_exposed,
            "last_bucket_s": dp_allreduce_time(buckets[-1][0], dp, tp, hw), "buckets": len(buckets),
            "optimizer_s": opt, "step_s": step, "tokens_per_s": dp * tokens_per_replica / step}


def layouts(max_gpus, gpus_per_node):
    for gpus in GPU_COUNTS:
        if gpus > max_gpus:
            break
        for tp in TP_SIZES:
            if tp <= gpus and tp <= gpus_per_node:
                yield gpus // tp, tp


def scaling_table(times, hw, mode, tokens, max_gpus):
    """Rows of every layout; weak: `tokens` per dp replica; strong: `tokens` in the global batch.
    Efficiency = throughput / (GPUs x the one-GPU throughput of the same mode)."""
    rows = []
    for dp, tp in layouts(max_gpus, hw.gpus_per_node):
        rows.append(predict(times, hw, dp, tp, tokens if mode == "weak" else tokens / dp))
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["efficiency"] = r["tokens_per_s"] / (r["gpus"] * base)
    return rows


# ----------------------------------------------------------------------------------------------------------
# Output.

def format_table(rows, mode, tokens, compact=False):
    head = (f"{'GPUs':>5} {'nodes':>5} {'dp':>5} {'tp':>3} {'tok/rep':>8} {'micro':>5} {'compute':>9} "
            f"{'tp comm':>8} {'dp comm':>8} {'dp exp':>8} {'optim':>7} {'step ms':>9} {'tokens/s':>10} {'eff':>6}")
    what = "tokens per dp replica" if mode == "weak" else "tokens in the global batch"
    lines = [f"{mode} scaling: {tokens:g} {what} (per side); times in ms", head]
    best = {}
    for r in rows:
        if r["gpus"] not in best or r["tokens_per_s"] > best[r["gpus"]]["tokens_per_s"]:
            best[r["gpus"]] = r
    for r in rows:
        ms = {k: 1e3 * r[k] for k in ("compute_s", "tp_comm_s", "dp_comm_s", "dp_exposed_s", "optimizer_s",
                                       "step_s")}
        mark = " *" if best[r["gpus"]] is r else ""
        if compact and not mark and r["tp"] not in (1, TP_SIZES[-1]):
            continue
        lines.append(f"{r['gpus']:>5} {r['nodes']:>5} {r['dp']:>5} {r['tp']:>3} {r['tokens_per_replica']:>8.0f} "
                     f"{r['micro_batches']:>5} {ms['compute_s']:>9.4g} {ms['tp_comm_s']:>8.4g} "
                     f"{ms['dp_comm_s']:>8.4g} {ms['dp_exposed_s']:>8.4g} {ms['optimizer_s']:>7.4g} "
                     f"{ms['step_s']:>9.5g} {r['tokens_per_s']:>10.4g} {r['efficiency']:>6.3f}{mark}")
    lines.append("* the fastest layout for that GPU count")
    return "\n".join(lines)


def format_header(times, hw):
    return "\n".join([
        times.describe(),
        f"model: d {times.dims['d_model']}, heads {times.dims['num_heads']}, d_ff {times.dims['d_ff']}, "
        f"{times.dims['encoder_layers']}+{times.dims['decoder_layers']} layers, "
        f"{sum(p[2] for p in rank_parameters(times.dims, 1, times.vocab)) / 1e6:.2f}M parameters",
        f"links: NVLink {hw.nvlink_busbw / GB:g} GB/s bus, alpha {hw.nvlink_alpha * 1e6:g} us; InfiniBand "
        f"{hw.ib_busbw / GB:g} GB/s per GPU, alpha {hw.ib_alpha * 1e6:g} us; {hw.latency} latency; "
        f"{hw.gpus_per_node} GPUs/node; buckets {hw.bucket_bytes / 2**20:g} MiB of {hw.grad_bytes}-byte grads; "
        f"micro-batch <= {hw.max_tokens_per_gpu:g} tokens"])


# ----------------------------------------------------------------------------------------------------------
# Self-check.

def synthetic_times(dims, vocab):
    """Layer times with known shape: per kind fwd = 50 us + N x c x (0.1 + 0.9 / tp), bwd = 2 x fwd, so a shard
    is never faster than 1/tp of tp = 1 and the time per token falls with N; AdamW 1 ms / tp."""
    cost_per_token = {"embed": 1e-6, "encoder": 2e-5, "decoder": 3e-5, "logits_ce": 1e-5}  # ms per token at tp=1
    rows = []
    for kind, c in cost_per_token.items():
        for tp in TP_SIZES:
            for tokens in (512, 4096, 25000):
                fwd = 0.05 + tokens * c * (0.1 + 0.9 / tp)
                rows.append({"kind": kind, "tp": tp, "dtype": "bf16", "seq_len": 128, "tokens": tokens,
                             "vocab": vocab if kind in ("embed", "logits_ce") else None, "fwd_ms": fwd,
                             "bwd_ms": 2 * fwd})
    return {"schema": "parallax.layer_times/1", "meta": {"device": "synthetic"}, "model": dims,
            "measurements": rows, "optimizer": [{"tp": tp, "vocab": vocab, "step_ms": 1.0 / tp} for tp in TP_SIZES]}


def run_checks(sources, hw, tolerance):
    """Asserts the model's invariants for each of `sources`, [(layer times, its Hardware, weak tokens, strong
    tokens)]: measured files allow efficiency above 1 by `tolerance` (their times carry noise); synthetic and
    FLOP-count times are checked exactly, the latter also against rank_parameters. Returns (failures,
    [(source, assertions)])."""
    failures, counts, count = [], [], 0

    def expect(ok, what):
        nonlocal count
        count += 1
        if not ok:
            failures.append(what)

    for times, source_hw, tokens_weak, tokens_strong in sources:
        before = count
        check_tables(times, source_hw, tokens_weak, tokens_strong,
                     tolerance if times.measured and times.path != "synthetic" else 0.0, expect)
        if not times.measured:
            check_flop_counts(times, expect)
        counts.append((times.path, count - before))
    before = count
    check_collectives(hw, expect)
    counts.append(("collectives", count - before))
    return failures, counts


def check_flop_counts(times, expect):
    """The FLOP-count source: its GEMMs match the parameter shapes (2 FLOPs per weight per token, 4 T d / tp per
    attention), backward doubles them, and its times are positive, grow with tokens, never cost more per token
    at more tokens, and a tp shard never takes less than 1/tp of the whole (replicated LayerNorms, residuals)."""
    dims, vocab, T, src = times.dims, times.vocab, times.seq_len, times.path
    counts = {"encoder": 1, "decoder": 2}  # attentions per layer
    for tp in TP_SIZES:
        weights = {}
        for module, name, numel, _ in rank_parameters(dims, tp, vocab):
            if module in ("embed", "encoder.0", "decoder.0") and name.endswith("weight") and "norm" not in name:
                weights[module.split(".")[0]] = weights.get(module.split(".")[0], 0) + numel
        for tokens in (512, 4096, 25000):
            for kind in LAYER_KINDS:
                fwd, bwd = layer_ops(kind, dims, tp, T, vocab, tokens, times.act_bytes)
                tag = f"{src}: {kind} tp={tp} at {tokens} tokens"
                table = "embed" if kind == "logits_ce" else kind  # the output projection is the tied table
                projections = 0 if kind == "embed" else 2 * tokens * weights[table]
                attention = counts.get(kind, 0) * 4 * tokens * T * dims["d_model"] / tp
                expect(math.isclose(gemm_flops(fwd, attention=False), projections, rel_tol=1e-12, abs_tol=0),
                       f"{tag}: projection FLOPs = 2 x tokens x weights")
                expect(math.isclose(gemm_flops(fwd, attention=True), attention, rel_tol=1e-12, abs_tol=0),
                       f"{tag}: attention FLOPs = 4 T d / tp per token per attention")
                expect(math.isclose(gemm_flops(bwd), 2 * gemm_flops(fwd), rel_tol=1e-12, abs_tol=0),
                       f"{tag}: backward GEMMs = 2 x forward")
    grid = (64, 512, 4096, 25000, 100000)
    for kind in LAYER_KINDS:
        for tp in TP_SIZES:
            tag = f"{src}: {kind} tp={tp}"
            ts = [times.time(kind, tp, n) for n in grid]
            whole = [times.time(kind, 1, n) for n in grid]
            for col, what in ((0, "forward"), (1, "backward")):
                ys = [t[col] for t in ts]
                expect(all(y > 0 for y in ys), f"{tag}: positive {what} times")
                expect(all(p <= q for p, q in zip(ys, ys[1:])), f"{tag}: {what} time grows with tokens")
                per_token = [y / n for y, n in zip(ys, grid)]
                expect(all(p >= q * (1 - 1e-12) for p, q in zip(per_token, per_token[1:])),
                       f"{tag}: {what} time per token never rises with tokens")
                expect(all(y >= w[col] / tp * (1 - 1e-12) for y, w in zip(ys, whole)),
                       f"{tag}: {what} of a shard >= 1/tp of the whole layer")
    for tp in TP_SIZES:
        expect(times.optimizer[tp] >= times.optimizer[1] / tp > 0, f"{src}: AdamW of a tp={tp} rank >= 1/tp of "
               f"the whole model's")


def check_collectives(hw, expect):
    """All-reduce costs: zero for one rank, growing with bytes and with ranks."""
    for latency in ("ring", "log"):
        for busbw, alpha in ((hw.nvlink_busbw, hw.nvlink_alpha), (hw.ib_busbw, hw.ib_alpha)):
            expect(allreduce_time(1e6, 1, busbw, alpha, latency) == 0.0, "an all-reduce over 1 rank is free")
            for n in GPU_COUNTS[1:]:
                costs = [allreduce_time(b, n, busbw, alpha, latency) for b in (1, 1e3, 1e6, 1e9)]
                expect(all(a < b for a, b in zip(costs, costs[1:])), f"all-reduce cost grows with bytes (n={n})")
                expect(allreduce_time(1e6, n, busbw, alpha, latency) >=
                       allreduce_time(1e6, n // 2, busbw, alpha, latency), f"all-reduce cost grows with n={n}")
    for tp in TP_SIZES:
        dps = [g // tp for g in GPU_COUNTS if g >= tp]
        for nbytes in (4e3, 25 * 2**20):
            costs = [dp_allreduce_time(nbytes, dp, tp, hw) for dp in dps]
            expect(costs[0] == 0.0, f"dp=1 all-reduce is free (tp={tp})")
            expect(all(a <= b for a, b in zip(costs, costs[1:])), f"dp all-reduce grows with dp (tp={tp})")


def check_tables(times, hw, tokens_weak, tokens_strong, tolerance, expect):
    """Invariants of the predicted tables of one set of layer times."""
    src = times.path
    for kind in LAYER_KINDS:  # the interpolation passes through every measured point
        for tp in TP_SIZES:
            for tokens, fwd, bwd in (times.points[(kind, tp)] if times.measured else ()):
                got = times.time(kind, tp, tokens)
                expect(abs(got[0] - fwd) <= 1e-12 and abs(got[1] - bwd) <= 1e-12,
                       f"{src}: interpolation reproduces {kind} tp={tp} at {tokens} tokens")
    for mode, tokens in (("weak", tokens_weak), ("strong", tokens_strong)):
        rows = scaling_table(times, hw, mode, tokens, GPU_COUNTS[-1])
        expect(rows[0]["gpus"] == 1 and rows[0]["efficiency"] == 1.0, f"{src} {mode}: one GPU has efficiency 1")
        for r in rows:
            tag = f"{src} {mode} dp={r['dp']} tp={r['tp']}"
            eps = 1e-9 * r["step_s"]  # rounding of the timeline's sums
            expect(r["step_s"] > 0 and r["compute_s"] > 0, f"{tag}: positive times")
            expect(r["efficiency"] <= 1.0 + tolerance + 1e-12, f"{tag}: efficiency {r['efficiency']:.4f} <= 1 + "
                   f"{tolerance} (above it the measured shard or batch beat the one-GPU time per token)")
            expect((r["tp_comm_s"] == 0.0) == (r["tp"] == 1), f"{tag}: tp communication iff tp > 1")
            expect((r["dp_comm_s"] == 0.0) == (r["dp"] == 1), f"{tag}: dp communication iff dp > 1")
            if r["dp"] > 1:
                expect(r["dp_exposed_s"] >= r["last_bucket_s"] - eps, f"{tag}: the last bucket is exposed")
                expect(r["dp_exposed_s"] <= r["dp_comm_s"] + eps, f"{tag}: exposed dp <= total dp")
        for tp in TP_SIZES:
            same_tp = [r for r in rows if r["tp"] == tp]
            dp_costs = [r["dp_comm_s"] for r in same_tp]
            expect(all(a <= b for a, b in zip(dp_costs, dp_costs[1:])),
                   f"{src} {mode} tp={tp}: dp communication grows with the GPU count")
            if mode == "weak":
                steps = [r["step_s"] for r in same_tp]
                expect(all(a <= b * (1 + 1e-12) for a, b in zip(steps, steps[1:])),
                       f"{src} weak tp={tp}: step grows with dp")


# ----------------------------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compute", choices=("measured", "flops"), default="measured",
                    help="measured: layer times from --times; flops: ASSUMED, from FLOP and byte counts and the "
                         "figures below (no measurement)")
    ap.add_argument("--times", default=DEFAULT_TIMES, help="layer-times JSON of layer_times_torch.py")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="flops: the translator config giving the model's shape")
    ap.add_argument("--dtype", choices=sorted(ACT_BYTES), help="default: bf16 if measured (flops: bf16), else f32")
    ap.add_argument("--seq-len", type=int, help="tokens per sentence T; default: the largest measured (flops: 128)")
    ap.add_argument("--vocab", type=int, help="joint vocabulary; default 8000 (parallax data build-translation's "
                    "default) if measured")
    ap.add_argument("--mode", choices=("weak", "strong", "both"), default="both")
    ap.add_argument("--tokens", type=float,
                    help="weak: tokens per side per dp replica; default 25000 (configs/translator_base.pbtxt "
                         "train.batch_tokens) or the largest measured batch if smaller")
    ap.add_argument("--global-tokens", type=float, default=524288,
                    help="strong: tokens per side per global batch (2^19; Ott et al. 2018 trained this model "
                         "well with ~400k-token batches)")
    ap.add_argument("--max-gpus", type=int, default=1024)
    # Link figures. NVLink 4 (H100/H200 SXM): 900 GB/s bidirectional per GPU = 450 GB/s each way; NCCL's
    # all_reduce_perf reaches a bus bandwidth of ~370-450 GB/s on 8 GPUs through NVSwitch.
    ap.add_argument("--nvlink-busbw", type=float, default=400, help="GB/s all-reduce bus bandwidth in a node")
    ap.add_argument("--nvlink-alpha", type=float, default=5, help="us per message step in a node (5-10)")
    # InfiniBand NDR: 400 Gb/s = 50 GB/s per GPU each way (one ConnectX-7 per GPU, DGX H100/H200); ~90% of it
    # is reached by NCCL. Latency per step across the fabric 10-20 us.
    ap.add_argument("--ib-busbw", type=float, default=45, help="GB/s all-reduce bus bandwidth per GPU across nodes")
    ap.add_argument("--ib-alpha", type=float, default=10, help="us per message step across nodes (10-20)")
    ap.add_argument("--latency", choices=("log", "ring"), default="log",
                    help="steps of an all-reduce: log = 2 ceil(log2 n) (NCCL tree / LL protocols, what small "
                         "messages get), ring = 2 (n-1)")
    ap.add_argument("--gpus-per-node", type=int, default=8, help="DGX/HGX H100/H200 nodes; tp stays inside one")
    ap.add_argument("--bucket-mib", type=float, default=25, help="dp bucket size (parallel/dp/grad_bucketer.h)")
    ap.add_argument("--grad-bytes", type=int, default=4, help="bytes per gradient element (f32 master weights)")
    ap.add_argument("--max-tokens-per-gpu", type=float,
                    help="largest micro-batch (tokens per side); more is gradient accumulation. Default: the "
                         "largest measured batch, so times are never extrapolated above it (flops: 25000)")
    # --compute flops. Measured on this workplace's H200 (/work/.library/device/KINDS.md, 2026-10-28 and 11-04):
    # an 8192^3 bf16 matmul through PyTorch at 788 (769-798) TFLOP/s on random data, a device-to-device copy at
    # ~4.3 TB/s. Datasheet (H200.md): dense bf16 ~990 TFLOP/s, plain fp32 ~67, HBM3e 4.8 TB/s.
    ap.add_argument("--peak-tflops", type=float,
                    help="flops: matrix peak; default bf16 790 (measured 8192^3 matmul here), f32 67 (datasheet "
                         "plain fp32, no TF32)")
    ap.add_argument("--gemm-efficiency", type=float, default=0.45,
                    help="flops: ASSUMED fraction of --peak-tflops that the d = 512 GEMMs (K 512 or 2048, "
                         "M = tokens) reach; not measured")
    ap.add_argument("--hbm-tbs", type=float, default=4.3,
                    help="flops: HBM bandwidth of memory-bound kernels, TB/s (4.3 the copy measured here; "
                         "4.8 datasheet peak)")
    ap.add_argument("--kernel-floor-us", type=float, default=4.0,
                    help="flops: ASSUMED least time of one kernel (launch and gap between dependent eager "
                         "kernels, typically 2-5 us on a GPU; not measured here); 0 = pure roofline")
    ap.add_argument("--adam-bytes", type=float, default=28,
                    help="flops: AdamW HBM bytes per parameter: read p, g, m, v and write p, m, v in f32 (one "
                         "fused kernel per tensor)")
    ap.add_argument("--compact", action="store_true",
                    help="print only the fastest layout and the tp = 1 and tp = 8 layouts of each GPU count")
    ap.add_argument("--json-out", help="also write the rows here")
    ap.add_argument("--check", action="store_true",
                    help="assert the model's invariants on --times, synthetic times and the FLOP-count source "
                         "(bf16 and f32, T 64 and 128, vocab 8000 and 32000), and exit")
    ap.add_argument("--check-tolerance", type=float, default=0.02,
                    help="efficiency may exceed 1 by this much in --check (median timing noise of a few %%)")
    return ap.parse_args(argv)


class Hardware:
    def __init__(self, a):
        self.nvlink_busbw, self.nvlink_alpha = a.nvlink_busbw * GB, a.nvlink_alpha * 1e-6
        self.ib_busbw, self.ib_alpha = a.ib_busbw * GB, a.ib_alpha * 1e-6
        self.latency, self.gpus_per_node = a.latency, a.gpus_per_node
        self.bucket_bytes, self.grad_bytes = a.bucket_mib * 2**20, a.grad_bytes
        self.max_tokens_per_gpu = a.max_tokens_per_gpu
        for name in ("nvlink_busbw", "nvlink_alpha", "ib_busbw", "ib_alpha", "bucket_bytes", "grad_bytes"):
            if getattr(self, name) <= 0:
                raise ModelError(f"--{name.replace('_', '-')}: must be > 0")
        if self.gpus_per_node < 1 or self.gpus_per_node & (self.gpus_per_node - 1):
            raise ModelError(f"--gpus-per-node: must be a power of two, got {self.gpus_per_node}")


def load_source(a, compute, dtype, seq_len, vocab, dims=None):
    """Layer times from the chosen source: the measured file, or the FLOP-count model of the config's shape."""
    if compute == "measured":
        return LayerTimes.load(a.times, dtype, seq_len, vocab)
    return FlopTimes(dims or config_dims(a.config), a, dtype, seq_len, vocab)


def setup(times, hw, a):
    """(this source's Hardware: the largest micro-batch defaults to its own, weak tokens per replica)."""
    hw = copy.copy(hw)
    hw.max_tokens_per_gpu = a.max_tokens_per_gpu or times.max_tokens
    tokens = a.tokens or min(25000, times.max_tokens)
    if tokens <= 0 or a.global_tokens <= 0 or hw.max_tokens_per_gpu <= 0:
        raise ModelError("--tokens, --global-tokens and --max-tokens-per-gpu: must be > 0")
    return hw, tokens


def main(argv):
    a = parse_args(argv)
    try:
        hw = Hardware(a)
        if a.check:
            measured = load_source(a, "measured", a.dtype, a.seq_len, a.vocab)
            synthetic = LayerTimes(synthetic_times(measured.dims, measured.vocab), "synthetic", None, None, None)
            dims = config_dims(a.config)
            combos = {(a.dtype or "bf16", a.seq_len or 128, a.vocab or 8000)}
            combos |= {(d, t, v) for d in ("bf16", "f32") for t in (64, 128) for v in (8000, 32000)}
            sources = [measured, synthetic] + [load_source(a, "flops", *c, dims=dims) for c in sorted(combos)]
            failures, counts = run_checks([(t, *setup(t, hw, a), a.global_tokens) for t in sources], hw,
                                          a.check_tolerance)
            for f in failures:
                print("FAIL:", f)
            for source, count in counts:
                print(f"  {shown(source)}: {count} assertions")
            total = sum(c for _, c in counts)
            print(f"check: {total - len(failures)}/{total} assertions hold (measured {shown(measured.path)}; "
                  f"FLOP-count model of {shown(a.config)})")
            return 1 if failures else 0
        times = load_source(a, a.compute, a.dtype, a.seq_len, a.vocab)
        hw, a.tokens = setup(times, hw, a)
        print(format_header(times, hw))
        out = {}
        for mode in (("weak", "strong") if a.mode == "both" else (a.mode,)):
            tokens = a.tokens if mode == "weak" else a.global_tokens
            rows = scaling_table(times, hw, mode, tokens, a.max_gpus)
            out[mode] = rows
            print()
            print(format_table(rows, mode, tokens, a.compact))
        if a.json_out:
            with open(a.json_out, "w", encoding="utf-8") as f:
                json.dump({"args": vars(a), "compute": times.describe(), "rows": out}, f, indent=1)
        return 0
    except ModelError as e:
        print(f"scaling_model: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
