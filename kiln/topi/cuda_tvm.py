"""TVM's topi.cuda names with TVM's signatures (re-exported by topi.cuda).

`schedule_X(outs)` inside `with tvm.target.Target("cuda ...")` returns a new schedule of the
kernel computing `outs`: kiln's default GPU schedule of that kernel (topi.cuda's hand-written
schedules, as graph.default_schedule chooses them), whatever X names. The computes are
topi.nn's. Kept apart from topi.cuda, whose functions take a schedule to modify.
"""

from __future__ import annotations

from ..errors import ScheduleError


def _tvm_form(outs, layout: str = "NCHW"):
    from ..target import Target
    from .generic import default_schedule
    target = Target.current(allow_none=True)
    if target is None or target.kind != "cuda":
        raise ScheduleError("topi.cuda schedules are made inside `with tvm.target.Target("
                            f"'cuda -arch=sm_90')` (or cuda on a GPU machine); the target in "
                            f"scope is {target}")
    return default_schedule(outs, target)


schedule_reduce = schedule_softmax = schedule_dense = schedule_batch_matmul = _tvm_form
schedule_conv2d_nchw = schedule_pool = _tvm_form


def conv2d_nchw(data, kernel, strides=1, padding=0, dilation=1, out_dtype=None):
    from .nn import conv2d_nchw as compute
    return compute(data, kernel, strides, padding, dilation, out_dtype=out_dtype)


def dense(data, weight, bias=None, out_dtype=None):
    from .nn import dense as compute
    return compute(data, weight, bias, out_dtype)


__all__ = ["conv2d_nchw", "dense", "schedule_batch_matmul", "schedule_conv2d_nchw",
           "schedule_dense", "schedule_pool", "schedule_reduce", "schedule_softmax"]
