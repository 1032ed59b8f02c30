"""Test helpers: run te outputs on a backend (the te interpreter or kiln's compiler), inputs.

In: output Tensors and {placeholder: NumPy array}. Out: NumPy arrays of the outputs. The
"kiln" backend builds a default schedule with kiln.build and calls the compiled function with
outputs allocated by np.empty (written in place); BACKENDS skips it while kiln.build does not
exist yet, so the same tests start exercising the compiler as soon as it lands.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest
import te_interp

from kiln.te.tensor import Tensor


def kiln_build_available() -> bool:
    """Whether kiln.build exists and its modules import (they are being written alongside
    these tests). Probes one tiny build: only a missing module counts as unavailable; any
    other failure leaves the backend enabled so the tests show it."""
    try:
        import kiln
        from kiln import te
        x = te.placeholder((2,), name="x")
        y = te.compute((2,), lambda i: x[i] + 1.0, name="y")
        kiln.build(te.create_schedule([y.op]), [x, y], target="cpu")
    except (ImportError, AttributeError):
        return False
    except Exception:  # noqa: BLE001 - a broken build must fail loudly in the tests
        return True
    return True


BACKENDS = [
    "interp",
    pytest.param("kiln", marks=pytest.mark.skipif(not kiln_build_available(),
                                                  reason="kiln.build is not available yet")),
]


def _build_and_run(outs: list, items: list) -> list:
    import kiln
    from kiln import te
    sched = te.create_schedule([o.op for o in outs])
    func = kiln.build(sched, [t for t, _ in items] + outs, target="cpu")
    results = [np.empty(tuple(int(d) for d in o.shape), dtype=te_interp.np_dtype(o.dtype))
               for o in outs]
    func(*[a if a.flags.c_contiguous else a.copy() for _, a in items], *results)
    return results


def run_te(outs, inputs_np, backend: str = "interp"):
    """Arrays of `outs` (a Tensor or a list) on `backend` given {placeholder: array}.

    `inputs_np` may also be a list of (placeholder, array) pairs; its order is the argument
    order of the compiled function.
    """
    single = isinstance(outs, Tensor)
    outs = [outs] if single else list(outs)
    items = list(inputs_np.items()) if isinstance(inputs_np, dict) else list(inputs_np)
    if backend == "interp":
        res = te_interp.evaluate(outs, dict(items))
    elif backend == "kiln":
        res = _build_and_run(outs, items)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    return res[0] if single else res


def rand(rng: np.random.Generator, shape, dtype: str = "float32", low: float = -1.0,
         high: float = 1.0) -> np.ndarray:
    """Uniform random array (integers in [low, high] for integer dtypes)."""
    if np.issubdtype(np.dtype(dtype), np.integer):
        return rng.integers(int(low), int(high) + 1, size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(dtype)


def assert_close(actual, expected, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """assert_allclose that also checks shape and dtype kind."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- loop IR by hand (codegen tests)

F32 = "float32"


def buf(name, shape, dtype=F32, scope="global"):
    from kiln.tir import stmt as S
    return S.Buffer(name, shape if isinstance(shape, tuple) else (shape,), dtype, scope)


def ld(b, i):
    from kiln.tir import stmt as S
    return S.BufferLoad(b, i)


def loop(v, n, kind, body, **pragmas):
    from kiln.te import expr as E
    from kiln.tir import stmt as S
    return S.For(v, E.convert(n), kind, body, pragmas)


def tiny_cli_model():
    """kiln.cli's Model of the builtin bert-tiny at sequence length 16 (graph, params, inputs)."""
    from kiln.cli import Model

    class Args:
        builtin, seq_len, model, shape = "bert-tiny", 16, None, None
    return Model(Args())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays taken as flat vectors."""
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def onnx_model(nodes, inputs: dict, outputs: list, inits: dict, opset: int = 19):
    """An ONNX model of `nodes` with inputs typed after the arrays in `inputs`, untyped
    outputs and initializers `inits`."""
    from onnx import helper as h
    from onnx import numpy_helper as nh
    g = h.make_graph(nodes, "model",
                     [h.make_tensor_value_info(k, h.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                      for k, v in inputs.items()],
                     [h.make_empty_tensor_value_info(o) for o in outputs],
                     [nh.from_array(np.asarray(v), k) for k, v in inits.items()])
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def ort_run(model, feeds: dict) -> list:
    """ONNX Runtime's outputs for `model`, its graph optimizations off (the reference
    semantics of every node as written)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# ONNX Runtime's uint8 x int8 product on an x86 CPU without VNNI (AVX2's vpmaddubsw) adds
# pairs of products with int16 saturation, so there it is no bit-exact reference; the
# integer products are checked against NumPy (test_quantized._exact_mm) on every host.
needs_exact_ort_u8s8 = pytest.mark.skipif(
    platform.machine() == "x86_64" and not {"avx512_vnni", "avx_vnni"} & _cpu_flags(),
    reason="ONNX Runtime's u8 x s8 product saturates at int16 without VNNI")
