"""Kernels over tensors of 2**31 elements or more use 64-bit index arithmetic and loop
counters (chosen per kernel: small kernels keep 32-bit), checked on sparse memory-mapped
arrays so the test needs little memory and time."""

import numpy as np
import pytest

import kiln
from kiln import te, topi

BIG = 2 ** 31 + 64


@pytest.fixture
def big_u8(tmp_path):
    """A sparse file of BIG uint8 zeros, a few nonzeros beyond 2**31."""
    arr = np.memmap(tmp_path / "big.u8", dtype=np.uint8, mode="w+", shape=(BIG,))
    arr[2 ** 31 + 5] = 7
    arr[BIG - 1] = 3
    arr[17] = 1
    return arr


def test_reduction_over_more_than_int32_elements(big_u8):
    a = te.placeholder((BIG,), name="a", dtype="uint8")
    k = te.reduce_axis((0, BIG), name="k")
    s_ = te.compute((1,), lambda i: te.sum(a[k].astype("int64"), axis=k), name="s")
    sch = te.create_schedule(s_.op)
    f = kiln.build(sch, [a, s_], target="cpu")
    assert "int64_t k" in f.source
    out = np.zeros(1, "int64")
    f(np.asarray(big_u8), out)
    assert out[0] == 11


def test_gather_from_a_table_beyond_int32_offsets(tmp_path):
    rows, cols = 70000, 70000  # 4.9e9 elements: row 69999 starts past 2**32
    table = np.memmap(tmp_path / "table.u8", dtype=np.uint8, mode="w+", shape=(rows, cols))
    table[69999, :8] = np.arange(1, 9, dtype=np.uint8)
    t = te.placeholder((rows, cols), name="t", dtype="uint8")
    idx = te.placeholder((2,), name="idx", dtype="int64")
    out = te.compute((2, 8), lambda i, j: topi.take(t, idx, axis=0)[i, j], name="out")
    f = kiln.build(te.create_schedule(out.op), [t, idx, out], target="cpu")
    got = np.zeros((2, 8), "uint8")
    f(np.asarray(table), np.array([69999, 0], "int64"), got)
    np.testing.assert_array_equal(got[0], np.arange(1, 9))
    np.testing.assert_array_equal(got[1], 0)


def test_small_kernels_keep_32_bit_indices():
    a = te.placeholder((64, 64), name="a")
    b = te.compute((64, 64), lambda i, j: a[j, i], name="b")
    f = kiln.build(te.create_schedule(b.op), [a, b], target="cpu")
    assert "int64_t" not in f.source.split("int32_t b(")[-1].split("_packed")[0]
