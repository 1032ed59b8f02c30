"""relay.testing.mlp: the multilayer perceptron of TVM's tests (128 and 64 hidden units)."""

from __future__ import annotations

from .layers import Net, check


def get_workload(batch_size: int = 1, num_classes: int = 10, image_shape: tuple = (1, 28, 28),
                 dtype: str = "float32", seed: int = 0, **_ignored):
    """(IRModule, params): data (batch_size, *image_shape) -> flatten -> dense 128 -> relu ->
    dense 64 -> relu -> dense num_classes -> softmax."""
    check("NCHW", dtype)
    net = Net(seed, dtype)
    x = net.b.input("data", (batch_size, *tuple(image_shape)), dtype)
    x = net.b.op("flatten", [x]) if len(x.shape) != 2 else x
    x = net.relu(net.dense(x, 128, "fc1"))
    x = net.relu(net.dense(x, 64, "fc2"))
    out = net.b.op("softmax", [net.dense(x, num_classes, "fc3")], axis=1)
    return net.finish(out, "mlp")
