"""Static TensorRT compatibility check of ONNX graphs, runnable without a GPU.

The operator set and opset range are those of the ONNX-TensorRT parser shipped with
TensorRT 10.0 (onnx-tensorrt `docs/operators.md`: opsets 9 to 20), the oldest release
the exporter targets; later releases only add to them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

TRT_MIN_OPSET, TRT_MAX_OPSET = 9, 20

SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Identity If
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean Min Mish Mod Mul Neg
NonMaxSuppression Not OneHot Or Pad Pow PRelu QuantizeLinear RandomNormal RandomNormalLike
RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
Reshape Resize ReverseSequence RNN RoiAlign Round Scan Scatter ScatterElements ScatterND
Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth
Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze
Upsample Where Xor
""".split())

# inputs that TensorRT treats as shape tensors: they must come from constants or Shape ops
SHAPE_INPUTS = {"Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,),
                "Range": (0, 1, 2), "Slice": (1, 2, 3, 4), "Resize": (2, 3), "Squeeze": (1,),
                "Unsqueeze": (1,), "OneHot": (1,), "TopK": (1,)}
RESIZE_COORDINATE_MODES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                           "align_corners"}
RESIZE_NEAREST_MODES = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


@dataclass
class TrtReport:
    opset: int
    ops: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_trt_compatible(model: onnx.ModelProto) -> TrtReport:
    """Unsupported ops, opset out of range, data-dependent shape tensors, unsupported Resize modes."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    report = TrtReport(opset=opset)
    if not TRT_MIN_OPSET <= opset <= TRT_MAX_OPSET:
        report.problems.append(f"opset {opset} outside TensorRT's {TRT_MIN_OPSET}..{TRT_MAX_OPSET}")
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    graph_inputs = {i.name for i in graph.input}

    def data_dependent(name: str, seen: set[str]) -> str | None:
        """The graph input a shape tensor depends on through values (not via Shape), if any."""
        if name in graph_inputs:
            return name
        if name in constants or name in seen or not name:
            return None
        seen.add(name)
        node = producers.get(name)
        if node is None or node.op_type in ("Shape", "Size", "Constant"):
            return None
        for parent in node.input:
            found = data_dependent(parent, seen)
            if found:
                return found
        return None

    for node in graph.node:
        report.ops.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}")
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            report.problems.append(f"unsupported op {node.op_type} ({node.name})")
            continue
        for index in SHAPE_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index]:
                source = data_dependent(node.input[index], set())
                if source:
                    report.problems.append(f"{node.op_type} {node.name}: shape input depends on the data of '{source}'")
        if node.op_type == "Resize":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            coord = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
            nearest = attrs.get("nearest_mode", b"round_prefer_floor").decode()
            if coord not in RESIZE_COORDINATE_MODES or nearest not in RESIZE_NEAREST_MODES:
                report.problems.append(f"Resize {node.name}: mode {coord}/{nearest} not supported by TensorRT")
        if node.op_type in ("Conv", "InstanceNormalization"):
            for weight in node.input[1:]:
                if weight and weight not in constants and producers.get(weight, None) is not None \
                        and producers[weight].op_type != "Constant":
                    report.problems.append(f"{node.op_type} {node.name}: weight '{weight}' is not an initializer")
    return report
