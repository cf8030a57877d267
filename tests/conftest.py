"""Shared fixtures: the `../shared` folder beside the repository, small configs."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT.parent / "shared").resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """`../shared` from the repo root; CI has it, so its absence is an error, not a skip."""
    if not (SHARED / "spec").is_dir():
        pytest.fail(f"{SHARED} not found: clone the project beside its shared/ folder")
    return SHARED
