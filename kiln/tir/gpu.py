"""GPU kernels of a lowered PrimFunc: where each kernel starts, its launch shape, its limits.

In: a PrimFunc lowered from a schedule whose loops are bound to blockIdx / threadIdx, and the
CUDA `Target` whose limits apply.
Out: `split_kernels(func, target)` -> a list of `Kernel`s (body, grid and block extents, the
buffers it touches, static shared bytes) plus the global temporaries the kernels share
(`workspace`), in launch order.
Why: one place decides what a kernel is and checks the schedule against the hardware (threads
per block, shared memory, consistent thread extents), so the CUDA printer, the runtime's launch
plan and the loop-IR interpreter agree, and a bad schedule fails at build time with a
`ScheduleError` that names the limit instead of as a launch failure on the device.
Each statement at the root of the function (below the workspace allocations) is one kernel;
every loop bound to the same thread index inside one kernel must have the same extent. One
exception, serial split-K: a root whose block loops carry the pragma `splitk_serial` = S
(schedule_matmul puts it on the stage that sums split-K's slices, tiled like the slices) is
not launched; it becomes the end of the kernel before it, run by the last of the S slices of
each tile to finish (`LastBlock`), which saves a launch and a round trip between kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ScheduleError
from ..te import expr as E
from . import stmt as S
from .lower_helpers import dtype_bytes, stmt_exprs

_AXES = ("x", "y", "z")
_GRID_LIMITS = (2 ** 31 - 1, 65535, 65535)
_BLOCK_LIMITS = (1024, 1024, 64)


@dataclass
class Kernel:
    """One __global__ function: its body (the root statement) and how to launch it."""

    name: str
    body: S.Stmt
    grid: tuple
    block: tuple
    buffers: list = field(default_factory=list)  # params and workspace it touches, in order
    shared_bytes: int = 0

    @property
    def threads(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]


def is_gpu_func(func: S.PrimFunc) -> bool:
    """Whether any loop of the function is bound to a GPU thread index."""
    return any(isinstance(s, S.For) and s.kind == "thread" for s in S.walk_stmts(func.body))


def nbytes(buf: S.Buffer) -> int:
    return max(buf.size, 1) * dtype_bytes(buf.dtype)


def copy_stride(buf: S.Buffer) -> int:
    """Elements from one copy of a double-buffered shared stage to the next: its size
    rounded up to 16 bytes, so that both copies keep the alignment of 16-byte loads."""
    per = max(1, 16 // dtype_bytes(buf.dtype))
    return -(-buf.size // per) * per


def split_kernels(func: S.PrimFunc, target=None) -> tuple:
    """(kernels, workspace buffers) of a GPU PrimFunc, checked against the target's limits."""
    body, workspace = func.body, []
    while isinstance(body, S.Allocate):
        if body.buffer.scope in ("shared", "local"):
            raise ScheduleError(f"{body.buffer.name} has scope {body.buffer.scope} but is "
                                "computed at the root, outside every kernel: compute_at it "
                                "inside the kernel that reads it")
        workspace.append(body.buffer)
        body = body.body
    roots = _merge_serial_splitk(body.stmts if isinstance(body, S.SeqStmt) else [body])
    order = list(func.params) + workspace
    kernels = []
    for k, root in enumerate(roots):
        calls = [x for x in S.walk_stmts(root) if isinstance(x, S.CallPacked)]
        if calls:
            raise ScheduleError(f"te.extern call of {calls[0].func_name!r}: packed functions "
                                "run on the host; build this schedule for a CPU target")
        kern = _kernel(f"{func.name}_kernel{k}", root, order)
        _check_limits(kern, target)
        kernels.append(kern)
    return kernels, workspace


SPLITK_PRAGMA = "splitk_serial"
# on a k loop of 8 laid out by topi.cuda.schedule_matmul(mma=1): codegen.cuda_mma runs the
# product nest inside it on the tensor cores
MMA_PRAGMA = "mma_tf32x3"


def _block_nest(root: S.Stmt) -> tuple:
    """({blockIdx tag: For}, the statement inside the outer chain of blockIdx loops)."""
    loops, s = {}, root
    while isinstance(s, S.For) and s.thread_tag.startswith("blockIdx"):
        loops[s.thread_tag] = s
        s = s.body
    return loops, s


