"""Pattern recognition: decomposed LayerNorm, GELU, HardSwish become layer_norm, gelu, hard_swish.

In: a Graph (usually folded and simplified). Out: a new Graph where
  * mean/sub/pow/mean/add/sqrt/div (or *rsqrt) over the last axes is `layer_norm`, and a
    following multiply by a constant scale / add of a constant shift is absorbed into it;
  * x * 0.5 * (1 + erf(x / sqrt(2))) is `gelu`, and 0.5 * x * (1 + tanh(sqrt(2/pi) *
    (x + 0.044715 x^3))) is `gelu` with approximate="tanh" (any association order, divides
    by constants included);
  * x * hard_sigmoid(x) (1/6, 1/2) and x * clip(x + 3, 0, 6) / 6 are `hard_swish`.
Each recognised op is one fusable kernel with a fast vector epilogue instead of nine
memory-bound passes. The linear-algebra patterns (dense, batch_matmul, batch-norm folding)
live in patterns_linear.py; `recognize_patterns` runs both families.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node
from .patterns_linear import recognize_linear
from .rewrite import Rewriter, rewrite, scalar_value


def _close(a: float | None, b: float, rtol: float = 1e-3) -> bool:
    return a is not None and abs(a - b) <= rtol * abs(b)


def _operands(n: Node, op: str):
    """Both orders of a commutative binary node's operands, when n is `op`."""
    if n.op != op or len(n.inputs) != 2:
        return []
    a, b = n.inputs
    return [(a, b), (b, a)]


