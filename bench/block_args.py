# bench/block_args.py: the command-line options shared by the ops-block benchmark's PyTorch peer
# (ops_block_torch.py) and its driver (ops_vs_torch.py), so both sides default to the same sizes.
import os


def add_block_args(ap):
    """Threads, repetitions and block sizes (N = B*T rows, C, H heads, V vocab)."""
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PARALLAX_NUM_THREADS", "2")))
    ap.add_argument("--reps", type=int, default=10, help="timed iterations per process")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--C", type=int, default=256)
    ap.add_argument("--H", type=int, default=4)
    ap.add_argument("--V", type=int, default=4096)
    ap.add_argument("--breakdown", action="store_true", help="also time every stage alone")
