# PyTorch oracle for every op family of core/ops/: seeded NumPy inputs, torch forward and backward with a
# random upstream gradient, written as ops_<family>.pxt for tests/core/ops_vs_torch_*_test.cpp.
#
# Usage: gen_ops.py <outdir>. Every case runs once per dtype (f32, f64) under the prefix <op>/<i>/<dtype>/:
#   in/<name>   inputs (float inputs in the run dtype; ids, masks and indices as given)
#   p/<name>    op parameters (dims, scalars, flags), so the C++ side copies no numbers
#   y/<k>       outputs, in the dtype torch gives for the run dtype
#   gy/<k>      upstream gradient of every float output
#   grad/<name> gradient of every float input (zeros where torch leaves it None)
# The reference values are computed in float64 from the (f32-rounded) inputs, so an f32 case checks px's own
# rounding only; the dtypes come from running the op at the run dtype.
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from pxt import write_pxt

DTYPES = {"f32": np.float32, "f64": np.float64}
TORCH_DTYPES = {0: torch.float32, 1: torch.float64}  # px::DType codes


def is_float(a):
    return np.issubdtype(np.asarray(a).dtype, np.floating)


def as_param(v):
    if isinstance(v, bool):
        return np.array(v, dtype=np.bool_)
    if isinstance(v, int):
        return np.array(v, dtype=np.int64)
    if isinstance(v, float):
        return np.array(v, dtype=np.float64)
    return np.array(v, dtype=np.int64).reshape(-1)  # dims and shapes


class Family:
    """Collects the cases of one op family and writes them to ops_<name>.pxt."""

    def __init__(self, name, seed):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.tensors = {}
        self.counts = {}

    def randn(self, *shape, scale=1.0):
        return self.rng.standard_normal(shape) * scale

    def uniform(self, lo, hi, *shape):
        return self.rng.uniform(lo, hi, shape)

    def case(self, op, fn, inputs, params=None):
        """fn(dict name -> torch tensor, dict params) -> tensor or list of tensors."""
        params = params or {}
        i = self.counts.get(op, 0)
        self.counts[op] = i + 1
        for dt, npdt in DTYPES.items():
            prefix = f"{op}/{i}/{dt}/"
            native = {k: (v.astype(npdt) if is_float(v) else np.asarray(v)) for k, v in inputs.items()}
            with torch.no_grad():
                dtypes = [y.dtype for y in as_list(fn({k: torch.from_numpy(v) for k, v in native.items()}, params))]
            leaves = {k: torch.tensor(v.astype(np.float64) if is_float(v) else v, requires_grad=is_float(v))
                      for k, v in native.items()}
            ys = as_list(fn(leaves, params))
            roots, gys = [], []
            for k, (y, dtype) in enumerate(zip(ys, dtypes)):
                self.tensors[f"{prefix}y/{k}"] = y.detach().to(dtype)
                if y.dtype.is_floating_point:
                    gy = torch.from_numpy(self.rng.standard_normal(tuple(y.shape))).to(dtype)
                    self.tensors[f"{prefix}gy/{k}"] = gy
                    roots.append(y)
                    gys.append(gy.double())
            if roots:
                torch.autograd.backward(roots, gys)
            for k, v in native.items():
                self.tensors[f"{prefix}in/{k}"] = v
                if roots and is_float(v):
                    g = leaves[k].grad
                    self.tensors[f"{prefix}grad/{k}"] = (g if g is not None else torch.zeros(v.shape)).numpy().astype(npdt)
            for k, v in params.items():
                self.tensors[f"{prefix}p/{k}"] = as_param(v)

    def write(self, outdir):
        write_pxt(os.path.join(outdir, f"ops_{self.name}.pxt"), self.tensors)


def as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def all_dims(x, dims):
    return tuple(dims) if dims else tuple(range(x.dim()))


