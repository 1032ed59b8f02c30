"""On a real GPU (marked `cuda`; run with -m cuda): the seed's GEMMs with the hand-written GPU
schedule against NumPy, device arrays in and out, CUDA-event timing, and whole models (tiny
BERT through both frontends) on the GPU against PyTorch, exported and loaded again."""

import os

import numpy as np
import pytest
import workloads

import kiln
from kiln import te
from kiln.runtime import cuda as rt
from kiln.topi import cuda as tc

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not rt.available(), reason="no CUDA GPU is present")]
# On the emulated GPU (tests/gpu_stub.py: the real driver API over a stand-in driver, kernels run
# by NumPy on the CPU) the GEMM keeps M and the schedules but is narrower, with fewer launches.
EMULATED = bool(os.environ.get("KILN_GPU_STUB"))
M, N, K = (128, 384, 96) if EMULATED else (128, 3072, 768)
NUMBER = 2 if EMULATED else 50


def _seed(wl, **tiles):
    (a, b), (out,), ref = wl(M, N, K)
    s = te.create_schedule(out.op)
    tc.schedule_matmul(s, out, **tiles)
    return kiln.build(s, [a, b, out], target="cuda"), ref


def _rel_err(got, ref) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


@pytest.mark.parametrize("wl", [workloads.matmul, workloads.swish_mm])
@pytest.mark.parametrize("tiles", [dict(tm=8, tn=8, tx=8, ty=8, bk=16),
                                   dict(tm=4, tn=4, tx=16, ty=8, bk=16, pad=False, vec=4),
                                   # tensor cores, 3xTF32: float32 accuracy all the same
                                   dict(tm=4, tn=4, tx=8, ty=16, bk=16, vec=4, splitk=2,
                                        dbuf=1, mma=1)])
def test_seed_gemm_hand_schedule_matches_numpy(wl, tiles):
    f, ref = _seed(wl, **tiles)
    for seed in (0, 1):  # fresh inputs each time, output poisoned first
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((N, K), dtype=np.float32)
        out = np.full((M, N), np.nan, np.float32)
        f(a, b, out)
        want = ref(a.astype(np.float64), b.astype(np.float64))
        assert _rel_err(out, want) <= 1e-5


def test_conv_layer_default_schedule_matches_numpy():
    """A ResNet 3x3 layer with bias and ReLU fused, on the default conv schedule."""
    from kiln import topi
    n, c, hw, o = (1, 16, 14, 16) if EMULATED else (1, 64, 56, 64)
    data = te.placeholder((n, c, hw, hw), name="data")
    kern = te.placeholder((o, c, 3, 3), name="kern")
    bias = te.placeholder((o,), name="bias")
    conv = topi.conv2d_nchw(data, kern, 1, 1)
    out = te.compute(conv.shape, lambda b, f, y, x: te.max(conv[b, f, y, x] + bias[f], 0.0))
    s = te.create_schedule(out.op)
    assert tc.schedule_auto(s, out, "cuda") == "conv"
    f = kiln.build(s, [data, kern, bias, out], target="cuda")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
    w = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    got = np.full((n, o, hw, hw), np.nan, np.float32)
    f(x, w, b, got)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = sum(np.einsum("nchw,oc->nohw", xp[:, :, i:i + hw, j:j + hw], w[:, :, i, j])
               for i in range(3) for j in range(3))
    want = np.maximum(want + b[None, :, None, None], 0)
    assert _rel_err(got, want) <= 1e-5


def test_device_arrays_and_timing():
    f, ref = _seed(workloads.matmul, tm=8, tn=8, tx=8, ty=8, bk=16)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((N, K), dtype=np.float32)
    dev = kiln.cuda(0)
    da, db = kiln.nd.array(a, dev), kiln.nd.array(b, dev)
    dc = kiln.nd.empty((M, N), "float32", dev)
    f(da, db, dc)
    assert _rel_err(dc.numpy(), ref(a.astype(np.float64), b.astype(np.float64))) <= 1e-5
    res = f.time_evaluator(number=NUMBER, repeat=3)(da, db, dc)
    assert len(res.results) == 3 and 1e-6 < res.median < (10 if EMULATED else 1e-2)


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA")
    return torch


def test_torch_tensors_in_and_out():
    torch = _torch_cuda()
    f, ref = _seed(workloads.matmul, tm=4, tn=8, tx=8, ty=8, bk=16)
    a = torch.randn(128, 768, device="cuda")
    b = torch.randn(3072, 768, device="cuda")
    c = torch.empty(128, 3072, device="cuda")
    f(a, b, c)
    torch.cuda.synchronize()
    want = (a.double() @ b.double().T).cpu().numpy()
    assert _rel_err(c.cpu().numpy(), want) <= 1e-5


def _tiny_bert():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from kiln.models import bert_module
    model, cfg = bert_module("bert-tiny")
    ids = torch.from_numpy(np.random.RandomState(0).randint(0, cfg.vocab_size, (1, 16)))
    with torch.no_grad():
        ref = model(ids).numpy()
    return model, ids, ref


def test_tiny_bert_from_pytorch_on_the_gpu(tmp_path):
    model, ids, ref = _tiny_bert()
    graph, params = kiln.frontend.from_pytorch(model, (ids,))
    lib = kiln.graph.build(graph, params, target="cuda")
    (out,) = lib.run(**{lib.input_names[0]: ids.numpy()}).values()
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    (again,) = lib.run(**{lib.input_names[0]: ids.numpy()}).values()  # graph replay
    np.testing.assert_array_equal(again, out)
    loaded = kiln.graph.load(lib.export_library(str(tmp_path / "tiny.cubin")))
    torch = pytest.importorskip("torch")
    dev_ids = ids.cuda() if torch.cuda.is_available() else kiln.nd.array(ids.numpy(),
                                                                          kiln.cuda(0))
    (out2,) = loaded.run(**{loaded.input_names[0]: dev_ids}).values()  # a device input
    np.testing.assert_allclose(out2, ref, atol=1e-4, rtol=1e-4)
    assert loaded.time_evaluator(number=NUMBER, repeat=2)().median > 0


def test_tiny_bert_from_onnx_on_the_gpu(tmp_path):
    onnx = pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    model, ids, ref = _tiny_bert()
    path = str(tmp_path / "tiny.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (ids,), path, dynamo=False, opset_version=17,
                          input_names=["input_ids"], output_names=["last_hidden_state"])
    graph, params = kiln.frontend.from_onnx(onnx.load(path))
    lib = kiln.graph.build(graph, params, target="cuda")
    (out,) = lib.run(input_ids=ids.numpy()).values()
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


def test_a_float16_model_on_the_gpu():
    """float16 in and out, float32 on the device (converted on the host)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    half = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU()).half().eval()
    x = torch.randn(4, 32).half()
    graph, params = kiln.frontend.from_pytorch(half, (x,))
    lib = kiln.graph.build(graph, params, target="cuda")
    (out,) = lib.run(**{lib.input_names[0]: x.numpy()}).values()
    with torch.no_grad():
        ref = half.float()(x.float()).numpy()
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=1e-3, atol=1e-3)
