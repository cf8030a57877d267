"""fp16 weight storage for fp32 graphs: half the bundle's size, the same fp32 arithmetic.

Every float32 initializer is stored as float16 and cast back by a `Cast` node at the top
of the graph; ONNX Runtime folds those casts into fp32 constants when the session is
created, so the runtime computes exactly as with fp32 weights rounded to fp16 values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHT_STORAGE = ("fp32", "fp16")
_MIN_ELEMENTS = 16   # scalars and tiny shape constants stay as they are


def store_weights_fp16(path: Path) -> int:
    """Rewrite the graph at `path` in place; returns how many initializers were halved."""
    model = onnx.load(str(path))
    graph = model.graph
    casts, kept, halved = [], [], 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < _MIN_ELEMENTS:
            kept.append(init)
            continue
        values = numpy_helper.to_array(init)
        if np.abs(values).max(initial=0) > np.finfo(np.float16).max:
            kept.append(init)  # would overflow in fp16: stays fp32
            continue
        half = numpy_helper.from_array(values.astype(np.float16), f"{init.name}__fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__to_fp32"))
        halved += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))
    return halved
