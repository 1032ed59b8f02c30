"""The zoo's one check: a family through one route, built by kiln, against the reference.

In: a family name (zoo_models.FAMILIES) and a route: "onnx" (torch.onnx.export with
dynamo=False), "dynamo" (torch.onnx.export with dynamo=True) or "torch"
(kiln.frontend.from_pytorch). Out: nothing; it fails the test when kiln's outputs differ from
ONNX Runtime's (ONNX routes) or PyTorch's (torch route) by more than 1e-4, when `lib.run`
does not take the model's input names, or when an ONNX model's outputs come back under other
names than its own. An exporter that cannot export the model skips the test with its error.
"""

from __future__ import annotations

import numpy as np
import pytest
import zoo_models

import kiln

ROUTES = ("onnx", "dynamo", "torch")
TOL = 1e-4


def cells(families: list, slow: set) -> list:
    """(family, route) pytest params over every route; pairs in `slow` get the slow marker
    (kept out of the default run so the zoo stays near 90 s on 2 cores with a cold cache)."""
    return [pytest.param(f, r, id=f"{f}-{r}",
                         marks=[pytest.mark.slow] if (f, r) in slow or (f, "*") in slow else [])
            for f in families for r in ROUTES]


def _onnx_reference(proto, feeds: dict) -> list:
    import onnxruntime as ort
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})


def _import(route: str, model, feeds: dict, names: list):
    """(graph, params, reference outputs) for one route; skips when the exporter fails."""
    arrays = {k: v.numpy() for k, v in feeds.items()}
    if route == "torch":
        graph, params = kiln.frontend.from_pytorch(model, tuple(feeds.values()))
        return graph, params, zoo_models.reference(model, feeds)
    try:
        proto = zoo_models.export_onnx(model, feeds, names, dynamo=(route == "dynamo"))
    except Exception as e:  # the exporter's own failure, not kiln's
        pytest.skip(f"torch.onnx.export(dynamo={route == 'dynamo'}) fails: "
                    f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    graph_inputs = {i.name for i in proto.graph.input}
    shapes = {k: v.shape for k, v in arrays.items() if k in graph_inputs}
    graph, params = kiln.frontend.from_onnx(proto, shape=shapes)
    return graph, params, _onnx_reference(proto, arrays)


def check(family: str, route: str, tol: float = TOL) -> dict:
    """Build `family` through `route` with kiln and compare; returns kiln's outputs."""
    model, feeds, names = zoo_models.make(family)
    graph, params, refs = _import(route, model, feeds, names)
    lib = kiln.graph.build(graph, params, target="cpu")
    arrays = [v.numpy() for v in feeds.values()]
    if zoo_models.NAMED_INPUTS.get(family, True):
        assert lib.input_names == list(feeds)
    out = lib.run(**dict(zip(lib.input_names, arrays)))
    if route != "torch" or zoo_models.NAMED_OUTPUTS.get(family, True):
        assert list(out) == names
    assert len(out) == len(refs)
    for name, got, want in zip(out, out.values(), refs):
        assert got.shape == want.shape, name
        err = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
        assert err <= tol, f"{family}/{route} output {name!r}: max abs error {err:.3g}"
    return out
