"""float16 models (exported with `.half()`, or converted for a GPU): computed in float32.

In: a graph whose inputs, constants, casts or computed values may be float16.
Out: a new graph where every float16 value is float32: float16 constants widened (exactly),
casts to float16 become casts to float32 (then no-ops for `simplify`), float16 inputs read
float32. The library still takes and returns float16 at its boundary: build reads what the
model's inputs and outputs are before the pass (graph/build.py's Outside), records both in the
library's metadata, and the GraphModule converts inputs on the way in and outputs on the way
out (graph/executable.py; executable_cuda.py on the host, around the copies to the GPU).
Operands mixing float16 and float32 (torch.onnx.export of a `.half()` BERT writes
LayerNormalization with a float32 input and float16 scales, which ONNX Runtime refuses) are
promoted to float32 by shape inference (passes/infer.py).
Why float32 arithmetic: the C backend has no float16 arithmetic, and the CPUs it targets
mostly lack float16 vector units (AVX512-FP16 is on Sapphire Rapids only); ONNX Runtime's CPU
provider also runs most float16 models by casting around float32 kernels. Results are at
least as accurate as float16 arithmetic; values a float16 would round or overflow (above
65504) are kept, as in a float32 model, so outputs differ from a float16 stack's by its
rounding (about 1e-3 relative).
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph
from .rewrite import clone

F16, F32 = "float16", "float32"


def has_float16(graph: Graph) -> bool:
    """Whether any value of `graph` is float16."""
    return any(n.dtype == F16 or (n.op == "cast" and n.attrs.get("dtype") == F16)
               for n in graph.nodes()) or any(
        np.asarray(v).dtype == np.float16 for v in graph.params.values())


def widen_float16(graph: Graph) -> Graph:
    """A copy of `graph` computing every float16 value in float32 (module docstring)."""
    if not has_float16(graph):
        return graph
    g = clone(graph)
    for name, value in list(g.params.items()):
        if np.asarray(value).dtype == np.float16:
            g.params[name] = np.asarray(value, dtype=np.float32)
    for n in g.nodes():
        if n.dtype == F16:
            n.dtype = F32
        if n.op == "cast" and n.attrs.get("dtype") == F16:
            n.attrs["dtype"] = F32
    return g
