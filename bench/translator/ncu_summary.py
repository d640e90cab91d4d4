#!/usr/bin/env python3
# bench/translator/ncu_summary.py: the per-kernel time table of one profiled training step, read from the CSV that
# `ncu --csv --metrics gpu__time_duration.sum` wrote (bench_translator_step --profile-step 1, see scripts/device_check.sh).
"""Sum Nsight Compute's per-kernel durations by kernel family and print the largest.

A family is the kernel's name without its namespace, template arguments and parameter list
("px::cuda::gemm_bias_relu<...>(...)" -> "gemm_bias_relu"); cuBLASLt's kernels keep their own names
("sm90_xmma_gemm_bf16bf16_..." -> "sm90_xmma_gemm_bf16bf16"). Times are ncu's serialised kernel
times (each kernel alone on the GPU), so their sum is the step's device time without overlap or launch gaps.

usage: ncu_summary.py NCU_CSV [--top 25]
"""
import argparse
import collections
import csv
import re
import sys

UNIT_NS = {"nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6, "second": 1e9, "s": 1e9}


def family(name):
    """A short, stable name for a kernel (see the module docstring)."""
    name = re.sub(r"^void\s+", "", name.strip())
    depth, out = 0, []
    for ch in name:  # drop <...> and (...) with their nesting
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    base = "".join(out).split("::")[-1].strip() or name
    # cuBLAS / CUTLASS names carry tile shapes and stages after the data types: keep the first five fields.
    if base.startswith(("sm90_", "sm80_", "cutlass", "nvjet", "ampere_", "sm100_")):
        base = "_".join(base.split("_")[:5])
    return base


def read_rows(path):
    """(kernel name, duration in ns) for every kernel in ncu's CSV (details page or raw page)."""
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]
    reader = csv.DictReader(lines)
    rows = []
    for r in reader:
        if r.get("Metric Name") == "gpu__time_duration.sum":  # details page: one row per kernel and metric
            value, unit = r.get("Metric Value", ""), r.get("Metric Unit", "ns")
        elif "gpu__time_duration.sum" in r:  # raw page: one row per kernel, units in the first data row
            value, unit = r["gpu__time_duration.sum"], "ns"
        else:
            continue
        try:
            ns = float(value.replace(",", "")) * UNIT_NS.get(unit.strip(), 1.0)
        except ValueError:
            continue  # the raw page's units row
        rows.append((r.get("Kernel Name", r.get("Function Name", "?")), ns))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    rows = read_rows(a.csv)
    if not rows:
        sys.exit(f"ncu_summary: no gpu__time_duration.sum rows in {a.csv}")
    total = sum(ns for _, ns in rows)
    by = collections.defaultdict(lambda: [0, 0.0])
    for name, ns in rows:
        by[family(name)][0] += 1
        by[family(name)][1] += ns
    print(f"# {len(rows)} kernels, {total / 1e6:.2f} ms of kernel time in the profiled step (serialised)")
    print(f"# {'family':<48} {'count':>6} {'ms':>9} {'share':>6}")
    for name, (count, ns) in sorted(by.items(), key=lambda kv: -kv[1][1])[:a.top]:
        print(f"  {name[:48]:<48} {count:6d} {ns / 1e6:9.3f} {100 * ns / total:5.1f}%")
    rest = sorted(by.items(), key=lambda kv: -kv[1][1])[a.top:]
    if rest:
        print(f"  {'(' + str(len(rest)) + ' more families)':<48} {sum(c for _, (c, _) in rest):6d} "
              f"{sum(ns for _, (_, ns) in rest) / 1e6:9.3f} {100 * sum(ns for _, (_, ns) in rest) / total:5.1f}%")


if __name__ == "__main__":
    main()
