"""ATen ops the exported model zoo needs (after run_decompositions to core ATen), one small
module at a time, against PyTorch: bool-mask logic, isnan/isinf, any/all, cumsum, advanced
indexing (index.Tensor with integer index tensors; a boolean index makes torch.export
emit data-dependent shapes, which kiln does not import), gather, padding (also
negative), vector norms, PReLU, 1-d and transposed convolutions, interpolation, in-place ops,
diff, sin / cos / sign, remainder / fmod, repeat, GroupNorm, as_strided, slice_scatter,
copy, bicubic interpolation, a pool window past its input; and the names `lib.run` takes and
returns for torch.export programs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from graph_interp import run_graph
from torch import nn

import kiln
from kiln.graph import verify
from kiln.graph.frontend import from_pytorch
from kiln.graph.passes import default_pipeline

torch.manual_seed(0)


class Fn(nn.Module):
    """A module whose forward is `fn` (parameters, if any, in `mods`)."""

    def __init__(self, fn, **mods):
        super().__init__()
        self.fn = fn
        for k, m in mods.items():
            setattr(self, k, m)

    def forward(self, *args):
        return self.fn(self, *args)


def _mask():
    return torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])


def _pad_mix(m, x):
    return F.pad(x, (1, -1, 0, 2), value=0.5) + 1


def _interp(mode: str, **kw):
    return lambda m, x: F.interpolate(x, **kw, mode=mode)


X = torch.randn(2, 3, 5)
IMG = torch.randn(1, 4, 5, 6)
CASES = {
    "bool_logic": (lambda m, a, b: ((a > 0) & (b > 0)) | ((a < 0) ^ (b < -1)), (X, X.flip(0))),
    "mask_ops": (lambda m, mk: (mk.bool() & mk.bool().T[:1].T).logical_or(mk == 0)
                 .logical_and(~(mk > 5)), (_mask(),)),
    "isnan_isinf": (lambda m, x: torch.where(torch.isnan(x) | torch.isinf(x),
                                             torch.zeros_like(x), x),
                    (torch.tensor([[1.0, float("nan"), float("inf"), -float("inf")]]),)),
    "any_all": (lambda m, x: (x > 0).any(-1).float() + (x > -1).all(1).float().sum(-1,
                                                                                    True), (X,)),
    "cumsum_mask": (lambda m, mk: torch.cumsum(mk.ne(0), dim=1) * mk + 1, (_mask(),)),
    "cumsum_float": (lambda m, x: torch.cumsum(x, -2), (X,)),
    "index_rows": (lambda m, x, i: x[i], (X, torch.tensor([1, 0, 1]))),
    "index_middle": (lambda m, x, i: x[:, i], (X, torch.tensor([[2, 0], [-1, 1]]))),
    "index_pair": (lambda m, x: x[torch.arange(2)[:, None], torch.tensor([0, 2])], (X,)),
    "index_split": (lambda m, x: x[torch.tensor([1, 0]), :, torch.tensor([4, 1])], (X,)),
    "masked_fill": (lambda m, x, mk: x[:, :, :2].masked_fill(~mk.bool()[:, None, :2], -1.0),
                    (X, _mask())),
    "gather": (lambda m, x, i: torch.gather(x, 2, i), (X, torch.randint(0, 5, (2, 3, 2)))),
    "pad": (_pad_mix, (X,)),
    "normalize": (lambda m, x: F.normalize(x, dim=-1) + torch.linalg.vector_norm(x, 1, -1,
                                                                                 True), (X,)),
    "norm_inf": (lambda m, x: torch.linalg.vector_norm(x, float("inf"), dim=(0, 2)), (X,)),
    "prelu": (lambda m, x: m.act(x), (IMG,), {"act": nn.PReLU(4)}),
    "conv1d": (lambda m, x: m.conv(x), (X,), {"conv": nn.Conv1d(3, 4, 3, 2, 1, dilation=1)}),
    "conv_transpose2d": (lambda m, x: m.conv(x), (IMG,),
                         {"conv": nn.ConvTranspose2d(4, 6, 3, 2, 1, output_padding=1, groups=2,
                                                     dilation=(1, 2))}),
    "conv_transpose1d": (lambda m, x: m.conv(x), (X,), {"conv": nn.ConvTranspose1d(3, 2, 4, 3)}),
    "nearest": (_interp("nearest", scale_factor=2), (IMG,)),
    "nearest_size": (_interp("nearest", size=(3, 7)), (IMG,)),
    "nearest_exact": (_interp("nearest-exact", size=(7, 4)), (IMG,)),
    "bilinear": (_interp("bilinear", size=(8, 3), align_corners=False), (IMG,)),
    "bilinear_corners": (_interp("bilinear", scale_factor=2, align_corners=True), (IMG,)),
    "inplace_diff": (lambda m, x: torch.diff(x.clone().add_(1).mul_(2), dim=-1), (X,)),
    "shape_constants": (lambda m, x: x + torch.arange(x.shape[-1]) * torch.ones_like(x)
                        + torch.full((x.shape[0], 1, 1), 2.0), (X,)),
    "einsum": (lambda m, a, b: torch.einsum("bij,bkj->bik", a, b), (X, X * 2)),
    "sin_cos": (lambda m, x: torch.sin(x) * torch.cos(3 * x), (X,)),
    "sign_round": (lambda m, x: torch.sign(torch.round(x)) + torch.round(x * 7, decimals=1),
                   (X,)),
    "remainder_fmod": (lambda m, x: torch.remainder(x * 3, 1.3) + torch.fmod(x * 3, -1.1),
                       (X,)),
    "repeat": (lambda m, x: x.repeat(2, 1, 1, 3), (X,)),
    "group_norm": (lambda m, x: m.norm(x), (IMG,), {"norm": nn.GroupNorm(2, 4)}),
    "as_strided": (lambda m, x: torch.as_strided(x + 1, (2, 2, 3), (1, 5, 2), 1), (X,)),
    "slice_scatter": (lambda m, x, y: torch.slice_scatter(x, y, dim=2, start=1, end=5, step=2),
                      (X, torch.randn(2, 3, 2))),
    "copy": (lambda m, x, y: x.clone().copy_(y) * x, (X, torch.randn(3, 1))),
    "bicubic": (_interp("bicubic", size=(8, 3), align_corners=False), (IMG,)),
    "bicubic_corners": (_interp("bicubic", scale_factor=2, align_corners=True), (IMG,)),
    "avg_pool_window_past_input": (lambda m, x: m.pool(x), (IMG,),
                                   {"pool": nn.AvgPool2d(7, ceil_mode=True)}),
}
BUILT = {"mask_ops", "cumsum_mask", "index_middle", "gather", "conv_transpose2d", "bilinear",
         "sin_cos", "remainder_fmod", "repeat", "group_norm", "as_strided", "slice_scatter",
         "copy", "bicubic", "avg_pool_window_past_input"}


@pytest.mark.parametrize("cid", list(CASES))
def test_op_matches_torch(cid):
    fn, args, *mods = CASES[cid]
    model = Fn(fn, **(mods[0] if mods else {})).eval()
    with torch.no_grad():
        ref = model(*args).numpy()
    g, params = from_pytorch(model, args)
    feeds = {n.attrs["name"]: a.numpy() for n, a in zip(g.inputs, args)}
    for graph in (g, default_pipeline(g)):
        verify(graph)
        (got,) = run_graph(graph, feeds)
        assert got.shape == ref.shape and got.dtype == ref.dtype
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    if cid in BUILT:
        (got,) = kiln.graph.build(g, params, target="cpu").run(**feeds).values()
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


class _Named(nn.Module):
    def forward(self, pixels, mask):
        y = pixels * mask
        return {"scores": y.sum(-1), "extra": {"hidden": y + 1}}


class _Plain(nn.Module):
    def forward(self, tokens):
        return tokens * 2, tokens + 1


def test_run_takes_and_returns_the_modules_names():
    args = (torch.randn(2, 3), torch.ones(2, 3))
    g, params = from_pytorch(_Named(), args)
    assert [n.attrs["name"] for n in g.inputs] == ["pixels", "mask"]
    assert g.output_names == ["scores", "extra.hidden"]
    out = kiln.graph.build(g, params, target="cpu").run(pixels=args[0].numpy(),
                                                        mask=args[1].numpy())
    assert list(out) == ["scores", "extra.hidden"]
    np.testing.assert_allclose(out["extra.hidden"], args[0].numpy() + 1, rtol=1e-6)
    g, _ = from_pytorch(_Plain(), (torch.randn(3),))
    assert [n.attrs["name"] for n in g.inputs] == ["tokens"]
    assert g.output_names == ["mul", "add"]  # the program's own output names
