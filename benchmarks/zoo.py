"""The model zoo as users export it: full-size models on every import route, one table.

Models (random weights from transformers configs; nothing is downloaded): BERT-base,
DistilBERT, RoBERTa-base, GPT-2 small, ViT-B/16, ResNet-50, MobileNetV2, the Whisper-tiny
encoder, and a 4-layer LLaMA (768 wide, grouped-query attention), Swin-T, EfficientNet-B0
and wav2vec2-base (the last four are not in the default --models); text models get the
attention mask a tokenizer makes for a padded batch.
Routes: ONNX from torch.onnx.export(dynamo=False), ONNX from the default dynamo exporter, and
kiln.frontend.from_pytorch (torch.export); --routes int8 adds the first one after ONNX
Runtime's int8 recipe (quant_pre_process + quantize_dynamic, peers.quantized_bytes) and
--routes qdq after its static one (quantize_static, QDQ format, int8 activations calibrated
on four random inputs, per-channel weights; peers.static_quantized_bytes), each compared
with ONNX Runtime on the same quantized model (its error column: kiln against ORT int8, and
both against ORT fp32: quantization noise differs by rounding, so "ok" means kiln's error
against fp32 is at most twice ORT int8's plus 1e-4); --routes fp16 exports the model after
`.half()` (float16 weights, inputs and outputs) and compares kiln and ONNX Runtime on it with
PyTorch's float32 run of the same (float16-valued) weights ("ok": kiln's error at most
twice ORT's plus 1e-3). Per cell: status (exporter failed /
import failed / ok), max abs error against ONNX Runtime (ONNX routes) or PyTorch
(torch.export), build seconds, and latency of kiln's untuned build vs ONNX Runtime and
PyTorch eager on the same inputs (rows interleaved, medians of --repeat, all threads).

    python benchmarks/zoo.py [--models bert,gpt2] [--routes onnx,dynamo,torch,int8,qdq,fp16]
                             [--repeat 5]

Writes benchmarks/results/zoo.{json,md} (--out zoo_int8 for the int8 and qdq tables).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402

import kiln  # noqa: E402

SEQ = 128
ROUTES = ("onnx", "dynamo", "torch")
INT8 = "int8"  # the onnx route's model after ONNX Runtime's dynamic quantization
QDQ = "qdq"  # ... after its static quantization (QDQ format, calibrated on random inputs)
QUANTIZED = (INT8, QDQ)
FP16 = "fp16"  # the onnx route's model after .half(): float16 weights, inputs and outputs


def _text(model_cls, cfg, vocab: int, with_mask: bool = True, output="last_hidden_state"):
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return getattr(self.m(input_ids=input_ids, attention_mask=attention_mask), output)
    torch.manual_seed(0)
    model = Wrapper(model_cls(cfg)).eval()
    rng = np.random.RandomState(0)
    ids = torch.from_numpy(rng.randint(0, vocab, (1, SEQ)))
    mask = torch.ones(1, SEQ, dtype=torch.int64)
    mask[0, SEQ - 17:] = 0  # a padded sequence, as a tokenizer makes it
    return model, {"input_ids": ids, "attention_mask": mask}


def _vision(model_cls, cfg, shape, output="last_hidden_state", he_init=False):
    """he_init: convolutions re-drawn with He's scale, batch-norm scales near 1 and their
    statistics measured on random images, as training leaves them (EfficientNet's config
    draws all weights, gamma too, with std 0.02 and keeps unit statistics: each block's
    output shrinks, the pooled output is exactly zero, which checks nothing, and the
    network runs on denormal floats)."""
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return getattr(self.m(pixel_values=pixel_values), output)
    torch.manual_seed(0)
    model = Wrapper(model_cls(cfg)).eval()
    if he_init:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                elif isinstance(m, torch.nn.BatchNorm2d):  # the config draws gamma ~ 0.02
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.reset_running_stats()
                    m.momentum = None  # the plain average over the calibration batches
            model.train()
            for _ in range(2):
                model(torch.randn(4, *shape[1:]))
        model.eval()
        torch.manual_seed(1)
    return model, {"pixel_values": torch.randn(*shape)}


def _whisper():
    import torch
    from transformers import WhisperConfig, WhisperModel
    cfg = WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6,
                        decoder_layers=4, decoder_attention_heads=6, encoder_ffn_dim=1536,
                        decoder_ffn_dim=1536, num_mel_bins=80)

    class Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_features):
            return self.m(input_features).last_hidden_state
    torch.manual_seed(0)
    return Encoder(WhisperModel(cfg).encoder).eval(), \
        {"input_features": torch.randn(1, 80, 3000)}


def _wav2vec2():
    """wav2vec2-base's encoder on one second of 16 kHz audio."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    class Audio(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_values):
            return self.m(input_values=input_values).last_hidden_state
    torch.manual_seed(0)
    return Audio(Wav2Vec2Model(Wav2Vec2Config())).eval(), {"input_values": torch.randn(1, 16000)}