# ---------------------------------------------------------------- matmul, linear
def gen_matmul(f):
    mm = lambda t, p: torch.matmul(t["a"], t["b"])
    for sa, sb in [((3, 5), (5, 4)), ((2, 3, 5), (2, 5, 4)), ((2, 1, 3, 5), (4, 5, 2)), ((3, 5), (2, 5, 4)),
                   ((2, 3, 5), (5, 4)), ((5,), (5, 4)), ((3, 5), (5,)), ((2, 3, 5), (5,)),
                   ((5,), (2, 5, 4))]:
        f.case("matmul", mm, {"a": f.randn(*sa), "b": f.randn(*sb)})
    f.case("matmul_dot", mm, {"a": f.randn(5), "b": f.randn(5)})  # 1-D @ 1-D -> 0-d
    # transposed views of stored operands: a^T @ b and a @ b^T
    f.case("matmul_at", lambda t, p: t["a"].transpose(-1, -2) @ t["b"], {"a": f.randn(5, 3), "b": f.randn(5, 4)})
    f.case("matmul_at", lambda t, p: t["a"].transpose(-1, -2) @ t["b"], {"a": f.randn(2, 5, 3), "b": f.randn(2, 5, 4)})
    f.case("matmul_bt", lambda t, p: t["a"] @ t["b"].transpose(-1, -2), {"a": f.randn(3, 5), "b": f.randn(4, 5)})
    f.case("matmul_bt", lambda t, p: t["a"] @ t["b"].transpose(-1, -2), {"a": f.randn(2, 3, 5), "b": f.randn(2, 4, 5)})

    lin = lambda t, p: F.linear(t["x"], t["w"], t.get("b"))
    for xs in [(4, 5), (2, 4, 5)]:
        f.case("linear", lin, {"x": f.randn(*xs), "w": f.randn(3, 5), "b": f.randn(3)})
        f.case("linear", lin, {"x": f.randn(*xs), "w": f.randn(3, 5)})
    f.case("linear_vec", lin, {"x": f.randn(5), "w": f.randn(3, 5), "b": f.randn(3)})  # 1-D input


# ---------------------------------------------------------------- elementwise
def gen_elementwise(f):
    binary = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
    shapes = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((2, 3, 4), ()), ((4,), (2, 3, 4)),
              ((1, 3, 1), (2, 1, 4))]
    for name, fn in binary.items():
        for sa, sb in shapes:
            b = f.randn(*sb) if name != "div" else f.uniform(0.5, 2.0, *sb) * f.rng.choice([-1.0, 1.0], sb)
            f.case(name, lambda t, p, fn=fn: fn(t["a"], t["b"]), {"a": f.randn(*sa), "b": np.asarray(b)})
    for s in [2.5, -1.25]:
        f.case("add_scalar", lambda t, p: t["x"] + p["s"], {"x": f.randn(3, 4)}, {"s": s})
    for s in [-1.5, 0.5]:
        f.case("mul_scalar", lambda t, p: t["x"] * p["s"], {"x": f.randn(2, 3, 4)}, {"s": s})

    unary = {"neg": torch.neg, "exp": torch.exp, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
             "gelu": lambda x: F.gelu(x, approximate="none")}
    for name, fn in unary.items():
        for shape in [(3, 4), (2, 3, 4)]:
            f.case(name, lambda t, p, fn=fn: fn(t["x"]), {"x": f.randn(*shape, scale=2.0)})
    for name, fn in {"tanh": torch.tanh, "sigmoid": torch.sigmoid}.items():  # saturated
        f.case(name, lambda t, p, fn=fn: fn(t["x"]), {"x": f.randn(3, 4, scale=8.0)})
    x = f.randn(3, 4)
    x[0, :2] = 0.0  # relu'(0) = 0, like torch
    f.case("relu", lambda t, p: torch.relu(t["x"]), {"x": x})
    for name, fn in {"log": torch.log, "sqrt": torch.sqrt}.items():
        for shape in [(3, 4), (2, 3, 4)]:
            f.case(name, lambda t, p, fn=fn: fn(t["x"]), {"x": f.uniform(0.2, 3.0, *shape)})
    for e in [2.0, 3.0, 0.5, -1.5, 2.5]:
        f.case("pow", lambda t, p: torch.pow(t["x"], p["e"]), {"x": f.uniform(0.3, 2.0, 3, 4)}, {"e": e})
    for e in [2.0, 3.0, 1.0, 0.0]:  # integer exponents of negative bases
        f.case("pow", lambda t, p: torch.pow(t["x"], p["e"]), {"x": f.randn(3, 4)}, {"e": e})

    # comparisons (not differentiable) on small integers so that ties occur
    cmp = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge}
    for name, fn in cmp.items():
        for sa, sb in [((3, 4), (3, 4)), ((2, 3, 4), (3, 1))]:
            a, b = f.rng.integers(0, 3, sa).astype(np.float64), f.rng.integers(0, 3, sb).astype(np.float64)
            f.case(name, lambda t, p, fn=fn: fn(t["a"], t["b"]), {"a": a, "b": b})

    # dtype conversion and copies (factory.h)
    for code in TORCH_DTYPES:
        f.case("to_dtype", lambda t, p: t["x"].to(TORCH_DTYPES[p["dtype"]]), {"x": f.randn(3, 4)}, {"dtype": code})
    f.case("clone", lambda t, p: t["x"].clone() * t["w"], {"x": f.randn(3, 4), "w": f.randn(3, 4)})


