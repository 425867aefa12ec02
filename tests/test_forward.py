"""Forward features (spec sections 3, 4.2, 6, 7) against the float64 reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import reference as ref
from problems import CountingAllocator, build, random_problem, run, slot_problem

import bnnslstm as bl

RTOL, ATOL = 1e-4, 2e-5


def check(built, filter_params=None):
    y, hn, cn = run(built, filter_params)
    ry, rhn, rcn = ref.forward(built.problem)
    if y is not None:
        np.testing.assert_allclose(y, ry, rtol=RTOL, atol=ATOL, err_msg="y")
    if hn is not None:
        np.testing.assert_allclose(hn, rhn, rtol=RTOL, atol=ATOL, err_msg="h_n")
    if cn is not None:
        np.testing.assert_allclose(cn, rcn, rtol=RTOL, atol=ATOL, err_msg="c_n")
    return y, hn, cn


@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("L", [1, 2, 3, 4])
@pytest.mark.parametrize("separate_wx1", [True, False])
@pytest.mark.parametrize("stacked", [False, True])
def test_stacks_and_directions(rng, bidir, L, separate_wx1, stacked):
    # D1/D2: iw_desc[1] holds layers >= 1 ([L-1][D][H][D*H]); without it, iw_desc[0] holds
    # every layer, which needs input_size == D*H.
    H = 4
    I = 2 * H if (bidir and not separate_wx1) else (H if not separate_wx1 else 3)
    p = random_problem(rng, I=I, H=H, N=3, L=L, S=6, bidir=bidir, separate_wx1=separate_wx1)
    check(build(p, stacked=stacked))


def test_article_pattern_same_descriptor_in_both_slots(rng):
    # Apple's article passes the same descriptor twice; with W1 == I that is all layers in [0].
    p = random_problem(rng, I=4, H=4, L=3, separate_wx1=False)
    check(build(p))


@pytest.mark.parametrize("N", [1, 5, 8, 9, 17])   # row tails of the 8-row kernel block
@pytest.mark.parametrize("stacked", [False, True])
def test_larger_odd_sizes(rng, N, stacked):
    # Sizes that are not multiples of a vector width, all features on.
    p = random_problem(rng, I=19, H=37, N=N, L=2, S=7, bidir=True, peephole="full", scale=0.2)
    check(build(p, stacked=stacked))


@pytest.mark.parametrize("bias", [[True] * 4, [False] * 4, [True, False, True, False],
                                  [False, False, False, True]])
def test_bias_per_gate(rng, bias):
    check(build(random_problem(rng, L=2, bidir=True, bias=bias)))


PEEPHOLE_CASES = [
    ["full"] * 4, ["diag"] * 4,
    ["full", None, None, None], [None, "full", None, None], [None, None, "full", None],
    [None, None, None, "full"], ["diag", None, None, "diag"], [None, None, "diag", None],
    ["full", "diag", None, "full"], ["diag", "full", "full", "diag"],
]


@pytest.mark.parametrize("peeps", PEEPHOLE_CASES)
@pytest.mark.parametrize("stacked", [False, True])
def test_peepholes_per_gate(rng, peeps, stacked):
    # D16 (candidate gate too), D18 (diagonal by layout); the output gate reads the new cell.
    check(build(random_problem(rng, H=5, L=2, bidir=True, peephole=peeps), stacked=stacked))


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("weight_layout", [0, "4D", "2D"])
def test_stacked_weights_strided_and_layouts(rng, strided, weight_layout):
    # A 2D (RowMajorMatrix) view of a gate inside a stack only folds for one (layer, direction).
    one = weight_layout == "2D"
    p = random_problem(rng, I=6, H=5, N=9, L=1 if one else 3, S=5, bidir=not one,
                       peephole="full")
    check(build(p, stacked=True, strided=strided, weight_layout=weight_layout))


def test_stacked_detection_is_not_fooled(rng):
    # Gates stacked but in the order i, g, f, o: not one block in struct order, so packed.
    p = random_problem(rng, I=4, H=3, N=2, L=2, S=4, peephole="full")
    built = build(p, stacked=True)
    g = built.params.gates
    (g[1].hw_desc, g[2].hw_desc) = (bl.NDArrayDescriptor.from_buffer_copy(bytes(g[2].hw_desc)),
                                    bl.NDArrayDescriptor.from_buffer_copy(bytes(g[1].hw_desc)))
    p.wh[1], p.wh[2] = p.wh[2], p.wh[1]
    check(built)


ELEMENTWISE = sorted(ref.ACTIVATIONS)


@pytest.mark.parametrize("fn", ELEMENTWISE)
@pytest.mark.parametrize("slot", ["input", "forget", "candidate", "output", "hidden"])
def test_every_activation_in_every_slot(rng, fn, slot):
    p = slot_problem(rng, fn, slot, H=6)
    check(build(p))


def test_all_custom_activations_bidirectional_stacked(rng):
    acts = [(2, 0.1, 0.0), (15, 0.2, 0.5), (5, 1.2, 0.8), (17, 0.0, 0.0)]
    p = random_problem(rng, L=2, bidir=True, acts=acts, hidden_act=(31, 0.0, 0.0))
    check(build(p))


def test_default_flag_overrides_activations(rng):
    # With DefaultActivations set, the struct's activations (even invalid ones) are ignored.
    p = random_problem(rng, L=2)
    built = build(p)
    for gate in built.params.gates:
        gate.activation = bl.Activation(function=bl.ActivationFunction.Softmax)
    built.params.hidden_activation = bl.Activation(function=bl.ActivationFunction.Identity)
    check(built)


def test_zero_filled_activation_is_identity(rng):
    # D14: flag clear and a zero-filled BNNSActivation means Identity, used literally.
    p = random_problem(rng, acts=[(0, 0.0, 0.0)] * 4, hidden_act=(0, 0.0, 0.0))
    built = build(p)
    for gate in built.params.gates:
        gate.activation = bl.Activation()
    built.params.hidden_activation = bl.Activation()
    check(built)


@pytest.mark.parametrize("x_layout,y_layout", list(itertools.product(["SNE", "NSE", 0], repeat=2)))
@pytest.mark.parametrize("strided", [False, True])
def test_data_layouts_and_strides(rng, x_layout, y_layout, strided):
    p = random_problem(rng, I=5, H=3, N=4, S=6, L=2, bidir=True, peephole="diag")
    check(build(p, x_layout=x_layout, y_layout=y_layout, strided=strided))


@pytest.mark.parametrize("weight_layout", [0, "4D", "2D"])
@pytest.mark.parametrize("state_layout", [0, "4D", "3D", "2D", "Vector"])
@pytest.mark.parametrize("strided", [False, True])
def test_weight_and_state_layouts(rng, weight_layout, state_layout, strided):
    # D3/D4: LastMajor layouts of any rank; lower ranks fold the outer dimensions.
    p = random_problem(rng, I=3, H=4, N=2, S=4, L=2, bidir=True, peephole="full")
    check(build(p, weight_layout=weight_layout, state_layout=state_layout, strided=strided))


@pytest.mark.parametrize("strided", [False, True])
def test_zero_sizes_are_filled_from_scalars(rng, strided):
    p = random_problem(rng, I=3, H=4, N=2, S=4, L=2, bidir=True, peephole="diag")
    check(build(p, zero_sizes=True, strided=strided))


@pytest.mark.parametrize("h0,c0", [(False, False), (True, False), (False, True), (True, True)])
def test_initial_state_null_means_zero(rng, h0, c0):
    check(build(random_problem(rng, L=2, bidir=True, h0=h0, c0=c0)))


def test_null_outputs_are_skipped(rng):
    p = random_problem(rng, L=2, bidir=True)
    built = build(p)
    ry, rhn, rcn = ref.forward(p)
    built.params.output_descriptor.data_desc = bl.NDArrayDescriptor()
    built.params.output_descriptor.cell_state_desc = bl.NDArrayDescriptor()
    run(built)
    np.testing.assert_allclose(built.hn, rhn, rtol=RTOL, atol=ATOL)
    assert np.all(built.y == 7.0) and np.all(built.cn == 7.0)


@pytest.mark.parametrize("lengths", [[5, 5, 5], [5, 3, 1], [4, 2, 2], [5, 0, 0], [2, 1, 1]])
@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("seq_dtype", ["uint32", "uint64", "int32", "int64"])
def test_sequence_batch_sizes(rng, lengths, bidir, seq_dtype):
    # D5: samples n < bs[t] run at step t; padded outputs are 0; h_n/c_n from each sample's
    # last step; the reverse direction starts at each sample's own last step.
    p = random_problem(rng, N=3, S=5, L=2, bidir=bidir, lengths=lengths, peephole="diag")
    y, hn, cn = check(build(p, seq_dtype=seq_dtype))
    for n, length in enumerate(sorted(lengths, reverse=True)):
        assert np.all(y[length:, n] == 0.0)


def test_sequence_descriptor_ignored_for_one_step(rng):
    # Spec 3.4: with seq_len == 1 the sequence descriptor is ignored (all N samples run).
    p = random_problem(rng, N=3, S=1)
    built = build(p)
    built.params.sequence_descriptor = bl.NDArrayDescriptor(
        data=np.array([1], np.uint32), layout=bl.DataLayout.Vector)
    check(built)


def test_sequence_descriptor_with_stride(rng):
    p = random_problem(rng, N=3, S=4, lengths=[4, 2, 1])
    built = build(p)
    strided = np.zeros(8, np.uint32)
    strided[::2] = p.batch_sizes
    built.params.sequence_descriptor = bl.NDArrayDescriptor(data=strided[::2],
                                                            layout=bl.DataLayout.Vector)
    check(built)


@pytest.mark.parametrize("n_threads", [0, 1, 2, 7])
def test_filter_params_threads(rng, n_threads):
    p = random_problem(rng, L=2, bidir=True)
    check(build(p), bl.FilterParameters(n_threads=n_threads, flags=bl.Flags.UseClientPtr))


def test_filter_params_allocator_is_used_and_balanced(rng):
    counting = CountingAllocator()
    p = random_problem(rng, L=2, bidir=True)
    check(build(p), counting.filter_params())
    assert counting.allocs >= 1 and counting.allocs == counting.frees and not counting.live


@pytest.mark.parametrize("I, H, L, bidir, S", [
    (584, 292, 1, False, 1), (36, 292, 2, True, 1), (292, 292, 2, True, 3), (600, 292, 1, False, 1),
    (100, 292, 1, False, 1)])
def test_workspace_holds_every_direct_product(rng, I, H, L, bidir, S):
    # The buffer the direct form packs W into (each layer's projection; at S = 1 the step's W_h)
    # must hold what every k it serves asks for: a chunk holds whole blocks of panels, so a
    # narrower k can ask for more floats than the widest (k = 292: 18 panels of 292 floats,
    # 584: 6 panels). Sized for the widest alone, the W_h of S = 1 wrote past the workspace
    # (glibc aborted). Nothing may be written past it, and the results match the reference.
    counting = CountingAllocator(guard=4 << 20)
    p = random_problem(rng, I=I, H=H, L=L, N=3, S=S, bidir=bidir)
    check(build(p), counting.filter_params())
    assert counting.allocs >= 1 and not counting.overruns


def test_allocator_failure_is_a_clean_error(rng):
    p = random_problem(rng)
    built = build(p)
    fp = bl.FilterParameters(alloc_memory=lambda memptr, a, s: 1, free_memory=lambda ptr: None)
    with pytest.raises(bl.BNNSError, match="allocate"):
        run(built, fp)
    assert np.all(built.y == 7.0) and np.all(built.hn == 7.0)


def test_in_place_state_update(rng):
    # Streaming use: h_n/c_n written over h0/c0 gives the same as separate buffers.
    p = random_problem(rng, L=2, bidir=True)
    built = build(p)
    _, rhn, rcn = ref.forward(p)
    h = np.array(p.h0)
    c = np.array(p.c0)
    built.params.input_descriptor.hidden_desc = bl.NDArrayDescriptor(data=h)
    built.params.input_descriptor.cell_state_desc = bl.NDArrayDescriptor(data=c)
    built.params.output_descriptor.hidden_desc = bl.NDArrayDescriptor(data=h)
    built.params.output_descriptor.cell_state_desc = bl.NDArrayDescriptor(data=c)
    run(built)
    np.testing.assert_allclose(h, rhn, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(c, rcn, rtol=RTOL, atol=ATOL)


def test_stacked_weights_are_used_in_place(rng):
    # Observable through the allocator: stacked gates need no packed copy in the workspace.
    sizes = []

    def alloc(memptr, alignment, size):
        sizes.append(size)
        return 1   # refuse: only the request is of interest

    fp = bl.FilterParameters(alloc_memory=alloc, free_memory=lambda ptr: None)
    p = random_problem(rng, I=64, H=64, N=2, L=2, S=3, peephole="full")
    for stacked in (False, True):
        with pytest.raises(bl.BNNSError, match="allocate"):
            run(build(p, stacked=stacked), fp)
    packed_floats = 4 * 64 * 64 * 3   # W_x, W_h and the peepholes of one (layer, direction)
    assert sizes[0] - sizes[1] >= packed_floats * 4


HELPER_SCRIPT = """
import numpy as np, bnnslstm as bl
from bnnslstm._backward import (_blas_single_threads, _direction_lanes, _helper_loops,
                                _helper_products, _lanes_shared)
