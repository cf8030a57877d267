"""`SubjectReplacer`: encode a subject once, then put it into frames (numpy in, numpy out)."""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

from .backend import BackendOptions
from .bundle import Bundle, BundleError
from .colour import ColourPath, frame_colour
from .composite import COMPOSITE_MODES, blend_patch, matte_box, person_matte
from .engines import open_sessions
from .errors import BundleFailure, InputError, LabelError, UsageError
from .framing import FRAMINGS, BoxSmoother, person_box, separate_people, subject_fit
from .geometry import Fit
from .labels import check_labels
from .timing import StageTimes

SUBJECT_FORMAT = "scam-subject-1"
PEOPLE_MODES = ("each", "together")


@dataclass(frozen=True)
class Subject:
    """A subject's latents (m×d), which labels it shows, and the encoder that made them."""
    latents: np.ndarray
    present: tuple[str, ...]
    encoder_sha256: str

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, format=SUBJECT_FORMAT, latents=self.latents.astype(np.float32),
                            present=np.array(self.present), encoder_sha256=self.encoder_sha256)

    @classmethod
    def load(cls, path: str | Path) -> "Subject":
        hint = "not a scam subject file (make one with scam-run encode-subject"
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: {hint}; {type(exc).__name__})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: {hint}; a single array)")
        with data:
            try:
                if str(data["format"]) != SUBJECT_FORMAT:
                    raise InputError(f"{path}: {hint})")
                return cls(data["latents"], tuple(str(s) for s in data["present"]), str(data["encoder_sha256"]))
            except (KeyError, ValueError) as exc:
                raise InputError(f"{path}: {hint}; {type(exc).__name__})") from None


@dataclass(frozen=True)
class Result:
    composite: np.ndarray   # the plate with the subject, in the frame's pixel type and colourspace
    matte: np.ndarray       # float32 H×W in [0, 1], where `composite` took generated pixels
    labels: np.ndarray      # int32 H×W, the frame's label map
    _generated: Callable[[], np.ndarray] = field(repr=False, compare=False)

    @cached_property
    def generated(self) -> np.ndarray:
        """uint8 sRGB H×W×3, the generator's image at frame size (plate where not covered).
        Made on first use: compositing reads only the matte's box of it (a person fills a
        fraction of a plate, and the whole upscale was a third of compositing's time)."""
        return self._generated()


class Crop(NamedTuple):
    """One model canvas of a frame: where it lies, the networks' inputs, and the person
    pixels it composites (None: every person of the frame)."""
    fit: Fit
    image: np.ndarray                 # float32 3×h×w in [-1, 1], model resolution
    model_labels: np.ndarray          # int32 h×w
    people: np.ndarray | None = None  # bool H×W


class Prepared(NamedTuple):
    """A frame ready for the networks."""
    frame: np.ndarray         # as given, in its own pixel type and colourspace
    display: np.ndarray       # uint8 sRGB of the frame (the frame itself when uint8 sRGB)
    colour: ColourPath        # the frame's colourspace: how it became `display`, how the result goes back
    labels: np.ndarray        # the frame's label map, checked
    crops: tuple[Crop, ...]   # one canvas, or one per person (`ReplaceOptions.people`)


class Generated(NamedTuple):
    """A frame whose generation is done but not yet composited."""
    prepared: Prepared              # the frame, its label map and canvases, as the networks got them
    images: tuple[np.ndarray, ...]  # the generator's float32 3×h×w in [-1, 1] per canvas


