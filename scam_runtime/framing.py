"""Subject-centred framing: the model's canvas placed on the person, as the training photos
frame people, instead of the whole frame letterboxed into it.

The networks were trained on street-fashion photos whose person fills most of the height:
over CCP's 855 training photos, the person's box is 0.919 of the photo's height (median;
0.895–0.939 from the 10th to the 90th percentile), centred (its centre at 0.475 of the
width and 0.504 of the height). A 1920×1080 plate letterboxed into 128×85 gives a person
at half the plate's height about 24 model rows; framed like the training photos, 118.

Several people (a label map that keeps everyone) get one canvas each, in one batch
(`separate_people`; `ReplaceOptions.people`): side by side, one box around all of them is
wide, and the portrait canvas would show each person small (measured in
docs/runtime.md#framing-measured).

On video each frame is framed on its own box (chunks and resumed runs then equal one whole
run); `BoxSmoother` (`--box-smoothing`) smooths the box over frames with a one-euro filter
(Casiez et al., CHI 2012) on its centre and size, in units of the box's height: steady when
the person stands, little lag when they move fast; a cut (the new box far from the
smoothed one) starts afresh.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import FIT_MODES, Fit
from .parsers.base import person_regions

FRAMINGS = ("subject", *FIT_MODES)
"""The runtime's `--fit`: `subject` (the default) frames the person, the others the frame."""

SUBJECT_FILL = 0.92
"""The person's box height (or width, when that is tighter) as a fraction of the canvas."""

MIN_ZOOM = 1.1
"""Subject framing enlarges the person by at least this over the letterbox, or letterboxes:
CCP's own photos framed around their person reconstructed 0.3 dB worse than letterboxed
(`bench/framing.py` on 8 ccp-val-b photos, before this rule)."""

Box = tuple[float, float, float, float]
"""y0, x0, y1, x1 in frame pixels (ends exclusive)."""


def person_box(labels: np.ndarray) -> Box | None:
    """The box around every non-background pixel, or None when there is none."""
    rows, cols = np.flatnonzero(labels.any(axis=1)), np.flatnonzero(labels.any(axis=0))
    if rows.size == 0:
        return None
    return float(rows[0]), float(cols[0]), float(rows[-1] + 1), float(cols[-1] + 1)


PERSON_GAP = 0.1
"""Person regions whose boxes, grown by this fraction of their height, overlap are one person
(a head the parser cut off its body, a hand): only clearly apart people get their own canvas."""

MIN_PERSON = 0.1
"""A region under this fraction of the largest is a speck or a limb, and joins the nearest person."""


def separate_people(labels: np.ndarray) -> list[np.ndarray]:
    """Boolean H×W masks of the people of a label map, left to right: its 4-connected person
    regions, merged where their grown boxes overlap, specks joined to the nearest person.
    One mask (every person pixel) when there is one person; none when there is nobody."""
    regions, count = person_regions(labels != 0)
    if count <= 1:
        return [labels != 0] if count else []
    ys, xs = np.nonzero(regions)
    ids = regions[ys, xs]
    sizes = np.bincount(ids, minlength=count + 1)
    y0, x0 = np.full(count + 1, labels.shape[0]), np.full(count + 1, labels.shape[1])
    y1, x1 = np.zeros(count + 1, np.int64), np.zeros(count + 1, np.int64)
    np.minimum.at(y0, ids, ys)
    np.minimum.at(x0, ids, xs)
    np.maximum.at(y1, ids, ys + 1)
    np.maximum.at(x1, ids, xs + 1)
    big = [r for r in range(1, count + 1) if sizes[r] >= MIN_PERSON * sizes.max()]
    group = {r: r for r in big}

    def root(r: int) -> int:
        while group[r] != r:
            r = group[r]
        return r

    grow = {r: PERSON_GAP * (y1[r] - y0[r]) for r in big}
    for i, a in enumerate(big):
        for b in big[i + 1:]:
            g = grow[a] + grow[b]
            if y0[a] < y1[b] + g and y0[b] < y1[a] + g and x0[a] < x1[b] + g and x0[b] < x1[a] + g:
                group[max(root(a), root(b))] = min(root(a), root(b))
    members: dict[int, list[int]] = {}
    for r in big:
        members.setdefault(root(r), []).append(r)
    if len(members) == 1:
        return [labels != 0]
    centre = {r: ((y0[r] + y1[r]) / 2, (x0[r] + x1[r]) / 2) for r in range(1, count + 1)}
    for r in range(1, count + 1):
        if r not in group:  # a speck: with the person whose region centre is nearest
            nearest = min(big, key=lambda b: (centre[b][0] - centre[r][0]) ** 2 + (centre[b][1] - centre[r][1]) ** 2)
            members[root(nearest)].append(r)
    people = sorted(members.values(), key=lambda rs: min(x0[r] for r in rs))
    return [np.isin(regions, rs) for rs in people]


