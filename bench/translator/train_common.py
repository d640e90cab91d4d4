# bench/translator/train_common.py: what the PyTorch reference trainers (translator/ and detr/train_torch.py) share
# with launcher/trainer.cpp: core/optim/lr_schedule.h's schedules, the progress line's formats, metrics.jsonl records.
"""Schedule, console formats and metrics records of Parallax's trainer, for the PyTorch reference trainers."""
import json
import math


def lr_at(schedule, max_steps, step, base):
    """core/optim/lr_schedule.h: the lr of update `step` (1-based) for a parameter group whose initial lr is base."""
    warmup = schedule["warmup_steps"]
    if schedule["name"] == "inverse_sqrt":
        return 0.0 if step <= 0 else base * min(step / warmup, math.sqrt(warmup / step))
    if schedule["name"] == "cosine":
        if step <= warmup:
            return base * max(step, 0) / warmup
        q = min(1.0, (step - warmup) / (max_steps - warmup))
        low = base * schedule["min_lr_ratio"]
        return low + (base - low) * 0.5 * (1 + math.cos(math.pi * q))
    if schedule["name"] == "step":
        return base * schedule["gamma"] ** (max(step - 1, 0) // schedule["step_size"])
    return base


def format_rate(per_second):
    if not math.isfinite(per_second):
        return "--"
    if per_second < 999.5:
        return f"{per_second:.0f}"
    return f"{per_second / 1e3:.1f}k" if per_second < 999.95e3 else f"{per_second / 1e6:.1f}M"


def format_duration(seconds):
    if not math.isfinite(seconds) or seconds < 0:
        return "--"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    return f"{total // 60}m{total % 60:02d}s" if total < 3600 else f"{total // 3600}h{total % 3600 // 60:02d}m"


class Metrics:
    """<run_dir>/metrics.jsonl records as launcher/metrics.cpp writes them (non-finite values as null)."""

    def __init__(self, path, mode):
        self.file = open(path, mode, encoding="utf-8")

    def write(self, step, values):
        record = {"step": step}
        record.update({k: (v if math.isfinite(v) else None) for k, v in values.items()})
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
