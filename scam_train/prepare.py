"""`scam-train prepare`: a plain folder of photos → the training folder format, labelled
by a parser; the photos are copied as they are. Torch-free: it runs in a runtime-only
install, the one where the mediapipe extra fits."""
from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from scam_runtime.atomic import atomic_path, write_image
from scam_runtime.labels import IMAGE_EXTS, read_image
from scam_runtime.parsers import ParserOptions, get_parser

from .errors import DataError
from .schemes import load_scheme


def _check_photo(photo: Path) -> None:
    try:
        with Image.open(photo) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"{photo}: unreadable photo ({exc}); nothing was written") from None


def prepare_folder(images: Path, out: Path, parser_name: str = "auto", keep: str = "largest",
                   each: Callable[[int], None] = lambda total: None) -> int:
    """Label every photo of `images` into `out/images` + `out/labels` (bfb3 ids); returns the count.

    Photos already labelled in `out` are skipped, so an interrupted run can simply be repeated.
    """
    photos = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTS) if images.is_dir() else []
    if not photos:
        raise DataError(f"{images}: no photos ({', '.join(IMAGE_EXTS)}) in this folder")
    dupes = {stem for stem, n in Counter(p.stem for p in photos).items() if n > 1}
    if dupes:
        raise DataError(f"{images}: several photos share the name {sorted(dupes)[0]} (labels are NAME.png)")
    for photo in photos:  # every photo readable before anything is created
        _check_photo(photo)
    labels = tuple(load_scheme("bfb3").labels)
    parser = get_parser(parser_name, labels, ParserOptions(keep=keep))
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    for photo in photos:
        target = out / "labels" / f"{photo.stem}.png"
        if not target.exists():
            image = read_image(photo)
            ids = parser(image).astype(np.uint8)
            copy = out / "images" / photo.name
            with atomic_path(copy) as tmp:
                shutil.copyfile(photo, tmp)
            write_image(target, ids)  # the label last: its presence marks a finished photo
        each(len(photos))
    return len(photos)
