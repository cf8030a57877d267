"""The one way the three CLIs end on a failure: one line on stderr, a documented exit code,
the traceback only with --debug; SIGTERM (render farms) handled like Ctrl-C."""
from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click


class Terminated(BaseException):
    """SIGTERM reached the process: stop like Ctrl-C; exit 143 (128 + 15). A BaseException,
    as KeyboardInterrupt is, so no `except Exception` on the way up turns it into a failure."""


def one_line(message: str, limit: int = 400) -> str:
    """A message as one line of at most `limit` characters (library errors span several)."""
    line = " ".join(message.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def fail(program: str, message: str, code: int, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc()
    click.echo(f"{program}: error: {one_line(message)}", err=True)
    sys.exit(code)


def _terminate(signum, frame) -> None:
    raise Terminated()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated` in the main thread, so `finally` and
    abort paths run (partial files removed) before the exit."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
