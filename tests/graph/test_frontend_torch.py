"""PyTorch frontend (torch.export): tiny BERT, CNNs, attention and a grab-bag of ATen ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from graph_interp import run_graph
from models import small_cnn, tiny_bert
from torch import nn

from kiln.errors import KilnError
from kiln.graph import verify
from kiln.graph.frontend import UnsupportedOpError, from_pytorch
from kiln.graph.passes import default_pipeline, op_histogram


def _check(model, args: tuple, tol: float = 1e-4):
    """Import, run the pipeline; both graphs must match the module's outputs."""
    with torch.no_grad():
        ref = model(*args)
    refs = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
    g, params = from_pytorch(model, args)
    assert params is g.params
    feeds = {n.attrs["name"]: a.numpy() for n, a in zip(g.inputs, args)}
    opt = default_pipeline(g)
    for graph in (g, opt):
        verify(graph)
        for out, r in zip(run_graph(graph, feeds), refs):
            assert out.shape == r.shape and out.dtype == r.dtype
            np.testing.assert_allclose(out, r, atol=tol, rtol=tol)
    return g, opt


def _compute_ops(g) -> dict:
    return {k: v for k, v in op_histogram(g).items() if k not in ("input", "const")}


def test_tiny_bert_matches_torch():
    model, args = tiny_bert()
    g, opt = _check(model, args)
    assert "dense" in op_histogram(g)  # aten.linear maps to dense directly
    h = _compute_ops(opt)
    assert {k: h.get(k) for k in ("dense", "batch_matmul", "layer_norm", "gelu", "softmax",
                                  "take", "matmul")} == {
        "dense": 12, "batch_matmul": 4, "layer_norm": 5, "gelu": 2, "softmax": 2, "take": 1,
        "matmul": None}
    assert "where" not in h and "broadcast_to" not in h  # the all-true mask folded away


def test_small_cnn_matches_torch():
    model, args = small_cnn()
    _, opt = _check(model, args)
    assert _compute_ops(opt) == {"conv2d": 2, "hard_swish": 1, "max_pool2d": 1, "relu": 1,
                                 "avg_pool2d": 1, "reshape": 1, "dense": 1}


def test_mobilenet_style_block():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding="same", bias=False), nn.BatchNorm2d(6), nn.ReLU6(),
        nn.Conv2d(6, 6, 3, stride=2, groups=6), nn.Hardsigmoid(), nn.SiLU(),
        nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False), nn.LeakyReLU(0.1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4), nn.LogSoftmax(-1)).eval()
    _check(model, (torch.randn(2, 3, 11, 11),))


class _Attention(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, q, k, v):
        if self.mode == "causal":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if self.mode == "bool_mask":
            mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).triu()
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
        return F.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("mode", ["plain", "causal", "bool_mask"])
def test_scaled_dot_product_attention(mode):
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    _, opt = _check(_Attention(mode), (q, k, v))
    assert _compute_ops(opt)["batch_matmul"] == 2


class _Grab(nn.Module):
    """Many ATen ops at once: addmm, layer_norm, cat/slice/select/split, where, masked_fill,
    reductions, pow/sqrt/rsqrt, activations, rsub, arange, bmm, embedding, expand."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.w = nn.Parameter(torch.randn(6, 5))
        self.b = nn.Parameter(torch.randn(5))
        self.register_buffer("buf", torch.linspace(-1, 1, 6))
        self.ln = nn.LayerNorm(5)

    def forward(self, x, ids):
        y = torch.addmm(self.b, x.reshape(6, 6), self.w).view(2, 3, 5)
        y = self.ln(y) + torch.ones(5) * 0.5 - torch.zeros(1)
        z = torch.cat([y, x[..., :2]], dim=-1).permute(0, 2, 1).contiguous().transpose(1, 2)
        z = torch.where(z > 0, z, torch.full_like(z, 0.1)).masked_fill(z < -1.0, -1.0)
        s = (z * z).sum(dim=-1, keepdim=True).sqrt() + torch.rsqrt(z.pow(2).mean(-1, True) + 1)
        e = torch.erf(z) + torch.tanh(z) * torch.sigmoid(z) + F.hardswish(z) + \
            F.gelu(z, approximate="tanh") + s
        a, c = torch.split(e, [4, 3], dim=-1)
        out = (1.0 - a) / 2 + torch.select(x, 1, 0)[:, None, :4]
        out = out + torch.arange(3).float()[None, :, None] + self.buf[:4]
        t = torch.softmax(torch.bmm(out, out.transpose(1, 2)), dim=-1) @ c
        emb = F.embedding(ids, self.w).amax(dim=1)
        return t.flatten(1), emb.unsqueeze(1).expand(2, 3, 5).squeeze(0).relu()


def test_many_aten_ops():
    torch.manual_seed(3)
    _check(_Grab().eval(), (torch.randn(2, 3, 6), torch.tensor([[0, 5, 2], [1, 1, 3]])))


class _Unsupported(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, 0).flip(0).cumprod(1).roll(1, 0)


def test_unsupported_ops_are_listed_all_at_once():
    with pytest.raises(UnsupportedOpError) as info:
        from_pytorch(_Unsupported(), (torch.randn(3, 4),))
    err = info.value
    assert isinstance(err, KilnError)
    assert [op for op, _, _ in err.ops][:2] == ["aten.flip.default", "aten.cumprod.default"]
    assert "flip" in str(err) and "cumprod" in str(err) and "cumsum" not in str(err)


def test_training_mode_dropout_is_explained():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    with pytest.raises(UnsupportedOpError, match=r"model\.eval\(\)"):
        from_pytorch(model, (torch.randn(2, 4),))
