"""relay.testing.resnet: ResNet v2 (pre-activation; 18, 34, 50, 101, 152 layers), as TVM's
testing workload builds it, with seeded random weights."""

from __future__ import annotations

from ...errors import ArgumentError
from .layers import Net, image_dims

UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
         152: (3, 8, 36, 3), 200: (3, 24, 36, 3), 269: (3, 30, 48, 8)}


def _unit(net: Net, x, filters: int, stride: int, dim_match: bool, name: str, bottleneck: bool):
    act1 = net.relu(net.bn(x, f"{name}_bn1", 2e-5))
    if bottleneck:
        y = net.conv(act1, filters // 4, 1, stride, 0, f"{name}_conv1")
        y = net.conv(net.relu(net.bn(y, f"{name}_bn2", 2e-5)), filters // 4, 3, 1, 1,
                     f"{name}_conv2")
        y = net.conv(net.relu(net.bn(y, f"{name}_bn3", 2e-5)), filters, 1, 1, 0,
                     f"{name}_conv3")
    else:
        y = net.conv(act1, filters, 3, stride, 1, f"{name}_conv1")
        y = net.conv(net.relu(net.bn(y, f"{name}_bn2", 2e-5)), filters, 3, 1, 1,
                     f"{name}_conv2")
    shortcut = x if dim_match else net.conv(act1, filters, 1, stride, 0, f"{name}_sc")
    return net.b.op("add", [y, shortcut])


def get_workload(batch_size: int = 1, num_classes: int = 1000, num_layers: int = 18,
                 image_shape: tuple = (3, 224, 224), layout: str = "NCHW",
                 dtype: str = "float32", seed: int = 0, **_ignored):
    """(IRModule, params) of a ResNet whose input "data" is (batch_size, *image_shape) in
    `layout`; the output is the (batch_size, num_classes) softmax."""
    if num_layers not in UNITS:
        raise ArgumentError(f"num_layers {num_layers}: ResNet comes in "
                            f"{', '.join(map(str, UNITS))} layers")
    net = Net(seed, dtype)
    c, h, _ = image_dims(image_shape, layout)
    x = net.data(batch_size, tuple(image_shape), layout, dtype)
    bottleneck = num_layers >= 50
    filters = (64, 256, 512, 1024, 2048) if bottleneck else (64, 64, 128, 256, 512)
    x = net.bn(x, "bn_data", 2e-5)
    if h <= 32:  # CIFAR-sized images: one 3x3 stem, no pooling
        x = net.conv(x, filters[0], 3, 1, 1, "conv0")
    else:
        x = net.relu(net.bn(net.conv(x, filters[0], 7, 2, 3, "conv0"), "bn0", 2e-5))
        x = net.b.op("max_pool2d", [x], pool_size=[3, 3], strides=[2, 2],
                     padding=[1, 1, 1, 1], ceil_mode=False)
    for i, units in enumerate(UNITS[num_layers]):
        stride = 1 if i == 0 else 2
        x = _unit(net, x, filters[i + 1], stride, False, f"stage{i + 1}_unit1", bottleneck)
        for j in range(units - 1):
            x = _unit(net, x, filters[i + 1], 1, True, f"stage{i + 1}_unit{j + 2}", bottleneck)
    x = net.relu(net.bn(x, "bn1", 2e-5))
    return net.finish(net.classifier(x, num_classes), f"resnet{num_layers}")
