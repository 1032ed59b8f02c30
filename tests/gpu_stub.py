"""An emulated GPU for tests on machines without one: the real cuda-bindings over a stand-in
driver library (tests/runtime_cuda/stub/libcuda_stub.c, device memory in host memory), with
every kernel launch run on the CPU.

`build(dir)` compiles the stand-in as dir/libcuda.so.1 and `environment(dir)` gives the
variables a child process needs to use it (the library path, and tests/runtime_cuda/stub on
PYTHONPATH, whose sitecustomize calls `install()` in every Python process that starts with
KILN_GPU_STUB set, measurement workers included). `install()` hands the library two hooks:
kernels kiln generated run on the CPU, all threads at once (tests/simt_vec.py), found by the
content of the cubin they were compiled into; the hand-written kernels of
tests/runtime_cuda/cuda_sources.py run as NumPy functions. What kiln rendered and compiled is
written to a registry folder so that another process (a measurement worker) finds the IR
behind a cubin it was only given as bytes."""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
STUB_DIR = os.path.join(HERE, "runtime_cuda", "stub")
SOURCE = os.path.join(STUB_DIR, "libcuda_stub.c")
ILLEGAL_ADDRESS, LAUNCH_FAILED = 700, 719
_STATE: dict = {}


def build(out_dir: str) -> str:
    """Compile the stand-in driver into out_dir/libcuda.so.1 (KILN_CC or cc)."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "libcuda.so.1")
    cc = os.environ.get("KILN_CC") or shutil.which("cc") or "gcc"
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", path, SOURCE, "-lpthread"],
                   check=True, capture_output=True, text=True)
    return path


def environment(lib_dir: str, registry: str) -> dict:
    """os.environ plus what a child process needs to run on the emulated GPU."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [lib_dir,
                                                            env.get("LD_LIBRARY_PATH")]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [STUB_DIR, HERE,
                                                      os.path.join(HERE, "runtime_cuda"),
                                                      os.path.dirname(HERE),
                                                      env.get("PYTHONPATH")]))
    env["KILN_GPU_STUB"] = registry
    return env


# ---------------------------------------------------------------- the registry of kernels

def _digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:32]


def _registry() -> str:
    return os.environ["KILN_GPU_STUB"]


def _record_render(render_many):
    def wrapped(funcs, target=None):
        source = render_many(funcs, target)
        from kiln.codegen import cuda
        from kiln.tir import gpu
        # the kernels as the printer prints them: fetches pipelined, tensor-core tiles
        kernels = {k.name: dataclasses.replace(k, body=cuda.device_body(k.body))
                   for f in funcs for k in gpu.split_kernels(f, None)[0]}
        path = os.path.join(_registry(), _digest(source) + ".kernels")
        if not os.path.exists(path):
            with open(path + f".{os.getpid()}", "wb") as f:
                pickle.dump(kernels, f)
            os.replace(path + f".{os.getpid()}", path)
        return source
    return wrapped


def _record_compile(compile_cuda):
    def wrapped(source, arch, *args, **kwargs):
        path = compile_cuda(source, arch, *args, **kwargs)
        with open(path, "rb") as f:
            cubin = _digest(f.read())
        with open(os.path.join(_registry(), cubin + ".source"), "w") as f:
            f.write(_digest(source))
        return path
    return wrapped


def _kiln_kernel(name: str, image: bytes):
    key = _digest(image)
    cached = _STATE["kernels"].get((key, name))
    if cached is not None:
        return cached
    link = os.path.join(_registry(), key + ".source")
    if not os.path.exists(link):
        return None
    with open(link) as f:
        kernels_path = os.path.join(_registry(), f.read().strip() + ".kernels")
    if not os.path.exists(kernels_path):
        return None  # compiled from a hand-written source: not kiln's
    with open(kernels_path, "rb") as f:
        kernels = pickle.load(f)
    for kname, k in kernels.items():
        _STATE["kernels"][(key, kname)] = k
    return kernels.get(name)


# ---------------------------------------------------------------- running a launch

def _view(lib, address: int, nbytes: int, dtype) -> np.ndarray | None:
    if lib.kiln_stub_extent(ctypes.c_ulonglong(address)) < nbytes:
        return None  # outside every allocation: an illegal address on a GPU
    raw = (ctypes.c_uint8 * nbytes).from_address(address)
    return np.frombuffer(raw, dtype=np.uint8).view(dtype)


def _run_kiln(lib, kern, dims, params) -> int:
    import simt_vec
    import tir_interp
    if tuple(dims[:3]) != tuple(kern.grid) or tuple(dims[3:]) != tuple(kern.block):
        print(f"gpu_stub: {kern.name} launched with grid {dims[:3]} block {dims[3:]}, "
              f"built for {kern.grid} {kern.block}", file=sys.stderr)
        return LAUNCH_FAILED
    mem = {}
    for i, buf in enumerate(kern.buffers):
        address = ctypes.cast(params[i], ctypes.POINTER(ctypes.c_uint64))[0]
        n = tir_interp.itemsize(buf.dtype) * max(buf.size, 1)
        view = _view(lib, address, n, tir_interp.np_dtype(buf.dtype))
        if view is None:
            return ILLEGAL_ADDRESS
        mem[buf.uid] = view
    try:
        simt_vec.run_kernel(kern, mem)
    except simt_vec.OutOfBounds as err:
        print(f"gpu_stub: {kern.name}: {err}", file=sys.stderr)
        return ILLEGAL_ADDRESS
    except simt_vec.Race as err:  # a wrong answer on a GPU, sometimes: fail loudly here
        print(f"gpu_stub: {kern.name}: {err}", file=sys.stderr)
        return LAUNCH_FAILED
    return 0


