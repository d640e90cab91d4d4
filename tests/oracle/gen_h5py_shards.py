# Shards written with h5py by following data/SCHEMA.md (translation, detection, one without fletcher32),
# a file of dtypes Parallax does not read, and h5py_shards.pxt with the expected contents.
import os
import sys

import h5py
import numpy as np

from pxt import write_pxt

TOKENIZER_HASH = "h5py-oracle-tokenizer"
VOCAB_SIZE = 500
CATEGORIES = ["person", "bag", "shoe"]


def dataset(f, name, data, gzip=False, fletcher32=True):
    """A chunked dataset, extendible along dim 0, as SCHEMA.md asks."""
    data = np.asarray(data)
    f.create_dataset(name, data=data, maxshape=(None,) + data.shape[1:], chunks=(64,) + data.shape[1:],
                     fletcher32=fletcher32, compression="gzip" if gzip else None, shuffle=gzip)


def concat(parts, dtype, inner=()):
    """Concatenates examples and returns (data, offsets (N+1,) starting at 0)."""
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    data = np.concatenate([np.asarray(p, dtype).reshape((-1,) + inner) for p in parts])
    return data, offsets


def write_translation(path, rng, fletcher32=True):
    """The simplest form SCHEMA.md allows: h5py's default file format and variable-length strings."""
    n = 40
    src = [rng.integers(0, VOCAB_SIZE, rng.integers(0, 13)) for _ in range(n)]
    tgt = [rng.integers(0, VOCAB_SIZE, rng.integers(1, 13)) for _ in range(n)]
    src[3] = []  # an empty sentence
    src_tokens, src_offsets = concat(src, np.int32)
    tgt_tokens, tgt_offsets = concat(tgt, np.int32)
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "parallax.translation"
        f.attrs["schema_version"] = np.int64(1)
        f.attrs["tokenizer_hash"] = TOKENIZER_HASH
        f.attrs["vocab_size"] = np.int64(VOCAB_SIZE)
        f.attrs["num_examples"] = np.int64(n)
        dataset(f, "src_tokens", src_tokens, gzip=True, fletcher32=fletcher32)
        dataset(f, "src_offsets", src_offsets, fletcher32=fletcher32)
        dataset(f, "tgt_tokens", tgt_tokens, fletcher32=fletcher32)
        dataset(f, "tgt_offsets", tgt_offsets, fletcher32=fletcher32)
    return dict(src_tokens=src_tokens, src_offsets=src_offsets, tgt_tokens=tgt_tokens, tgt_offsets=tgt_offsets)


def write_detection(path, rng):
    n = 10
    shapes = np.stack([rng.integers(1, 20, n), rng.integers(1, 20, n), np.full(n, 3)], axis=1).astype(np.int32)
    images = [rng.integers(0, 256, h * w * c) for h, w, c in shapes]
    counts = rng.integers(0, 4, n)
    counts[0] = 0  # an image without boxes
    boxes = [rng.uniform(0.0, 1.0, (m, 4)) for m in counts]
    labels = [rng.integers(0, len(CATEGORIES), m) for m in counts]
    pixels, image_offsets = concat(images, np.uint8)
    box_data, box_offsets = concat(boxes, np.float32, (4,))
    label_data, _ = concat(labels, np.int32)
    image_ids = rng.integers(0, 1 << 40, n).astype(np.int64)
    # The checksummed form SCHEMA.md recommends: the 1.10 format and fixed-length UTF-8 strings.
    names = [c.encode() for c in CATEGORIES]
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["schema"] = np.bytes_("parallax.detection")
        f.attrs["schema_version"] = np.int64(1)
        f.attrs["category_names"] = np.array(names, dtype=h5py.string_dtype("utf-8", max(map(len, names))))
        f.attrs["num_examples"] = np.int64(n)
        dataset(f, "images", pixels, gzip=True)
        dataset(f, "image_offsets", image_offsets)
        dataset(f, "image_shapes", shapes)
        dataset(f, "boxes", box_data)
        dataset(f, "labels", label_data)
        dataset(f, "box_offsets", box_offsets)
        dataset(f, "image_ids", image_ids)
    return dict(images=pixels, image_offsets=image_offsets, image_shapes=shapes, boxes=box_data, labels=label_data,
                box_offsets=box_offsets, image_ids=image_ids)


def write_types(path):
    """Stored types H5File must read (big-endian, contiguous, fixed-length strings) or reject (f64, i16)."""
    with h5py.File(path, "w") as f:
        f.attrs["fixed"] = np.bytes_(b"hello")
        f.attrs["fixed_list"] = np.array([b"a", b"bcd"], dtype="S3")
        f.attrs["vlen"] = "h\u00e9llo"
        f.attrs["vlen_list"] = ["x", "yz"]
        f.create_dataset("big_endian", data=np.arange(10, dtype=">i4"))
        f.create_dataset("f64", data=np.zeros(4, np.float64))
        f.create_dataset("i16", data=np.zeros(4, np.int16))


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(0)
    expected = write_translation(os.path.join(out, "h5py_translation.h5"), rng)
    expected.update(write_detection(os.path.join(out, "h5py_detection.h5"), rng))
    write_translation(os.path.join(out, "h5py_no_fletcher32.h5"), rng, fletcher32=False)
    write_types(os.path.join(out, "h5py_types.h5"))
    write_pxt(os.path.join(out, "h5py_shards.pxt"), expected)


if __name__ == "__main__":
    main()
