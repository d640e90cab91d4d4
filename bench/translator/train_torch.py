#!/usr/bin/python3
# bench/translator/train_torch.py: the PyTorch reference of `parallax train` + `parallax eval --split test`: the
# same config, shards, batching, model, optimizer and schedule, trained on the CPU, then test BLEU with beam search.
"""PyTorch reference trainer of Parallax's translator, for the BLEU comparison of bench/README.md.

Mirrors launcher/trainer.cpp and launcher/evaluator.cpp:

* config: a Parallax .pbtxt read against configs/parallax.proto (its defaults, unknown fields are errors),
  with `--set a.b=v` overrides; `--max-steps N` stops after N updates (the schedule still uses
  train.max_steps, as Parallax's run did) and switches off train.max_minutes, so the run is step-matched;
* data: the train split's shards read with h5py; the max-length filter of data/translation_loader.cpp and the
  sampler of data/sampler.cpp bit for bit (Philox4x32 permutation per epoch, length-sorted windows, greedy
  count * longest <= train.batch_tokens cuts, batch order shuffled per window), so the batches are Parallax's;
* model: tests/oracle/torch_translator.py's TorchTranslator (Parallax's architecture and init distributions,
  torch's generator seeded with train.seed, so not Parallax's weights);
* step: label-smoothed cross-entropy summed over target tokens / target tokens, torch.optim.AdamW, the
  schedule of core/optim/lr_schedule.h set before each update, global-norm clipping when > 0, a non-finite
  loss or norm skips the update;
* evaluation: teacher-forced loss, then fairseq-style beam search with an incremental key/value cache
  (decoding.cpp's rules), SentencePiece detokenisation and sacreBLEU's default corpus BLEU.
"""
import argparse
import math
import os
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F

try:
    import sacrebleu
    import sentencepiece
except ImportError as missing:  # checked before training, not after it
    sys.exit(f"train_torch: {missing}; install python3-sentencepiece (scripts/install_deps.sh) and "
             "`/usr/bin/python3 -m pip install --break-system-packages sacrebleu`")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "oracle"))
from torch_translator import TorchTranslator, loss as translation_loss  # noqa: E402  (needs the path above)
from pbtxt_config import ConfigError, config_text, load_config, load_schema, parse_text_format, unquote  # noqa: E402
from train_common import Metrics, format_duration, format_rate, lr_at  # noqa: E402

MASK32, MASK64 = (1 << 32) - 1, (1 << 64) - 1
PERMUTATION_DOMAIN, BATCH_ORDER_DOMAIN = 0x50455231, 0x424F5231  # data/sampler.cpp's "PER1", "BOR1"


# ----------------------------------------------------------------------------------------------------------
# Dataset: the index, the shards, and data/sampler.cpp's Philox streams and token batches.

class TranslationData:
    """A split-indexed view of a translation dataset directory (dataset.pbtxt + shards + SentencePiece)."""

    def __init__(self, directory):
        path = os.path.join(directory, "dataset.pbtxt")
        if not os.path.isfile(path):
            raise ConfigError(f"{directory}: data.dir has no dataset.pbtxt (build it with `make data`)")
        index = parse_text_format(open(path, encoding="utf-8").read(), path)
        self.dir = directory
        self.splits = {}
        tokenizer = {}
        for name, value, _ in index:
            if name == "schema" and unquote(value) != "parallax.translation":
                raise ConfigError(f"{path}: a {unquote(value)} dataset, the translator needs parallax.translation")
            if name == "splits":
                split_name = next(unquote(v) for n, v, _ in value if n == "name")
                self.splits[split_name] = [os.path.join(directory, unquote(f)) for n, shard, _ in value
                                           if n == "shards" for k, f, _ in shard if k == "file"]
            if name == "tokenizer":
                tokenizer = {k: v for k, v, _ in value}
        ids = {k: int(tokenizer.get(k + "_id", "0")) for k in ("pad", "bos", "eos")}  # proto3: absent is 0
        self.pad_id, self.bos_id, self.eos_id = ids["pad"], ids["bos"], ids["eos"]
        self.joint = tokenizer.get("joint", "false") == "true"
        self.src_spm = sentencepiece.SentencePieceProcessor(
            model_file=os.path.join(directory, unquote(tokenizer["src_model"])))
        self.tgt_spm = sentencepiece.SentencePieceProcessor(
            model_file=os.path.join(directory, unquote(tokenizer["tgt_model"])))

    def read(self, split):
        """(src, tgt): lists of int lists of every example of the split, shards in index order."""
        if split not in self.splits:
            raise ConfigError(f"{self.dir}: no split '{split}' (splits: {', '.join(self.splits)})")
        src, tgt = [], []
        for path in self.splits[split]:
            with h5py.File(path, "r") as f:
                for side, out in (("src", src), ("tgt", tgt)):
                    tokens, offsets = f[side + "_tokens"][:].tolist(), f[side + "_offsets"][:].tolist()
                    out.extend(tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1))
        return src, tgt

    def detok(self, spm, ids):
        """data/tokenizer.cpp's decode: pad, bos and eos skipped."""
        return spm.decode([i for i in ids if i not in (self.pad_id, self.bos_id, self.eos_id)])


