"""Tiny random-weight models of the families users export, and the three ways they export.

In: a family name. Out: (torch module in eval mode, {input name: tensor}, output names) built
from a transformers config (nothing is downloaded) or plain torch; `export(route, ...)` turns it
into what kiln imports: an ONNX ModelProto (legacy or dynamo exporter) or the module itself for
`kiln.frontend.from_pytorch`. Why: the zoo tests and ad-hoc surveys share one definition of
"a model as users export it" (text models get a tokenizer-style mask with padding).
"""

from __future__ import annotations

import io
import warnings

import numpy as np

SEQ, VOCAB, HIDDEN = 8, 64, 32
MASK = [1, 1, 1, 1, 1, 1, 0, 0]  # what a tokenizer produces for a short sentence, padded
IMAGE = 32


def _wrapper_classes() -> dict:
    """Modules whose forward takes the inputs by the names users feed (torch.export keeps
    them) and returns the named outputs of a transformers model as a dict."""
    import torch

    class Named(torch.nn.Module):
        def __init__(self, model, keys: tuple):
            super().__init__()
            self.m, self.keys = model, keys

        def pick(self, out) -> dict:
            return {k: out[k] for k in self.keys}

    class Text(Named):
        def forward(self, input_ids, attention_mask):
            return self.pick(self.m(input_ids=input_ids, attention_mask=attention_mask))

    class TextIds(Named):
        def forward(self, input_ids):
            return self.pick(self.m(input_ids=input_ids))

    class Image(Named):
        def forward(self, pixel_values):
            return self.pick(self.m(pixel_values=pixel_values))

    class Audio(Named):
        def forward(self, input_features):
            return self.pick(self.m(input_features=input_features))
    return {("input_ids", "attention_mask"): Text, ("input_ids",): TextIds,
            ("pixel_values",): Image, ("input_features",): Audio}


def _text_inputs(with_mask: bool = True, vocab: int = VOCAB, low: int = 3) -> dict:
    import torch
    ids = np.random.RandomState(0).randint(low, vocab, (1, SEQ))
    feeds = {"input_ids": torch.from_numpy(ids)}
    if with_mask:
        feeds["attention_mask"] = torch.tensor([MASK], dtype=torch.int64)
    return feeds


def _image(channels: int = 3, size: int = IMAGE) -> dict:
    import torch
    x = np.random.RandomState(0).randn(1, channels, size, size).astype(np.float32)
    return {"pixel_values": torch.from_numpy(x)}


def _small(**kw) -> dict:
    base = dict(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=48, vocab_size=VOCAB, max_position_embeddings=32,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base.update(kw)
    return base


def _wrap(model, feeds: dict, keys: tuple, encoder: bool = False):
    model = model.get_encoder() if encoder else model
    wrapped = _wrapper_classes()[tuple(feeds)](model, keys)
    return wrapped.eval(), feeds, list(keys)


def bert(with_mask: bool = True):
    from transformers import BertConfig, BertModel
    m = BertModel(BertConfig(**_small()))
    return _wrap(m, _text_inputs(with_mask), ("last_hidden_state", "pooler_output"))


def distilbert():
    from transformers import DistilBertConfig, DistilBertModel
    cfg = DistilBertConfig(vocab_size=VOCAB, dim=HIDDEN, n_layers=2, n_heads=2, hidden_dim=48,
                           max_position_embeddings=32, dropout=0.0, attention_dropout=0.0)
    return _wrap(DistilBertModel(cfg), _text_inputs(), ("last_hidden_state",))


def roberta():
    from transformers import RobertaConfig, RobertaModel
    m = RobertaModel(RobertaConfig(**_small(pad_token_id=1)))
    return _wrap(m, _text_inputs(), ("last_hidden_state", "pooler_output"))


def albert():
    from transformers import AlbertConfig, AlbertModel
    cfg = AlbertConfig(**_small(embedding_size=16), hidden_act="gelu_new")
    return _wrap(AlbertModel(cfg), _text_inputs(), ("last_hidden_state", "pooler_output"))


def electra():
    from transformers import ElectraConfig, ElectraModel
    m = ElectraModel(ElectraConfig(**_small(embedding_size=16)))
    return _wrap(m, _text_inputs(), ("last_hidden_state",))


def gpt2(with_mask: bool = True):
    from transformers import GPT2Config, GPT2Model
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=HIDDEN, n_layer=2, n_head=2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                     bos_token_id=1, eos_token_id=2)
    return _wrap(GPT2Model(cfg), _text_inputs(with_mask), ("last_hidden_state",))


