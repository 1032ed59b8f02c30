"""Zoo, group 1: BERT-style encoders fed input_ids and a padded attention mask, through the
legacy ONNX exporter, the dynamo ONNX exporter and torch.export, built by kiln (CPU)."""

import pytest
from zoo_check import cells, check

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

FAMILIES = ["bert", "bert_nomask", "distilbert", "roberta", "albert", "electra"]
# BERT and RoBERTa (cumsum position ids) run every route by default; the rest skip dynamo
SLOW = {("bert_nomask", "dynamo"), ("distilbert", "dynamo"), ("albert", "dynamo"),
        ("electra", "dynamo")}


@pytest.mark.parametrize("family, route", cells(FAMILIES, SLOW))
def test_encoder_with_mask(family, route):
    check(family, route)
