"""The GPU convolution schedule (topi.cuda_conv) without a GPU: kernels run on the emulated GPU
as the CUDA printer emits them (software-pipelined fetches included) against a float64 NumPy
convolution, over strides, dilation, padding, batches, 1x1 and 7x7 windows and tiles that do
not divide the output; NVRTC compiles the default tiles without spills; a residual block runs
through kiln.graph.build on the emulated GPU; the GPU search samples convolution tilings."""

import dataclasses
import random

import numpy as np
import pytest
import simt_vec

import kiln
from kiln import te, topi
from kiln.codegen import cuda as cuda_codegen
from kiln.errors import ScheduleError
from kiln.tir import gpu
from kiln.topi import cuda as tc
from kiln.topi import cuda_conv as tcv

TARGET = "cuda -arch=sm_90"


def _conv_ref(x, w, stride, pad, dil):
    """float64 NCHW convolution by sliding windows."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    o, _, kh, kw = w.shape
    span_h, span_w = (kh - 1) * dil + 1, (kw - 1) * dil + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    win = win[:, :, ::stride, ::stride, ::dil, ::dil]  # n c oh ow kh kw
    return np.einsum("ncyxij,ocij->noyx", win, w.astype(np.float64))


def _conv_kernel(shape, stride, pad, dil=1, epilogue=True):
    n, c, h, w, o, kh, kw = shape
    data = te.placeholder((n, c, h, w), name="data")
    kern = te.placeholder((o, c, kh, kw), name="kern")
    bias = te.placeholder((o,), name="bias")
    conv = topi.conv2d_nchw(data, kern, stride, pad, dil)
    if not epilogue:
        return [data, kern, conv], conv
    out = te.compute(conv.shape, lambda b, f, y, x: te.max(conv[b, f, y, x] + bias[f], 0.0),
                     name="bias_relu")
    return [data, kern, bias, out], out


def _emulate(func, arrays):
    mem = {b.uid: a.reshape(-1) for b, a in zip(func.params, arrays)}
    kernels, workspace = gpu.split_kernels(func, None)
    for b in workspace:
        mem[b.uid] = np.full(max(b.size, 1), np.nan, np.float32)
    for k in kernels:
        simt_vec.run_kernel(dataclasses.replace(k, body=cuda_codegen.device_body(k.body)), mem)
    return arrays[-1], kernels


def _run(shape, stride, pad, dil=1, tiles=None, epilogue=True):
    args, out = _conv_kernel(shape, stride, pad, dil, epilogue)
    s = te.create_schedule(out.op)
    conv = tcv.conv_stage(out)
    assert conv is not None and tc.kernel_kind(out) == "conv"
    tcv.schedule_conv2d(s, out, conv, **(tiles or tcv.conv_tiles(conv, TARGET)))
    func = kiln.lower(s, args)
    rng = np.random.default_rng(sum(shape))
    ins = [rng.standard_normal([int(d.value) for d in t.shape], dtype=np.float32)
           for t in args[:-1]]
    want = _conv_ref(ins[0], ins[1], stride, pad, dil)
    if epilogue:
        want = np.maximum(want + ins[2].astype(np.float64)[None, :, None, None], 0.0)
    got, kernels = _emulate(func, ins + [np.full(want.shape, np.nan, np.float32)])
    return got, want, func, kernels


@pytest.mark.parametrize("shape,stride,pad,dil,tiles", [
    ((1, 16, 14, 14, 32, 3, 3), 1, 1, 1, None),
    ((2, 8, 15, 13, 24, 3, 3), 2, 1, 1, None),                       # batch 2, stride 2, odd
    ((1, 3, 32, 32, 16, 7, 7), 2, 3, 1, None),                       # an RGB stem
    ((1, 32, 8, 8, 64, 1, 1), 1, 0, 1, None),                        # 1x1
    ((1, 8, 12, 12, 8, 3, 3), 1, 2, 2, None),                        # dilation 2
    ((1, 16, 14, 14, 32, 3, 3), 1, 1, 1,
     dict(tf=2, tw=4, ty=2, th=4, tx=4, bc=4, pad=0, dbuf=1)),       # double-buffered
    ((1, 12, 9, 11, 20, 3, 3), 1, 1, 1,
     dict(tf=4, tw=4, ty=2, th=2, tx=8, bc=8, pad=1, dbuf=0)),       # no tile divides
])
def test_conv_kernels_match_numpy_on_the_emulated_gpu(shape, stride, pad, dil, tiles):
    got, want, func, kernels = _run(shape, stride, pad, dil, tiles)
    assert len(kernels) == 1 and kernels[0].shared_bytes > 0
    src = cuda_codegen.render(func, TARGET)
    assert "__shared__" in src and "threadIdx.z" in src
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_a_convolution_written_with_te_compute_takes_the_conv_schedule():
    """TVM's tutorial way: a padding compute and a conv written by hand, operands swapped."""
    data = te.placeholder((1, 6, 9, 9), name="data")
    kern = te.placeholder((10, 6, 3, 3), name="kern")
    padded = te.compute((1, 6, 11, 11), lambda n, c, y, x: te.if_then_else(
        te.all(y >= 1, y < 10, x >= 1, x < 10), data[n, c, y - 1, x - 1], 0.0), name="pad")
    rc, ry, rx = (te.reduce_axis((0, e), name=nm) for e, nm in ((6, "rc"), (3, "ry"), (3, "rx")))
    conv = te.compute((1, 10, 5, 5), lambda n, f, y, x: te.sum(
        kern[f, rc, ry, rx] * padded[n, rc, y * 2 + ry, x * 2 + rx], axis=[rc, ry, rx]),
        name="conv")
    assert tcv.conv_operands(conv) == (padded, kern) and tc.kernel_kind(conv) == "conv"
    s = te.create_schedule(conv.op)
    assert tc.schedule_auto(s, conv, TARGET) == "conv"
    rng = np.random.default_rng(5)
    ins = [rng.standard_normal((1, 6, 9, 9), dtype=np.float32),
           rng.standard_normal((10, 6, 3, 3), dtype=np.float32)]
    got, _ = _emulate(kiln.lower(s, [data, kern, conv]),
                      ins + [np.full((1, 10, 5, 5), np.nan, np.float32)])
    np.testing.assert_allclose(got, _conv_ref(*ins, 2, 1, 1), rtol=2e-5, atol=2e-5)
    transposed = te.compute((1, 10, 5, 5), lambda n, f, y, x: te.sum(
        kern[f, rc, rx, ry] * padded[n, rc, y * 2 + ry, x * 2 + rx], axis=[rc, ry, rx]))
    assert tcv.conv_operands(transposed) is None  # not the layout the schedule assumes