# ---------------------------------------------------------------- reductions, softmax, layer norm
def gen_reduce(f):
    fns = {"sum": lambda x, d, k: torch.sum(x, all_dims(x, d), keepdim=k),
           "mean": lambda x, d, k: torch.mean(x, all_dims(x, d), keepdim=k),
           "max": lambda x, d, k: torch.amax(x, all_dims(x, d), keepdim=k)}
    for name, fn in fns.items():
        for dims in [[], [1], [0, 2], [-1]]:
            for keep in [False, True]:
                f.case(name, lambda t, p, fn=fn: fn(t["x"], p["dims"], p["keepdim"]), {"x": f.randn(2, 3, 4)},
                       {"dims": dims, "keepdim": keep})
    for dims in [[], [1], [0]]:  # ties share the gradient evenly, like torch.amax
        f.case("max", lambda t, p: fns["max"](t["x"], p["dims"], p["keepdim"]),
               {"x": f.rng.integers(0, 3, (4, 5)).astype(np.float64)}, {"dims": dims, "keepdim": False})
    for dim, keep in [(1, False), (1, True), (-1, False), (0, True)]:
        f.case("argmax", lambda t, p: torch.argmax(t["x"], p["dim"], keepdim=p["keepdim"]), {"x": f.randn(2, 3, 4)},
               {"dim": dim, "keepdim": keep})
    for shape in [(3, 1), (1, 4), (4,), (2, 1, 4), (2, 3, 4), ()]:
        f.case("sum_to", lambda t, p: t["x"].sum_to_size(*p["shape"]) if p["shape"] else t["x"].sum(),
               {"x": f.randn(2, 3, 4)}, {"shape": list(shape)})

    for name, fn in {"softmax": F.softmax, "log_softmax": F.log_softmax}.items():
        for shape, scale in [((7,), 1.0), ((3, 7), 1.0), ((2, 3, 5), 1.0), ((3, 7), 30.0), ((4, 1), 1.0)]:
            f.case(name, lambda t, p, fn=fn: fn(t["x"], dim=-1), {"x": f.randn(*shape, scale=scale)})

    ln = lambda t, p: F.layer_norm(t["x"], t["x"].shape[-1:], t.get("w"), t.get("b"), p["eps"])
    for shape in [(4, 8), (2, 3, 8)]:
        f.case("layer_norm", ln, {"x": f.randn(*shape, scale=3.0) + 1.0, "w": f.randn(8), "b": f.randn(8)},
               {"eps": 1e-5})
        f.case("layer_norm", ln, {"x": f.randn(*shape)}, {"eps": 1e-5})
    f.case("layer_norm", ln, {"x": f.randn(5, 6), "w": f.randn(6)}, {"eps": 1e-5})
    f.case("layer_norm", ln, {"x": f.randn(5, 6) * 0.01, "w": f.randn(6), "b": f.randn(6)}, {"eps": 1e-3})


