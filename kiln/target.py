"""Compilation targets: what machine the generated code is for.

In: a target string such as "cpu", "llvm -mcpu=znver3 -num-cores=2", "cpu -mattr=+avx2,+fma",
"cuda" (the GPU of this machine) or "cuda -arch=sm_90" (a named GPU architecture).
Out: a `Target` value with the ISA features, the SIMD width, the core count and the cache sizes
that scheduling and code generation read, plus the C compiler flags for it (`cflags()`); for
CUDA the architecture and the GPU limits (threads and shared memory per block, warp size, SMs),
queried from the driver for "cuda" and taken from a table of known architectures otherwise.
Why: one typed object instead of scattered environment probes; its canonical string
(`str(target)`) is what tuning records store, so "llvm" and "cpu" name the same target.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field

from .errors import TargetError

KINDS = ("cpu", "cuda")
_ALIASES = {"cpu": "cpu", "llvm": "cpu", "c": "cpu", "cuda": "cuda", "nvptx": "cuda"}
_GPU_KINDS = ("rocm", "opencl", "vulkan", "metal")
# Per-architecture limits used when no GPU is present to ask (CUDA programming guide tables).
_SM_LIMITS = {  # arch: (SMs of the flagship part, shared bytes per SM, regs/SM, threads/SM)
    "sm_70": (80, 96 * 1024, 65536, 2048), "sm_75": (72, 64 * 1024, 65536, 1024),
    "sm_80": (108, 164 * 1024, 65536, 2048), "sm_86": (84, 100 * 1024, 65536, 1536),
    "sm_89": (128, 100 * 1024, 65536, 1536), "sm_90": (132, 228 * 1024, 65536, 2048),
}
# LLVM-style options that say nothing kiln uses; accepted and dropped.
_HARMLESS = ("-mtriple", "-keys", "-model", "-mabi", "-device", "-libs", "-link-params",
             "-opt-level", "-mfloat-abi", "-system-lib", "-runtime", "-host", "-tag",
             "-fast-math", "-fast-math-flags")
_KNOWN_FEATURES = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                   "avx512vnni", "avx512bf16", "neon")
_AVX512_SKX = ("avx512f", "avx512bw", "avx512vl")
# What a named -mcpu implies (a small table; anything else falls back to the host's features).
_MCPU_FEATURES = {
    "haswell": ("sse4.2", "avx", "avx2", "fma"),
    "broadwell": ("sse4.2", "avx", "avx2", "fma"),
    "skylake": ("sse4.2", "avx", "avx2", "fma"),
    "znver1": ("sse4.2", "avx", "avx2", "fma"),
    "znver2": ("sse4.2", "avx", "avx2", "fma"),
    "znver3": ("sse4.2", "avx", "avx2", "fma"),
    "znver4": ("sse4.2", "avx", "avx2", "fma", *_AVX512_SKX, "avx512vnni", "avx512bf16"),
    "znver5": ("sse4.2", "avx", "avx2", "fma", *_AVX512_SKX, "avx512vnni", "avx512bf16"),
    "skylake-avx512": ("sse4.2", "avx", "avx2", "fma", *_AVX512_SKX),
    "cascadelake": ("sse4.2", "avx", "avx2", "fma", *_AVX512_SKX, "avx512vnni"),
    "icelake-server": ("sse4.2", "avx", "avx2", "fma", *_AVX512_SKX, "avx512vnni"),
    "sapphirerapids": ("sse4.2", "avx", "avx2", "fma", *_AVX512_SKX, "avx512vnni",
                       "avx512bf16"),
    "x86-64": (),
    "x86-64-v2": ("sse4.2",),
    "x86-64-v3": ("sse4.2", "avx", "avx2", "fma"),
    "x86-64-v4": ("sse4.2", "avx", "avx2", "fma", *_AVX512_SKX),
}
_DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1,
                "bool": 1, "int32": 4, "int64": 8}




def mcpu_features(name: str) -> tuple | None:
    """The ISA features a named -mcpu implies, or None for a name outside kiln's table."""
    return _MCPU_FEATURES.get(name)


# ---------------------------------------------------------------- host probing

@functools.lru_cache(maxsize=1)
def host_features() -> tuple:
    """ISA features of this machine that kiln cares about, from /proc/cpuinfo."""
    flags: set = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    out = {f for f in ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
                       "avx512_vnni") if f in flags}
    for linux_name in ("avx512_bf16", "avx512_vnni"):  # /proc/cpuinfo spells these with "_"
        if linux_name in out:
            out.discard(linux_name)
            out.add(linux_name.replace("_", ""))
    if "sse4_2" in flags:
        out.add("sse4.2")
    if "asimd" in flags or "neon" in flags or platform.machine() in ("aarch64", "arm64"):
        out.add("neon")
    return tuple(sorted(out))


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
    digits = text.rstrip("KMG")
    return int(digits) * mult if digits.isdigit() else 0


