"""Small model builders for the graph tests: a tiny random BERT and a small CNN.

In: nothing but a seed. Out: torch modules in eval mode with example inputs, and helpers that
export them to ONNX in a temporary folder. Nothing is downloaded: BERT weights are random
(transformers' own initialisation), the CNN's batch-norm statistics are randomised so that
folding them is actually exercised.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

SEQ = 16
VOCAB = 100


def tiny_bert(seed: int = 0):
    """(module, (input_ids,)): a 2-layer, 64-wide BertModel returning last_hidden_state."""
    import torch

    from kiln.models import bert_module
    model, cfg = bert_module("bert-tiny", seed)
    assert cfg.vocab_size == VOCAB
    ids = torch.from_numpy(np.random.RandomState(seed).randint(0, VOCAB, (1, SEQ)))
    return model, (ids,)


def _random_batch_norms(model) -> None:
    """Batch-norm statistics and scales away from the identity (a trained network's)."""
    import torch
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def small_cnn(seed: int = 0):
    """(module, (image,)): conv+bn+hard_swish, max pool, conv+bn+relu, avg pool, dense."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=1, padding=1), nn.BatchNorm2d(8), nn.Hardswish(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AvgPool2d(3, stride=2, padding=1),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    )
    _random_batch_norms(model)
    x = torch.from_numpy(np.random.RandomState(seed).randn(1, 3, 15, 15).astype(np.float32))
    return model.eval(), (x,)


def se_cnn(seed: int = 0):
    """(module, (image,)): two EfficientNet-style blocks, each a 1x1 expansion, a 3x3
    depthwise convolution with SiLU, squeeze-excitation (pool, 1x1 convs, sigmoid scale) and
    a 1x1 projection, the second with a residual sum; random batch-norm statistics."""
    import torch
    from torch import nn

    class SE(nn.Module):
        def __init__(self, c, r):
            super().__init__()
            self.reduce, self.expand = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

        def forward(self, x):
            s = x.mean((2, 3), keepdim=True)
            return x * torch.sigmoid(self.expand(nn.functional.silu(self.reduce(s))))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            mid = cin * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU(),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
                nn.BatchNorm2d(mid), nn.SiLU(), SE(mid, cin // 2),
                nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(), Block(16, 16, 1),
                          Block(16, 24, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    _random_batch_norms(model)
    x = torch.from_numpy(np.random.RandomState(seed).randn(1, 3, 32, 32).astype(np.float32))
    return model.eval(), (x,)


def export_onnx(model, args: tuple, path: str, opset: int = 17, dynamic: bool = False,
                fold: bool = True) -> str:
    """torch.onnx.export (TorchScript exporter) to `path`; dynamic marks every dim symbolic."""
    import torch
    names = ["input_ids"] if args[0].dtype == torch.int64 else ["image"]
    axes = {names[0]: {k: f"d{k}" for k in range(args[0].dim())}} if dynamic else None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, path, dynamo=False, opset_version=opset,
                          input_names=names, output_names=["output"], dynamic_axes=axes,
                          do_constant_folding=fold)
    return path
