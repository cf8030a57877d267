"""Failures a user can act on, each with its own exit code for scripts and render farms."""
from __future__ import annotations


class RuntimeFailure(Exception):
    """Base: `str(exc)` is the one-line message (file and problem); `exit_code` is distinct."""
    exit_code = 1


class UsageError(RuntimeFailure):
    """A command that, as typed, would destroy data or cannot mean anything (click's own are 2 too)."""
    exit_code = 2


class InputError(RuntimeFailure):
    """Missing or unreadable input, or no video stream."""
    exit_code = 10


class LabelError(RuntimeFailure):
    """Label maps missing, mismatched, or with ids outside the bundle's labels."""
    exit_code = 11


class BundleFailure(RuntimeFailure):
    """The bundle is missing, corrupt or altered."""
    exit_code = 12


class ProviderFailure(RuntimeFailure):
    """The requested execution provider is unavailable."""
    exit_code = 13


class OutputError(RuntimeFailure):
    """The output cannot be written."""
    exit_code = 14


class StageError(RuntimeFailure):
    """A processing stage (parser, networks, compositing) failed for a reason that is neither
    the input nor the output: a bug, or the machine (out of memory). The message names the
    stage and the frame."""
    exit_code = 15
