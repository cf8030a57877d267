"""`scam-run demo`: the main job on material shipped with the package, and a contact sheet
(subject, then plate over result for a few frames) to look at what it did."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from .atomic import write_image
from .errors import InputError
from .labels import read_image
from .media import why

DEMO_DIR = Path(__file__).resolve().parent / "demo"
CLIP = DEMO_DIR / "clip.mp4"
SUBJECT = DEMO_DIR / "subject.jpg"
OUTPUT_NAME = "demo.scam.mp4"
SHEET_NAME = "demo_contact_sheet.png"


def _frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    wanted, out = set(indices), {}
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i in wanted:
                    out[i] = frame.to_ndarray(format="rgb24")
                if i >= max(indices):
                    break
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: unreadable video ({why(exc)})") from None
    return out


def _fit_height(image: np.ndarray, height: int) -> Image.Image:
    pil = Image.fromarray(image)
    return pil.resize((max(1, round(pil.width * height / pil.height)), height), Image.LANCZOS)


def contact_sheet(plate: Path, result: Path, subject: Path, out: Path, columns: int = 4, height: int = 240) -> Path:
    """Subject on the left; for `columns` evenly spaced frames, the plate above the result."""
    with av.open(str(result)) as container:
        count = container.streams.video[0].frames or 0
    if count < 1:
        raise InputError(f"{result}: no frames to show")
    indices = sorted({round(i * (count - 1) / max(1, columns - 1)) for i in range(columns)})
    plates, results = _frames(plate, indices), _frames(result, indices)
    label_h, pad = 22, 6
    tiles = [(_fit_height(plates[i], height), _fit_height(results[i], height)) for i in indices]
    portrait = _fit_height(read_image(subject), 2 * height + label_h)
    width = portrait.width + sum(p.width for p, _ in tiles) + pad * (len(tiles) + 2)
    sheet = Image.new("RGB", (width, 2 * height + 2 * label_h + 3 * pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    x = pad
    draw.text((x, pad), "subject", fill=(235, 235, 235))
    sheet.paste(portrait, (x, pad + label_h))
    x += portrait.width + pad
    for index, (p, r) in zip(indices, tiles):
        draw.text((x, pad), f"plate, frame {index}", fill=(235, 235, 235))
        sheet.paste(p, (x, pad + label_h))
        draw.text((x, 2 * pad + label_h + height), f"result, frame {index}", fill=(235, 235, 235))
        sheet.paste(r, (x, 2 * pad + 2 * label_h + height))
        x += p.width + pad
    write_image(out, np.asarray(sheet))
    return out