def test_padded_fetches_stay_behind_their_condition_when_pipelined():
    """The printer stages a fetch's global load through registers a step early; a padded
    read (select(inside, data[...], 0)) must keep its condition there, or the load reads out
    of bounds: the emulated GPU raises OutOfBounds for any lane that does."""
    body_src = None
    got, want, func, kernels = _run((1, 4, 6, 6, 8, 3, 3), 1, 1, 1,
                                    dict(tf=2, tw=2, ty=2, th=2, tx=8, bc=1, pad=0, dbuf=0))
    body_src = cuda_codegen.render(func, TARGET)
    assert "_pf[" in body_src  # pipelined: register-staged fetches are there
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)


def test_default_tiles_compile_without_spills_for_sm80_and_sm90():
    nvrtc = pytest.importorskip("kiln.codegen.nvrtc")
    if not nvrtc.available():
        pytest.skip("NVRTC is not installed")
    for shape, stride, pad in (((1, 64, 56, 56, 64, 3, 3), 1, 1),
                               ((1, 3, 224, 224, 64, 7, 7), 2, 3),
                               ((1, 256, 14, 14, 256, 1, 1), 1, 0)):
        args, out = _conv_kernel(shape, stride, pad)
        for arch in ("sm_80", "sm_90"):
            s = te.create_schedule(out.op)
            assert tc.schedule_auto(s, out, f"cuda -arch={arch}") == "conv"
            src = cuda_codegen.render(kiln.lower(s, args), f"cuda -arch={arch}")
            info = nvrtc.ptxas_info(nvrtc.compile_cuda(src, arch))
            assert info and all(v["spill_stores"] == 0 for v in info.values()), (shape, info)


def test_only_plain_convolutions_take_the_conv_schedule():
    data = te.placeholder((1, 8, 10, 10), name="data")
    assert tcv.conv_stage(topi.nn.depthwise_conv2d_nchw(
        data, te.placeholder((8, 1, 3, 3), name="k"), 1, 1)) is None
    grouped = topi.conv2d_nchw(data, te.placeholder((8, 4, 3, 3), name="k"), 1, 1, groups=2)
    assert tcv.conv_stage(grouped) is None and tc.kernel_kind(grouped) != "conv"
    _, out = _conv_kernel((1, 8, 10, 10, 8, 3, 3), 1, 1)
    s = te.create_schedule(out.op)
    with pytest.raises(ScheduleError, match="tile sizes must be positive"):
        tcv.schedule_conv2d(s, out, tf=0)
    with pytest.raises(ScheduleError, match="not an elementwise function of a conv2d"):
        tcv.schedule_conv2d(te.create_schedule(grouped.op), grouped)


