"""Accuracy of the vector math in generated C (kiln/codegen/c_math.py).

One kernel computes every function over its own input array in 8-lane vector blocks; the
results are compared with float64 NumPy / math over ~half a million dense samples of each
documented range. Relative error is the measure everywhere: the float32 formulas keep it
relative even next to 0 (erf ~ x, tanh ~ x, log next to 1), and the absolute error there is
checked too because relative error of a value that tiny says little about a GELU's output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kiln.build_module import build
from kiln.te import expr as E
from kiln.tir import stmt as S

N = 1 << 19
REL_BOUND = 2e-6
_erf = np.vectorize(math.erf, otypes=[np.float64])
REFS = {
    "exp": np.exp, "log": np.log, "tanh": np.tanh, "erf": _erf,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "log2": np.log2,
    "sqrt": np.sqrt, "rsqrt": lambda x: 1.0 / np.sqrt(x), "floor": np.floor, "ceil": np.ceil,
    "round": np.round, "trunc": np.trunc, "abs": np.abs,
}
RANGES = {"exp": (-87.0, 88.0), "log": None, "tanh": (-12.0, 12.0), "erf": (-5.0, 5.0),
          "sigmoid": (-87.0, 40.0), "log2": None, "sqrt": None, "rsqrt": None,
          "floor": (-1e3, 1e3), "ceil": (-1e3, 1e3), "round": (-1e3, 1e3),
          "trunc": (-1e3, 1e3), "abs": (-10.0, 10.0)}


def samples(name: str) -> np.ndarray:
    rng = RANGES[name]
    if rng is None:  # positive functions: log-uniform over the normal floats
        x = np.exp(np.linspace(np.log(1.2e-38), np.log(3e38), N))
    else:
        x = np.linspace(rng[0], rng[1], N)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def kernel():
    """y_f[i] = f(x_f[i]) for every f, vectorized by 8."""
    ins = {f: S.Buffer(f"x_{f}", (N,), "float32") for f in REFS}
    outs = {f: S.Buffer(f"y_{f}", (N,), "float32") for f in REFS}
    o, lane = E.Var("o"), E.Var("l")
    idx = o * 8 + lane
    stores = [S.Store(outs[f], idx, E.Call(f, [S.BufferLoad(ins[f], idx)], "float32"))
              for f in REFS]
    body = S.For(o, E.IntImm(N // 8), "parallel",
                 S.For(lane, E.IntImm(8), "vectorized", S.seq(stores)))
    params = [ins[f] for f in REFS] + [outs[f] for f in REFS]
    return build(S.PrimFunc("mathk", params, body))


@pytest.fixture(scope="module")
def results(kernel):
    xs = {f: samples(f) for f in REFS}
    ys = {f: np.zeros(N, np.float32) for f in REFS}
    kernel(*[xs[f] for f in REFS], *[ys[f] for f in REFS])
    return xs, ys


def test_no_libm_in_vector_code(kernel):
    body = kernel.source.split("int32_t mathk(")[1]
    for name in ("expf(", "logf(", "tanhf(", "erff(", "log2f("):
        assert name not in body


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "erf", "sigmoid", "log2"])
def test_polynomial_relative_error(name, results):
    xs, ys = results
    x, y = xs[name], ys[name]
    ref = REFS[name](x.astype(np.float64))
    keep = ref != 0
    rel = np.abs(y[keep] - ref[keep]) / np.abs(ref[keep])
    worst = float(rel.max())
    print(f"{name}: max relative error {worst:.3g} over {keep.sum()} samples")
    assert worst <= REL_BOUND, f"{name} at x={x[keep][rel.argmax()]}: {worst}"


@pytest.mark.parametrize("name", ["exp", "tanh", "erf", "sigmoid", "log"])
def test_near_zero(name, kernel):
    """Next to the zero of the function (0 for tanh/erf, 1 for log) and around 0 for others."""
    center = 1.0 if name == "log" else 0.0
    x = (center + np.linspace(-1e-3, 1e-3, 4001)).astype(np.float32)
    xs = {f: np.ones(N, np.float32) for f in REFS}
    xs[name][: x.size] = x
    ys = {f: np.zeros(N, np.float32) for f in REFS}
    kernel(*[xs[f] for f in REFS], *[ys[f] for f in REFS])
    y = ys[name][: x.size].astype(np.float64)
    ref = REFS[name](x.astype(np.float64))
    assert np.abs(y - ref).max() <= 1e-7
    keep = ref != 0
    assert (np.abs(y - ref)[keep] / np.abs(ref[keep])).max() <= REL_BOUND


@pytest.mark.parametrize("name", ["sqrt", "rsqrt", "floor", "ceil", "round", "trunc", "abs"])
def test_lanewise_functions(name, results):
    xs, ys = results
    ref = REFS[name](xs[name].astype(np.float64))
    tol = 2e-7 if name in ("sqrt", "rsqrt") else 0.0
    np.testing.assert_allclose(ys[name], ref.astype(np.float32), rtol=tol, atol=0)


def test_special_values(kernel):
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 100.0, -100.0, 89.0], np.float32)
    xs = {f: np.ones(N, np.float32) for f in REFS}
    for f in REFS:
        xs[f][:8] = special
    ys = {f: np.zeros(N, np.float32) for f in REFS}
    kernel(*[xs[f] for f in REFS], *[ys[f] for f in REFS])
    with np.errstate(all="ignore"):
        for f in ("exp", "log", "tanh", "erf", "sigmoid"):
            want = REFS[f](special.astype(np.float64)).astype(np.float32)
            np.testing.assert_allclose(ys[f][:8], want, rtol=1e-6, atol=1e-37, err_msg=f)
