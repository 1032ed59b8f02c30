"""Graph passes: inference, folding, simplification and pattern recognition, in a fixed order.

`default_pipeline(graph)` runs, each pass returning a new Graph (the input is never mutated):
  1. infer      shapes and dtypes of every node (a GraphError names a bad node)
  2. fold       NumPy constant folding + dead-code elimination (shape chains, masks, indices)
  3. simplify   no-op reshapes/transposes/casts/broadcasts, x+0, x*1; reshape/transpose chains
  4. patterns   LayerNorm, GELU (erf and tanh forms) -> layer_norm, gelu
  5. linear     matmul + const W (+ bias) -> dense; activation matmul -> batch_matmul;
                conv2d + batch_norm -> conv2d
  6. fold, simplify again (what the patterns exposed)
  7. combine    parallel dense ops sharing an input -> one dense + slices (only if asked)
  8. conv_gemm  1x1 convolutions over a multiple of `conv_gemm_lanes` pixels -> products
                over the pixels (only if asked: CPU builds); in networks with depthwise
                convolutions, channels-last products instead (conv1x1_channels_last: the
                blocks then run channels-last), then simplify and simplify_views
  9. winograd   3x3 stride-1 convolutions whose channels are multiples of `winograd_lanes`
                -> Winograd F(m x m, 3 x 3) transforms around products (only if asked: CPU)
 10. lookup     elementwise chains of one 8-bit value (a QDQ model's GELU between its
                QuantizeLinear / DequantizeLinear pairs) -> a lookup in a 256-entry table
 11. verify
Fusion and layout passes (graph/passes/fuse.py, layout.py) run after this pipeline.
"""

from __future__ import annotations

from ..ir import Graph, verify
from .combine import combine_parallel_dense
from .conv_gemm import conv1x1_as_matmul, conv1x1_channels_last, has_depthwise
from .fold import dead_code_elimination, evaluate, fold_constants
from .infer import infer_graph, infer_node
from .lookup import lookup_tables
from .patterns import recognize_norm_act, recognize_patterns
from .patterns_linear import recognize_linear
from .rewrite import clone, op_histogram, rewrite
from .simplify import simplify, simplify_views
from .winograd import conv3x3_winograd


def infer_types(g: Graph) -> Graph:
    """A copy of `g` with every node's shape and dtype (re)inferred."""
    return infer_graph(clone(g))


def default_pipeline(graph: Graph, combine_dense: bool = False,
                     conv_gemm_lanes: int = 0, winograd_lanes: int = 0) -> Graph:
    """The frontend-side optimisation pipeline (see the module docstring for the order)."""
    g = infer_types(graph)
    g = simplify(fold_constants(g))
    g = recognize_linear(recognize_norm_act(g))
    g = simplify(fold_constants(g))
    if combine_dense:
        g = combine_parallel_dense(g)
    if conv_gemm_lanes:
        one_by_one = conv1x1_channels_last if has_depthwise(g) else conv1x1_as_matmul
        # the first pass cancels transposes by building new elementwise nodes, which the
        # second sees (a reshape sinks below them, reshape chains collapse)
        g = simplify_views(simplify(one_by_one(g, conv_gemm_lanes)))
    if winograd_lanes:
        g = conv3x3_winograd(g, winograd_lanes)
    g = dead_code_elimination(lookup_tables(g))
    verify(g)
    return g


__all__ = [
    "clone", "combine_parallel_dense", "conv1x1_as_matmul", "conv3x3_winograd",
    "dead_code_elimination",
    "default_pipeline", "evaluate", "fold_constants", "infer_graph", "infer_node",
    "infer_types", "lookup_tables", "op_histogram",
    "recognize_linear", "recognize_norm_act", "recognize_patterns", "rewrite", "simplify",
    "simplify_views",
]
