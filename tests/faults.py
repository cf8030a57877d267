"""Fault injection into one stage of the video pipeline, for tests/test_runtime_faults.py.

`install(stage, mode, setattr)` wraps the stage's function so that its call for the fourth
frame (index 3; the end of the clip for the stages called once) raises (`mode="raise"`: the stage's realistic error) or is busy for a second
per call from then on (`mode="busy"`, the state a SIGTERM meets), after touching `marker`.
Run as a script it installs the fault and then runs `scam-run` with the remaining arguments,
so the CLI is tested in its own process, signals and exit code included:

    python tests/faults.py STAGE MODE MARKER scam-run-arguments...
"""
from __future__ import annotations

import errno
import sys
import time
from collections.abc import Callable
from pathlib import Path

FAULT_AT = 3  # the frame index whose stage call fails

# stage: (owner, attribute, the call that fails: 1-based, counting the subject's own calls)
TARGETS = {
    "decode": ("scam_runtime.media:VideoReader", "frames", FAULT_AT + 1),
    "labels": ("scam_runtime.jobs", "read_labels", FAULT_AT + 2),        # the subject's label map first
    "prepare": ("scam_runtime.replacer:SubjectReplacer", "prepare_frame", FAULT_AT + 2),  # the subject first
    "networks": ("scam_runtime.replacer:SubjectReplacer", "generate_prepared", FAULT_AT + 1),
    "composite": ("scam_runtime.replacer:SubjectReplacer", "finish", FAULT_AT + 1),
    "write": ("scam_runtime.media:VideoWriter", "write", FAULT_AT + 1),
    "matte": ("scam_runtime.atomic:Image.Image", "save", FAULT_AT + 1),  # with --write-matte: the PNG writer
    "audio": ("scam_runtime.media:VideoWriter", "_copy_audio", 1),       # once, at the end
    "encoder": ("scam_runtime.media:VideoWriter", "finish", 1),
}

ERRORS = {  # what each stage raises: what the library under it raises in such a failure
    "decode": lambda: RuntimeError("injected decoder fault"),
    "labels": lambda: RuntimeError("injected parser fault"),
    "prepare": lambda: MemoryError("injected: out of memory"),
    "networks": lambda: RuntimeError("injected session fault\nwith a second line"),
    "composite": lambda: ValueError("injected compositing fault"),
    "write": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "matte": lambda: OSError(errno.EIO, "Input/output error"),
    "audio": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "encoder": lambda: RuntimeError("injected encoder fault"),
}


def _owner(spec: str):
    import importlib
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def install(stage: str, mode: str, setattr: Callable = setattr, marker: Path | None = None) -> None:
    """Wrap `stage`'s function: from the FAULT_AT-th frame on it raises or is busy."""
    spec, name, failing_call = TARGETS[stage]
    owner = _owner(spec)
    original = getattr(owner, name)
    calls = [0]

    def due() -> bool:
        calls[0] += 1
        if calls[0] < failing_call:
            return False
        if marker is not None:
            marker.touch()
        if mode == "raise":
            raise ERRORS[stage]()
        time.sleep(1.0)  # busy: a long native call, which returns
        return True

    if stage == "decode":  # a generator: the fault comes with the frame it would yield
        def frames(self, *args, **kwargs):
            for frame in original(self, *args, **kwargs):
                due()
                yield frame
        setattr(owner, name, frames)
        return

    def wrapped(*args, **kwargs):
        due()
        return original(*args, **kwargs)
    setattr(owner, name, wrapped)


if __name__ == "__main__":
    stage, mode, marker, *arguments = sys.argv[1:]
    install(stage, mode, marker=Path(marker))
    from scam_runtime.cli import main
    sys.argv = ["scam-run", *arguments]
    main()
