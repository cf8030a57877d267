"""Torch-free runtime: loads a scam bundle and runs it with ONNX Runtime or TensorRT."""
from .bundle import Bundle, BundleError

__all__ = ["Bundle", "BundleError"]
