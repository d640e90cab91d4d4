# Peer of bench_data_reader: h5py (Debian's python3-h5py) reading the same shards in the same order,
# example by example, through the offsets datasets. Prints one JSON line like the C++ side.
import argparse
import json
import os
import re
import time

import h5py
import numpy as np


def shard_files(directory, split):
    text = open(os.path.join(directory, "dataset.pbtxt")).read()
    block = re.search(r'splits \{\s*name: "%s"(.*?)\n\}' % re.escape(split), text, re.S).group(1)
    return [os.path.join(directory, f) for f in re.findall(r'file: "([^"]+)"', block)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--order", required=True, help="int64 example ids written by bench_data_reader --order-out")
    a = p.parse_args()
    t0 = time.perf_counter()
    files = [h5py.File(f, "r") for f in shard_files(a.dir, a.split)]
    translation = files[0].attrs["schema"] in ("parallax.translation", b"parallax.translation")
    if translation:
        cols = [("src_tokens", "src_offsets"), ("tgt_tokens", "tgt_offsets")]
    else:
        cols = [("images", "image_offsets"), ("boxes", "box_offsets"), ("labels", "box_offsets")]
    offsets = [{o: f[o][:] for _, o in cols} for f in files]
    counts = np.array([len(off[cols[0][1]]) - 1 for off in offsets])
    starts = np.concatenate([[0], np.cumsum(counts)])
    order = np.fromfile(a.order, dtype=np.int64)
    nbytes = 0
    for gid in order:
        s = int(np.searchsorted(starts, gid, side="right") - 1)
        i = int(gid - starts[s])
        for data, off in cols:
            o = offsets[s][off]
            x = files[s][data][o[i]:o[i + 1]]
            nbytes += x.nbytes
    seconds = time.perf_counter() - t0
    print(json.dumps({"impl": "h5py", "mode": "read", "examples": int(len(order)), "bytes": int(nbytes),
                      "seconds": round(seconds, 4), "examples_per_s": round(len(order) / seconds, 1),
                      "mb_per_s": round(nbytes / seconds / 1e6, 2)}))


if __name__ == "__main__":
    main()
