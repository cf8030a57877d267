"""Streaming subject replacement: decode, inference and encode overlap, memory stays bounded.

A reader thread decodes frames, loads their label maps and scales both to the model's
resolution, the calling thread runs the networks in batches, a writer thread composites and
encodes; bounded queues between them. The calling thread does nothing but the networks: with
them on one core (`--threads 1`) the other two threads share the second (README, "Runtime").
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .atomic import write_image
from .framing import BoxSmoother
from .media import Frame, SequenceWriter, VideoWriter
from .progress import Progress
from .replacer import Result, Subject, SubjectReplacer
from .timing import StageTimes

_END = object()


@dataclass(frozen=True)
class ExtraOutputs:
    """printf patterns of image sequences written beside the main output (None: off)."""
    matte: str | None = None
    labels: str | None = None
    raw: str | None = None

    def write(self, frame: Frame, result: Result) -> None:
        if self.matte:
            write_image(_path(self.matte, frame.number), np.round(result.matte * 255).astype(np.uint8))
        if self.labels:
            write_image(_path(self.labels, frame.number), result.labels.astype(np.uint8))
        if self.raw:
            write_image(_path(self.raw, frame.number), result.generated)


def _path(pattern: str, number: int) -> Path:
    return Path(pattern % number)


class _Worker(threading.Thread):
    """A thread whose exception is re-raised in the caller by `check`."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn, self.error = target, None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # handed to the main thread
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def run_stream(replacer: SubjectReplacer, subject: Subject, frames: Iterator[Frame],
               labels_for: Callable[[Frame], np.ndarray], writer: VideoWriter | SequenceWriter,
               progress: Progress, batch: int = 1, extras: ExtraOutputs = ExtraOutputs(),
               depth: int = 8, times: StageTimes | None = None, smoother: BoxSmoother | None = None) -> int:
    """Process every frame; returns how many were written. On any error the writer is aborted.
    `times` (default: the replacer's) accumulates decode, labels and write seconds. Each queue
    holds `depth` frames beyond a batch, so the reader fills the next batch and the writer
    drains the last one while the networks run. `smoother` (subject framing) follows the
    person box over the frames, in the reader thread, in order."""
    times = times or replacer.times
    replacer.expect_batch(batch)
    inbox: queue.Queue = queue.Queue(maxsize=batch + depth)
    outbox: queue.Queue = queue.Queue(maxsize=batch + depth)
    stop = threading.Event()

    def put(q: queue.Queue, item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            source = iter(frames)
            while not stop.is_set():
                with times.stage("decode"):
                    frame = next(source, None)
                if frame is None:
                    return
                with times.stage("labels"):
                    labels = labels_for(frame)
                put(inbox, (frame, replacer.prepare_frame(frame.pixels, labels, display=frame.image,
                                                          smoother=smoother)))
        finally:
            put(inbox, _END)

    def write() -> None:
        while True:
            item = outbox.get()
            if item is _END:
                return
            frame, generated = item
            result = replacer.finish(generated)  # compositing overlaps the next inference
            with times.stage("write"):
                writer.write(frame, result)
                extras.write(frame, result)
            progress.update(frame.number)

    reader, writer_thread = _Worker(read, "scam-reader"), _Worker(write, "scam-writer")
    reader.start()
    writer_thread.start()
    written = 0
    try:
        pending: list = []
        while True:
            item = None
            while item is None:
                try:
                    item = inbox.get(timeout=0.2)
                except queue.Empty:
                    reader.check()
                    writer_thread.check()
            if item is not _END:
                pending.append(item)
            if pending and (item is _END or len(pending) == batch):
                results = replacer.generate_prepared([p for _, p in pending], subject)
                for (frame, _), result in zip(pending, results):
                    while True:
                        try:
                            outbox.put((frame, result), timeout=0.2)
                            break
                        except queue.Full:
                            writer_thread.check()
                written += len(pending)
                pending = []
            if item is _END:
                break
        reader.check()
        outbox.put(_END)
        writer_thread.join()
        writer_thread.check()
        if written == 0:  # nothing to deliver: no empty file under the output name
            writer.abort()
            return 0
        writer.finish()
        return written
    except BaseException:
        stop.set()
        try:
            outbox.put_nowait(_END)
        except queue.Full:
            pass
        writer_thread.join(timeout=5)
        # the reader may be inside the decoder or a parser session: let it finish that frame,
        # or the interpreter's exit tears the native threads down under it (abort, not 143)
        reader.join(timeout=10)
        writer.abort()
        raise
    finally:
        progress.close()
