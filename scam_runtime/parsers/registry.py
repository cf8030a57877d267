"""Parsers by name: `builtin`, `mediapipe` (optional extra), `auto`, `onnx:PATH`, and any a
studio registers (`register_parser`)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from .base import Parser, ParserOptions
from .onnx import OnnxParser, builtin_parser


def _mediapipe(labels: tuple[str, ...], options: ParserOptions) -> Parser:
    # imported on use: mediapipe is heavy and optional
    from .mediapipe import MediapipeParser
    return MediapipeParser(labels, options)


def auto_parser_name() -> str:
    """`mediapipe` where its extra is installed (it measured better: docs/parsing.md), else
    `builtin`; `scam-run doctor` reports the choice."""
    return "mediapipe" if importlib.util.find_spec("mediapipe") is not None else "builtin"


PARSERS: dict[str, Callable[[tuple[str, ...], ParserOptions], Parser]] = {
    "builtin": builtin_parser, "mediapipe": _mediapipe,
    "auto": lambda labels, options: PARSERS[auto_parser_name()](labels, options)}
"""name -> factory(bundle label names, options); `onnx:PATH` is resolved by `get_parser`."""


def register_parser(name: str, factory: Callable[[tuple[str, ...], ParserOptions], Parser]) -> None:
    """Plug in a studio's own parser: `factory(labels, options)` returns a `Parser` (any
    object whose `__call__(rgb_frame)` gives an H×W map of the bundle's label ids); it is
    then a `--parser NAME` choice for everything in this process that calls `get_parser`."""
    PARSERS[name] = factory


def get_parser(name: str, labels: tuple[str, ...], options: ParserOptions = ParserOptions()) -> Parser:
    """A new parser instance (its own temporal state) for the bundle's `labels`."""
    if name.startswith("onnx:"):
        return OnnxParser(Path(name[len("onnx:"):]), labels, options)
    if name not in PARSERS:
        raise UsageError(f"--parser: unknown parser '{name}' (available: {', '.join(sorted(PARSERS))}, onnx:PATH)")
    return PARSERS[name](labels, options)
