"""torch.compile(model, backend="kiln"): the entry point is registered, compiled graphs match
eager PyTorch, and graphs kiln cannot compile fall back to eager with one warning."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(),
                               torch.nn.Linear(16, 4)).eval()


def test_backend_is_registered_by_name():
    from torch._dynamo import list_backends
    assert "kiln" in list_backends(exclude_tags=())


def test_compiled_mlp_matches_eager_and_is_kiln():
    model, x = _mlp(), torch.randn(3, 8)
    seen = []

    def spy(gm, example_inputs, **kw):
        from kiln.graph.frontend.dynamo import kiln_backend
        fn = kiln_backend(gm, example_inputs, **kw)
        seen.append(fn)
        return fn
    torch._dynamo.reset()
    with torch.no_grad():
        compiled = torch.compile(model, backend=spy, options={"target": "cpu",
                                                              "flush_denormals": True})
        out = compiled(x)
        np.testing.assert_allclose(out.numpy(), model(x).numpy(), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(compiled(x + 1).numpy(), model(x + 1).numpy(), atol=1e-5)
    assert seen and hasattr(seen[0], "kiln_module")
    assert seen[0].kiln_module.flush_denormals


def test_bert_tiny_through_torch_compile():
    pytest.importorskip("transformers")
    from kiln.models import bert_module
    model, cfg = bert_module("bert-tiny")
    ids = torch.from_numpy(np.random.RandomState(0).randint(0, cfg.vocab_size, (1, 16)))
    torch._dynamo.reset()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to eager
        out = torch.compile(model, backend="kiln")(ids)
        np.testing.assert_allclose(out.numpy(), model(ids).numpy(), atol=1e-4, rtol=1e-4)


def test_training_and_unsupported_graphs_fall_back_to_eager_with_a_warning():
    model = _mlp()
    torch._dynamo.reset()
    x = torch.randn(3, 8, requires_grad=True)
    with pytest.warns(UserWarning, match="kiln compiles inference only"):
        y = torch.compile(model, backend="kiln")(x)
    y.sum().backward()  # eager autograd still works
    assert x.grad is not None

    class Sorts(torch.nn.Module):
        def forward(self, v):
            return torch.sort(v, dim=-1).values * 2
    torch._dynamo.reset()
    v = torch.randn(2, 5)
    with torch.no_grad(), pytest.warns(UserWarning, match="eager PyTorch.*sort"):
        out = torch.compile(Sorts(), backend="kiln")(v)
    np.testing.assert_allclose(out.numpy(), torch.sort(v, -1).values.numpy() * 2)


def test_bert_with_attention_mask_through_torch_compile():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                  intermediate_size=48, vocab_size=40,
                                  max_position_embeddings=16, attn_implementation="eager")
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg).eval()
    ids = torch.from_numpy(np.random.RandomState(0).randint(0, 40, (1, 8)))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]])
    torch._dynamo.reset()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to eager
        out = torch.compile(bert, backend="kiln")(input_ids=ids, attention_mask=mask)
        ref = bert(input_ids=ids, attention_mask=mask)
    np.testing.assert_allclose(out.last_hidden_state.numpy(), ref.last_hidden_state.numpy(),
                               atol=1e-4, rtol=1e-4)
