"""Progress for long jobs: a one-line bar on stderr, JSON lines for pipelines, or nothing."""
from __future__ import annotations

import json
import sys
import time
from typing import TextIO

PROGRESS_MODES = ("bar", "json", "none")


class Progress:
    def __init__(self, total: int | None, mode: str = "bar", stream: TextIO | None = None) -> None:
        self.total, self.mode, self.stream = total, mode, stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()

    def update(self, frame_number: int) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        fps = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / fps if self.total and fps else None
        if self.mode == "json":
            record = {"frame": frame_number, "done": self.done, "total": self.total, "fps": round(fps, 2),
                      "eta_s": None if eta is None else round(eta, 1)}
            self.stream.write(json.dumps(record) + "\n")
        elif self.mode == "bar":
            total = f"/{self.total}" if self.total else ""
            eta_text = f"  ETA {int(eta // 60)}:{int(eta % 60):02d}" if eta is not None else ""
            self.stream.write(f"\rframes {self.done}{total}  {fps:.2f} fps{eta_text}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.mode == "bar" and self.done:
            self.stream.write("\n")
            self.stream.flush()
