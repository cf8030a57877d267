"""Data for the built-in parser: labelled photos held in memory, augmented for video
conditions (scale, crop, rotation, flip, blur, colour, greyscale) into the parser's input canvas."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from scam_runtime.geometry import Fit
from scam_runtime.labels import read_image, read_labels
from scam_runtime.parsers import CropSpec, crop_padded

from .data import Pair, epoch_index
from .schemes import LabelScheme


@dataclass(frozen=True)
class ParserAugment:
    """Ranges of the random transforms; `none()` gives the plain letterboxed photo."""
    scale: tuple[float, float] = (0.4, 3.0)   # zoom relative to letterboxing the whole photo:
    #                                           small figures in wide frames up to head-and-shoulders
    rotate: float = 25.0                      # degrees, either way, half of the time
    backdrop: float = 0.5                     # probability of another photo behind (else black)
    flip: bool = True
    blur: float = 0.3                         # probability of a Gaussian blur (radius up to 2 px)
    colour: float = 0.35                      # brightness, contrast, saturation jitter
    grey: float = 0.05                        # probability of a greyscale frame
    crowd: float = 0.0                        # probability of 1-2 more people cut out of other photos in front:
    #                                           every person is `person` (photos label only their subject)

    @classmethod
    def none(cls) -> ParserAugment:
        return cls(scale=(1.0, 1.0), rotate=0.0, backdrop=0.0, flip=False, blur=0.0, colour=0.0, grey=0.0, crowd=0.0)


def _load(pair: Pair, scheme: LabelScheme, max_height: int) -> tuple[Image.Image, Image.Image]:
    labels = read_labels(pair.labels)
    image, ids = read_image(pair.image, labels.shape), scheme.apply(labels, pair.labels)
    im, lab = Image.fromarray(image), Image.fromarray(ids.astype(np.uint8))
    if im.height > max_height:  # keep memory small; the canvas is much smaller still
        size = (round(im.width * max_height / im.height), max_height)
        im, lab = im.resize(size, Image.BILINEAR), lab.resize(size, Image.NEAREST)
    return im, lab


def _finish(canvas: Image.Image, ids: Image.Image, a: ParserAugment,
            rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Blur, colour and greyscale (image only), then the tensors: [-1, 1] image and int64 ids."""
    if rng.random() < a.blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    if a.colour:
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            canvas = enhance(canvas).enhance(rng.uniform(1 - a.colour, 1 + a.colour))
    if rng.random() < a.grey:
        canvas = canvas.convert("L").convert("RGB")
    image = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 127.5 - 1
    return image, torch.from_numpy(np.asarray(ids).astype(np.int64))


