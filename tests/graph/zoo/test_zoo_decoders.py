"""Zoo, decoder LLMs and relative-position encoders: LLaMA-style models (rotary position
embeddings: Sin / Cos, RMSNorm, SiLU-gated MLPs, grouped-query attention), BLOOM (ALiBi),
OPT, DeBERTa-v2 (Sign, Tile), CLIP's text tower; all three routes, built by kiln (CPU)."""

import pytest
from zoo_check import cells, check

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

FAMILIES = ["llama", "qwen2", "mistral", "phi", "gemma", "bloom", "opt", "deberta", "clip_text"]
# LLaMA and DeBERTa (the new ops) by default through the legacy exporter and torch.export;
# the rest, and the dynamo exporter, on request (-m slow)
SLOW = {(f, "*") for f in FAMILIES if f not in ("llama", "deberta")} | \
    {("llama", "dynamo"), ("deberta", "dynamo")}


@pytest.mark.parametrize("family, route", cells(FAMILIES, SLOW))
def test_decoder_and_relative_position_models(family, route):
    check(family, route)
