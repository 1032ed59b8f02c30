"""Recurrent layers: an LSTM works through torch.export (unrolled over its fixed sequence
length by the decompositions) and the ONNX LSTM op is one clear UnsupportedOpError."""

import io
import warnings

import numpy as np
import pytest

import kiln

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


class _LSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


def test_lstm_through_torch_export_matches_pytorch():
    torch.manual_seed(0)
    model, x = _LSTM().eval(), torch.randn(1, 5, 8)
    graph, params = kiln.frontend.from_pytorch(model, (x,))
    lib = kiln.graph.build(graph, params, target="cpu")
    with torch.no_grad():
        ref = model(x).numpy()
    (out,) = lib.run(**{lib.input_names[0]: x.numpy()}).values()
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_onnx_lstm_is_a_clear_unsupported_op_error():
    torch.manual_seed(0)
    model, x = _LSTM().eval(), torch.randn(1, 5, 8)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), f, dynamo=False, input_names=["x"])
    with pytest.raises(kiln.errors.KilnError, match="unsupported op type.*LSTM"):
        kiln.frontend.from_onnx(onnx.load_from_string(f.getvalue()))
