"""What `autotvm.get_config()` hands a template: the space being collected, one point of it,
or a fallback.

In: the template's define_* calls and `cfg[name]` reads. Out: ConfigSpace (collects knobs;
`len(space)`, `space.get(i)`), ConfigEntity (one point: define_* are no-ops, `cfg[name]` its
value) and FallbackConfigEntity (no tuned point: each knob's default, TVM's fallback).
Why: the same template code runs in all three roles, as in TVM.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from ..errors import ScheduleError
from .space import (
    ENTITY_OF_CODE,
    AnnotateSpace,
    OtherOptionSpace,
    ReorderSpace,
    SplitEntity,
    SplitSpace,
    VirtualAxis,
)


class _Knobs:
    """What the three config kinds share: the knob table, flop counting, axis helpers."""

    is_fallback = False

    def __init__(self):
        self.space_map: OrderedDict = OrderedDict()
        self._entity_map: OrderedDict = OrderedDict()
        self.flop = 0
        self.errors: list = []

    @staticmethod
    def axis(var) -> VirtualAxis:
        return VirtualAxis(var)

    reduce_axis = axis

    def add_flop(self, flop) -> None:
        self.flop += float(flop)

    def raise_error(self, msg: str) -> None:
        """Mark this config invalid (it is recorded as an instantiation error)."""
        self.errors.append(msg)

    def valid(self) -> bool:
        return not self.errors

    def define_split(self, name, axis, policy="factors", **kwargs):
        return self._define(name, SplitSpace, [axis], policy=policy, **kwargs)

    def define_reorder(self, name, axes, policy="all", **kwargs):
        return self._define(name, ReorderSpace, axes, policy=policy, **kwargs)

    def define_annotate(self, name, axes, policy="try_unroll", **kwargs):
        return self._define(name, AnnotateSpace, axes, policy=policy, **kwargs)

    def define_knob(self, name, candidate):
        return self._define(name, OtherOptionSpace, [], candidate=candidate)

    def _define(self, name, kind, axes, **kwargs):
        raise NotImplementedError

    def __getitem__(self, name: str):
        if name not in self._entity_map:
            raise ScheduleError(f"the template reads knob {name!r}, which it has not defined "
                                f"(knobs: {list(self._entity_map)})")
        return self._entity_map[name]

    def get_flatten_feature(self) -> list:
        """The knob values as numbers (the "knob" features of XGBTuner)."""
        out = []
        for ent in self._entity_map.values():
            if isinstance(ent, SplitEntity):
                out += [math.log2(x) for x in ent.size[1:]]
            elif hasattr(ent, "perm"):
                out += ent.perm
            elif hasattr(ent, "anns"):
                out += [hash(a) % 7 for a in ent.anns]
            else:
                v = ent.val
                out.append(float(v) if isinstance(v, (int, float)) else hash(repr(v)) % 97)
        return out


class ConfigSpace(_Knobs):
    """The knobs of a template and their candidates; a point is `space.get(index)`."""

    def _define(self, name, kind, axes, **kwargs):
        if name in self.space_map:
            raise ScheduleError(f"the template defines knob {name!r} twice")
        space = kind(axes, **kwargs)
        self.space_map[name] = space
        self._entity_map[name] = space.get(0)
        return [VirtualAxis(a) if not isinstance(a, VirtualAxis) else a for a in axes] \
            if kind is SplitSpace else None

    def __len__(self) -> int:
        return math.prod(len(s) for s in self.space_map.values())

    @property
    def range_length(self) -> int:
        return len(self)

    @property
    def dims(self) -> list:
        return [len(s) for s in self.space_map.values()]

    def point2knob(self, index: int) -> list:
        out = []
        for n in self.dims:
            out.append(index % n)
            index //= n
        return out

    def knob2point(self, knob: list) -> int:
        index, scale = 0, 1
        for k, n in zip(knob, self.dims, strict=True):
            index += k * scale
            scale *= n
        return index

    def get(self, index: int) -> ConfigEntity:
        if not 0 <= int(index) < len(self):
            raise ScheduleError(f"config index {index} is outside the space (0..{len(self) - 1})")
        knob = self.point2knob(int(index))
        ents = OrderedDict((name, space.get(k)) for (name, space), k in
                           zip(self.space_map.items(), knob, strict=True))
        return ConfigEntity(int(index), None, ents, self)

    def __iter__(self):
        return (self.get(i) for i in range(len(self)))

    def __repr__(self) -> str:
        lines = [f"ConfigSpace (len={len(self)}, range_length={self.range_length}, space_map="]
        for i, (name, space) in enumerate(self.space_map.items()):
            lines.append(f"   {i:2d} {name}: {space!r}")
        return "\n".join(lines) + "\n)"


class ConfigEntity(_Knobs):
    """One point of a space: `cfg[name]` is its entity; define_* calls are no-ops."""

    def __init__(self, index: int, code_hash, entity_map, space: ConfigSpace | None = None):
        super().__init__()
        self.index, self.code_hash = index, code_hash
        self._entity_map = OrderedDict(entity_map)
        self.space_map = space.space_map if space is not None else OrderedDict()

    def _define(self, name, kind, axes, **kwargs):
        return [VirtualAxis(a) if not isinstance(a, VirtualAxis) else a for a in axes] \
            if kind is SplitSpace else None

    def to_json_dict(self) -> dict:
        return {"index": self.index, "code_hash": self.code_hash,
                "entity": [[name, e.code, getattr(e, e.field)]
                           for name, e in self._entity_map.items()]}

    @staticmethod
    def from_json_dict(obj: dict) -> ConfigEntity:
        ents = OrderedDict()
        for name, code, value in obj["entity"]:
            if code not in ENTITY_OF_CODE:
                raise ScheduleError(f"unknown knob kind {code!r} in a record")
            ents[name] = ENTITY_OF_CODE[code](value)
        return ConfigEntity(int(obj["index"]), obj.get("code_hash"), ents)

    def __repr__(self) -> str:
        items = ", ".join(f"('{n}', {getattr(e, e.field)!r})"
                          for n, e in self._entity_map.items())
        return f"[{items}],{self.code_hash},{self.index}"


class FallbackConfigEntity(_Knobs):
    """No tuned config: every knob takes its default (splits by 1, first candidates)."""

    is_fallback = True

    def _define(self, name, kind, axes, **kwargs):
        space = kind(axes, **kwargs)
        self.space_map[name] = space
        if name not in self._entity_map:  # fallback_split may have set it already
            self._entity_map[name] = space.default()
        return [VirtualAxis(a) if not isinstance(a, VirtualAxis) else a for a in axes] \
            if kind is SplitSpace else None

    def fallback_split(self, name: str, constraints) -> None:
        """Set split `name` to the largest factors within `constraints` (inner to outer)."""
        space = self.space_map.get(name)
        if not isinstance(space, SplitSpace):
            raise ScheduleError(f"fallback_split: {name!r} is not a defined split")
        left, sizes = space.product, []
        for c in reversed(list(constraints)[1:]):
            f = max(d for d in range(1, min(int(c), left) + 1) if left % d == 0)
            sizes.append(f)
            left //= f
        self._entity_map[name] = SplitEntity([-1, *reversed(sizes)])

    def __repr__(self) -> str:
        return f"FallbackConfig({dict(self._entity_map)})"
