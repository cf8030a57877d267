"""Failures a training user can act on; `str(exc)` is the one-line message."""
from __future__ import annotations


class TrainFailure(Exception):
    exit_code = 1


class DataError(TrainFailure):
    """Missing pairs, unreadable files, mismatched sizes, label ids outside the scheme."""
    exit_code = 3


class ConfigError(TrainFailure):
    """A config file or option that cannot be used."""
    exit_code = 2


class WeightsError(TrainFailure):
    """Pretrained weights (VGG19 for the perceptual loss) that cannot be found or read."""
    exit_code = 4
