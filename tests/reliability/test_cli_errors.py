"""`kiln` command-line failures: each is one line `kiln: error: ...` with exit status 2 (the
traceback only with KILN_DEBUG=1); bert-tiny's default sequence length fits the model."""

from __future__ import annotations

import pytest

from kiln import cli

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def relu_onnx(tmp_path_factory):
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    path = tmp_path_factory.mktemp("onnx") / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def _fails(capsys, argv, needle: str) -> None:
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kiln: error: "), lines
    assert needle in lines[0], lines[0]


def test_bad_shape(relu_onnx, tmp_path, capsys):
    _fails(capsys, ["compile", relu_onnx, "--shape", "x=1,four", "-o", str(tmp_path / "a.so")],
           "--shape 'x=1,four'")


def test_missing_log_file(tmp_path, capsys):
    _fails(capsys, ["show", str(tmp_path / "none.json")], "no such log file")


def test_missing_output_folder(relu_onnx, tmp_path, capsys):
    _fails(capsys, ["compile", relu_onnx, "-o", str(tmp_path / "no" / "a.so")],
           "does not exist")


@pytest.mark.parametrize("content", [b"", b"\x08\xff\xff garbage \x00" * 8])
def test_empty_or_damaged_onnx_file(tmp_path, capsys, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    _fails(capsys, ["compile", str(bad), "-o", str(tmp_path / "a.so")], "bad.onnx is not")


def test_bert_tiny_default_sequence_fits_its_positions(tmp_path, capsys, monkeypatch):
    import kiln.models
    seen = []

    def builtin(name, seq_len=128, **kw):
        seen.append(seq_len)
        raise kiln.errors.KilnError("stop here")
    monkeypatch.setattr(kiln.models, "builtin", builtin)
    _fails(capsys, ["tune", "--builtin", "bert-tiny", "--log", str(tmp_path / "t.json")],
           "stop here")
    assert seen == [64]
    _fails(capsys, ["tune", "--builtin", "bert-tiny", "--seq-len", "128", "--log",
                    str(tmp_path / "t.json")], "bert-tiny takes 1 to 64 tokens")


def test_unwritable_cache_dir(relu_onnx, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "file" / "cache"))
    _fails(capsys, ["compile", relu_onnx, "-o", str(tmp_path / "a.so")],
           "cannot write to the compile cache")


def test_unexpected_failure_is_one_line_unless_kiln_debug(tmp_path, capsys, monkeypatch):
    def boom(args):
        raise RuntimeError("boom\nsecond line")
    monkeypatch.setattr(cli, "cmd_show", boom)
    monkeypatch.delenv("KILN_DEBUG", raising=False)
    _fails(capsys, ["show", "x.json"], "RuntimeError: boom second line")
    monkeypatch.setenv("KILN_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["show", "x.json"])
