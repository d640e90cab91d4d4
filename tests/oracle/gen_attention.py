# PyTorch references for scaled_dot_product_attention, MultiheadAttention, the Transformer encoder/decoder
# layers (torch's and DETR's with positions) and the sinusoidal positional encoding, in f64 with dropout 0.
# Torch's parameter names are mapped to Parallax's (see rename).
import math
import os
import sys

import torch

from pxt import write_pxt

B, T, S, D, H, FF = 2, 5, 6, 8, 2, 16


def rename(name, value):
    """Torch name -> [(Parallax name, tensor)]; a cross-attention in-projection splits into q and kv rows."""
    name = name.replace("out_proj.", "out.").replace("linear1.", "ff.fc1.").replace("linear2.", "ff.fc2.")
    cross = name.startswith("multihead_attn.") or name.startswith("cross.")
    name = name.replace("multihead_attn.", "cross_attn.").replace("cross.", "")
    for torch_suffix, suffix in (("in_proj_weight", "weight"), ("in_proj_bias", "bias")):
        if name.endswith(torch_suffix):
            prefix = name[: -len(torch_suffix)]
            if cross:
                return [(prefix + "q." + suffix, value[:D]), (prefix + "kv." + suffix, value[D:])]
            return [(prefix + "qkv." + suffix, value)]
    return [(name, value)]


def randomize(module):
    """Random weights and biases (torch zeroes the attention biases); LayerNorm weights near 1."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))


def padding_mask(length):
    """Batch 0 has no padding, batch 1 its last two positions."""
    mask = torch.zeros(B, length, dtype=torch.bool)
    mask[1, -2:] = True
    return mask


def causal_bool(length):
    return torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)


def record(out, case, module, inputs, call, prefix=""):
    """Runs call(*inputs) on fresh leaves, backward with a random gy; writes sd, inputs, y, gy, input grads
    and parameter grads under Parallax names. `prefix` marks a standalone cross-attention for rename."""
    randomize(module)
    module.train()  # dropout is 0; training keeps torch off its inference fast path
    for k, v in module.state_dict().items():
        for name, t in rename(prefix + k, v):
            out[f"{case}.sd.{name}"] = t.clone()
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    y = call(**leaves)
    gy = torch.randn_like(y)
    y.backward(gy)
    out[f"{case}.y"] = y.detach()
    out[f"{case}.gy"] = gy
    for k, v in leaves.items():
        assert k not in ("y", "gy"), k
        out[f"{case}.{k}"] = v.detach()
        out[f"{case}.g{k}"] = v.grad
    for k, p in module.named_parameters():
        for name, g in rename(prefix + k, p.grad):
            out[f"{case}.grad.{name}"] = g


def attention_cases(out):
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    mask = padding_mask(T)
    for case, causal in (("mha_self_pad", None), ("mha_self_causal_pad", causal_bool(T))):
        mha = torch.nn.MultiheadAttention(D, H, dropout=0.0, batch_first=True)
        record(out, case, mha, {"x": x},
               lambda x: mha(x, x, x, key_padding_mask=mask, attn_mask=causal, need_weights=False)[0])
    out["mha_self.mask"] = mask
    cross = torch.nn.MultiheadAttention(D, H, dropout=0.0, batch_first=True)
    mem_mask = padding_mask(S)
    record(out, "mha_cross_pad", cross, {"x": x, "memory": memory},
           lambda x, memory: cross(x, memory, memory, key_padding_mask=mem_mask, need_weights=False)[0],
           prefix="cross.")
    out["mha_cross.mask"] = mem_mask


def layer_cases(out):
    src, tgt = torch.randn(B, S, D), torch.randn(B, T, D)
    src_mask = padding_mask(S)
    out["layers.src_mask"] = src_mask
    tgt_causal = torch.nn.Transformer.generate_square_subsequent_mask(T)
    for norm in ("post", "pre"):
        for act in ("relu", "gelu"):
            kw = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.0, activation=act, batch_first=True,
                      norm_first=(norm == "pre"))
            enc = torch.nn.TransformerEncoderLayer(**kw)
            record(out, f"enc_{norm}_{act}", enc, {"x": src},
                   lambda x: enc(x, src_key_padding_mask=src_mask))
            dec = torch.nn.TransformerDecoderLayer(**kw)
            record(out, f"dec_{norm}_{act}", dec, {"tgt": tgt, "memory": src},
                   lambda tgt, memory: dec(tgt, memory, tgt_mask=tgt_causal, memory_key_padding_mask=src_mask))


def detr_encoder(layer, x, pos, mask, pre_norm):
    """DETR's TransformerEncoderLayer (forward_post / forward_pre) on torch's layer's modules: positions are
    added to the queries and keys of the self-attention, never to its values."""
    def sa(t):
        return layer.self_attn(t + pos, t + pos, t, key_padding_mask=mask, need_weights=False)[0]

    def ff(t):
        return layer.linear2(torch.relu(layer.linear1(t)))

    if pre_norm:
        x = x + sa(layer.norm1(x))
        return x + ff(layer.norm2(x))
    x = layer.norm1(x + sa(x))
    return layer.norm2(x + ff(x))


def detr_decoder(layer, tgt, memory, query_pos, pos, mask, pre_norm):
    """DETR's TransformerDecoderLayer: query_pos on the self-attention's queries and keys and the
    cross-attention's queries, pos on the cross-attention's keys; no causal mask."""
    def sa(t):
        return layer.self_attn(t + query_pos, t + query_pos, t, need_weights=False)[0]

    def ca(t):
        return layer.multihead_attn(t + query_pos, memory + pos, memory, key_padding_mask=mask,
                                    need_weights=False)[0]

    def ff(t):
        return layer.linear2(torch.relu(layer.linear1(t)))

    if pre_norm:
        tgt = tgt + sa(layer.norm1(tgt))
        tgt = tgt + ca(layer.norm2(tgt))
        return tgt + ff(layer.norm3(tgt))
    tgt = layer.norm1(tgt + sa(tgt))
    tgt = layer.norm2(tgt + ca(tgt))
    return layer.norm3(tgt + ff(tgt))


def detr_cases(out):
    src, tgt = torch.randn(B, S, D), torch.randn(B, T, D)
    pos, query_pos = torch.randn(B, S, D), torch.randn(B, T, D)
    src_mask = padding_mask(S)
    for norm in ("post", "pre"):
        kw = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.0, batch_first=True)
        enc = torch.nn.TransformerEncoderLayer(**kw)
        record(out, f"detr_enc_{norm}", enc, {"x": src, "pos": pos},
               lambda x, pos: detr_encoder(enc, x, pos, src_mask, norm == "pre"))
        dec = torch.nn.TransformerDecoderLayer(**kw)
        record(out, f"detr_dec_{norm}", dec, {"tgt": tgt, "memory": src, "query_pos": query_pos, "pos": pos},
               lambda tgt, memory, query_pos, pos: detr_decoder(dec, tgt, memory, query_pos, pos, src_mask,
                                                                norm == "pre"))


def sdpa(q, k, v, allowed):
    """torch.nn.functional.scaled_dot_product_attention's definition (Debian's torch predates the function):
    softmax(q k^T / sqrt(dh), -inf where not allowed) v, differentiated by torch's autograd."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v


