# Image files for `parallax detect`'s command-line test, written with zlib: PNGs of every colour type and bit
# depth with their expected size, and broken or unusable ones. Usage: detect_images.py OUT_DIR.
# good_*.png must be detected; bad_*.png must each be refused with one line naming it.
import struct
import sys
import zlib

import numpy as np

out = sys.argv[1]


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(samples, colour_type, bit_depth=8, extra=b"", width=None):
    """samples: (H, W, C) array of the stored samples; extra: chunks between IHDR and IDAT (PLTE, tRNS)."""
    h, w = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = b"".join(b"\0" + samples[y].astype(dtype).tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w if width is None else width, h, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(rows)) +
            chunk(b"IEND", b""))


def write(name, data):
    with open(f"{out}/{name}", "wb") as f:
        f.write(data)


rng = np.random.default_rng(5)
y, x = np.mgrid[0:80, 0:100]
write("good_grey.png", png(((x * 2 + y) % 256)[..., None], colour_type=0))
write("good_rgba.png", png(rng.integers(0, 256, (120, 90, 4)), colour_type=6))
write("good_16bit.png", png(rng.integers(0, 65536, (64, 64, 3)), colour_type=2, bit_depth=16))
palette = rng.integers(0, 256, (16, 3)).astype("u1").tobytes()
write("good_palette.png", png(rng.integers(0, 16, (50, 70, 1)), colour_type=3,
                              extra=chunk(b"PLTE", palette) + chunk(b"tRNS", bytes([0, 128, 255]))))
write("good_wide.png", png(rng.integers(0, 256, (40, 300, 3)), colour_type=2))

valid = png(rng.integers(0, 256, (32, 32, 3)), colour_type=2)
corrupt = bytearray(valid)
corrupt[len(valid) // 2] ^= 0x5A  # inside IDAT: its CRC no longer matches
write("bad_corrupt.png", bytes(corrupt))
write("bad_truncated.png", valid[: len(valid) // 2])
write("bad_empty.png", b"")
write("bad_zero_width.png", png(np.zeros((4, 4, 3)), colour_type=2, width=0))
write("bad_elongated.png", png(rng.integers(0, 256, (1, 400, 3)), colour_type=2))  # a side resizes to 0
write("bad_text.png", b"not an image\n")
