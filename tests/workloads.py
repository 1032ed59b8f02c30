"""Small shared workloads (plain te, so they do not depend on topi) with NumPy references."""

from __future__ import annotations

import numpy as np

from kiln import te


def matmul(M=8, N=12, K=7):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], axis=[k]), name="c")
    ref = lambda an, bn: an @ bn.T
    return [a, b], [c], ref


def swish_mm(M=8, N=12, K=7):
    (a, b), (c,), _ = matmul(M, N, K)
    relu6 = te.compute(c.shape, lambda i, j: te.min(te.max(c[i, j] + 3.0, 0.0), 6.0), name="relu6")
    d = te.compute(c.shape, lambda i, j: relu6[i, j] * c[i, j] * 0.1666667, name="d")

    def ref(an, bn):
        cn = an @ bn.T
        return np.clip(cn + 3, 0, 6) * cn * np.float32(0.1666667)
    return [a, b], [d], ref


def conv2d(N=1, C=3, H=7, W=6, F=4, R=3, pad=1, stride=1):
    data = te.placeholder((N, C, H, W), name="data")
    kern = te.placeholder((F, C, R, R), name="kernel")
    Hp, Wp = H + 2 * pad, W + 2 * pad
    padded = te.compute(
        (N, C, Hp, Wp),
        lambda n, c, y, x: te.if_then_else(
            te.all(y >= pad, y < H + pad, x >= pad, x < W + pad),
            data[n, c, y - pad, x - pad], 0.0), name="pad")
    Ho, Wo = (Hp - R) // stride + 1, (Wp - R) // stride + 1
    rc = te.reduce_axis((0, C), name="rc")
    ry = te.reduce_axis((0, R), name="ry")
    rx = te.reduce_axis((0, R), name="rx")
    out = te.compute(
        (N, F, Ho, Wo),
        lambda n, f, y, x: te.sum(padded[n, rc, y * stride + ry, x * stride + rx]
                                  * kern[f, rc, ry, rx], axis=[rc, ry, rx]), name="conv")

    def ref(dn, kn):
        dp = np.pad(dn, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        o = np.zeros((N, F, Ho, Wo), np.float64)
        for ry_ in range(R):
            for rx_ in range(R):
                win = dp[:, :, ry_:ry_ + stride * Ho:stride, rx_:rx_ + stride * Wo:stride]
                o += np.einsum("nchw,fc->nfhw", win, kn[:, :, ry_, rx_])
        return o
    return [data, kern], [out], ref


def softmax(M=5, N=11):
    x = te.placeholder((M, N), name="x")
    k1 = te.reduce_axis((0, N), name="k1")
    mx = te.compute((M,), lambda i: te.max(x[i, k1], axis=[k1]), name="mx")
    ex = te.compute((M, N), lambda i, j: te.exp(x[i, j] - mx[i]), name="ex")
    k2 = te.reduce_axis((0, N), name="k2")
    sm = te.compute((M,), lambda i: te.sum(ex[i, k2], axis=[k2]), name="sm")
    out = te.compute((M, N), lambda i, j: ex[i, j] / sm[i], name="softmax")

    def ref(xn):
        e = np.exp(xn - xn.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return [x], [out], ref


def layer_norm(M=4, N=9, eps=1e-5):
    x = te.placeholder((M, N), name="x")
    g = te.placeholder((N,), name="gamma")
    k1 = te.reduce_axis((0, N), name="k1")
    mean = te.compute((M,), lambda i: te.sum(x[i, k1] / N, axis=[k1]), name="mean")
    k2 = te.reduce_axis((0, N), name="k2")
    var = te.compute((M,), lambda i: te.sum((x[i, k2] - mean[i]) * (x[i, k2] - mean[i]) / N,
                                            axis=[k2]), name="var")
    out = te.compute((M, N), lambda i, j: (x[i, j] - mean[i]) * te.rsqrt(var[i] + eps) * g[j],
                     name="ln")

    def ref(xn, gn):
        m = xn.mean(1, keepdims=True)
        v = ((xn - m) ** 2).mean(1, keepdims=True)
        return (xn - m) / np.sqrt(v + eps) * gn
    return [x, g], [out], ref


ALL = {"matmul": matmul, "swish_mm": swish_mm, "conv2d": conv2d, "softmax": softmax,
       "layer_norm": layer_norm}


def random_inputs(tensors, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, [int(d) for d in t.shape]).astype(t.dtype) for t in tensors]
