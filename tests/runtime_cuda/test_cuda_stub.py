"""The GPU path end to end on an emulated GPU (tests/gpu_stub.py): the real cuda-bindings over a
stand-in driver library whose device memory is host memory, kernels run by NumPy, all
threads at once. Each test runs in a child process that loads the stand-in.

What this covers that test_cuda_fake.py (a Python fake in place of the bindings) cannot: the
bindings' own argument marshalling, return tuples and enums; the driver's rules (a current
context per thread, no synchronous calls or allocations while capturing a graph, launch
limits, dynamic shared memory opt-in, the cubin's SM arch); spawned measurement workers; and
the scripts a GPU sitting runs (the `cuda`-marked tests, the GPU benchmarks, `kiln tune` and
`kiln bench --target cuda`). Timings on it mean nothing."""

import json
import os
import re
import subprocess
import sys
import textwrap

import gpu_stub
import pytest

from kiln.codegen import nvrtc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(not nvrtc.available(),
                                reason="needs cuda-bindings and NVRTC (pip install kiln[cuda])")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("stub_gpu")
    try:
        gpu_stub.build(str(root))
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"no C compiler for the stand-in driver: {err}")
    out = gpu_stub.environment(str(root), str(root / "registry"))
    out["KILN_CACHE_DIR"] = str(root / "cache")
    return out


def _run(env, args: list, timeout: float = 400, python: bool = True) -> str:
    res = subprocess.run([sys.executable, *args] if python else args, env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=timeout)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-4000:]
    return text


def test_the_cuda_marked_tests_pass_on_the_emulated_gpu(env):
    text = _run(env, ["-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-rs",
                      "tests/runtime_cuda/test_cuda_gpu.py",
                      "tests/test_gpu_kernels_and_models.py",
                      "tests/auto_scheduler/test_gpu_tune_device.py"])
    passed = int(re.search(r"(\d+) passed", text).group(1))
    skips = re.findall(r"SKIPPED \[(\d+)\].*: (.*)", text)
    assert passed >= 20 and "failed" not in text, text[-3000:]
    assert all(why == "this PyTorch has no CUDA" for _, why in skips), skips