# ---------------------------------------------------------------- cross-entropy
def gen_loss(f):
    reductions = {0: "none", 1: "mean", 2: "sum"}  # px::Reduction order
    ce = lambda t, p: F.cross_entropy(t["logits"], t["target"], ignore_index=p["ignore_index"],
                                      label_smoothing=p["label_smoothing"], reduction=reductions[p["reduction"]])
    n, c = 6, 5
    for smoothing in [0.0, 0.1]:
        for red in reductions:
            target = f.rng.integers(0, c, n)
            f.case("cross_entropy", ce, {"logits": f.randn(n, c, scale=2.0), "target": target},
                   {"ignore_index": -100, "reduction": red, "label_smoothing": smoothing})
            target = f.rng.integers(0, c, n)
            target[[1, 4]] = -100
            f.case("cross_entropy", ce, {"logits": f.randn(n, c, scale=2.0), "target": target},
                   {"ignore_index": -100, "reduction": red, "label_smoothing": smoothing})
            target = f.rng.integers(0, c, n)
            target[[0, 3]] = 2  # a valid class id used as ignore_index
            f.case("cross_entropy", ce, {"logits": f.randn(n, c, scale=2.0), "target": target},
                   {"ignore_index": 2, "reduction": red, "label_smoothing": smoothing})
    f.case("cross_entropy", ce, {"logits": f.randn(n, c, scale=40.0), "target": f.rng.integers(0, c, n)},
           {"ignore_index": -100, "reduction": 1, "label_smoothing": 0.1})