@dataclass(frozen=True)
class ReplaceOptions:
    fit: str = "subject"            # subject | letterbox | crop (see framing, geometry)
    composite: str = "masked"       # masked | full
    feather: float = 2.0            # matte softness, px
    keep: tuple[str, ...] = ()      # labels whose latents stay the frame's (e.g. "body")
    temporal: str = "per-frame"     # per-frame | ema=ALPHA | first: background latents over frames
    people: str = "each"            # subject framing of several people: a canvas each | one for all

    def __post_init__(self) -> None:
        if self.fit not in FRAMINGS:
            raise UsageError(f"fit must be one of {', '.join(FRAMINGS)}, got {self.fit!r}")
        if self.people not in PEOPLE_MODES:
            raise UsageError(f"people must be one of {', '.join(PEOPLE_MODES)}, got {self.people!r}")
        if self.composite not in COMPOSITE_MODES:
            raise UsageError(f"composite must be one of {', '.join(COMPOSITE_MODES)}, got {self.composite!r}")
        self.ema_alpha  # validates `temporal`

    @property
    def ema_alpha(self) -> float | None:
        """Weight of the current frame in `ema=ALPHA`; None for the other modes."""
        if self.temporal in ("per-frame", "first"):
            return None
        if self.temporal.startswith("ema="):
            try:
                alpha = float(self.temporal[4:])
            except ValueError:
                alpha = -1.0
            if 0 < alpha <= 1:
                return alpha
        raise UsageError(f"--temporal must be per-frame, first or ema=ALPHA with 0 < ALPHA <= 1, got {self.temporal!r}")


@dataclass
class _Temporal:
    background: dict[int, np.ndarray] = field(default_factory=dict)  # per canvas of a frame, left to right
    lock: threading.Lock = field(default_factory=threading.Lock)


