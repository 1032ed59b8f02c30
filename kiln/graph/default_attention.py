"""The CPU schedule of a fused attention group: softmax(q @ k^T [scale, mask]) @ v in one kernel.

In: a ComputeDAG made by fuse's rule 4 (the output a product over the keys that reads the
softmax; the softmax reads a product over the head dim) and a CPU Target.
Out: a complete State, or None when the DAG is not of that form. Per batch index (head) k is
packed once, key-contiguous; then, in parallel over blocks of `rows` query rows:
  scores   a rows x keys block, register tiles of up to 4 vectors over the keys (an edge tile
           where they do not divide the keys), accumulated over the head dim;
  softmax  max, exp and sum of the block's rows (vector lanes, then a horizontal combine),
           the scale / mask epilogue inlined into them;
  output   a rows x head-dim register tile accumulated over all keys from the probabilities.
The score and probability blocks (rows x keys floats each) stay in L1/L2, so nothing of the
keys x keys score matrix goes through memory.
Why a rule-based schedule, not a search: the sketches have no rule for two data-reuse
reductions computed inside a third stage's loop, so graph.tasks does not offer these groups
for tuning; Whisper's attention, 22 ms per layer in three kernels, takes 20 ms this way.
"""

from __future__ import annotations

from ..auto_scheduler import analysis as A
from ..auto_scheduler.sketch import pack_input
from ..errors import KilnError
from ..target import Target
from ..te import expr as E

__all__ = ["attention_schedule", "is_attention"]

_SOFTMAX = ("softmax_maxelem", "softmax_exp", "softmax_expsum", "softmax_norm")
# vector registers a register tile holds (of AVX-512's 32): 4 rows x 4 vectors for both the
# scores (64 keys) and the output (head dim 64) measured fastest at 512, 1024 and 1500
# tokens (6 x 2 and 6 x 4: 7% to 20% slower, the score panel reloading q more often)
ACC_REGISTERS = 16


def _inlined(dag):
    """The initial state with every elementwise stage inlined except the softmax's and its
    input (the scale / mask epilogue of the scores: computed once per score as the scores
    are written, not again in the max and in the exp)."""
    state = dag.init_state()
    maxelem = next(op for op in dag.ops if op.name == "softmax_maxelem")
    keep = set(_SOFTMAX) | {t.op.name for t in maxelem.input_tensors}
    for si in range(len(state.stages)):
        st = state.stages[si]
        if A.is_strict_inlinable(state, si) and st.name not in keep:
            state = state.compute_inline(st.op)
    return state


def _match(dag):
    """(inlined state, (scores, the softmax's input: the scores or their epilogue, output))
    of an attention DAG, or None."""
    if not set(_SOFTMAX) <= {op.name for op in dag.ops}:
        return None
    state = _inlined(dag)
    parts = _parts(state)
    return None if parts is None else (state, parts)


def _parts(state):
    out = state.stages[-1]
    if not out.compute or len(out.compute.reduce_axis) != 1 or len(out.compute.axis) < 3:
        return None
    reds = [st for st in state.stages if st.compute and st.compute.reduce_axis and
            st.name not in _SOFTMAX and st is not out]
    if len(reds) != 1 or len(reds[0].compute.axis) != len(out.compute.axis):
        return None
    src = state.stage("softmax_maxelem").op.input_tensors[0].op
    epi = state.stage(src)
    if epi is not reds[0] and (epi.is_placeholder or epi.compute.reduce_axis or
                               len(epi.compute.axis) != len(out.compute.axis)):
        return None
    return reds[0], epi, out


def is_attention(dag) -> bool:
    """Whether `dag` is a fused attention group (fuse's rule 4)."""
    return _match(dag) is not None