def test_default_tiles_keep_the_machine_busy():
    """ResNet's 3x3 layers at batch 1: the chosen tile launches a block on at least 90% of
    an H100-class part's SMs, with a register tile of 2 or more outputs per thread, panels
    within a quarter of an SM's shared memory, and registers under the no-spill budget."""
    from kiln.target import Target
    t = Target(TARGET)
    for shape in ((1, 64, 56, 56, 64, 3, 3), (1, 128, 28, 28, 128, 3, 3)):
        _, out = _conv_kernel(shape, 1, 1)
        conv = tcv.conv_stage(out)
        k = tcv.conv_tiles(conv, t)
        est = tcv.conv_estimate(tcv.conv_geometry(conv), k, t)
        assert est["blocks"] >= 0.9 * t.sm_count and k["tf"] * k["tw"] >= 2, (shape, k, est)
        assert est["registers"] <= tcv.MAX_REGISTERS
        assert est["shared_bytes"] <= t.max_shared_memory_per_sm // 4


def test_gpu_search_samples_conv_tilings_that_compute_the_same_function():
    from kiln.auto_scheduler.gpu.features import FEATURE_NAMES, features
    from kiln.auto_scheduler.gpu.space import GpuSpace
    from kiln.schedule import ComputeDAG
    from kiln.target import Target
    args, _ = _conv_kernel((1, 6, 9, 9, 8, 3, 3), 1, 1)
    space = GpuSpace(ComputeDAG(args), Target(TARGET))
    assert space.kind == "conv" and "convolution" in space.sketch_text()
    assert space.domains["bc"] == (1, 2, 6)
    rng = np.random.default_rng(3)
    ins = [rng.standard_normal([int(d.value) for d in t.shape], dtype=np.float32)
           for t in args[:-1]]
    want = np.maximum(_conv_ref(ins[0], ins[1], 1, 1, 1)
                      + ins[2].astype(np.float64)[None, :, None, None], 0)
    r, checked = random.Random(0), 0
    for cfg in [space.default()] + [space.sample(r) for _ in range(10)]:
        low = space.lowered(cfg, args)
        if low is None:
            continue
        f = dict(zip(FEATURE_NAMES, features(space, cfg, low[1], low[2])))
        assert f["kind_conv"] == 1 and f["model_log2_cycles"] > 0
        out, _ = _emulate(low[1], ins + [np.full(want.shape, np.nan, np.float32)])
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
        checked += 1
    assert checked >= 5


def test_a_residual_block_runs_on_the_emulated_gpu():
    """conv-bn-relu, conv-bn, a strided 1x1 shortcut and the residual add, batch 2, through
    kiln.graph.build(target="cuda"): every plain convolution takes the conv schedule."""
    torch = pytest.importorskip("torch")
    nvrtc = pytest.importorskip("kiln.codegen.nvrtc")
    if not nvrtc.available():
        pytest.skip("NVRTC is not installed")
    import gpu_emulate
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16)
            self.c2, self.b2 = nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
            self.down = nn.Conv2d(8, 16, 1, 2)

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(y)) + self.down(x))

    torch.manual_seed(0)
    model = Block().eval()
    x = torch.randn(2, 8, 11, 11)
    with torch.no_grad():
        want = model(x).numpy()
    graph, params = kiln.frontend.from_pytorch(model, (x,))
    lib = kiln.graph.build(graph, params, target=TARGET)
    convs = [f for f in lib.functions.values() if "conv2d" in f.name]
    assert convs and all("threadIdx.z" in lib.source.split(f"{f.name}_kernel0")[1]
                         .split("\n}\n")[0] for f in convs)
    (got,) = gpu_emulate.emulate(lib, {lib.input_names[0]: x.numpy()}).values()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_gpu_search_tunes_a_conv_task_and_resumes(tmp_path):
    """The search loop on a conv task (fake runner: the loop-IR interpreter checks each
    candidate, an analytical launch model times it): records carry the conv knobs and a
    second sitting measures nothing twice."""
    import json

    from gpu_fake_runner import FakeRunner

    from kiln.auto_scheduler import SearchTask, TuningOptions
    from kiln.auto_scheduler.gpu.search import GpuSearchPolicy
    from kiln.auto_scheduler.measure.record import RecordToFile, load_records
    from kiln.schedule import ComputeDAG

    class Inline:  # renders only: the fake runner needs no cubins
        def build(self, target, sources, plans=None):
            return [("fake.cubin", "ok", "") for _ in sources]

    args, _ = _conv_kernel((1, 2, 4, 4, 4, 3, 3), 1, 1)
    task = SearchTask(compute_dag=ComputeDAG(args), target=TARGET, desc="conv")
    log = str(tmp_path / "conv.json")
    for seed, trials in ((0, 8), (1, 4)):
        policy = GpuSearchPolicy(task, builder=Inline(), runner=FakeRunner(), seed=seed,
                                 population=32)
        best = policy.tune(TuningOptions(num_measure_trials=trials, num_measures_per_round=4,
                                         measure_callbacks=[RecordToFile(log)]))
        assert best["seconds"] < float("inf")
    recs = list(load_records(log))
    assert len(recs) == 12 and all(r.error == "ok" for r in recs)
    configs = [json.dumps(r.meta["gpu_config"], sort_keys=True) for r in recs]
    assert len(set(configs)) == 12 and all('"kind": "conv"' in c for c in configs)