# ---------------------------------------------------------------- embedding, indexing, join, dropout
def gen_select(f):
    emb = lambda t, p: F.embedding(t["ids"], t["w"])
    f.case("embedding", emb, {"w": f.randn(10, 4), "ids": np.array([[1, 3, 1], [9, 0, 3]], dtype=np.int64)})
    f.case("embedding", emb, {"w": f.randn(10, 4), "ids": np.array([7, 7, 2, 0, 7], dtype=np.int32)})
    f.case("embedding", emb, {"w": f.randn(6, 3), "ids": f.rng.integers(0, 6, (2, 3, 4))})

    mf = lambda t, p: t["x"].masked_fill(t["mask"], p["value"])
    f.case("masked_fill", mf, {"x": f.randn(2, 3, 4), "mask": f.rng.random((2, 3, 4)) < 0.4}, {"value": -1e4})
    f.case("masked_fill", mf, {"x": f.randn(2, 3, 4), "mask": f.rng.random((3, 1)) < 0.5}, {"value": 0.5})
    f.case("masked_fill", mf, {"x": f.randn(2, 3, 4), "mask": f.rng.random((4,)) < 0.5}, {"value": 0.0})
    # the attention pattern: -inf fill then softmax; masked positions get no gradient
    mask = f.rng.random((3, 5)) < 0.4
    mask[:, 0] = False
    f.case("masked_fill_softmax", lambda t, p: F.softmax(mf(t, p), dim=-1), {"x": f.randn(3, 5), "mask": mask},
           {"value": float("-inf")})

    wh = lambda t, p: torch.where(t["cond"], t["a"], t["b"])
    f.case("where", wh, {"cond": f.rng.random((2, 3, 4)) < 0.5, "a": f.randn(2, 3, 4), "b": f.randn(2, 3, 4)})
    f.case("where", wh, {"cond": f.rng.random((3, 1)) < 0.5, "a": f.randn(2, 3, 4), "b": f.randn(4)})
    f.case("where", wh, {"cond": f.rng.random((2, 3, 4)) < 0.5, "a": f.randn(3, 1), "b": f.randn(2, 1, 1)})

    isel = lambda t, p: torch.index_select(t["x"], p["dim"], t["index"])
    f.case("index_select", isel, {"x": f.randn(5, 3), "index": np.array([4, 0, 4, 2])}, {"dim": 0})
    f.case("index_select", isel, {"x": f.randn(2, 5, 3), "index": np.array([1, 1, 3])}, {"dim": 1})
    f.case("index_select", isel, {"x": f.randn(2, 3, 5), "index": np.array([4, 0, 2, 0, 1, 4])}, {"dim": -1})

    ga = lambda t, p: torch.gather(t["x"], p["dim"], t["index"])
    f.case("gather", ga, {"x": f.randn(4, 5), "index": f.rng.integers(0, 5, (4, 3))}, {"dim": 1})
    f.case("gather", ga, {"x": f.randn(4, 5), "index": f.rng.integers(0, 4, (6, 5))}, {"dim": 0})
    f.case("gather", ga, {"x": f.randn(2, 3, 4), "index": f.rng.integers(0, 4, (2, 3, 1))}, {"dim": -1})
    # torch allows an index smaller than x in the other dims too
    f.case("gather_smaller_index", ga, {"x": f.randn(4, 5), "index": f.rng.integers(0, 5, (2, 3))}, {"dim": 1})

    cat = lambda t, p: torch.cat([t[k] for k in sorted(t)], p["dim"])
    stack = lambda t, p: torch.stack([t[k] for k in sorted(t)], p["dim"])
    f.case("cat", cat, {"x0": f.randn(2, 3), "x1": f.randn(1, 3), "x2": f.randn(4, 3)}, {"dim": 0})
    f.case("cat", cat, {"x0": f.randn(2, 1, 4), "x1": f.randn(2, 3, 4)}, {"dim": 1})
    f.case("cat", cat, {"x0": f.randn(2, 3, 1), "x1": f.randn(2, 3, 2), "x2": f.randn(2, 3, 3)}, {"dim": -1})
    for dim in [0, 1, -1]:
        f.case("stack", stack, {"x0": f.randn(2, 3), "x1": f.randn(2, 3), "x2": f.randn(2, 3)}, {"dim": dim})
    split = lambda t, p: torch.split(t["x"], p["size"], p["dim"])
    f.case("split", split, {"x": f.randn(4, 7)}, {"size": 3, "dim": 1})
    f.case("split", split, {"x": f.randn(4, 7)}, {"size": 2, "dim": 0})
    f.case("split", split, {"x": f.randn(2, 3, 5)}, {"size": 5, "dim": -1})

    # dropout: only the identity cases can match torch (the mask comes from px's own Philox stream)
    drop = lambda t, p: F.dropout(t["x"], p["p"], p["training"])
    f.case("dropout", drop, {"x": f.randn(3, 4)}, {"p": 0.0, "training": True})
    f.case("dropout", drop, {"x": f.randn(3, 4)}, {"p": 0.5, "training": False})
    f.case("dropout", drop, {"x": f.randn(3, 4)}, {"p": 1.0, "training": True})  # drops everything
    f.case("dropout_mask", lambda t, p: t["x"] * 1.0, {"x": f.randn(64, 33)}, {"p": 0.3})  # inputs for the mask test


