"""A fast SIMT executor of GPU kernels (gpu.Kernel) for the emulated GPU (tests/gpu_stub.py).

Every thread of every block is one lane of NumPy arrays: a statement runs for all lanes at
once, under a mask where control flow diverges (thread-loop bounds, if-then-else, selects).
Shared buffers hold one copy per block, local buffers one per thread. Since all lanes advance
statement by statement, a missing barrier would not change the result here; instead every
shared and global word records who wrote and read it in which barrier interval, and two
threads touching one word (one of them writing) with no barrier between them, or from two
blocks, is a `Race` (as compute-sanitizer's racecheck reports). It is here to run kernels of
real sizes fast (tens of times faster than tir_interp), as a GPU would compute them, in
float32.
"""

from __future__ import annotations

import math

import numpy as np

from kiln.te import expr as E
from kiln.tir import stmt as S

_NP = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64,
       "bool": np.bool_, "int8": np.int8, "uint8": np.uint8, "float16": np.float16,
       "uint16": np.uint16}
_ERF = np.frompyfunc(math.erf, 1, 1)
_CALL = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "floor": np.floor,
         "ceil": np.ceil, "abs": np.abs, "sin": np.sin, "cos": np.cos, "log2": np.log2,
         "exp2": np.exp2, "trunc": np.trunc, "round": np.rint, "pow": np.power,
         "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "rsqrt": lambda x: 1 / np.sqrt(x),
         "erf": lambda x: _ERF(x).astype(np.asarray(x).dtype)}
_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z", "threadIdx.x", "threadIdx.y", "threadIdx.z")


_ARRIVALS: dict = {}  # (kernel name, slots) -> LastBlock arrival counts, as on the device


def _tf32(x: np.ndarray) -> np.ndarray:
    """float32 truncated to TF32 (its top 19 bits: the 10 highest mantissa bits), as
    KILN_TF32_SPLIT makes both parts."""
    return (np.asarray(x, np.float32).view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)


class OutOfBounds(Exception):
    """An active lane read or wrote outside its buffer (an illegal address on a GPU)."""


class Race(Exception):
    """Two threads touched one word, at least one writing, with no barrier between them (or
    from two blocks of one launch, which nothing orders)."""


