# cython: language_level=3
"""Struct sizes and field offsets as the compiled C code sees them (spec section 1).

Cython has no offsetof: offsets are pointer differences inside a real struct.
"""
from bnnslstm._activations cimport activation_grad_row, activation_row
from bnnslstm.bnns cimport *

cdef size_t off(const void *field, const void *base):
    return <size_t>(<const char *>field - <const char *>base)

def layout() -> dict:
    """{struct name: (sizeof, {field: offset})}, plus selected nested paths."""
    cdef BNNSActivation a
    cdef BNNSNDArrayDescriptor d
    cdef BNNSLSTMGateDescriptor g
    cdef BNNSLSTMDataDescriptor dd
    cdef BNNSLayerParametersLSTM p
    cdef BNNSFilterParameters f
    return {
        "BNNSActivation": (sizeof(a), {
            "function": off(&a.function, &a), "alpha": off(&a.alpha, &a),
            "beta": off(&a.beta, &a), "iscale": off(&a.iscale, &a),
            "ioffset": off(&a.ioffset, &a), "ishift": off(&a.ishift, &a),
            "iscale_per_channel": off(&a.iscale_per_channel, &a),
            "ioffset_per_channel": off(&a.ioffset_per_channel, &a),
            "ishift_per_channel": off(&a.ishift_per_channel, &a)}),
        "BNNSNDArrayDescriptor": (sizeof(d), {
            "flags": off(&d.flags, &d), "layout": off(&d.layout, &d),
            "size": off(&d.size, &d), "stride": off(&d.stride, &d), "data": off(&d.data, &d),
            "data_type": off(&d.data_type, &d), "table_data": off(&d.table_data, &d),
            "table_data_type": off(&d.table_data_type, &d),
            "data_scale": off(&d.data_scale, &d), "data_bias": off(&d.data_bias, &d)}),
        "BNNSLSTMGateDescriptor": (sizeof(g), {
            "iw_desc": off(&g.iw_desc, &g), "iw_desc[1]": off(&g.iw_desc[1], &g),
            "hw_desc": off(&g.hw_desc, &g), "cw_desc": off(&g.cw_desc, &g),
            "b_desc": off(&g.b_desc, &g), "activation": off(&g.activation, &g)}),
        "BNNSLSTMDataDescriptor": (sizeof(dd), {
            "data_desc": off(&dd.data_desc, &dd), "hidden_desc": off(&dd.hidden_desc, &dd),
            "cell_state_desc": off(&dd.cell_state_desc, &dd)}),
        "BNNSLayerParametersLSTM": (sizeof(p), {
            "input_size": off(&p.input_size, &p), "hidden_size": off(&p.hidden_size, &p),
            "batch_size": off(&p.batch_size, &p), "num_layers": off(&p.num_layers, &p),
            "seq_len": off(&p.seq_len, &p), "dropout": off(&p.dropout, &p),
            "lstm_flags": off(&p.lstm_flags, &p),
            "sequence_descriptor": off(&p.sequence_descriptor, &p),
            "input_descriptor": off(&p.input_descriptor, &p),
            "output_descriptor": off(&p.output_descriptor, &p),
            "input_gate": off(&p.input_gate, &p), "forget_gate": off(&p.forget_gate, &p),
            "candidate_gate": off(&p.candidate_gate, &p),
            "output_gate": off(&p.output_gate, &p),
            "hidden_activation": off(&p.hidden_activation, &p),
            # nested paths of spec table 1.8
            "sequence_descriptor.data": off(&p.sequence_descriptor.data, &p),
            "input_descriptor.data_desc.data": off(&p.input_descriptor.data_desc.data, &p),
            "input_descriptor.hidden_desc.data": off(&p.input_descriptor.hidden_desc.data, &p),
            "input_descriptor.cell_state_desc.data":
                off(&p.input_descriptor.cell_state_desc.data, &p),
            "output_descriptor.data_desc.data": off(&p.output_descriptor.data_desc.data, &p),
            "output_descriptor.hidden_desc.data":
                off(&p.output_descriptor.hidden_desc.data, &p),
            "output_descriptor.cell_state_desc.data":
                off(&p.output_descriptor.cell_state_desc.data, &p),
            "input_gate.iw_desc[0].data": off(&p.input_gate.iw_desc[0].data, &p),
            "input_gate.iw_desc[1].data": off(&p.input_gate.iw_desc[1].data, &p),
            "input_gate.hw_desc.data": off(&p.input_gate.hw_desc.data, &p),
            "input_gate.cw_desc.data": off(&p.input_gate.cw_desc.data, &p),
            "input_gate.b_desc.data": off(&p.input_gate.b_desc.data, &p),
            "input_gate.activation.function": off(&p.input_gate.activation.function, &p),
            "forget_gate.activation.function": off(&p.forget_gate.activation.function, &p),
            "candidate_gate.activation.function":
                off(&p.candidate_gate.activation.function, &p),
            "output_gate.activation.function": off(&p.output_gate.activation.function, &p),
            "hidden_activation.function": off(&p.hidden_activation.function, &p)}),
        "BNNSFilterParameters": (sizeof(f), {
            "flags": off(&f.flags, &f), "n_threads": off(&f.n_threads, &f),
            "alloc_memory": off(&f.alloc_memory, &f), "free_memory": off(&f.free_memory, &f)}),
    }

def apply_activation(unsigned int function, float alpha, float beta, float[::1] values) -> None:
    """Apply the kernel's activation to `values` in place (lets tests check its accuracy)."""
    if values.shape[0]:
        activation_row(function, alpha, beta, &values[0], values.shape[0])


def apply_activation_grad(unsigned int function, float alpha, float beta, float[::1] pre,
                          float[::1] val, float[::1] der) -> None:
    """val = f(pre), der = f'(pre) with the kernel's backward code (for accuracy tests)."""
    if pre.shape[0] != val.shape[0] or pre.shape[0] != der.shape[0]:
        raise ValueError("pre, val and der must have the same length")
    if pre.shape[0]:
        activation_grad_row(function, alpha, beta, &pre[0], &val[0], &der[0], pre.shape[0])
