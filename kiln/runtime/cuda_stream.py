"""CUDA streams, events, graphs and event timing (the asynchronous half of the driver API).

In: kernels launched through `kiln.runtime.cuda` (CuFunction.launch takes a stream).
Out: `Stream`, `Event`, `Graph` (a captured, instantiated CUDA graph) with `capture(fn,
stream)`, `time_kernels` (seconds per call from CUDA events) and `flush_l2`.
Why: split from cuda.py (context, memory, modules) along the line between doing work and
ordering / timing it; every name is re-exported by `kiln.runtime.cuda`, where callers find it.
"""

from __future__ import annotations

from ..errors import DeviceError
from . import cuda as rt


def stream_handle(stream) -> int:
    """The raw CUstream of a `Stream`, an int handle or None (the legacy default stream)."""
    if stream is None:
        return 0
    if isinstance(stream, Stream):
        return stream.handle
    return int(stream)


class Stream:
    """A CUDA stream. Blocking by default: it is ordered with the legacy default stream, on
    which kiln's copies run, so a kernel on it sees a finished upload (a device-to-device or
    pageable host-to-device copy may still be in flight when the copy call returns) and a
    later copy back sees the kernel's results, without explicit synchronisation."""

    def __init__(self, non_blocking: bool = False):
        drv = rt.require()
        flags = 1 if non_blocking else 0  # CU_STREAM_NON_BLOCKING
        self._stream = rt.check(drv.cuStreamCreate(flags), "cuStreamCreate")
        self.handle = int(self._stream)

    def synchronize(self, what: str = "") -> None:
        rt.check(rt.require().cuStreamSynchronize(self._stream),
              f"synchronizing after {what}" if what else "cuStreamSynchronize")

    def __del__(self):
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            rt.release_quietly(lambda drv: drv.cuStreamDestroy(stream))


class Event:
    """A CUDA event with timing enabled."""

    def __init__(self):
        self._event = rt.check(rt.require().cuEventCreate(0), "cuEventCreate")  # CU_EVENT_DEFAULT

    def record(self, stream=None) -> None:
        rt.check(rt.require().cuEventRecord(self._event, stream_handle(stream)), "cuEventRecord")

    def synchronize(self, what: str = "") -> None:
        rt.check(rt.require().cuEventSynchronize(self._event),
              f"waiting for {what}" if what else "cuEventSynchronize")

    @staticmethod
    def elapsed_ms(start: Event, end: Event) -> float:
        """Milliseconds between two recorded, completed events."""
        return float(rt.check(rt.require().cuEventElapsedTime(start._event, end._event),
                           "cuEventElapsedTime"))

    def __del__(self):
        event, self._event = getattr(self, "_event", None), None
        if event is not None:
            rt.release_quietly(lambda drv: drv.cuEventDestroy(event))


class Graph:
    """An instantiated CUDA graph captured from a stream; `launch` replays it."""

    def __init__(self, graph, graph_exec, stream: Stream):
        self._graph, self._exec, self.stream = graph, graph_exec, stream

    def launch(self, stream=None) -> None:
        stream = self.stream if stream is None else stream
        rt.check(rt.require().cuGraphLaunch(self._exec, stream_handle(stream)), "cuGraphLaunch")

    def __del__(self):
        graph, graph_exec = getattr(self, "_graph", None), getattr(self, "_exec", None)
        self._graph = self._exec = None
        if graph_exec is not None:
            rt.release_quietly(lambda drv: drv.cuGraphExecDestroy(graph_exec))
        if graph is not None:
            rt.release_quietly(lambda drv: drv.cuGraphDestroy(graph))


def capture(fn, stream: Stream | None = None) -> Graph:
    """Capture the work `fn(stream)` enqueues on a (non-default) stream into a CUDA graph.

    Thread-local capture mode: other threads may keep using the GPU. Device frees requested
    while capturing (e.g. by the garbage collector) are postponed until the capture ends."""
    drv = rt.require()
    stream = stream if stream is not None else Stream()
    mode = drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
    rt.check(drv.cuStreamBeginCapture(stream.handle, mode), "cuStreamBeginCapture")
    rt.CAPTURE_STATE["depth"] += 1
    try:
        fn(stream)
    except BaseException:
        _end_capture(drv, stream, quiet=True)
        raise
    graph = _end_capture(drv, stream, quiet=False)
    try:
        graph_exec = rt.check(drv.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
    except DeviceError:
        rt.release(lambda d: d.cuGraphDestroy(graph))
        raise
    return Graph(graph, graph_exec, stream)


def _end_capture(drv, stream: Stream, quiet: bool):
    try:
        result = drv.cuStreamEndCapture(stream.handle)
    finally:
        rt.CAPTURE_STATE["depth"] -= 1
        if not rt.CAPTURE_STATE["depth"]:
            deferred, rt.CAPTURE_STATE["deferred"] = rt.CAPTURE_STATE["deferred"], []
            for fn in deferred:
                rt.release(fn)
    if quiet:
        if int(result[0]) == 0 and result[1] is not None:
            graph = result[1]
            rt.release(lambda d: d.cuGraphDestroy(graph))
        return None
    return rt.check(result, "cuStreamEndCapture (a call during the capture was not capturable)")


# ---------------------------------------------------------------- timing

def time_kernels(launch_fn, number: int, repeat: int, stream=None, flush: bool = False,
                 what: str = "the timed kernels") -> list:
    """Seconds per call of `launch_fn(stream)`, one entry per repeat, timed with CUDA events
    around `number` calls after one warm-up call; `flush` clears the L2 before each repeat."""
    rt.require()
    stream = stream if stream is not None else Stream()
    number, repeat = max(1, int(number)), max(1, int(repeat))
    launch_fn(stream)
    start, end = Event(), Event()
    out = []
    for _ in range(repeat):
        if flush:
            flush_l2(stream)
        start.record(stream)
        for _ in range(number):
            launch_fn(stream)
        end.record(stream)
        end.synchronize(what)
        out.append(Event.elapsed_ms(start, end) / 1e3 / number)
    return out


def flush_l2(stream=None) -> None:
    """Evict the L2 cache by writing a buffer twice its size (kept for reuse)."""
    drv = rt.require()
    state = rt.FLUSH_STATE
    buf = state.get("buf")
    if buf is None:
        l2 = rt.device_properties(0)["l2_bytes"] or 50 * 2 ** 20
        buf = state["buf"] = rt.DeviceBuffer(2 * l2)
    state["value"] = (state.get("value", 0) + 1) & 0xFF  # a new value: real writes each time
    if stream is None:
        rt.check(drv.cuMemsetD8(buf.ptr, state["value"], buf.nbytes), "flushing the L2 cache")
    else:
        rt.check(drv.cuMemsetD8Async(buf.ptr, state["value"], buf.nbytes,
                                     stream_handle(stream)), "flushing the L2 cache")