def _merge_serial_splitk(roots: list) -> list:
    """Roots with the split-K pragma folded into the root before them (see the docstring)."""
    out = []
    for root in roots:
        loops, inner = _block_nest(root)
        slices = max((int(f.pragmas.get(SPLITK_PRAGMA, 0)) for f in loops.values()), default=0)
        if slices < 2:
            out.append(root)
            continue
        if not out:
            raise ScheduleError(f"{_what(root)}: pragma {SPLITK_PRAGMA} on the first kernel "
                                "(it sums the slices of the kernel before it)")
        out[-1] = _append_last_block(out[-1], loops, inner, slices, _what(root))
    return out


def _extent(f) -> int:
    return 1 if f is None else int(f.extent.value)


def _append_last_block(first: S.Stmt, loops: dict, inner: S.Stmt, slices: int,
                       where: str) -> S.Stmt:
    """`first` (blocks (x, y, slices * z)) followed, in its last-arriving block of each tile,
    by `inner` (the summing kernel's body, blocks (x, y, z)) with its block indices mapped:
    the slice index is the outer part of the first kernel's blockIdx.z (schedule_matmul
    fuses slice and batch axes in that order)."""
    floops, finner = _block_nest(first)
    gx, gy, gz = (_extent(loops.get(f"blockIdx.{a}")) for a in _AXES)
    fx, fy, fz = (_extent(floops.get(f"blockIdx.{a}")) for a in _AXES)
    if (fx, fy, fz) != (gx, gy, gz * slices):
        raise ScheduleError(f"{where}: pragma {SPLITK_PRAGMA}={slices} needs the kernel before "
                            f"it to have grid ({gx}, {gy}, {gz * slices}), it has ({fx}, {fy}, "
                            f"{fz})")
    blk = {a: floops[f"blockIdx.{a}"].var if f"blockIdx.{a}" in floops else E.IntImm(0)
           for a in _AXES}
    bz = E.binop("floormod", blk["z"], E.IntImm(gz)) if gz > 1 else E.IntImm(0)
    sub = {loops[f"blockIdx.{a}"].var: v for a, v in (("x", blk["x"]), ("y", blk["y"]),
                                                       ("z", bz)) if f"blockIdx.{a}" in loops}
    body = S.map_exprs(inner, lambda e: E.substitute(e, sub))
    row = E.binop("add", E.binop("mul", bz, E.IntImm(gy)), blk["y"]) if gz > 1 else blk["y"]
    index = E.binop("add", E.binop("mul", row, E.IntImm(gx)), blk["x"])
    written = {s.buffer.uid for s in S.walk_stmts(finner) if isinstance(s, S.Store)
               and s.buffer.scope not in ("shared", "local")}
    read = {n.buffer.uid for s in S.walk_stmts(body) for e in stmt_exprs(s)
            for n in E.walk(e) if isinstance(n, S.BufferLoad)}
    tail = S.LastBlock(index, slices, gx * gy * gz, body, tuple(sorted(written & read)))
    return _rebuild_nest(first, S.seq([finner, tail]))


def _rebuild_nest(root: S.Stmt, inner: S.Stmt) -> S.Stmt:
    """root's chain of blockIdx loops around a new inner statement."""
    if isinstance(root, S.For) and root.thread_tag.startswith("blockIdx"):
        return S.For(root.var, root.extent, root.kind, _rebuild_nest(root.body, inner),
                     dict(root.pragmas), root.thread_tag)
    return inner