def models() -> dict:
    import transformers as T
    return {
        "bert-base": lambda: _text(T.BertModel, T.BertConfig(attn_implementation="eager"),
                                   30522),
        "distilbert": lambda: _text(T.DistilBertModel, T.DistilBertConfig(), 30522),
        "roberta-base": lambda: _text(T.RobertaModel, T.RobertaConfig(
            vocab_size=50265, max_position_embeddings=514, type_vocab_size=1), 50265),
        "gpt2": lambda: _text(T.GPT2Model, T.GPT2Config(), 50257),
        "vit-b16": lambda: _vision(T.ViTModel, T.ViTConfig(), (1, 3, 224, 224)),
        "resnet-50": lambda: _vision(T.ResNetModel, T.ResNetConfig(), (1, 3, 224, 224),
                                     "pooler_output"),
        "mobilenet-v2": lambda: _vision(T.MobileNetV2Model, T.MobileNetV2Config(),
                                        (1, 3, 224, 224), "pooler_output"),
        "whisper-tiny-encoder": _whisper,
        # families added later: rotary / grouped-query attention, shifted windows,
        # squeeze-excitation, raw-audio GroupNorm
        "llama-small": lambda: _text(T.LlamaModel, T.LlamaConfig(
            hidden_size=768, intermediate_size=2048, num_hidden_layers=4,
            num_attention_heads=12, num_key_value_heads=4, use_cache=False), 32000),
        "swin-tiny": lambda: _vision(T.SwinModel, T.SwinConfig(), (1, 3, 224, 224),
                                     "pooler_output"),
        "efficientnet-b0": lambda: _vision(T.EfficientNetModel, T.EfficientNetConfig(),
                                           (1, 3, 224, 224), "pooler_output", he_init=True),
        "wav2vec2-base": _wav2vec2,
    }


def _half(model, inputs: dict):
    """(the model in float16, its inputs with floats in float16, PyTorch's float32 output of
    the same float16-valued weights and inputs: the reference both stacks are held to)."""
    import copy

    import torch
    half = copy.deepcopy(model).half().eval()
    inputs = {k: v.half() if v.is_floating_point() else v for k, v in inputs.items()}
    with torch.no_grad():
        wide = copy.deepcopy(half).float()
        ref = wide(*[v.float() if v.is_floating_point() else v for v in inputs.values()])
    return half, inputs, ref.numpy()


def _ort_run(proto, feeds: dict, row: dict, tolerate: bool):
    """(ONNX Runtime session, its output) for `proto`. tolerate (the fp16 route, whose
    reference is PyTorch's float32 run): ORT's failure goes to row["ort_status"] and both are
    None, so kiln is still checked and timed."""
    import onnxruntime as ort
    try:
        sess = ort.InferenceSession(proto.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        return sess, sess.run(None, feeds)[0]
    except Exception as err:  # noqa: BLE001 - the peer's failure is a result
        if not tolerate:
            raise
        row["ort_status"] = f"ORT failed: {str(err).splitlines()[0][:90]}"
        return None, None


def _export(model, inputs: dict, path: str, dynamo: bool) -> None:
    import torch
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(inputs.values()), path, dynamo=dynamo,
                          opset_version=18, input_names=list(inputs),
                          output_names=["output"])


