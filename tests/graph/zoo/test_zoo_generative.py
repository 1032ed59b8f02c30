"""Zoo, group 2: GPT-2 (causal mask, with and without an attention mask) and a MiniLM-style
sentence embedding (BertModel, masked mean pooling, L2 normalisation) on all three routes."""

import pytest
from zoo_check import cells, check

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")


SLOW = {("gpt2_nomask", "dynamo"), ("minilm", "dynamo")}


@pytest.mark.parametrize("family, route", cells(["gpt2", "gpt2_nomask", "minilm"], SLOW))
def test_generative_and_embedding(family, route):
    check(family, route)
