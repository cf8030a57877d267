"""Torch-free runtime: loads a scam bundle and runs it with ONNX Runtime or TensorRT.

    from scam_runtime import replace_video
    replace_video("plate.mp4", "actor.jpg")      # -> plate.scam.mp4, with the shipped default model

The job API (`replace_video`, `replace_image`, `SubjectReplacer`...) is imported on first
use, so that `scam_runtime.atomic` and `scam_runtime.bundle` stay cheap to import (training
writes its files through `atomic` without loading PyAV or ONNX Runtime).
"""
from __future__ import annotations

import importlib

from .bundle import Bundle, BundleError

_LAZY = {"SubjectReplacer": "replacer", "ReplaceOptions": "replacer", "Subject": "replacer",
         "BackendOptions": "backend", "replace_video": "jobs", "replace_image": "jobs",
         "VideoOptions": "jobs", "VideoReport": "jobs", "ColourOptions": "colour"}

__all__ = ["Bundle", "BundleError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