def philox4x32(key, counter, domain):
    """core/util/philox.h: ten rounds on counter (ctr lo, ctr hi, domain, 0) with the 64-bit key."""
    c0, c1, c2, c3 = counter & MASK32, (counter >> 32) & MASK32, domain, 0
    k0, k1 = key & MASK32, (key >> 32) & MASK32
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
        k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
    return c0, c1, c2, c3


def philox_key(key, value, domain):
    v = philox4x32(key, value, domain)
    return v[0] | (v[1] << 32)


class PhiloxStream:
    """data/sampler.cpp's PhiloxStream: two 64-bit words per counter, Lemire's unbiased below(n)."""

    def __init__(self, key, domain):
        self.key, self.domain, self.counter, self.spare = key, domain, 0, None

    def next_u64(self):
        if self.spare is not None:
            value, self.spare = self.spare, None
            return value
        v = philox4x32(self.key, self.counter, self.domain)
        self.counter += 1
        self.spare = v[2] | (v[3] << 32)
        return v[0] | (v[1] << 32)

    def below(self, n):
        product = self.next_u64() * n
        if product & MASK64 < n:
            threshold = ((1 << 64) - n) % n
            while product & MASK64 < threshold:
                product = self.next_u64() * n
        return product >> 64


def shuffle_in_place(items, rng):
    for i in range(len(items), 1, -1):
        j = rng.below(i)
        items[i - 1], items[j] = items[j], items[i - 1]


def epoch_permutation(n, seed, epoch):
    perm = list(range(n))
    shuffle_in_place(perm, PhiloxStream(philox_key(seed, epoch, PERMUTATION_DOMAIN), PERMUTATION_DOMAIN))
    return perm


def sampler_lengths(src, tgt, max_length):
    """translation_loader.cpp: max(src, tgt) + 1 per example, -1 where the max-length filter drops it."""
    return [max(len(s), len(t)) + 1 if 0 < len(s) < max_length and 0 < len(t) < max_length else -1
            for s, t in zip(src, tgt)]


def default_window(lengths, max_tokens):
    included = [x for x in lengths if x >= 0]
    mean = max(1.0, sum(included) / len(included))
    per_batch = max(1.0, math.floor(max_tokens / mean))
    return int(min(len(lengths), math.ceil(100.0 * per_batch * len(lengths) / len(included))))


def window_batches(lengths, order, start, end, max_tokens):
    """The token batches of window positions [start, end) before their shuffle (load_token_window)."""
    ids = sorted((i for i in order[start:end] if lengths[i] >= 0), key=lambda i: lengths[i])  # stable
    batches, batch = [], []
    for i in ids:
        if batch and (len(batch) + 1) * lengths[i] > max_tokens:
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


def token_batches(lengths, max_tokens, seed, max_epochs):
    """Yields (epoch, example ids) of GlobalBatchSampler with shuffle, from cursor (seed, 0, 0, 0)."""
    n, window = len(lengths), default_window(lengths, max_tokens)
    epoch = 0
    while max_epochs == 0 or epoch < max_epochs:
        order = epoch_permutation(n, seed, epoch)
        epoch_key = philox_key(seed, epoch, BATCH_ORDER_DOMAIN)
        for start in range(0, n, window):
            batches = window_batches(lengths, order, start, min(n, start + window), max_tokens)
            window_key = philox_key(epoch_key, start, BATCH_ORDER_DOMAIN)
            shuffle_in_place(batches, PhiloxStream(window_key, BATCH_ORDER_DOMAIN))
            for batch in batches:
                yield epoch, batch
        epoch += 1


