"""CCP photos as benchmark data, by reference to ../shared (never copied)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CCP = ROOT.parent / "shared" / "data" / "ccp"
SPLITS = ROOT / "scam_train" / "splits"


def split_names(name: str) -> list[str]:
    """Photo names of `scam_train/splits/NAME.txt` (ccp-train, ccp-val)."""
    return (SPLITS / f"{name}.txt").read_text().split()


def linked_split(names: list[str], labels_dir: str, folder: Path) -> Path:
    """A training-layout folder (images/, labels/) of symlinks to CCP photos and their maps in
    `labels_dir`: e.g. int8 calibration data that leaves the val photos out."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for name in names:
        (folder / "images" / f"{name}.jpg").symlink_to(CCP / "images" / f"{name}.jpg")
        (folder / "labels" / f"{name}.png").symlink_to(CCP / labels_dir / f"{name}.png")
    return folder
