"""Runtime and toolchain: argument checks, NDArrays, timing, export/load, the compile cache."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from kiln.build_module import build
from kiln.codegen import toolchain
from kiln.codegen.c import render
from kiln.errors import ArgumentError, BuildError, RuntimeFailure
from kiln.runtime import Module, ProfileResult, load_module, ndarray
from kiln.te import expr as E
from kiln.tir import stmt as S


def matvec_func():
    """out[i] = sum_k w[i, k] * x[k] + bias, with w (6, 4): args w, x, out, bias."""
    w, x, out = S.Buffer("w", (6, 4), "float32"), S.Buffer("x", (4,), "float32"), \
        S.Buffer("out", (6,), "float32")
    bias = E.Var("bias", "float32")
    i, k = E.Var("i"), E.Var("k")
    body = S.For(i, E.IntImm(6), "serial", S.seq([
        S.Store(out, i, bias),
        S.For(k, E.IntImm(4), "serial", S.Store(out, i, S.BufferLoad(out, i) + S.BufferLoad(
            w, i * 4 + k) * S.BufferLoad(x, k)))]))
    return S.PrimFunc("matvec", [w, x, out], body, scalar_params=[bias])


def symbolic_func():
    """b[i] = a[i] * 2 for i < n, with a and b of symbolic length n."""
    n = E.Var("n")
    a, b = S.Buffer("a", (n,), "float32"), S.Buffer("b", (n,), "float32")
    i = E.Var("i")
    body = S.For(i, n, "serial", S.Store(b, i, S.BufferLoad(a, i) * 2.0))
    return S.PrimFunc("twice", [a, b], body, scalar_params=[n])


@pytest.fixture(scope="module")
def matvec():
    return build(matvec_func())


@pytest.fixture()
def mv_args():
    rng = np.random.default_rng(1)
    return (rng.standard_normal((6, 4)).astype("float32"),
            rng.standard_normal(4).astype("float32"), np.zeros(6, "float32"))


def test_call_writes_output_in_place(matvec, mv_args):
    w, x, out = mv_args
    matvec(w, x, out, 0.5)
    np.testing.assert_allclose(out, w @ x + 0.5, rtol=1e-5, atol=1e-5)
    assert matvec.entry_name == "matvec"
    assert [p["name"] for p in matvec.params] == ["w", "x", "out"]


def test_ndarray_arguments(matvec, mv_args):
    w, x, _ = mv_args
    dev = ndarray.cpu(0)
    wn, xn = ndarray.array(w, dev), ndarray.array(x, dev)
    on = ndarray.empty((6,), "float32", dev)
    matvec(wn, xn, on, np.float32(1.0))
    np.testing.assert_allclose(on.numpy(), w @ x + 1, rtol=1e-5, atol=1e-5)
    assert on.shape == (6,) and on.dtype == "float32" and dev.device_type == "cpu"
    on.copyfrom(np.ones(6, "float32"))
    assert (on.numpy() == 1).all()


def test_wrong_argument_count(matvec, mv_args):
    with pytest.raises(ArgumentError, match=r"matvec takes 4 arguments \(w, x, out, bias\), "
                                            r"got 3"):
        matvec(*mv_args)


def test_wrong_shape_message(matvec, mv_args):
    w, x, out = mv_args
    with pytest.raises(ArgumentError) as err:
        matvec(w.T.copy(), x, out, 0.0)
    assert str(err.value) == "argument 1 'w' expects shape (6, 4) float32, got (4, 6) float32"


def test_wrong_dtype(matvec, mv_args):
    w, x, out = mv_args
    with pytest.raises(ArgumentError, match=r"argument 2 'x' expects shape \(4,\) float32, "
                                            r"got \(4,\) float64"):
        matvec(w, x.astype("float64"), out, 0.0)


def test_non_contiguous(matvec, mv_args):
    w, x, out = mv_args
    strided = np.zeros((6, 8), "float32")[:, ::2]
    with pytest.raises(ArgumentError, match="'w' must be C-contiguous"):
        matvec(strided, x, out, 0.0)


def test_wrong_type_and_read_only(matvec, mv_args):
    w, x, out = mv_args
    with pytest.raises(ArgumentError, match="'x' expects a numpy.ndarray or kiln NDArray"):
        matvec(w, list(x), out, 0.0)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ArgumentError, match="'out' is written by the kernel"):
        matvec(w, x, ro, 0.0)
    with pytest.raises(ArgumentError, match="argument 4 'bias' expects a number"):
        matvec(w, x, out, "1")


def test_symbolic_shapes_bind_scalar():
    mod = build(symbolic_func())
    a, b = np.arange(5, dtype="float32"), np.zeros(5, "float32")
    mod(a, b, 5)
    np.testing.assert_array_equal(b, a * 2)
    with pytest.raises(ArgumentError, match="argument 3 'n' is 4 but the array shapes say 5"):
        mod(a, b, 4)
    with pytest.raises(ArgumentError, match=r"expects shape \(n,\) float32, got \(6,\)"):
        mod(a, np.zeros(6, "float32"), 5)
    with pytest.raises(ArgumentError, match="expects an integer"):
        mod(a, b, 5.0)


def test_time_evaluator(matvec, mv_args):
    res = matvec.time_evaluator(matvec.entry_name, ndarray.cpu(), number=5, repeat=3)(
        *mv_args, 0.0)
    assert isinstance(res, ProfileResult) and len(res.results) == 3
    assert 0 < res.min <= res.median <= res.max and res.mean > 0 and res.std >= 0
    slow = matvec.time_evaluator(number=1, repeat=1, min_repeat_ms=5)(*mv_args, 0.0)
    assert slow.mean < 1e-3  # per call, although one repeat ran >= 5 ms


def test_heap_failure_is_runtime_failure():
    a = S.Buffer("a", (4,), "float32")
    huge = S.Buffer("huge", (1 << 50,), "float32", "heap")
    i = E.Var("i")
    body = S.Allocate(huge, S.For(i, E.IntImm(4), "serial", S.Store(huge, i, E.FloatImm(0.0))))
    mod = build(S.PrimFunc("oom", [a], body))
    with pytest.raises(RuntimeFailure, match="heap allocation failed"):
        mod(np.zeros(4, "float32"))


def test_export_and_load_round_trip(matvec, mv_args, tmp_path):
    path = matvec.export_library(str(tmp_path / "mv.so"))
    assert os.path.exists(path) and os.path.exists(tmp_path / "mv.c")
    loaded = load_module(path)
    assert loaded.entry_name == "matvec" and "int32_t matvec(" in loaded.get_source()
    w, x, out = mv_args
    loaded(w, x, out, 2.0)
    np.testing.assert_allclose(out, w @ x + 2, rtol=1e-5, atol=1e-5)
    os.remove(tmp_path / "mv.c")  # metadata lives inside the library: still loads
    again = load_module(path)
    assert again.source == "" and again.params[0]["shape"] == [6, 4]
    with pytest.raises(ArgumentError):
        again(w, x, out)


def test_load_missing_library(tmp_path):
    with pytest.raises(BuildError, match="no library"):
        load_module(str(tmp_path / "nope.so"))


# ---------------------------------------------------------------- toolchain

@pytest.fixture()
def counting_cc(tmp_path, monkeypatch):
    """A KILN_CC wrapper that logs each invocation, and a private cache directory."""
    log = tmp_path / "calls.log"
    cc = tmp_path / "mycc"
    cc.write_text(f'#!/bin/sh\nif [ "$1" != "--version" ]; then echo x >> {log}; fi\n'
                  'exec cc "$@"\n')
    cc.chmod(cc.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("KILN_CC", str(cc))
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    return log


def test_cache_hit_skips_compiler(counting_cc):
    src = render(matvec_func())
    first = toolchain.compile(src, "cpu")
    second = toolchain.compile(src, "cpu")
    assert first == second and counting_cc.read_text().count("x") == 1
    assert os.path.dirname(first) == os.environ["KILN_CACHE_DIR"]
    toolchain.compile(src, "cpu -num-cores=1")  # same flags: still one compile
    assert counting_cc.read_text().count("x") == 1
    toolchain.compile(src, "cpu -mattr=-avx512f")  # other flags: a new library
    assert counting_cc.read_text().count("x") == 2
    assert Module(first).entry_name == "matvec"


def test_build_error_keeps_source(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    with pytest.raises(BuildError) as err:
        toolchain.compile("int f(void) { return undefined_name; }\n", "cpu")
    msg = str(err.value)
    assert "undefined_name" in msg and "C compilation failed" in msg
    kept = msg.split("source kept at ")[1].split()[0]
    assert os.path.exists(kept) and "undefined_name" in open(kept).read()


def test_missing_compiler(monkeypatch):
    monkeypatch.setenv("KILN_CC", "no-such-compiler-kiln")
    with pytest.raises(BuildError, match="install a C compiler .* or set KILN_CC"):
        toolchain.compile("int x;\n", "cpu")


_GCC12_NEST = """
void nest(const float* restrict pad, const float* restrict kernel, float* restrict conv) {
  for (int x = 0; x < 6; ++x) {
    for (int y = 0; y < 7; ++y) {
      conv[y * 6 + x + 42] = 0.0f; conv[y * 6 + x + 84] = 0.0f; conv[y * 6 + x + 126] = 0.0f;
    }
    for (int rc = 0; rc < 3; ++rc)
      for (int y = 0; y < 7; ++y)
        for (int ry = 0; ry < 3; ++ry)
          for (int rx1 = 0; rx1 < 2; ++rx1)
            for (int rx0 = 0; rx0 < 2; ++rx0)
              if (rx0 * 2 + rx1 < 3) {
                int p = rc * 72 + y * 8 + ry * 8 + x + rx0 * 2 + rx1;
                int k = rc * 9 + ry * 3 + rx0 * 2 + rx1;
                conv[y * 6 + x + 42] = conv[y * 6 + x + 42] + pad[p] * kernel[k + 27];
                conv[y * 6 + x + 84] = conv[y * 6 + x + 84] + pad[p] * kernel[k + 54];
                conv[y * 6 + x + 126] = conv[y * 6 + x + 126] + pad[p] * kernel[k + 81];
              }
  }
}
"""


def test_compiler_flags_keep_a_reduction_nest_right():
    """A reduction nest (from a random conv2d schedule the property test drew) that GCC 12.2
    at -O3 with AVX2 / AVX-512 auto-vectorizes into wrong sums: kiln's flags must compile it
    right (toolchain.compile_flags turns GCC's loop vectorizer off)."""
    import ctypes
    lib = ctypes.CDLL(toolchain.compile(_GCC12_NEST, "cpu"))
    rng = np.random.default_rng(0)
    pad = rng.standard_normal(216).astype(np.float32)
    kernel = rng.standard_normal(108).astype(np.float32)
    conv = np.zeros(168, np.float32)
    lib.nest(*(a.ctypes.data_as(ctypes.c_void_p) for a in (pad, kernel, conv)))
    p, w = pad.reshape(3, 9, 8).astype(np.float64), kernel.reshape(4, 3, 3, 3)
    ref = np.zeros((4, 7, 6))
    for f in range(1, 4):
        for y in range(7):
            for x in range(6):
                ref[f, y, x] = (p[:, y:y + 3, x:x + 3] * w[f]).sum()
    np.testing.assert_allclose(conv.reshape(4, 7, 6)[1:], ref[1:], rtol=1e-4, atol=1e-4)
