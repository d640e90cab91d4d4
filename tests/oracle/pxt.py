# Writes PXT files: named tensors in a flat binary that tests/common/pxt.h reads.
# Layout: b"PXT1", u32 count, then per tensor: u32 name length, name, u8 dtype, u32 ndim, i64 dims, raw data.
import struct

import numpy as np

# Codes follow px::DType's order: f32, f64, bf16, f16, i32, i64, u8, bool.
_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.int32): 4,
          np.dtype(np.int64): 5, np.dtype(np.uint8): 6, np.dtype(np.bool_): 7}


def write_pxt(path, tensors):
    """tensors: dict name -> numpy array or torch tensor (float16/bfloat16 not supported)."""
    with open(path, "wb") as f:
        f.write(b"PXT1")
        f.write(struct.pack("<I", len(tensors)))
        for name, t in tensors.items():
            if hasattr(t, "detach"):
                t = t.detach().cpu().numpy()
            a = np.require(np.asarray(t), requirements="C")
            if a.dtype not in _CODES:
                raise ValueError(f"{name}: unsupported dtype {a.dtype}")
            raw = name.encode()
            f.write(struct.pack("<I", len(raw)))
            f.write(raw)
            f.write(struct.pack("<BI", _CODES[a.dtype], a.ndim))
            f.write(struct.pack(f"<{a.ndim}q", *a.shape))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