# ---------------------------------------------------------------- views through a following op
def gen_view(f):
    then_mul = lambda view: (lambda t, p: view(t["x"], p) * t["w"])
    f.case("transpose", then_mul(lambda x, p: x.transpose(p["dim0"], p["dim1"])),
           {"x": f.randn(2, 3, 4), "w": f.randn(4, 3, 2)}, {"dim0": 0, "dim1": 2})
    f.case("transpose", then_mul(lambda x, p: x.transpose(p["dim0"], p["dim1"])),
           {"x": f.randn(3, 5), "w": f.randn(5, 3)}, {"dim0": -1, "dim1": -2})
    f.case("permute", then_mul(lambda x, p: x.permute(*p["dims"])),
           {"x": f.randn(2, 3, 4), "w": f.randn(4, 2, 3)}, {"dims": [2, 0, 1]})
    f.case("narrow", then_mul(lambda x, p: x.narrow(p["dim"], p["start"], p["length"])),
           {"x": f.randn(2, 5, 4), "w": f.randn(2, 2, 4)}, {"dim": 1, "start": 2, "length": 2})
    f.case("narrow", then_mul(lambda x, p: x.narrow(p["dim"], p["start"], p["length"])),
           {"x": f.randn(3, 6), "w": f.randn(3, 3)}, {"dim": -1, "start": 1, "length": 3})
    f.case("expand", then_mul(lambda x, p: x.expand(*p["shape"])),
           {"x": f.randn(3, 1), "w": f.randn(2, 3, 4)}, {"shape": [2, 3, 4]})
    f.case("expand", then_mul(lambda x, p: x.expand(*p["shape"])),
           {"x": f.randn(1, 4), "w": f.randn(3, 4)}, {"shape": [3, -1]})
    f.case("reshape", then_mul(lambda x, p: x.reshape(*p["shape"])),
           {"x": f.randn(2, 3, 4), "w": f.randn(6, 4)}, {"shape": [-1, 4]})
    f.case("reshape_t", then_mul(lambda x, p: x.transpose(0, 1).reshape(*p["shape"])),
           {"x": f.randn(3, 4), "w": f.randn(2, 6)}, {"shape": [2, 6]})
    f.case("unsqueeze", then_mul(lambda x, p: x.unsqueeze(p["dim"])),
           {"x": f.randn(3, 4), "w": f.randn(2, 3, 4)}, {"dim": 0})
    f.case("unsqueeze", then_mul(lambda x, p: x.unsqueeze(p["dim"])),
           {"x": f.randn(3, 4), "w": f.randn(3, 4, 2)}, {"dim": -1})
    f.case("squeeze", then_mul(lambda x, p: x.squeeze(p["dim"])),
           {"x": f.randn(3, 1, 4), "w": f.randn(3, 4)}, {"dim": 1})
    f.case("contiguous_t", then_mul(lambda x, p: x.transpose(0, 1).contiguous()),
           {"x": f.randn(3, 4), "w": f.randn(4, 3)})
    # views consumed by ops other than mul
    f.case("transpose_add", lambda t, p: t["x"].transpose(p["dim0"], p["dim1"]) + t["b"],
           {"x": f.randn(4, 3), "b": f.randn(3, 4)}, {"dim0": 0, "dim1": 1})
    f.case("expand_sum", lambda t, p: t["x"].expand(*p["shape"]).sum(p["dims"]), {"x": f.randn(4, 1)},
           {"shape": [3, 4, 5], "dims": [1]})
    f.case("permute_softmax", lambda t, p: F.softmax(t["x"].permute(*p["dims"]), dim=-1), {"x": f.randn(2, 3, 4)},
           {"dims": [2, 0, 1]})
    f.case("narrow_matmul", lambda t, p: t["x"].narrow(p["dim"], p["start"], p["length"]) @ t["b"],
           {"x": f.randn(4, 5), "b": f.randn(3, 2)}, {"dim": 1, "start": 1, "length": 3})

