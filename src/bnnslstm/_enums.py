"""BNNS enums with Apple's values; member names are Apple's without the prefix (spec section 2)."""

from __future__ import annotations

from enum import IntEnum, IntFlag


class DataType(IntEnum):
    FloatBit = 0x10000
    Float16 = 0x10010
    Float32 = 0x10020
    BFloat16 = 0x18010
    IntBit = 0x20000
    Int1 = 0x20001
    Int2 = 0x20002
    Int4 = 0x20004
    Int8 = 0x20008
    Int16 = 0x20010
    Int32 = 0x20020
    Int64 = 0x20040
    UIntBit = 0x40000
    UInt1 = 0x40001
    UInt2 = 0x40002
    UInt3 = 0x40003
    UInt4 = 0x40004
    UInt6 = 0x40006
    UInt8 = 0x40008
    UInt16 = 0x40010
    UInt32 = 0x40020
    UInt64 = 0x40040
    IndexedBit = 0x80000
    Indexed1 = 0x80001
    Indexed2 = 0x80002
    Indexed4 = 0x80004
    Indexed8 = 0x80008
    MiscellaneousBit = 0x100000
    Boolean = 0x100008


class DataLayout(IntEnum):
    """Apple's ``BNNSDataLayout<N>D...`` spell the rank as a word here (``FourDLastMajor``):
    Python names cannot start with a digit."""

    Vector = 0x10000
    OneDLastMajor = 0x18000     # Apple: BNNSDataLayout1DLastMajor
    OneDFirstMajor = 0x18001
    RowMajorMatrix = 0x20000
    ColumnMajorMatrix = 0x20001
    FullyConnectedSparse = 0x21001
    TwoDLastMajor = 0x28000
    TwoDFirstMajor = 0x28001
    ImageCHW = 0x30000
    SNE = 0x30001
    NSE = 0x30002
    MHA_DHK = 0x30003
    ThreeDLastMajor = 0x38000
    ThreeDFirstMajor = 0x38001
    ConvolutionWeightsOIHW = 0x40000
    ConvolutionWeightsOIHrWr = 0x40001
    ConvolutionWeightsIOHrWr = 0x40002
    ConvolutionWeightsOIHW_Pack32 = 0x40010
    FourDLastMajor = 0x48000
    FourDFirstMajor = 0x48001
    FiveDLastMajor = 0x58000
    FiveDFirstMajor = 0x58001
    SixDLastMajor = 0x68000
    SixDFirstMajor = 0x68001
    SevenDLastMajor = 0x78000
    SevenDFirstMajor = 0x78001
    EightDLastMajor = 0x88000
    EightDFirstMajor = 0x88001


class ActivationFunction(IntEnum):
    Identity = 0
    RectifiedLinear = 1
    LeakyRectifiedLinear = 2
    Sigmoid = 3
    Tanh = 4
    ScaledTanh = 5
    Abs = 6
    Linear = 7
    Clamp = 8
    IntegerLinearSaturate = 9
    IntegerLinearSaturatePerChannel = 10
    Softmax = 11
    GELUApproximation = 12
    Gumbel = 13
    GumbelMax = 14
    HardSigmoid = 15
    Softplus = 16
    Softsign = 17
    ELU = 18
    ClampedLeakyRectifiedLinear = 19
    LinearWithBias = 20
    LogSoftmax = 21
    LogSigmoid = 22
    SELU = 23
    CELU = 24
    HardShrink = 25
    SoftShrink = 26
    TanhShrink = 27
    Threshold = 28
    PReLUPerChannel = 29
    GELUApproximation2 = 30
    HardSwish = 30  # alias of GELUApproximation2
    SiLU = 31
    ReLU6 = 32
    Erf = 33
    GELU = 34
    GELUApproximationSigmoid = 35


class NDArrayFlags(IntFlag):
    BackpropSet = 0
    BackpropAccumulate = 1


class Flags(IntFlag):
    UseClientPtr = 0x0001


class LayerFlags(IntFlag):
    LSTMBidirectional = 0x0001
    LSTMDefaultActivations = 0x0002
