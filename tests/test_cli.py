"""The `kiln` command line on a tiny model with a few trials: tune, show, bench, compile."""

import json
import os

import numpy as np
import pytest

from kiln.cli import main, parse_duration

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from graph.models import export_onnx, tiny_bert
    model, args = tiny_bert()
    return export_onnx(model, args, str(tmp_path_factory.mktemp("cli") / "tiny.onnx"))


@pytest.fixture(scope="module")
def tuned_log(model_path, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("cli") / "tiny.json")
    assert main(["tune", model_path, "--trials", "6", "--per-round", "2", "--log", log]) == 0
    return log


def test_tune_writes_records(tuned_log, capsys):
    lines = open(tuned_log).read().splitlines()
    assert len(lines) == 6
    assert all(json.loads(x)["target"] for x in lines)


def test_show(tuned_log, capsys):
    assert main(["show", tuned_log]) == 0
    out = capsys.readouterr().out
    assert "GFLOPS" in out and "fused_" in out


def test_bench_table(model_path, tuned_log, capsys, tmp_path):
    out_json = str(tmp_path / "b.json")
    assert main(["bench", model_path, "--log", tuned_log, "--repeat", "2", "--no-torch",
                 "--json", out_json, "--profile", "3"]) == 0
    out = capsys.readouterr().out
    assert "where the time goes (kiln tuned" in out
    listed = [ln for ln in out.splitlines() if ln.startswith("  k") and " ms " in ln]
    assert len(listed) == 3 and "fused_" in listed[0]
    rows = {r["name"]: r for r in json.load(open(out_json))["rows"]}
    assert {"kiln untuned", "kiln tuned", "ONNX Runtime"} <= set(rows)
    assert rows["kiln tuned"]["max_abs_err_vs_ort"] < 1e-4


def test_compile_and_load(model_path, tuned_log, tmp_path):
    import kiln
    out = str(tmp_path / "tiny.so")
    assert main(["compile", model_path, "--log", tuned_log, "-o", out]) == 0
    assert os.path.exists(out)
    lib = kiln.graph.load(out)
    ids = np.random.default_rng(0).integers(0, 100, (1, 16)).astype(np.int64)
    (res,) = lib.run(input_ids=ids).values()
    assert res.shape == (1, 16, 64) and np.isfinite(res).all()


def test_compile_with_records_checked_in_the_network(model_path, tuned_log, tmp_path,
                                                     capsys):
    """--check-records: the records are timed inside the network against the defaults and
    the summary line says how many were kept; the library still loads and runs (and, asked
    with --flush-denormals, flushes them)."""
    import kiln
    out = str(tmp_path / "tiny_checked.so")
    assert main(["compile", model_path, "--log", tuned_log, "--check-records",
                 "--flush-denormals", "-o", out]) == 0
    assert "records checked in the network:" in capsys.readouterr().err
    ids = np.zeros((1, 16), np.int64)
    lib = kiln.graph.load(out)
    assert lib.flush_denormals
    (res,) = lib.run(input_ids=ids).values()
    assert res.shape == (1, 16, 64) and np.isfinite(res).all()


def test_errors_and_usage(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "missing.onnx"), "--no-torch"]) == 2
    assert "no such model file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["tune"])
    assert e.value.code == 2
    assert main(["tune", "--log", str(tmp_path / "x.json")]) == 2
    assert "give a model file" in capsys.readouterr().err
    assert parse_duration("15m") == 900 and parse_duration("30s") == 30


def test_log_of_another_model_is_ignored(model_path, tuned_log, capsys, tmp_path):
    # the same architecture at another sequence length: other workload keys, nothing applies
    out_json = str(tmp_path / "b.json")
    assert main(["bench", "--builtin", "bert-tiny", "--seq-len", "8", "--log", tuned_log,
                 "--repeat", "1", "--no-torch", "--json", out_json]) == 0
    err = capsys.readouterr().err
    assert "0 records apply" in err and "not in this model" in err
    rows = {r["name"]: r for r in json.load(open(out_json))["rows"]}
    assert rows["kiln tuned"]["max_abs_err_vs_ort"] < 1e-4


def test_log_of_another_target_is_ignored(model_path, tuned_log, capsys, tmp_path):
    other = tmp_path / "cuda.json"
    with open(other, "w") as f:
        for line in open(tuned_log):
            rec = json.loads(line)
            rec["target"] = "cuda"
            f.write(json.dumps(rec) + "\n")
    assert main(["compile", model_path, "--log", str(other), "-o",
                 str(tmp_path / "t.so")]) == 0
    err = capsys.readouterr().err
    assert "6 records for other targets (cuda) are ignored" in err


def test_resume_and_transfer(model_path, tuned_log, capsys, tmp_path):
    import shutil
    log = str(tmp_path / "again.json")
    shutil.copy(tuned_log, log)
    assert main(["tune", model_path, "--trials", "2", "--per-round", "2", "--log", log]) == 0
    assert "resumed 6 measured records" in capsys.readouterr().err
    assert len(open(log).read().splitlines()) == 8
    # a second model (another shape) warm-starts its cost model from the first log
    log2 = str(tmp_path / "seq8.json")
    assert os.path.exists(tuned_log + ".model.npz")
    assert main(["tune", "--builtin", "bert-tiny", "--seq-len", "8", "--trials", "2",
                 "--per-round", "2", "--log", log2, "--transfer-from", tuned_log]) == 0
    assert "warm-started from" in capsys.readouterr().err
    assert main(["tune", model_path, "--trials", "1", "--log", log2,
                 "--transfer-from", str(tmp_path / "none.json")]) == 2
    assert "no cost model file" in capsys.readouterr().err


@pytest.mark.skipif(not __import__("kiln").target.Target("cpu").has("avx512bf16"),
                    reason="needs AVX512-BF16")
def test_bf16_tune_and_compile(model_path, tmp_path):
    """--dtype bf16: the bf16 build's tasks are tuned, and compile uses their records."""
    import kiln
    log = str(tmp_path / "bf16.json")
    assert main(["tune", model_path, "--dtype", "bf16", "--trials", "4", "--per-round", "2",
                 "--log", log]) == 0
    assert len(open(log).read().splitlines()) == 4
    out = str(tmp_path / "bf16.so")
    assert main(["compile", model_path, "--dtype", "bf16", "--log", log, "-o", out]) == 0
    lib = kiln.graph.load(out)
    assert "kiln_dot2_bf16" in lib.source
    ids = np.random.default_rng(0).integers(0, 100, (1, 16)).astype(np.int64)
    (res,) = lib.run(input_ids=ids).values()
    assert res.dtype == np.float32 and np.isfinite(res).all()
