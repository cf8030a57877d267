"""A run's checkpoint → the file to ship: its (EMA) encoder and generator and its
discriminator, optionally stored in fp16, with the settings that made it. `scam-export
--ckpt` takes it like any checkpoint and `scam-train fit --init` continues from it, the
discriminator included (weights are cast back to fp32 on load). Optimiser moments are
dropped: they would double the file, and a continuation warms up its learning rate instead.
With `raw`, the trained weights a run with EMA keeps beside the average go in instead: exactly
what the same run would have ended with without EMA, the EMA on/off comparison at no cost."""
from __future__ import annotations

from pathlib import Path

import torch

from models import read_checkpoint
from models.checkpoint import FORMAT, FORMAT_VERSION, write_payload

from .errors import ConfigError

_KEPT = ("step", "train_config", "scheme")


def slim_checkpoint(source: Path, out: Path, fp16: bool = True, overwrite: bool = False, raw: bool = False) -> Path:
    """Write `out` from `source`; refuses to replace `source` or (without `overwrite`) `out`."""
    if out.exists() and (out.resolve() == source.resolve() or not overwrite):
        raise ConfigError(f"{out}: exists{' and is the source' if out.resolve() == source.resolve() else ''}; "
                          f"choose another name{'' if out.resolve() == source.resolve() else ' or pass --overwrite'}")
    payload = read_checkpoint(source)
    if raw:
        if "train_encoder" not in payload:
            raise ConfigError(f"{source}: has no raw weights beside its EMA (a run without --ema, or a slimmed file)")
        payload = {**payload, "encoder": payload["train_encoder"], "generator": payload["train_generator"]}
    dtype = torch.float16 if fp16 else None
    slim = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": payload["config"],
            **{name: {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v
                      for k, v in payload[name].items()}
               for name in ("encoder", "generator", "discriminator") if isinstance(payload.get(name), dict)},
            **{k: payload[k] for k in _KEPT if k in payload}}
    return write_payload(out, slim)
