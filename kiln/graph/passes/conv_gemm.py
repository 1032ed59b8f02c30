"""1x1 convolutions as matrix products over the pixels (CPU builds).

In: a Graph after the linear pass. Out: a new Graph where every conv2d with a 1x1 kernel,
stride 1, no padding and one group, whose H * W pixels are a multiple of `lanes`, is
    reshape(batch_matmul(W[OC, IC], reshape(x, [N, IC, H*W])) + bias[OC, 1], [N, OC, H, W])
and the reshape back to NCHW is moved after the elementwise chain that follows (ReLU, a
residual add: its other operand is viewed as [N, OC, H*W] too), so that chain stays the
product's epilogue. A following 1x1 convolution's reshape of that output then cancels
(simplify), and any other reader takes the NCHW view, which folds into it as index arithmetic.
Why: the convolution schedules vectorize the output channels (the weights packed along them,
an input value broadcast), so each NCHW store is a transpose of the register tile; as a
product over the pixels the input rows and output rows are contiguous vectors and the weight
is the broadcast operand. Measured alone here: 64->256 at 56x56 with a residual 161 -> 173
GFLOPS, 128->512 at 28x28 179 -> 225, 64->64 at 56x56 164 -> 200; at 14x14 and 7x7 (196 and
49 pixels, not multiples of 16) the product is slower (216 -> 131), so those stay convolutions.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ops import OpPattern, pattern
from .rewrite import Rewriter, rewrite

__all__ = ["conv1x1_as_matmul", "conv1x1_channels_last", "has_depthwise", "plain_conv"]


def conv1x1_as_matmul(g: Graph, lanes: int = 16) -> Graph:
    """The rewrite in the module docstring (`lanes`: the pixel count must be a multiple)."""
    made: set = set()  # uids of the NCHW views this pass made (the only ones it moves)

    def rule(n: Node, rw: Rewriter) -> Node | None:
        if n.op == "conv2d":
            return _as_matmul(n, rw, lanes, made)
        if pattern(n) <= OpPattern.BROADCAST and any(i.uid in made for i in n.inputs):
            return _sink(n, rw, made)
        return None
    return rewrite(g, rule)


def has_depthwise(g: Graph) -> bool:
    """Whether g has a depthwise convolution (a MobileNet-like network)."""
    return any(n.op == "conv2d" and int(n.attrs.get("groups", 1)) > 1 and
               int(n.attrs.get("groups", 1)) == int(n.inputs[0].shape[1]) for n in g.nodes())


def conv1x1_channels_last(g: Graph, lanes: int = 16) -> Graph:
    """Every float32 1x1 stride-1 convolution (`lanes` unused: a product takes any width) as
        transpose(reshape(dense(reshape(transpose(x, NHWC), [N*H*W, C]), W[OC, C]) + bias,
                          [N, H, W, OC]), NCHW).
    For networks with depthwise convolutions (graph/passes/__init__ picks this over
    conv1x1_as_matmul there): simplify then cancels the transposes between a 1x1
    convolution, the elementwise ops after it and the depthwise convolution that it feeds
    (which runs channels-last, depthwise_conv2d_nhwc), so MobileNet's blocks run
    channels-last: the 1x1 convolutions as products over the pixels with a packed weight,
    the depthwise ones along contiguous channel vectors, nothing transposed between them."""
    def rule(n: Node, rw: Rewriter) -> Node | None:
        if not plain_conv(n, 1, (0, 0, 0, 0)):
            return None
        weight = rw.param(n.inputs[1])
        bias = rw.param(n.inputs[2]) if len(n.inputs) > 2 else None
        if weight is None or (len(n.inputs) > 2 and bias is None):
            return None
        batch, oc, h, w = (int(d) for d in n.shape)
        xt = rw.op("transpose", [n.inputs[0]], axes=(0, 2, 3, 1))
        rows = rw.op("reshape", [xt], newshape=(batch * h * w, int(xt.shape[3])))
        ins = [rows, rw.const(weight.reshape(oc, -1), f"{n.inputs[1].attrs['name']}_2d")]
        if bias is not None:
            ins.append(n.inputs[2])
        y = rw.op("reshape", [rw.op("dense", ins, n.name)], newshape=(batch, h, w, oc))
        return rw.op("transpose", [y], n.name, axes=(0, 3, 1, 2))
    return rewrite(g, rule)


def plain_conv(n: Node, kernel: int, padding: tuple) -> bool:
    """Whether n is a float32 NCHW conv2d with a constant kernel x kernel weight, stride 1,
    dilation 1, one group and this [t, l, b, r] padding, whose image keeps its size (the
    convolutions the CPU rewrites here and in winograd.py replace)."""
    a = n.attrs
    if n.op != "conv2d" or len(n.inputs) < 2 or n.dtype != "float32" or len(n.shape) != 4:
        return False
    x, w = n.inputs[0], n.inputs[1]
    pad = tuple(int(v) for v in a.get("padding", (0, 0, 0, 0)))
    pad = pad * (4 // len(pad)) if len(pad) in (1, 2) else pad  # [p] / [ph, pw] spellings
    return w.op == "const" and tuple(w.shape[2:]) == (kernel, kernel) and \
        tuple(a.get("strides", (1, 1))) == (1, 1) and pad == tuple(padding) and \
        tuple(a.get("dilation", (1, 1))) == (1, 1) and int(a.get("groups", 1)) == 1 and \
        tuple(x.shape[2:]) == tuple(n.shape[2:])


def _is_pointwise(n: Node, lanes: int) -> bool:
    return plain_conv(n, 1, (0, 0, 0, 0)) and (n.shape[2] * n.shape[3]) % lanes == 0


def _as_matmul(n: Node, rw: Rewriter, lanes: int, made: set) -> Node | None:
    if not _is_pointwise(n, lanes):
        return None
    x = n.inputs[0]
    batch, oc, h, w = (int(d) for d in n.shape)
    weight = rw.param(n.inputs[1])
    if weight is None:
        return None
    w2 = rw.const(weight.reshape(oc, -1), f"{n.inputs[1].attrs['name']}_2d")
    x3 = rw.op("reshape", [x], newshape=(batch, int(x.shape[1]), h * w))
    out = rw.op("batch_matmul", [w2, x3], n.name)
    if len(n.inputs) > 2:
        bias = rw.param(n.inputs[2])
        if bias is None:
            return None
        out = rw.op("add", [out, rw.const(bias.reshape(oc, 1), "bias_col")])
    view = rw.op("reshape", [out], newshape=tuple(n.shape))
    made.add(view.uid)
    return view


def _sink(n: Node, rw: Rewriter, made: set) -> Node | None:
    """op(view(a), b...) -> view(op(a, b viewed as [N, C, P])) for an elementwise op whose
    result has the view's shape; None when an operand does not flatten that way."""
    view = next(i for i in n.inputs if i.uid in made)
    shape = tuple(view.shape)
    if tuple(n.shape) != shape:
        return None
    flat = tuple(view.inputs[0].shape)
    ins = []
    for i in n.inputs:
        s = tuple(i.shape)
        if i.uid in made:
            ins.append(i.inputs[0])
        elif s == shape:
            ins.append(rw.op("reshape", [i], newshape=flat))
        elif int(np.prod(s)) == 1:
            ins.append(i)  # a scalar
        elif len(s) >= 2 and s[-2:] == (1, 1):  # per channel (a bias, a scale): [.., C, 1]
            ins.append(rw.op("reshape", [i], newshape=s[:-2] + (1,)))
        else:
            return None  # broadcast along H or W: no pixel-axis equivalent
    out = rw.op(n.op, ins, n.name, **n.attrs)
    back = rw.op("reshape", [out], newshape=shape)
    made.add(back.uid)
    return back