def cell(name: str, model, inputs: dict, route: str, tmp: str, repeat: int,
         gap_s: float = 0.2) -> dict:
    import onnx
    import onnxruntime as ort
    import torch
    if route == FP16:
        model, inputs, fp32_ref = _half(model, inputs)
    feeds = {k: v.numpy() for k, v in inputs.items()}
    row = {"model": name, "route": route}
    sess = None
    try:
        if route == "torch":
            with torch.no_grad():
                ref = model(*inputs.values()).numpy()
            t0 = time.perf_counter()
            graph, params = kiln.frontend.from_pytorch(model, tuple(inputs.values()))
        else:
            path = os.path.join(tmp, f"{name}-{route}.onnx")
            try:
                _export(model, inputs, path, route == "dynamo")
            except Exception as err:  # noqa: BLE001 - the exporter's failure is a result
                return {**row, "status": f"exporter failed: {str(err).splitlines()[0][:120]}"}
            proto = onnx.load(path)
            if route in QUANTIZED:
                fp32 = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                fp32_ref = fp32.run(None, feeds)[0]
                proto = onnx.load_from_string(
                    peers.quantized_bytes(proto) if route == INT8 else
                    peers.static_quantized_bytes(proto, _calibration(feeds)))
            sess, ref = _ort_run(proto, feeds, row, route == FP16)
            t0 = time.perf_counter()
            graph, params = kiln.frontend.from_onnx(proto)
        lib = kiln.graph.build(graph, params, target="cpu")
        row["build_s"] = time.perf_counter() - t0
        names = lib.input_names
        run = lambda: lib.run(**dict(zip(names, feeds.values())))  # noqa: E731
        out = list(run().values())[0]
        ref = fp32_ref if ref is None else ref  # fp16 route, ONNX Runtime failed
        row["max_abs_err"] = float(np.abs(out - ref).max())
        # relative to the output's scale: random-weight MobileNetV2 outputs ~1e-21, where
        # an absolute bound says nothing
        row["max_rel_err"] = row["max_abs_err"] / max(float(np.abs(ref).max()), 1e-30)
    except kiln.KilnError as err:
        return {**row, "status": f"kiln: {str(err).splitlines()[0][:160]}"}
    except Exception as err:  # noqa: BLE001 - a crash is reported in the table, not fatal
        traceback.print_exc()
        return {**row, "status": f"crash: {type(err).__name__}: {str(err)[:120]}"}
    if route == FP16:
        row["kiln_vs_fp32"] = float(np.abs(out.astype(np.float32) - fp32_ref).max())
        # without ONNX Runtime: two float16 steps at the output's scale
        bound = 2e-3 * float(np.abs(fp32_ref).max())
        if sess is not None:
            row["ort_fp16_vs_fp32"] = bound = float(np.abs(ref.astype(np.float32)
                                                           - fp32_ref).max())
        # the exporter may have widened the output (a float32 path inside): as declared
        declared = onnx.helper.tensor_dtype_to_np_dtype(
            proto.graph.output[0].type.tensor_type.elem_type)
        row["out_dtype"] = str(out.dtype)
        row["status"] = "ok" if out.dtype == declared and \
            row["kiln_vs_fp32"] <= 2 * bound + 1e-3 else \
            f"wrong (not {declared}, or error against fp32 > 2x ORT fp16's + 1e-3)"
    elif route in QUANTIZED:
        row["kiln_vs_fp32"] = float(np.abs(out - fp32_ref).max())
        row["ort_int8_vs_fp32"] = float(np.abs(ref - fp32_ref).max())
        row["status"] = "ok" if row["kiln_vs_fp32"] <= 2 * row["ort_int8_vs_fp32"] + 1e-4 \
            else "wrong (error against fp32 > 2x ORT int8's)"
    else:
        row["status"] = "ok" if row["max_abs_err"] <= 1e-4 and row["max_rel_err"] <= 1e-3 \
            else "wrong (abs error > 1e-4 or error > 1e-3 of the output's max)"
    timers = {"kiln": run}
    if sess is not None:
        timers["ort"] = lambda: sess.run(None, feeds)
    with torch.no_grad():
        if route not in QUANTIZED + (FP16,):  # PyTorch runs the float32 model only
            timers["torch"] = lambda: model(*inputs.values())
        # the gap lets the previous row's thread pool stop spinning (without it, kiln's
        # OpenMP pool spinning after each call read ORT's MobileNetV2 at 7.4 ms instead of
        # 3.8), then one untimed call wakes the row's own pool
        samples = peers.interleaved(timers, repeat, 1, gap_s, warm=1)
    for k, v in samples.items():
        row[f"{k}_ms"] = statistics.median(v) * 1e3
        row[f"{k}_range_ms"] = [min(v) * 1e3, max(v) * 1e3]
    return row


