"""topi.nn conv2d_nchw (plain, grouped, depthwise), pad and pooling against NumPy loops."""

import numpy as np
import pytest
import topi_ref
from util import BACKENDS, assert_close, rand, run_te

from kiln import te, topi

CONVS = [  # (N, C, H, W), (O, KH, KW), stride, padding, dilation, groups
    ((1, 3, 7, 6), (4, 3, 3), 1, 1, 1, 1),
    ((2, 4, 9, 8), (6, 3, 2), 2, (1, 0, 2, 1), 1, 2),
    ((1, 5, 11, 7), (5, 3, 3), (2, 1), (1, 2), 2, 5),   # depthwise
    ((1, 3, 6, 5), (6, 1, 1), 1, 0, 1, 3),              # depthwise, multiplier 2
    ((1, 2, 13, 13), (3, 5, 3), (3, 2), 2, (1, 2), 1),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONVS, ids=str)
def test_conv2d_nchw(case, backend):
    (n, c, h, w), (o, kh, kw), stride, padding, dilation, groups = case
    rng = np.random.default_rng(15)
    x = te.placeholder((n, c, h, w), name="x")
    k = te.placeholder((o, c // groups, kh, kw), name="k")
    xn, kn = rand(rng, (n, c, h, w)), rand(rng, (o, c // groups, kh, kw))
    out = topi.nn.conv2d_nchw(x, k, stride, padding, dilation, groups)
    want = topi_ref.conv2d_nchw(xn, kn, stride, padding, dilation, groups)
    assert_close(run_te(out, {x: xn, k: kn}, backend), want, rtol=1e-5, atol=1e-5)


def test_conv2d_tags_and_pad_stage():
    x, k = te.placeholder((1, 4, 5, 5)), te.placeholder((4, 1, 3, 3))
    dw = topi.nn.conv2d_nchw(x, k, 1, 1, 1, groups=4)
    assert dw.op.tag == "depthwise_conv2d_nchw"
    assert dw.op.input_tensors[0].op.name == "pad"
    plain = topi.nn.conv2d_nchw(x, te.placeholder((2, 4, 3, 3)), 1, 0)
    assert plain.op.tag == "conv2d_nchw" and plain.op.input_tensors[0] == x  # no pad stage


@pytest.mark.parametrize("backend", BACKENDS)
def test_depthwise_conv2d_tvm_layout(backend):
    rng = np.random.default_rng(16)
    x, k = te.placeholder((1, 3, 8, 7), name="x"), te.placeholder((3, 2, 3, 3), name="k")
    xn, kn = rand(rng, (1, 3, 8, 7)), rand(rng, (3, 2, 3, 3))
    out = topi.nn.depthwise_conv2d_nchw(x, k, 2, 1)
    want = topi_ref.conv2d_nchw(xn, kn.reshape(6, 1, 3, 3), 2, 1, 1, groups=3)
    assert_close(run_te(out, {x: xn, k: kn}, backend), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pad(backend):
    rng = np.random.default_rng(17)
    x = te.placeholder((2, 3, 5), name="x")
    xn = rand(rng, (2, 3, 5))
    out = topi.nn.pad(x, (0, 1, 2), (1, 0, 3), pad_value=-7.0)
    assert out.op.tag == "injective"
    want = np.pad(xn, ((0, 1), (1, 0), (2, 3)), constant_values=-7.0)
    np.testing.assert_array_equal(run_te(out, {x: xn}, backend), want)


POOLS = [  # kernel, stride, padding, dilation, ceil_mode
    ((2, 2), (2, 2), 0, 1, False),
    ((3, 3), (2, 2), 1, 1, False),
    ((3, 2), (2, 3), (1, 0, 1, 1), 1, True),
    ((3, 3), (1, 1), 1, 2, False),
    ((2, 3), (3, 2), (1, 1), 1, True),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", POOLS, ids=str)
def test_max_pool2d(case, backend):
    kernel, stride, padding, dilation, ceil_mode = case
    rng = np.random.default_rng(18)
    x = te.placeholder((2, 3, 11, 8), name="x")
    xn = rand(rng, (2, 3, 11, 8))
    out = topi.nn.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    assert out.op.tag == "pool_max"
    want = topi_ref.pool2d(xn, kernel, stride, padding, "max", dilation, ceil_mode)
    np.testing.assert_array_equal(run_te(out, {x: xn}, backend), want.astype("float32"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("case", [c for c in POOLS if c[3] == 1], ids=str)
def test_avg_pool2d(case, include_pad, backend):
    kernel, stride, padding, _, ceil_mode = case
    rng = np.random.default_rng(19)
    x = te.placeholder((1, 2, 11, 8), name="x")
    xn = rand(rng, (1, 2, 11, 8))
    out = topi.nn.avg_pool2d(x, kernel, stride, padding, ceil_mode, include_pad)
    want = topi_ref.pool2d(xn, kernel, stride, padding, "avg", 1, ceil_mode, include_pad)
    assert_close(run_te(out, {x: xn}, backend), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_global_pool_pool2d_and_flatten(backend):
    rng = np.random.default_rng(20)
    x = te.placeholder((2, 3, 5, 7), name="x")
    xn = rand(rng, (2, 3, 5, 7))
    outs = [topi.nn.global_pool(x, "avg"), topi.nn.global_pool(x, "max"),
            topi.nn.pool2d(x, (2, 2), (1, 2), 1, 0, "max"), topi.nn.flatten(x)]
    res = run_te(outs, {x: xn}, backend)
    assert_close(res[0], xn.mean(axis=(2, 3), keepdims=True))
    np.testing.assert_array_equal(res[1], xn.max(axis=(2, 3), keepdims=True))
    want = topi_ref.pool2d(xn, (2, 2), (1, 2), 0, "max")
    np.testing.assert_array_equal(res[2], want.astype("float32"))
    np.testing.assert_array_equal(res[3], xn.reshape(2, -1))
