"""Export-ready wrappers: integer label maps in, one-hot expansion inside the graph."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from models import SATEncoder, SCAMGenerator

from .precision import PRECISIONS, with_precision

LABEL_DTYPE = torch.int32
"""Label maps enter the graphs as int32 ids (TensorRT handles int64 poorly)."""


def _one_hot(labels: torch.Tensor, label_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (labels.unsqueeze(1) == label_ids.view(1, -1, 1, 1)).to(dtype)


class EncoderGraph(nn.Module):
    """`(image B×3×H×W float32 in [-1, 1], labels B×H×W int32) -> latents B×m×d float32`;
    inside, the network runs at `precision`."""

    input_names = ("image", "labels")
    output_names = ("latents",)

    def __init__(self, encoder: SATEncoder, precision: str = "fp32") -> None:
        super().__init__()
        self.encoder = with_precision(encoder, precision)
        self.dtype = PRECISIONS[precision]
        self.register_buffer("label_ids", torch.arange(encoder.config.num_labels, dtype=LABEL_DTYPE),
                             persistent=False)

    def forward(self, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mask = _one_hot(labels, self.label_ids, self.dtype)
        return self.encoder(image.to(self.dtype), mask).float()


class GeneratorGraph(nn.Module):
    """`(labels B×H×W int32, latents B×m×d float32) -> image B×3×H×W float32 in [-1, 1]`;
    inside, the network runs at `precision`."""

    input_names = ("labels", "latents")
    output_names = ("image",)

    def __init__(self, generator: SCAMGenerator, precision: str = "fp32") -> None:
        super().__init__()
        self.generator = with_precision(generator, precision)
        self.dtype = PRECISIONS[precision]
        self.register_buffer("label_ids", torch.arange(generator.config.num_labels, dtype=LABEL_DTYPE),
                             persistent=False)

    def forward(self, labels: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        mask = _one_hot(labels, self.label_ids, self.dtype)
        return self.generator(mask, latents.to(self.dtype)).float()


def export_onnx(graph: EncoderGraph | GeneratorGraph, example: tuple[torch.Tensor, ...],
                path: Path, opset: int, max_batch: int) -> onnx.ModelProto:
    """Trace with a symbolic batch (the example batch must be ≥ 2) into one self-contained file."""
    if example[0].shape[0] < 2:
        raise ValueError("export with an example batch of at least 2, so batch stays symbolic")
    batch = torch.export.Dim("batch", min=1, max=max(max_batch, 2))
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # torchvision ops
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph.eval(), example, dynamo=True, opset_version=opset,
            input_names=list(graph.input_names), output_names=list(graph.output_names),
            dynamic_shapes=tuple({0: batch} for _ in example), optimize=True, verbose=False)
    model = program.model_proto
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.HasField("dim_value"):
            raise RuntimeError(f"{path.name}: batch dimension of '{value.name}' was fixed to {dim.dim_value}")
        dim.dim_param = "batch"
    onnx.save_model(model, str(path), save_as_external_data=False)
    return model