def pad_rows(rows, pad_id):
    """Right-padded (B, L) i64 tensor, L the longest row (at least 1)."""
    out = np.full((len(rows), max(1, max(len(r) for r in rows))), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return torch.from_numpy(out)


def collate(ids, src, tgt, data):
    """src + eos, bos + tgt, tgt + eos, each (B, L) padded."""
    return (pad_rows([src[i] + [data.eos_id] for i in ids], data.pad_id),
            pad_rows([[data.bos_id] + tgt[i] for i in ids], data.pad_id),
            pad_rows([tgt[i] + [data.eos_id] for i in ids], data.pad_id))


def epoch_statistics(lengths, src, tgt, max_tokens, seed):
    """Batches, examples per batch and padding of epoch 0 (from lengths alone, no shard read)."""
    n, window = len(lengths), default_window(lengths, max_tokens)
    order = epoch_permutation(n, seed, 0)
    batches = [b for start in range(0, n, window)
               for b in window_batches(lengths, order, start, min(n, start + window), max_tokens)]
    real = sum(len(src[i]) + len(tgt[i]) + 2 for b in batches for i in b)
    padded = sum(len(b) * (max(len(src[i]) for i in b) + max(len(tgt[i]) for i in b) + 2) for b in batches)
    return len(batches), sum(map(len, batches)) / len(batches), padded / len(batches), 1 - real / padded


# ----------------------------------------------------------------------------------------------------------
# Decoding: an incremental decoder over TorchTranslator's layers and decoding.cpp's beam search.

class IncrementalDecoder:
    """TorchTranslator.decode one position at a time with cached self-attention keys/values (fairseq's
    incremental state) and cross-attention keys/values computed once from the memory."""

    def __init__(self, model, memory, pad_mask):  # memory (B, S, d), pad_mask (B, S) bool, True = padding
        self.model, self.length = model, 0
        d, self.heads = model.d_model, model.decoder.layers[0].self_attn.num_heads
        self.mask = torch.zeros(pad_mask.shape, dtype=memory.dtype).masked_fill(pad_mask, float("-inf"))
        self.mask = self.mask[:, None, None, :]  # (B, 1, 1, S) additive key-padding mask
        self.self_kv = [None] * len(model.decoder.layers)  # per layer: k, v (B, H, positions decoded, Dh)
        self.cross_kv = []  # per layer: k, v (B, H, S, Dh) of the memory
        for layer in model.decoder.layers:
            w, b = layer.multihead_attn.in_proj_weight, layer.multihead_attn.in_proj_bias
            self.cross_kv.append((self._heads(F.linear(memory, w[d:2 * d], b[d:2 * d])),
                                  self._heads(F.linear(memory, w[2 * d:], b[2 * d:]))))

    def _heads(self, x):  # (B, L, d) -> (B, H, L, d / H)
        return x.view(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

    def _attend(self, mha, q, k, v, mask):  # q (B, H, 1, Dh), k/v (B, H, L, Dh) -> (B, 1, d)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + mask
        out = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(q.shape[0], 1, -1)
        return mha.out_proj(out)

    def _self_attention(self, i, layer, x):  # x (B, 1, d) -> (B, 1, d); appends to layer i's cache
        mha, d = layer.self_attn, self.model.d_model
        q, k, v = (self._heads(t) for t in F.linear(x, mha.in_proj_weight, mha.in_proj_bias).split(d, -1))
        if self.self_kv[i] is not None:
            k, v = torch.cat([self.self_kv[i][0], k], 2), torch.cat([self.self_kv[i][1], v], 2)
        self.self_kv[i] = (k, v)
        return self._attend(mha, q, k, v, None)

    def _cross_attention(self, i, layer, x):  # x (B, 1, d) -> (B, 1, d)
        mha, d = layer.multihead_attn, self.model.d_model
        q = self._heads(F.linear(x, mha.in_proj_weight[:d], mha.in_proj_bias[:d]))
        return self._attend(mha, q, *self.cross_kv[i], self.mask)

    @staticmethod
    def _feed_forward(layer, x):  # x (B, 1, d) -> (B, 1, d)
        return layer.linear2(layer.activation(layer.linear1(x)))

    def step(self, tokens):
        """tokens (B,) i64, the newest token of every row -> next-token logits (B, V)."""
        m = self.model
        x = m.tgt_table()(tokens[:, None]) * math.sqrt(m.d_model) + m.pe[self.length]
        for i, layer in enumerate(m.decoder.layers):
            if layer.norm_first:
                x = x + self._self_attention(i, layer, layer.norm1(x))
                x = x + self._cross_attention(i, layer, layer.norm2(x))
                x = x + self._feed_forward(layer, layer.norm3(x))
            else:
                x = layer.norm1(x + self._self_attention(i, layer, x))
                x = layer.norm2(x + self._cross_attention(i, layer, x))
                x = layer.norm3(x + self._feed_forward(layer, x))
        if m.decoder.norm is not None:
            x = m.decoder.norm(x)
        self.length += 1
        x = x[:, 0]
        return m.output_proj(x) if m.output_proj is not None else F.linear(x, m.tgt_table().weight)

    def select_rows(self, rows):
        """Keeps batch rows `rows` (i64 (B'')) of every cached tensor, in that order."""
        self.mask = self.mask.index_select(0, rows)
        self.self_kv = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.self_kv]
        self.cross_kv = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.cross_kv]