def _rows_per_block(rows: int, head_dim: int, lanes: int) -> int:
    """Query rows per block: the output tile (rows x head_dim) within ACC_REGISTERS vectors,
    a divisor of the rows when one is close (no edge block)."""
    most = max(1, min(8, ACC_REGISTERS // -(-head_dim // lanes)))
    near = [d for d in range(most, 0, -1) if rows % d == 0]
    return near[0] if near and 2 * near[0] >= most else most


def attention_schedule(dag, target: Target):
    """The State described in the module docstring, or None for another kind of DAG."""
    found = _match(dag)
    if found is None:
        return None
    state, parts = found
    scores, epi, out = (p.op for p in parts)
    lanes = target.vector_lanes("float32")
    rows, dim = (int(a.extent.value) for a in out.axis[-2:])
    try:
        r = _rows_per_block(rows, dim, lanes)
        panel = lanes * min(4, max(1, ACC_REGISTERS // r))
        return _schedule(state, scores, epi, out, len(out.axis) - 2, r, panel)
    except KilnError:
        return None


def _keys_input(state, S):
    """(placeholder op, dim) that the scores read along the keys in a dim that is not their
    contiguous one (k itself, or a transposing view of it), or None."""
    key = S.axis[-1]
    for n in E.walk(state.stage(S).compute.body):
        if isinstance(n, E.TensorLoad) and state.stage(n.tensor.op).is_placeholder:
            dims = [d for d, i in enumerate(n.indices) if key in E.free_vars(i)]
            if dims and dims[0] != len(n.indices) - 1:
                return n.tensor.op, dims[0]
    return None


def _schedule(state, S, epi, out, nb: int, r: int, panel: int):
    keys = _keys_input(state, S)
    if keys is not None:  # k packed key-contiguous, once per batch index (placed below)
        state = pack_input(state, S, *keys, whole=True)
    # output: per block of r rows, a register tile accumulated over every key
    state = state.cache_write(out, "local")
    OL = state.stages[state.stage_index(out) - 1].op
    if nb > 1:
        state = state.fuse(out, list(range(nb)))
    batch, row, col = (it.name for it in state.stage(out).iters)
    state = state.split(out, row, [r])
    state = state.reorder(out, [batch, row + ".0", row + ".1", col])
    state = state.parallel(out, row + ".0").vectorize(out, col)
    state = state.compute_at(OL, out, row + ".0")
    ol = [it.name for it in state.stage(OL).iters]  # batch..., row, col, key
    state = state.reorder(OL, ol[:nb] + [ol[-1]] + ol[nb:-1])
    state = state.unroll(OL, ol[nb]).vectorize(OL, ol[nb + 1])
    # scores: 2-vector panels over the keys, each accumulated in registers and written
    # through the epilogue (or a plain copy when there is none)
    acc = S
    if epi is S:
        state = state.cache_write(S, "local")
        acc = state.stages[state.stage_index(S) - 1].op
    si = [it.name for it in state.stage(epi).iters]  # batch..., row, key
    state = state.split(epi, si[-1], [panel])
    state = state.reorder(epi, si[:nb] + [si[-1] + ".0", si[-2], si[-1] + ".1"])
    state = state.vectorize(epi, si[-1] + ".1").unroll(epi, si[-2])
    state = state.compute_at(acc, epi, si[-1] + ".0")
    sl = [it.name for it in state.stage(acc).iters]  # batch..., row, key, head dim
    state = state.reorder(acc, sl[:nb] + [sl[-1]] + sl[nb:-1])
    state = state.unroll(acc, sl[nb]).vectorize(acc, sl[nb + 1])
    # the block's softmax, and its scores, inside the row-block loop
    for name in reversed(_SOFTMAX):
        state = state.compute_at(state.stage(name).op, out, row + ".0")
    state = state.compute_at(epi, out, row + ".0")
    for st in [st for st in state.stages if st.origin == "cache_read"]:
        state = state.compute_at(st.op, out, batch)
        last = state.stage(st.op).iters[-1]
        if last.extent <= 64:
            state = state.vectorize(st.op, last.name)
    return _vector_rows(state, panel)


def _vector_rows(state, panel: int):
    from .default_schedule import lane_rfactor
    for name in ("softmax_exp", "softmax_norm"):
        last = state.stage(name).iters[-1].name
        state = state.split(name, last, [panel]).vectorize(name, last + ".1")
    for name in ("softmax_expsum", "softmax_maxelem"):
        # partial results over half a panel: two to four vector accumulators per row
        state = lane_rfactor(state, state.stage_index(name), panel // 2)
    return state
