"""Zoo, more vision and audio: Swin (Mod / as_strided window arithmetic), DINOv2 (bicubic
position-embedding resize), BEiT (relative position tables built in place), EfficientNet
(squeeze-excitation, a pooler window larger than its input), wav2vec2 (GroupNorm:
InstanceNormalization), CLIP vision, DeiT, MobileViT, RegNet, SegFormer; built by kiln (CPU)."""

import pytest
from zoo_check import cells, check

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

FAMILIES = ["swin", "dinov2", "beit", "efficientnet", "wav2vec2", "clip_vision", "deit",
            "mobilevit", "regnet", "segformer"]
# each new op once by default: the route where it appears
DEFAULT = {("swin", "onnx"), ("swin", "torch"), ("dinov2", "onnx"), ("beit", "torch"),
           ("efficientnet", "onnx"), ("wav2vec2", "onnx"), ("wav2vec2", "torch")}
SLOW = {(f, r) for f in FAMILIES for r in ("onnx", "dynamo", "torch")} - DEFAULT


@pytest.mark.parametrize("family, route", cells(FAMILIES, SLOW))
def test_vision_and_audio(family, route):
    check(family, route)