def test_driver_rules_seen_through_kiln(env, tmp_path):
    """A cubin for another arch, a leak check over repeated model runs, and dynamic shared
    memory beyond the opt-in limit, each as kiln reports it; a model's graph captured with
    overlapped (programmatic dependent) launches and without."""
    script = textwrap.dedent("""
        import ctypes, numpy as np, kiln
        from kiln.codegen import nvrtc
        from kiln.errors import DeviceError
        from kiln.runtime import cuda
        src = 'extern "C" __global__ void k(float* a) { a[threadIdx.x] = 1.0f; }'
        try:
            cuda.CuModule(open(nvrtc.compile_cuda(src, "sm_80"), "rb").read())
        except DeviceError as err:
            print("ARCH", err)
        fn = cuda.CuModule(open(nvrtc.compile_cuda(src, "sm_90"), "rb").read()).function("k")
        buf = cuda.DeviceBuffer(4096)
        try:
            fn.launch((1, 1, 1), (32, 1, 1), [buf.ptr], shared_bytes=300 * 1024)
        except DeviceError as err:
            print("SHARED", err)
        from kiln.models import builtin
        import torch
        model, proto, inputs = builtin("bert-tiny", seq_len=8)
        graph, params = kiln.frontend.from_onnx(proto)
        lib = kiln.graph.build(graph, params, target="cuda")
        stub = ctypes.CDLL("libcuda.so.1")
        counts = []
        for _ in range(3):
            (out,) = lib.run(**inputs).values()
            counts.append(stub.kiln_stub_live_allocations())
        with torch.no_grad():
            ref = model(torch.from_numpy(inputs["input_ids"])).numpy()
        print("LIVE", counts, "ERR", float(np.abs(out - ref).max()))
        stub.kiln_stub_overlapped_count.restype = ctypes.c_ulonglong
        kernels = sum(1 for x in lib.meta["launches"] if x[0] == "kernel")
        print("OVERLAP", lib.overlap_launches, stub.kiln_stub_overlapped_count(), kernels)
        lib.overlap_launches = False  # a second graph, plain launches, the same answer
        (plain,) = lib.run(**inputs).values()
        print("PLAIN", bool(np.array_equal(plain, out)), stub.kiln_stub_overlapped_count())
        import threading  # a thread with no current context yet
        got = []
        t = threading.Thread(target=lambda: got.append(list(lib.run(**inputs).values())[0]))
        t.start(); t.join()
        print("THREAD", bool(got) and bool(np.array_equal(got[0], out)))
        from kiln import te  # serial split-K: the arrival counts are back at zero each launch
        from kiln.topi import cuda as tc
        A, B = te.placeholder((40, 512), name="A"), te.placeholder((72, 512), name="B")
        r = te.reduce_axis((0, 512), name="r")
        C = te.compute((40, 72), lambda i, j: te.sum(A[i, r] * B[j, r], axis=r), name="C")
        s = te.create_schedule(C.op)
        tc.schedule_matmul(s, C, tm=2, tn=4, tx=8, ty=4, bk=16, splitk=4)
        f = kiln.build(s, [A, B, C], target="cuda")
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal(sh).astype(np.float32) for sh in ((40, 512), (72, 512)))
        errs = []
        for _ in range(3):  # a fresh output each time: a launch that sums nothing shows
            c = kiln.nd.array(np.zeros((40, 72), np.float32), device="cuda")
            f(a, b, c)
            errs.append(float(np.abs(c.numpy() - a @ b.T).max()))
        print("SPLITK", f.source.count("_arrivals["), max(errs))
    """)
    text = _run(env, ["-c", script])
    assert "ARCH" in text and "CUDA_ERROR_NO_BINARY_FOR_GPU" in text, text
    assert "another GPU architecture" in text
    assert "SHARED" in text and "CUDA_ERROR_INVALID_VALUE" in text, text
    live = re.search(r"LIVE \[(\d+), (\d+), (\d+)\] ERR (\S+)", text)
    assert live and live.group(1) == live.group(3), text  # repeated runs allocate nothing
    assert float(live.group(4)) <= 1e-4
    assert "THREAD True" in text, text
    split = re.search(r"SPLITK (\d+) (\S+)", text)
    assert split and int(split.group(1)) >= 2 and float(split.group(2)) <= 1e-3, text
    # sm_90: every kernel after a kernel was captured as a programmatic dependent launch
    over = re.search(r"OVERLAP True (\d+) (\d+)", text)
    assert over and int(over.group(1)) == int(over.group(2)) - 1, text
    assert f"PLAIN True {over.group(1)}" in text, text


def test_a_measurement_worker_that_dies_costs_one_candidate(env):
    """A worker process that dies without a word (a crash in the driver, emulated) is
    replaced; the candidate is tried once more, then recorded as a runtime error, and the
    next candidate measures normally."""
    script = textwrap.dedent("""
        import workloads
        from kiln.auto_scheduler import SearchTask
        from kiln.auto_scheduler.gpu.measure import GpuRunner
        from kiln.auto_scheduler.gpu.space import GpuSpace
        from kiln.codegen import cuda, nvrtc
        from kiln.schedule import ComputeDAG
        (a, b), (c,), _ = workloads.matmul(16, 32, 16)
        task = SearchTask(compute_dag=ComputeDAG([a, b, c]), target="cuda")
        space = GpuSpace(task.compute_dag, task.target)
        _, func, plan = space.lowered(space.default(), task.args)
        cubin = nvrtc.compile_cuda(cuda.render(func, task.target), "sm_90")
        src = 'extern "C" __global__ void crash_kernel(float* a) { a[0] = 1.0f; }'
        crash = dict(plan, workspace=[], kernels=[{"name": "crash_kernel", "grid": [1, 1, 1],
                     "block": [32, 1, 1], "shared_bytes": 0, "args": [["param", 2]]}])
        runner = GpuRunner(repeat=2, min_repeat_ms=1)
        runner.set_task(task, (cubin, plan, func))
        bad, good = runner.run([(nvrtc.compile_cuda(src, "sm_90"), crash, func),
                                (cubin, plan, func)])
        runner.close()
        print("BAD", bad.error_no, bad.error_msg)
        print("GOOD", good.error_no, bool(good.costs), good.checked)
    """)
    text = _run(env, ["-c", script])
    assert "BAD runtime the worker died" in text and "GOOD ok True True" in text, text


