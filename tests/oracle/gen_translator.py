# PyTorch references for the Translator (tests/oracle/torch_translator.py, f64, dropout 0): memory, logits,
# label-smoothed loss and every parameter gradient for two configurations, plus a 20-step AdamW training run.
import math
import os
import sys

import torch

from pxt import write_pxt
from torch_translator import TorchTranslator, load_parallax_state_dict, loss, parallax_named, parallax_state_dict

VOCAB, D, HEADS, LAYERS, FF = 23, 16, 2, 2, 32
B, S, T = 3, 7, 6
PAD, BOS, EOS, FIRST_WORD = 0, 2, 3, 4
LABEL_SMOOTHING = 0.1

# The translator_vs_torch_test builds the same configurations.
CASES = {
    "post": dict(activation="relu", pre_norm=False, share_embeddings=False, tie_output=False),
    "pre_shared_tied": dict(activation="gelu", pre_norm=True, share_embeddings=True, tie_output=True),
}
TRAIN_STEPS, WARMUP, LR, CLIP = 20, 5, 1e-3, 1.0


def make_model(case):
    return TorchTranslator(VOCAB, VOCAB, d_model=D, num_heads=HEADS, encoder_layers=LAYERS, decoder_layers=LAYERS,
                           d_ff=FF, dropout=0.0, pad_id=PAD, max_positions=32, **CASES[case])


def randomize(model):
    """Random biases and LayerNorm parameters (torch starts them at 0 and 1, which would hide their wiring);
    weights keep their initialisation so the softmaxes stay far from saturation."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))


def batch(generator, src_lengths, tgt_lengths):
    """A reversal task: src = words + eos, tgt_out = the reversed words repeated to tgt_len - 1 tokens + eos,
    tgt_in = bos + tgt_out[:-1]; every row right-padded with PAD. Lengths count eos."""
    src = torch.full((B, S), PAD, dtype=torch.int64)
    tgt_in = torch.full((B, T), PAD, dtype=torch.int64)
    tgt_out = torch.full((B, T), PAD, dtype=torch.int64)
    for b, (ls, lt) in enumerate(zip(src_lengths, tgt_lengths)):
        words = torch.randint(FIRST_WORD, VOCAB, (ls - 1,), generator=generator)
        src[b, : ls - 1], src[b, ls - 1] = words, EOS
        target = torch.cat([words.flip(0).repeat(lt)[: lt - 1], torch.tensor([EOS])])
        tgt_out[b, :lt] = target
        tgt_in[b, 0], tgt_in[b, 1:lt] = BOS, target[:-1]
    return src, tgt_in, tgt_out


def forward_backward_case(out, case, generator):
    """Writes <case>.{sd.*, src, tgt_in, tgt_out, memory, pad_mask, logits, loss, grad.*}."""
    model = make_model(case)
    randomize(model)
    model.train()  # dropout is 0; training keeps torch off its inference fast path
    for name, t in parallax_state_dict(model).items():
        out[f"{case}.sd.{name}"] = t
    src, tgt_in, tgt_out = batch(generator, src_lengths=[7, 4, 2], tgt_lengths=[5, 6, 3])
    memory, pad_mask = model.encode(src)
    logits = model.decode(tgt_in, memory, pad_mask)
    value = loss(logits, tgt_out, PAD, LABEL_SMOOTHING, "sum")
    value.backward()
    out.update({f"{case}.src": src, f"{case}.tgt_in": tgt_in, f"{case}.tgt_out": tgt_out,
                f"{case}.memory": memory.detach(), f"{case}.pad_mask": pad_mask, f"{case}.logits": logits.detach(),
                f"{case}.loss": value.detach()})
    grads = parallax_named(model, ((k, p.grad) for k, p in model.named_parameters()))
    for name, g in grads.items():
        out[f"{case}.grad.{name}"] = g
    return model


def training_run(out, initial_state, generator):
    """20 AdamW steps from `initial_state` (the "post" case) on fixed batches; loss = sum CE / target tokens.
    Writes train.{src,tgt_in,tgt_out}.<k>, train.loss, train.grad_norm, train.lr and train.final.<name>."""
    model = make_model("post")
    load_parallax_state_dict(model, initial_state)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.01)
    losses, norms, lrs = [], [], []
    for k in range(TRAIN_STEPS):
        src_lengths = torch.randint(2, S + 1, (B,), generator=generator).tolist()
        tgt_lengths = [min(ls, T) for ls in src_lengths]
        src, tgt_in, tgt_out = batch(generator, src_lengths, tgt_lengths)
        out.update({f"train.src.{k}": src, f"train.tgt_in.{k}": tgt_in, f"train.tgt_out.{k}": tgt_out})
        opt.zero_grad(set_to_none=True)
        tokens = int((tgt_out != PAD).sum())
        value = loss(model(src, tgt_in), tgt_out, PAD, LABEL_SMOOTHING, "sum") / tokens
        value.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)))
        t = k + 1
        lr = LR * min(t / WARMUP, math.sqrt(WARMUP / t))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        losses.append(value.item())
        lrs.append(lr)
    out["train.loss"] = torch.tensor(losses)
    out["train.grad_norm"] = torch.tensor(norms)
    out["train.lr"] = torch.tensor(lrs)
    for name, t in parallax_state_dict(model).items():
        out[f"train.final.{name}"] = t
    assert losses[-1] < losses[0], losses  # the run learns something, so the comparison is not of noise


def main():
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    generator = torch.Generator().manual_seed(1)
    out = {}
    forward_backward_case(out, "post", generator)
    forward_backward_case(out, "pre_shared_tied", generator)
    initial = {k[len("post.sd."):]: v for k, v in out.items() if k.startswith("post.sd.")}
    training_run(out, initial, generator)
    write_pxt(os.path.join(sys.argv[1], "translator.pxt"), out)


if __name__ == "__main__":
    main()
