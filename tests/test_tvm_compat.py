"""TVM's model-level tutorials run on kiln with only the import lines changed: relay's
frontends and build, graph_executor, PassContext, export / load_module, the network tuning
flow (extract_tasks on mod["main"], TaskScheduler, ApplyHistoryBest) and the op-level resume
flow (XGBModel.update_from_file, PreloadMeasuredStates, LocalRPCMeasureContext). The code in
each test follows the tutorial's; outputs are checked against PyTorch."""

import io

import numpy as np
import pytest

import kiln as tvm
from kiln import auto_scheduler, relay, te
from kiln.contrib import graph_executor
from kiln.errors import ArgumentError, KilnError, TargetError

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


def _cnn():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def cnn():
    model = _cnn()
    img = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(img)).numpy()
    return model, img, ref


@pytest.fixture(scope="module")
def traced(cnn):
    """The 'Compile PyTorch Models' tutorial up to relay.build."""
    model, img, _ = cnn
    scripted_model = torch.jit.trace(model, torch.from_numpy(img)).eval()
    shape_list = [("input0", img.shape)]
    mod, params = relay.frontend.from_pytorch(scripted_model, shape_list)
    target = tvm.target.Target("llvm", host="llvm")
    with tvm.transform.PassContext(opt_level=3):
        lib = relay.build(mod, target=target, params=params)
    return mod, params, lib


def test_compile_pytorch_tutorial(cnn, traced):
    _, img, ref = cnn
    mod, params, lib = traced
    assert "conv2d" in str(mod) and mod["main"] is mod.graph
    assert all(hasattr(v, "numpy") for v in params.values())  # NDArrays, as TVM's
    dev = tvm.cpu(0)
    m = graph_executor.GraphModule(lib["default"](dev))
    m.set_input("input0", tvm.nd.array(img.astype("float32")))
    m.run()
    tvm_output = m.get_output(0)
    np.testing.assert_allclose(tvm_output.numpy(), ref, rtol=1e-4, atol=1e-5)
    assert m.get_num_outputs() == 1 and m.get_num_inputs() == 1
    assert m.get_input_info() == ({"input0": (1, 3, 16, 16)}, {"input0": "float32"})
    np.testing.assert_array_equal(m.get_input("input0").numpy(), img)
    res = m.benchmark(dev, repeat=3, number=2)
    assert len(res.results) == 3 and 0 < res.min <= res.median <= res.max
    assert "Execution time summary" in str(res) and "median (ms)" in str(res)
    e2e = m.benchmark(dev, repeat=2, number=1, end_to_end=True, input0=img)
    assert e2e.mean > 0


def test_module_route_renames_inputs_and_casts_same_kind(cnn):
    """A plain nn.Module goes through torch.export; set_input casts float64 to float32 as
    TVM's NDArray.copyfrom does, but refuses a float array for an integer input."""
    model, img, ref = cnn
    mod, params = relay.frontend.from_pytorch(model, [("data", ((1, 3, 16, 16), "float32"))])
    lib = relay.build(mod, target="llvm", params=params)
    m = graph_executor.GraphModule(lib["default"](tvm.device("llvm", 0)))
    m.set_input("data", img.astype(np.float64))
    m.run()
    np.testing.assert_allclose(m.get_output(0).numpy(), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ArgumentError, match="unknown input"):
        m.set_input("input0", img)


