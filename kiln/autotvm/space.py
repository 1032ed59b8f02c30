"""Configuration spaces of schedule templates (TVM's AutoTVM knobs).

In: a template's `cfg.define_split / define_knob / define_reorder / define_annotate` calls.
Out: a ConfigSpace (the knobs and their candidate values; the space is their product, a point
numbered in mixed radix, first knob fastest) and ConfigEntity, one point, whose entities the
template applies (`cfg["tile_x"].apply(s, C, x)`, `cfg["unroll"].val`).
Why: AutoTVM's hand-written templates with tunable knobs are how many TVM users tune; kiln
runs them on its own schedules, builder and runner. Knobs are the four TVM kinds; their
candidates follow TVM's policies (factor splits, power-of-two splits, permutations, loop
annotations).
"""

from __future__ import annotations

import itertools
import math

from ..errors import ScheduleError
from ..te import expr as E


class VirtualAxis:
    """An axis known only by its length (cfg.axis(n) / cfg.reduce_axis(n)), or a te axis."""

    def __init__(self, var, name: str | None = None):
        self.length = axis_length(var)
        self.name = name or getattr(var, "name", f"axis{self.length}")

    def __repr__(self) -> str:
        return f"VirtualAxis({self.name}, {self.length})"


def axis_length(axis) -> int:
    """The extent of a te IterVar, a schedule loop (split output), a VirtualAxis or an int."""
    if isinstance(axis, VirtualAxis):
        return axis.length
    if isinstance(axis, bool):
        raise ScheduleError(f"not an axis: {axis!r}")
    if isinstance(axis, int):
        return axis
    ext = getattr(axis, "extent", None)
    if isinstance(ext, E.IntImm):
        return ext.value
    if isinstance(ext, int):
        return ext
    raise ScheduleError(f"the knob's axis {axis!r} needs a constant length (got {ext!r})")


def _divisors(n: int) -> list:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


class _Entity:
    """A knob's value; entities compare, hash and print by it (`field` names it)."""

    field, code = "", ""

    def _key(self):
        v = getattr(self, self.field)
        return tuple(v) if isinstance(v, list) else repr(v)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"{self.code}{getattr(self, self.field)!r}"


# ------------------------------------------------------------------ split
class SplitEntity(_Entity):
    """One way to split an axis: `size` outer to inner, the outermost -1 (the rest)."""

    field, code = "size", "sp"

    def __init__(self, size):
        self.size = [int(x) for x in size]

    def apply(self, sch, op, axis) -> list:
        """Split `axis` of stage `op` into len(size) loops, outer to inner."""
        stage = sch[op]
        out = []
        for i in range(1, len(self.size)):
            outer, axis = stage.split(axis, factor=int(math.prod(self.size[i:])))
            out.append(outer)
        return out + [axis]



class SplitSpace:
    """Candidate splits of an axis of `length` into `num_outputs` loops.

    policy "factors": inner sizes whose product divides the length (no tail); "power2": inner
    sizes powers of two (a tail loop where they do not divide); "verbose": both. `max_factor`
    bounds each inner size; `filter(entity) -> bool` drops candidates."""

    code = "sp"

    def __init__(self, axes, policy: str = "factors", num_outputs: int = 2,
                 max_factor: int | None = None, filter=None):  # noqa: A002 - TVM name
        axis = axes[0] if isinstance(axes, (list, tuple)) else axes
        self.product = axis_length(axis)
        self.policy, self.num_outputs = policy, int(num_outputs)
        if policy not in ("factors", "power2", "verbose"):
            raise ScheduleError(f"define_split policy {policy!r}: use 'factors', 'power2' or "
                                "'verbose'")
        if self.num_outputs < 1:
            raise ScheduleError(f"define_split: num_outputs must be >= 1, got {num_outputs}")
        limit = self.product if max_factor is None else min(int(max_factor), self.product)
        cands = set()
        if policy in ("factors", "verbose"):
            cands |= {d for d in _divisors(self.product) if d <= limit}
        if policy in ("power2", "verbose"):
            cands |= {1 << k for k in range(max(limit, 1).bit_length()) if 1 << k <= limit}
        self.entities = [SplitEntity([-1, *inner]) for inner in
                         self._inner(sorted(cands), self.num_outputs - 1)
                         if filter is None or filter(SplitEntity([-1, *inner]))]
        if not self.entities:
            raise ScheduleError(f"define_split of length {self.product}: no candidate is left "
                                "(check max_factor / filter)")

    def _inner(self, cands: list, k: int):
        exact = self.policy == "factors"
        for combo in itertools.product(cands, repeat=k):
            p = math.prod(combo)
            if p <= self.product and (not exact or self.product % p == 0):
                yield list(combo)

    def __len__(self) -> int:
        return len(self.entities)

    def get(self, i: int) -> SplitEntity:
        return self.entities[i]

    def default(self) -> SplitEntity:
        return SplitEntity([-1] + [1] * (self.num_outputs - 1))

    def __repr__(self) -> str:
        return (f"Split(policy={self.policy}, product={self.product}, "
                f"num_outputs={self.num_outputs}) len={len(self)}")