class SubjectReplacer:
    """Replaces the person in frames by an encoded subject, keeping each frame's background.

    `bundle` defaults to the one shipped with scam. Latent mixing: the frame's background
    latents, every other label's from the subject, except labels in `options.keep`.
    Sessions are created once; an instance is safe to use from several threads (temporal
    state is updated under a lock, in call order).
    """

    def __init__(self, bundle: Bundle | str | Path | None = None, options: ReplaceOptions = ReplaceOptions(),
                 backend: BackendOptions = BackendOptions(),
                 warn: Callable[[str], None] = lambda m: warnings.warn(m, stacklevel=3)) -> None:
        try:
            self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
            self.encoder, self.generator = open_sessions(self.bundle, backend, warn)
        except BundleError as exc:
            raise BundleFailure(str(exc)) from None
        if self.bundle.labels[0] in options.keep:
            raise UsageError(f"--keep {self.bundle.labels[0]}: the background always stays the frame's; --keep "
                             f"takes {', '.join(self.bundle.labels[1:])}")
        unknown = set(options.keep) - set(self.bundle.labels[1:])
        if unknown:
            raise UsageError(f"--keep: unknown label(s) {', '.join(sorted(unknown))}; the bundle's labels are "
                             f"{', '.join(self.bundle.labels)}")
        self.options, self.backend = options, backend
        self._sources = {name: "frame" if i == 0 or name in options.keep else "subject"
                         for i, name in enumerate(self.bundle.labels)}
        self.warn = warn
        self._temporal = _Temporal()
        self._warned: set[str] = set()
        self.times = StageTimes()  # seconds per stage, accumulated over calls
        self.encoder_sha256 = self.bundle.manifest["files"][self.bundle.encoder.file]

    @property
    def provider(self) -> str:
        """The execution provider actually running the graphs."""
        return self.generator.provider

    def expect_batch(self, batch: int) -> None:
        """Ready both graphs for `batch` frames per run (OpenVINO compiles each size once, 0.5–1.1
        s per graph here: better before a video's first batch than inside it)."""
        self.encoder.expect_batch(batch)
        self.generator.expect_batch(batch)

    def mix_sources(self) -> dict[str, str]:
        """Where each label's latents come from: 'frame' or 'subject'."""
        return dict(self._sources)

    def prepare_frame(self, frame: np.ndarray, labels: np.ndarray, source: str | None = None,
                      display: np.ndarray | None = None, name: str = "image",
                      smoother: BoxSmoother | None = None, colour: ColourPath | str | None = None,
                      one_canvas: bool = False) -> Prepared:
        """A frame and its label map at the model's resolution, checked. Separate from
        `generate_prepared` so a video's reader thread does it beside the networks.
        `source` names the label map in messages (its file), `name` the frame; `display`: see
        `generate_batch`; `smoother`: a video's person box over time (`subject` framing);
        `colour`: the frame's colourspace (a `ColourPath`, or a name in the default OCIO
        config; None: uint8/uint16 sRGB-encoded, float the config's scene_linear);
        `one_canvas`: one canvas even for several people (a subject photo)."""
        with self.times.stage("prepare"):
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise InputError(f"{name}: expected an H×W×3 RGB array, got shape {frame.shape}")
            colour = frame_colour(frame, name, colour)
            display = display if display is not None else colour.display(frame)
            lab = check_labels(np.asarray(labels), len(self.bundle.labels), display.shape[:2],
                               source or "label map", self.warn)
            crops = tuple(Crop(fit, fit.image_to_model(display), fit.labels_to_model(lab), people)
                          for fit, people in self._canvases(display.shape[:2], lab, smoother, one_canvas))
            return Prepared(frame, display, colour, lab, crops)

    def _canvases(self, frame_hw: tuple[int, int], labels: np.ndarray, smoother: BoxSmoother | None,
                  one_canvas: bool) -> list[tuple[Fit, np.ndarray | None]]:
        """Where the frame lands in the canvas: around its person (`subject`, over time with
        `smoother`), around each of several people (`people="each"`: unsmoothed, so the
        smoother follows single-person frames only), or the whole frame."""
        model_hw = (self.bundle.height, self.bundle.width)
        if self.options.fit != "subject":
            return [(Fit.compute(frame_hw, model_hw, self.options.fit), None)]
        people = [] if one_canvas or self.options.people != "each" else separate_people(labels)
        if len(people) > 1:
            return [(subject_fit(frame_hw, model_hw, person_box(mask)), mask) for mask in people]
        box = person_box(labels) if smoother is None else smoother(person_box(labels))
        return [(Fit.compute(frame_hw, model_hw) if box is None else subject_fit(frame_hw, model_hw, box), None)]

    def encode_subject(self, image: np.ndarray, labels: np.ndarray, source: str | None = None) -> Subject:
        """Latents of the subject (its appearance); save with `Subject.save` to reuse.
        `source` names the label map in messages (its file)."""
        p = self.prepare_frame(image, labels, source, one_canvas=True)
        z = self.encoder.run(image=p.crops[0].image[None], labels=p.crops[0].model_labels[None])[0]
        present = tuple(n for i, n in enumerate(self.bundle.labels) if (p.labels == i).any())
        return Subject(z, present, self.encoder_sha256)

    def _check_subject(self, subject: Subject, frame_labels: Sequence[np.ndarray]) -> None:
        if subject.encoder_sha256 != self.encoder_sha256:
            raise InputError("the subject was encoded with another bundle's encoder; encode it again")
        if subject.latents.shape != (self.bundle.num_latents, self.bundle.latent_dim):
            raise InputError(f"subject latents are {subject.latents.shape}, the bundle needs "
                             f"{(self.bundle.num_latents, self.bundle.latent_dim)}")
        for i, name in enumerate(self.bundle.labels):
            if self._sources[name] == "subject" and name not in subject.present and name not in self._warned \
                    and any((lab == i).any() for lab in frame_labels):
                self._warned.add(name)
                self.warn(f"the subject shows no '{name}': its '{name}' latents carry no information about "
                          f"the subject (use --keep {name} to keep the frame's)")

    def _mix(self, z_frames: np.ndarray, subject: Subject, canvases: list[int]) -> np.ndarray:
        """The subject's latents where they go; the background's over time per canvas index
        (`canvases`: each row's canvas within its frame)."""
        z = z_frames.copy()
        for name, source in self._sources.items():
            if source == "subject":
                start, stop = self.bundle.latent_layout[name]
                z[:, start:stop] = subject.latents[start:stop]
        start, stop = self.bundle.latent_layout[self.bundle.labels[0]]
        with self._temporal.lock:  # background latents over time, in call order
            for b, canvas in enumerate(canvases):
                current = z[b, start:stop]
                state = self._temporal.background.get(canvas)
                if state is not None and self.options.temporal == "first":
                    current = state
                elif state is not None and self.options.ema_alpha is not None:
                    current = (1 - self.options.ema_alpha) * state + self.options.ema_alpha * current
                self._temporal.background[canvas] = current
                z[b, start:stop] = current
        return z

    def process(self, frame: np.ndarray, labels: np.ndarray, subject: Subject, source: str | None = None,
                display: np.ndarray | None = None, colour: ColourPath | str | None = None) -> Result:
        """One frame; `source` names its label map in messages (its file); `display`: see
        `generate_batch`; `colour`: the frame's colourspace (see `prepare_frame`)."""
        prepared = self.prepare_frame(frame, labels, source or "label map 0", display, "image 0", colour=colour)
        return self.finish(self.generate_prepared([prepared], subject)[0])

    def process_batch(self, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                      subject: Subject, colour: ColourPath | str | None = None) -> list[Result]:
        """Several frames (any sizes, one colourspace) in one encoder and one generator run."""
        return [self.finish(g) for g in self.generate_batch(frames, labels, subject, colour=colour)]

    def generate_batch(self, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                       subject: Subject, sources: Sequence[str | None] | None = None,
                       displays: Sequence[np.ndarray] | None = None,
                       colour: ColourPath | str | None = None) -> list[Generated]:
        """The model half of `process_batch`; `finish` each item (in any thread) for its Result.
        `displays`: the frames' uint8 sRGB views when the caller has them (a plate is read
        with one), so a frame is not converted a second time."""
        if len(frames) != len(labels):
            raise LabelError(f"{len(frames)} frames but {len(labels)} label maps")
        sources = sources or [None] * len(frames)
        return self.generate_prepared([
            self.prepare_frame(frame, lab, sources[i] or f"label map {i}", None if displays is None else displays[i],
                               f"image {i}", colour=colour)
            for i, (frame, lab) in enumerate(zip(frames, labels))], subject)

    def generate_prepared(self, items: Sequence[Prepared], subject: Subject) -> list[Generated]:
        """Both networks on prepared frames, every canvas of every frame in one run each."""
        self._check_subject(subject, [p.labels for p in items])
        crops = [c for p in items for c in p.crops]
        x, lab = np.stack([c.image for c in crops]), np.stack([c.model_labels for c in crops])
        with self.times.stage("encode"):
            z_frames = self.encoder.run(image=x, labels=lab)
        with self.times.stage("mix"):
            z = self._mix(z_frames, subject, [k for p in items for k in range(len(p.crops))]).astype(np.float32)
        with self.times.stage("generate"):
            generated = self.generator.run(labels=lab, latents=z)
        out, start = [], 0
        for p in items:
            out.append(Generated(p, tuple(generated[start:start + len(p.crops)])))
            start += len(p.crops)
        return out

    def finish(self, item: Generated) -> Result:
        """Back to the frame's size, then into the plate through the matte, canvas by canvas."""
        p = item.prepared
        with self.times.stage("composite"):
            out, matte, patches = p.frame, np.zeros(p.display.shape[:2], np.float32), []
            for crop, image in zip(p.crops, item.images):
                _, _, fy, fx = crop.fit.valid_region()
                own = np.zeros_like(matte)  # 0 outside what this canvas covered
                labels = p.labels if crop.people is None else np.where(crop.people, p.labels, 0)
                own[fy, fx] = 1.0 if self.options.composite == "full" else \
                    person_matte(labels, self.options.feather)[fy, fx]
                box = matte_box(own)
                patch = None if box is None else crop.fit.image_to_frame(image, box)[0]
                out = blend_patch(out, patch, own, box, p.colour)
                np.maximum(matte, own, out=matte)
                patches.append((box, patch))
            return Result(out, matte, p.labels, partial(_generated_image, item, patches))


def _generated_image(item: Generated, patches: list[tuple[tuple[slice, slice] | None, np.ndarray | None]]
                     ) -> np.ndarray:
    """`Result.generated`: each canvas's covered region upscaled, with the matte's boxes as
    compositing used them (a window's resample may differ from the whole region's by one
    code value); where canvases overlap, the later one's."""
    raw = item.prepared.display.copy()
    for crop, image in zip(item.prepared.crops, item.images):
        region, (fy, fx) = crop.fit.image_to_frame(image)
        raw[fy, fx] = region
    for box, patch in patches:
        if box is not None:
            raw[box] = patch
    return raw
