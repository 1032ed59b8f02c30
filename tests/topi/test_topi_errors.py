"""topi's input validation: each mistake raises a KilnError subclass with a useful message."""

import numpy as np
import pytest

from kiln import te, topi
from kiln.errors import DTypeError, ExprError, KilnError, ShapeError


def ph(*shape, dtype="float32"):
    return te.placeholder(shape, dtype)


def test_dense_inner_dims_name_both_shapes():
    with pytest.raises(ShapeError, match=r"dense.*\(4, 7\).*\(5, 6\)"):
        topi.nn.dense(ph(4, 7), ph(5, 6))
    with pytest.raises(ShapeError, match="bias"):
        topi.nn.dense(ph(4, 7), ph(5, 7), ph(4))
    with pytest.raises(ShapeError, match="2-d"):
        topi.nn.dense(ph(4, 7), ph(5, 7, 1))


def test_matmul_and_batch_matmul_shapes():
    with pytest.raises(ShapeError, match=r"matmul.*\(3, 4\).*\(5, 2\)"):
        topi.nn.matmul(ph(3, 4), ph(5, 2))
    with pytest.raises(ShapeError, match="at least 2-d"):
        topi.nn.matmul(ph(3), ph(3, 2))
    with pytest.raises(ShapeError, match="3-d"):
        topi.nn.batch_matmul(ph(3, 4), ph(3, 4))
    with pytest.raises(ShapeError, match="not broadcastable"):
        topi.nn.batch_matmul(ph(2, 3, 4), ph(3, 5, 4))
    with pytest.raises(ShapeError, match="inner"):
        topi.nn.batch_matmul(ph(2, 3, 4), ph(2, 5, 3))


@pytest.mark.parametrize("call", [
    lambda x: topi.sum(x, axis=3),
    lambda x: topi.max(x, axis=-4),
    lambda x: topi.nn.softmax(x, axis=5),
    lambda x: topi.transpose(x, (0, 1, 3)),
    lambda x: topi.concatenate([x, x], axis=3),
    lambda x: topi.take(x, 0, axis=-4),
    lambda x: topi.expand_dims(x, 5),
    lambda x: topi.nn.layer_norm(x, None, None, axis=3),
], ids=["sum", "max", "softmax", "transpose", "concatenate", "take", "expand_dims",
        "layer_norm"])
def test_bad_axis_names_op_and_ndim(call, request):
    op = request.node.callspec.id
    with pytest.raises(ShapeError, match=rf"^{op}: axis -?\d+ is out of range for a tensor "
                                         r"of ndim \d"):
        call(ph(2, 3, 4))


def test_repeated_axis():
    with pytest.raises(ShapeError, match="repeated axis"):
        topi.sum(ph(2, 3), axis=(1, -1))


def test_broadcast_errors():
    with pytest.raises(ShapeError, match=r"add: shapes \(3, 4\) and \(5,\)"):
        topi.add(ph(3, 4), ph(5))
    with pytest.raises(ShapeError, match="broadcast_to"):
        topi.broadcast_to(ph(3, 4), (2, 3, 5))
    with pytest.raises(ShapeError, match="broadcast_to"):
        topi.broadcast_to(ph(3, 4), (4,))


def test_conv_channels_and_groups():
    with pytest.raises(ShapeError, match=r"groups=3.*input channels 4"):
        topi.nn.conv2d_nchw(ph(1, 4, 5, 5), ph(6, 1, 3, 3), groups=3)
    with pytest.raises(ShapeError, match=r"expects 3 input channels per group.*has 4"):
        topi.nn.conv2d_nchw(ph(1, 4, 5, 5), ph(6, 3, 3, 3))
    with pytest.raises(ShapeError, match="4-d"):
        topi.nn.conv2d_nchw(ph(4, 5, 5), ph(6, 4, 3, 3))
    with pytest.raises(ShapeError, match="does not fit"):
        topi.nn.conv2d_nchw(ph(1, 4, 2, 2), ph(6, 4, 3, 3))
    with pytest.raises(ShapeError, match="stride"):
        topi.nn.conv2d_nchw(ph(1, 4, 5, 5), ph(6, 4, 3, 3), stride=0)
    with pytest.raises(ShapeError, match="padding"):
        topi.nn.conv2d_nchw(ph(1, 4, 5, 5), ph(6, 4, 3, 3), padding=(1, 2, 3))
    with pytest.raises(ShapeError, match="channels"):
        topi.nn.depthwise_conv2d_nchw(ph(1, 4, 5, 5), ph(3, 1, 3, 3))


def test_pool_errors():
    with pytest.raises(ShapeError, match="does not fit"):
        topi.nn.max_pool2d(ph(1, 1, 2, 2), (3, 3))
    with pytest.raises(ShapeError, match="NCHW"):
        topi.nn.avg_pool2d(ph(1, 2, 2), 2)
    with pytest.raises(ShapeError, match="pool_type"):
        topi.nn.pool2d(ph(1, 1, 4, 4), 2, 2, 1, 0, "min")
    with pytest.raises(ShapeError, match="pool_type"):
        topi.nn.global_pool(ph(1, 1, 4, 4), "sum")


def test_transform_errors():
    with pytest.raises(ShapeError, match=r"reshape.*24 elements"):
        topi.reshape(ph(2, 3, 4), (5, -1))
    with pytest.raises(ShapeError, match="at most one -1"):
        topi.reshape(ph(2, 3, 4), (-1, -1))
    with pytest.raises(DTypeError, match="integer"):
        topi.take(ph(3, 4), ph(2))
    with pytest.raises(ShapeError, match="mode"):
        topi.take(ph(3, 4), 1, mode="raise")
    with pytest.raises(ShapeError, match=r"concatenate.*\(2, 3\).*\(2, 4\)"):
        topi.concatenate([ph(2, 3), ph(2, 4)], axis=0)
    with pytest.raises(DTypeError, match="dtypes"):
        topi.concatenate([ph(2, 3), ph(2, 3, dtype="int32")])
    with pytest.raises(ShapeError, match="empty"):
        topi.strided_slice(ph(5, 4), [3], [1])
    with pytest.raises(ShapeError, match="stride must not be 0"):
        topi.strided_slice(ph(5, 4), [0], [3], [0])
    with pytest.raises(ShapeError, match="not 1"):
        topi.squeeze(ph(1, 3), axis=1)
    with pytest.raises(ShapeError, match="equal sections"):
        topi.split(ph(5, 4), 2)
    with pytest.raises(ShapeError, match=">= 0"):
        topi.nn.pad(ph(3, 3), (1, -1))
    with pytest.raises(ShapeError, match="one pad width per axis"):
        topi.nn.pad(ph(3, 3), (1,))


def test_misc_errors():
    with pytest.raises(DTypeError, match="exp"):
        topi.exp(ph(3, dtype="int32"))
    with pytest.raises(ExprError, match="te.Tensor"):
        topi.nn.relu(np.zeros(3))
    with pytest.raises(ShapeError, match="gamma"):
        topi.nn.layer_norm(ph(2, 5), ph(4), None)
    with pytest.raises(DTypeError):
        topi.cast(ph(3), "float8")
    with pytest.raises(DTypeError, match="integer"):
        topi.argmax(ph(3, 4), 0, dtype="float32")


def test_all_are_kiln_errors():
    with pytest.raises(KilnError):
        topi.nn.dense(ph(4, 7), ph(5, 6))
