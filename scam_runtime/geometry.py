"""Frames of any size and aspect to the model's resolution and back.

`letterbox` (training's) scales the whole frame to fit and pads (image black, labels
background): every plate pixel can be replaced. `crop` scales to fill and cuts the
overflow centrally: more model pixels on the subject, but plate pixels outside the crop
keep the plate whatever the composite mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

FIT_MODES = ("letterbox", "crop")


@dataclass(frozen=True)
class Fit:
    """Where the frame lands in the model's `model_h × model_w` canvas."""
    frame_h: int
    frame_w: int
    model_h: int
    model_w: int
    scaled_h: int      # the frame once scaled
    scaled_w: int
    top: int           # offset of the scaled frame in the canvas (negative when cropping)
    left: int

    @classmethod
    def compute(cls, frame_hw: tuple[int, int], model_hw: tuple[int, int], mode: str = "letterbox") -> "Fit":
        if mode not in FIT_MODES:
            raise ValueError(f"fit must be one of {', '.join(FIT_MODES)}, got {mode!r}")
        (fh, fw), (mh, mw) = frame_hw, model_hw
        scale = (min if mode == "letterbox" else max)(mh / fh, mw / fw)
        sh, sw = max(1, round(fh * scale)), max(1, round(fw * scale))
        return cls(fh, fw, mh, mw, sh, sw, (mh - sh) // 2, (mw - sw) // 2)

    def _window(self) -> tuple[int, int, int, int, int, int]:
        """(canvas row, canvas column, scaled row, scaled column, height, width): the part of
        the scaled frame that lands in the canvas."""
        y0, x0 = max(self.top, 0), max(self.left, 0)
        sy0, sx0 = max(-self.top, 0), max(-self.left, 0)
        h = max(0, min(self.model_h - y0, self.scaled_h - sy0))
        w = max(0, min(self.model_w - x0, self.scaled_w - sx0))
        return y0, x0, sy0, sx0, h, w

    def _place(self, scaled: np.ndarray, fill: float | int) -> np.ndarray:
        canvas = np.full((self.model_h, self.model_w, *scaled.shape[2:]), fill, dtype=scaled.dtype)
        y0, x0, sy0, sx0, h, w = self._window()
        canvas[y0:y0 + h, x0:x0 + w] = scaled[sy0:sy0 + h, sx0:sx0 + w]
        return canvas

    def image_to_model(self, frame: np.ndarray) -> np.ndarray:
        """uint8 H×W×3 frame -> float32 3×h×w model input in [-1, 1]. Only the part of the
        frame the canvas shows is resampled (a small person framed closely would otherwise
        scale a whole plate up); the whole frame, when it all lands, exactly as before."""
        y0, x0, sy0, sx0, h, w = self._window()
        canvas = np.zeros((self.model_h, self.model_w, 3), np.uint8)
        if (h, w) == (self.scaled_h, self.scaled_w):
            canvas[y0:y0 + h, x0:x0 + w] = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))
        elif h and w:
            fy, fx = self.frame_h / self.scaled_h, self.frame_w / self.scaled_w
            window = (sx0 * fx, sy0 * fy, (sx0 + w) * fx, (sy0 + h) * fy)
            canvas[y0:y0 + h, x0:x0 + w] = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR,
                                                                                     box=window))
        return (canvas.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)

    def labels_to_model(self, labels: np.ndarray) -> np.ndarray:
        """H×W label ids (8- or 16-bit) -> int32 h×w (nearest), padding as background. Picks
        the pixels Pillow's nearest resize picks, by index, instead of converting the whole map
        for Pillow (0.3–0.4 ms less CPU per 576×576 frame in a video's reader thread)."""
        if labels.shape != (self.frame_h, self.frame_w):  # indices would pick the wrong pixels
            raise ValueError(f"label map is {labels.shape[-1]}x{labels.shape[0]}, the frame "
                             f"{self.frame_w}x{self.frame_h}")
        y0, x0, sy0, sx0, h, w = self._window()
        rows = _nearest_index(self.frame_h, self.scaled_h)[sy0:sy0 + h]
        cols = _nearest_index(self.frame_w, self.scaled_w)[sx0:sx0 + w]
        canvas = np.zeros((self.model_h, self.model_w), np.int32)
        canvas[y0:y0 + h, x0:x0 + w] = labels[rows[:, None], cols]
        return canvas

    def valid_region(self) -> tuple[slice, slice, slice, slice]:
        """(model rows, model cols, frame rows, frame cols) that correspond to each other."""
        y0, x0 = max(self.top, 0), max(self.left, 0)
        y1, x1 = min(self.top + self.scaled_h, self.model_h), min(self.left + self.scaled_w, self.model_w)
        fy0 = round((y0 - self.top) * self.frame_h / self.scaled_h)
        fx0 = round((x0 - self.left) * self.frame_w / self.scaled_w)
        fy1 = round((y1 - self.top) * self.frame_h / self.scaled_h)
        fx1 = round((x1 - self.left) * self.frame_w / self.scaled_w)
        return slice(y0, y1), slice(x0, x1), slice(fy0, fy1), slice(fx0, fx1)

    def image_to_frame(self, generated: np.ndarray, box: tuple[slice, slice] | None = None
                       ) -> tuple[np.ndarray, tuple[slice, slice]]:
        """float 3×h×w output in [-1, 1] -> (uint8 image of the covered frame region, its slices),
        or of `box` only (frame slices inside that region): PIL resamples just that window, each
        value within one code of the whole region's resample."""
        my, mx, fy, fx = self.valid_region()
        rgb = np.clip((generated.transpose(1, 2, 0)[my, mx] + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
        size = (fx.stop - fx.start, fy.stop - fy.start)
        if box is None or box == (fy, fx):
            if rgb.shape[1::-1] != size:
                rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
            return rgb, (fy, fx)
        by, bx = box
        (y0, y1), (x0, x1) = (by.start - fy.start, by.stop - fy.start), (bx.start - fx.start, bx.stop - fx.start)
        if rgb.shape[1::-1] == size:
            return rgb[y0:y1, x0:x1], box
        sx, sy = rgb.shape[1] / size[0], rgb.shape[0] / size[1]
        window = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        return np.asarray(Image.fromarray(rgb).resize((x1 - x0, y1 - y0), Image.BILINEAR, box=window)), box


@lru_cache(maxsize=64)
def _nearest_index(size: int, scaled: int) -> np.ndarray:
    """The source index of each of `scaled` samples as Pillow's nearest resize of `size`
    samples picks it (its scaling is separable, so one line of indices run through Pillow
    gives its exact rounding: label maps stay those the model was trained on)."""
    line = Image.fromarray(np.arange(size, dtype=np.int32)[None])
    index = np.asarray(line.resize((scaled, 1), Image.NEAREST))[0].astype(np.intp)
    index.setflags(write=False)
    return index