from bnnslstm._blas import _own_products
from bnnslstm._forward import (_helper_calls, _helper_size_rule, _projection_chunks,
                               _row_splits, _unit_moves, _unit_splits)
rng = np.random.default_rng(0)
_helper_size_rule(False)        # small problems: the two-thread paths all the same


def one_then_two(lstm, x, lengths, counter):
    # the forward at 1 and then 2 threads: the same outputs bit for bit; returns how far the
    # 2-thread call moved `counter` (which path ran)
    lstm.n_threads = 1
    one = lstm.forward(x, lengths=lengths)
    before = counter()
    lstm.n_threads = 2
    two = lstm.forward(x, lengths=lengths)
    for a, b in zip((one[0],) + one[1], (two[0],) + two[1]):
        assert np.array_equal(a, b)
    return counter() - before


# unidirectional: the panels (1 row) or batch rows (21) are split; bidirectional: the two
# directions run at once, one per thread
cases = ((False, 1, 1, None), (False, 2, 21, [9] * 10 + [4] * 11), (True, 2, 4, [9, 5, 3, 1]),
         (True, 2, 21, None))
for bidir, layers, n, lengths in cases:
    lstm = bl.LSTM(40, 168, layers, bidirectional=bidir, peephole="full", seed=1)
    x = rng.standard_normal((9, n, 40)).astype(np.float32)
    assert one_then_two(lstm, x, lengths, _helper_calls) == 1, "the helper thread did not run"