class _Matcher:
    """Pattern helpers over one rewrite sweep's state (params, use counts)."""

    def __init__(self, rw: Rewriter):
        self.rw = rw

    def _scalar(self, n: Node) -> float | None:
        return scalar_value(self.rw.graph.params, n)

    # layer norm

    def _mean_of(self, n: Node, x: Node | None = None) -> tuple | None:
        """(source, axes) when n is a keepdims mean (of x, if given) over trailing axes."""
        if n.op != "mean" or not n.attrs.get("keepdims"):
            return None
        src = n.inputs[0]
        rank = len(src.shape)
        axes = sorted(a % rank for a in (n.attrs.get("axis") or range(rank)))
        if axes != list(range(rank - len(axes), rank)) or (x is not None and src is not x):
            return None
        return src, axes

    def _centred(self, d: Node) -> tuple | None:
        """(x, axes) when d = x - mean(x, trailing axes)."""
        if d.op != "subtract":
            return None
        x, m = d.inputs
        got = self._mean_of(m, x)
        return (x, got[1]) if got else None

    def _squared(self, p: Node) -> Node | None:
        """t when p is t ** 2 or t * t."""
        if p.op == "power" and _close(self._scalar(p.inputs[1]), 2.0, 1e-6):
            return p.inputs[0]
        if p.op == "multiply" and p.inputs[0] is p.inputs[1]:
            return p.inputs[0]
        return None

    def _variance_eps(self, s: Node, x: Node, axes: list) -> float | None:
        """eps when s = mean((x - mean(x))^2) + eps over the same axes."""
        for v, e in _operands(s, "add"):
            eps = self._scalar(e)
            got = self._mean_of(v)
            if eps is None or got is None or got[1] != axes:
                continue
            t = self._squared(got[0])
            c = self._centred(t) if t is not None else None
            if c is not None and c[0] is x and c[1] == axes:
                return eps
        return None

    def _inv_std(self, n: Node) -> Node | None:
        """s when n is rsqrt(s) or 1 / sqrt(s)."""
        if n.op == "rsqrt":
            return n.inputs[0]
        if n.op == "divide" and _close(self._scalar(n.inputs[0]), 1.0, 1e-6) and \
                n.inputs[1].op == "sqrt":
            return n.inputs[1].inputs[0]
        return None

    def _normalised(self, n: Node) -> tuple | None:
        """(x, axes, eps) when n = (x - mean) / sqrt(var + eps) (or * rsqrt(var + eps))."""
        pairs = []
        if n.op == "divide" and n.inputs[1].op == "sqrt":
            pairs = [(n.inputs[0], n.inputs[1].inputs[0])]
        for d, r in _operands(n, "multiply"):
            s = self._inv_std(r)
            if s is not None:
                pairs.append((d, s))
        for d, s in pairs:
            c = self._centred(d)
            if c is None:
                continue
            eps = self._variance_eps(s, c[0], c[1])
            if eps is not None:
                return c[0], c[1], eps
        return None

    def _affine_param(self, c: Node, ln: Node) -> np.ndarray | None:
        """A constant that varies only along ln's normalised axes, as an array of their shape."""
        v = self.rw.param(c)
        axes = ln.attrs["axis"]
        axes = [axes] if isinstance(axes, int) else list(axes)
        pshape = tuple(ln.shape[a] for a in axes)
        if v is None or v.ndim > len(ln.shape):
            return None
        lead = len(ln.shape) - v.ndim
        if any(d != 1 for k, d in enumerate(v.shape) if k + lead not in axes):
            return None
        return np.broadcast_to(v.reshape(v.shape[-len(axes):] if v.ndim >= len(axes) else
                                         (1,) * (len(axes) - v.ndim) + v.shape), pshape)

    def _absorb_affine(self, n: Node) -> Node | None:
        """layer_norm * scale -> layer_norm (scaled gamma, beta); layer_norm + shift likewise."""
        for ln, c in _operands(n, n.op):
            if ln.op != "layer_norm" or self.rw.uses[ln.uid] != 1 or n.shape != ln.shape:
                continue
            v = self._affine_param(c, ln)
            if v is None or v.dtype != ln.dtype:
                continue
            x, gamma, beta = ln.inputs
            g, b = self.rw.param(gamma), self.rw.param(beta)
            if n.op == "multiply":
                g, b = g * v, b * v
            else:
                b = b + v
            hint = n.name or "ln"
            gamma, beta = self.rw.const(g, f"{hint}_gamma"), self.rw.const(b, f"{hint}_beta")
            return self.rw.op("layer_norm", [x, gamma, beta], n.name, **ln.attrs)
        return None

    def _layer_norm(self, n: Node) -> Node | None:
        if n.op in ("multiply", "add"):
            got = self._absorb_affine(n)
            if got is not None:
                return got
        found = self._normalised(n) if n.op in ("divide", "multiply") else None
        if found is None:
            return None
        x, axes, eps = found
        if n.shape != x.shape or n.dtype != x.dtype:
            return None
        pshape = tuple(x.shape[a] for a in axes)
        gamma = self.rw.const(np.ones(pshape, x.dtype), f"{n.name or 'ln'}_gamma")
        beta = self.rw.const(np.zeros(pshape, x.dtype), f"{n.name or 'ln'}_beta")
        return self.rw.op("layer_norm", [x, gamma, beta], n.name,
                          axis=axes[0] if len(axes) == 1 else axes, epsilon=float(eps))

    # gelu

    def _factors(self, n: Node, depth: int = 6) -> tuple[float, list]:
        """n as (constant, [non-constant factors]) through multiplies and constant divides."""
        s = self._scalar(n)
        if s is not None:
            return s, []
        if depth and n.op == "multiply":
            ca, fa = self._factors(n.inputs[0], depth - 1)
            cb, fb = self._factors(n.inputs[1], depth - 1)
            return ca * cb, fa + fb
        if depth and n.op == "divide":
            d = self._scalar(n.inputs[1])
            if d not in (None, 0.0):
                c, f = self._factors(n.inputs[0], depth - 1)
                return c / d, f
        return 1.0, [n]

    def _one_plus(self, n: Node, op: str) -> Node | None:
        """t when n = 1 + op(t)."""
        for a, one in _operands(n, "add"):
            if a.op == op and _close(self._scalar(one), 1.0, 1e-6):
                return a.inputs[0]
        return None

    def _is_cube_term(self, n: Node, x: Node) -> float | None:
        """c when n = c * x^3 (as pow(x, 3), x*x*x or x*pow(x, 2))."""
        c, fs = self._factors(n)
        power = 0
        for f in fs:
            if f is x:
                power += 1
            elif f.op == "power" and f.inputs[0] is x and self._scalar(f.inputs[1]) in (2.0, 3.0):
                power += int(self._scalar(f.inputs[1]))
            else:
                return None
        return c if power == 3 else None

    def _tanh_arg_ok(self, t: Node, x: Node) -> bool:
        c, fs = self._factors(t)
        if len(fs) != 1 or not _close(c, math.sqrt(2 / math.pi)):
            return False
        for a, b in _operands(fs[0], "add"):
            if a is x and _close(self._is_cube_term(b, x), 0.044715):
                return True
        return False

    def _hard_swish(self, n: Node) -> Node | None:
        """x * hard_sigmoid(x; 1/6, 1/2), or x * clip(x + 3, 0, 6) / 6."""
        c, fs = self._factors(n)
        if len(fs) != 2:
            return None
        for x, s in (fs, fs[::-1]):
            if s.op not in ("hard_sigmoid", "clip") or x.shape != n.shape or \
                    x.dtype != n.dtype or not self._is_shifted(s, x):
                continue
            if s.op == "hard_sigmoid" and _close(c * s.attrs["alpha"], 1 / 6) and \
                    _close(c * s.attrs["beta"], 0.5):
                return self.rw.op("hard_swish", [x], n.name)
            if s.op == "clip" and _close(c, 1 / 6) and s.attrs.get("a_min") == 0 and \
                    s.attrs.get("a_max") == 6:
                return self.rw.op("hard_swish", [x], n.name)
        return None

    def _is_shifted(self, s: Node, x: Node) -> bool:
        """hard_sigmoid(x), or clip(x + 3)."""
        src = s.inputs[0]
        if s.op == "hard_sigmoid":
            return src is x
        return any(a is x and _close(self._scalar(b), 3.0, 1e-6)
                   for a, b in _operands(src, "add"))

    def _gelu(self, n: Node) -> Node | None:
        if n.op not in ("multiply", "divide"):
            return None
        c, fs = self._factors(n)
        if len(fs) != 2 or not _close(c, 0.5):
            return None
        for x, s in (fs, fs[::-1]):
            if x.shape != n.shape or x.dtype != n.dtype:
                continue
            z = self._one_plus(s, "erf")
            if z is not None:
                cz, fz = self._factors(z)
                if fz == [x] and _close(cz, 1 / math.sqrt(2)):
                    return self.rw.op("gelu", [x], n.name, approximate="none")
            t = self._one_plus(s, "tanh")
            if t is not None and self._tanh_arg_ok(t, x):
                return self.rw.op("gelu", [x], n.name, approximate="tanh")
        return None


def _norm_act_rule(n: Node, rw: Rewriter) -> Node | None:
    m = _Matcher(rw)
    if n.op not in ("multiply", "divide", "add"):
        return None
    return m._layer_norm(n) or m._gelu(n) or m._hard_swish(n)


def recognize_norm_act(g: Graph) -> Graph:
    """LayerNorm and GELU recognition only."""
    return rewrite(g, _norm_act_rule)


def recognize_patterns(g: Graph) -> Graph:
    """LayerNorm, GELU, then dense / batch_matmul / conv+batch_norm (patterns_linear)."""
    return recognize_linear(recognize_norm_act(g))
