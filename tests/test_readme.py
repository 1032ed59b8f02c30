"""Every ```python and ```bash block of README.md runs, in order, in one temporary folder.

Python blocks share one namespace (later blocks use earlier names, as a reader would); bash
blocks run with this environment's `kiln` on PATH. Sizes are cut down by a small table of
textual substitutions per block (each must still match the README, so the table cannot go
stale silently), plus a prelude for the names a block takes from the reader (`ids`, `model`).
Skipped: blocks of the "NVIDIA GPUs (CUDA)" section (tests/test_readme_gpu.py) and the quick
start's `bash scripts/...` lines (the benchmark and the test suite itself).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kiln.target import Target

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnx")

README = Path(__file__).parents[1] / "README.md"
SKIP_SECTIONS = ("NVIDIA GPUs (CUDA)",)
SMALL_MM = [("128, 3072, 768", "16, 64, 32"), ("(128, 768)", "(16, 32)"),
            ("(3072, 768)", "(64, 32)"), ("(128, 3072)", "(16, 64)")]
TUNE_FAST = [("bert-base", "bert-tiny"), ("--time-budget 15m", "--trials 2 --per-round 2"),
             ("--time-budget 5m", "--trials 2 --per-round 2")]

# (a text that identifies the block, [(old, new), ...], prelude run before the block)
TABLE = [
    ('@autotvm.template("tutorial/matmul")', [("(512, 512, 512,", "(32, 32, 32,"),
                                              ("n_trial=20", "n_trial=4"),
                                              ("XGBTuner(task)", "XGBTuner(task, plan_size=2)"),
                                              ("number=5", "number=1")], ""),
    ("def swish_mm", SMALL_MM + [("number=10, repeat=5", "number=1, repeat=1")], ""),
    ("s[relu6_stage].compute_inline()", [], ""),
    ("M, N, K = 128, 3072, 768", [("128, 3072, 768", "32, 64, 32"),
                                  ("num_measure_trials=1000", "num_measure_trials=4")], ""),
    ('onnx.load("bert.onnx")', [('(1, 128)', "(1, 16)")],
     "ids = np.random.default_rng(0).integers(0, 100, (1, 16))\n"),
    ("variants = [", [('"attention_mask": (1, n)', ""), ("(32, 64, 128)", "(16, 32)"),
                      ("attention_mask=mask64", ""), ("ids64", "ids32")],
     'model = onnx.load("bert.onnx")\n'
     "ids32 = np.random.default_rng(0).integers(0, 100, (1, 32))\n"),
    ('backend="kiln"', [], "import torch\nfrom graph.models import tiny_bert\n"
                          "model, (input_ids,) = tiny_bert()\n"),
    ("kiln tune bert.onnx", [("--trials 3000", "--trials 2 --per-round 2"),
                             ("kiln bench bert.onnx --log bert.json",
                              "kiln bench bert.onnx --log bert.json --repeat 1 --no-torch"),
                             ("bert.onnx --", "bert.onnx --shape input_ids=1,16 --")]
     + TUNE_FAST[:2], ""),
    ("--transfer-from bert128.json", TUNE_FAST, ""),
    ("kiln tune --dtype bf16", [("--trials 3000", "--trials 2 --per-round 2"),
                                ("bench --dtype bf16 bert.onnx --log bert_bf16.json",
                                 "bench --dtype bf16 bert.onnx --log bert_bf16.json "
                                 "--repeat 1 --no-torch"),
                                ("bf16 bert.onnx --", "bf16 bert.onnx --shape input_ids=1,16 --")],
     ""),
    ('onnx.load("bert-int8.onnx")', [('(1, 128)', "(1, 16)")], ""),
    ('"bert-static.onnx"', [('(1, 128)', "(1, 16)")], ""),
    ("kiln tune --dtype int8", [("--trials 3000", "--trials 2 --per-round 2"),
                                ("bench --dtype int8 bert.onnx --log bert_q.json",
                                 "bench --dtype int8 bert.onnx --log bert_q.json "
                                 "--repeat 1 --no-torch"),
                                ("int8 bert.onnx --", "int8 bert.onnx --shape input_ids=1,16 --")],
     ""),
    ("kiln tune bert-int8.onnx", [("--trials 2000", "--trials 2 --per-round 2"),
                                  ("kiln bench bert-int8.onnx --log bert_int8.json",
                                   "kiln bench bert-int8.onnx --log bert_int8.json --repeat 1 "
                                   "--no-torch"),
                                  ("bert-int8.onnx --",
                                   "bert-int8.onnx --shape input_ids=1,16 --")],
     ""),
    ("relay.frontend.from_onnx", [('(1, 128)', "(1, 16)"), ("num_measure_trials=200",
                                   "num_measure_trials=2"), ("repeat=10", "repeat=1"),
                                  ("min_repeat_ms=500", "min_repeat_ms=5")],
     'model_path = "bert.onnx"\n'),
    ("relay.frontend.from_pytorch", [('(1, 128)', "(1, 16)")],
     "from graph.models import tiny_bert\ntorch_model, (example_ids,) = tiny_bert()\n"),
    ("kiln.nd.to_bfloat16(np.random", [("(128, 768)", "(16, 32)"), ("(3072, 768)", "(64, 32)"),
                                       ("(128, 3072)", "(16, 64)"), ("(0, 768)", "(0, 32)")],
     ""),
]
HAS_BF16 = Target("cpu").has("avx512bf16")
HAS_VNNI = Target("cpu").has("avx512vnni")


def readme_blocks() -> list:
    """[(section title, language, code)] of README.md, in order."""
    out, section = [], ""
    for m in re.finditer(r"^## ([^\n]*)$|^```(python|bash)\n(.*?)^```", README.read_text(),
                         re.M | re.S):
        if m.group(1):
            section = m.group(1).strip()
        else:
            out.append((section, m.group(2), m.group(3)))
    return out


def prepared(code: str) -> tuple[str, str]:
    """(prelude, code with its substitutions) of one block."""
    hits = [(subs, pre) for key, subs, pre in TABLE if key in code]
    assert len(hits) <= 1, f"two table entries match the block:\n{code}"
    subs, pre = hits[0] if hits else ([], "")
    for old, new in subs:
        assert old in code, f"README block changed; {old!r} is gone from:\n{code}"
        code = code.replace(old, new)
    return pre, code


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding bert.onnx (a tiny random BERT, dynamic axes) and an empty bert.json,
    the files the README assumes."""
    from graph.models import export_onnx, tiny_bert
    d = tmp_path_factory.mktemp("readme")
    model, args = tiny_bert()
    export_onnx(model, args, str(d / "bert.onnx"), dynamic=True)  # imported at several lengths
    (d / "bert.json").write_text("")
    return d


