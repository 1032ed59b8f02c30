"""TVM's `topi.x86` schedule functions: on kiln, the same default schedules as
topi.generic (see there), for the CPU target in scope."""

from .generic import (
    default_schedule,
    schedule_adaptive_pool,
    schedule_batch_matmul,
    schedule_broadcast,
    schedule_conv2d_nchw,
    schedule_conv2d_nhwc,
    schedule_dense,
    schedule_elemwise,
    schedule_injective,
    schedule_pool,
    schedule_reduce,
    schedule_softmax,
)

__all__ = ["default_schedule", "schedule_adaptive_pool", "schedule_batch_matmul",
           "schedule_broadcast", "schedule_conv2d_nchw", "schedule_conv2d_nhwc",
           "schedule_dense", "schedule_elemwise", "schedule_injective", "schedule_pool",
           "schedule_reduce", "schedule_softmax"]
