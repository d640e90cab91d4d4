# The PyTorch twin of models/translator/transformer.h (the Translator) built from torch.nn.Transformer*Layer,
# its label-smoothed loss, and the mapping between its state dict and Parallax's parameter names.
"""PyTorch reference of Parallax's Translator.

Used by the oracle generator tests/oracle/gen_translator.py and by the benchmarks under bench/translator/
(which put tests/oracle on sys.path). The architecture matches px::translator::Translator exactly:

* embeddings drawn N(0, d^-1/2) with the pad row zero, scaled by sqrt(d), plus sinusoidal positions
  (a non-persistent buffer), then dropout;
* encoder and decoder stacks of torch.nn.TransformerEncoderLayer / TransformerDecoderLayer with
  batch_first=True and norm_first=pre_norm; pre-norm stacks end in a LayerNorm (encoder.norm, decoder.norm);
* the source padding mask (src == pad_id) is the key padding mask of encoder self-attention and decoder
  cross-attention; the decoder's self-attention is causal;
* logits from output_proj (no bias) or, with tie_output, from the target embedding table.

The layers are applied in a plain loop (not torch.nn.TransformerEncoder, whose nested-tensor path zeroes
padded positions of the memory). Attention dropout is set on each MultiheadAttention separately from the
sublayer dropout, as TranslatorOptions describes.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoid_table(d_model, max_len):
    """(max_len, d): column 2i holds sin(pos / 10000^(2i/d)), column 2i + 1 the matching cos."""
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, two_i / d_model)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return table


class _Stack(nn.Module):
    """`layers` and, for pre-norm, a final `norm`: the names Parallax's encoder and decoder use."""

    def __init__(self, layers, d_model, pre_norm):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model) if pre_norm else None


class TorchTranslator(nn.Module):
    """Encoder-decoder Transformer with the options of px::translator::TranslatorOptions."""

    def __init__(self, src_vocab, tgt_vocab, d_model=512, num_heads=8, encoder_layers=6, decoder_layers=6,
                 d_ff=2048, dropout=0.1, attention_dropout=0.0, activation="relu", pre_norm=False,
                 share_embeddings=False, tie_output=False, max_positions=1024, pad_id=0):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        if share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(f"share_embeddings needs src_vocab == tgt_vocab, got {src_vocab} and {tgt_vocab}")
        self.d_model, self.pad_id, self.pre_norm = d_model, pad_id, pre_norm
        self.share_embeddings, self.tie_output = share_embeddings, tie_output
        if share_embeddings:
            self.embed = self._embedding(src_vocab)
        else:
            self.src_embed = self._embedding(src_vocab)
            self.tgt_embed = self._embedding(tgt_vocab)
        self.register_buffer("pe", sinusoid_table(d_model, max_positions).to(torch.get_default_dtype()),
                             persistent=False)
        self.embed_dropout = nn.Dropout(dropout)
        layer_args = dict(d_model=d_model, nhead=num_heads, dim_feedforward=d_ff, dropout=dropout,
                          activation=activation, batch_first=True, norm_first=pre_norm)
        self.encoder = _Stack([nn.TransformerEncoderLayer(**layer_args) for _ in range(encoder_layers)], d_model,
                              pre_norm)
        self.decoder = _Stack([nn.TransformerDecoderLayer(**layer_args) for _ in range(decoder_layers)], d_model,
                              pre_norm)
        for layer in self.encoder.layers:
            layer.self_attn.dropout = attention_dropout
        for layer in self.decoder.layers:
            layer.self_attn.dropout = attention_dropout
            layer.multihead_attn.dropout = attention_dropout
        self.output_proj = None if tie_output else nn.Linear(d_model, tgt_vocab, bias=False)

    def _embedding(self, vocab):
        table = nn.Embedding(vocab, self.d_model)
        with torch.no_grad():
            nn.init.normal_(table.weight, mean=0.0, std=self.d_model ** -0.5)
            table.weight[self.pad_id].zero_()
        return table

    def src_table(self):
        return self.embed if self.share_embeddings else self.src_embed

    def tgt_table(self):
        return self.embed if self.share_embeddings else self.tgt_embed

    def _embed(self, table, ids):
        """ids (B, L) -> dropout(table(ids) * sqrt(d) + PE[:L]) (B, L, d)"""
        x = table(ids) * math.sqrt(self.d_model) + self.pe[: ids.shape[1]]
        return self.embed_dropout(x)

    def encode(self, src):
        """src (B, S) right-padded -> (memory (B, S, d), pad_mask (B, S) bool, True = padding)"""
        pad_mask = src == self.pad_id
        h = self._embed(self.src_table(), src)
        for layer in self.encoder.layers:
            h = layer(h, src_key_padding_mask=pad_mask)
        if self.encoder.norm is not None:
            h = self.encoder.norm(h)
        return h, pad_mask

    def decode(self, tgt_in, memory, pad_mask):
        """tgt_in (B, T), teacher forced -> logits (B, T, V_tgt)"""
        T = tgt_in.shape[1]
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=tgt_in.device), diagonal=1)
        h = self._embed(self.tgt_table(), tgt_in)
        for layer in self.decoder.layers:
            h = layer(h, memory, tgt_mask=causal, memory_key_padding_mask=pad_mask)
        if self.decoder.norm is not None:
            h = self.decoder.norm(h)
        if self.output_proj is not None:
            return self.output_proj(h)
        return F.linear(h, self.tgt_table().weight)

    def forward(self, src, tgt_in):
        """src (B, S), tgt_in (B, T) -> logits (B, T, V_tgt)"""
        memory, pad_mask = self.encode(src)
        return self.decode(tgt_in, memory, pad_mask)


