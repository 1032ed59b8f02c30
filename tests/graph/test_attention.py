"""Fused attention on the CPU (fuse's rule 4, graph.default_attention): the rule-based schedule
of softmax(q kᵀ [scale, mask]) v matches NumPy for awkward shapes, a model with a long
sequence builds it as one kernel, and extract_tasks leaves it out of the tuning tasks."""

from __future__ import annotations

import numpy as np
import pytest

import kiln
from kiln import te, topi
from kiln.graph import Graph, Node
from kiln.graph.default_attention import attention_schedule, is_attention
from kiln.graph.default_schedule import default_schedule
from kiln.schedule import ComputeDAG

F = "float32"


def _ref(q, k, v, scale, mask=None):
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = s + mask
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


@pytest.mark.parametrize("batch,rows,keys,dim,masked", [
    ((3,), 37, 101, 64, False),  # prime extents: edge row block and edge key panel
    ((1, 2), 24, 64, 40, True),  # two batch axes (fused), a head dim of 2.5 vectors
    ((2,), 20, 48, 128, False),  # a head dim of 8 vectors: 2-row blocks
])
def test_attention_schedule_matches_numpy(batch, rows, keys, dim, masked):
    q = te.placeholder(batch + (rows, dim), name="q")
    k = te.placeholder(batch + (keys, dim), name="k")
    v = te.placeholder(batch + (keys, dim), name="v")
    m = te.placeholder((keys,), name="m")
    s = topi.matmul(q, k, transpose_b=True)
    s = te.compute(s.shape, lambda *i: s[i] * 0.125 + (m[i[-1]] if masked else 0.0),
                   name="scale")
    o = topi.matmul(topi.nn.softmax(s), v)
    args = [q, k, v, m, o] if masked else [q, k, v, o]
    dag = ComputeDAG(args)
    state = attention_schedule(dag, kiln.target.Target("cpu"))
    assert state is not None and is_attention(dag)
    f = kiln.build(state, args, target="cpu")
    body = f.source.split("int32_t default_function(")[1]
    assert body.count("#pragma omp parallel") == 1  # one pass: scores, softmax, output
    assert "softmax_norm" in body and "kiln_exp_f32x" in body  # the block's vector softmax
    rng = np.random.default_rng(rows)
    qn, kn, vn = (rng.standard_normal(batch + (n, dim)).astype(F) for n in (rows, keys, keys))
    mn = np.where(rng.random(keys) < 0.2, -1e4, 0.0).astype(F)
    out = np.empty(batch + (rows, dim), F)
    f(qn, kn, vn, *([mn] if masked else []), out)
    np.testing.assert_allclose(out, _ref(qn, kn, vn, 0.125, mn if masked else None),
                               rtol=1e-4, atol=1e-5)


def test_other_dags_are_not_attention():
    x = te.placeholder((4, 64), name="x")
    dag = ComputeDAG([x, topi.nn.softmax(x)])
    assert attention_schedule(dag, kiln.target.Target("cpu")) is None
    assert not is_attention(dag)
    assert default_schedule(dag, (), "cpu") is not None


def _node(op, inputs, shape, **attrs):
    return Node(op, list(inputs), attrs, tuple(shape), F)


def _whisper_like(seq: int, heads: int = 2, dim: int = 32):
    """Self-attention over [1, seq, heads * dim] activations, as the ONNX exporters write it."""
    width = heads * dim
    x = Node("input", [], {"name": "x"}, (1, seq, width), F)
    params, outs = {}, []
    for name in ("wq", "wk", "wv"):
        params[name] = (np.random.default_rng(len(name) + ord(name[1])).standard_normal(
            (width, width)) / np.sqrt(width)).astype(F)
        w = Node("const", [], {"name": name}, (width, width), F)
        d = _node("dense", [x, w], (1, seq, width))
        r = _node("reshape", [d], (1, seq, heads, dim), newshape=[1, seq, heads, dim])
        outs.append(_node("transpose", [r], (1, heads, seq, dim), axes=[0, 2, 1, 3]))
    q, k, v = outs
    s = _node("batch_matmul", [q, k], (1, heads, seq, seq), transpose_b=True)
    params["scale"] = np.array([dim ** -0.5], F)
    s = _node("multiply", [s, Node("const", [], {"name": "scale"}, (1,), F)], s.shape)
    p = _node("softmax", [s], s.shape, axis=-1)
    o = _node("batch_matmul", [p, v], (1, heads, seq, dim))
    return Graph([x], [o], params), params


def test_a_long_sequence_model_runs_attention_as_one_kernel():
    """1024 tokens: 4 MB of scores per head, more than any CPU's L2, so q kᵀ, the softmax and
    p v are one kernel (and no tuning task); the output matches NumPy."""
    graph, params = _whisper_like(1024)
    lib = kiln.graph.build(graph, params, target="cpu")
    names = [row[0] for row in lib.profile(number=1, x=np.zeros((1, 1024, 64), F))]
    fused = [n for n in names if "softmax" in n]
    assert len(fused) == 1 and fused[0].count("batch_matmul") == 1  # named ops collapse
    tasks, _ = kiln.graph.extract_tasks(graph, params, target="cpu")
    assert not any("softmax" in t.desc for t in tasks)
    x = np.random.default_rng(0).standard_normal((1, 1024, 64)).astype(F)
    heads = [np.transpose((x @ params[w].T).reshape(1, 1024, 2, 32), (0, 2, 1, 3))
             for w in ("wq", "wk", "wv")]
    ref = _ref(*heads, 32 ** -0.5)
    np.testing.assert_allclose(list(lib.run(x=x).values())[0], ref, rtol=1e-4, atol=1e-5)
