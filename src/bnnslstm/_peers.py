"""The peer implementations that comparisons run against: ONNX Runtime's LSTM operator and
PyTorch's nn.LSTM. Imported only by tests and benchmarks; the peers are optional."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def onnx_lstm_model(layers: Sequence[dict], input_size: int, *, opset: int = 17) -> bytes:
    """A serialized ONNX model of stacked LSTM operators.

    Each layer is a dict of ONNX LSTM tensors W [D, 4H, in], R [D, 4H, H] and optional
    B [D, 8H], P [D, 3H], plus node attributes (``direction``, ``activations``, ...). Graph
    inputs: ``X`` [S, N, I] and, when ``with_state``/``with_lens`` are set in the first layer,
    ``initial_h``/``initial_c`` [D, N, H] and ``sequence_lens`` [N] (first layer only).
    Outputs: the top layer's ``Y`` [S, D, N, H], and ``Y_h``/``Y_c`` of the last layer.
    """
    from onnx import TensorProto, helper, numpy_helper

    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", f32, ["S", "N", input_size])]
    nodes, inits = [], []
    x = "X"
    for k, layer in enumerate(layers):
        layer = dict(layer)
        W, R = layer.pop("W"), layer.pop("R")
        B, P = layer.pop("B", None), layer.pop("P", None)
        with_state, with_lens = layer.pop("with_state", False), layer.pop("with_lens", False)
        D, H = W.shape[0], R.shape[2]
        names = {}
        for name, value in (("W", W), ("R", R), ("B", B), ("P", P)):
            if value is not None:
                names[name] = f"{name}{k}"
                inits.append(numpy_helper.from_array(np.asarray(value, np.float32), f"{name}{k}"))
        if with_lens:
            inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["N"]))
        if with_state:
            inputs += [helper.make_tensor_value_info(n, f32, [D, "N", H])
                       for n in ("initial_h", "initial_c")]
        last = k == len(layers) - 1
        y, yh, yc = ("Y", "Y_h", "Y_c") if last else (f"Y{k}", f"Y_h{k}", f"Y_c{k}")
        node_inputs = [x, names["W"], names["R"], names.get("B", ""),
                       "sequence_lens" if with_lens else "",
                       "initial_h" if with_state else "", "initial_c" if with_state else "",
                       names.get("P", "")]
        while node_inputs[-1] == "":
            node_inputs.pop()
        nodes.append(helper.make_node("LSTM", node_inputs, [y, yh, yc], hidden_size=H, **layer))
        if not last:  # [S, D, N, H] -> [S, N, D*H] for the next layer (D2)
            nodes.append(helper.make_node("Transpose", [y], [f"T{k}"], perm=[0, 2, 1, 3]))
            shape = numpy_helper.from_array(np.array([0, 0, -1], np.int64), f"shape{k}")
            inits.append(shape)
            nodes.append(helper.make_node("Reshape", [f"T{k}", f"shape{k}"], [f"X{k + 1}"]))
            x = f"X{k + 1}"
    outputs = [helper.make_tensor_value_info(n, f32, None) for n in ("Y", "Y_h", "Y_c")]
    graph = helper.make_graph(nodes, "lstm", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def ort_session(model: bytes, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session with `threads` intra-op threads (0 = its default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Workers that spin after a run steal the core from whatever runs next (our benchmarks
    # interleave parties on 2 cores).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def onnx_tensors(rng: np.random.Generator, input_size: int, hidden_size: int,
                 bidirectional: bool, scale: float = 0.1) -> dict:
    """Random ONNX LSTM weights W, R, B for one layer."""
    D, H = (2 if bidirectional else 1), hidden_size
    u = lambda *s: rng.uniform(-scale, scale, size=s).astype(np.float32)  # noqa: E731
    return {"W": u(D, 4 * H, input_size), "R": u(D, 4 * H, H), "B": u(D, 8 * H),
            "direction": "bidirectional" if bidirectional else "forward"}