def test_a_gpu_sitting_runs_on_the_emulated_gpu(env, tmp_path):
    """scripts/gpu_sitting.sh --smoke: the GPU benchmarks (tuned rows included) and a tuning
    sitting whose log the BERT benchmark then applies, then the convolutions."""
    out = tmp_path / "sitting"
    _run(dict(env, PYTHON=sys.executable), ["bash", "scripts/gpu_sitting.sh", str(out),
                                             "--smoke"], timeout=600, python=False)
    log = (out / "log.txt").read_text()
    assert log.count(": exit 0 after") == 4, log[-3000:]
    gemm = json.loads((out / "gemm_gpu.json").read_text())
    names = [r["name"].split(",")[0] for r in gemm["rows"]]  # hand (FMA, tensor cores), tuned
    assert names == ["kiln mm", "kiln swish_mm (fused)"] * 2 + ["kiln mm", "kiln swish_mm"], \
        names
    assert "tensor cores (3xTF32)" in gemm["rows"][2]["name"]
    bert = json.loads((out / "bert_gpu.json").read_text())
    names = [r["name"] for r in bert["rows"]]
    covered = [re.search(r"tuned: (\d+) of (\d+) groups", n) for n in names]
    assert covered[1] and int(covered[1][1]) >= 1, names  # the log tuned some onnx groups
    assert [re.sub(r"tuned: \d+ of \d+ groups", "tuned", n) for n in names] == [
        "kiln (onnx frontend, default schedules)", "kiln (onnx frontend, tuned)",
        "kiln (pytorch frontend, tuned)", "kiln (onnx frontend, default schedules, tensor cores)",
        "kiln (onnx frontend, default schedules, plain launches)"]
    assert all(r["max_abs_err"] <= 1e-4 for r in bert["rows"]) and bert["profile"]
    assert (out / "bert_gpu_log.json").stat().st_size and (out / "gemm_gpu_log.json").exists()
    conv = json.loads((out / "conv_gpu.json").read_text())
    assert [r["impl"] for r in conv["rows"]][:1] == ["kiln"] and \
        all(m["rel_err"] <= 1e-5 for m in conv["meta"]["layers"])


def test_kiln_tune_and_bench_with_target_cuda_on_the_emulated_gpu(env, tmp_path):
    """The spawned NVRTC builders and the measurement worker on the driver API, every result
    checked against the reference; a second sitting resumes the log."""
    log = str(tmp_path / "tiny.json")
    tune = ["-m", "kiln.cli", "tune", "--builtin", "bert-tiny", "--seq-len", "8", "--target",
            "cuda", "--per-round", "6", "--log", log]
    _run(env, tune + ["--trials", "12"])
    first = [json.loads(line) for line in open(log)]
    _run(env, tune + ["--trials", "6"])
    recs = [json.loads(line) for line in open(log)]
    assert len(first) == 12 and len(recs) == 18, recs[-1]
    assert all(r["error"] == "ok" and r.get("checked") for r in recs), recs
    configs = {(r["workload_key"], json.dumps(r["meta"]["gpu_config"], sort_keys=True))
               for r in recs}
    assert len(configs) == 18  # nothing measured twice
    text = _run(env, ["-m", "kiln.cli", "bench", "--builtin", "bert-tiny", "--seq-len", "8",
                      "--target", "cuda", "--log", log, "--repeat", "1", "--no-torch",
                      "--profile", "2"])
    assert "kiln tuned" in text and "each kernel timed alone" in text, text


def test_a_model_with_its_products_on_the_tensor_cores(env):
    """bert-tiny built with tensor_cores=True (every matmul that tensor-core tiles fit on
    them, 3xTF32): the emulated GPU runs each warp's m16n8k8 products and the model still
    matches PyTorch's float32 output."""
    script = textwrap.dedent("""
        import numpy as np, torch, kiln
        from kiln.models import builtin
        model, proto, inputs = builtin("bert-tiny", seq_len=16)
        graph, params = kiln.frontend.from_onnx(proto)
        lib = kiln.graph.build(graph, params, target="cuda", tensor_cores=True)
        (out,) = lib.run(**inputs).values()
        with torch.no_grad():
            ref = model(torch.from_numpy(inputs["input_ids"])).numpy()
        print("MMA", lib.source.count("mma.sync.aligned"), "ERR", float(np.abs(out - ref).max()))
    """)
    text = _run(env, ["-c", script])
    m = re.search(r"MMA (\d+) ERR (\S+)", text)
    assert m and int(m.group(1)) >= 3 and float(m.group(2)) <= 1e-4, text[-3000:]