def check_incremental(model, src, bos_id, steps=4):
    """Raises when the incremental decoder's logits differ from TorchTranslator.decode's (same float32 ops in
    another order: 1e-3 on logits of magnitude ~10 is far above rounding and far below a wrong mask or offset)."""
    memory, pad_mask = model.encode(src)
    dec = IncrementalDecoder(model, memory, pad_mask)
    prefix = torch.full((src.shape[0], 1), bos_id, dtype=torch.int64)
    for _ in range(steps):
        incremental = dec.step(prefix[:, -1])
        full = model.decode(prefix, memory, pad_mask)[:, -1]
        diff = (incremental - full).abs().max().item()
        if not diff <= 1e-3:
            raise RuntimeError(f"incremental decoding differs from the full decoder by {diff} at {dec.length}")
        prefix = torch.cat([prefix, full.argmax(-1, keepdim=True)], 1)


def beam_search(model, src, limits, beam, length_penalty, data):
    """decoding.cpp's beam_search (greedy when beam == 1: the same tokens): src (B, S) -> token lists."""
    memory, pad_mask = model.encode(src)
    dec = IncrementalDecoder(model, memory, pad_mask)
    results = [None] * src.shape[0]
    # Each sentence: [row, limit, beams [(tokens, log_prob)], finished [(tokens, score)]].
    live = [[row, limits[row], [([], 0.0)], []] for row in range(src.shape[0])]
    step = 0
    while live:
        last = [tokens[-1] if tokens else data.bos_id for s in live for tokens, _ in s[2]]
        log_probs = torch.log_softmax(dec.step(torch.tensor(last, dtype=torch.int64)), -1).double()  # (B', V)
        log_probs[:, [data.pad_id, data.bos_id]] = float("-inf")
        vocab = log_probs.shape[1]
        parent_rows, still_live, first = [], [], 0
        length = step + 1
        for s in live:
            row, limit, beams, finished = s
            beam_log_probs = torch.tensor([lp for _, lp in beams], dtype=torch.float64)  # (beams,)
            scores = log_probs[first:first + len(beams)] + beam_log_probs[:, None]  # (beams, V)
            values, flat = torch.topk(scores.view(-1), min(2 * beam, scores.numel()))
            candidates = [(v, i // vocab, i % vocab) for v, i in zip(values.tolist(), flat.tolist()) if v != -math.inf]
            for v, b, token in candidates[:beam]:
                if token == data.eos_id and len(finished) < beam:
                    finished.append((beams[b][0], v / length ** length_penalty))
            nxt, parents = [], []
            if len(finished) < beam:
                for v, b, token in candidates:
                    if token != data.eos_id and len(nxt) < beam:
                        nxt.append((beams[b][0] + [token], v))
                        parents.append(b)
                if length == limit or not nxt:
                    for tokens, v in nxt[:beam - len(finished)]:
                        finished.append((tokens, v / length ** length_penalty))
                    parents = []
            if parents:
                s[2] = nxt
                parent_rows += [first + p for p in parents]
                still_live.append(s)
            else:
                results[row] = max(finished, key=lambda h: h[1])[0]  # the first on ties
            first += len(beams)
        if parent_rows:
            dec.select_rows(torch.tensor(parent_rows, dtype=torch.int64))
        live = still_live
        step += 1
    return results


def budget_batches(order, budget, cost):
    """evaluator.cpp: consecutive groups of `order` with rows * longest cost <= budget."""
    batches, current, longest = [], [], 0
    for i in order:
        if current and max(longest, cost(i)) * (len(current) + 1) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, cost(i))
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def evaluate(model, data, split, config, beam, max_sentences):
    """evaluator.cpp's evaluate_split: teacher-forced loss and nll over every pair, BLEU of the first
    max_sentences (0: all) decoded. Returns a dict with loss, nll, sentences, hypotheses, references, bleu."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    max_len, pad = config["model"]["translator"]["max_positions"], data.pad_id
    src, tgt = data.read(split)
    src = [s[:max_len - 1] + [data.eos_id] for s in src]
    tgt = [t[:max_len - 1] for t in tgt]
    order = sorted(range(len(src)), key=lambda i: max(len(src[i]) - 1, len(tgt[i])))
    loss_sum = nll_sum = tokens = 0.0
    for batch in budget_batches(order, config["eval"]["batch_tokens"], lambda i: len(src[i]) + len(tgt[i]) + 1):
        s = pad_rows([src[i] for i in batch], pad)
        t_in = pad_rows([[data.bos_id] + tgt[i] for i in batch], pad)
        t_out = pad_rows([tgt[i] + [data.eos_id] for i in batch], pad)
        logits = model(s, t_in)
        loss_sum += translation_loss(logits, t_out, pad, config["train"]["label_smoothing"]).item()
        nll_sum += translation_loss(logits, t_out, pad, 0.0).item()
        tokens += (t_out != pad).sum().item()
    n = len(src) if max_sentences == 0 else min(len(src), max_sentences)
    by_length = sorted(range(n), key=lambda i: -len(src[i]))
    e = config["eval"]
    hyp_tokens = [None] * n
    decode_batches = budget_batches(by_length, max(1, e["batch_tokens"] // beam), lambda i: len(src[i]))
    for k, batch in enumerate(decode_batches):
        s = pad_rows([src[i] for i in batch], pad)
        if k == 0:
            check_incremental(model, s[:8], data.bos_id)
        limits = [min(math.floor(e["max_len_a"] * len(src[i]) + e["max_len_b"]), max_len - 1) for i in batch]
        for i, tokens_i in zip(batch, beam_search(model, s, limits, beam, e["length_penalty"], data)):
            hyp_tokens[i] = tokens_i
    hyps = [data.detok(data.tgt_spm, h) for h in hyp_tokens]
    refs = [data.detok(data.tgt_spm, tgt[i]) for i in range(n)]
    model.train(was_training)
    return {"loss": loss_sum / tokens, "nll": nll_sum / tokens, "sentences": n, "hypotheses": hyps,
            "references": refs, "sources": [data.detok(data.src_spm, src[i]) for i in range(n)],
            "bleu": sacrebleu.corpus_bleu(hyps, [refs]), "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------------------
# Training.

def build_model(config, data):
    m = config["model"]["translator"]
    if m["share_embeddings"] and not data.joint:
        raise ConfigError(f"model.translator.share_embeddings: {data.dir} has separate source and target tokenizers")
    torch.manual_seed(config["train"]["seed"])
    return TorchTranslator(data.src_spm.get_piece_size(), data.tgt_spm.get_piece_size(), d_model=m["d_model"],
                           num_heads=m["num_heads"], encoder_layers=m["encoder_layers"],
                           decoder_layers=m["decoder_layers"], d_ff=m["d_ff"], dropout=m["dropout"],
                           attention_dropout=m["attention_dropout"], activation=m["activation"],
                           pre_norm=m["pre_norm"], share_embeddings=m["share_embeddings"],
                           tie_output=m["tie_output"], max_positions=m["max_positions"], pad_id=data.pad_id)


def train(model, data, config, args, metrics):
    """The loop of launcher/trainer.cpp; returns the number of updates done."""
    t, o = config["train"], config["optimizer"]
    stop_step = min(t["max_steps"], args.max_steps) if args.max_steps else t["max_steps"]
    max_seconds = 0.0 if args.max_steps else t["max_minutes"] * 60.0
    src, tgt = data.read(config["data"]["train_split"])
    lengths = sampler_lengths(src, tgt, config["data"]["max_length"])
    if lengths.count(-1) == len(lengths):
        raise ConfigError(f"data.max_length: none of the {len(lengths)} training pairs is left after filtering")
    batches, rows, padded, waste = epoch_statistics(lengths, src, tgt, t["batch_tokens"], t["seed"])
    print(f"data: {len(src)} training pairs, {lengths.count(-1)} longer than data.max_length skipped; epoch 0: "
          f"{batches} batches, {rows:.1f} pairs and {padded:.0f} padded src+tgt tokens per batch, "
          f"{100 * waste:.1f} % padding")
    optimizer = torch.optim.AdamW(model.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                                  weight_decay=o["weight_decay"])
    params = list(model.parameters())
    stream = token_batches(lengths, t["batch_tokens"], t["seed"], t["max_epochs"])
    start, step, stop_reason = time.perf_counter(), 0, "step limit reached"
    window = {"steps": 0, "loss": 0.0, "tokens": 0.0, "seconds": 0.0, "grad_norm": 0.0}
    lr = 0.0
    model.train()
    while step < stop_step:
        step_start = time.perf_counter()
        epoch_and_ids = next(stream, None)
        if epoch_and_ids is None:
            stop_reason = "train.max_epochs reached"
            break
        src_b, tgt_in, tgt_out = collate(epoch_and_ids[1], src, tgt, data)
        lr = lr_at(config["schedule"], t["max_steps"], step + 1, o["lr"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = translation_loss(model(src_b, tgt_in), tgt_out, data.pad_id, t["label_smoothing"])
        tokens = float((tgt_out != data.pad_id).sum())
        (loss_sum / tokens).backward()
        if o["clip_grad_norm"] > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, o["clip_grad_norm"]))
        else:
            norms = [p.grad.norm() for p in params if p.grad is not None]
            grad_norm = float(torch.linalg.vector_norm(torch.stack(norms)))
        loss_value = loss_sum.item()
        if math.isfinite(loss_value) and math.isfinite(grad_norm):
            optimizer.step()
        else:
            print(f"step {step + 1}: non-finite loss {loss_value / tokens} or grad norm {grad_norm}; update skipped")
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seconds = time.perf_counter() - step_start
        for key, value in (("steps", 1), ("loss", loss_value), ("tokens", tokens), ("seconds", seconds),
                           ("grad_norm", grad_norm)):
            window[key] += value
        elapsed = time.perf_counter() - start
        out_of_time = max_seconds > 0 and elapsed >= max_seconds
        if step % config["log"]["every_steps"] == 0 or step == stop_step or out_of_time:
            eta = elapsed / step * (stop_step - step)
            if max_seconds > 0:
                eta = min(eta, max(0.0, max_seconds - elapsed))
            line = {"loss": window["loss"] / window["tokens"], "lr": lr,
                    "tokens_per_s": window["tokens"] / window["seconds"],
                    "step_time_s": window["seconds"] / window["steps"],
                    "grad_norm": window["grad_norm"] / window["steps"]}
            width = len(str(stop_step))
            print(f"step {step:{width}d}/{stop_step} | loss {line['loss']:.3f} | lr {lr:.1e} | "
                  f"{format_rate(line['tokens_per_s'])} tok/s | {line['step_time_s']:.2f} s/step | "
                  f"ETA {format_duration(eta)}", flush=True)
            metrics.write(step, line)
            window = dict.fromkeys(window, 0.0)
        if args.valid and config["eval"]["every_steps"] > 0 and step % config["eval"]["every_steps"] == 0:
            validate(model, data, config, metrics, step)
        if out_of_time:
            stop_reason = "train.max_minutes reached"
            break
    print(f"{stop_reason} at step {step}; {time.perf_counter() - start:.0f} s")
    return step


def validate(model, data, config, metrics, step):
    """Parallax's periodic evaluation: valid loss and BLEU with eval.beam on eval.max_sentences."""
    e = config["eval"]
    r = evaluate(model, data, config["data"]["valid_split"], config, e["beam"], e["max_sentences"])
    print(f"eval  {step} | valid loss {r['loss']:.3f} | ppl {math.exp(r['nll']):.2f} | BLEU {r['bleu'].score:.2f} "
          f"on {r['sentences']} sentences (beam {e['beam']}) | {r['seconds']:.1f} s", flush=True)
    metrics.write(step, {"valid_loss": r["loss"], "valid_ppl": math.exp(r["nll"]), "valid_bleu": r["bleu"].score})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="Parallax config (.pbtxt), e.g. configs/translator_bible_tiny.pbtxt")
    parser.add_argument("--run-dir", required=True, help="output: metrics.jsonl, config.pbtxt, model.pt, hypotheses")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field, as `parallax train --set`")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="stop after N updates, no wall-clock limit (the schedule keeps train.max_steps)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--split", default="test", help="split decoded at the end")
    parser.add_argument("--beam", type=int, default=4, help="beam size of the final decode (1: greedy)")
    parser.add_argument("--max-sentences", type=int, default=0, help="decode the first N sentences only (0: all)")
    parser.add_argument("--valid", action=argparse.BooleanOptionalAction, default=False,
                        help="also Parallax's periodic validation (eval.every_steps, eval.beam, eval.max_sentences)")
    parser.add_argument("--eval-only", action="store_true", help="skip training: decode with <run-dir>/model.pt")
    args = parser.parse_args()
    if args.max_steps < 0 or args.beam < 1 or args.max_sentences < 0 or args.threads < 1:
        parser.error("--max-steps and --max-sentences must be >= 0, --beam and --threads >= 1")
    try:
        run(args)
    except ConfigError as e:
        print(f"train_torch: {e}", file=sys.stderr)
        sys.exit(2)