def test_compile_onnx_tutorial_with_create_executor(cnn):
    model, img, ref = cnn
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.from_numpy(img),), buf, dynamo=False, input_names=["x"])
    onnx_model = onnx.load_from_string(buf.getvalue())
    mod, params = relay.frontend.from_onnx(onnx_model, {"x": img.shape})
    target = "llvm"
    with tvm.transform.PassContext(opt_level=1):
        executor = relay.build_module.create_executor(
            "graph", mod, tvm.cpu(0), target, params).evaluate()
    tvm_output = executor(tvm.nd.array(img)).numpy()
    np.testing.assert_allclose(tvm_output, ref, rtol=1e-4, atol=1e-5)
    again = relay.create_executor("vm", mod=mod, target=target, params=params).evaluate()
    np.testing.assert_allclose(again(x=img).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_export_then_load_module_and_time_evaluator(cnn, traced, tmp_path):
    _, img, ref = cnn
    lib = traced[2]
    path = str(tmp_path / "deploy_lib.so")
    lib.export_library(path)
    loaded = tvm.runtime.load_module(path)
    dev = tvm.cpu()
    module = graph_executor.GraphModule(loaded["default"](dev))
    module.run(input0=img)
    np.testing.assert_allclose(module.get_output(0).numpy(), ref, rtol=1e-4, atol=1e-5)
    ftimer = module.module.time_evaluator("run", dev, number=1, repeat=3, min_repeat_ms=20)
    prof = ftimer().results
    assert len(prof) == 3 and min(prof) > 0
    old_api = graph_executor.create(lib.get_graph_json(), lib, dev)
    old_api.set_input(0, img)
    old_api.run()
    np.testing.assert_allclose(old_api.get_output(0).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_debug_executor_times_every_kernel(cnn, traced, tmp_path, capsys):
    """TVM's debug_executor: run() computes the outputs and prints per-kernel times (the
    fused groups' kernels, launches adding up to the model's steps); profile() keeps the
    medians of several runs; dump_root gets the report as JSON."""
    from kiln.contrib.debugger import debug_executor
    _, img, ref = cnn
    lib = traced[2]
    m = debug_executor.create(lib.get_graph_json(), lib, tvm.cpu(), dump_root=str(tmp_path))
    m.set_input("input0", img)
    m.run()
    np.testing.assert_allclose(m.get_output(0).numpy(), ref, rtol=1e-4, atol=1e-5)
    table = capsys.readouterr().out
    assert "Time(us)" in table and "Total" in table
    report = m.profile(number=3)
    calls = sum(k for _, k, _ in report.rows)
    assert calls == len(m.lib.meta["steps"]) and report.total > 0
    assert all(t > 0 for _, _, t in report.rows)
    dumped = (tmp_path / "kiln_profile.json").read_text()
    assert '"kernels"' in dumped


def test_traced_transformers_bert_as_in_the_seed_benchmark():
    """The seed's BERT flow: a traced BertModel, input shapes read off the trace."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                  intermediate_size=128, vocab_size=100,
                                  max_position_embeddings=64, attn_implementation="eager",
                                  return_dict=False, torchscript=True)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 100, (1, 16))
    scripted_model = torch.jit.trace(model, [ids], strict=False)
    shape_list = [(i.debugName().split(".")[0], i.type().sizes())
                  for i in list(scripted_model.graph.inputs())[1:]]
    mod, params = relay.frontend.from_pytorch(scripted_model, shape_list,
                                              default_dtype="float32")
    with tvm.transform.PassContext(opt_level=3):
        lib = relay.build(mod, target="llvm", params=params)
    m = graph_executor.GraphModule(lib["default"](tvm.cpu(0)))
    m.set_input(shape_list[0][0], ids.numpy().astype("int32"))  # int64 input: cast
    m.run()
    with torch.no_grad():
        ref = model(ids)
    assert m.get_num_outputs() == len(ref)
    for i, r in enumerate(ref):
        np.testing.assert_allclose(m.get_output(i).numpy(), r.numpy(), atol=1e-4)


def test_tune_network_tutorial(cnn, traced, tmp_path):
    """extract_tasks(mod["main"]), TaskScheduler, ApplyHistoryBest + PassContext config."""
    _, img, ref = cnn
    mod, params, _ = traced
    target = tvm.target.Target("llvm")
    log_file = str(tmp_path / "net.json")
    tasks, task_weights = auto_scheduler.extract_tasks(mod["main"], params, target)
    assert tasks and len(tasks) == len(task_weights)
    for task in tasks:
        assert task.workload_key and str(task.compute_dag)
    same, _ = auto_scheduler.extract_tasks(mod, params, target)  # the IRModule itself
    assert [t.workload_key for t in same] == [t.workload_key for t in tasks]
    measure_ctx = auto_scheduler.LocalRPCMeasureContext(repeat=1, min_repeat_ms=10)
    tuner = auto_scheduler.TaskScheduler(tasks, task_weights, verbose=0)
    tune_option = auto_scheduler.TuningOptions(
        num_measure_trials=6, runner=measure_ctx.runner,
        measure_callbacks=[auto_scheduler.RecordToFile(log_file)], verbose=0)
    tuner.tune(tune_option)
    assert list(auto_scheduler.load_records(log_file))
    with auto_scheduler.ApplyHistoryBest(log_file):
        with tvm.transform.PassContext(opt_level=3,
                                       config={"relay.backend.use_auto_scheduler": True}):
            lib = relay.build(mod, target=target, params=params)
    m = graph_executor.GraphModule(lib["default"](tvm.device(str(target), 0)))
    m.set_input("input0", img)
    m.run()
    np.testing.assert_allclose(m.get_output(0).numpy(), ref, rtol=1e-4, atol=1e-5)


@auto_scheduler.register_workload
def compat_matmul(N, L, M):
    A = te.placeholder((N, L), name="A")
    B = te.placeholder((L, M), name="B")
    k = te.reduce_axis((0, L), name="k")
    C = te.compute((N, M), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return [A, B, C]


def test_resume_search_tutorial(tmp_path):
    """The op-level tutorial's resume_search: a cost model trained from the log, the
    measured states preloaded, then a few more trials that measure nothing twice."""
    pytest.importorskip("xgboost")
    log_file = str(tmp_path / "matmul.json")
    task = auto_scheduler.SearchTask(func=compat_matmul, args=(32, 32, 32), target="llvm")
    measure_ctx = auto_scheduler.LocalRPCMeasureContext(min_repeat_ms=5)
    first = auto_scheduler.TuningOptions(
        num_measure_trials=8, runner=measure_ctx.runner,
        measure_callbacks=[auto_scheduler.RecordToFile(log_file)], verbose=0)
    task.tune(first)
    n_first = len(list(auto_scheduler.load_records(log_file)))
    cost_model = auto_scheduler.XGBModel()
    cost_model.update_from_file(log_file)
    assert len(cost_model.features) == n_first
    search_policy = auto_scheduler.SketchPolicy(
        task, cost_model,
        init_search_callbacks=[auto_scheduler.PreloadMeasuredStates(log_file)], verbose=0)
    tune_option = auto_scheduler.TuningOptions(
        num_measure_trials=4, runner=measure_ctx.runner,
        measure_callbacks=[auto_scheduler.RecordToFile(log_file)], verbose=0)
    task.tune(tune_option, search_policy=search_policy)
    del measure_ctx
    records = list(auto_scheduler.load_records(log_file))
    assert n_first < len(records) <= n_first + 4
    keys = [json_steps(r) for r in records]
    assert len(set(keys)) == len(keys)  # nothing measured twice
    sch, args = task.apply_best(log_file)
    func = tvm.build(sch, args, target="llvm")
    a = np.random.rand(32, 32).astype("float32")
    b = np.random.rand(32, 32).astype("float32")
    c = tvm.nd.empty((32, 32))
    func(tvm.nd.array(a), tvm.nd.array(b), c)
    np.testing.assert_allclose(c.numpy(), a @ b, rtol=1e-5)


def json_steps(record) -> str:
    import json
    return json.dumps(record.steps, sort_keys=True, default=str)


# ---------------------------------------------------------------- bad use, said clearly

def test_bad_use_is_a_kiln_error(cnn, traced):
    model, img, _ = cnn
    mod, params, lib = traced
    with pytest.raises(ArgumentError, match="unknown option.*relay.backend.use_autoscheduler"):
        tvm.transform.PassContext(config={"relay.backend.use_autoscheduler": True})
    with pytest.raises(ArgumentError, match="opt_level"):
        tvm.transform.PassContext(opt_level=7)
    with pytest.raises(ArgumentError, match="cpu device"):
        lib["default"](tvm.cuda(0))
    with pytest.raises(ArgumentError, match="'default'"):
        lib["main"]
    with pytest.raises(ArgumentError, match="'main'"):
        mod["other"]
    with pytest.raises(ArgumentError, match="compiled model"):
        graph_executor.GraphModule(object())
    with pytest.raises(ArgumentError, match="static shapes"):
        relay.frontend.from_pytorch(model, [("x", ("batch", 3, 16, 16))])
    with pytest.raises(ArgumentError, match="custom_convert_map"):
        relay.frontend.from_pytorch(model, [("x", img.shape)], custom_convert_map={"a": 1})
    with pytest.raises(TargetError, match="CPU target"):
        tvm.target.Target("llvm", host="cuda -arch=sm_90")
    m = graph_executor.GraphModule(lib["default"](tvm.cpu()))
    name, value = next(iter(params.items()))
    m.set_input(**{name: value})  # the weight it was built with: accepted (TVM scripts do it)
    with pytest.raises(ArgumentError, match="rebuild"):
        m.set_input(name, value.numpy() + 1)
    with pytest.raises(KilnError, match="has not run|not been set"):
        graph_executor.GraphModule(relay.build(mod, "llvm", params=params)["default"]()).\
            get_output(0)


def test_target_host_and_device_from_a_target_string():
    t = tvm.target.Target("llvm", host="llvm")
    assert t == tvm.target.Target("llvm") and t.host_target.kind == "cpu"
    assert tvm.device(str(t), 0) == tvm.cpu(0)
    assert tvm.device("cuda", 1) == tvm.cuda(1)
    assert tvm.target.Target("cuda -arch=sm_90", host="llvm").arch == "sm_90"


def test_a_cpu_runner_given_to_a_gpu_task_becomes_the_gpu_runner():
    from kiln.auto_scheduler.gpu import GpuRunner, as_gpu_builder, as_gpu_runner
    ctx = auto_scheduler.LocalRPCMeasureContext(repeat=2, min_repeat_ms=300, timeout=7)
    runner = as_gpu_runner(ctx.runner)
    assert isinstance(runner, GpuRunner)
    assert (runner.repeat, runner.min_repeat_ms, runner.timeout) == (2, 300, 7)
    assert as_gpu_runner("local") is None and as_gpu_builder(None) is None
    assert as_gpu_builder(auto_scheduler.LocalBuilder(n_parallel=3)).n_parallel == 3


def test_relay_build_for_cuda_without_a_gpu(cnn):
    """relay.build(target="cuda -arch=sm_90") compiles here; the launch list is right (run in
    the loop-IR interpreter); running it on this machine says that no GPU is present."""
    nvrtc = pytest.importorskip("kiln.codegen.nvrtc")
    if not nvrtc.available():
        pytest.skip("NVRTC is not installed")
    import gpu_emulate
    model, img, ref = cnn
    mod, params = relay.frontend.from_pytorch(model, [("input0", img.shape)])
    lib = relay.build(mod, target="cuda -arch=sm_90", params=params)
    out = gpu_emulate.emulate(lib, {"input0": img})
    np.testing.assert_allclose(next(iter(out.values())), ref, rtol=1e-4, atol=1e-5)
    from kiln.runtime import cuda
    if cuda.available():
        pytest.skip("a GPU is present")
    m = graph_executor.GraphModule(lib["default"](tvm.cuda(0)))
    with pytest.raises(KilnError, match="no CUDA GPU"):
        m.run(input0=img)


def test_params_dict_of_ndarrays_is_accepted_by_kiln_graph_build(traced, cnn):
    mod, params, _ = traced
    _, img, ref = cnn
    lib = tvm.graph.build(mod["main"], params, target="cpu")
    np.testing.assert_allclose(next(iter(lib.run(input0=img).values())), ref, rtol=1e-4,
                               atol=1e-5)


# ---------------------------------------------------------------- relay.testing networks

def _n_params(params: dict) -> int:
    return sum(int(np.prod(v.shape)) for v in params.values())


@pytest.mark.parametrize("net, kwargs, millions", [
    ("resnet", {"num_layers": 18}, 11.69), ("resnet", {"num_layers": 50}, 25.56),
    ("mobilenet", {}, 4.23), ("mlp", {}, 0.109)])
def test_relay_testing_networks_have_their_published_sizes(net, kwargs, millions):
    """Weights (batch norm statistics included) within 1.5% of the published counts: the
    layer structure is the named network's."""
    mod, params = getattr(relay.testing, net).get_workload(batch_size=1, **kwargs)
    assert abs(_n_params(params) / 1e6 / millions - 1) < 0.015
    assert mod["main"].inputs[0].name == "data"


def test_relay_quick_start_tutorial_on_resnet():
    """TVM's quick start: resnet-18 from relay.testing, built, run, saved and loaded; checked
    against the NumPy graph interpreter, and NHWC input gives the NCHW result."""
    from graph.graph_interp import run_graph

    from kiln.contrib import utils
    batch_size, num_class = 1, 1000
    image_shape = (3, 64, 64)
    data_shape = (batch_size, *image_shape)
    out_shape = (batch_size, num_class)
    mod, params = relay.testing.resnet.get_workload(
        num_layers=18, batch_size=batch_size, image_shape=image_shape)
    assert "conv2d" in mod.astext(show_meta_data=False)
    with tvm.transform.PassContext(opt_level=3):
        lib = relay.build(mod, tvm.target.Target("llvm"), params=params)
    dev = tvm.cpu()
    data = np.random.default_rng(1).uniform(-1, 1, size=data_shape).astype("float32")
    module = graph_executor.GraphModule(lib["default"](dev))
    module.set_input("data", data)
    module.run()
    out = module.get_output(0, tvm.nd.empty(out_shape)).numpy()
    ref = run_graph(mod["main"], {"data": data})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)
    assert abs(out.sum() - 1) < 1e-4

    temp = utils.tempdir()
    path_lib = temp.relpath("deploy_lib.tar")
    lib.export_library(path_lib)
    loaded_lib = tvm.runtime.load_module(path_lib)
    module = graph_executor.GraphModule(loaded_lib["default"](dev))
    module.run(data=tvm.nd.array(data))
    np.testing.assert_array_equal(module.get_output(0).numpy(), out)
    temp.remove()

    mod2, params2 = relay.testing.resnet.get_workload(
        num_layers=18, batch_size=batch_size, image_shape=(64, 64, 3), layout="NHWC")
    again = graph_executor.GraphModule(relay.build(mod2, "llvm", params=params2)["default"](dev))
    again.run(data=data.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(again.get_output(0).numpy(), out, rtol=1e-5, atol=1e-7)


def test_relay_testing_float16_workloads():
    """dtype="float16" (TVM's): float16 weights and input, float16 output; the same draws as
    the float32 workload, rounded, so the two agree to float16 precision."""
    from kiln.contrib import graph_executor
    outs = {}
    for dtype in ("float32", "float16"):
        mod, params = relay.testing.mlp.get_workload(batch_size=2, dtype=dtype)
        assert {p.numpy().dtype for p in params.values()} == {np.dtype(dtype)}
        lib = relay.build(mod, target="llvm", params=params)
        m = graph_executor.GraphModule(lib["default"](tvm.cpu(0)))
        x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(dtype)
        m.set_input("data", x)
        m.run()
        outs[dtype] = m.get_output(0).numpy()
    assert outs["float16"].dtype == np.float16
    np.testing.assert_allclose(outs["float16"].astype(np.float32), outs["float32"], atol=5e-3)


def test_relay_testing_bad_arguments():
    with pytest.raises(ArgumentError, match="layout"):
        relay.testing.resnet.get_workload(layout="NCHW4c")
    with pytest.raises(ArgumentError, match="float32 or float16"):
        relay.testing.mobilenet.get_workload(dtype="bfloat16")
    with pytest.raises(ArgumentError, match="num_layers"):
        relay.testing.resnet.get_workload(num_layers=20)
    assert tvm.target.cuda(arch="sm_80").arch == "sm_80"
