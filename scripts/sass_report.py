"""Static SASS report of the CUDA kernels kiln generates (no GPU needed).

Compiles for `cuda -arch=sm_90` the seed GEMM (128x3072x768, C = A B^T) with every hand
schedule benchmarks/gemm_gpu.py sweeps, and the default schedules of BERT-base's fused groups
(kiln.graph.build of the builtin bert-base), disassembles the cubins with cuobjdump and prints
per kernel: registers, spill / stack bytes (ptxas), and the instruction mix of the hottest loop
(the innermost loop with the most floating-point instructions; the whole kernel when it has no
loop): FFMA, LDS / LDG / STS by width, BAR, LDL / STL, integer and address instructions, and
the FFMA share of the loop; the launch shape from the source (grid, blocks, blocks on the
busiest SM of an sm_90's 132); and for the seed GEMM configs the static model of
kiln.topi.cuda_model.matmul_estimate (LDS wavefronts per warp and k-step with bank conflicts,
warps on the busiest SM scheduler, predicted microseconds at 1.755 GHz).

    python scripts/sass_report.py [--no-bert] [--no-gemm] [--tools DIR] [--dump DIR]

cuobjdump comes from the `nvidia-cuda-cuobjdump` wheel (pip download --no-deps, unzip) or a
CUDA toolkit: on PATH, in --tools DIR, or under $CUDA_HOME/bin.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
TARGET = "cuda -arch=sm_90"
INT_OPS = {"IMAD", "IADD3", "LEA", "SHF", "LOP3", "ISETP", "IABS", "IMNMX", "SEL", "SGXT",
           "UIADD3", "UIMAD", "ULEA", "USHF", "ULOP3", "UISETP", "VIADD", "IADD", "PRMT"}
FP_OPS = {"FFMA", "FADD", "FMUL", "FMNMX", "MUFU", "HMMA"}
_INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")


def find_cuobjdump(tools: str | None) -> str | None:
    dirs = [tools] if tools else []
    dirs += [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin")]
    dirs += glob.glob("/tmp/*/nvidia/cu*/bin") + glob.glob(
        os.path.join(sys.prefix, "lib", "python*", "site-packages", "nvidia", "cu*", "bin"))
    for d in dirs:
        if d and os.access(os.path.join(d, "cuobjdump"), os.X_OK):
            return os.path.join(d, "cuobjdump")
    return shutil.which("cuobjdump")


def sass_functions(tool: str, cubin: str) -> dict:
    """{kernel name: [(address, opcode, operands)]} of every function in the cubin."""
    text = subprocess.run([tool, "-sass", cubin], capture_output=True, text=True,
                          check=True).stdout
    funcs, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = _INS.search(line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def hot_loop(ins: list) -> tuple:
    """(instructions of the innermost loop with the most FP instructions, loop found?)."""
    loops = []
    for i, (addr, op, args) in enumerate(ins):
        m = re.match(r"(?:`\(\.L_x_\d+\)|0x([0-9a-f]+))", args.strip())
        if op.startswith("BRA") and m and m.group(1) and int(m.group(1), 16) < addr:
            start = next(j for j, x in enumerate(ins) if x[0] >= int(m.group(1), 16))
            loops.append(ins[start:i + 1])
    if not loops:
        return ins, False
    fp = lambda body: sum(op.split(".")[0] in FP_OPS for _, op, _ in body)
    return max(loops, key=lambda body: (fp(body), -len(body))), True


def width(op: str) -> str:
    w = next((p for p in op.split(".")[1:] if p in ("64", "128", "U8", "S8", "U16", "S16")),
             "32")
    return op.split(".")[0] + ("" if w == "32" else "." + w)


def mix(body: list) -> Counter:
    c = Counter()
    for _, op, _ in body:
        base = op.split(".")[0]
        if base in ("NOP",):
            continue
        c["all"] += 1
        if base in ("LDS", "LDG", "STS", "STG", "LDL", "STL"):
            c[width(op)] += 1
        elif base in ("FFMA", "BAR", "FADD", "FMUL", "HMMA"):
            c[base] += 1
        elif base in INT_OPS or op.startswith("IMAD"):
            c["int"] += 1
    return c


def load_use(body: list) -> int | None:
    """Fewest instructions between a global load in the loop and the first instruction that
    reads its register (around the loop): the latency the loop can hide without other warps."""
    best = None
    for i, (_, op, args) in enumerate(body):
        m = re.match(r"(R\d+)\b", args.strip())
        if not op.startswith("LDG") or not m:
            continue
        for d in range(1, len(body)):
            _, op2, args2 = body[(i + d) % len(body)]
            srcs = args2 if op2.startswith(("ST", "RED", "ATOM")) else args2.partition(",")[2]
            if re.search(rf"\b{m.group(1)}\b", srcs):
                best = d if best is None else min(best, d)
                break
    return best


def grids(source: str) -> dict:
    """{kernel name: blocks} from the `// grid (x, y, z), block (...)` line above each kernel."""
    out, blocks = {}, None
    for line in source.splitlines():
        m = re.match(r"// grid \((\d+), (\d+), (\d+)\)", line)
        if m:
            blocks = int(m.group(1)) * int(m.group(2)) * int(m.group(3))
        m = re.search(r"__global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(", line)
        if m and blocks is not None:
            out[m.group(1)] = blocks
    return out


def report(tool: str, cubin: str, label: str, source: str = "", model: str = "") -> None:
    from kiln.codegen.nvrtc import ptxas_info
    from kiln.target import Target
    info = ptxas_info(cubin)
    blocks = grids(source)
    sms = Target(TARGET).sm_count
    if model:
        print(model)
    for name, ins in sass_functions(tool, cubin).items():
        r = info.get(name, {})
        body, looped = hot_loop(ins)
        c = mix(body)
        keys = sorted(k for k in c if k[:3] in ("LDS", "LDG", "STS", "STG", "LDL", "STL"))
        share = c["FFMA"] / max(c["all"], 1)
        print(f"{label:8} {name[:48]:48} regs {r.get('registers', '?'):>3} "
              f"spill {r.get('spill_stores', 0)}/{r.get('spill_loads', 0)} "
              f"stack {r.get('stack', 0)} | {'loop' if looped else 'kern'} {c['all']:4} ins: "
              f"FFMA {c['FFMA']} ({share:.0%}) " + " ".join(f"{k} {c[k]}" for k in keys) +
              f" BAR {c['BAR']} int {c['int']} FADD/FMUL {c['FADD']}/{c['FMUL']} "
              f"ldg->use {load_use(body) if looped else '-'}" +
              (f" | blocks {blocks[name]} busiest-SM {-(-blocks[name] // sms)}"
               if name in blocks else ""))


def gemm_cubins() -> list:
    import gemm_gpu as g

    import kiln
    from kiln import te
    from kiln.topi import cuda as tc
    from kiln.topi import cuda_model as cm
    out = []
    for cfg, mma in [(c, 0) for c in g.CONFIGS] + [(c, 1) for c in g.MMA_CONFIGS]:
        tm, tn, tx, ty, bk, pad, vec, splitk, dbuf = cfg
        a, b, c = g.workload(False)
        s = te.create_schedule(c.op)
        tc.schedule_matmul(s, c, tm=tm, tn=tn, tx=tx, ty=ty, bk=bk, pad=pad, vec=vec,
                           splitk=splitk, dbuf=dbuf, mma=mma)
        f = kiln.build(s, [a, b, c], target=TARGET)
        e = cm.matmul_estimate((1, g.M, g.N, g.K), dict(tm=tm, tn=tn, tx=tx, ty=ty, bk=bk,
                                                        pad=int(pad), vec=vec, splitk=splitk,
                                                        serial=1, dbuf=dbuf, mma=mma), TARGET)
        model = (f"  model: blocks {e['blocks']} busiest-SM {e['busiest_sm_blocks']} warps/SMSP "
                 f"{e['warps_per_smsp']} | per warp and k-step: {e['instr_per_kstep']:.0f} ins, "
                 f"{'HMMA' if mma else 'FFMA'} {e['ffma_share']:.0%}, "
                 f"LDS {e['lds_per_kstep']} -> "
                 f"{e['wavefronts_per_kstep']} wavefronts (ways A {e['bank_ways_a']:.0f} B "
                 f"{e['bank_ways_b']:.0f}) | cycles issue {e['issue']:.0f} LDS {e['lds']:.0f} "
                 f"L2 {e['l2']:.0f} tensor {e['tensor']:.0f} -> {e['cycles'] / 1755:.1f} us")
        name = "mm" + "".join(map(str, (tm, tn, tx, ty, bk))) + \
            f"{'p' + str(int(pad)) if pad else ''}v{vec}k{splitk}{'d' if dbuf else ''}" \
            f"{'tc' if mma else ''}"
        out.append((f.cubin_path, name, f.source, model))
    return out


def bert_cubin() -> tuple:
    import kiln.graph
    from kiln.graph.frontend import from_onnx
    from kiln.models import builtin
    _, proto, _ = builtin("bert-base", 128)
    lib = kiln.graph.build(*from_onnx(proto), target=TARGET)
    return lib.lib_path, "bert", lib.source, ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tools", help="folder holding cuobjdump")
    p.add_argument("--no-bert", action="store_true")
    p.add_argument("--no-gemm", action="store_true")
    p.add_argument("--dump", help="write each cubin's CUDA source and SASS into this folder")
    args = p.parse_args()
    tool = find_cuobjdump(args.tools)
    if tool is None:
        print("sass_report: cuobjdump not found (pip download --no-deps nvidia-cuda-cuobjdump, "
              "unzip it, pass --tools DIR); nothing to report")
        return
    builds = ([] if args.no_gemm else gemm_cubins()) + ([] if args.no_bert else [bert_cubin()])
    for cubin, label, source, model in builds:
        report(tool, cubin, label, source, model)
        if args.dump:
            os.makedirs(args.dump, exist_ok=True)
            Path(args.dump, f"{label}.cu").write_text(source)
            sass = subprocess.run([tool, "-sass", cubin], capture_output=True, text=True).stdout
            Path(args.dump, f"{label}.sass").write_text(sass)


if __name__ == "__main__":
    main()