# the default cell's time loops split the units instead (each thread all rows, half of every
# gate's panels: 5 and 6 of the 11, the last one partial), as given, packed once, and with
# lengths (padded outputs 0, h_n and c_n from each sample's last step)
x = rng.standard_normal((9, 21, 40)).astype(np.float32)
for frozen, lengths in ((False, None), (True, None), (False, [9] * 10 + [4] * 10 + [1])):
    lstm = bl.LSTM(40, 168, 2, seed=1)
    if frozen:
        lstm.freeze()
    assert one_then_two(lstm, x, lengths, _unit_splits) == 2, "the units were not split"
# the threads claim each step's chunks (here 3, of 4, 4 and 3 panels): the results may not
# depend on which thread took which; with an odd count one thread must take a chunk from the
# other's half at some step of a few calls
lstm, moved = bl.LSTM(40, 168, 2, seed=1), 0
for _ in range(10):
    before = _unit_moves()
    assert one_then_two(lstm, x, None, _unit_splits) == 2
    moved += _unit_moves() - before
    if moved:
        break
assert moved, "no chunk moved between the threads"
# from 24 panels a gate (H = 400: 25) AVX-512 chunks are whole 3-panel blocks (9 chunks, the
# last of 1 panel; bl_unit_chunk), AVX2 ones 4 panels: the same results either way
x = rng.standard_normal((6, 20, 40)).astype(np.float32)
for frozen, lengths in ((False, None), (True, None), (False, [6] * 10 + [3] * 9 + [1])):
    lstm = bl.LSTM(40, 400, seed=1)
    if frozen:
        lstm.freeze()
    assert one_then_two(lstm, x, lengths, _unit_splits) == 1, "the units were not split"
