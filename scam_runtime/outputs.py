"""Where results go: the default name beside the input, and the checks that keep every
input, and every earlier result, from being written over unless asked (`--overwrite`)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import OutputError, UsageError
from .media import SEQUENCE_PATTERN

SUFFIX = "scam"


def default_output(source: str | Path) -> str:
    """`in.mp4` → `in.scam.mp4`, `photo.png` → `photo.scam.png`, `plate.%04d.exr` → `plate_scam.%04d.exr`."""
    path = Path(source)
    m = SEQUENCE_PATTERN.search(path.name)
    if m is None:
        return str(path.with_name(f"{path.stem}.{SUFFIX}{path.suffix}"))
    prefix = path.name[:m.start()]
    core = prefix.rstrip("._-")
    separator = prefix[len(core):] or "."
    return str(path.with_name(f"{core + '_' if core else ''}{SUFFIX}{separator}{path.name[m.start():]}"))


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def guard_file(output: Path, inputs: Iterable[Path], overwrite: bool, option: str = "-o") -> None:
    """Refuse an output that is one of the inputs (always) or an existing file (without overwrite)."""
    for source in inputs:
        if _same(output, source):
            raise UsageError(f"{output}: {option} is also an input ({source}); choose another output name")
    if output.exists() and not overwrite:
        raise UsageError(f"{output}: exists; pass --overwrite to replace it")


def guard_sequence(pattern: str, numbers: Iterable[int], inputs: Iterable[Path], overwrite: bool,
                   resume: bool, option: str = "-o") -> None:
    """An output pattern: none of its frames may be an input; existing frames need --resume or --overwrite."""
    sources = list(inputs)
    existing = []
    for number in numbers:
        target = Path(pattern % number)
        for source in sources:
            if _same(target, source):
                raise UsageError(f"{pattern}: {option} frame {target} is also an input ({source}); "
                                 f"choose another output pattern")
        if target.exists():
            existing.append(target)
    if existing and not (overwrite or resume):
        raise UsageError(f"{existing[0]}: exists ({len(existing)} frame{'s' * (len(existing) > 1)} of {pattern}); "
                         f"pass --resume to keep them or --overwrite to replace them")


def guard_folder(path: str | Path, option: str = "-o") -> None:
    """The folder an output (or a pattern's frames) goes to exists and takes files: checked
    before any work, so a run never fails at its first frame for want of it."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise OutputError(f"{folder}: the folder of {option} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{folder}: the folder of {option} is not writable")
