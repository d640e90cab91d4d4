# bench/translator/step_args.py: the command-line options and model presets shared by the translator-step
# benchmark's PyTorch peer (step_torch.py) and its driver (step_vs_torch.py); the C++ side takes the same flags.
import os

# Model presets (TranslatorOptions fields); joint vocabularies, shared + tied embeddings.
CONFIGS = {
    "tiny": {"vocab": 8000, "d_model": 256, "heads": 4, "encoder_layers": 3, "decoder_layers": 3, "d_ff": 1024,
             "pre_norm": 1, "share_embeddings": 1, "tie_output": 1},
    "base": {"vocab": 8000, "d_model": 512, "heads": 8, "encoder_layers": 6, "decoder_layers": 6, "d_ff": 2048,
             "pre_norm": 0, "share_embeddings": 1, "tie_output": 1},
    # The paper's base model with a WMT-sized joint vocabulary: the GPU benchmark's default.
    "base32k": {"vocab": 32000, "d_model": 512, "heads": 8, "encoder_layers": 6, "decoder_layers": 6, "d_ff": 2048,
                "pre_norm": 0, "share_embeddings": 1, "tie_output": 1},
}

# Run defaults of --device cuda: ~25,000 target tokens per batch (800 sentences of 26..36 tokens, mean 31, as a
# length-bucketed WMT batch), more warm-up (cuBLASLt heuristics, the caching allocator) and more timed steps.
GPU_RUN_DEFAULTS = {"B": 800, "min_len": 26, "max_len": 36, "warmup": 5, "reps": 10}

# Options forwarded to both sides as --name value (dest with '_' -> flag with '-').
MODEL_KEYS = ("vocab", "d_model", "heads", "encoder_layers", "decoder_layers", "d_ff", "pre_norm",
              "share_embeddings", "tie_output")
RUN_KEYS = ("threads", "warmup", "reps", "seed", "dropout", "attention_dropout", "activation", "B", "min_len",
            "max_len", "label_smoothing", "lr")


def add_run_args(ap):
    """Threads, repetitions, the batch and the training hyperparameters (everything but the model sizes)."""
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PARALLAX_NUM_THREADS", "2")))
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocations, AdamW state)")
    ap.add_argument("--reps", type=int, default=5, help="timed steps per process")
    ap.add_argument("--seed", type=int, default=1, help="batch ids, weights and dropout")
    ap.add_argument("--dropout", type=float, default=0.1, help="embeddings and sublayer outputs (training mode)")
    ap.add_argument("--attention-dropout", type=float, default=0.0)
    ap.add_argument("--activation", default="relu", choices=("relu", "gelu"))
    ap.add_argument("--B", type=int, default=64, help="sentences per batch")
    ap.add_argument("--min-len", type=int, default=26, help="shortest source / target length (tokens)")
    ap.add_argument("--max-len", type=int, default=38, help="longest source / target length (tokens)")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=5e-4)


def add_model_args(ap, preset="tiny"):
    """Model sizes, defaulting to a preset of CONFIGS."""
    c = CONFIGS[preset]
    for key in MODEL_KEYS:
        ap.add_argument("--" + key.replace("_", "-"), type=int, default=c[key])


def flags(values, keys):
    """--name value pairs of `keys` taken from a dict or an argparse namespace."""
    get = values.get if isinstance(values, dict) else lambda k: getattr(values, k)
    out = []
    for key in keys:
        out += ["--" + key.replace("_", "-"), str(get(key))]
    return out