def loss(logits, tgt_out, pad_id, eps, reduction="sum"):
    """Label-smoothed cross-entropy over non-pad targets: logits (B, T, V), tgt_out (B, T) -> 0-d.
    Each target contributes (1 - eps) * -log p(y) + eps * mean_c(-log p(c)); reduction "sum" or "mean"."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=pad_id,
                           label_smoothing=eps, reduction=reduction)


_TORCH_TO_PX = (("self_attn.out_proj.", "self_attn.out."), ("multihead_attn.out_proj.", "cross_attn.out."),
                ("linear1.", "ff.fc1."), ("linear2.", "ff.fc2."))
_IN_PROJ = (("in_proj_weight", "weight"), ("in_proj_bias", "bias"))


def _to_parallax(name, value, d_model):
    """One torch name -> [(Parallax name, tensor)]; a cross-attention in-projection splits into q and kv rows."""
    for torch_part, px_part in _TORCH_TO_PX:
        name = name.replace(torch_part, px_part)
    for torch_suffix, suffix in _IN_PROJ:
        if name.endswith("self_attn." + torch_suffix):
            return [(name[: -len(torch_suffix)] + "qkv." + suffix, value)]
        if name.endswith("multihead_attn." + torch_suffix):
            prefix = name[: -len("multihead_attn." + torch_suffix)] + "cross_attn."
            return [(prefix + "q." + suffix, value[:d_model]), (prefix + "kv." + suffix, value[d_model:])]
    return [(name, value)]


def parallax_named(model, named_tensors):
    """(torch name, tensor) pairs -> dict of Parallax names; e.g. parallax_named(m, m.named_parameters())
    after .detach(), or gradients: parallax_named(m, ((k, p.grad) for k, p in m.named_parameters()))."""
    out = {}
    for name, value in named_tensors:
        for px_name, t in _to_parallax(name, value, model.d_model):
            out[px_name] = t
    return out


def parallax_state_dict(model):
    """The model's state dict (positions excluded, as in Parallax) under Parallax's parameter names."""
    return parallax_named(model, ((k, v.detach().clone()) for k, v in model.state_dict().items()))


def load_parallax_state_dict(model, state):
    """Copies a dict of Parallax-named tensors into the model; missing or extra keys raise KeyError."""
    expected = set(parallax_named(model, model.state_dict().items()))
    if set(state) != expected:
        raise KeyError(f"missing {sorted(expected - set(state))}, unexpected {sorted(set(state) - expected)}")
    torch_state = {}
    for name, current in model.state_dict().items():
        parts = [state[px_name] for px_name, _ in _to_parallax(name, current, model.d_model)]
        torch_state[name] = torch.cat([torch.as_tensor(p) for p in parts], 0).to(current.dtype)
    model.load_state_dict(torch_state, strict=True)