def _calibration(feeds: dict, count: int = 4) -> list:
    """Inputs for static quantization's calibration: token ids drawn again (the mask kept),
    images and spectrograms redrawn from the same normal distribution."""
    rng = np.random.default_rng(1)
    out = []
    for _ in range(count):
        batch = {}
        for k, v in feeds.items():
            if k == "input_ids":
                batch[k] = rng.integers(0, 1000, v.shape).astype(v.dtype)
            elif v.dtype.kind == "f":
                batch[k] = rng.standard_normal(v.shape).astype(v.dtype)
            else:
                batch[k] = v
        out.append(batch)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(list(models())[:8]))
    p.add_argument("--routes", default=",".join(ROUTES))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--gap-ms", type=float, default=200.0,
                   help="sleep before each timed call (idle thread pools between rows)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "zoo"))
    args = p.parse_args()
    table = models()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model, inputs = table[name]()
            for route in args.routes.split(","):
                row = cell(name, model, inputs, route, tmp, args.repeat, args.gap_ms / 1e3)
                rows.append(row)
                print(json.dumps(row), flush=True)
                write(Path(args.out), rows)


def _vs_fp32(r: dict) -> str:
    """The error column's addition for the int8 / qdq / fp16 routes."""
    if "kiln_vs_fp32" not in r:
        return ""
    peer = r.get("ort_status") or next(
        f"ORT {k[4:8]} {r[k]:.2g}" for k in ("ort_fp16_vs_fp32", "ort_int8_vs_fp32") if k in r)
    return f" (vs fp32: {r['kiln_vs_fp32']:.2g}; {peer})"


def write(out: Path, rows: list) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "target": str(kiln.target.Target("cpu")),
            "cores": len(os.sched_getaffinity(0)), "loadavg": os.getloadavg()[0]}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# Model zoo: every import route, untuned kiln vs ONNX Runtime and PyTorch", "",
             f"{meta['date']}, target `{meta['target']}`, {meta['cores']} cores, load average "
             f"{meta['loadavg']:.2f}; batch 1, text models seq {SEQ} with a padded attention "
             "mask; latency medians (min-max) of interleaved runs; before each timed call 200 "
             "ms of sleep (the previous row's thread pool idle) and one untimed call.", "",
             "| model | route | status | max abs err | rel err | build s | kiln ms | ORT ms | "
             "PyTorch ms |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        def f(k, fmt, r=r):
            return format(r[k], fmt) if k in r else ""

        def ms(k, r=r):
            lo, hi = r.get(f"{k}_range_ms", (None, None))
            return "" if k + "_ms" not in r else f"{r[k + '_ms']:.1f}" + (
                f" ({lo:.1f}–{hi:.1f})" if lo is not None else "")
        err = f('max_abs_err', '.1e') + _vs_fp32(r)
        lines.append(f"| {r['model']} | {r['route']} | {r['status']} | {err}"
                     f" | {f('max_rel_err', '.1e')} | {f('build_s', '.1f')} | {ms('kiln')} |"
                     f" {ms('ort')} | {ms('torch')} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
