"""Human parsers: photo or frame → label map in the bundle's scheme, without torch.

One interface (`Parser`: RGB frame → H×W label ids), made by name with `get_parser`:
`builtin` (our ONNX network, shipped in this folder with its head refiner), `onnx:PATH`
(any parsing model with a description JSON beside it), `mediapipe` (optional extra), `auto`,
and whatever `register_parser` adds. Adding a backend is adding a module here
(`base.ProbabilityParser` gives it the shared post-processing) and a registry entry.
"""
from .base import Parser, ParserOptions, ProbabilityParser, argmax_labels, person_regions, select_people
from .description import CropSpec, ParserDescription
from .onnx import BUILTIN_DIR, BUILTIN_MODEL, OnnxParser, builtin_parser, crop_padded
from .registry import PARSERS, auto_parser_name, get_parser, register_parser

__all__ = ["BUILTIN_DIR", "BUILTIN_MODEL", "PARSERS", "CropSpec", "OnnxParser", "Parser", "ParserDescription",
           "ParserOptions", "ProbabilityParser", "argmax_labels", "auto_parser_name", "builtin_parser",
           "crop_padded", "get_parser", "person_regions", "register_parser", "select_people"]
