"""The GPU matmul's static model and default tiles (no GPU, no NVRTC needed): which panels are
padded, shared-memory bank wavefronts, conflict-free pads, and default tiles that fill the
machine with float4 fetches."""

import pytest
import workloads

import kiln
from kiln import te
from kiln.codegen import cuda as cuda_codegen
from kiln.topi import cuda as tc
from kiln.topi import cuda_model as cm


def test_only_k_contiguous_panels_are_padded_and_default_tiles_fetch_float4():
    """C = A B^T: both panels are read along their columns, rows padded to an odd stride
    (17). C = A B: B's panel is read along its rows, left unpadded (16-byte aligned rows:
    float4 shared loads). Split-K (the reduction index is k_0 * 64 + k_1) still pads. The
    default tiles of BERT-base's dense shapes fetch 4 floats per thread."""
    def shared(nn, splitk=1):
        a = te.placeholder((64, 128), name="a")
        b = te.placeholder((128, 64) if nn else (64, 128), name="b")
        r = te.reduce_axis((0, 128), name="r")
        c = te.compute((64, 64), lambda i, j: te.sum(a[i, r] * (b[r, j] if nn else b[j, r]),
                                                     axis=r), name="c")
        s = te.create_schedule(c.op)
        tc.schedule_matmul(s, c, tm=2, tn=4, tx=8, ty=4, bk=16, splitk=splitk)
        src = cuda_codegen.render(kiln.lower(s, [a, b, c]), "cuda -arch=sm_90")
        return sorted(x.split("float ")[1] for x in src.splitlines() if "__shared__ __align__" in x)
    assert shared(False) == ["a_shared[135];", "b_shared[543];"]
    assert shared(False, splitk=2) == ["a_shared[135];", "b_shared[543];"]
    assert shared(True) == ["a_shared[135];", "b_shared[512];"]
    for m, n, k in ((128, 768, 768), (128, 2304, 768), (128, 3072, 768), (128, 768, 3072)):
        (_, _), (c,), _ = workloads.matmul(m, n, k)
        assert tc.matmul_tiles(c)["vec"] == 4


def test_bank_model_and_conflict_free_pads():
    """The static model: a warp of 8 lanes reading 8-row float4 tiles 128 words apart hits one
    bank group 8 times; padded rows (17) leave 2-way (tn = 8 cannot do better), 4-row tiles
    none. conflict_free_pad: 1 for 4-row tiles, 2 for 2-row tiles, 4 for single rows."""
    assert cm.lds_wavefronts(8, 128, 4) == 8 and cm.lds_wavefronts(8, 136, 4) == 2
    assert cm.lds_wavefronts(8, 68, 4) == 1 and cm.lds_wavefronts(16, 68, 4) == 2
    assert [cm.conflict_free_pad(t, 16) for t in (1, 2, 4, 8)] == [4, 2, 1, 1]
    for t in (1, 2, 4):
        pad = cm.conflict_free_pad(t, 16)
        _, wf = cm.panel_reads(t, 8, 16, pad, True)
        n, _ = cm.panel_reads(t, 8, 16, pad, True)
        assert wf == n and n <= t * 16 // 4 + 1  # one wavefront per float4 load
    seed = (1, 128, 3072, 768)
    unpadded = dict(tm=8, tn=8, tx=8, ty=8, bk=16, pad=0, vec=4, splitk=1)
    assert cm.matmul_estimate(seed, unpadded)["wavefronts_per_kstep"] == 384
    assert cm.matmul_estimate(seed, dict(unpadded, pad=1))["wavefronts_per_kstep"] == 102
    small = dict(tm=4, tn=4, tx=16, ty=8, bk=16, pad=0, vec=4, splitk=1)
    assert cm.matmul_estimate(seed, small)["wavefronts_per_kstep"] == 288
    assert cm.matmul_estimate(seed, dict(small, pad=1))["wavefronts_per_kstep"] == 51


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_default_tiles_fill_the_machine_conflict_free(arch):
    """BERT-base's dense shapes and the seed GEMM: the default tiles read shared memory
    without conflicts (every float4 read one wavefront per 8 lanes) and keep every SM of the
    target busy with about the same number of blocks (the SM count is the target's)."""
    from kiln.target import Target
    target = Target(f"cuda -arch={arch}")
    for m, n, k in ((128, 768, 768), (128, 2304, 768), (128, 3072, 768), (128, 768, 3072)):
        (_, _), (c,), _ = workloads.matmul(m, n, k)
        cfg = tc.matmul_tiles(c, target)
        est = cm.matmul_estimate((1, m, n, k), cfg, target)
        assert est["bank_ways_a"] == 1 and est["bank_ways_b"] <= 2, (m, n, k, cfg)
        assert est["blocks"] >= target.sm_count and est["sm_balance"] >= 0.7, (cfg, est)
        assert cfg["vec"] == 4