# ------------------------------------------------------------------ reorder
class ReorderEntity(_Entity):
    """A permutation of some axes: apply() reorders them and returns the new order."""

    field, code = "perm", "re"

    def __init__(self, perm):
        self.perm = [int(x) for x in perm]

    def apply(self, sch, op, axes) -> list:
        order = [axes[i] for i in self.perm]
        sch[op].reorder(*order)
        return order



class ReorderSpace:
    """policy "identity" (one), "all" (every permutation), "candidate" (the given orders, as
    lists of the axes themselves)."""

    code = "re"

    def __init__(self, axes, policy: str = "all", candidate=None):
        n = len(axes)
        if policy == "identity":
            perms = [list(range(n))]
        elif policy == "all":
            perms = [list(p) for p in itertools.permutations(range(n))]
        elif policy == "candidate":
            perms = [[_index_of(axes, a) for a in cand] for cand in candidate or ()]
        else:
            raise ScheduleError(f"define_reorder policy {policy!r}: use 'identity', 'all' or "
                                "'candidate'")
        if not perms:
            raise ScheduleError("define_reorder: no candidate order")
        self.policy, self.entities = policy, [ReorderEntity(p) for p in perms]

    def __len__(self) -> int:
        return len(self.entities)

    def get(self, i: int) -> ReorderEntity:
        return self.entities[i]

    def default(self) -> ReorderEntity:
        return ReorderEntity(range(len(self.entities[0].perm)))

    def __repr__(self) -> str:
        return f"Reorder(policy={self.policy}) len={len(self)}"


def _index_of(axes, a) -> int:
    for i, x in enumerate(axes):
        if x is a:
            return i
    raise ScheduleError(f"define_reorder: {a!r} is not one of the axes given")


# ------------------------------------------------------------------ annotate
class AnnotateEntity(_Entity):
    """One annotation per axis: "none", "unroll", "vec", or a GPU thread tag to bind."""

    field, code = "anns", "an"

    def __init__(self, anns):
        self.anns = list(anns)

    def apply(self, sch, op, axes, axis_lens=None, max_unroll=None, vec_size=None, cfg=None,
              source=None) -> list:
        stage = sch[op]
        for ax, ann in zip(axes, self.anns, strict=True):
            if ann == "unroll":
                stage.unroll(ax)
            elif ann == "vec":
                stage.vectorize(ax)
            elif ann == "parallel":
                stage.parallel(ax)
            elif ann not in ("none", None):
                from ..te.tensor import thread_axis
                stage.bind(ax, thread_axis(ann))
        return list(axes)



_ANN_POLICIES = {"unroll": ["unroll"], "try_unroll": ["none", "unroll"],
                 "try_vec": ["none", "vec"], "try_unroll_vec": ["none", "unroll", "vec"],
                 "vec": ["vec"], "parallel": ["parallel"], "try_parallel": ["none", "parallel"]}


class AnnotateSpace:
    """Each axis takes one of the policy's annotations ("try_unroll": none or unroll...)."""

    code = "an"

    def __init__(self, axes, policy: str = "try_unroll", **_):
        if policy not in _ANN_POLICIES:
            raise ScheduleError(f"define_annotate policy {policy!r}: use one of "
                                f"{', '.join(_ANN_POLICIES)}")
        opts = _ANN_POLICIES[policy]
        self.policy = policy
        self.entities = [AnnotateEntity(c) for c in itertools.product(opts, repeat=len(axes))]

    def __len__(self) -> int:
        return len(self.entities)

    def get(self, i: int) -> AnnotateEntity:
        return self.entities[i]

    def default(self) -> AnnotateEntity:
        return AnnotateEntity(["none"] * len(self.entities[0].anns))

    def __repr__(self) -> str:
        return f"Annotate(policy={self.policy}) len={len(self)}"


# ------------------------------------------------------------------ other
class OtherOptionEntity(_Entity):
    """A plain knob value: `cfg["unroll"].val`."""

    field, code = "val", "ot"

    def __init__(self, val):
        self.val = val



class OtherOptionSpace:
    code = "ot"

    def __init__(self, axes, policy=None, candidate=None):
        cands = list(candidate if candidate is not None else axes)
        if not cands:
            raise ScheduleError("define_knob needs at least one candidate")
        self.entities = [OtherOptionEntity(c) for c in cands]

    def __len__(self) -> int:
        return len(self.entities)

    def get(self, i: int) -> OtherOptionEntity:
        return self.entities[i]

    def default(self) -> OtherOptionEntity:
        return self.entities[0]

    def __repr__(self) -> str:
        return f"OtherOption({[e.val for e in self.entities]}) len={len(self)}"


ENTITY_OF_CODE = {k.code: k for k in (SplitEntity, ReorderEntity, AnnotateEntity,
                                       OtherOptionEntity)}
