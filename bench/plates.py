"""Plate I/O and colour cost per frame: 2K DPX and EXR through OpenImageIO (`scam_runtime.plates`)
against the OpenEXR package (the EXR path before OpenImageIO), and OpenColorIO's conversions.

    python bench/plates.py [--rounds 7] [--width 2048 --height 1080]

Plates are made here from a real frame (../shared/data/video/pose_1.mp4's first frame,
resized): a 10-bit DPX (log, ADX10 in the studio config), and an ACEScg half-float RGBA EXR
(ZIP, the OpenEXR default). Each measurement runs once per round, rounds interleaved (this
VM's speed drifts over minutes); a cell is the median, in ms per frame. Colour: the whole
frame to the networks' 8-bit sRGB (`ColourPath.display`), and a generated patch of 40 % of
the frame (a person's matte box) back into the plate's space (`from_display`). The
"linear Rec.709" row is the table-lookup path that every float plate took before OCIO.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import av
import numpy as np
import OpenImageIO as oiio
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scam_runtime.colour import ColourOptions  # noqa: E402
from scam_runtime.plates import Plate, new_plate, read_plate, write_plate  # noqa: E402

STUDIO = "ocio://studio-config-latest"


def first_frame(width: int, height: int) -> np.ndarray:
    clip = ROOT.parent / "shared" / "data" / "video" / "pose_1.mp4"
    with av.open(str(clip)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1080)
    args = ap.parse_args()
    display = first_frame(args.width, args.height)
    studio = ColourOptions(ocio=STUDIO)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        exr = new_plate(display, "openexr", ColourOptions())  # ACEScg half
        exr_rgba = np.concatenate([exr.pixels, np.ones(exr.pixels.shape[:2] + (1,), np.float16)], -1)
        spec = oiio.ImageSpec(args.width, args.height, 4, "half")
        spec.channelnames = ("R", "G", "B", "A")
        spec.attribute("compression", "zip")
        exr = Plate(exr_rgba, spec, "openexr", exr.colour)
        write_plate(d / "in.exr", exr, exr.pixels)
        adx = studio.path(np.dtype(np.uint16), "ADX10")
        dpx_spec = oiio.ImageSpec(args.width, args.height, 3, "uint16")
        dpx_spec.attribute("oiio:BitsPerSample", 10)
        dpx_spec.attribute("dpx:Transfer", "Printing density")
        dpx = Plate(adx.to_dtype(adx.from_display(display)), dpx_spec, "dpx", adx)
        write_plate(d / "in.dpx", dpx, dpx.pixels)
        exr_in, dpx_in = read_plate(d / "in.exr"), read_plate(d / "in.dpx", studio)
        lin = ColourOptions("lin_rec709").path(np.dtype(np.float16))
        h, w = int(args.height * 0.8), int(args.width * 0.5)  # 40 % of the frame
        patch = np.ascontiguousarray(display[:h, :w])

        cases: dict[str, Callable[[], object]] = {
            "EXR read (OpenImageIO)": lambda: read_plate(d / "in.exr"),
            "EXR write (OpenImageIO)": lambda: write_plate(d / "out.exr", exr_in, exr_in.pixels),
            "DPX 10-bit read (OpenImageIO)": lambda: read_plate(d / "in.dpx", studio),
            "DPX 10-bit write (OpenImageIO)": lambda: write_plate(d / "out.dpx", dpx_in, dpx_in.pixels),
            "ACEScg EXR → sRGB, whole frame (OCIO)": lambda: exr_in.colour.display(exr_in.rgb),
            "ADX10 DPX → sRGB, whole frame (OCIO)": lambda: dpx_in.colour.display(dpx_in.rgb),
            "linear Rec.709 → sRGB, whole frame (tables)": lambda: lin.display(exr_in.rgb),
            "sRGB patch → ACEScg, 40 % (OCIO)": lambda: exr_in.colour.from_display(patch),
            "sRGB patch → ADX10, 40 % (OCIO)": lambda: dpx_in.colour.from_display(patch),
            "sRGB patch → linear Rec.709, 40 % (tables)": lambda: lin.from_display(patch),
        }
        try:
            import OpenEXR
        except ImportError:
            OpenEXR = None
            print("OpenEXR package not installed: its baseline rows are left out", file=sys.stderr)
        if OpenEXR is not None:
            def openexr_read() -> dict:
                with OpenEXR.File(str(d / "in.exr"), separate_channels=True) as f:
                    return {n: c.pixels for n, c in f.channels().items()}
            channels = openexr_read()

            def openexr_write() -> None:
                OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                             dict(channels)).write(str(d / "baseline.exr"))
            cases = {"EXR read (OpenEXR, before)": openexr_read, "EXR write (OpenEXR, before)": openexr_write,
                     **cases}
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                times[name].append(timed(fn))
    print(f"{args.width}×{args.height}, median of {args.rounds} interleaved rounds, ms per frame\n")
    print("| step | ms |\n|---|---|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.1f} |")
    med = {k: statistics.median(v) for k, v in times.items()}
    tables = med["linear Rec.709 → sRGB, whole frame (tables)"] + med["sRGB patch → linear Rec.709, 40 % (tables)"]
    for kind, space in (("EXR", "ACEScg"), ("DPX", "ADX10")):
        total = med[f"{space} {kind} → sRGB, whole frame (OCIO)"] + med[f"sRGB patch → {space}, 40 % (OCIO)"]
        print(f"\ncolour per frame, {kind} ({space}): {total:.1f} ms (linear Rec.709 tables: {tables:.1f} ms)")
    if OpenEXR is not None:
        read = med["EXR read (OpenImageIO)"] / med["EXR read (OpenEXR, before)"]
        write = med["EXR write (OpenImageIO)"] / med["EXR write (OpenEXR, before)"]
        print(f"EXR through OpenImageIO against OpenEXR: read {read:.2f}×, write {write:.2f}× the time")

if __name__ == "__main__":
    main()
