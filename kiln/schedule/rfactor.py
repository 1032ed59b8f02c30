"""rfactor: turn part of a reduction into a spatial axis of a new stage.

In: a reduction stage and one of its reduce loops (a root reduce axis, or one part of a split
of one). Out: the `.rf` stage computing partial results with that loop made spatial, and the
original stage rewritten to reduce over the partial results. Used to parallelise or vectorise
reductions with little spatial parallelism.
"""

from __future__ import annotations

from ..errors import ScheduleError
from ..te import expr as E
from ..te.tensor import ComputeOp
from .state import ComputeDef, Iterator, Split, Stage, ceildiv, extent_of, product, root_iters


def _find_parts(st: Stage, it: Iterator):
    """(root reduce var, part names, part extents, strides, index of `it` among the parts)."""
    roots = {a.name: a for a in st.compute.reduce_axis}
    if it.name in roots:
        a = roots[it.name]
        return a, (it.name,), (extent_of(a.extent),), (1,), 0
    for rel in st.relations:
        if isinstance(rel, Split) and it.name in rel.outs and rel.parent in roots:
            a = roots[rel.parent]
            exts = (ceildiv(a.extent, product(rel.lengths)),) + tuple(rel.lengths)
            strides = tuple(product(rel.lengths[j:]) for j in range(len(exts)))
            return a, rel.outs, exts, strides, rel.outs.index(it.name)
    raise ScheduleError(f"rfactor on {st.name}.{it.name}: the loop must be a reduction axis or a "
                        "part of one split of a reduction axis")


def _clean(name: str) -> str:
    return name.replace(".", "_").replace("@", "_")


def _partial(body: E.Reduce, mapping: dict, red: list, guard):
    """One output of the .rf stage: `body` over the loops left (all of a tuple reducer's
    components together), or with none left its source itself."""
    srcs = [E.substitute(x, mapping) for x in body.sources]
    cond = None if body.condition is None else E.substitute(body.condition, mapping)
    if guard is not None:
        cond = guard if cond is None else E.all(cond, guard)
    if red:
        return E.Reduce(body.combiner, srcs if len(srcs) > 1 else srcs[0], red, cond,
                        value_index=body.value_index)
    src = srcs[body.value_index]
    if cond is None:
        return src
    ident = body.combiner.identities([x.dtype for x in srcs])[body.value_index]
    return E.Select(cond, src, ident)


def rfactor_stage(st: Stage, it: Iterator, factor_axis: int):
    comp = st.compute
    body = comp.body
    if not isinstance(body, E.Reduce):
        raise ScheduleError(f"rfactor on {st.name}: the stage is not a reduction")
    kv, names, exts, strides, p = _find_parts(st, it)
    if not 0 <= factor_axis <= len(comp.axis):
        raise ScheduleError(f"rfactor on {st.name}: factor_axis {factor_axis} out of range "
                            f"0..{len(comp.axis)}")
    parts = []
    for j, (n, e) in enumerate(zip(names, exts)):
        parts.append(E.IterVar(e, _clean(n), "spatial" if j == p else "reduce"))
    kval = sum((v * s for v, s in zip(parts[1:], strides[1:])), parts[0] * strides[0])
    axis = [E.IterVar(a.extent, a.name) for a in comp.axis]
    others = [E.IterVar(a.extent, a.name, "reduce") for a in comp.reduce_axis if a is not kv]
    mapping = dict(zip(comp.axis, axis))
    mapping.update({a: b for a, b in zip([a for a in comp.reduce_axis if a is not kv], others)})
    mapping[kv] = kval
    whole, ext = product(exts), extent_of(kv.extent)
    guard = None if isinstance(whole, int) and isinstance(ext, int) and whole == ext else \
        kval < kv.extent
    red = [v for j, v in enumerate(parts) if j != p] + others
    rf_axes = axis[:factor_axis] + [parts[p]] + axis[factor_axis:]
    rf_bodies = [_partial(b, mapping, red, guard) for b in comp.bodies]
    rf_op = ComputeOp(f"{st.name}.rf", rf_axes, rf_bodies, tag="rfactor")
    rf_comp = ComputeDef(tuple(rf_axes), tuple(red), rf_bodies[0], tuple(rf_bodies[1:]))
    rf_stage = Stage(rf_op, rf_comp, root_iters(rf_comp), origin="rfactor")
    kr = E.IterVar(exts[p], _clean(names[p]) + "_v", "reduce")
    idx = tuple(list(comp.axis[:factor_axis]) + [kr] + list(comp.axis[factor_axis:]))
    new = []
    for k, b in enumerate(comp.bodies):
        # a tuple reducer's outputs are its components (value_index k, sources shared); the
        # independent reductions of one compute (a sum and a sum of squares) each read theirs
        read = [rf_op.output(j)[idx] for j in range(len(b.sources))] \
            if len(b.sources) > 1 else rf_op.output(k)[idx]
        new.append(E.Reduce(b.combiner, read, [kr], None, b.init, b.value_index))
    new_comp = ComputeDef(comp.axis, (kr,), new[0], tuple(new[1:]))
    new_st = Stage(st.op, new_comp, root_iters(new_comp), (), st.attach, st.is_output, st.origin)
    return rf_stage, new_st