def _kernel(name: str, root: S.Stmt, order: list) -> Kernel:
    extents: dict = {}
    _collect_threads(root, extents, outside=[], where=_what(root))
    if not extents:
        raise ScheduleError(f"{_what(root)} runs on the GPU without thread bindings: bind its "
                            "outer loops to blockIdx.x / threadIdx.x (s[T].bind(axis, "
                            "te.thread_axis('threadIdx.x'))); a te.extern has no loops to "
                            "bind and runs on CPU targets only")
    grid = tuple(extents.get(f"blockIdx.{a}", 1) for a in _AXES)
    block = tuple(extents.get(f"threadIdx.{a}", 1) for a in _AXES)
    used = _buffers_used(root)
    shared = sum(2 * copy_stride(s.buffer) * dtype_bytes(s.buffer.dtype)
                 if s.buffer.double_buffer else nbytes(s.buffer) for s in S.walk_stmts(root)
                 if isinstance(s, S.Allocate) and s.buffer.scope == "shared")
    # a cross-thread reduction over several warps passes one value per warp through shared
    shared += sum(s.extent // 32 * block[1] * block[2] * dtype_bytes(s.dst.dtype)
                  for s in S.walk_stmts(root) if isinstance(s, S.AllReduce) and s.extent > 32)
    for s in S.walk_stmts(root):
        if isinstance(s, S.Allocate) and s.buffer.scope in ("global", "stack", "heap"):
            raise ScheduleError(f"{s.buffer.name} is allocated inside GPU kernel {name} in "
                                f"scope {s.buffer.scope}; compute it at the root or give it "
                                "a shared / local scope")
    return Kernel(name, root, grid, block, [b for b in order if b.uid in used], shared)


def _collect_threads(s: S.Stmt, extents: dict, outside: list, where: str) -> None:
    if isinstance(s, S.For) and s.kind == "thread":
        ext = s.extent.value if isinstance(s.extent, E.IntImm) else None
        if ext is None:
            raise ScheduleError(f"{where}: loop bound to {s.thread_tag} has a symbolic extent")
        if s.thread_tag.startswith("blockIdx") and outside:
            raise ScheduleError(f"{where}: loop {s.var.name} bound to {s.thread_tag} is inside "
                                f"the ordinary loop {outside[-1]}; block indices must be the "
                                "outermost loops of a kernel")
        old = extents.setdefault(s.thread_tag, ext)
        if old != ext:
            raise ScheduleError(f"{where}: loops bound to {s.thread_tag} have extents {old} and "
                                f"{ext}; every loop bound to one thread index in a kernel must "
                                "have the same extent")
        _collect_threads(s.body, extents, outside, where)
        return
    if isinstance(s, S.For):
        if s.kind == "parallel":
            raise ScheduleError(f"{where}: loop {s.var.name} is parallel inside a GPU kernel; "
                                "bind it to blockIdx / threadIdx instead")
        outside = outside + [s.var.name]
    for c in S.stmt_children(s):
        _collect_threads(c, extents, outside, where)


def _check_limits(kern: Kernel, target) -> None:
    for axis, n, lim in zip(_AXES, kern.grid, _GRID_LIMITS):
        if n > lim:
            raise ScheduleError(f"{kern.name}: blockIdx.{axis} extent {n} exceeds the limit {lim}")
    for axis, n, lim in zip(_AXES, kern.block, _BLOCK_LIMITS):
        if n > lim:
            raise ScheduleError(f"{kern.name}: threadIdx.{axis} extent {n} exceeds the limit "
                                f"{lim}")
    max_threads = target.max_threads_per_block if target is not None else 1024
    if kern.threads > max_threads:
        raise ScheduleError(f"{kern.name}: {kern.threads} threads per block "
                            f"({'x'.join(map(str, kern.block))}) exceed the target's "
                            f"max_threads_per_block = {max_threads}")
    max_shared = target.max_shared_memory_per_block if target is not None else 48 * 1024
    if kern.shared_bytes > max_shared:
        raise ScheduleError(f"{kern.name}: {kern.shared_bytes} bytes of shared memory per block "
                            f"exceed the target's max_shared_memory_per_block = {max_shared}")


def _buffers_used(root: S.Stmt) -> set:
    out = set()
    for s in S.walk_stmts(root):
        if isinstance(s, S.Store):
            out.add(s.buffer.uid)
        for e in stmt_exprs(s):
            out.update(n.buffer.uid for n in E.walk(e) if isinstance(n, S.BufferLoad))
    return out


def _what(root: S.Stmt) -> str:
    """A name for the kernel in messages: the buffers its nest writes."""
    names = []
    for s in S.walk_stmts(root):
        if isinstance(s, S.Store) and s.buffer.scope not in ("shared", "local") \
                and s.buffer.name not in names:
            names.append(s.buffer.name)
    return "the stage computing " + ", ".join(names) if names else "a root statement"