@functools.lru_cache(maxsize=1)
def host_cache_sizes() -> dict:
    """{'l1': bytes, 'l2': bytes, 'l3': bytes} of cpu0's data caches (0 when unknown)."""
    sizes = {"l1": 0, "l2": 0, "l3": 0}
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return sizes
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            level = _read(f"{root}/{entry}/level")
            kind = _read(f"{root}/{entry}/type")
            size = _parse_size(_read(f"{root}/{entry}/size"))
        except OSError:
            continue
        if kind in ("Data", "Unified") and f"l{level}" in sizes:
            sizes[f"l{level}"] = size
    return sizes


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ---------------------------------------------------------------- Target

@dataclass(frozen=True, init=False)
class Target:
    """A code-generation target. Build with `Target("cpu -num-cores=2")` or `Target.host()`."""

    text: str = "cpu"
    kind: str = field(init=False)
    mcpu: str | None = field(init=False)
    mattr: tuple = field(init=False)
    num_cores: int | None = field(init=False)
    arch: str | None = field(init=False)  # CUDA only: "sm_90"
    # TVM's Target(target, host=...): the CPU target of host code (kiln's host side is the
    # Python runtime and the C entry of a CPU model: any CPU target is accepted). Not
    # `host`: Target.host() is this machine's CPU target.
    host_target: Target | None = field(default=None)

    def __init__(self, text: str = "cpu", host=None, *, target=None):
        if target is not None:  # TVM's Target(target="llvm", host="llvm")
            text = target
        if isinstance(text, dict):
            raise TargetError(f"kiln takes a target string such as 'llvm' or 'cuda', not the "
                              f"dict {text!r}")
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "host_target", host)
        self.__post_init__()

    def __post_init__(self):
        if isinstance(self.text, Target):
            object.__setattr__(self, "text", str(self.text))
        if self.host_target is not None:
            host = self.host_target if isinstance(self.host_target, Target) else \
                Target(str(self.host_target))
            if host.kind != "cpu":
                raise TargetError(f"target host {str(self.host_target)!r} must be a CPU "
                                  "target (e.g. 'llvm')")
            object.__setattr__(self, "host_target", host)
        kind, mcpu, mattr, cores, arch = _parse(str(self.text))
        object.__setattr__(self, "kind", TargetKind(kind))
        object.__setattr__(self, "mcpu", mcpu)
        object.__setattr__(self, "mattr", mattr)
        object.__setattr__(self, "num_cores", cores)
        object.__setattr__(self, "arch", arch)

    # ------------------------------------------------------------ identity
    def __str__(self) -> str:
        """Concrete: a CPU target without -mcpu / -mattr is this host, written as the ISA
        features found here, so records and libraries made here never match a CPU that lacks
        them ("cpu -mattr=+avx,+avx2,+avx512f,..."); a cuda target names its architecture."""
        if self.kind == "cuda":
            return f"cuda -arch={self.arch}"
        parts = [self.kind]
        if self.mcpu:
            parts.append(f"-mcpu={self.mcpu}")
        mattr = self.mattr if (self.mcpu or self.mattr) else \
            tuple("+" + f for f in self.features)
        if mattr:
            parts.append("-mattr=" + ",".join(mattr))
        if self.num_cores is not None:
            parts.append(f"-num-cores={self.num_cores}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"Target({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Target) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    # ------------------------------------------------------------ machine model
    @property
    def features(self) -> tuple:
        """ISA features (e.g. ('avx', 'avx2', 'fma', 'sse4.2')) after -mcpu / -mattr."""
        base = set(_MCPU_FEATURES.get(self.mcpu, host_features()) if self.mcpu
                   else host_features())
        for attr in self.mattr:
            name = attr[1:]
            if attr[0] == "+":
                base.add(name)
            else:
                base.discard(name)
        return tuple(sorted(base))

    def has(self, feature: str) -> bool:
        return feature in self.features

    @property
    def vector_bytes(self) -> int:
        """Width of one SIMD register: 64 with AVX-512, 32 with AVX2, else 16."""
        if self.has("avx512f"):
            return 64
        if self.has("avx2") or self.has("avx"):
            return 32
        return 16

    def vector_lanes(self, dtype: str) -> int:
        """How many `dtype` elements one SIMD register holds."""
        if dtype not in _DTYPE_BYTES:
            raise TargetError(f"unknown dtype {dtype!r}")
        return max(1, self.vector_bytes // _DTYPE_BYTES[dtype])

    @property
    def cores(self) -> int:
        return self.num_cores if self.num_cores is not None else host_cores()

    @property
    def cache_sizes(self) -> dict:
        return dict(host_cache_sizes())

    @property
    def l1_bytes(self) -> int:
        return host_cache_sizes()["l1"]

    @property
    def l2_bytes(self) -> int:
        return host_cache_sizes()["l2"]

    @property
    def l3_bytes(self) -> int:
        return host_cache_sizes()["l3"]

    # ------------------------------------------------------------ GPU model
    @property
    def is_gpu(self) -> bool:
        return self.kind == "cuda"

    def _gpu(self) -> dict:
        if self.kind != "cuda":
            raise TargetError(f"target {self} is not a GPU target")
        return _gpu_properties(self.arch)

    @property
    def max_threads_per_block(self) -> int:
        return self._gpu()["max_threads_per_block"]

    @property
    def max_shared_memory_per_block(self) -> int:
        """Static __shared__ bytes one block may use (48 KiB without an opt-in)."""
        return self._gpu()["max_shared_memory_per_block"]

    @property
    def warp_size(self) -> int:
        return self._gpu()["warp_size"]

    @property
    def sm_count(self) -> int:
        return self._gpu()["sm_count"]

    @property
    def max_registers_per_block(self) -> int:
        return self._gpu()["max_registers_per_block"]

    @property
    def max_registers_per_sm(self) -> int:
        return self._gpu()["max_registers_per_sm"]

    @property
    def max_shared_memory_per_sm(self) -> int:
        """Shared memory of one multiprocessor, all its resident blocks together."""
        return self._gpu()["max_shared_memory_per_sm"]

    @property
    def max_threads_per_sm(self) -> int:
        return self._gpu()["max_threads_per_sm"]

    @property
    def compute_capability(self) -> tuple:
        digits = self.arch[3:]
        return int(digits[:-1]), int(digits[-1])

    @property
    def tf32_tensor_cores(self) -> bool:
        """Whether the GPU runs mma.sync on TF32 operands (sm_80 and later): what
        schedule_matmul(mma=1) and kiln.graph.build(tensor_cores=True) need."""
        return self.kind == "cuda" and self.compute_capability >= (8, 0)

    @property
    def programmatic_launch(self) -> bool:
        """Whether a kernel may be launched before the one it depends on has finished
        (programmatic dependent launch: griddepcontrol, sm_90 and later)."""
        return self.kind == "cuda" and self.compute_capability >= (9, 0)

    def cflags(self) -> list:
        """C compiler flags for a shared library of kernels for this target."""
        # -mtune=generic on the host: GCC 12's znver tuning folds every reuse of a loaded
        # vector into the FMA's memory operand, which makes a GEMM register tile load-bound
        # (~155 vs ~215 GFLOPS on the 2-core EPYC). -fno-trapping-math lets floor/round/rint
        # lane loops become single vroundps instructions.
        arch = [f"-march={self.mcpu}"] if self.mcpu else ["-march=native", "-mtune=generic"]
        flags = ["-O3", *arch, "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math",
                 "-fopenmp", "-fPIC", "-shared"]
        for attr in self.mattr:
            if attr[1:] != "neon":
                flags.append(("-m" if attr[0] == "+" else "-mno-") + attr[1:])
        return flags

    # ------------------------------------------------------------ scope
    def __enter__(self) -> Target:
        _STACK.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _STACK.pop()

    @staticmethod
    def current(allow_none: bool = False) -> Target | None:
        """The innermost `with Target(...)` target; else the host target (or None if allowed)."""
        if _STACK:
            return _STACK[-1]
        return None if allow_none else Target.host()

    @staticmethod
    def host() -> Target:
        return Target("cpu")


_STACK: list = []


class TargetKind(str):
    """The kind of a target ("cpu" or "cuda"): a string, with TVM's `target.kind.name`."""

    @property
    def name(self) -> str:
        return str(self)


def _parse(text: str):
    words = text.split()
    if not words:
        raise TargetError("empty target string; use 'cpu' (or 'llvm')")
    kind = words[0].lower()
    if kind in _GPU_KINDS:
        raise TargetError(f"target {kind!r}: kiln's GPU backend is CUDA only; use 'cuda' or "
                          "'cpu'")
    if kind not in _ALIASES:
        raise TargetError(f"unknown target kind {kind!r}; known kinds: {', '.join(KINDS)} "
                          "(aliases: llvm, c, nvptx)")
    if _ALIASES[kind] == "cuda":
        return ("cuda", None, (), None, _parse_cuda(text, words[1:]))
    mcpu, mattr, cores = None, [], None
    for word in words[1:]:
        key, _, value = word.partition("=")
        if key == "-mcpu":
            mcpu = None if value in ("", "native") else value
        elif key == "-mattr":
            mattr.extend(_parse_mattr(value))
        elif key == "-num-cores":
            cores = _parse_cores(value)
        elif key not in _HARMLESS:
            raise TargetError(f"unknown target option {word!r} in {text!r}; known options: "
                              "-mcpu=NAME, -mattr=+feat,-feat, -num-cores=N")
    return _ALIASES[kind], mcpu, tuple(sorted(set(mattr))), cores, None


def _parse_cuda(text: str, words: list) -> str:
    arch = None
    for word in words:
        key, _, value = word.partition("=")
        if key == "-arch":
            arch = value
        elif key not in _HARMLESS and key not in ("-max_num_threads", "-thread_warp_size"):
            raise TargetError(f"unknown cuda target option {word!r} in {text!r}; known: "
                              "-arch=sm_XX")
    if arch is None:
        arch = _host_gpu_arch()
    if not arch.startswith("sm_") or not arch[3:].isdigit() or int(arch[3:]) < 50:
        raise TargetError(f"bad CUDA architecture {arch!r} in {text!r}; write e.g. -arch=sm_90")
    return arch


def _gpu_runtime():
    """kiln.runtime.cuda when the CUDA driver can be used here, else None."""
    try:
        from .runtime import cuda as rt
    except ImportError:
        return None
    return rt if rt.available() else None


def _host_gpu_arch() -> str:
    rt = _gpu_runtime()
    if rt is None:
        raise TargetError("target 'cuda' means the GPU of this machine, and no CUDA GPU is "
                          "present; name an architecture to build without one, e.g. "
                          "'cuda -arch=sm_90'")
    return rt.device_properties(0)["arch"]


@functools.lru_cache(maxsize=8)
def _gpu_properties(arch: str) -> dict:
    """Limits of this machine's GPU when its arch matches, else of the named arch's table."""
    rt = _gpu_runtime()
    if rt is not None:
        props = rt.device_properties(0)
        if props["arch"] == arch:
            return props
    sms, shared_sm, regs, threads_sm = _SM_LIMITS.get(arch, (80, 64 * 1024, 65536, 1024))
    return {"arch": arch, "sm_count": sms, "max_threads_per_block": 1024,
            "max_shared_memory_per_block": 48 * 1024, "warp_size": 32,
            "max_registers_per_block": regs, "max_shared_memory_per_sm": shared_sm,
            "max_registers_per_sm": regs, "max_threads_per_sm": threads_sm}


def _parse_mattr(value: str) -> list:
    out = []
    for item in filter(None, value.split(",")):
        if item[0] not in "+-":
            item = "+" + item
        if item[1:] not in _KNOWN_FEATURES:
            raise TargetError(f"unknown -mattr feature {item[1:]!r}; known: "
                              f"{', '.join(_KNOWN_FEATURES)}")
        out.append(item)
    return out


def _parse_cores(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise TargetError(f"-num-cores wants a positive integer, got {value!r}")
    return int(value)


def cuda(model: str = "unknown", arch: str | None = None, options=None) -> Target:
    """tvm.target.cuda(): this machine's GPU, or the named `arch` ("sm_90") to build without
    one. `model` and `options` are accepted for TVM's signature."""
    return Target(f"cuda -arch={arch}" if arch else "cuda")


def missing_features(target_text: str) -> list:
    """ISA features a CPU target string names that this machine lacks ([] for other kinds,
    for this host, and for bare legacy strings that name none)."""
    try:
        t = Target(target_text)
    except TargetError:
        return []
    if t.kind != "cpu" or not (t.mcpu or t.mattr):
        return []
    have = set(host_features())
    return sorted(f for f in t.features if f not in have and f != "neon")


def as_target(target) -> Target:
    """Accept a Target, a target string or None (the current target)."""
    if target is None:
        return Target.current()
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        return _from_string(target)
    raise TargetError(f"expected a Target or a target string, got {type(target).__name__}")


@functools.lru_cache(maxsize=64)
def _from_string(text: str) -> Target:
    return Target(text)