def minilm():
    """Sentence embedding: BertModel, mean pooling over the unmasked tokens, L2 normalise."""
    import torch
    from transformers import BertConfig, BertModel

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = BertModel(BertConfig(**_small()))

        def forward(self, input_ids, attention_mask):
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)
    return SentenceEmbedding().eval(), _text_inputs(), ["sentence_embedding"]


def vit():
    from transformers import ViTConfig, ViTModel
    cfg = ViTConfig(**_small(), image_size=IMAGE, patch_size=8)
    del cfg.vocab_size
    return _wrap(ViTModel(cfg, add_pooling_layer=True), _image(),
                 ("last_hidden_state", "pooler_output"))


def resnet():
    from transformers import ResNetConfig, ResNetModel
    cfg = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                       layer_type="bottleneck")
    return _wrap(_randomise_bn(ResNetModel(cfg)), _image(), ("pooler_output",))


def mobilenet_v2():
    from transformers import MobileNetV2Config, MobileNetV2Model
    cfg = MobileNetV2Config(image_size=IMAGE, depth_multiplier=0.35)
    return _wrap(_randomise_bn(MobileNetV2Model(cfg)), _image(), ("pooler_output",))


def convnext():
    from transformers import ConvNextConfig, ConvNextModel
    cfg = ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], image_size=IMAGE)
    return _wrap(ConvNextModel(cfg), _image(), ("pooler_output",))


def mlp():
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 10),
                          nn.Softmax(-1))
    return model.eval(), {"x": torch.randn(2, 20)}, ["probs"]


def cnn():
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.PReLU(8), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(), nn.ConvTranspose2d(8, 4, 2, 2),
        nn.Upsample(scale_factor=0.5, mode="nearest"), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 10))
    return _randomise_bn(model).eval(), _image(), ["logits"]


def t5_encoder():
    from transformers import T5Config, T5EncoderModel
    cfg = T5Config(vocab_size=VOCAB, d_model=HIDDEN, d_kv=16, d_ff=48, num_layers=2,
                   num_heads=2, dropout_rate=0.0, relative_attention_num_buckets=8)
    return _wrap(T5EncoderModel(cfg), _text_inputs(), ("last_hidden_state",))


def bart_encoder():
    from transformers import BartConfig, BartModel
    cfg = BartConfig(vocab_size=VOCAB, d_model=HIDDEN, encoder_layers=2, decoder_layers=1,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=48,
                     decoder_ffn_dim=48, max_position_embeddings=32, dropout=0.0)
    return _wrap(BartModel(cfg), _text_inputs(), ("last_hidden_state",), encoder=True)


def whisper_encoder():
    import torch
    from transformers import WhisperConfig, WhisperModel
    cfg = WhisperConfig(vocab_size=VOCAB, d_model=HIDDEN, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=48, decoder_ffn_dim=48, num_mel_bins=8,
                        max_source_positions=16, max_target_positions=16, dropout=0.0,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        decoder_start_token_id=1)
    x = np.random.RandomState(0).randn(1, 8, 32).astype(np.float32)
    return _wrap(WhisperModel(cfg), {"input_features": torch.from_numpy(x)},
                 ("last_hidden_state",), encoder=True)


# ---------------------------------------------------------------- decoder LLMs (rotary
# position embeddings: Sin / Cos; grouped-query attention), relative-position encoders

def _decoder(config_cls, model_cls, **kw):
    cfg = config_cls(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=48,
                     num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32,
                     use_cache=False, **kw)
    return _wrap(model_cls(cfg), _text_inputs(), ("last_hidden_state",))


def llama():
    from transformers import LlamaConfig, LlamaModel
    return _decoder(LlamaConfig, LlamaModel, num_key_value_heads=2)


