"""Zoo, group 3: image models (ViT, ResNet, MobileNetV2, ConvNeXt from transformers) and plain
torch modules (an MLP; a CNN with PReLU, transposed convolution and nearest resizing) on all
three routes, 32x32 images."""

import pytest
from zoo_check import cells, check

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")


FAMILIES = ["vit", "resnet", "mobilenet_v2", "convnext", "mlp", "cnn"]
# MobileNetV2 and ConvNeXt compile many distinct kernels: one route each by default
SLOW = {("vit", "dynamo"), ("resnet", "dynamo"), ("mobilenet_v2", "dynamo"),
        ("mobilenet_v2", "torch"), ("convnext", "dynamo"), ("convnext", "onnx")}


@pytest.mark.parametrize("family, route", cells(FAMILIES, SLOW))
def test_vision_and_plain_torch(family, route):
    check(family, route)
