"""What a run reports: a progress line, a JSONL metrics log, TensorBoard when installed."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np


class Progress:
    """`step/total  img/s  ETA  losses` on one line (bar), JSON lines (json), or nothing.

    With a wall-clock budget (`budget_s`) the run ends at whichever comes first, the last
    step or the budget, and the ETA says so: a 2-hour run must not claim 14 hours."""

    def __init__(self, total: int, start: int, mode: str = "bar", stream: TextIO | None = None,
                 budget_s: float = 0.0) -> None:
        self.total, self.start_step, self.mode, self.budget_s = total, start, mode, budget_s
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()

    def update(self, step: int, images_per_s: float, losses: dict[str, float]) -> None:
        done = step - self.start_step
        elapsed = time.monotonic() - self.t0
        rate = done / elapsed
        eta = (self.total - step) / rate if rate > 0 else None
        if self.budget_s:
            left = max(0.0, self.budget_s - elapsed)
            eta = left if eta is None else min(eta, left)
        if self.mode == "json":
            self.stream.write(json.dumps({"step": step, "total": self.total, "images_per_s": round(images_per_s, 2),
                                          "eta_s": None if eta is None else round(eta), **losses}) + "\n")
        elif self.mode == "bar":
            eta_text = "--:--" if eta is None else f"{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}"
            text = "  ".join(f"{k} {v:.3f}" for k, v in losses.items())
            self.stream.write(f"\rstep {step}/{self.total}  {images_per_s:.2f} img/s  ETA {eta_text}  {text}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()


class RunLog:
    """Metrics to `RUN/log.jsonl` and, when the `tensorboard` package is there, `RUN/tb/`."""

    def __init__(self, folder: Path, note=print) -> None:
        self.jsonl = open(folder / "log.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(folder / "tb"))
        except ImportError:
            self.tb = None
            note("tensorboard not installed: metrics go to log.jsonl only (pip install tensorboard)")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        if self.tb is not None:
            self.tb.add_image(name, image, step, dataformats="HWC")
            self.tb.flush()

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
