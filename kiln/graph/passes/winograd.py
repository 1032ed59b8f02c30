"""3x3 convolutions as Winograd F(m x m, 3 x 3) (CPU builds).

In: a Graph after the linear pass. Out: a new Graph where every float32 conv2d with a
constant 3x3 weight, stride 1, dilation 1, one group, padding 1 on every side and input and
output channels that are multiples of `lanes` is
    winograd_output(batch_matmul(winograd_input(pad(transpose(x, NHWC))), U)) [+ bias]
with U = G w G^T computed here, once, in NumPy ([(m+2)^2, IC, OC]). Four kernels instead of
one: the channels-last copy of the padded input (each element gathered once), the input
transform (contiguous channel vectors), (m+2)^2 products [tiles, IC] @ [IC, OC] (the
products' own fast schedules), and the output transform, which writes NCHW and takes the
convolution's epilogue (bias, ReLU: fuse joins the elementwise ops after it).
Tile size m = 4 (36 products per 16 outputs instead of 144), where that still makes at
least `lanes` tiles (56x56, 28x28, 14x14 in ResNet-50); smaller images stay direct: at 7x7
F(2x2, 3x3) made 16 tiles and its weights (16 / 9 of the direct ones, 16 MB at 512
channels) no longer stayed in cache inside the network: 1.2 ms against 1.03 direct.
Why: the direct convolution already runs at ~90% of this machine's multiply-add peak, so
only fewer multiplies make it faster. Measured here, products alone for ResNet-50's 3x3
layers at 210 GFLOPS: 0.28-0.35 ms (m=4) against 1.03-1.17 ms for the direct kernels.
Rounding: F(4x4, 3x3) in float32 differs from the direct sum by a few 1e-6 relative.
"""

from __future__ import annotations

from ...topi.nn.winograd import winograd_weight
from ..ir import Graph, Node
from .conv_gemm import plain_conv
from .rewrite import Rewriter, rewrite

__all__ = ["conv3x3_winograd"]


def conv3x3_winograd(g: Graph, lanes: int = 16) -> Graph:
    """The rewrite in the module docstring (`lanes`: channel counts must be multiples)."""
    def rule(n: Node, rw: Rewriter) -> Node | None:
        if not _fits(n, lanes):
            return None
        m = tile_size(int(n.shape[0]), int(n.shape[2]), int(n.shape[3]), lanes)
        return _winograd(n, rw, m) if m else None
    return rewrite(g, rule)


def _fits(n: Node, lanes: int) -> bool:
    return plain_conv(n, 3, (1, 1, 1, 1)) and \
        int(n.inputs[0].shape[1]) % lanes == 0 and int(n.shape[1]) % lanes == 0


def tile_size(batch: int, h: int, w: int, lanes: int) -> int:
    """4 when an m=4 tiling makes at least `lanes` tiles, else 0 (no rewrite)."""
    return 4 if batch * -(-h // 4) * -(-w // 4) >= lanes else 0


def _winograd(n: Node, rw: Rewriter, m: int) -> Node | None:
    weight = rw.param(n.inputs[1])
    bias = rw.param(n.inputs[2]) if len(n.inputs) > 2 else None
    if weight is None or (len(n.inputs) > 2 and bias is None):
        return None
    batch, oc, h, w = (int(d) for d in n.shape)
    th, tw = -(-h // m), -(-w // m)
    xt = rw.op("transpose", [n.inputs[0]], axes=(0, 2, 3, 1))
    xp = rw.op("pad", [xt], pad_width=((0, 0), (1, th * m + 1 - h), (1, tw * m + 1 - w),
                                       (0, 0)), pad_value=0.0)
    v = rw.op("winograd_input", [xp], tile=m)
    u = rw.const(winograd_weight(weight, m), f"{n.inputs[1].attrs['name']}_winograd{m}")
    out = rw.op("winograd_output", [rw.op("batch_matmul", [v, u])], n.name, tile=m,
                shape=(batch, oc, h, w))
    if bias is not None:
        out = rw.op("add", [out, rw.const(bias.reshape(oc, 1, 1), "bias_chw")])
    return out