def run(args):
    """Trains (or loads, --eval-only), then decodes args.split and writes its BLEU, hypotheses and references."""
    config = load_config(args.config, args.overrides, load_schema(os.path.join(REPO, "configs", "parallax.proto")))
    data = TranslationData(config["data"]["dir"])
    torch.set_num_threads(args.threads)
    os.makedirs(args.run_dir, exist_ok=True)
    model = build_model(config, data)
    checkpoint = os.path.join(args.run_dir, "model.pt")
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, vocab "
          f"{data.src_spm.get_piece_size()}/{data.tgt_spm.get_piece_size()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    if args.eval_only:
        if not os.path.isfile(checkpoint):
            raise ConfigError(f"--eval-only: {checkpoint} does not exist (train into {args.run_dir} first)")
        saved = torch.load(checkpoint)
        model.load_state_dict(saved["model"])
        step = saved["step"]
        metrics = Metrics(os.path.join(args.run_dir, "metrics.jsonl"), "a")
    else:
        with open(os.path.join(args.run_dir, "config.pbtxt"), "w", encoding="utf-8") as f:
            f.write(config_text(config) + "\n")
        metrics = Metrics(os.path.join(args.run_dir, "metrics.jsonl"), "w")
        step = train(model, data, config, args, metrics)
        torch.save({"step": step, "model": model.state_dict()}, checkpoint)
        every = config["eval"]["every_steps"]
        if args.valid and (every == 0 or step % every != 0):
            validate(model, data, config, metrics, step)
    r = evaluate(model, data, args.split, config, args.beam, args.max_sentences)
    print(f"{args.split} @ step {step}: loss {r['loss']:.4f} | ppl {math.exp(r['nll']):.2f} | {r['sentences']} "
          f"sentences, beam {args.beam} | {r['seconds']:.1f} s")
    print(r["bleu"])
    for i in range(min(3, r["sentences"])):
        print(f"  src: {r['sources'][i]}\n  ref: {r['references'][i]}\n  hyp: {r['hypotheses'][i]}")
    for kind in ("hypotheses", "references"):
        with open(os.path.join(args.run_dir, f"{args.split}.{kind[:3]}.txt"), "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in r[kind])
    metrics.write(step, {f"{args.split}_loss": r["loss"], f"{args.split}_ppl": math.exp(r["nll"]),
                         f"{args.split}_bleu": r["bleu"].score, "beam": args.beam})


if __name__ == "__main__":
    main()
