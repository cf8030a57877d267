"""One-file checkpoints: format version, config as plain data, state dicts, optional extras.

Files load with `torch.load(weights_only=True)`: nothing is unpickled but tensors and
plain containers. Writes are atomic (temporary file in the same folder, then rename).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from scam_runtime.atomic import atomic_path

from .config import ModelConfig
from .encoder import SATEncoder
from .generator import SCAMGenerator

FORMAT = "scam-checkpoint"
FORMAT_VERSION = 1
_RESERVED = {"format", "format_version", "config", "encoder", "generator"}
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "default_model.pt"
"""The shipped default model (EMA weights, fp16 storage): `scam-export --ckpt` and `fit --init` take it."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, foreign, newer, or does not fit its config."""


def save_checkpoint(path: str | os.PathLike, config: ModelConfig, encoder: SATEncoder,
                    generator: SCAMGenerator, **extra: Any) -> Path:
    """Write `path` atomically; `extra` (e.g. optimiser states, step) must be plain data/tensors."""
    clash = _RESERVED & set(extra)
    if clash:
        raise ValueError(f"extra checkpoint keys clash with reserved ones: {', '.join(sorted(clash))}")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(),
               "encoder": encoder.state_dict(), "generator": generator.state_dict(), **extra}
    return write_payload(path, payload)


def write_payload(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """`torch.save`, synced, under the final name only once complete (`scam_runtime.atomic`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, sync=True) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The validated raw payload (for resuming training: the extras live here)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # weights_only refused a Python object: never retried unsafely
            raise CheckpointError(f"{path}: refused: the file holds Python objects besides tensors and plain "
                                  f"data (not a SCAM checkpoint; loading it could run code)") from exc
        raise CheckpointError(f"{path}: not a readable SCAM checkpoint (truncated or foreign file: "
                              f"not a torch pickle)") from exc
    except Exception as exc:  # torch raises many types for truncated/foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable SCAM checkpoint "
                              f"(truncated or foreign file: {reason[:200]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a SCAM checkpoint (no '{FORMAT}' format marker)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is newer than this "
                              f"scam supports ({FORMAT_VERSION}); upgrade scam")
    for key in ("config", "encoder", "generator"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no '{key}' section")
    return payload


def _first_mismatch(expected: dict[str, torch.Tensor], stored: dict[str, Any]) -> str | None:
    """The first tensor that is missing, unexpected or of another shape, in words."""
    for key, tensor in expected.items():
        if key not in stored:
            return f"missing tensor {key}"
        if not isinstance(stored[key], torch.Tensor) or stored[key].shape != tensor.shape:
            shape = tuple(stored[key].shape) if isinstance(stored[key], torch.Tensor) else type(stored[key]).__name__
            return f"{key}: stored {shape}, config needs {tuple(tensor.shape)}"
    extra = sorted(set(stored) - set(expected))
    return f"unexpected tensor {extra[0]}" if extra else None


def load_checkpoint(path: str | os.PathLike, noise_mode: str = "const",
                    map_location: str | torch.device = "cpu"
                    ) -> tuple[ModelConfig, SATEncoder, SCAMGenerator]:
    """Config, encoder and generator in eval mode; `const` noise makes inference deterministic."""
    payload = read_checkpoint(path, map_location)
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from exc
    encoder, generator = SATEncoder(config), SCAMGenerator(config, noise_mode=noise_mode)
    for name, net in (("encoder", encoder), ("generator", generator)):
        mismatch = _first_mismatch(net.state_dict(), payload[name])
        if mismatch:
            raise CheckpointError(f"{path}: {name} weights do not fit the stored config ({mismatch})")
        net.load_state_dict(payload[name])
    return config, encoder.eval(), generator.eval()
