"""Edits of a converted TFLite model's graph: raw uint8 pixels in, no float detour for shapes.

Every calibrated TFLite file takes raw uint8 pixels (scale 1, zero point 0),
whatever its converter made of the input:

- an int8 input read only by DEQUANTIZE (the converter's int8 file with a
  float front): the input is relabelled uint8, which DEQUANTIZE reads as it is;
- a float32 input read only by QUANTIZE (AI Edge Quantizer's integer files):
  relabelled uint8 too, QUANTIZE then rescales the pixels exactly into the
  calibrated int range (which covers 0..255 once calibration saw a 255 pixel);
- an int16 or int8 input: a QUANTIZE from the uint8 pixels is put in front;
- a float32 input (a recipe that keeps the CNN in float): a DEQUANTIZE from the
  uint8 pixels is put in front.

``shapes_read_directly`` removes the DEQUANTIZE AI Edge Quantizer puts before a
SHAPE op (which it does not quantize): SHAPE reads any tensor type, so the
integer file keeps no float kernel between input and output.
``signature_on_outputs`` points a signature's outputs at the graph's outputs
where AI Edge Quantizer put a (DE)QUANTIZE between them (the stage probes'
outputs are then found by their names again); ``integer_outputs`` drops the
DEQUANTIZE it puts after an integer output, so the file's outputs are int16 or
int8 probabilities, dequantized by ``runtime`` as the int8 file's are.
"""

from __future__ import annotations

from typing import Any

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from export.errors import ConversionError


def read(data: bytes) -> Any:
    """A model object from file bytes (buffers stored past the FlatBuffer resolved)."""
    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def write(model: Any) -> bytes:
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def op_names(model: Any) -> dict[int, int]:
    """Operator-code index -> builtin operator code."""
    return {i: flatbuffer_utils.get_builtin_code_from_operator_code(c) for i, c in enumerate(model.operatorCodes)}


def raw_uint8_input(data: bytes) -> bytes:
    """The model with its one input read as raw uint8 pixels (scale 1, zero point 0)."""
    model = read(data)
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise ConversionError(f"expected one input, the model has {len(graph.inputs)}")
    (index,) = graph.inputs
    tensor = graph.tensors[index]
    codes = op_names(model)
    consumers = {codes[op.opcodeIndex] for op in graph.operators if index in op.inputs}
    if (tensor.type, consumers) in (
        (schema.TensorType.INT8, {schema.BuiltinOperator.DEQUANTIZE}),
        (schema.TensorType.FLOAT32, {schema.BuiltinOperator.QUANTIZE}),
    ):
        _set_raw_pixels(tensor)
    elif tensor.type in (schema.TensorType.INT8, schema.TensorType.INT16):
        _feed_from_pixels(model, index, schema.BuiltinOperator.QUANTIZE)
    elif tensor.type == schema.TensorType.FLOAT32:
        _feed_from_pixels(model, index, schema.BuiltinOperator.DEQUANTIZE)
    else:
        raise ConversionError(f"cannot make a model whose input is of TFLite type {tensor.type} take raw uint8 pixels")
    return write(model)


def _set_raw_pixels(tensor: Any) -> None:
    tensor.type = schema.TensorType.UINT8
    quantization = tensor.quantization or schema.QuantizationParametersT()
    quantization.scale, quantization.zeroPoint = [1.0], [0]
    tensor.quantization = quantization


def _feed_from_pixels(model: Any, index: int, builtin: int) -> None:
    """A new uint8 input tensor (taking the old input's name and place in the signature) and
    one ``builtin`` op from it into the old input."""
    graph = model.subgraphs[0]
    old = graph.tensors[index]
    pixels = schema.TensorT()
    pixels.name, old.name = old.name, old.name + b"_converted"
    pixels.shape = list(old.shape)
    pixels.shapeSignature = None if old.shapeSignature is None else list(old.shapeSignature)
    pixels.buffer = old.buffer  # the empty buffer every activation tensor points at
    pixels.quantization = schema.QuantizationParametersT()
    _set_raw_pixels(pixels)
    graph.tensors.append(pixels)
    new_index = len(graph.tensors) - 1
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, builtin)
    op.inputs, op.outputs = [new_index], [index]
    graph.operators.insert(0, op)
    graph.inputs = [new_index]
    for signature in model.signatureDefs or ():
        for item in signature.inputs:
            if item.tensorIndex == index:
                item.tensorIndex = new_index


def _opcode(model: Any, builtin: int) -> int:
    for index, code in op_names(model).items():
        if code == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def shapes_read_directly(data: bytes) -> bytes:
    """The model with every SHAPE op reading the integer tensor a DEQUANTIZE fed it from, and
    DEQUANTIZEs left with no reader removed."""
    model = read(data)
    codes = op_names(model)
    for graph in model.subgraphs:
        producer = {out: op for op in graph.operators for out in op.outputs}
        for op in graph.operators:
            if codes[op.opcodeIndex] != schema.BuiltinOperator.SHAPE:
                continue
            source = producer.get(op.inputs[0])
            if source is not None and codes[source.opcodeIndex] == schema.BuiltinOperator.DEQUANTIZE:
                op.inputs = [source.inputs[0]]
        read_tensors = {i for op in graph.operators for i in op.inputs} | set(graph.outputs)
        graph.operators = [
            op for op in graph.operators
            if not (codes[op.opcodeIndex] == schema.BuiltinOperator.DEQUANTIZE
                    and not set(op.outputs) & read_tensors)
        ]
    return write(model)


def signature_on_outputs(data: bytes) -> bytes:
    """The model with each signature output that a QUANTIZE / DEQUANTIZE turns into a graph
    output pointing at that graph output."""
    model = read(data)
    codes = op_names(model)
    converts = (schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE)
    graph = model.subgraphs[0]
    outputs = set(graph.outputs)
    into_output = {op.inputs[0]: op.outputs[0] for op in graph.operators
                   if codes[op.opcodeIndex] in converts and op.outputs[0] in outputs}
    for signature in model.signatureDefs or ():
        for item in signature.outputs:
            if item.tensorIndex not in outputs and item.tensorIndex in into_output:
                item.tensorIndex = into_output[item.tensorIndex]
    return write(model)


def integer_outputs(data: bytes) -> bytes:
    """The model with each output that a DEQUANTIZE makes float replaced by that DEQUANTIZE's
    integer input (in the graph and its signatures), and those DEQUANTIZE ops removed."""
    model = read(data)
    codes = op_names(model)
    graph = model.subgraphs[0]
    outputs = set(graph.outputs)
    dequantized = {op.outputs[0]: op for op in graph.operators
                   if codes[op.opcodeIndex] == schema.BuiltinOperator.DEQUANTIZE and op.outputs[0] in outputs}
    integer = {out: op.inputs[0] for out, op in dequantized.items()}
    graph.outputs = [integer.get(i, i) for i in graph.outputs]
    graph.operators = [op for op in graph.operators if all(op is not d for d in dequantized.values())]
    for signature in model.signatureDefs or ():
        for item in signature.outputs:
            item.tensorIndex = integer.get(item.tensorIndex, item.tensorIndex)
    return write(model)