# ---------------------------------------------------------------- vision: conv2d, pooling, interpolation, batch norm
def gen_vision(f):
    conv = lambda t, p: F.conv2d(t["x"], t["w"], t.get("b"), stride=tuple(p["stride"]), padding=tuple(p["padding"]),
                                 dilation=tuple(p["dilation"]))
    for xs, ws, stride, padding, dilation in [
            ((2, 3, 6, 5), (4, 3, 1, 1), [1, 1], [0, 0], [1, 1]),  # pointwise
            ((2, 4, 7, 6), (3, 4, 1, 1), [2, 2], [0, 0], [1, 1]),  # downsample
            ((2, 3, 8, 7), (5, 3, 3, 3), [1, 1], [1, 1], [1, 1]),
            ((1, 3, 9, 10), (4, 3, 3, 3), [2, 2], [1, 1], [1, 1]),
            ((2, 2, 9, 8), (3, 2, 3, 3), [1, 1], [2, 2], [2, 2]),
            ((1, 3, 16, 13), (4, 3, 7, 7), [2, 2], [3, 3], [1, 1]),  # stem
            ((2, 2, 7, 9), (3, 2, 3, 2), [2, 1], [1, 0], [1, 2])]:  # non-square everything
        params = {"stride": stride, "padding": padding, "dilation": dilation}
        f.case("conv2d", conv, {"x": f.randn(*xs), "w": f.randn(*ws) * 0.5, "b": f.randn(ws[0])}, params)
        f.case("conv2d", conv, {"x": f.randn(*xs), "w": f.randn(*ws) * 0.5}, params)

    pool = lambda t, p: F.max_pool2d(t["x"], p["kernel"], p["stride"], p["padding"])
    for xs, kernel, stride, padding in [((2, 3, 9, 8), 3, 2, 1), ((1, 2, 6, 7), 2, 2, 0), ((2, 2, 5, 6), 3, 1, 1),
                                        ((1, 1, 4, 5), 1, 1, 0)]:
        f.case("max_pool2d", pool, {"x": f.randn(*xs)}, {"kernel": kernel, "stride": stride, "padding": padding})
    # ties: the first maximum of a window takes the gradient; all negative: the padding is -inf, not 0
    f.case("max_pool2d", pool, {"x": f.rng.integers(0, 3, (2, 2, 7, 6)).astype(np.float64)},
           {"kernel": 3, "stride": 2, "padding": 1})
    f.case("max_pool2d", pool, {"x": -f.uniform(1, 2, 1, 2, 5, 5)}, {"kernel": 3, "stride": 2, "padding": 1})

    # nearest interpolation: torch's index rule for up/down and non-integer ratios; DETR's mask resize (bool)
    near = lambda t, p: F.interpolate(t["x"], size=tuple(p["size"]), mode="nearest")
    for xs, size in [((2, 3, 5, 4), [7, 10]), ((1, 2, 13, 11), [4, 3]), ((1, 1, 6, 9), [6, 9]), ((1, 2, 3, 5), [6, 10]),
                     ((1, 1, 25, 38), [1, 2])]:
        f.case("interpolate_nearest", near, {"x": f.randn(*xs)}, {"size": size})
    # batch norm with batch statistics (the running statistics, eval and frozen batch norm: gen_resnet.py's modules)
    bn = lambda t, p: F.batch_norm(t["x"], None, None, t.get("w"), t.get("b"), training=True, eps=p["eps"])
    for xs in [(2, 3, 4, 5), (5, 4), (3, 2, 7)]:
        c = xs[1]
        f.case("batch_norm", bn, {"x": f.randn(*xs, scale=3.0) + 1.0, "w": f.randn(c), "b": f.randn(c)}, {"eps": 1e-5})
        f.case("batch_norm", bn, {"x": f.randn(*xs)}, {"eps": 1e-3})

    mask = lambda t, p: F.interpolate(t["mask"][None].float(), size=tuple(p["size"])).to(torch.bool)[0]
    for ms, size in [((2, 37, 50), [2, 2]), ((1, 800, 1199), [25, 38]), ((1, 7, 5), [3, 2])]:
        m = np.zeros(ms, dtype=np.bool_)
        m[0, :, ms[2] * 2 // 3:] = True  # padding on the right of image 0, at the bottom of the last
        m[-1, ms[1] // 2:, :] = True
        f.case("interpolate_mask", mask, {"mask": m}, {"size": size})


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    for seed, (name, gen) in enumerate([("matmul", gen_matmul), ("elementwise", gen_elementwise),
                                        ("reduce", gen_reduce), ("loss", gen_loss), ("select", gen_select),
                                        ("view", gen_view), ("vision", gen_vision)]):
        family = Family(name, seed=1000 + seed)
        gen(family)
        family.write(outdir)


if __name__ == "__main__":
    main()