class ParserDataset(torch.utils.data.Dataset):
    """(image 3×H×W float32 in [-1, 1], labels H×W int64) on the parser's canvas."""

    def __init__(self, pairs: list[Pair], scheme: LabelScheme, height: int, width: int,
                 augment: ParserAugment, seed: int = 0) -> None:
        self.height, self.width, self.augment, self.seed = height, width, augment, seed
        self.items = [_load(p, scheme, 2 * height) for p in pairs]
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def _backdrop(self, rng: random.Random) -> tuple[Image.Image, Image.Image]:
        """Another photo (with its labels) covering the canvas: zoomed-out photos then sit in
        a scene, as in real frames, instead of on black (people in it are labelled too)."""
        im, lab = self.items[rng.randrange(len(self.items))]
        scale = max(self.height / im.height, self.width / im.width) * rng.uniform(1.0, 2.0)
        w, h = max(self.width, round(im.width * scale)), max(self.height, round(im.height * scale))
        im, lab = im.resize((w, h), Image.BILINEAR), lab.resize((w, h), Image.NEAREST)
        x, y = rng.randint(0, w - self.width), rng.randint(0, h - self.height)
        box = (x, y, x + self.width, y + self.height)
        return im.crop(box), lab.crop(box)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = epoch_index(key, self.epoch)
        rng = random.Random(hash((self.seed, epoch, index)))
        a = self.augment
        if rng.random() < a.backdrop:
            canvas, ids = self._backdrop(rng)
        else:  # black, like the runtime's letterbox bars
            canvas, ids = Image.new("RGB", (self.width, self.height)), Image.new("L", (self.width, self.height))
        im, lab = self.items[index]
        fit = Fit.compute((im.height, im.width), (self.height, self.width), "letterbox")
        zoom = np.exp(rng.uniform(np.log(a.scale[0]), np.log(a.scale[1])))
        w, h = max(1, round(fit.scaled_w * zoom)), max(1, round(fit.scaled_h * zoom))
        im, lab = im.resize((w, h), Image.BILINEAR), lab.resize((w, h), Image.NEAREST)
        valid = Image.new("L", (w, h), 255)
        if a.rotate and rng.random() < 0.5:
            angle = rng.uniform(-a.rotate, a.rotate)
            im, lab, valid = (x.rotate(angle, m) for x, m in ((im, Image.BILINEAR), (lab, Image.NEAREST),
                                                               (valid, Image.NEAREST)))
        if a.flip and rng.random() < 0.5:
            im, lab, valid = (x.transpose(Image.FLIP_LEFT_RIGHT) for x in (im, lab, valid))
        # centred when plain, else anywhere that keeps some of the photo in view
        top = (self.height - h) // 2 if zoom == 1 else rng.randint(min(0, self.height - h), max(0, self.height - h))
        left = (self.width - w) // 2 if zoom == 1 else rng.randint(min(0, self.width - w), max(0, self.width - w))
        canvas.paste(im, (left, top), valid)
        ids.paste(lab, (left, top), valid)
        if rng.random() < a.crowd:
            for _ in range(rng.randint(1, 2)):
                self._add_person(canvas, ids, rng)
        return _finish(canvas, ids, a, rng)

    def _add_person(self, canvas: Image.Image, ids: Image.Image, rng: random.Random) -> None:
        """Another photo's subject, cut out along its labels, pasted at a random size and place."""
        im, lab = self.items[rng.randrange(len(self.items))]
        ys, xs = np.nonzero(np.asarray(lab))
        if not len(ys):
            return
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        im, lab = im.crop(box), lab.crop(box)
        h = max(8, round(self.height * rng.uniform(0.3, 1.0)))
        w = max(1, round(im.width * h / im.height))
        im, lab = im.resize((w, h), Image.BILINEAR), lab.resize((w, h), Image.NEAREST)
        if self.augment.flip and rng.random() < 0.5:
            im, lab = im.transpose(Image.FLIP_LEFT_RIGHT), lab.transpose(Image.FLIP_LEFT_RIGHT)
        mask = Image.fromarray(((np.asarray(lab) > 0) * 255).astype(np.uint8))
        left = rng.randint(-w // 3, max(-w // 3, self.width - 2 * w // 3))
        top = rng.randint(min(0, self.height - h), max(0, self.height - h))
        canvas.paste(im, (left, top), mask)
        ids.paste(lab, (left, top), mask)


class CropDataset(torch.utils.data.Dataset):
    """Training data of a refiner: crops around one label's region (`CropSpec`, the box jittered
    in scale and position), flipped, blurred and colour-jittered, resized to the canvas.
    Photos without that label are left out."""

    def __init__(self, pairs: list[Pair], scheme: LabelScheme, height: int, width: int, crop: CropSpec,
                 augment: ParserAugment, seed: int = 0) -> None:
        self.height, self.width, self.crop, self.augment, self.seed = height, width, crop, augment, seed
        self.label = scheme.labels.index(crop.label)
        items = (_load(p, scheme, 8 * height) for p in pairs)  # the crop is a fraction of the photo: keep detail
        self.items = [(im, lab) for im, lab in items if (np.asarray(lab) == self.label).any()]
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = epoch_index(key, self.epoch)
        rng = random.Random(hash((self.seed, epoch, index)))
        a = self.augment
        im, lab = self.items[index]
        ids = np.asarray(lab)
        jitter = None if a == ParserAugment.none() else rng.uniform  # the runtime's box comes from a parse
        box = self.crop.box(ids == self.label, self.height / self.width, jitter)
        size = (self.width, self.height)
        canvas = Image.fromarray(crop_padded(np.asarray(im), box)).resize(size, Image.BILINEAR)
        target = Image.fromarray(crop_padded(ids, box)).resize(size, Image.NEAREST)
        if a.flip and rng.random() < 0.5:
            canvas, target = canvas.transpose(Image.FLIP_LEFT_RIGHT), target.transpose(Image.FLIP_LEFT_RIGHT)
        return _finish(canvas, target, a, rng)