def sdpa_cases(out):
    """Scaled dot-product attention with a key padding mask, and causal with the T queries the last of the
    S positions (bottom-right aligned)."""
    Tq, Sk, dh = 3, 5, 4
    for case, causal in (("sdpa_pad", False), ("sdpa_causal_pad", True)):
        q, k, v = torch.randn(B, H, Tq, dh), torch.randn(B, H, Sk, dh), torch.randn(B, H, Sk, dh)
        pad = padding_mask(Sk)
        allowed = ~pad[:, None, None, :]  # (B, 1, 1, S): True takes part
        if causal:
            later = torch.arange(Sk)[None, :] > torch.arange(Tq)[:, None] + (Sk - Tq)  # (T, S)
            allowed = allowed & ~later
        leaves = {name: t.clone().requires_grad_(True) for name, t in (("q", q), ("k", k), ("v", v))}
        y = sdpa(leaves["q"], leaves["k"], leaves["v"], allowed)
        gy = torch.randn_like(y)
        y.backward(gy)
        out[f"{case}.mask"] = pad
        out[f"{case}.y"], out[f"{case}.gy"] = y.detach(), gy
        for name, t in leaves.items():
            out[f"{case}.{name}"], out[f"{case}.g{name}"] = t.detach(), t.grad


def positional_cases(out):
    for d, max_len in ((8, 20), (7, 12)):
        pos = torch.arange(max_len).unsqueeze(1)
        two_i = torch.arange(0, d, 2)
        angle = pos / torch.pow(10000.0, two_i / d)
        pe = torch.zeros(max_len, d)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, : d // 2])
        out[f"pe_{d}.table"] = pe
    assert math.isclose(out["pe_8.table"][3, 3].item(), math.cos(3 / 10000 ** (2 / 8)))


def main():
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    out = {}
    attention_cases(out)
    layer_cases(out)
    detr_cases(out)
    sdpa_cases(out)
    positional_cases(out)
    write_pxt(os.path.join(sys.argv[1], "attention.pxt"), out)


if __name__ == "__main__":
    main()
