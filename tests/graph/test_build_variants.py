"""One library for one model at several input shapes: every built shape answers like
PyTorch, the kernels and weights shared by the shapes are stored once, tasks are the union,
and a shape that was not built is a clear error."""

import numpy as np
import pytest

import kiln
from kiln.errors import ArgumentError, KilnError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

LENGTHS = (32, 64, 128)


class _Both(torch.nn.Module):
    """BERT returning the hidden states and the pooled first token (whose dense layer does
    not depend on the sequence length, so every built length shares it)."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids):
        out = self.bert(input_ids=input_ids)
        return out.last_hidden_state, out.pooler_output


def _model():
    import transformers
    cfg = transformers.BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                  intermediate_size=48, vocab_size=50,
                                  max_position_embeddings=160, attn_implementation="eager")
    torch.manual_seed(0)
    return _Both(transformers.BertModel(cfg)).eval(), cfg


def _ids(cfg, n, seed=0):
    return torch.from_numpy(np.random.RandomState(seed + n).randint(0, cfg.vocab_size, (1, n)))


def test_one_library_serves_several_sequence_lengths(tmp_path):
    model, cfg = _model()
    variants = [kiln.frontend.from_pytorch(model, (_ids(cfg, n),)) for n in LENGTHS]
    lib = kiln.graph.build(variants, target="cpu")
    single = kiln.graph.build(*variants[-1], target="cpu")
    assert len(lib.meta["kernels"]) < 3 * len(single.meta["kernels"])  # the pooler once
    assert sum(p.nbytes for p in lib._params) < 1.5 * sum(p.nbytes for p in single._params)
    name = lib.input_names[0]
    for n in LENGTHS:
        ids = _ids(cfg, n, seed=1)
        with torch.no_grad():
            refs = [r.numpy() for r in model(ids)]
        outs = list(lib.run(**{name: ids.numpy()}).values())
        for out, ref in zip(outs, refs, strict=True):
            np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ArgumentError, match=r"expects shape \(1, 32\) or \(1, 64\) or "
                                            r"\(1, 128\) int64, got shape \(1, 129\)"):
        lib.run(**{name: _ids(cfg, 129).numpy()})
    again = kiln.graph.load(lib.export_library(str(tmp_path / "bert.so")))
    ids = _ids(cfg, 64, seed=2)
    np.testing.assert_array_equal(list(again.run(**{name: ids.numpy()}).values())[1],
                                  list(lib.run(**{name: ids.numpy()}).values())[1])


def test_tasks_of_several_shapes_are_the_union():
    model, cfg = _model()
    variants = [kiln.frontend.from_pytorch(model, (_ids(cfg, n),)) for n in (32, 64)]
    tasks, weights = kiln.auto_scheduler.extract_tasks(variants, target="cpu")
    one, w1 = kiln.auto_scheduler.extract_tasks(*variants[0], target="cpu")
    assert len(one) < len(tasks) < 2 * len(one)  # some tasks are shared by both lengths
    assert sum(weights) == 2 * sum(w1)


def test_variants_must_be_the_same_model():
    model, cfg = _model()
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
    a = kiln.frontend.from_pytorch(model, (_ids(cfg, 4),))
    b = kiln.frontend.from_pytorch(mlp, (torch.randn(2, 4),))
    with pytest.raises(KilnError, match="do not share their inputs"):
        kiln.graph.build([a, b], target="cpu")
    with pytest.raises(KilnError, match="CPU targets only"):
        kiln.graph.build([a], target="cuda -arch=sm_90")
