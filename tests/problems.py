"""Random LSTM problems and their BNNS structs, in every layout/stride variant the spec allows."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np
from reference import DEFAULT_GATE_ACTS, TANH, Problem

import bnnslstm as bl

DL = bl.DataLayout


def random_problem(
    rng: np.random.Generator, I: int = 3, H: int = 4, N: int = 2, L: int = 1, S: int = 5,
    bidir: bool = False, bias: bool | list = True, peephole: str | list | None = None,
    separate_wx1: bool | None = None, h0: bool = True, c0: bool = True,
    acts: list | None = None, hidden_act: tuple | None = None, lengths: list | None = None,
    scale: float = 0.5,
) -> Problem:
    """peephole: None, "full", "diag", or a per-gate list of those; bias: bool or per-gate list.
    acts/hidden_act given means the DefaultActivations flag is clear."""
    D = 2 if bidir else 1
    W1 = D * H
    if separate_wx1 is None:
        separate_wx1 = L > 1 and (W1 != I or bool(rng.integers(2)))

    def u(*shape: int) -> np.ndarray:
        return rng.uniform(-scale, scale, size=shape).astype(np.float32)

    peeps = peephole if isinstance(peephole, list) else [peephole] * 4
    biases = bias if isinstance(bias, list) else [bias] * 4
    p = Problem(
        I=I, H=H, N=N, L=L, S=S, bidir=bidir, x=u(S, N, I),
        wx0=[u(1 if separate_wx1 else L, D, H, I) for _ in range(4)],
        wx1=[u(L - 1, D, H, W1) for _ in range(4)] if separate_wx1 else None,
        wh=[u(L, D, H, H) for _ in range(4)],
        wc=[None if k is None else (u(L, D, H, H) if k == "full" else u(L, D, H)) for k in peeps],
        b=[u(L, D, H) if k else None for k in biases],
        h0=u(L, D, N, H) if h0 else None, c0=u(L, D, N, H) if c0 else None,
    )
    if acts is not None or hidden_act is not None:
        p.default_acts = False
        p.acts = acts if acts is not None else p.acts
        p.hidden_act = hidden_act if hidden_act is not None else p.hidden_act
    if lengths is not None:
        lengths = np.sort(np.asarray(lengths))[::-1]
        p.batch_sizes = (lengths[None, :] > np.arange(S)[:, None]).sum(1)
    return p


def slot_problem(rng: np.random.Generator, fn: int, slot: str, H: int) -> Problem:
    """A problem whose activation in `slot` (a gate name or "hidden") is function fn."""
    alpha, beta = {8: (-0.5, 0.6), 28: (0.1, -0.2)}.get(fn, (0.7, 0.3))
    acts = list(DEFAULT_GATE_ACTS)
    hidden = (TANH, 0.0, 0.0)
    if slot == "hidden":
        hidden = (fn, alpha, beta)
    else:
        acts[["input", "forget", "candidate", "output"].index(slot)] = (fn, alpha, beta)
    return random_problem(rng, H=H, N=3, S=4, acts=acts, hidden_act=hidden, scale=0.8)


def embed(a: np.ndarray, strided: bool, uniform: bool = False) -> np.ndarray:
    """A copy of a, contiguous, or as a strided view (every other element, padded rows unless
    `uniform`, as a rank-1 layout needs) of a NaN-filled buffer, so that a read outside the
    described elements shows up as NaN."""
    if not strided:
        return np.array(a, dtype=np.float32, order="C", copy=True)
    if uniform:
        view = np.full(2 * a.size, np.nan, np.float32)[::2].reshape(a.shape)
        view[...] = a
        return view
    n = a.shape[-1]
    big = np.full(a.shape[:-1] + (2 * n + 3,), np.nan, np.float32)
    view = big[..., : 2 * n : 2]
    view[...] = a
    return view


_SEQ = {"SNE": DL.SNE, "NSE": DL.NSE, 0: 0}
_RANKED = {0: 0, "4D": DL.FourDLastMajor, "3D": DL.ThreeDLastMajor, "2D": DL.RowMajorMatrix,
           "Vector": DL.Vector}


@dataclass
class Built:
    params: bl.LayerParametersLSTM
    problem: Problem
    y_layout: object
    y: np.ndarray | None
    hn: np.ndarray | None
    cn: np.ndarray | None

    def outputs(self) -> tuple:
        """y as (S, N, D*H), h_n and c_n as (L, D, N, H)."""
        y = self.y
        if y is not None and self.y_layout == "NSE":
            y = y.transpose(1, 0, 2)
        return y, self.hn, self.cn


def seq_desc(a: np.ndarray, layout: object, strided: bool, fill: float | None = None) -> tuple:
    """Descriptor of a logical (S, N, E) tensor in SNE/NSE; returns (desc, view)."""
    mem = a.transpose(1, 0, 2) if layout == "NSE" else a
    view = embed(mem, strided)
    if fill is not None:
        view[...] = fill
    return bl.NDArrayDescriptor(data=view, layout=_SEQ[layout]), view


def build(
    p: Problem, *, x_layout: object = "SNE", y_layout: object = "SNE", strided: bool = False,
    weight_layout: object = 0, state_layout: object = 0, zero_sizes: bool = False,
    seq_dtype: str = "uint32", outputs: bool = True, fill: float = 7.0, stacked: bool = False,
) -> Built:
    """BNNS structs for problem p; output buffers are pre-filled with `fill`.

    stacked: each weight tensor of the four gates lives in one array with the gate axis just
    above the matrix ([..., 4, H, in], PyTorch's stacking), and the gates' descriptors are
    strided views into it (the kernel's in-place path)."""
    D, H = p.D, p.H

    def desc(a: np.ndarray | None, layout: object = 0) -> bl.NDArrayDescriptor:
        if a is None:
            return bl.NDArrayDescriptor()
        d = bl.NDArrayDescriptor(data=embed(a, strided, uniform=layout == "Vector"),
                                 layout=_RANKED[layout])
        if zero_sizes:
            d.size = [0] * 8
        return d

    xd, _ = seq_desc(p.x, x_layout, strided)
    params = bl.LayerParametersLSTM(
        input_size=p.I, hidden_size=H, batch_size=p.N, num_layers=p.L, seq_len=p.S,
        lstm_flags=(bl.LayerFlags.LSTMBidirectional if p.bidir else 0)
        | (bl.LayerFlags.LSTMDefaultActivations if p.default_acts else 0),
        hidden_activation=bl.Activation(function=p.hidden_act[0], alpha=p.hidden_act[1],
                                        beta=p.hidden_act[2]),
    )
    if zero_sizes:
        xd.size = [0] * 8
    y = hn = cn = None
    yd = hd = cd = bl.NDArrayDescriptor()
    if outputs:
        yd, y = seq_desc(np.zeros((p.S, p.N, D * H), np.float32), y_layout, strided, fill)
        hn, cn = (embed(np.full((p.L, D, p.N, H), fill, np.float32), strided,
                        uniform=state_layout == "Vector") for _ in range(2))
        hd = bl.NDArrayDescriptor(data=hn, layout=_RANKED[state_layout])
        cd = bl.NDArrayDescriptor(data=cn, layout=_RANKED[state_layout])
    params.input_descriptor = bl.LSTMDataDescriptor(
        data_desc=xd, hidden_desc=desc(p.h0, state_layout),
        cell_state_desc=desc(p.c0, state_layout))
    params.output_descriptor = bl.LSTMDataDescriptor(data_desc=yd, hidden_desc=hd,
                                                     cell_state_desc=cd)
    def gate_views(arrays: list) -> list:
        if not stacked or any(a is None or a.ndim != 4 for a in arrays):
            return arrays
        block = embed(np.stack(arrays, axis=-3), strided)
        return [block[..., k, :, :] for k in range(4)]

    def wdesc(a: np.ndarray) -> bl.NDArrayDescriptor:
        if not stacked:
            return desc(a, weight_layout)
        return bl.NDArrayDescriptor(data=a, layout=_RANKED[weight_layout])

    wx0s, whs, wcs = gate_views(p.wx0), gate_views(p.wh), gate_views(p.wc)
    wx1s = gate_views(p.wx1) if p.wx1 is not None else None
    for k, gate in enumerate(params.gates):
        wx0 = wdesc(wx0s[k])
        wx1 = wdesc(wx1s[k]) if wx1s is not None else wx0  # article pattern
        gate.iw_desc = (wx0, wx1)
        gate.hw_desc = wdesc(whs[k])
        if p.wc[k] is not None:
            diag = p.wc[k].ndim == 3
            gate.cw_desc = desc(p.wc[k], "Vector") if diag else wdesc(wcs[k])
        gate.b_desc = desc(p.b[k])
        fn, alpha, beta = p.acts[k]
        gate.activation = bl.Activation(function=fn, alpha=alpha, beta=beta)
    if p.batch_sizes is not None:
        params.sequence_descriptor = bl.NDArrayDescriptor(
            data=np.asarray(p.batch_sizes, dtype=seq_dtype), layout=DL.Vector)
    return Built(params, p, y_layout, y, hn, cn)


def run(built: Built, filter_params: bl.FilterParameters | None = None) -> tuple:
    bl.direct_apply_lstm_batch_training_caching(built.params, filter_params)
    return built.outputs()


GRAD_KEYS = ("wx0", "wx1", "wh", "wc", "b")


@dataclass
class BuiltDelta:
    params: bl.LayerParametersLSTM
    grads: dict            # name -> buffer (x/h0/c0 arrays; per-gate lists for weights)
    x_layout: object

    def read(self) -> dict:
        """The gradient buffers in the reference's shapes (dx as (S, N, I))."""
        out = dict(self.grads)
        if out.get("x") is not None and self.x_layout == "NSE":
            out["x"] = out["x"].transpose(1, 0, 2)
        return out


def build_delta(
    p: Problem, dy=None, dhn=None, dcn=None, *, want=("x", "h0", "c0") + GRAD_KEYS,
    x_layout: object = "SNE", y_layout: object = "SNE", strided: bool = False,
    weight_layout: object = 0, state_layout: object = 0, accumulate: bool = False,
    fill: float = 0.0, stacked: str | None = None,
) -> BuiltDelta:
    """layer_delta_params for problem p: incoming dy/dhn/dcn (None = NULL data) and gradient
    buffers pre-filled with `fill` for the names in `want` (others NULL).

    stacked: each weight gradient of the four gates lives in one array [..., 4, H, in], as
    build's `stacked` (the products' in-place path); "padded": its rows 3 floats longer than
    the matrix, NaN there, so that a write past a row shows up."""

    def desc(a, layout=0, flags=0):
        if a is None:
            return bl.NDArrayDescriptor(), None
        view = embed(a, strided, uniform=layout == "Vector")
        return bl.NDArrayDescriptor(data=view, layout=_RANKED[layout], flags=flags), view

    flags = bl.NDArrayFlags.BackpropAccumulate if accumulate else 0
    D, H = p.D, p.H
    dp = bl.LayerParametersLSTM()
    grads: dict = {}
    ydesc = bl.NDArrayDescriptor()
    if dy is not None:
        ydesc, _ = seq_desc(dy, y_layout, strided)
    dp.output_descriptor = bl.LSTMDataDescriptor(
        data_desc=ydesc, hidden_desc=desc(dhn, state_layout)[0],
        cell_state_desc=desc(dcn, state_layout)[0])
    xd = bl.NDArrayDescriptor()
    if "x" in want:
        xd, grads["x"] = seq_desc(np.zeros((p.S, p.N, p.I), np.float32), x_layout, strided, fill)
        xd.flags = flags
    state = np.full((p.L, D, p.N, H), fill, np.float32)
    h0d, grads["h0"] = desc(state if "h0" in want else None, state_layout, flags)
    c0d, grads["c0"] = desc(state if "c0" in want else None, state_layout, flags)
    dp.input_descriptor = bl.LSTMDataDescriptor(data_desc=xd, hidden_desc=h0d,
                                                cell_state_desc=c0d)
    def gate_blocks(arrays: list | None) -> list | None:
        if not stacked or arrays is None or any(a is None or a.ndim != 4 for a in arrays):
            return None
        shape = arrays[0].shape[:-2] + (4,) + arrays[0].shape[-2:]
        pad = 3 if stacked == "padded" else 0
        block = np.full(shape[:-1] + (shape[-1] + pad,), np.nan, np.float32)
        block[..., : shape[-1]] = fill
        return [block[..., k, :, : shape[-1]] for k in range(4)]

    for key in GRAD_KEYS:
        grads[key] = [None] * 4
    sources = (("wx0", p.wx0), ("wx1", p.wx1), ("wh", p.wh), ("wc", p.wc), ("b", p.b))
    blocks = {key: gate_blocks(arrays) for key, arrays in sources if key in want}
    for k, gate in enumerate(dp.gates):
        pairs = {}
        for key, arrays in sources:
            a = None if arrays is None or arrays[k] is None or key not in want else arrays[k]
            layout = weight_layout if key in ("wx0", "wx1", "wh") else 0
            if key == "wc" and a is not None:
                layout = "Vector" if a.ndim == 3 else weight_layout
            if a is not None and blocks.get(key) is not None:
                view = blocks[key][k]
                d = bl.NDArrayDescriptor(data=view, layout=_RANKED[layout], flags=flags)
            else:
                d, view = desc(None if a is None else np.full(a.shape, fill, np.float32),
                               layout, flags)
            pairs[key] = d
            grads[key][k] = view
        gate.iw_desc = (pairs["wx0"], pairs["wx1"])
        gate.hw_desc, gate.cw_desc, gate.b_desc = pairs["wh"], pairs["wc"], pairs["b"]
    return BuiltDelta(dp, grads, x_layout)


@dataclass
class CountingAllocator:
    """BNNSAlloc/BNNSFree callbacks that count calls, check the alignment contract and keep
    every live block, so that tests can see that allocations and frees balance. With `guard`,
    that many pattern bytes follow each block; a free that finds them changed records the
    block's size in `overruns` (the kernel wrote past the workspace it asked for)."""

    live: dict = field(default_factory=dict)
    allocs: int = 0
    frees: int = 0
    guard: int = 0
    overruns: list = field(default_factory=list)
    sizes: dict = field(default_factory=dict)

    def alloc(self, memptr, alignment, size) -> int:
        self.allocs += 1
        assert alignment >= ctypes.sizeof(ctypes.c_void_p) and alignment & (alignment - 1) == 0
        buf = ctypes.create_string_buffer(size + alignment + self.guard)
        addr = (ctypes.addressof(buf) + alignment - 1) // alignment * alignment
        ctypes.memset(addr + size, 0xA5, self.guard)
        self.live[addr] = buf
        self.sizes[addr] = size
        memptr[0] = addr
        return 0

    def free(self, ptr) -> None:
        self.frees += 1
        size = self.sizes.pop(ptr)
        if ctypes.string_at(ptr + size, self.guard) != b"\xa5" * self.guard:
            self.overruns.append(size)
        del self.live[ptr]

    def filter_params(self) -> bl.FilterParameters:
        return bl.FilterParameters(alloc_memory=self.alloc, free_memory=self.free)
