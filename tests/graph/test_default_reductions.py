"""Default CPU schedules of row reductions (softmax, layer norm): one parallel pass over the
rows with every reduction computed inside the row loop as a vector of partial results,
softmax's exp computed once per element, and the results match NumPy (row lengths that the
lanes do not divide, NaN and infinite inputs included)."""

import re

import numpy as np
import pytest

import kiln
from kiln import te, topi
from kiln.graph.default_schedule import default_schedule
from kiln.schedule import ComputeDAG


def _softmax_ref(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _build_softmax(shape):
    x = te.placeholder(shape, name="x")
    y = topi.nn.softmax(x)
    state = default_schedule(ComputeDAG([x, y]), (), "cpu")
    return state, kiln.build(state, [x, y], target="cpu")


def _body(f) -> str:
    return f.source.split("int32_t default_function(")[1].split("\n}\n")[0]


@pytest.mark.parametrize("shape", [(6, 128), (6, 70), (6, 37), (3, 4, 64), (2, 3, 197)])
def test_softmax_default_schedule_is_one_row_pass_and_correct(shape):
    state, f = _build_softmax(shape)
    lanes = kiln.target.Target("cpu").vector_lanes("float32")
    body = _body(f)
    assert body.count("#pragma omp parallel") == 1  # max, exp, sum and scale in one row loop
    at = {st.name: st.attach for st in state.stages if st.attach[0] == "at"}
    assert {"softmax_maxelem", "softmax_exp", "softmax_expsum"} <= set(at)
    lines = body.splitlines()
    exps = [k for k, line in enumerate(lines) if "kiln_exp_f32" in line or "expf(" in line]
    # the vector polynomial (the schedule's width: 16 lanes, two registers on an AVX2 host)
    widths = {int(w) for k in exps for w in re.findall(r"kiln_exp_f32x(\d+)\(", lines[k])}
    assert widths and max(widths) >= lanes
    for k in exps:  # exp once per element: every exp is stored to the row's exp buffer
        assert "softmax_exp[" in lines[k] or "softmax_exp[" in lines[k + 1]
    if shape[-1] >= 2 * lanes:
        assert "softmax_expsum_rf" in body and "softmax_maxelem_rf" in body
        # the row's partial sums fold as a halving tree, not a serial chain of scalar adds
        assert re.search(r"kiln_hadd_f32x(\d+)\(kiln_load_f32x\1\(&softmax_expsum_rf\[", body)
    xn = np.random.default_rng(shape[-1]).standard_normal(shape).astype("float32") * 4
    out = np.empty_like(xn)
    f(xn, out)
    np.testing.assert_allclose(out, _softmax_ref(xn), rtol=1e-5, atol=1e-6)


def test_softmax_default_schedule_special_rows():
    """Masked (-inf) entries, a huge value, a NaN: the same as NumPy, row by row."""
    _, f = _build_softmax((4, 64))
    xn = np.random.default_rng(1).standard_normal((4, 64)).astype("float32")
    xn[0, 10:] = -np.inf
    xn[1, 3] = 1e30
    xn[2, 7] = np.nan
    xn[3] = -np.inf
    out = np.empty_like(xn)
    f(xn, out)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(out, _softmax_ref(xn), rtol=1e-5, atol=1e-6)


def test_layer_norm_default_schedule_is_vectorized_and_correct():
    x = te.placeholder((4, 100), name="x")
    g = te.placeholder((100,), name="g")
    b = te.placeholder((100,), name="b")
    y = topi.nn.layer_norm(x, g, b)
    state = default_schedule(ComputeDAG([x, g, b, y]), (), "cpu")
    assert sum(st.origin == "rfactor" for st in state.stages) == 2
    assert all(st.attach[0] == "at" for st in state.stages if st.compute and
               st.compute.reduce_axis)
    f = kiln.build(state, [x, g, b, y], target="cpu")
    assert _body(f).count("#pragma omp parallel") == 1
    rng = np.random.default_rng(0)
    xn, gn, bn = (rng.standard_normal(s).astype("float32") for s in ((4, 100), (100,), (100,)))
    out = np.empty_like(xn)
    f(xn, gn, bn, out)
    m = xn.mean(-1, keepdims=True)
    ref = (xn - m) / np.sqrt(((xn - m) ** 2).mean(-1, keepdims=True) + 1e-5) * gn + bn
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_dense_with_a_prime_row_count_gets_a_guarded_row_tile():
    """ViT's 197 tokens: the default register tile is as tall as the registers hold (8 rows
    of two vectors with 32 registers, 4 with 16; the last tile overhangs) instead of falling
    back to one row, and computes the product."""
    from kiln.schedule.layout import input_layouts, pack_array
    from kiln.target import as_target
    x = te.placeholder((197, 64), name="x")
    w = te.placeholder((96, 64), name="w")
    y = topi.nn.dense(x, w)
    state = default_schedule(ComputeDAG([x, w, y]), ("w",), "cpu")
    tiled = [st for st in state.stages if st.relations and st.compute and
             st.compute.reduce_axis]
    rows = 8 if as_target("cpu").vector_bytes == 64 else 4
    assert any(it.extent == rows for st in tiled for it in st.iters)
    f = kiln.build(state, [x, w, y], target="cpu")
    rng = np.random.default_rng(0)
    xn, wn = rng.standard_normal((197, 64), dtype=np.float32), \
        rng.standard_normal((96, 64), dtype=np.float32)
    lays = input_layouts(state, [x, w])
    args = [pack_array(a, lay) if lay else a for a, lay in zip((xn, wn), lays)]
    out = np.empty((197, 96), "float32")
    f(*args, out)
    np.testing.assert_allclose(out, xn @ wn.T, rtol=1e-4, atol=1e-4)


def test_layer_norm_over_two_axes_keeps_the_leading_rows():
    x = te.placeholder((3, 8, 40), name="x")
    y = topi.nn.layer_norm(x, None, None, axis=(1, 2))
    state = default_schedule(ComputeDAG([x, y]), (), "cpu")
    f = kiln.build(state, [x, y], target="cpu")
    xn = np.random.default_rng(2).standard_normal((3, 8, 40)).astype("float32")
    out = np.empty_like(xn)
    f(xn, out)
    m = xn.mean((1, 2), keepdims=True)
    ref = (xn - m) / np.sqrt(((xn - m) ** 2).mean((1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_full_width_vector_exp_special_values():
    """The exp of a full-width vector (vscalefps with AVX-512): NaN, +-inf, overflow, the
    denormal range and ordinary values against NumPy."""
    lanes = kiln.target.Target("cpu").vector_lanes("float32")
    n = 4 * lanes
    x = te.placeholder((n,), name="x")
    y = te.compute((n,), lambda i: te.exp(x[i]), name="y")
    s = te.create_schedule(y.op)
    s[y].vectorize(s[y].op.axis[0])
    f = kiln.build(s, [x, y], target="cpu")
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.7, 88.73, 89.0, 100.0, -87.0,
                     -95.0, -103.0, -104.5, -150.0, 1.5, -1.5], np.float32)
    xn = np.resize(vals, n).astype(np.float32)
    out = np.empty_like(xn)
    f(xn, out)
    with np.errstate(over="ignore"):
        want = np.exp(xn.astype(np.float64)).astype(np.float32)
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    np.testing.assert_allclose(out[normal], want[normal], rtol=1e-6)
    np.testing.assert_allclose(out[~normal], want[~normal], rtol=0, atol=1e-44)
    assert np.isnan(out[np.isnan(xn)]).all()


@pytest.mark.parametrize("kind,ceil", [("max", False), ("max", True), ("avg", False)])
def test_pooling_default_schedule_vectorizes_output_columns(kind, ceil):
    """A sliding-window reduction (ResNet's 3x3 / 2 max pool): the outer output axes one
    parallel loop, the window taps next, the output columns innermost as vectors (was one
    fused loop with index arithmetic per element: 19x slower on ResNet's stem)."""
    import torch
    x = te.placeholder((1, 8, 23, 23), name="x")
    if kind == "max":
        y = topi.nn.max_pool2d(x, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), ceil)
        ref = torch.nn.functional.max_pool2d
        args = dict(kernel_size=3, stride=2, padding=1, ceil_mode=ceil)
    else:
        y = topi.nn.avg_pool2d(x, (3, 3), (2, 2), (1, 1, 1, 1), ceil, True)
        ref = torch.nn.functional.avg_pool2d
        args = dict(kernel_size=3, stride=2, padding=1, ceil_mode=ceil, count_include_pad=True)
    state = default_schedule(ComputeDAG([x, y]), (), "cpu")
    f = kiln.build(state, [x, y], target="cpu")
    window = [st for st in state.stages if st.compute and st.compute.reduce_axis][0]
    assert window.iters[-1].annotation == "vectorize" and window.iters[0].annotation == "parallel"
    xn = np.random.default_rng(0).standard_normal((1, 8, 23, 23)).astype("float32")
    want = ref(torch.from_numpy(xn), **args).numpy()
    got = np.empty(want.shape, "float32")
    f(xn, got)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_depthwise_conv_over_56_columns_has_no_lane_by_lane_edge():
    """MobileNetV2's 56-column depthwise conv: two 28-column tiles (16 + 8 + 4 lanes, no
    guard) instead of 32 + a 24-column edge that runs lane by lane inside the fused
    parallel loop (0.75 ms against 0.17); it stride-2 twin reads pairs of columns."""
    for stride, size in ((1, 58), (2, 113)):
        x = te.placeholder((1, 32, size, size), name="x")
        w = te.placeholder((32, 1, 3, 3), name="w")
        y = topi.nn.depthwise_conv2d_nchw(x, w, stride, 0)
        assert tuple(int(d) for d in y.shape[2:]) == (56, 56)
        state = default_schedule(ComputeDAG([x, w, y]), ("w",), "cpu")
        f = kiln.build(state, [x, w, y], target="cpu")
        assert "< 56" not in f.source  # no edge guard on the columns
        rng = np.random.default_rng(stride)
        xn = rng.standard_normal((1, 32, size, size), dtype=np.float32)
        wn = rng.standard_normal((32, 1, 3, 3), dtype=np.float32)
        from kiln.schedule.layout import input_layouts, pack_array
        lays = input_layouts(state, [x, w])
        args = [pack_array(a, lay) if lay else a for a, lay in zip((xn, wn), lays)]
        out = np.empty((1, 32, 56, 56), "float32")
        f(*args, out)
        ref = np.zeros_like(out)
        for i in range(3):
            for j in range(3):
                ref += xn[:, :, i:i + stride * 55 + 1:stride, j:j + stride * 55 + 1:stride] * \
                    wn[:, 0, i, j][None, :, None, None]
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
