"""Whole models built for a CUDA target on a machine without a GPU: the launch list, the
memory plan and every default GPU schedule are run by the loop-IR interpreter's SIMT mode
(tests/gpu_emulate.py) and compared with PyTorch; the build compiles with NVRTC; export and
load keep the launch list; calling without a GPU says so."""

import numpy as np
import pytest

import kiln

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
nvrtc = pytest.importorskip("kiln.codegen.nvrtc")
pytestmark = pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed")

import gpu_emulate  # noqa: E402
from models import small_cnn  # noqa: E402


def _mini_bert(seed: int = 0):
    from kiln.models import wrap_last_hidden
    cfg = transformers.BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                  intermediate_size=48, vocab_size=40,
                                  max_position_embeddings=16, attn_implementation="eager")
    torch.manual_seed(seed)
    model = wrap_last_hidden(transformers.BertModel(cfg)).eval()
    ids = torch.from_numpy(np.random.RandomState(seed).randint(0, 40, (1, 5)))
    return model, (ids,)


@pytest.mark.parametrize("builder", [_mini_bert, small_cnn])
def test_model_on_cuda_matches_torch_in_the_interpreter(builder):
    model, args = builder()
    with torch.no_grad():
        ref = model(*args).numpy()
    graph, params = kiln.frontend.from_pytorch(model, args)
    lib = kiln.graph.build(graph, params, target="cuda -arch=sm_90")
    kinds = {x[0] for x in lib.meta["launches"]}
    assert kinds <= {"kernel", "copy"} and lib.meta["target"] == "cuda -arch=sm_90"
    (out,) = gpu_emulate.emulate(lib, {n: a.numpy() for n, a in
                                       zip(lib.input_names, args)}).values()
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


def test_bert_default_schedules_are_not_naive():
    """Dense layers are tiled through shared memory; layer norm and softmax reduce across a
    block's threads; the model compiles for sm_80 too."""
    model, args = _mini_bert()
    graph, params = kiln.frontend.from_pytorch(model, args)
    lib = kiln.graph.build(graph, params, target="cuda -arch=sm_80")
    src = lib.source
    dense = [f for f in lib.functions.values() if "dense" in f.name]
    assert dense and all("__shared__" in src.split(f"{f.name}_kernel0")[1].split("}\n\n")[0]
                         for f in dense)
    for name in ("softmax", "layer_norm"):
        fs = [f for f in lib.functions.values() if name in f.name]
        assert fs, name
        body = src.split(f"{fs[0].name}_kernel0")[1].split("\n}\n")[0]
        assert "__shfl_xor_sync(" in body, name


def test_export_load_and_no_gpu_message(tmp_path):
    model, args = _mini_bert()
    graph, params = kiln.frontend.from_pytorch(model, args)
    lib = kiln.graph.build(graph, params, target="cuda -arch=sm_90")
    path = lib.export_library(str(tmp_path / "bert.cubin"))
    again = kiln.graph.load(path)
    assert again.meta["launches"] == lib.meta["launches"]
    assert type(again).__name__ == "CudaGraphModule"
    from kiln.runtime import cuda
    if cuda.available():
        pytest.skip("a GPU is present")
    with pytest.raises(kiln.errors.DeviceError, match="no CUDA GPU"):
        again.run(**{n: a.numpy() for n, a in zip(again.input_names, args)})


def test_gpt2_with_attention_mask_on_cuda_in_the_interpreter():
    """Causal + padding masks (logical ops, index tensors) through the GPU schedules."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent / "zoo"))
    import zoo_models
    model, feeds, *_ = zoo_models.gpt2()
    with torch.no_grad():
        ref = model(*feeds.values())
    ref = (list(ref.values())[0] if isinstance(ref, dict) else ref).numpy()
    graph, params = kiln.frontend.from_pytorch(model, tuple(feeds.values()))
    lib = kiln.graph.build(graph, params, target="cuda -arch=sm_90")
    out = gpu_emulate.emulate(lib, {n: v.numpy() for n, v in zip(lib.input_names,
                                                                  feeds.values())})
    np.testing.assert_allclose(list(out.values())[0], ref, atol=1e-4, rtol=1e-4)


def test_the_gpu_build_computes_q_k_v_as_one_product():
    """On a GPU the three projections of an attention layer are one wider dense (one launch,
    a grid three times larger); the CPU build keeps three. The slices of Q and V fold into
    the batch_matmuls reading them."""
    from kiln.graph.tasks import prepare_graph
    model, args = _mini_bert()
    graph, params = kiln.frontend.from_pytorch(model, args)

    def dense_groups(target):
        _, groups = prepare_graph(graph, params, target=target)
        return [g for g in groups if g.anchor is not None and g.anchor.op == "dense"], groups
    gpu, groups = dense_groups("cuda -arch=sm_90")
    cpu, _ = dense_groups("cpu")
    assert len(cpu) == 6 and len(gpu) == 4  # Q|K|V, output projection, FFN1, FFN2
    folded = [g for g in groups if g.anchor is not None and g.anchor.op == "batch_matmul"
              and "strided_slice" in [n.op for n in g.nodes]]
    assert len(folded) == 2  # Q into Q·Kᵀ, V into P·V (Kᵀ keeps its copy)
