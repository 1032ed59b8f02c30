"""Convolution windows as the rows of a matrix (im2col) of a channels-last input.

In: an input already padded and laid out channels-last, xp [N, Hp, Wp, C], and the window
geometry (kernel KH x KW, strides, dilation).
Out: rows [N*OH*OW, KH*KW*C]: row (n, oh, ow) holds the window at (oh*sh, ow*sw) in
(kh, kw, c) order, so that a convolution is the product rows @ W[KH*KW*C, OC] with W the
weight transposed to (kh, kw, c, oc). Every run of C values is contiguous in both tensors
(a vector copy), and so are every 4 adjacent k (the uint8 x int8 products of quantized
convolutions group them for vpdpbusd, te/dot_groups.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from ... import te
from ...errors import ShapeError
from ...te.tensor import Tensor
from ..utils import check_tensor, const_shape

__all__ = ["im2col", "im2col_shape"]


def im2col_shape(xp_shape: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                 dilation: Sequence[int]) -> tuple[int, int, int]:
    """(OH, OW, rows' column count) for a padded channels-last input, or a ShapeError."""
    _, hp, wp, c = (int(d) for d in xp_shape)
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    if min(kh, kw, sh, sw, dh, dw) < 1:
        raise ShapeError(f"im2col: kernel {list(kernel)}, strides {list(strides)} and "
                         f"dilation {list(dilation)} must be positive")
    oh, ow = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise ShapeError(f"im2col: a {kh}x{kw} window (dilation {dh}x{dw}) does not fit the "
                         f"padded input {hp}x{wp}")
    return oh, ow, kh * kw * c


def im2col(xp: Tensor, kernel: Sequence[int], strides: Sequence[int] = (1, 1),
           dilation: Sequence[int] = (1, 1), name: str = "im2col") -> Tensor:
    """rows[N*OH*OW, KH*KW*C] of the padded channels-last xp (module docstring)."""
    check_tensor(xp, "im2col")
    n, _, _, c = const_shape(xp, "im2col")
    kh, kw = (int(k) for k in kernel)
    sh, sw = (int(s) for s in strides)
    dh, dw = (int(d) for d in dilation)
    oh, ow, cols = im2col_shape(xp.shape, (kh, kw), (sh, sw), (dh, dw))

    def f(p, q):
        b, y, x = p // (oh * ow), p // ow % oh, p % ow
        r, s, ch = q // (kw * c), q // c % kw, q % c
        return xp[b, y * sh + r * dh, x * sw + s * dw, ch]
    return te.compute((n * oh * ow, cols), f, name=name, tag="im2col",
                      attrs={"channels": c, "width": ow})