def qwen2():
    from transformers import Qwen2Config, Qwen2Model
    return _decoder(Qwen2Config, Qwen2Model, num_key_value_heads=2)


def mistral():
    from transformers import MistralConfig, MistralModel
    return _decoder(MistralConfig, MistralModel, num_key_value_heads=2, sliding_window=None)


def phi():
    from transformers import PhiConfig, PhiModel
    return _decoder(PhiConfig, PhiModel, partial_rotary_factor=0.5)


def gemma():
    from transformers import GemmaConfig, GemmaModel
    return _decoder(GemmaConfig, GemmaModel, num_key_value_heads=1, head_dim=8)


def bloom():
    from transformers import BloomConfig, BloomModel
    cfg = BloomConfig(vocab_size=VOCAB, hidden_size=HIDDEN, n_layer=2, n_head=4, use_cache=False)
    return _wrap(BloomModel(cfg), _text_inputs(), ("last_hidden_state",))


def opt():
    from transformers import OPTConfig, OPTModel
    cfg = OPTConfig(vocab_size=VOCAB, hidden_size=HIDDEN, ffn_dim=48, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=32,
                    word_embed_proj_dim=HIDDEN, use_cache=False, dropout=0.0)
    return _wrap(OPTModel(cfg), _text_inputs(), ("last_hidden_state",))


def deberta():
    from transformers import DebertaV2Config, DebertaV2Model
    cfg = DebertaV2Config(**_small(), relative_attention=True, position_buckets=8,
                          pos_att_type=["p2c", "c2p"])
    return _wrap(DebertaV2Model(cfg), _text_inputs(), ("last_hidden_state",))


def clip_text():
    from transformers import CLIPTextConfig, CLIPTextModel
    cfg = CLIPTextConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32,
                         eos_token_id=2)
    return _wrap(CLIPTextModel(cfg), _text_inputs(), ("last_hidden_state", "pooler_output"))


# ---------------------------------------------------------------- more vision and audio

def clip_vision():
    from transformers import CLIPVisionConfig, CLIPVisionModel
    cfg = CLIPVisionConfig(hidden_size=HIDDEN, intermediate_size=48, num_hidden_layers=2,
                           num_attention_heads=2, image_size=IMAGE, patch_size=8)
    return _wrap(CLIPVisionModel(cfg), _image(), ("last_hidden_state", "pooler_output"))


def swin():
    """Shifted windows: Mod / as_strided index arithmetic, a 1-d global average pool."""
    from transformers import SwinConfig, SwinModel
    cfg = SwinConfig(image_size=IMAGE, patch_size=4, embed_dim=16, depths=[1, 1],
                     num_heads=[2, 2], window_size=4)
    return _wrap(SwinModel(cfg), _image(), ("last_hidden_state", "pooler_output"))


def deit():
    from transformers import DeiTConfig, DeiTModel
    cfg = DeiTConfig(**_small(), image_size=IMAGE, patch_size=8)
    del cfg.vocab_size
    return _wrap(DeiTModel(cfg), _image(), ("last_hidden_state",))


def dinov2():
    """Position embeddings resized bicubically (ONNX Resize mode cubic)."""
    from transformers import Dinov2Config, Dinov2Model
    cfg = Dinov2Config(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=48, image_size=IMAGE, patch_size=8)
    return _wrap(Dinov2Model(cfg), _image(), ("last_hidden_state", "pooler_output"))


def beit():
    """Relative position bias tables built in place (aten copy / slice_scatter)."""
    from transformers import BeitConfig, BeitModel
    cfg = BeitConfig(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=48, image_size=IMAGE, patch_size=8,
                     use_relative_position_bias=True)
    return _wrap(BeitModel(cfg), _image(), ("last_hidden_state", "pooler_output"))


def efficientnet():
    """Squeeze-excitation blocks, swish, and a pooler window larger than its input."""
    from transformers import EfficientNetConfig, EfficientNetModel
    cfg = EfficientNetConfig(image_size=IMAGE, width_coefficient=0.25, depth_coefficient=0.25,
                             hidden_dim=320)
    return _wrap(_randomise_bn(EfficientNetModel(cfg)), _image(), ("pooler_output",))


