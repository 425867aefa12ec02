"""``bnnslstm.LSTM``: a layer that feels like ``torch.nn.LSTM``, running on the BNNS structs."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from bnnslstm._api import (
    BNNSError,
    compute_lstm_training_cache_capacity,
    direct_apply_lstm_batch_backward,
    direct_apply_lstm_batch_packed,
    direct_apply_lstm_batch_training_caching,
    pack_weights,
    set_dropout_seed,
)
from bnnslstm._enums import ActivationFunction, DataLayout, LayerFlags
from bnnslstm._mirror import (
    Activation,
    FilterParameters,
    LayerParametersLSTM,
    LSTMDataDescriptor,
    LSTMGateDescriptor,
    NDArrayDescriptor,
)

GATES = ("input", "forget", "candidate", "output")  # struct order (i, f, g, o)
_DEFAULT_FUNCS = (ActivationFunction.Sigmoid, ActivationFunction.Sigmoid,
                  ActivationFunction.Tanh, ActivationFunction.Sigmoid)

ActivationSpec = int | str | Activation | tuple


def _data_offsets() -> tuple[int, ...]:
    """Byte offsets in LayerParametersLSTM of the data pointers of x, h0, c0, y, h_n, c_n."""
    return tuple(getattr(LayerParametersLSTM, side).offset
                 + getattr(LSTMDataDescriptor, part).offset + NDArrayDescriptor.data.offset
                 for side in ("input_descriptor", "output_descriptor")
                 for part in ("data_desc", "hidden_desc", "cell_state_desc"))


def _gate_data_offsets() -> tuple[int, ...]:
    """Byte offsets in LayerParametersLSTM of the data pointers of every gate descriptor."""
    nd, G = ctypes.sizeof(NDArrayDescriptor), LSTMGateDescriptor
    fields = (G.iw_desc.offset, G.iw_desc.offset + nd, G.hw_desc.offset, G.cw_desc.offset,
              G.b_desc.offset)
    return tuple(getattr(LayerParametersLSTM, gate).offset + f + NDArrayDescriptor.data.offset
                 for gate in ("input_gate", "forget_gate", "candidate_gate", "output_gate")
                 for f in fields)


_DATA_OFFSETS = _data_offsets()
_GATE_DATA_OFFSETS = _gate_data_offsets()


def _geometry(arrays: Sequence) -> tuple:
    """What a reused struct must share with the call that built it: shapes and strides."""
    return tuple(None if a is None else (a.shape, a.strides) for a in arrays)


def _rebind(last: tuple, arrays: Sequence, grads: dict) -> LayerParametersLSTM:
    """An earlier call's struct (last: geometry, bytes, gate slots) with its data pointers
    moved to arrays (x, h0, c0, y, h_n, c_n order) and each gate slot (offset, key, byte
    offset in grads[key]) moved into grads."""
    raw = bytearray(last[1])
    for offset, a in zip(_DATA_OFFSETS, arrays, strict=True):
        if a is not None:
            struct.pack_into("P", raw, offset, a.ctypes.data)
    for offset, key, rel in last[2]:
        struct.pack_into("P", raw, offset, grads[key].ctypes.data + rel)
    return LayerParametersLSTM.from_buffer(raw)


def make_activation(spec: ActivationSpec) -> Activation:
    """An ``Activation`` from a function (enum, int or name) or a (function, alpha, beta) tuple."""
    if isinstance(spec, Activation):
        return spec
    alpha = beta = 0.0
    if isinstance(spec, tuple):
        spec, alpha, beta = (tuple(spec) + (0.0, 0.0))[:3]
    fn = ActivationFunction[spec] if isinstance(spec, str) else ActivationFunction(spec)
    return Activation(function=fn, alpha=alpha, beta=beta)


def param_key(kind: str, gate: str, layer: int, direction: int) -> str:
    """Key of ``LSTM.params``: e.g. ``w_x_input_l0``, ``b_output_l1_reverse``."""
    return f"{kind}_{gate}_l{layer}" + ("_reverse" if direction else "")


class LSTM:
    """A stacked, optionally bidirectional LSTM on the BNNS LSTM functions.

    Shapes follow PyTorch: x is (T, N, I), or (N, T, I) with ``batch_first``; h0/c0 and the
    returned h_n/c_n are (num_layers * num_directions, N, H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        bidirectional: bool = False,
        batch_first: bool = False,
        dropout: float = 0.0,
        peephole: str | None = None,
        gate_activations: Sequence[ActivationSpec] | None = None,
        hidden_activation: ActivationSpec | None = None,
        seed: int | None = None,
    ) -> None:
        if peephole not in (None, "diagonal", "full"):
            raise ValueError(f"peephole must be None, 'diagonal' or 'full', not {peephole!r}")
        if gate_activations is not None and len(gate_activations) != 4:
            raise ValueError("gate_activations needs 4 entries (input, forget, candidate, output)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.bidirectional, self.batch_first = bias, bidirectional, batch_first
        self.dropout, self.peephole, self.seed = float(dropout), peephole, seed
        self.num_directions = 2 if bidirectional else 1
        self.default_activations = gate_activations is None and hidden_activation is None
        self.gate_activations = [make_activation(a) for a in (gate_activations or _DEFAULT_FUNCS)]
        self.hidden_activation = make_activation(
            ActivationFunction.Tanh if hidden_activation is None else hidden_activation)
        self._reverse_time = False   # ONNX direction="reverse" (see from_onnx)

        # Weights live in the BNNS memory order of spec 3.3; params holds views into them.
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(hidden_size)

        def init(*shape: int) -> np.ndarray:
            return rng.uniform(-k, k, size=shape).astype(np.float32)

        # The four gates of each (layer, direction) are stacked like PyTorch's [4H x in]
        # blocks, so the kernel multiplies them in place instead of packing them per call.
        self._w = {name: init(*shape) for name, shape in self._shapes().items()}
        self.params = self._views(self._w)
        self.grads: dict[str, np.ndarray] = {}
        self._template = LayerParametersLSTM(
            input_size=self.input_size, hidden_size=self.hidden_size,
            num_layers=self.num_layers, dropout=self.dropout,
            lstm_flags=(LayerFlags.LSTMBidirectional if self.bidirectional else 0)
            | (LayerFlags.LSTMDefaultActivations if self.default_activations else 0),
            hidden_activation=self.hidden_activation,
        )
        self._set_gates(self._template, self._w)
        for g, gate in enumerate(self._template.gates):
            gate.activation = self.gate_activations[g]
        self._training: dict | None = None
        self._cache_buffer: np.ndarray | None = None
        self._last_struct: tuple | None = None    # (geometry, bytes, ()): see _params
        self._last_delta: tuple | None = None     # (geometry, bytes, gate slots): see _delta
        self._n_threads = 0
        self._calls = 0
        self._packed: np.ndarray | None = None    # see freeze

    @property
    def n_threads(self) -> int:
        """filter_params.n_threads for every call: 0 lets the library choose (the online
        CPUs), 1 is single-threaded."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        # Checked here: the struct field is a size_t, where -1 would wrap to "all threads".
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise BNNSError(f"n_threads must be an integer, not {value!r}")
        if not 0 <= value < 2**64:
            raise BNNSError(f"n_threads must be 0 (automatic) or more and fit a size_t, not "
                            f"{value}")
        self._n_threads = int(value)

    # -- frozen weights --------------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        """Do inference calls use weights packed once by ``freeze``?"""
        return self._packed is not None

    def freeze(self) -> LSTM:
        """Pack W_x and W_h once, for every later ``forward(..., training=False)``.

        Without it each call packs them (as a BNNS call must, since it may see new weights
        every time): at batch 1 and in streaming inference that packing is much of a call's
        time. ONNX Runtime packs once, when its session is made; this does the same. Until
        ``unfreeze``, every parameter array is read-only, so that no change to the weights
        can go unseen: writing to one raises ``ValueError``. Training calls work as before.
        Returns the layer.
        """
        I, D, H = self.input_size, self.num_directions, self.hidden_size
        x = np.zeros((1, 1, I), np.float32)     # the panels fit any batch size and length
        arrays = (x, None, None, np.empty((1, 1, D * H), np.float32),
                  np.empty((self.num_layers, D, 1, H), np.float32),
                  np.empty((self.num_layers, D, 1, H), np.float32))
        self._packed = pack_weights(self._params(1, 1, arrays, False), self._filter())
        self._set_writeable(False)
        return self

    def unfreeze(self) -> LSTM:
        """Back to packing per call; the parameter arrays are writable again."""
        self._packed = None
        self._set_writeable(True)
        return self

    def _set_writeable(self, flag: bool) -> None:
        # The stores first when unfreezing: a view cannot be writable over a read-only base.
        arrays = [*self._w.values(), *self.params.values()]
        for a in arrays if flag else arrays[::-1]:
            a.flags.writeable = flag

    # -- parameters ------------------------------------------------------------------------
    def _shapes(self) -> dict[str, tuple]:
        """Storage of each tensor kind (the gate axis is the one of size 4)."""
        L, D, H, I = self.num_layers, self.num_directions, self.hidden_size, self.input_size
        shapes = {"wx0": (D, 4, H, I), "wh": (L, D, 4, H, H)}         # iw_desc[0]: layer 0
        if L > 1:
            shapes["wx1"] = (L - 1, D, 4, H, D * H)                     # iw_desc[1]
        if self.bias:
            shapes["b"] = (L, D, 4, H)
        if self.peephole == "full":
            shapes["wc"] = (L, D, 4, H, H)
        elif self.peephole == "diagonal":   # per gate contiguous: a Vector layout is one stride
            shapes["wc"] = (4, L, D, H)
        return shapes

    def _gate(self, store: dict, name: str, g: int) -> np.ndarray:
        """Gate g's slice of a stored tensor, in its BNNS order [L][D][H]... ."""
        a = store[name]
        if name == "wx0":
            return a[:, g]
        return a[g] if (name == "wc" and self.peephole == "diagonal") else a[:, :, g]

    def _views(self, store: dict) -> dict[str, np.ndarray]:
        views: dict[str, np.ndarray] = {}
        kinds = (("w_x", "wx"), ("w_h", "wh"), ("w_c", "wc"), ("b", "b"))
        for g, gate in enumerate(GATES):
            for layer in range(self.num_layers):
                for d in range(self.num_directions):
                    for kind, name in kinds:
                        if name == "wx":
                            a = self._gate(store, "wx0", g)[d] if layer == 0 else \
                                self._gate(store, "wx1", g)[layer - 1, d]
                        elif name in store:
                            a = self._gate(store, name, g)[layer, d]
                        else:
                            continue
                        views[param_key(kind, gate, layer, d)] = a
        return views

    def _set_gates(self, p: LayerParametersLSTM, store: dict) -> None:
        """Point p's gate descriptors at a storage (the weights, or their gradients)."""
        for g, gate in enumerate(p.gates):
            wx0 = NDArrayDescriptor(data=self._gate(store, "wx0", g))
            wx1 = NDArrayDescriptor(data=self._gate(store, "wx1", g)) if "wx1" in store else wx0
            gate.iw_desc = (wx0, wx1)
            gate.hw_desc = NDArrayDescriptor(data=self._gate(store, "wh", g))
            if "wc" in store:
                gate.cw_desc = NDArrayDescriptor(
                    data=self._gate(store, "wc", g),
                    layout=DataLayout.Vector if self.peephole == "diagonal" else 0)
            if "b" in store:
                gate.b_desc = NDArrayDescriptor(data=self._gate(store, "b", g))

    # -- forward ---------------------------------------------------------------------------
    def forward(
        self,
        x: Any,
        h0: Any = None,
        c0: Any = None,
        *,
        lengths: Any = None,
        training: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Run the layer; returns ``y, (h_n, c_n)`` like ``torch.nn.LSTM``.

        ``lengths`` (one per sample, any order) runs a variable-length batch: the layer sorts
        the samples, passes per-step batch sizes in ``sequence_descriptor`` and restores the
        order. Outputs past a sample's length are 0; its h_n/c_n are from its last step.
        ``training=True`` keeps a training cache for ``backward`` and applies dropout.
        """
        x = _as_f32(x, copy=training)     # training: backward re-reads x, so keep our own copy
        if x.ndim != 3:
            raise BNNSError(f"x must have 3 dimensions, got shape {x.shape}")
        T, N = (x.shape[1], x.shape[0]) if self.batch_first else (x.shape[0], x.shape[1])
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        h0 = self._state(h0, N, "h0")
        c0 = self._state(c0, N, "c0")
        order = None
        if lengths is not None:             # the kernel wants samples by descending length
            lengths = self._lengths(lengths, N, T)
            order = np.argsort(-lengths, kind="stable")
            lengths = lengths[order]
        x, h0, c0 = self._to_kernel(x, h0, c0, order, lengths)

        y = np.empty((N, T, D * H) if self.batch_first else (T, N, D * H), np.float32)
        hn = np.empty((L, D, N, H), np.float32)
        cn = np.empty((L, D, N, H), np.float32)
        arrays = (x, h0, c0, y, hn, cn)      # the struct points into these: keep them alive
        p = self._params(N, T, arrays, lengths is None)
        if lengths is not None:
            batch_sizes = (lengths[None, :] > np.arange(T)[:, None]).sum(1).astype(np.uint64)
            p.sequence_descriptor = NDArrayDescriptor(data=batch_sizes,
                                                      layout=DataLayout.Vector)
        cache = None
        if training:                         # reused while big enough: fresh pages cost time
            need = compute_lstm_training_cache_capacity(p)
            if self._cache_buffer is None or self._cache_buffer.size < need:
                self._cache_buffer = np.empty(need, np.uint8)
            cache = self._cache_buffer[:need]
            if self.seed is not None:        # this layer's masks: reproducible from its seed
                set_dropout_seed(self.seed + self._calls)
            self._calls += 1
        if self._packed is not None and not training:
            direct_apply_lstm_batch_packed(p, self._packed, self._filter())
        else:
            direct_apply_lstm_batch_training_caching(p, self._filter(), cache)
        self._training = dict(params=p, arrays=arrays, cache=cache, order=order,
                              lengths=lengths, x_shape=x.shape,
                              y_shape=y.shape) if training else None

        y, hn, cn = self._to_caller(y, hn, cn, order, lengths)
        return y, (hn, cn)

    __call__ = forward

    def backward(self, dy: Any, dh_n: Any = None,
                 dc_n: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gradients of the last ``forward(..., training=True)``.

        dy has y's shape; dh_n/dc_n h_n's (None = zero). Returns (dx, dh0, dc0) and fills
        ``self.grads`` (same keys as ``self.params``) with the parameter gradients.
        """
        st = self._training
        if st is None:
            raise BNNSError("backward() needs a forward(..., training=True) before it")
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        bn = 0 if self.batch_first else 1
        N = st["x_shape"][bn]
        order, lengths = st["order"], st["lengths"]
        dy = _as_f32(dy)
        if dy.shape != st["y_shape"]:
            raise BNNSError(f"dy has shape {dy.shape}, expected y's {st['y_shape']}")
        dy, dhn, dcn = self._to_kernel(dy, self._state(dh_n, N, "dh_n"),
                                       self._state(dc_n, N, "dc_n"), order, lengths)
        dx = np.empty(st["x_shape"], np.float32)
        dh0 = np.empty((L, D, N, H), np.float32)
        dc0 = np.empty((L, D, N, H), np.float32)
        # The kernel sets every element of every gradient it is given (D7: set, not add), so
        # no zeroing: np.zeros cost a memset, or fresh zero pages, of the weights' size
        grads = {name: np.empty(shape, np.float32) for name, shape in self._shapes().items()}
        delta = self._delta((dx, dh0, dc0, dy, dhn, dcn), grads)
        direct_apply_lstm_batch_backward(st["params"], delta, self._filter(), st["cache"])
        self.grads = self._views(grads)

        return self._to_caller(dx, dh0, dc0, order, lengths)

    def _filter(self) -> FilterParameters | None:
        return FilterParameters(n_threads=self.n_threads) if self.n_threads else None

    def _to_kernel(self, seq: np.ndarray, h: np.ndarray | None, c: np.ndarray | None,
                   order: np.ndarray | None, lengths: np.ndarray | None) -> tuple:
        """Caller's sample order and time direction -> the kernel's (sorted by length);
        `lengths` are already in the kernel's order."""
        bn = 0 if self.batch_first else 1
        if order is not None:
            seq = np.take(seq, order, axis=bn)
            h = None if h is None else np.ascontiguousarray(h[:, :, order])
            c = None if c is None else np.ascontiguousarray(c[:, :, order])
        if self._reverse_time:
            seq = _reverse_sequences(seq, lengths, bn)
        return seq, h, c

    def _to_caller(self, seq: np.ndarray, h: np.ndarray, c: np.ndarray,
                   order: np.ndarray | None, lengths: np.ndarray | None) -> tuple:
        """The inverse of _to_kernel, with h/c from [L][D][N][H] to (L*D, N, H)."""
        bn = 0 if self.batch_first else 1
        if self._reverse_time:
            seq = _reverse_sequences(seq, lengths, bn)
        shape = (self.num_layers * self.num_directions, h.shape[2], self.hidden_size)
        h, c = h.reshape(shape), c.reshape(shape)
        if order is not None:
            inverse = np.argsort(order)
            seq = np.take(seq, inverse, axis=bn)
            h, c = h[:, inverse], c[:, inverse]
        return seq, h, c

    def _params(self, N: int, T: int, arrays: tuple, reuse: bool) -> LayerParametersLSTM:
        """The call's struct, pointing at arrays (x, h0, c0, y, h_n, c_n; h0/c0 may be None).

        Building six descriptors field by field costs ~40 us, as much as a small forward
        pass: with reuse, a call whose arrays have the last call's shapes and strides copies
        that call's struct bytes and replaces only the six data pointers. Such a struct does
        not keep the arrays alive; the caller does.
        """
        geometry = (N, T) + _geometry(arrays)
        last = self._last_struct
        if reuse and last is not None and last[0] == geometry:
            return _rebind(last, arrays, {})
        # from_buffer_copy drops the weights' keep-alive references: the template holds them.
        p = LayerParametersLSTM.from_buffer_copy(self._template)
        p.batch_size, p.seq_len = N, T
        self._point_data(p, arrays)
        if reuse:
            self._last_struct = (geometry, bytes(p), ())
        return p

    def _delta(self, arrays: tuple, grads: dict) -> LayerParametersLSTM:
        """The backward's struct: arrays (dx, dh0, dc0, dy, dh_n, dc_n), gates into grads.

        Reused as _params reuses the forward's (~180 us of Python per call otherwise): the
        gate pointers are kept as offsets into the arrays of grads, which are new every call.
        """
        geometry = _geometry(arrays)
        last = self._last_delta
        if last is not None and last[0] == geometry:
            return _rebind(last, arrays, grads)
        delta = LayerParametersLSTM()
        self._point_data(delta, arrays)
        self._set_gates(delta, grads)
        raw = bytes(delta)
        slots = []
        for offset in _GATE_DATA_OFFSETS:
            (ptr,) = struct.unpack_from("P", raw, offset)
            owners = [k for k, a in grads.items()
                      if a.ctypes.data <= ptr < a.ctypes.data + a.nbytes]
            if len(owners) == 1:
                slots.append((offset, owners[0], ptr - grads[owners[0]].ctypes.data))
            elif ptr:                # not inside exactly one gradient array: do not reuse
                return delta
        self._last_delta = (geometry, raw, tuple(slots))
        return delta

    def _point_data(self, p: LayerParametersLSTM, arrays: Sequence) -> None:
        """p's input and output descriptors at arrays (x, h0, c0, y, h_n, c_n order)."""
        p.input_descriptor = self._data_descriptor(*arrays[:3])
        p.output_descriptor = self._data_descriptor(*arrays[3:])

    def _data_descriptor(self, seq: np.ndarray, h: np.ndarray | None,
                         c: np.ndarray | None) -> LSTMDataDescriptor:
        layout = DataLayout.NSE if self.batch_first else DataLayout.SNE
        return LSTMDataDescriptor(data_desc=NDArrayDescriptor(data=seq, layout=layout),
                                  hidden_desc=NDArrayDescriptor(data=h),
                                  cell_state_desc=NDArrayDescriptor(data=c))

    def _state(self, s: Any, N: int, name: str) -> np.ndarray | None:
        if s is None:
            return None
        s = _as_f32(s)
        want = (self.num_layers * self.num_directions, N, self.hidden_size)
        if s.shape != want:
            raise BNNSError(f"{name} has shape {s.shape}, expected {want}")
        return np.ascontiguousarray(
            s.reshape(self.num_layers, self.num_directions, N, self.hidden_size))

    @staticmethod
    def _lengths(lengths: Any, N: int, T: int) -> np.ndarray:
        lengths = np.asarray(lengths)
        if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
            raise BNNSError(f"lengths must be {N} integers, got {lengths.dtype} {lengths.shape}")
        if lengths.size and (lengths.min() < 0 or lengths.max() > T):
            raise BNNSError(f"lengths must lie in [0, {T}], got [{lengths.min()}, "
                            f"{lengths.max()}]")
        return lengths.astype(np.int64)

    # -- interop (implemented in bnnslstm._interop) -----------------------------------------
    @classmethod
    def from_torch(cls, module: Any) -> LSTM:
        """A copy of a ``torch.nn.LSTM`` (gate order i, f, g, o; biases b_ih + b_hh summed)."""
        from bnnslstm._interop import from_torch
        return from_torch(cls, module)

    def to_torch(self) -> Any:
        """A ``torch.nn.LSTM`` with these weights (no peepholes, default activations only)."""
        from bnnslstm._interop import to_torch
        return to_torch(self)

    @classmethod
    def from_onnx(cls, W: Any, R: Any, B: Any = None, P: Any = None, *,
                  direction: str = "forward", **attributes: Any) -> LSTM:
        """An LSTM from ONNX LSTM operator tensors (gate order i, o, f, c; see _interop)."""
        from bnnslstm._interop import from_onnx
        return from_onnx(cls, W, R, B, P, direction=direction, **attributes)


def _as_f32(a: Any, copy: bool = False) -> np.ndarray:
    """A C-contiguous, writable float32 array (BNNS descriptors point at void *)."""
    a = np.asarray(a)
    if copy or a.dtype != np.float32 or not a.flags.c_contiguous or not a.flags.writeable:
        a = np.array(a, dtype=np.float32, order="C", copy=True)
    return a


def _reverse_sequences(a: np.ndarray, lengths: np.ndarray | None, batch_axis: int) -> np.ndarray:
    """Reverse each sample's first `length` steps in time (ONNX 'reverse' direction)."""
    time_axis = 1 - batch_axis
    if lengths is None:
        return np.ascontiguousarray(np.flip(a, axis=time_axis))
    out = np.zeros_like(a)
    for n, length in enumerate(lengths):
        idx = [slice(None)] * 3
        idx[batch_axis] = n
        src = a[tuple(idx)]                      # (T, E) for this sample
        dst = out[tuple(idx)]
        dst[:length] = src[:length][::-1]
    return out