class _Hazards:
    """Who touched each word of one buffer: the last writer lane and its barrier interval,
    and (shared memory) the lowest and highest lane that read it in the current interval.
    Lanes run in lock step here, so an ordering the GPU does not guarantee can only be seen
    this way: accesses by two threads to one word conflict unless a barrier of their block
    separates them (never, across blocks)."""

    def __init__(self, name: str, size: int, threads: int, shared: bool, run=None):
        self.name, self.threads, self.shared, self.run = name, threads, shared, run
        self.w_lane = np.full(size, -1, np.int64)
        self.w_ep = np.full(size, -1, np.int64)
        if shared:
            self.r_lo = np.full(size, -1, np.int64)
            self.r_hi = np.full(size, -1, np.int64)
            self.r_ep = np.full(size, -1, np.int64)

    def _other(self, owner, lanes, ep, owner_ep):
        other = (owner >= 0) & (owner != lanes)
        same_block = owner // self.threads == lanes // self.threads
        cross = ~same_block
        group = getattr(self.run, "group", None)
        if group is not None:  # inside a LastBlock: its tile's blocks wrote before arriving
            g_owner = group[np.where(owner >= 0, owner, 0) // self.threads]
            cross &= ~((g_owner >= 0) & (g_owner == group[lanes // self.threads])
                       & (owner_ep < self.run.handoff_ep))
        return other & (cross | (owner_ep == ep))

    def _fail(self, kind: str, where, lanes, owner, hit) -> None:
        i = int(np.argmax(hit))
        raise Race(f"{kind} race on {self.name}[{int(where[i])}]: threads {int(owner[i])} and "
                   f"{int(lanes[i])} (flat ids) with no barrier between them")

    def read(self, where, lanes, ep: int) -> None:
        owner = self.w_lane[where]
        hit = self._other(owner, lanes, ep, self.w_ep[where])
        if hit.any():
            self._fail("read-after-write", where, lanes, owner, hit)
        if self.shared:
            fresh = where[self.r_ep[where] != ep]
            self.r_lo[fresh], self.r_hi[fresh], self.r_ep[fresh] = np.iinfo(np.int64).max, -1, ep
            np.minimum.at(self.r_lo, where, lanes)
            np.maximum.at(self.r_hi, where, lanes)

    def write(self, where, lanes, values, old, ep: int) -> None:
        owner = self.w_lane[where]
        same = (old == values) | (np.isnan(old) & np.isnan(values)) if old.dtype.kind == "f" \
            else old == values
        hit = self._other(owner, lanes, ep, self.w_ep[where]) & ~same
        if hit.any():
            self._fail("write-after-write", where, lanes, owner, hit)
        if self.shared:
            read = self.r_ep[where] == ep
            hit = read & ((self.r_lo[where] != lanes) | (self.r_hi[where] != lanes))
            if hit.any():
                self._fail("write-after-read", where, lanes, self.r_lo[where], hit)
        order = np.argsort(where, kind="stable")
        w, v = where[order], values[order]
        dup = (w[1:] == w[:-1]) & (v[1:] != v[:-1])
        if dup.any():
            self._fail("simultaneous write", w[1:], lanes[order][1:], lanes[order][:-1], dup)
        self.w_lane[where], self.w_ep[where] = lanes, ep


class _Run:
    def __init__(self, kern, mem: dict):
        gx, gy, gz = kern.grid
        bx, by, bz = kern.block
        lane = np.arange(gx * gy * gz * bx * by * bz, dtype=np.int64)
        threads = bx * by * bz
        t, b = lane % threads, lane // threads
        self.index = {"threadIdx.x": t % bx, "threadIdx.y": (t // bx) % by,
                      "threadIdx.z": t // (bx * by), "blockIdx.x": b % gx,
                      "blockIdx.y": (b // gx) % gy, "blockIdx.z": b // (gx * gy)}
        self.lanes, self.block, self.nblocks = lane, b, gx * gy * gz
        self.threads = threads
        self.mem = mem     # uid -> flat array (global buffers)
        self.base = {}     # uid -> per-lane offset of shared / local copies
        self.env = {}
        self.epoch = 0     # barrier intervals so far (lanes reach every barrier together)
        self.hazards = {}  # uid -> _Hazards of shared and global buffers
        self.name = kern.name
        self.group = None  # inside a LastBlock body: each block's arrival slot (-1: none)
        self.handoff_ep = 0

    # ------------------------------------------------------------ statements
    def stmt(self, s, mask) -> None:
        if isinstance(s, S.SeqStmt):
            for x in s.stmts:
                self.stmt(x, mask)
        elif isinstance(s, S.For) and s.kind == "thread":
            idx = self.index[s.thread_tag]
            self.env[s.var] = idx
            self.stmt(s.body, mask & (idx < self.expr(s.extent, mask)))
        elif isinstance(s, S.For):
            self.loop(s, mask)
        elif isinstance(s, S.Store):
            self.store(s, mask)
        elif isinstance(s, S.Allocate):
            self.allocate(s.buffer)
            self.stmt(s.body, mask)
        elif isinstance(s, S.IfThenElse):
            cond = self.expr(s.cond, mask)
            self.stmt(s.then, mask & cond)
            if s.else_ is not None:
                self.stmt(s.else_, mask & ~np.asarray(cond, bool))
        elif isinstance(s, S.LetStmt):
            self.env[s.var] = self.expr(s.value, mask)
            self.stmt(s.body, mask)
        elif isinstance(s, S.Barrier):  # lanes run in lock step: only hazards need it
            self.block_uniform(mask, "__syncthreads()")
            self.epoch += 1
        elif isinstance(s, S.LastBlock):
            self.last_block(s, mask)
        elif isinstance(s, S.AllReduce):
            self.all_reduce(s, mask)
        elif isinstance(s, S.MmaTile):
            self.mma_tile(s, mask)
        else:
            raise TypeError(type(s))

    def mma_tile(self, s, mask) -> None:
        """Each warp's m16n8k8 products as the tensor cores compute them: the lanes'
        fragment values assembled into the 16 x 8 and 8 x 8 operands (the layouts S.MmaTile
        states), each operand split into two TF32 parts as KILN_TF32_SPLIT does (hi: x
        truncated, lo: x - hi truncated), and the three products added to the accumulators
        in float32, small terms first."""
        self.block_uniform(mask, "a tensor-core product")
        if self.threads % 32:
            raise Race(f"a tensor-core product in blocks of {self.threads} threads (whole "
                       "warps only)")
        warps = len(self.lanes) // 32
        lane = np.arange(32)
        g, t = lane // 4, lane % 4

        def values(e):
            v = np.broadcast_to(np.asarray(self.expr(e, mask), np.float32), self.lanes.shape)
            return v.reshape(warps, 32)
        a = np.zeros((len(s.a), warps, 16, 8), np.float32)
        for f, frag in enumerate(s.a):
            for r, e in enumerate(frag):
                a[f][:, g + 8 * (r % 2), t + 4 * (r // 2)] = values(e)
        b = np.zeros((len(s.b), warps, 8, 8), np.float32)
        for f, frag in enumerate(s.b):
            for q, e in enumerate(frag):
                b[f][:, t + 4 * q, g] = values(e)
        parts = [(_tf32(x), _tf32(x - _tf32(x))) for x in (a, b)]  # (hi, lo) of each
        acc = self.mem[s.acc.uid]
        for fa in range(len(s.a)):
            for fb in range(len(s.b)):
                where = [self.address(s.acc, self.expr(x, mask), mask, "store")
                         for x in s.c[fa][fb]]
                c = np.zeros((warps, 16, 8), np.float32)
                for r, w in enumerate(where):
                    c[:, g + 8 * (r // 2), 2 * t + r % 2] = acc[w].reshape(warps, 32)
                a_hi, a_lo = parts[0][0][fa], parts[0][1][fa]
                b_hi, b_lo = parts[1][0][fb], parts[1][1][fb]
                for x, y in ((a_lo, b_hi), (a_hi, b_lo), (a_hi, b_hi)):
                    c = (c.astype(np.float64) + x.astype(np.float64) @ y).astype(np.float32)
                for r, w in enumerate(where):
                    acc[w[mask]] = c[:, g + 8 * (r // 2), 2 * t + r % 2].reshape(-1)[mask]

    def all_reduce(self, s, mask) -> None:
        """Every active lane gets the combination of its group's values (the lanes of one
        block and threadIdx.y / z, threadIdx.x < extent), folded as a butterfly like the
        device's shuffles. A group with a lane missing is an error: on the device the
        shuffles would read a thread that never arrived."""
        val = self.expr(S.BufferLoad(s.src, E.IntImm(0)), mask).astype(_NP[s.dst.dtype])
        tx = self.index["threadIdx.x"]
        group = self.lanes - tx  # the group's lane with threadIdx.x == 0
        inside = tx < s.extent
        if (mask & inside).sum() != inside.sum():
            raise Race(f"all_reduce over {s.extent} threads reached by only some of them")
        self.block_uniform(mask, f"all_reduce over {s.extent} threads")
        off = s.extent // 2
        while off:
            partner = np.where(inside, group + (tx ^ off), self.lanes)
            self.env[s.lhs], self.env[s.rhs] = val, val[partner]
            val = np.asarray(self.expr(s.combined, mask)).astype(val.dtype)
            off //= 2
        where = self.address(s.dst, 0, mask, "store")
        self.mem[s.dst.uid][where[mask]] = val[mask]

    def block_uniform(self, mask, what: str) -> None:
        """A barrier (or warp shuffles over a whole-warp mask) must be reached by every
        thread of a block or by none: on a GPU a block with some threads elsewhere hangs or
        reads lanes that never arrived (compute-sanitizer's synccheck)."""
        active = np.bincount(self.block, weights=mask, minlength=self.nblocks)
        split = (active > 0) & (active < self.threads)
        if split.any():
            b = int(np.argmax(split))
            raise Race(f"{what} reached by {int(active[b])} of the {self.threads} threads "
                       f"of block {b}")

    def last_block(self, s, mask) -> None:
        """Blocks arrive in block order (one order a GPU may take); the arrival counts
        persist between launches like the module's __device__ array, so a launch that
        leaves one short breaks the next. Reads in the body of words that the blocks of the
        same slot wrote before arriving are ordered (by the fence and the atomic); any other
        block's words still race."""
        self.epoch += 1
        self.handoff_ep = self.epoch
        first = mask & (self.lanes % self.threads == 0)
        slot = np.broadcast_to(np.asarray(self.expr(s.index, mask), np.int64),
                               self.lanes.shape)[first]
        if ((slot < 0) | (slot >= s.slots)).any():
            raise OutOfBounds(f"arrival slot {int(slot.max())} outside 0..{s.slots - 1}")
        counts = _ARRIVALS.setdefault((self.name, s.slots), np.zeros(s.slots, np.int64))
        last = np.zeros(self.nblocks, bool)
        for b, i in zip(self.block[first], slot):
            counts[i] += 1
            if counts[i] == s.count:
                counts[i], last[b] = 0, True
        self.group = np.full(self.nblocks, -1, np.int64)
        self.group[self.block[first]] = slot
        self.stmt(s.body, mask & last[self.block])
        self.group = None

    def loop(self, s, mask) -> None:
        extent = self.expr(s.extent, mask)
        if np.ndim(extent):  # a per-thread trip count: run to the largest, mask the rest
            top = int(extent[mask].max()) if mask.any() else 0
            for i in range(top):
                self.env[s.var] = i
                self.stmt(s.body, mask & (i < extent))
            return
        for i in range(int(extent)):
            self.env[s.var] = i
            self.stmt(s.body, mask)

    def allocate(self, buf) -> None:
        size = max(buf.size, 1)
        fill = np.nan if buf.dtype.startswith("float") else 0
        if buf.scope == "shared":
            copies, owner = self.nblocks, self.block
        elif buf.scope == "local":
            copies, owner = len(self.lanes), self.lanes
        else:  # a global temporary inside the kernel: one copy
            copies, owner = 1, np.zeros_like(self.lanes)
        self.mem[buf.uid] = np.full(copies * size, fill, dtype=_NP[buf.dtype])
        self.base[buf.uid] = (owner * size, size)

    def address(self, buf, index, mask, what: str):
        index = np.broadcast_to(np.asarray(index, np.int64), self.lanes.shape)
        base = self.base.get(buf.uid)
        size = base[1] if base else self.mem[buf.uid].size
        bad = mask & ((index < 0) | (index >= size))
        if bad.any():
            lane = int(np.argmax(bad))
            raise OutOfBounds(f"{what} {buf.name}[{int(index[lane])}] out of bounds "
                              f"(size {size}) in lane {lane}")
        index = np.where(mask, index, 0)
        return index + base[0] if base else index

    def tracker(self, buf):
        """The hazard record of a shared or global buffer (None for per-thread ones)."""
        if buf.scope == "local":
            return None
        if buf.uid not in self.hazards:
            self.hazards[buf.uid] = _Hazards(buf.name, self.mem[buf.uid].size, self.threads,
                                             buf.scope == "shared", self)
        return self.hazards[buf.uid]

    def store(self, s, mask) -> None:
        if not mask.any():
            return
        where = self.address(s.buffer, self.expr(s.index, mask), mask, "store")
        value = np.broadcast_to(self.expr(s.value, mask), self.lanes.shape)
        buf = self.mem[s.buffer.uid]
        value = value[mask].astype(buf.dtype, copy=False)
        hz = self.tracker(s.buffer)
        if hz is not None:
            hz.write(where[mask], self.lanes[mask], value, buf[where[mask]], self.epoch)
        buf[where[mask]] = value

    # ------------------------------------------------------------ expressions
    def expr(self, e, mask):
        if isinstance(e, E.Var):
            return self.env[e]
        if isinstance(e, E.IntImm):
            return e.value
        if isinstance(e, E.FloatImm):
            return _NP.get(e.dtype, np.float32)(e.value)
        if isinstance(e, S.BufferLoad):
            where = self.address(e.buffer, self.expr(e.index, mask), mask, "load")
            hz = self.tracker(e.buffer)
            if hz is not None and mask.any():
                hz.read(where[mask], self.lanes[mask], self.epoch)
            return self.mem[e.buffer.uid][where]
        if isinstance(e, E.BinOp):
            return self.binop(e, mask)
        if isinstance(e, E.Cmp):
            a, b = self.expr(e.a, mask), self.expr(e.b, mask)
            return {"lt": np.less, "le": np.less_equal, "gt": np.greater,
                    "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal}[e.op](a, b)
        if isinstance(e, E.Not):
            return np.logical_not(self.expr(e.a, mask))
        if isinstance(e, E.Select):
            cond = np.asarray(self.expr(e.cond, mask), bool)
            if not cond.ndim:  # uniform: only the taken side is evaluated (it may be a load)
                return self.expr(e.t if cond else e.f, mask)
            return np.where(cond, self.expr(e.t, mask & cond), self.expr(e.f, mask & ~cond))
        if isinstance(e, E.Cast):
            return np.asarray(self.expr(e.value, mask)).astype(_NP[e.dtype])
        if isinstance(e, E.Call):
            return _CALL[e.name](*[self.expr(a, mask) for a in e.args])
        raise TypeError(type(e))

    def binop(self, e, mask):
        a, b = self.expr(e.a, mask), self.expr(e.b, mask)
        op = e.op
        if op in ("and", "or"):
            return (np.logical_and if op == "and" else np.logical_or)(a, b)
        if op in ("add", "sub", "mul", "min", "max"):
            return {"add": np.add, "sub": np.subtract, "mul": np.multiply,
                    "min": np.minimum, "max": np.maximum}[op](a, b)
        if E.is_float(e.dtype):
            return np.divide(a, b)
        b = np.where(np.asarray(b) == 0, 1, b)  # masked-off lanes may divide by zero
        if op == "floormod":
            return np.mod(a, b)
        if op == "floordiv":
            return np.floor_divide(a, b)
        q = np.floor_divide(np.abs(a), np.abs(b))  # C's truncating division
        return np.where((np.asarray(a) < 0) != (np.asarray(b) < 0), -q, q)


def run_kernel(kern, mem: dict) -> None:
    """Run gpu.Kernel `kern` over `mem` ({buffer uid: flat array of the buffer's dtype})."""
    run = _Run(kern, dict(mem))
    with np.errstate(all="ignore"):  # NaN poison and masked-off lanes compute garbage
        run.stmt(kern.body, np.ones(run.lanes.shape, bool))