def mobilevit():
    from transformers import MobileViTConfig, MobileViTModel
    cfg = MobileViTConfig(image_size=IMAGE, hidden_sizes=[16, 24, 32],
                          neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 32], num_attention_heads=2)
    return _wrap(_randomise_bn(MobileViTModel(cfg)), _image(), ("pooler_output",))


def regnet():
    from transformers import RegNetConfig, RegNetModel
    cfg = RegNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], groups_width=8)
    return _wrap(_randomise_bn(RegNetModel(cfg)), _image(), ("pooler_output",))


def segformer():
    from transformers import SegformerConfig, SegformerModel
    cfg = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                          hidden_sizes=[16, 32], num_attention_heads=[1, 2],
                          decoder_hidden_size=32, patch_sizes=[7, 3], strides=[4, 2],
                          mlp_ratios=[2, 2])
    return _wrap(SegformerModel(cfg), _image(), ("last_hidden_state",))


def wav2vec2():
    """Raw audio: a strided conv feature extractor with GroupNorm (ONNX
    InstanceNormalization), a grouped positional convolution."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    cfg = Wav2Vec2Config(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=48, conv_dim=(16, 16), conv_stride=(5, 2),
                         conv_kernel=(10, 3), num_feat_extract_layers=2,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)

    class Audio(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = Wav2Vec2Model(cfg)

        def forward(self, input_values):
            return {"last_hidden_state": self.m(input_values=input_values).last_hidden_state}
    x = np.random.RandomState(0).randn(1, 400).astype(np.float32)
    return Audio().eval(), {"input_values": torch.from_numpy(x)}, ["last_hidden_state"]


def _randomise_bn(model):
    """Random batch-norm statistics, so folding them into convolutions is exercised."""
    import torch
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


FAMILIES = {
    "bert": bert, "bert_nomask": lambda: bert(False), "distilbert": distilbert,
    "roberta": roberta, "albert": albert, "electra": electra, "gpt2": gpt2,
    "gpt2_nomask": lambda: gpt2(False), "minilm": minilm, "vit": vit, "resnet": resnet,
    "mobilenet_v2": mobilenet_v2, "convnext": convnext, "mlp": mlp, "cnn": cnn,
    "t5_encoder": t5_encoder, "bart_encoder": bart_encoder, "whisper_encoder": whisper_encoder,
    "llama": llama, "qwen2": qwen2, "mistral": mistral, "phi": phi, "gemma": gemma,
    "bloom": bloom, "opt": opt, "deberta": deberta, "clip_text": clip_text,
    "clip_vision": clip_vision, "swin": swin, "deit": deit, "dinov2": dinov2, "beit": beit,
    "efficientnet": efficientnet, "mobilevit": mobilevit, "regnet": regnet,
    "segformer": segformer, "wav2vec2": wav2vec2,
}


# plain torch modules: forward(input) (nn.Sequential's name) and an unnamed tensor output
NAMED_INPUTS = {"mlp": False, "cnn": False}
NAMED_OUTPUTS = {"mlp": False, "cnn": False, "minilm": False}


def make(family: str):
    """(module, {input name: tensor}, [output names]) for a family, seeded."""
    import torch
    torch.manual_seed(0)
    return FAMILIES[family]()


def reference(model, feeds: dict) -> list:
    """The module's outputs as NumPy arrays, in output order."""
    import torch
    with torch.no_grad():
        out = model(*feeds.values())
    if isinstance(out, dict):
        out = list(out.values())
    elif isinstance(out, torch.Tensor):
        out = [out]
    return [o.numpy() for o in out]


def export_onnx(model, feeds: dict, names: list, dynamo: bool, opset: int = 17):
    """The ModelProto torch.onnx.export writes (legacy TorchScript or dynamo exporter)."""
    import onnx
    import torch
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            prog = torch.onnx.export(model, tuple(feeds.values()), dynamo=True,
                                     input_names=list(feeds), output_names=names,
                                     opset_version=18, verbose=False)
            return prog.model_proto
        torch.onnx.export(model, tuple(feeds.values()), buf, dynamo=False,
                          opset_version=opset, input_names=list(feeds), output_names=names)
    return onnx.load_from_string(buf.getvalue())
