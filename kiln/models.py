"""Built-in models for the command line and benchmarks (`--builtin bert-base`), made locally
with random weights (nothing is downloaded): a torch module, its ONNX export, example inputs.

Needs the bench extras (torch, transformers, onnx).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from .errors import KilnError

BUILTINS = ("bert-base", "bert-tiny")


def _bert_config(name: str):
    from transformers import BertConfig
    if name == "bert-base":
        return BertConfig(attn_implementation="eager")
    if name == "bert-tiny":
        return BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                          intermediate_size=128, vocab_size=100, max_position_embeddings=64,
                          attn_implementation="eager")
    raise KilnError(f"unknown builtin model {name!r}; known: {', '.join(BUILTINS)}")


def wrap_last_hidden(model):
    """A torch module whose forward(input_ids) returns model(input_ids=...).last_hidden_state
    (transformers 5.x cannot export BertModel itself; the wrapper calls it with keywords)."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids).last_hidden_state
    return LastHidden(model)


def bert_module(name: str, seed: int = 0):
    """(torch module in eval mode, BertConfig): a random-weight BertModel wrapped by
    wrap_last_hidden."""
    import torch
    from transformers import BertModel

    cfg = _bert_config(name)
    torch.manual_seed(seed)
    return wrap_last_hidden(BertModel(cfg)).eval(), cfg


def builtin(name: str, seq_len: int = 128, batch: int = 1, seed: int = 0):
    """(torch module, onnx.ModelProto, {"input_ids": array}) for a builtin model."""
    try:
        import onnx
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise KilnError(f"builtin models need torch, transformers and onnx ({e}); install "
                        "the bench extras: pip install -e .[bench]") from None
    wrapper, cfg = bert_module(name, seed)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (batch, seq_len), dtype=np.int64)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"{name}.onnx")
        with torch.no_grad():
            torch.onnx.export(wrapper, (torch.from_numpy(ids),), path, dynamo=False,
                              opset_version=17, input_names=["input_ids"],
                              output_names=["last_hidden_state"])
        proto = onnx.load(path)
    return wrapper, proto, {"input_ids": ids}
