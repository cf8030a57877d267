"""An image sequence back into a movie with a plate's timing and audio: the last step of a
chunked farm job, and usable alone. Frame N of the sequence is the plate's N-th frame
(0-based, as `scam-run video --frames` numbers video frames); every one must be there."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .errors import InputError
from .media import Encoding, FrameRange, SequenceReader, VideoReader, VideoWriter


def assemble_sequence(pattern: str, plate: Path, output: Path, encoding: Encoding = Encoding(),
                      audio: str = "copy", each: Callable[[int], None] = lambda n: None) -> int:
    """Encode `pattern`'s frames at `plate`'s frame rate, time base and timestamps, with its
    audio packets copied; returns the frame count. Written to a partial name, renamed when
    complete; a missing or extra frame is an error before anything is written."""
    sequence = SequenceReader(pattern)
    reader = VideoReader(plate)
    try:
        numbers = [number for number, _ in sequence.files]
        expected = range(reader.count or numbers[-1] + 1)
        missing = sorted(set(expected) - set(numbers))
        if missing:
            raise InputError(f"{pattern}: frame {missing[0]} is missing ({len(missing)} of {len(expected)}; "
                             f"frame N is {plate.name}'s frame N, from 0)")
        if numbers[-1] >= len(expected):
            raise InputError(f"{pattern}: has frames {plate.name} has not ({numbers[-1]} > {len(expected) - 1})")
        images = sequence.frames(FrameRange())
        writer = VideoWriter(output, reader, encoding, audio)
        written = 0
        try:
            for frame in reader.frames(FrameRange()):
                image = next(images, None)
                if image is None:
                    raise InputError(f"{pattern}: ends at frame {written - 1}; {plate.name} goes on")
                if image.image.shape[:2] != frame.image.shape[:2]:
                    raise InputError(f"{sequence.files[written][1]}: {image.image.shape[1]}x{image.image.shape[0]}, "
                                     f"the plate is {frame.image.shape[1]}x{frame.image.shape[0]}")
                writer.write_image(frame, image.image)
                written += 1
                each(written)
            if next(images, None) is not None:
                raise InputError(f"{pattern}: has more frames than {plate.name} ({written})")
        except BaseException:
            writer.abort()
            raise
        writer.finish()
        return written
    finally:
        reader.close()