def _run_bash(code: str, cwd: Path) -> None:
    lines = [ln for ln in code.splitlines() if not ln.strip().startswith("bash scripts/")]
    if not any(ln.strip() for ln in lines):
        return
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep +
               os.environ.get("PATH", ""))
    out = subprocess.run(["bash", "-e", "-c", "\n".join(lines)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{code}\n{out.stderr[-3000:]}"


def test_every_readme_block_runs(workdir, monkeypatch, capsys):
    """capsys keeps the blocks' prints (C sources, tables) out of the test output."""
    monkeypatch.chdir(workdir)
    namespace: dict = {"np": np}
    ran = 0
    for section, lang, code in readme_blocks():
        if section in SKIP_SECTIONS:
            continue
        pre, code = prepared(code)
        if "--dtype bf16" in code and not HAS_BF16 or "--dtype int8" in code and not HAS_VNNI:
            continue  # a TargetError on CPUs without AVX512-BF16 / -VNNI, as documented
        if lang == "bash":
            _run_bash(code, workdir)
        else:
            exec(compile(pre + code, f"README.md ({section})", "exec"), namespace)
        ran += 1
    assert ran >= 9
    assert os.path.exists(workdir / "bert.so") and os.path.exists(workdir / "bert64.json")


def test_every_auto_scheduler_name_of_the_readme_is_exported():
    """`auto_scheduler.X` anywhere, and the classes called in code spans of the
    auto-scheduling and command-line sections (`SketchPolicy(task, RandomModel())`)."""
    import kiln.auto_scheduler as ansor
    text = README.read_text()
    names = set(re.findall(r"auto_scheduler\.([A-Za-z_]\w*)", text))
    for title in ("Auto-scheduling", "Command line"):
        section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
        for span in re.findall(r"`([^`\n]+)`", section):
            names |= set(re.findall(r"\b([A-Z]\w+)\(", span))
    assert {"TaskScheduler", "SketchPolicy", "RandomModel"} <= names
    missing = sorted(n for n in names if not hasattr(ansor, n)
                     and importlib.util.find_spec(f"kiln.auto_scheduler.{n}") is None)
    assert not missing, f"README names missing from kiln.auto_scheduler: {missing}"
