"""relay.testing.mobilenet: MobileNet v1 (depthwise separable blocks), as TVM's testing
workload builds it, with seeded random weights."""

from __future__ import annotations

from .layers import Net

# (output channels, stride) of the 13 separable blocks after the 32-channel stem
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _conv_block(net: Net, x, channels: int, stride: int, name: str):
    return net.relu(net.bn(net.conv(x, channels, 3, stride, 1, f"{name}_conv"), f"{name}_bn"))


def _separable(net: Net, x, channels: int, stride: int, name: str):
    depth = x.shape[1]
    x = net.conv(x, depth, 3, stride, 1, f"{name}_depthwise_conv1", groups=depth)
    x = net.relu(net.bn(x, f"{name}_bn1"))
    x = net.conv(x, channels, 1, 1, 0, f"{name}_conv2")
    return net.relu(net.bn(x, f"{name}_bn2"))


def get_workload(batch_size: int = 1, num_classes: int = 1000,
                 image_shape: tuple = (3, 224, 224), dtype: str = "float32",
                 layout: str = "NCHW", alpha: float = 1.0, seed: int = 0, **_ignored):
    """(IRModule, params) of a MobileNet whose input "data" is (batch_size, *image_shape) in
    `layout`; the output is the (batch_size, num_classes) softmax."""
    net = Net(seed, dtype)
    x = net.data(batch_size, tuple(image_shape), layout, dtype)
    x = _conv_block(net, x, int(32 * alpha), 2, "conv_block_1")
    for i, (channels, stride) in enumerate(BLOCKS):
        x = _separable(net, x, int(channels * alpha), stride, f"separable_conv_block_{i + 1}")
    return net.finish(net.classifier(x, num_classes), "mobilenet")
