"""Zoo on the GPU path: families from every group built with kiln.graph.build(target=
"cuda -arch=sm_90") through the PyTorch route, run on the emulated GPU (tests/gpu_emulate.py:
every launch of the list through the SIMT interpreter, over the device memory plan) and
compared with PyTorch. The default GPU schedules (tiled matmuls, the direct convolution, row
reductions) meet models as users write them; MobileNetV2 (90 launches, ~2.5 minutes emulated)
is kept to the slow run."""

import numpy as np
import pytest
import zoo_models

import kiln

pytest.importorskip("transformers")
nvrtc = pytest.importorskip("kiln.codegen.nvrtc")

import gpu_emulate  # noqa: E402

FAMILIES = ["gpt2", "llama", "t5_encoder", "whisper_encoder", "vit", "resnet", "convnext",
            pytest.param("mobilenet_v2", marks=pytest.mark.slow)]


@pytest.mark.parametrize("family", FAMILIES)
def test_zoo_family_on_the_emulated_gpu(family):
    model, feeds, _ = zoo_models.make(family)
    refs = zoo_models.reference(model, feeds)
    graph, params = kiln.frontend.from_pytorch(model, tuple(feeds.values()))
    lib = kiln.graph.build(graph, params, target="cuda -arch=sm_90")
    outs = gpu_emulate.emulate(lib, {n: v.numpy() for n, v in zip(lib.input_names,
                                                                  feeds.values())})
    assert len(outs) == len(refs)
    for got, want in zip(outs.values(), refs):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if family in ("resnet", "convnext"):  # plain convolutions take the conv schedule
        convs = [f for f in lib.functions.values() if "conv2d" in f.name]
        assert any("threadIdx.z" in lib.source.split(f"{f.name}_kernel0")[1].split("\n}\n")[0]
                   for f in convs)
