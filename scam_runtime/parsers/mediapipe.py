"""The `mediapipe` parser (extra `[mediapipe]`, pinned to 0.10.14: the last release whose
wheel bundles its models, so it works offline).

Person: with `keep="largest"` (the subject) the pose model's segmentation mask, which
covers the one person it tracks, or the selfie model's where no pose is found; with
`keep="all"` the selfie segmentation model, which covers everyone. One-off measurement,
person IoU: on people/pose.jpg pose 0.955 vs selfie 0.891; on people/three_people.jpg
selfie 0.912, while the pose mask covers one of the three (0.327). Face: person pixels inside the
face detector's box widened for hair and hats (½ box width each side, ¾ box height above,
¼ below). Body: every other person pixel. Then the built-in head refiner re-parses the
crop around that face region (`ParserOptions(refine=False)` turns it off), which replaces
the box-shaped face with hair and face skin.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator

import numpy as np

from ..errors import LabelError, UsageError
from ..geometry import Fit
from .base import ParserOptions, ProbabilityParser
from .onnx import builtin_refiners

FACE_GROW = (0.5, 0.75, 0.25)  # sideways, above, below, in face-box widths/heights
# mediapipe 0.10.14's protobuf use warns on every first graph run of a deprecation that is
# its own, not the user's
warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated", category=UserWarning)


@contextlib.contextmanager
def _native_logs_held() -> Iterator[None]:
    """mediapipe's C++ side (TFLite, absl) writes INFO/WARNING lines straight to file
    descriptor 2 from the graphs' own threads while they are built and first run: noise in
    every run's output, held here and shown only if what it accompanies fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class MediapipeParser(ProbabilityParser):
    def __init__(self, labels: tuple[str, ...], options: ParserOptions = ParserOptions()) -> None:
        super().__init__(options)
        try:
            import mediapipe as mp
        except ImportError:
            raise UsageError("--parser mediapipe needs the mediapipe extra: pip install 'scam[mediapipe]' "
                             "(mediapipe==0.10.14)") from None
        missing = [n for n in ("background", "face", "body") if n not in labels]
        if missing:
            raise LabelError(f"parser 'mediapipe' makes background/face/body labels; the bundle lacks {missing}")
        self.ids = [labels.index(n) for n in ("background", "face", "body")]
        self.num_labels = len(labels)
        solutions = mp.solutions
        with _native_logs_held():  # built, and each graph run once, while its threads log
            self.pose = solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)
            self.selfie = solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
            self.faces = solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
            blank = np.zeros((64, 64, 3), np.uint8)
            for graph in (self.pose, self.selfie, self.faces):
                graph.process(blank)
        self._lock = threading.Lock()  # mediapipe graphs are not re-entrant
        self.provider = "cpu"
        self.refiners = builtin_refiners(labels, options)

    def _canvas_probabilities(self, image: np.ndarray) -> tuple[np.ndarray, Fit]:
        h, w = image.shape[:2]
        with self._lock:
            person = self.pose.process(image).segmentation_mask if self.options.keep == "largest" else None
            if person is None:
                person = self.selfie.process(image).segmentation_mask
            detections = self.faces.process(image).detections or []
        person = np.clip(np.asarray(person, np.float32), 0, 1)
        face_zone = np.zeros((h, w), bool)
        for det in detections:
            box = det.location_data.relative_bounding_box
            x0, y0, bw, bh = box.xmin * w, box.ymin * h, box.width * w, box.height * h
            side, above, below = FACE_GROW
            ys = slice(max(0, int(y0 - above * bh)), min(h, int(y0 + bh * (1 + below)) + 1))
            xs = slice(max(0, int(x0 - side * bw)), min(w, int(x0 + bw * (1 + side)) + 1))
            face_zone[ys, xs] = True
        probs = np.zeros((self.num_labels, h, w), np.float32)
        probs[self.ids[0]] = 1 - person
        probs[self.ids[1]] = person * face_zone
        probs[self.ids[2]] = person * ~face_zone
        return probs, Fit.compute((h, w), (h, w), "letterbox")
