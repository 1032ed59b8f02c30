"""Lowering of `s[C].tensorize(axis, intrin)`: a loop nest replaced by an intrinsic's code (a
mixin of tir.lower.Lowerer, like lower_multi).

In: a stage whose State names a tensorized loop and a TensorIntrin (te/tensor_intrin.py).
Out: the statements the intrinsic's function returns, in place of the loops from that axis
inward, with its buffers bound to the regions those loops cover.

Matching, as TVM does it: with the loops outside the axis fixed, every root axis of the stage
covers base + a dense range inside the nest (the inner loops must be innermost split parts,
unfused, unannotated, with no tile overhanging the tensor and no stage attached inside). The
trailing axes of the stage pair with the intrinsic's axes (spatial with spatial, reduction
with reduction; the extents must agree) and the leading ones must cover one point; with
those substituted, the stage's body must be the intrinsic's body up to which tensors it
reads. Each intrinsic input is then the region of the real tensor read at the same place:
its buffer starts at the region's flat offset and has the real buffer's strides (a declared
`decl_buffer` may fix them, or name `te.var`s that take the real values).

A reduction whose loops all lie inside the nest uses the intrinsic's `body` (it initializes
and accumulates); one with reduction loops outside uses `reset` before them and `update`
inside. CPU targets only: kiln's CUDA printer has no external calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LoweringError
from ..te import expr as E
from . import stmt as S
from .decl import DeclBuffer
from .lower_helpers import stmt_exprs
from .lower_multi import key as _key
from .simplify import Simplifier, simplify, skey


@dataclass
class TensorCode:
    body: S.Stmt | None  # the whole computation (reductions: initialize and accumulate)
    reset: S.Stmt | None
    update: S.Stmt | None
    guards: list  # conditions on the outer loops (a tile of them overhanging)


class TensorizeLowering:
    """Methods of Lowerer (it provides stages, info, index, param_of, ranges, gpu,
    effective_bodies, _attached and _guarded)."""

    def _loop_pragmas(self, pragmas: tuple) -> tuple:
        """A loop's pragmas without import_c, whose C source goes to the function's attrs
        (printed before the kernel), once per distinct text."""
        for k, v in pragmas:
            if k == "import_c" and v not in self.imports:
                self.imports.append(v)
        return tuple((k, v) for k, v in pragmas if k != "import_c")

    def _func_attrs(self) -> dict:
        return {"import_c": list(self.imports)} if self.imports else {}

    def _tensor_pos(self, info) -> int | None:
        tz = info.stage.tensorize
        if not tz:
            return None
        names = [lf.name for lf in info.leaves]
        if tz[0] not in names:
            raise LoweringError(f"{info.stage.name}: the tensorized loop {tz[0]} is no longer a "
                                "loop of the stage (split or fused after tensorize?)")
        return names.index(tz[0])

    def _tensor_code(self, si: int, info, tpos: int) -> TensorCode:
        st, intrin = info.stage, info.stage.tensorize[1]
        where = f"tensorize of {st.name}.{info.leaves[tpos].name} with {intrin.name}"
        if self.gpu:
            raise LoweringError(f"{where}: tensorize works on CPU targets only")
        inner = info.leaves[tpos:]
        self._check_nest(si, inner, where)
        inner_vars = {lf.var for lf in inner}
        bases, exts = self._axis_ranges(info, inner, where)
        pairs = self._pair_axes(st, intrin, exts, where)
        ivars = set(intrin.op.axis) | set(intrin.op.reduce_axis)
        sub = {a: (bases[a] + pairs[a] if a in pairs else bases[a]) for a in bases}
        for a, v in info.read_val.items():  # clamped reads (an overhanging tile of rows)
            if E.free_vars(v) & inner_vars:
                raise LoweringError(f"{where}: the nest overhangs the tensor along {a.name}; "
                                    "split by a factor that divides it")
            sub[a] = v
        mine = E.substitute(self.effective_bodies(si)[0], sub)
        loads: list = []
        if not _same(mine, intrin.op.body[0], loads):
            raise LoweringError(f"{where}: the loops compute {mine} ({mine.dtype}), the "
                                f"intrinsic computes {intrin.op.body[0]} "
                                f"({intrin.op.body[0].dtype})")
        ins = [self._bind_input(intrin, t, loads, ivars, where) for t in intrin.inputs]
        out_base = [bases[a] for a in st.compute.axis]
        out, subst = self._bind(intrin, intrin.outputs[0], info.buffer, out_base,
                                info.offsets, st.layout or info.layout, where)
        subst.update(s for _, m in ins for s in m.items())
        code = self._call_intrin(intrin, [v for v, _ in ins], [out], subst, where)
        guards = []
        for g in info.guards:
            if E.free_vars(g) & inner_vars:
                raise LoweringError(f"{where}: the nest overhangs the tensor ({g}); split by a "
                                    "factor that divides the axis")
            guards.append(g)
        code.guards = guards
        return code

    # ------------------------------------------------------------ the nest and its ranges
    def _check_nest(self, si: int, inner: list, where: str) -> None:
        attached = self._attached(si)
        for lf in inner:
            if lf.annotation != "none":
                raise LoweringError(f"{where}: loop {lf.name} inside the nest is "
                                    f"{lf.annotation}; the intrinsic's code replaces it")
            if lf.name in attached:
                names = [self.stages[j].name for j in attached[lf.name]]
                raise LoweringError(f"{where}: {', '.join(names)} is computed at {lf.name}, "
                                    "inside the tensorized nest")

    def _axis_ranges(self, info, inner: list, where: str):
        """Each root axis as (value with the nest's loops at 0, points covered inside)."""
        zero = {lf.var: E.IntImm(0) for lf in inner}
        ext = {lf.var: lf.extent for lf in inner}
        sim = Simplifier(self.ranges)
        bases, exts, owner = {}, {}, {}
        for a in info.stage.root_vars():
            v = info.root_val[a]
            base = simplify(E.substitute(v, zero), self.ranges)
            lin = sim.to_lin(simplify(v - base, self.ranges))
            terms = sorted(((c, atom) for atom, c in lin.terms.values()), key=lambda t: t[0]) \
                if all(isinstance(x, E.Var) and x in ext for x, _ in lin.terms.values()) else None
            span = 1
            for c, atom in terms or ():
                if c != span or atom in owner:
                    terms = None
                    break
                owner[atom] = a
                span *= ext[atom]
            if terms is None or lin.const:
                raise LoweringError(f"{where}: axis {a.name} is not one dense range inside the "
                                    "nest (its loops must be the innermost parts of its "
                                    "splits, in order, and not fused)")
            bases[a], exts[a] = base, span
        return bases, exts

    def _pair_axes(self, st, intrin, exts: dict, where: str) -> dict:
        """{stage axis: intrinsic axis} for the trailing axes of each kind."""
        out = {}
        for mine, theirs, kind in ((st.compute.axis, intrin.op.axis, "spatial"),
                                   (st.compute.reduce_axis, intrin.op.reduce_axis, "reduction")):
            lead = len(mine) - len(theirs)
            if lead < 0:
                raise LoweringError(f"{where}: the intrinsic has {len(theirs)} {kind} axes, the "
                                    f"stage {len(mine)}")
            for a in mine[:lead]:
                if exts[a] != 1:
                    raise LoweringError(f"{where}: {kind} axis {a.name} covers {exts[a]} points "
                                        "inside the nest; the intrinsic has no axis for it")
            for a, b in zip(mine[lead:], theirs):
                if exts[a] != int(b.extent.value):
                    raise LoweringError(f"{where}: axis {a.name} covers {exts[a]} points inside "
                                        f"the nest, the intrinsic's {b.name} {b.extent.value}")
                out[a] = b
        return out

    # ------------------------------------------------------------ binding buffers
    def _bind_input(self, intrin, t, loads: list, ivars: set, where: str):
        mine = [m for th, m in loads if th.tensor is t]
        if not mine:
            raise LoweringError(f"{where}: the stage reads nothing where the intrinsic reads "
                                f"{t.name}")
        tensors = {(id(m.tensor.op), m.tensor.value_index) for m in mine}
        if len(tensors) > 1:
            raise LoweringError(f"{where}: the intrinsic's {t.name} is read where the stage reads "
                                f"{sorted({m.tensor.name for m in mine})}")
        bases = []
        for th, m in ((th, m) for th, m in loads if th.tensor is t):
            lead = len(m.indices) - len(th.indices)
            if lead < 0:
                raise LoweringError(f"{where}: {m.tensor.name} has fewer dimensions than the "
                                    f"intrinsic's {t.name}")
            base = [e if d < lead else simplify(e - th.indices[d - lead], self.ranges)
                    for d, e in enumerate(m.indices)]
            if any(E.free_vars(b) & ivars for b in base):
                raise LoweringError(f"{where}: {m.tensor.name} is read at {list(m.indices)} "
                                    f"where the intrinsic reads {t.name}{list(th.indices)}; "
                                    "the two do not differ by a fixed offset")
            bases.append(base)
        if len({tuple(skey(b) for b in x) for x in bases}) > 1:
            raise LoweringError(f"{where}: {t.name}'s reads map to different regions of "
                                f"{mine[0].tensor.name}")
        j = self.index.get(id(mine[0].tensor.op))
        k = mine[0].tensor.value_index
        if j in self.info:
            lj = self.info[j]
            buf, offsets, layout = lj.buffers[k], lj.offsets, lj.layout
        else:
            buf = self.param_of.get(_key(j, k)) if j is not None else None
            if buf is None:
                raise LoweringError(f"{where}: {mine[0].tensor.name} is neither a build argument "
                                    "nor computed by this schedule")
            offsets, layout = [E.IntImm(0)] * len(bases[0]), self.stages[j].layout
        return self._bind(intrin, t, buf, bases[0], offsets, layout, where)

    def _bind(self, intrin, t, buf: S.Buffer, base: list, offsets: list, layout, where: str):
        """The intrinsic's buffer for tensor `t` over buf at `base`, and the declared
        variables (strides, offset) with their values."""
        if layout:
            raise LoweringError(f"{where}: {buf.name} has a packed layout; tensorize needs "
                                "row-major buffers")
        decl = intrin.bind_of(t) or DeclBuffer(t.shape, t.dtype, t.name)
        n = len(t.shape)
        off = simplify(sum(((b - o) * s for b, o, s in zip(base, offsets, buf.strides)),
                           E.IntImm(0)), self.ranges)
        strides = list(buf.strides[len(base) - n:])
        what = f"{where}: buffer {decl.name} ({t.name} over {buf.name})"
        if decl.dtype != buf.dtype:
            raise LoweringError(f"{what} is {decl.dtype}, {buf.name} is {buf.dtype}")
        subst: dict = {}
        if decl.strides:
            if len(decl.strides) != n:
                raise LoweringError(f"{what}: {len(decl.strides)} strides for {n} dimensions")
            for want, have in zip(decl.strides, strides):
                _settle(want, have, subst, f"{what}: stride {want} but the region's is {have}")
        else:
            compact, acc = [], 1
            for d in reversed(t.shape):
                compact.append(acc)
                acc *= int(d)
            need = [(s, c) for s, c, d in zip(strides, reversed(compact), t.shape) if int(d) > 1]
            if any(s != c for s, c in need):
                raise LoweringError(f"{what} is declared compact, but the region's strides are "
                                    f"{strides}; declare strides=[te.var(...), ..., 1] in "
                                    "decl_buffer")
        if decl.elem_offset is not None:
            _settle(decl.elem_offset, off, subst,
                    f"{what}: elem_offset {decl.elem_offset} but the region starts at {off}")
        if decl.offset_factor > 1 and not _divisible(Simplifier(self.ranges), off,
                                                      decl.offset_factor):
            raise LoweringError(f"{what}: the region starts at {off}, not a multiple of its "
                                f"offset_factor {decl.offset_factor}")
        return decl.bound(buf, off, strides), subst

    # ------------------------------------------------------------ the intrinsic's code
    def _call_intrin(self, intrin, ins: list, outs: list, subst: dict, where: str) -> TensorCode:
        res = call_user(intrin.fcompute, ins, outs, where)
        parts = list(res) if isinstance(res, (tuple, list)) else [res]
        if len(parts) not in (1, 3):
            raise LoweringError(f"{where}: the intrinsic's function returned {len(parts)} "
                                "values; give a statement or (body, reset, update)")
        stmts = [self._intrin_stmt(p, subst, where) for p in parts]
        if len(stmts) == 1:
            return TensorCode(stmts[0], None, None, [])
        return TensorCode(*stmts, [])

    def _intrin_stmt(self, x, subst: dict, where: str):
        if x is None:
            return None
        if isinstance(x, E.Expr):
            x = S.Evaluate(x)
        if not isinstance(x, S.Stmt):
            raise LoweringError(f"{where}: the function returned {type(x).__name__}, not a "
                                "statement (tir.ir_builder's get(), tir.call_extern)")
        x = S.map_exprs(x, lambda e: E.substitute(e, subst))
        for s in S.walk_stmts(x):
            if isinstance(s, S.For):
                n = simplify(s.extent, self.ranges)
                if not isinstance(n, E.IntImm):
                    raise LoweringError(f"{where}: loop {s.var.name} runs {n} times; kiln "
                                        "needs constant extents in built loop IR")
                self.ranges[s.var] = (0, n.value - 1)
        return x

    def _tensor_stmt(self, si: int, info, tpos: int, whole: bool) -> S.Stmt:
        """The code at the tensorized loop: body (all of the work) or update (one slice of
        a reduction whose outer loops are outside)."""
        code = self._tensor_codes.get(si) or self._tensor_code(si, info, tpos)
        self._tensor_codes[si] = code
        stmt = code.body if whole else code.update
        if stmt is None:
            need = "a body (it computes the whole reduction here)" if whole else \
                "(body, reset, update): reduction loops stay outside the nest"
            raise LoweringError(f"tensorize of {info.stage.name} with "
                                f"{info.stage.tensorize[1].name}: the intrinsic must give {need}")
        return self._guarded(stmt, code.guards)

    def _tensor_init(self, si: int, info, r0: int, tpos: int, in_parallel: bool) -> S.Stmt:
        """The intrinsic's reset inside the spatial loops between the first reduction loop
        and the tensorized one."""
        self._tensor_stmt(si, info, tpos, whole=False)  # binds and checks `update`
        code = self._tensor_codes[si]
        if code.reset is None:
            raise LoweringError(f"tensorize of {info.stage.name}: reduction loops stay outside "
                                "the nest, so the intrinsic must give (body, reset, update)")
        loops = [lf for lf in info.leaves[r0:tpos] if lf.kind == "spatial"]
        allowed = {lf.var for lf in info.outer + info.leaves[:r0] + loops}
        allowed |= {s.var for s in S.walk_stmts(code.reset) if isinstance(s, S.For)}
        free = {v for s in S.walk_stmts(code.reset) for e in stmt_exprs(s)
                for v in E.free_vars(e)} - allowed
        loop_vars = {lf.var for lf in info.leaves}
        if free & loop_vars:
            raise LoweringError(f"tensorize of {info.stage.name}: the reset code uses the "
                                f"reduction loop {sorted(v.name for v in free & loop_vars)}")
        stmt = self._guarded(code.reset, [g for g in code.guards
                                          if E.free_vars(g) <= allowed])
        for lf in reversed(loops):
            stmt = self._loop(lf, stmt, in_parallel)
        return stmt


def call_user(fn, ins: list, outs: list, where: str):
    """fn(ins, outs), a user's code-emitting function; its own failure becomes a
    LoweringError naming where it was called (a KilnError it raises passes through)."""
    from ..errors import KilnError
    try:
        return fn(ins, outs)
    except KilnError:
        raise
    except Exception as err:  # noqa: BLE001 - any bug in the user's function
        raise LoweringError(f"{where}: the function raised {type(err).__name__}: "
                            f"{err}") from err


def _settle(want: E.Expr, have, subst: dict, msg: str) -> None:
    """A declared stride or offset: a variable takes the real value, a number must equal it."""
    have = have if isinstance(have, E.Expr) else E.IntImm(int(have))
    if isinstance(want, E.Var):
        subst[want] = have
    elif not (isinstance(want, E.IntImm) and isinstance(have, E.IntImm)
              and want.value == have.value):
        raise LoweringError(msg)


def _divisible(sim: Simplifier, e: E.Expr, factor: int) -> bool:
    lin = sim.to_lin(e)
    return lin.const % factor == 0 and all(c % factor == 0 for _, c in lin.terms.values())


def _same(mine: E.Expr, theirs: E.Expr, loads: list) -> bool:
    """Whether `mine` is `theirs` up to the tensors read; the pairs of loads go to `loads`."""
    if isinstance(theirs, E.TensorLoad):
        if isinstance(mine, E.TensorLoad) and mine.dtype == theirs.dtype:
            loads.append((theirs, mine))
            return True
        return False
    if type(mine) is not type(theirs) or mine.dtype != theirs.dtype:
        return False
    if isinstance(theirs, (E.IntImm, E.FloatImm)):
        return mine.value == theirs.value
    if isinstance(theirs, E.Var):
        return mine is theirs
    if isinstance(theirs, E.Reduce):
        if mine.combiner.name != theirs.combiner.name or mine.value_index != theirs.value_index \
                or (mine.condition is None) != (theirs.condition is None):
            return False
    elif getattr(mine, "op", None) != getattr(theirs, "op", None) or \
            getattr(mine, "name", None) != getattr(theirs, "name", None):
        return False
    a, b = E.children(mine), E.children(theirs)
    return len(a) == len(b) and all(_same(x, y, loads) for x, y in zip(a, b))
