"""Zoo, group 4: encoders of encoder-decoder models (T5 with relative position buckets,
BART, Whisper with its conv1d front end) on all three routes."""

import pytest
from zoo_check import cells, check

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")


FAMILIES = ["t5_encoder", "bart_encoder", "whisper_encoder"]
# one route per family by default, the other two with the slow marker
SLOW = {("t5_encoder", "onnx"), ("t5_encoder", "dynamo"), ("bart_encoder", "dynamo"),
        ("bart_encoder", "torch"), ("whisper_encoder", "dynamo"), ("whisper_encoder", "torch")}


@pytest.mark.parametrize("family, route", cells(FAMILIES, SLOW))
def test_seq2seq_encoder(family, route):
    check(family, route)