def _hand_kernels() -> dict:
    """The hand-written kernels of tests/runtime_cuda/cuda_sources.py, as NumPy functions of
    (lib, dims, params), and how many parameters each takes."""
    from cuda_sources import N

    def ptr(params, i):
        return ctypes.cast(params[i], ctypes.POINTER(ctypes.c_uint64))[0]

    def scalar(params, i, ctype):
        return ctypes.cast(params[i], ctypes.POINTER(ctype))[0]

    def floats(lib, params, i, n):
        return _view(lib, ptr(params, i), 4 * n, np.float32)

    def add(lib, dims, p):
        a, b, t = (floats(lib, p, i, N) for i in range(3))
        t[:] = a + b

    def scale(lib, dims, p):
        t, c = floats(lib, p, 0, N), floats(lib, p, 1, N)
        c[:] = 2 * t

    def axpy(lib, dims, p):
        n = scalar(p, 3, ctypes.c_int32)
        x, y = floats(lib, p, 0, n), floats(lib, p, 1, n)
        y[:] += np.float32(scalar(p, 2, ctypes.c_float)) * x

    def boom(lib, dims, p):
        return ILLEGAL_ADDRESS

    def crash(lib, dims, p):  # the process dies in the launch, as on a driver crash
        os._exit(139)

    return {"add_kernel": (add, 3), "scale_kernel": (scale, 2), "axpy": (axpy, 4),
            "boom_kernel": (boom, 1), "crash_kernel": (crash, 1)}


def _on_launch(name, image, size, dims, shared, params) -> int:
    try:
        name = name.decode()
        lib = _STATE["lib"]
        dims = [dims[i] for i in range(6)]
        kern = _kiln_kernel(name, ctypes.string_at(image, size))
        if kern is not None:
            return _run_kiln(lib, kern, dims, params)
        hand = _STATE["hand"].get(name)
        if hand is not None:
            return hand[0](lib, dims, params) or 0
        print(f"gpu_stub: no emulation for kernel {name}", file=sys.stderr)
        return LAUNCH_FAILED
    except Exception as err:  # an exception must not cross the C boundary
        print(f"gpu_stub: kernel {name} failed in emulation: {err!r}", file=sys.stderr)
        return LAUNCH_FAILED


def _on_nparams(name, image, size) -> int:
    try:
        name = name.decode()
        kern = _kiln_kernel(name, ctypes.string_at(image, size))
        if kern is not None:
            return len(kern.buffers)
        hand = _STATE["hand"].get(name)
        return hand[1] if hand else 0
    except Exception as err:
        print(f"gpu_stub: kernel {name}: {err!r}", file=sys.stderr)
        return -1


_LAUNCH = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.POINTER(ctypes.c_uint), ctypes.c_uint,
                           ctypes.POINTER(ctypes.c_void_p))
_NPARAMS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)


def install() -> None:
    """Use the emulated GPU in this process (KILN_GPU_STUB names the registry folder)."""
    if "lib" in _STATE:
        return
    os.makedirs(_registry(), exist_ok=True)
    lib = ctypes.CDLL("libcuda.so.1")  # the stand-in, found through LD_LIBRARY_PATH
    lib.kiln_stub_extent.restype = ctypes.c_ulonglong
    lib.kiln_stub_launch_count.restype = ctypes.c_ulonglong
    lib.kiln_stub_overlapped_count.restype = ctypes.c_ulonglong
    hooks = (_LAUNCH(_on_launch), _NPARAMS(_on_nparams))
    lib.kiln_stub_set_hooks(*hooks)
    _STATE.update(lib=lib, hooks=hooks, kernels={}, hand=_hand_kernels())
    from kiln.codegen import cuda, nvrtc
    cuda.render_many = _record_render(cuda.render_many)
    nvrtc.compile_cuda = _record_compile(nvrtc.compile_cuda)


def launch_count() -> int:
    return int(_STATE["lib"].kiln_stub_launch_count())


def overlapped_count() -> int:
    """Launches made with programmatic stream serialization (cuLaunchKernelEx)."""
    return int(_STATE["lib"].kiln_stub_overlapped_count())


def main(argv: list) -> int:
    """python tests/gpu_stub.py [--dir DIR] -- COMMAND...: run COMMAND on the emulated GPU."""
    import tempfile
    if "--" not in argv:
        print(main.__doc__, file=sys.stderr)
        return 2
    cut = argv.index("--")
    opts, cmd = argv[:cut], argv[cut + 1:]
    root = opts[opts.index("--dir") + 1] if "--dir" in opts else tempfile.mkdtemp("-kiln-gpu")
    build(root)
    return subprocess.run(cmd, env=environment(root, os.path.join(root, "registry"))).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