def subject_fit(frame_hw: tuple[int, int], model_hw: tuple[int, int], box: Box, fill: float = SUBJECT_FILL) -> Fit:
    """The canvas centred on `box`, scaled so the box fills `fill` of it (height, or width when
    the person is wider than the canvas's aspect); canvas pixels beyond the frame are padding.
    A frame whose letterbox already shows the person within `MIN_ZOOM` of that size (framed
    like a training photo) is letterboxed, as training saw its photos."""
    (fh, fw), (mh, mw) = frame_hw, model_hw
    y0, x0, y1, x1 = box
    scale = min(mh * fill / max(y1 - y0, 1.0), mw * fill / max(x1 - x0, 1.0))
    letterbox = Fit.compute(frame_hw, model_hw, "letterbox")
    if scale < MIN_ZOOM * letterbox.scaled_h / fh:
        return letterbox
    sh, sw = max(1, round(fh * scale)), max(1, round(fw * scale))
    cy, cx = (y0 + y1) / 2 * sh / fh, (x0 + x1) / 2 * sw / fw
    return Fit(fh, fw, mh, mw, sh, sw, round(mh / 2 - cy), round(mw / 2 - cx))


@dataclass(frozen=True)
class SmoothingOptions:
    """One-euro filter settings, per frame, in units of the box's height."""
    min_cutoff: float = 0.01     # cycles per frame where the person is still: lower is steadier
    beta: float = 0.5            # how fast the cutoff opens with speed: higher follows moves sooner
    d_cutoff: float = 0.3        # the speed estimate's own cutoff
    cut_iou: float = 0.3         # a new box overlapping the smoothed one less than this is a cut


def union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _alpha(cutoff: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau)  # one frame apart


def _iou(a: Box, b: Box) -> float:
    h = min(a[2], b[2]) - max(a[0], b[0])
    w = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(h, 0) * max(w, 0)
    either = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / either if either > 0 else 0.0


class BoxSmoother:
    """One video's person box over time: call it with each frame's box, in order; it returns
    the box to frame with, the smoothed one grown to hold this frame's (no limb is left
    outside the canvas, where nothing is generated)."""

    def __init__(self, options: SmoothingOptions = SmoothingOptions()) -> None:
        self.options = options
        self.state: np.ndarray | None = None     # centre y, centre x, height, width
        self.speed = np.zeros(4)

    def __call__(self, box: Box | None) -> Box | None:
        if box is None:
            return None if self.state is None else self._box()
        y0, x0, y1, x1 = box
        raw = np.array([(y0 + y1) / 2, (x0 + x1) / 2, y1 - y0, x1 - x0])
        if self.state is None or _iou(box, self._box()) < self.options.cut_iou:
            self.state, self.speed = raw, np.zeros(4)
            return box
        o = self.options
        unit = max(self.state[2], 1.0)  # speeds in box heights per frame: the same filter at any scale
        speed = (raw - self.state) / unit
        self.speed += _alpha(o.d_cutoff) * (speed - self.speed)
        cutoff = o.min_cutoff + o.beta * np.abs(self.speed)
        self.state = self.state + np.array([_alpha(c) for c in cutoff]) * (raw - self.state)
        return union(self._box(), box)

    def _box(self) -> Box:
        cy, cx, h, w = self.state
        return cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2
