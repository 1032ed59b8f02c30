"""Damaged files: a truncated library in the compile cache is rebuilt; exported libraries and
models are verified against their manifest (another model's .so, edited metadata, a write cut
short); records that do not replay, carry impossible costs or nest too deeply are skipped;
a truncated cost model file is a clear error."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from rel_kernels import matmul_task

import kiln
from kiln import te
from kiln.auto_scheduler import ApplyHistoryBest, load_records
from kiln.auto_scheduler.cost_model import XGBModel
from kiln.auto_scheduler.measure.record import Record
from kiln.codegen import toolchain
from kiln.codegen.c import render
from kiln.errors import KilnError
from kiln.graph import Graph, Node, build, load
from kiln.runtime.module import load_module
from kiln.tir.lower import lower

F = "float32"


def _graph(width: int, name: str) -> Graph:
    rng = np.random.default_rng(width)
    x = Node("input", [], {"name": "x"}, (4, width), F)
    w = Node("const", [], {"name": "w"}, (8, width), F)
    y = Node("dense", [x, w], {}, (4, 8), F, name="y")
    return Graph([x], [y], {"w": rng.standard_normal((8, width)).astype(F)}, name=name)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    a = build(_graph(16, "a"), target="cpu").export_library(str(d / "a.so"))
    b = build(_graph(32, "b"), target="cpu").export_library(str(d / "b.so"))
    return a, b


def _copy_model(src: str, dst: str) -> str:
    for suffix in ("", ".json", ".params.npz", ".manifest.json"):
        shutil.copyfile(src + suffix, dst + suffix)
    return dst


def test_a_truncated_library_in_the_compile_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    task = matmul_task()
    src = render(lower(task.compute_dag.init_state(), task.args), task.target)
    lib = toolchain.compile(src, "cpu")  # not loaded here: a mapped file must not shrink
    size = os.path.getsize(lib)
    with open(lib, "r+b") as f:
        f.truncate(size // 2)  # a full disk or a killed copy
    with pytest.warns(UserWarning, match="does not match its checksum"):
        again = toolchain.compile(src, "cpu")
    assert again == lib and os.path.getsize(lib) == size
    a, b = (np.ones((16, 8), F) for _ in range(2))
    c = np.empty((16, 16), F)
    load_module(lib)(a, b, c)
    np.testing.assert_allclose(c, a @ b.T)


def test_another_models_library_under_this_name_is_refused(exported, tmp_path):
    a, b = exported
    path = _copy_model(a, str(tmp_path / "m.so"))
    shutil.copyfile(b, path)
    with pytest.raises(KilnError, match=r"m\.so is not the file exported with it"):
        load(path)


def test_edited_model_metadata_is_refused(exported, tmp_path):
    path = _copy_model(exported[0], str(tmp_path / "m.so"))
    meta = json.load(open(path + ".json"))
    meta["workspace_bytes"] = 1
    json.dump(meta, open(path + ".json", "w"))
    with pytest.raises(KilnError, match=r"m\.so\.json is not the file exported with it"):
        load(path)


def test_a_swapped_kernel_library_is_refused(tmp_path):
    task = matmul_task()
    mod = kiln.build(task.compute_dag.init_state(), task.args, target="cpu")
    path = mod.export_library(str(tmp_path / "k.so"))
    other = matmul_task(8)
    shutil.copyfile(kiln.build(other.compute_dag.init_state(), other.args).lib_path, path)
    with pytest.raises(KilnError, match="not the file exported with it"):
        load_module(path)


def test_an_export_cut_short_never_loads_half_written_files(exported, tmp_path, monkeypatch):
    path = _copy_model(exported[0], str(tmp_path / "m.so"))
    params = open(path + ".params.npz", "rb").read()

    def cut(f, **arrays):
        (f if hasattr(f, "write") else open(f, "wb")).write(b"PK\x03\x04 half")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", cut)
    with pytest.raises(KeyboardInterrupt):
        build(_graph(32, "b"), target="cpu").export_library(path)
    monkeypatch.undo()
    assert open(path + ".params.npz", "rb").read() == params
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    with pytest.raises(KilnError, match="not the file exported with it"):
        load(path)  # the new .so with the old parameters: refused, not run


def test_cuda_export_has_a_verified_manifest(tmp_path):
    from kiln.codegen import nvrtc
    if not nvrtc.available():
        pytest.skip("NVRTC is not installed")
    path = build(_graph(16, "a"), target="cuda -arch=sm_90").export_library(
        str(tmp_path / "a.cubin"))
    assert os.path.exists(path + ".manifest.json")
    meta = json.load(open(path + ".json"))
    meta["workspace_bytes"] = 1
    json.dump(meta, open(path + ".json", "w"))
    with pytest.raises(KilnError, match="not the file exported with it"):
        load(path)


# ---------------------------------------------------------------- records

def _task_and_log(tmp_path):
    """A task and a log with two ok records: a faster one whose steps do not replay (an
    out-of-range split on stage 9), then a slower valid one."""
    task = matmul_task()
    good = task.compute_dag.init_state().split(2, 1, [4])
    rec = Record(task.workload_key, str(task.target), [s.to_record() for s in good.steps],
                 [2e-5], "ok")
    bad = Record(**{**rec.__dict__, "steps": [["SP", 9, 0, 16, [4], 1]], "costs": [1e-5]})
    log = tmp_path / "log.json"
    log.write_text("".join(json.dumps(r.to_json()) + "\n" for r in (bad, rec)))
    return task, str(log), good


def test_a_record_that_does_not_replay_yields_to_the_next_best(tmp_path):
    task, log, good = _task_and_log(tmp_path)
    with pytest.warns(UserWarning, match="do not replay.*next best"):
        sch, args = task.apply_best(log)
    assert sch.state.record_key() == good.record_key()
    with ApplyHistoryBest(log), pytest.warns(UserWarning, match="do not replay"):
        f = kiln.build(te.create_schedule(task.args[-1].op), task.args, target="cpu")
    assert "for (int" in f.source and f.source != kiln.build(
        te.create_schedule(task.args[-1].op), task.args, target="cpu").source


@pytest.mark.parametrize("cost", [0.0, -1e-3, "nan", "inf"])
def test_a_record_with_an_impossible_cost_is_rejected(tmp_path, cost):
    task, log, _ = _task_and_log(tmp_path)
    lines = open(log).read().splitlines()
    obj = json.loads(lines[1])
    obj["costs"] = [float(cost)]
    open(log, "w").write(lines[1] + "\n" + json.dumps(obj) + "\n")
    with pytest.warns(UserWarning, match="positive finite costs"):
        recs = list(load_records(log))
    assert len(recs) == 1 and recs[0].costs == [2e-5]


def test_a_deeply_nested_record_line_is_skipped(tmp_path):
    task, log, _ = _task_and_log(tmp_path)
    with open(log, "a") as f:
        f.write("[" * 100000 + "]" * 100000 + "\n")
    with pytest.warns(UserWarning, match="nested too deeply"):
        assert len(list(load_records(log))) == 2


def test_a_truncated_cost_model_file_is_a_clear_error(tmp_path):
    model = XGBModel()
    model.update([np.ones((2, 4), np.float32)] * 8, list(range(1, 9)), ["k"] * 8)
    path = str(tmp_path / "log.json.model.npz")
    model.save(path)
    assert [n for n in os.listdir(tmp_path)] == ["log.json.model.npz"]
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(KilnError, match="log.json.model.npz is damaged"):
        XGBModel().load(path)
