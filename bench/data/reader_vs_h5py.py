# Runs bench_data_reader and its h5py peer alternately on one dataset split, several times, and
# prints the median examples/s of each and their ratio (Parallax / h5py; target >= 1).
import argparse
import json
import os
import statistics
import subprocess
import tempfile


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("--build-dir", default=os.path.join(here, "..", "..", "build-bench"))
    p.add_argument("--dir", required=True, help="dataset directory (dataset.pbtxt)")
    p.add_argument("--split", default="train")
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    binary = os.path.join(a.build_dir, "bench", "bench_data_reader")
    with tempfile.TemporaryDirectory() as tmp:
        order = os.path.join(tmp, "order.bin")
        px, py, loader = [], [], []
        for _ in range(a.runs):
            px.append(run([binary, "--dir", a.dir, "--split", a.split, "--order-out", order]))
            py.append(run(["/usr/bin/python3", os.path.join(here, "reader_h5py.py"), "--dir", a.dir,
                           "--split", a.split, "--order", order]))
            loader.append(run([binary, "--dir", a.dir, "--split", a.split, "--mode", "loader"]))
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    print(f"{a.dir} [{a.split}]: {px[0]['examples']} examples, {px[0]['bytes'] / 1e6:.1f} MB per epoch")
    print(f"  parallax read : {med(px, 'examples_per_s'):10.0f} ex/s {med(px, 'mb_per_s'):8.1f} MB/s")
    print(f"  h5py read     : {med(py, 'examples_per_s'):10.0f} ex/s {med(py, 'mb_per_s'):8.1f} MB/s")
    print(f"  parallax loader: {med(loader, 'examples_per_s'):9.0f} ex/s {med(loader, 'batches_per_s'):8.1f} batches/s")
    ratio = med(px, "examples_per_s") / med(py, "examples_per_s")
    print(f"SUMMARY reader_vs_h5py {os.path.basename(os.path.normpath(a.dir))}: ratio {ratio:.2f} "
          f"(parallax/h5py examples/s, median of {a.runs})")


if __name__ == "__main__":
    main()