# from 32 rows with W_h of 16 MiB or less (here 441 KiB) the batch rows are split instead,
# unless that rule is off, or the second half of the rows holds 10% less work than the first
# (sequences sorted longest first); in every case the results of one thread
x = rng.standard_normal((9, 40, 40)).astype(np.float32)
lstm = bl.LSTM(40, 168, 2, seed=1)
for lengths in (None, [9] * 38 + [8, 7]):           # second half: 177 steps against 180
    assert one_then_two(lstm, x, lengths, _row_splits) == 2, "rows not split"
for lengths in ([9] * 21 + [8] * 19, [9] * 20 + [4] * 19 + [1]):    # 161, 77 against 180
    assert one_then_two(lstm, x, lengths, _unit_splits) == 2, "unequal halves split by rows"
_row_splits(False)
assert one_then_two(lstm, x, None, _unit_splits) == 2, "the rule is still on"
_row_splits(True)
# W_h of 4 MiB (H = 512) splits by rows at 32 rows; 17.7 MiB (H = 1076) by units
x = rng.standard_normal((2, 32, 40)).astype(np.float32)
assert one_then_two(bl.LSTM(40, 512, seed=1), x, None, _row_splits) == 1, "rows not split"
assert one_then_two(bl.LSTM(40, 1076, seed=1), x, None, _unit_splits) == 1, "units not split"
# ... also where each thread projects its rows' input in chunks inside its time loop (S*N*4H
# floats of 16 MiB)
x = rng.standard_normal((256, 32, 40)).astype(np.float32)
lstm = bl.LSTM(40, 128, seed=1)
assert one_then_two(lstm, x, None, _row_splits) == 1, "rows not split"
before = _projection_chunks()
lstm.forward(x)                                     # 2 threads: 11 chunks each
assert _projection_chunks() - before >= 4, "the input was not projected in chunks"
# training: the split forward (unidirectional: units at 21 rows and at 40 rows of unequal
# halves, rows at 40 of equal ones) must keep the same cache, and the backward's time loops
# split in batch rows (one per layer and direction), and its products split in gates and dX's
# rows or columns on the two threads (on our kernel, or on OpenBLAS at 2 threads or fewer),
# must give the same gradients; with 21 rows dX is a product after the time loop, with 40 the
# loop's threads compute it; with 3 rows the threads split each step's dh = dA W_h by panels.
# Bidirectional, on our kernel, each thread instead runs one direction whole, and without
# those lanes the directions split in turn: the same gradients either way
def unequal(n):     # the second half 4 steps long: far less work than the first
    return [9] * (n // 2) + [4] * (n - n // 2)


for n, bidir, lengths, lanes_on in ((21, False, unequal(21), True), (21, True, unequal(21), True),
                                    (21, True, unequal(21), False), (3, True, [9, 5, 2], True),
                                    (3, False, [9, 5, 2], True),
                                    (40, False, unequal(40), True), (40, True, unequal(40), True),
                                    (40, True, None, False), (40, False, [9] * 39 + [8], True)):
    x = rng.standard_normal((9, n, 40)).astype(np.float32)
    dy = rng.standard_normal((9, n, (1 + bidir) * 168)).astype(np.float32)
    outs = []
    for threads in (1, 2):
        lstm = bl.LSTM(40, 168, 2, bidirectional=bidir, dropout=0.2, seed=1)   # same masks
        lstm.n_threads = threads
        before_units, before_rows = _unit_splits(), _row_splits()
        y, _ = lstm.forward(x, lengths=lengths, training=True)
        split = threads == 2 and not bidir and n >= 16
        rows = split and n >= 32 and lengths[-1] == 8
        assert _unit_splits() - before_units == (2 if split and not rows else 0)
        assert _row_splits() - before_rows == (2 if rows else 0)
        before, before_products, before_lanes, before_shared = _helper_loops(), \
            _helper_products(), _direction_lanes(), _lanes_shared()[0]
        _direction_lanes(lanes_on)
        try:
            outs.append([y, *lstm.backward(dy)]
                        + [lstm.grads[k].copy() for k in sorted(lstm.grads)])
        finally:
            _direction_lanes(True)
        lanes = threads == 2 and bidir and lanes_on and _own_products()
        assert _direction_lanes() - before_lanes == (2 if lanes else 0), "lanes"
        assert _lanes_shared()[0] - before_shared == (2 if lanes else 0), "lanes' products"
        loops = threads == 2 and not lanes
        assert _helper_loops() - before == (2 * (1 + bidir) if loops else 0), "loops"
        split = threads == 2 and not lanes and (_own_products() or _blas_single_threads())
        assert _helper_products() - before_products == (2 * (1 + bidir) if split else 0)
    for a, b in zip(*outs, strict=True):
        assert np.array_equal(a, b)
print("ok")
"""


def test_small_calls_stay_on_one_thread():
    # Below HELPER_MIN_MACS (2M multiply-adds) handing half of each product to the helper cost
    # more than it saved: a call runs on one thread, the same results; from it on, two (here
    # W_h of H = 128, HELPER_MIN_WEIGHTS, and 4 * 128 * (128 + 128) * N * T multiply-adds:
    # 131072 * N * T), frozen weights alike (a single step too)
    from bnnslstm._forward import _helper_calls, _helper_size_rule

    lstm = bl.LSTM(128, 128, seed=1)
    frozen = bl.LSTM(128, 128, seed=1)
    frozen.freeze()
    lstm.n_threads = frozen.n_threads = 2
    _helper_size_rule(True)
    try:
        for layer in (lstm, frozen):
            for (T, N), started in (((1, 1), 0), ((8, 1), 0), ((4, 3), 0), ((1, 15), 0),
                                    ((16, 1), 1), ((4, 4), 1), ((1, 16), 1), ((25, 1), 1)):
                x = np.random.default_rng(T).standard_normal((T, N, 128)).astype(np.float32)
                before = _helper_calls()
                y, _ = layer.forward(x)
                assert _helper_calls() - before == started, (T, N)
                layer.n_threads = 1
                assert np.array_equal(y, layer.forward(x)[0])
                layer.n_threads = 2
    finally:
        _helper_size_rule(False)


def test_helper_thread_is_bit_identical():
    # With n_threads=2 a second thread packs half of the weights and computes half of the
    # panels of every product (H = 168: 11 panels per gate, so the output peephole's one-gate
    # product is split inside the gate), or half of the batch rows, or the other direction;
    # every output must equal the one-thread result bit for bit; so must the gradients of a
    # backward whose time loops split the batch rows. In a fresh process, so that the helper
    # counters see only this script.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", HELPER_SCRIPT], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# With h0 absent (zeros, spec 3.5) the first step's h0 W_h^T is 0, and from 32 rows on
# (ZERO_START_MIN_ROWS) the time loops skip it when W_h is finite: the outputs, and after a
# training forward the gradients, must be those of an explicit zero h0, whose product runs.
# Every path: one thread (the first step packing W_h, or S = 1 keeping no panels), two
# threads by rows, by units, by directions, frozen weights, lengths (the reverse direction
# starts with its longest samples only).
ZERO_START_CASES = {"one thread": (1, 32, False, None, 6), "one step": (1, 40, False, None, 1),
                    "rows": (2, 40, False, None, 6), "units": (2, 40, False, None, 6),
                    "directions": (2, 32, True, None, 6),
                    "lengths": (1, 36, True, [6] * 20 + [3] * 15 + [1], 6)}


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("case", list(ZERO_START_CASES))
def test_zero_start_skips_the_first_product(rng, case, frozen):
    from bnnslstm._forward import _helper_calls, _row_splits, _unit_splits, _zero_starts

    threads, N, bidir, lengths, S = ZERO_START_CASES[case]
    path = {"rows": _row_splits, "units": _unit_splits, "directions": _helper_calls}.get(case)
    lstm = bl.LSTM(24, 168, 2, bidirectional=bidir, seed=1)
    lstm.n_threads = threads
    if frozen:
        lstm.freeze()
    x = rng.standard_normal((S, N, 24)).astype(np.float32)
    zeros = np.zeros((2 * (1 + bidir), N, 168), np.float32)
    _row_splits(case != "units")
    try:
        before, before_path = _zero_starts(), path() if path else 0
        skipped = lstm.forward(x, lengths=lengths)
        assert _zero_starts() - before == 2 * (1 + bidir), "the first products ran"
        if path:
            assert path() - before_path == (1 if case == "directions" else 2), "not " + case
        ran = lstm.forward(x, zeros, zeros, lengths=lengths)
        assert _zero_starts() - before == 2 * (1 + bidir)
        for a, b in zip((skipped[0],) + skipped[1], (ran[0],) + ran[1], strict=True):
            assert np.array_equal(a, b)
        if not frozen:            # training: the same cache, so the same gradients
            dy = rng.standard_normal(skipped[0].shape).astype(np.float32)
            grads = []
            for h0 in (None, zeros):
                lstm.forward(x, h0, lengths=lengths, training=True)
                grads.append([*lstm.backward(dy)] + [lstm.grads[k] for k in sorted(lstm.grads)])
            for a, b in zip(*grads, strict=True):
                assert np.array_equal(a, b)
    finally:
        _row_splits(True)


def without_and_with_zero_h0(lstm: bl.LSTM, x: np.ndarray) -> tuple[int, tuple]:
    """The forward without h0 and c0, then with explicit zeros (whose product runs): the
    same outputs, NaNs included. Returns how many first products the first call skipped (the
    second skips none), and its outputs."""
    from bnnslstm._forward import _zero_starts

    zeros = np.zeros((lstm.num_layers * lstm.num_directions, x.shape[1], lstm.hidden_size),
                     np.float32)
    before = _zero_starts()
    absent = lstm.forward(x)
    skipped = _zero_starts() - before
    given = lstm.forward(x, zeros, zeros)
    assert _zero_starts() - before == skipped, "skipped with an explicit h0"
    for a, b in zip((absent[0],) + absent[1], (given[0],) + given[1], strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    return skipped, absent


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_zero_start_runs_the_product_on_non_finite_weights(rng, bad):
    # 0 * inf is NaN: with an inf or NaN in W_h the first step's product runs, so that the
    # gates of its row are NaN from the first step on, as with an explicit zero h0; and below
    # 32 rows the product runs whatever W_h holds
    from bnnslstm._forward import _zero_starts

    lstm = bl.LSTM(24, 40, seed=1)
    lstm.params["w_h_forget_l0"][5, 7] = bad
    x = rng.standard_normal((3, 32, 24)).astype(np.float32)
    skipped, absent = without_and_with_zero_h0(lstm, x)
    assert skipped == 0, "skipped despite a non-finite W_h"
    assert np.isnan(absent[0][0]).any()
    lstm.params["w_h_forget_l0"][5, 7] = 0.0
    before = _zero_starts()
    lstm.forward(x[:, :31])
    assert _zero_starts() == before, "skipped below 32 rows"
    lstm.forward(x)
    assert _zero_starts() == before + 1


@pytest.mark.parametrize("extreme", [np.finfo(np.float32).max, -np.finfo(np.float32).max,
                                     np.finfo(np.float32).smallest_subnormal, -0.0])
def test_zero_start_skips_on_extreme_finite_weights(rng, extreme):
    # the scan tells the exponent's all-ones (inf, NaN) from the largest finite value, the
    # subnormals and -0: the product is skipped, and the outputs are an explicit zero h0's
    lstm = bl.LSTM(24, 40, seed=1)
    lstm.params["w_h_output_l0"][39, 39] = extreme
    x = rng.standard_normal((3, 32, 24)).astype(np.float32)
    skipped, _ = without_and_with_zero_h0(lstm, x)
    assert skipped == 1, "not skipped on a finite W_h"


def test_zero_start_against_the_reference(rng):
    # the skip against the float64 reference: h0 NULL, c0 given or NULL, 32 rows
    for c0 in (False, True):
        check(build(random_problem(rng, I=12, H=20, N=32, L=2, bidir=True, h0=False, c0=c0)))


@pytest.mark.parametrize("N", [1, 20])
@pytest.mark.parametrize("bidir", [False, True])
def test_single_step_keeps_no_panels(rng, N, bidir):
    # S = 1 multiplies by W_h in the direct form (no packed panels kept): against the
    # reference, and bit for bit the same with a helper thread (H = 128: it runs), which at
    # N = 20 would otherwise split the batch rows.
    p = random_problem(rng, I=40, H=128, N=N, L=2, S=1, bidir=bidir)
    one = check(build(p), bl.FilterParameters(n_threads=1, flags=bl.Flags.UseClientPtr))
    two = check(build(p), bl.FilterParameters(n_threads=2, flags=bl.Flags.UseClientPtr))
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(a, b)


def _run_with_y(built, y: np.ndarray) -> None:
    """built's call with y (S, N, D*H) as its output tensor, on one thread."""
    built.params.output_descriptor.data_desc = bl.NDArrayDescriptor(data=y,
                                                                    layout=bl.DataLayout.SNE)
    bl.direct_apply_lstm_batch_training_caching(built.params, bl.FilterParameters(n_threads=1))


def test_y_on_the_input_is_written_as_the_last_thing(rng):
    # An inference writes y straight into the caller's tensor only when nothing read later
    # shares its memory. Here y is x itself: the reverse direction reads x after the forward
    # one has finished, so a y written during the time loop would have fed it its own output.
    p = random_problem(rng, I=8, H=4, N=3, S=5, bidir=True)
    built = build(p)
    xy = np.array(p.x, np.float32)
    built.params.input_descriptor.data_desc = bl.NDArrayDescriptor(data=xy,
                                                                   layout=bl.DataLayout.SNE)
    _run_with_y(built, xy)
    np.testing.assert_allclose(xy, ref.forward(p)[0], rtol=RTOL, atol=ATOL)


def test_y_on_the_weights_is_written_as_the_last_thing(rng):
    # y's memory also holds the reverse direction's W_h of gate i, which is read after the
    # forward direction's time loop: it must be read before y is written.
    p = random_problem(rng, I=3, H=4, N=3, S=5, bidir=True)
    built = build(p)
    S, N, D, H = p.S, p.N, p.D, p.H
    mem = np.zeros(S * N * D * H, np.float32)
    wh = mem[: D * H * H].reshape(1, D, H, H)       # [L][D][H][H] at the start of y
    wh[...] = p.wh[0]
    built.params.gates[0].hw_desc = bl.NDArrayDescriptor(data=wh)
    _run_with_y(built, mem.reshape(S, N, D * H))
    np.testing.assert_allclose(mem.reshape(S, N, D * H), ref.forward(p)[0], rtol=RTOL,
                               atol=ATOL)
