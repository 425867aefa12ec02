"""Build a small downstream Cython extension against the installed bnnslstm, as a user would."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import bnnslstm as bl

_WORDS = {"One": "1", "Two": "2", "Three": "3", "Four": "4", "Five": "5", "Six": "6",
          "Seven": "7", "Eight": "8"}
_PREFIX = {bl.DataType: "BNNSDataType", bl.DataLayout: "BNNSDataLayout",
           bl.ActivationFunction: "BNNSActivationFunction", bl.NDArrayFlags: "BNNSNDArrayFlag",
           bl.Flags: "BNNSFlags", bl.LayerFlags: "BNNSLayerFlags"}


def apple_constants() -> dict[str, int]:
    """Apple's name -> value for every Python enum member."""
    out = {}
    for enum, prefix in _PREFIX.items():
        for name, member in enum.__members__.items():
            for word, digit in _WORDS.items():
                if name.startswith(word + "D"):
                    name = digit + name[len(word):]
            out[prefix + name] = int(member)
    out["BNNS_MAX_TENSOR_DIMENSION"] = 8
    return out


SOURCE = '''
# cython: language_level=3
from cython.parallel cimport prange
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset
from bnnslstm.bnns cimport *

bnnslstm_require_abi()          # the one-line ABI check the README recommends

def check_abi(int version, size_t params, size_t desc):
    return bnnslstm_check_abi(version, params, desc), bnnslstm_last_error().decode()

def constants():
    return {%(constants)s}

def sizes():
    return {"BNNSLayerParametersLSTM": sizeof(BNNSLayerParametersLSTM),
            "BNNSNDArrayDescriptor": sizeof(BNNSNDArrayDescriptor),
            "BNNSLSTMGateDescriptor": sizeof(BNNSLSTMGateDescriptor),
            "BNNSLSTMDataDescriptor": sizeof(BNNSLSTMDataDescriptor),
            "BNNSActivation": sizeof(BNNSActivation),
            "BNNSFilterParameters": sizeof(BNNSFilterParameters)}

cdef void matrix(BNNSNDArrayDescriptor *d, float *data, size_t cols, size_t rows) noexcept nogil:
    d.layout = BNNSDataLayoutRowMajorMatrix
    d.size[0] = cols
    d.size[1] = rows
    d.data = data
    d.data_type = BNNSDataTypeFloat32

cdef void sequence(BNNSNDArrayDescriptor *d, float *data, size_t E, size_t N,
                   size_t S) noexcept nogil:
    d.layout = BNNSDataLayoutSNE
    d.size[0] = E
    d.size[1] = N
    d.size[2] = S
    d.data = data
    d.data_type = BNNSDataTypeFloat32

cdef void fill(BNNSLayerParametersLSTM *p, size_t I, size_t H, size_t N, size_t S, float *x,
               float *wx, float *wh, float *b, float *y, float *hn, float *cn) noexcept nogil:
    """One unidirectional layer: weights [4][H][I], [4][H][H], biases [4][H]; filled by hand,
    as in Apple's article. Also fills a delta struct (same shapes) for the backward pass."""
    cdef BNNSLSTMGateDescriptor *gates[4]
    cdef int k
    memset(p, 0, sizeof(p[0]))
    p.input_size, p.hidden_size, p.batch_size, p.num_layers, p.seq_len = I, H, N, 1, S
    p.lstm_flags = BNNSLayerFlagsLSTMDefaultActivations
    sequence(&p.input_descriptor.data_desc, x, I, N, S)
    if y != NULL:
        sequence(&p.output_descriptor.data_desc, y, H, N, S)
    p.output_descriptor.hidden_desc.data = hn
    p.output_descriptor.cell_state_desc.data = cn
    gates[0], gates[1] = &p.input_gate, &p.forget_gate
    gates[2], gates[3] = &p.candidate_gate, &p.output_gate
    for k in range(4):
        matrix(&gates[k].iw_desc[0], wx + k * H * I, I, H)
        gates[k].iw_desc[1] = gates[k].iw_desc[0]
        matrix(&gates[k].hw_desc, wh + k * H * H, H, H)
        gates[k].b_desc.layout = BNNSDataLayoutVector
        gates[k].b_desc.data = b + k * H

def forward(size_t I, size_t H, size_t N, size_t S, size_t x, size_t wx, size_t wh, size_t b,
            size_t y, size_t hn, size_t cn):
    cdef BNNSLayerParametersLSTM p
    cdef int rc
    fill(&p, I, H, N, S, <float *>x, <float *>wx, <float *>wh, <float *>b, <float *>y,
         <float *>hn, <float *>cn)
    with nogil:
        rc = BNNSDirectApplyLSTMBatchTrainingCaching(&p, NULL, NULL, 0)
    return rc, bnnslstm_last_error().decode(), bnnslstm_abi_version()

cdef int forward_one(size_t I, size_t H, size_t N, size_t S, float *x, float *wx, float *wh,
                     float *b, float *y) noexcept nogil:
    cdef BNNSLayerParametersLSTM p
    fill(&p, I, H, N, S, x, wx, wh, b, y, NULL, NULL)
    return BNNSDirectApplyLSTMBatchTrainingCaching(&p, NULL, NULL, 0) != 0

def parallel_forward(size_t I, size_t H, size_t N, size_t S, size_t x, size_t wx, size_t wh,
                     size_t b, size_t y, int copies, int threads):
    """`copies` forward calls from OpenMP prange threads, each into its own y slice."""
    cdef int i, failures = 0
    for i in prange(copies, nogil=True, num_threads=threads, schedule="static", chunksize=1):
        failures += forward_one(I, H, N, S, <float *>x, <float *>wx, <float *>wh, <float *>b,
                                <float *>y + i * S * N * H)
    return failures

def stream(size_t I, size_t H, size_t N, size_t S, size_t x, size_t wx, size_t wh, size_t b,
           size_t y):
    """Streaming inference on frozen weights: pack once, then one step per call, each call's
    h_n and c_n the next call's h0 and c0 (two state buffers, swapped); y gets every step's
    h. All under nogil."""
    cdef BNNSLayerParametersLSTM p
    cdef size_t capacity, t
    cdef void *packed = NULL
    cdef float *state = <float *>calloc(4 * N * H, sizeof(float))    # h, c twice
    cdef float *s
    cdef int rc = -1
    fill(&p, I, H, N, 1, <float *>x, <float *>wx, <float *>wh, <float *>b, NULL, NULL, NULL)
    with nogil:
        capacity = bnnslstm_packed_weights_capacity(&p)
        packed = malloc(capacity) if capacity else NULL
        if packed != NULL:
            rc = bnnslstm_pack_weights(&p, NULL, packed, capacity)
        t = 0
        while rc == 0 and t < S:
            s = state + (t %% 2) * 2 * N * H                 # this step's h0, c0
            p.input_descriptor.hidden_desc.data = s
            p.input_descriptor.cell_state_desc.data = s + N * H
            s = state + ((t + 1) %% 2) * 2 * N * H           # its h_n, c_n
            p.output_descriptor.hidden_desc.data = s
            p.output_descriptor.cell_state_desc.data = s + N * H
            p.input_descriptor.data_desc.data = <float *>x + t * N * I
            sequence(&p.output_descriptor.data_desc, <float *>y + t * N * H, H, N, 1)
            rc = bnnslstm_direct_apply_lstm_batch_packed(&p, NULL, packed, capacity)
            t += 1
    free(packed)
    free(state)
    return rc, bnnslstm_last_error().decode(), capacity

def backward(size_t I, size_t H, size_t N, size_t S, size_t x, size_t wx, size_t wh,
             size_t b, size_t dy, size_t dx, size_t dwx, size_t dwh, size_t db,
             bint with_cache):
    """Forward (with a training cache when asked) then backward, all under nogil."""
    cdef BNNSLayerParametersLSTM p, dp
    cdef size_t capacity = 0
    cdef void *cache = NULL
    cdef int rc = 0
    fill(&p, I, H, N, S, <float *>x, <float *>wx, <float *>wh, <float *>b, NULL, NULL, NULL)
    # gradients: same shapes as the forward tensors; dL/dy comes in on the output side
    fill(&dp, I, H, N, S, <float *>dx, <float *>dwx, <float *>dwh, <float *>db, <float *>dy,
         NULL, NULL)
    with nogil:
        if with_cache:
            capacity = BNNSComputeLSTMTrainingCacheCapacity(&p)
            cache = malloc(capacity)
            rc = BNNSDirectApplyLSTMBatchTrainingCaching(&p, NULL, cache, capacity)
        if rc == 0:
            rc = BNNSDirectApplyLSTMBatchBackward(&p, &dp, NULL, cache, capacity)
        free(cache)
    return rc, bnnslstm_last_error().decode(), capacity
'''


def compiler() -> list[str]:
    """The C compiler command this Python was built with (CC overrides it), as argv words."""
    return (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()


def compile_module(tmp: Path, name: str, source: str, openmp: bool = False):
    """Cythonize and compile `source` as module `name` in tmp, against the installed bnnslstm
    (found on sys.path like any cimported package), and import it."""
    pyx = tmp / f"{name}.pyx"
    pyx.write_text(source)
    csrc = tmp / f"{name}.c"
    subprocess.run([sys.executable, "-m", "cython", "-3", str(pyx), "-o", str(csrc)], check=True,
                   capture_output=True, text=True)
    so = tmp / (name + sysconfig.get_config_var("EXT_SUFFIX"))
    flags = ["-fopenmp"] if openmp else []
    subprocess.run([*compiler(), "-shared", "-fPIC", "-O1", *flags, "-I",
                    sysconfig.get_paths()["include"], str(csrc), "-o", str(so)], check=True,
                   capture_output=True, text=True)
    spec = importlib.util.spec_from_file_location(name, so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_module(tmp: Path):
    consts = ", ".join(f'"{k}": {k}' for k in apple_constants())
    return compile_module(tmp, "downstream", SOURCE % {"constants": consts}, openmp=True)
