"""Accumulated wall and CPU time per stage, for profiling a pipeline from the outside."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator


class StageTimes:
    """`with times.stage("encode"): ...` adds the block's wall seconds to `times.seconds["encode"]`
    and the CPU seconds of the thread that ran it to `times.cpu_seconds["encode"]` (a native
    pool's other threads are not counted: ONNX Runtime's or OpenVINO's beyond the caller)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.cpu_seconds.clear()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[name] += time.perf_counter() - start
                self.cpu_seconds[name] += time.thread_time() - cpu
