"""Streaming subject replacement: decode, inference and encode overlap, memory stays bounded.

A reader thread decodes frames, loads their label maps and scales both to the model's
resolution, the calling thread runs the networks in batches, a writer thread composites and
encodes; bounded queues between them. The calling thread does nothing but the networks: with
them on one core (`--threads 1`) the other two threads share the second (docs/performance.md, "The runtime").

A failure anywhere ends the whole run within a poll interval of the stage that failed: every
wait on a queue gives up when the run stops, each stage's error is turned into the
`RuntimeFailure` that names the stage, the file and the frame (its exit code), and the
calling thread re-raises it after the threads are gone.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import write_image
from .errors import InputError, OutputError, RuntimeFailure, StageError
from .failure import one_line
from .framing import BoxSmoother
from .media import Frame, SequenceWriter, VideoWriter
from .progress import Progress
from .replacer import Result, Subject, SubjectReplacer
from .timing import StageTimes

POLL_S = 0.1    # how long a thread waits on a queue before looking whether the run stops
JOIN_S = 30.0   # how long a stopping run waits for a thread inside a native call (a decoder, a session)
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


class _Stopping(Exception):
    """The run is stopping (another stage failed, or the caller was interrupted): a worker
    leaves its loop quietly; the failure that stopped it is reported by the calling thread."""


@contextmanager
def _stage(failure: Callable[[str], RuntimeFailure]) -> Iterator[None]:
    """Turn an unexpected error of the stage inside into `failure(why)`, the stage's own
    RuntimeFailure (its exit code, and the file or frame it names); ours pass unchanged."""
    try:
        yield
    except (RuntimeFailure, _Stopping):
        raise
    except Exception as exc:
        raise failure(one_line(f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))) from exc


class _Worker(threading.Thread):
    """A stage's thread: its first error stops the run and is re-raised in the caller by `check`."""

    def __init__(self, target: Callable[[], None], name: str, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn, self._halt, self.error = target, stop, None

    def run(self) -> None:
        try:
            self._target_fn()
        except _Stopping:
            pass
        except BaseException as exc:  # handed to the calling thread
            self.error = exc
            self._halt.set()

    def check(self) -> None:
        if self.error is not None:
            raise self.error


class _Pipe:
    """A bounded queue whose waits call `check` every POLL_S, so no thread waits forever on a
    stage that has died."""

    def __init__(self, size: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=size)

    def put(self, item, check: Callable[[], None]) -> None:
        while True:
            try:
                self._queue.put(item, timeout=POLL_S)
                return
            except queue.Full:
                check()

    def get(self, check: Callable[[], None]):
        while True:
            try:
                return self._queue.get(timeout=POLL_S)
            except queue.Empty:
                check()


def _span(items: list) -> str:
    first, last = items[0][0].number, items[-1][0].number
    return f"frame {first}" if first == last else f"frames {first}-{last}"


def run_stream(replacer: SubjectReplacer, subject: Subject, frames: Iterator[Frame],
               labels_for: Callable[[Frame], np.ndarray], writer: VideoWriter | SequenceWriter,
               progress: Progress, batch: int = 1, extras: ExtraOutputs = ExtraOutputs(),
               depth: int = 8, times: StageTimes | None = None, smoother: BoxSmoother | None = None,
               source: str = "input") -> int:
    """Process every frame; returns how many were written. On any error the writer is aborted
    and the error (a RuntimeFailure naming the stage, unless the caller was interrupted) is
    raised once the reader and writer threads have ended. `times` (default: the replacer's)
    accumulates decode, labels and write seconds. Each queue holds `depth` frames beyond a
    batch, so the reader fills the next batch and the writer drains the last one while the
    networks run. `smoother` (subject framing) follows the person box over the frames, in
    the reader thread, in order. `source` names the input in decoding errors."""
    times = times or replacer.times
    replacer.expect_batch(batch)
    inbox, outbox = _Pipe(batch + depth), _Pipe(batch + depth)
    stop = threading.Event()

    def stopping() -> None:
        if stop.is_set():
            raise _Stopping()

    def read() -> None:
        source_frames, last = iter(frames), None
        while True:
            stopping()
            where = "at the first frame" if last is None else f"after frame {last}"
            with times.stage("decode"), _stage(lambda why: InputError(f"{source}: decoding failed {where} ({why})")):
                frame = next(source_frames, None)
            if frame is None:
                inbox.put(_END, stopping)
                return
            last = frame.number
            with times.stage("labels"), _stage(lambda why: StageError(f"frame {frame.number}: the labels failed ({why})")):
                labels = labels_for(frame)
            with _stage(lambda why: StageError(f"frame {frame.number}: preparing failed ({why})")):
                prepared = replacer.prepare_frame(frame.pixels, labels, display=frame.image, smoother=smoother,
                                                      colour=frame.colour)
            inbox.put((frame, prepared), stopping)

    def write() -> None:
        while (item := outbox.get(stopping)) is not _END:
            frame, generated = item
            with _stage(lambda why: StageError(f"frame {frame.number}: compositing failed ({why})")):
                result = replacer.finish(generated)  # compositing overlaps the next inference
            with times.stage("write"), _stage(lambda why: OutputError(f"{_name(writer)}: frame {frame.number}: "
                                                                      f"writing failed ({why})")):
                writer.write(frame, result)
                extras.write(frame, result)
            progress.update(frame.number)

    reader, writer_thread = _Worker(read, "scam-reader", stop), _Worker(write, "scam-writer", stop)

    def check() -> None:
        """In the calling thread: a stage's failure, raised here."""
        reader.check()
        writer_thread.check()

    reader.start()
    writer_thread.start()
    written = 0
    try:
        pending: list = []
        while True:
            item = inbox.get(check)
            if item is not _END:
                pending.append(item)
            if pending and (item is _END or len(pending) == batch):
                with _stage(lambda why: StageError(f"{_span(pending)}: the networks failed ({why})")):
                    results = replacer.generate_prepared([p for _, p in pending], subject)
                for (frame, _), result in zip(pending, results):
                    outbox.put((frame, result), check)
                written += len(pending)
                pending = []
            if item is _END:
                break
        outbox.put(_END, check)
        while writer_thread.is_alive():
            writer_thread.join(POLL_S)
        check()
        if written == 0:  # nothing to deliver: no empty file under the output name
            writer.abort()
            return 0
        with _stage(lambda why: OutputError(f"{_name(writer)}: finishing failed ({why})")):
            writer.finish()
        return written
    except BaseException:
        stop.set()
        # a thread inside a decoder or a session finishes that call first; without the wait
        # the interpreter's exit could tear native threads down under it (abort, not 143)
        for thread in (writer_thread, reader):
            thread.join(JOIN_S)
        writer.abort()
        raise
    finally:
        progress.close()


def _name(writer: VideoWriter | SequenceWriter) -> str:
    return str(writer.path) if isinstance(writer, VideoWriter) else writer.pattern
