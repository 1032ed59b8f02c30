"""Plain NumPy references for the topi tests (conv2d, pooling, layer norm), written as loops
over output positions so they are easy to trust."""

from __future__ import annotations

import math

import numpy as np

erf = np.vectorize(math.erf, otypes=[np.float64])


def pad4(p) -> tuple:
    if isinstance(p, int):
        return (p, p, p, p)
    return tuple(p) * 2 if len(p) == 2 else tuple(p)


def conv2d_nchw(x, w, stride=1, padding=0, dilation=1, groups=1):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    pt, pl, pb, pr = pad4(padding)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, c, h, wd = xp.shape
    o, cg, kh, kw = w.shape
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (wd - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    opg = o // groups
    for oc in range(o):
        g = oc // opg
        for ky in range(kh):
            for kx in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, ky * dh:ky * dh + sh * (oh - 1) + 1:sh,
                           kx * dw:kx * dw + sw * (ow - 1) + 1:sw]
                out[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, ky, kx])
    return out


def _out(n, k, s, d, lo, hi, ceil_mode):
    span = n + lo + hi - d * (k - 1) - 1
    o = -(-span // s) + 1 if ceil_mode else span // s + 1
    if ceil_mode and (o - 1) * s >= n + lo:
        o -= 1
    return o


def pool2d(x, kernel, stride, padding, pool, dilation=1, ceil_mode=False,
           count_include_pad=True):
    """PyTorch semantics for max / avg pooling (asymmetric padding allowed)."""
    kh, kw = kernel
    sh, sw = stride
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    pt, pl, pb, pr = pad4(padding)
    n, c, h, w = x.shape
    oh = _out(h, kh, sh, dh, pt, pb, ceil_mode)
    ow = _out(w, kw, sw, dw, pl, pr, ceil_mode)
    out = np.zeros((n, c, oh, ow))
    for y in range(oh):
        for z in range(ow):
            ys = [y * sh - pt + r * dh for r in range(kh)]
            zs = [z * sw - pl + r * dw for r in range(kw)]
            yin = [v for v in ys if 0 <= v < h]
            zin = [v for v in zs if 0 <= v < w]
            win = x[:, :, yin][:, :, :, zin].astype(np.float64)
            if pool == "max":
                out[:, :, y, z] = win.max(axis=(2, 3))
                continue
            if count_include_pad:
                cy = min(y * sh - pt + kh, h + pb) - (y * sh - pt)
                cz = min(z * sw - pl + kw, w + pr) - (z * sw - pl)
            else:
                cy, cz = len(yin), len(zin)
            out[:, :, y, z] = win.sum(axis=(2, 3)) / (cy * cz)
    return out


def layer_norm(x, gamma, beta, axes, eps):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    out = (x64 - mean) / np.sqrt(var + eps)
    bshape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    if gamma is not None:
        out = out * gamma.reshape(bshape)
    if beta is not None:
        out = out + beta.reshape(bshape)
    return out
