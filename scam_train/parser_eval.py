"""`scam-train parser-eval`: per-label IoU and mIoU of parser backends on labelled photos.

IoU is computed over the whole set (intersections and unions summed over all pixels of
all photos, at each photo's full size), per label of the scheme; mIoU is their mean.
The parsers run as `scam-run` runs them (the runtime's `get_parser`, keep="largest").
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from scam_runtime.labels import read_image, read_labels
from scam_runtime.parsers import ParserOptions, get_parser

from .data import check_pairs, find_pairs
from .parser_fit import iou_counts
from .schemes import load_scheme


def evaluate_parsers(data: str, labels_dir: str, scheme_name: str, split: str | None, parsers: Sequence[str],
                     refine: bool = True, each: Callable[[int], None] = lambda total: None) -> dict:
    pairs = find_pairs(data, split, labels_dir)
    scheme = check_pairs(pairs, load_scheme(scheme_name))
    labels = tuple(scheme.labels)
    report: dict = {"data": data, "split": split, "labels_dir": labels_dir, "images": len(pairs), "refine": refine,
                    "parsers": {}}
    made = {name: get_parser(name, labels, ParserOptions(refine=refine)) for name in parsers}
    counts = {name: np.zeros((len(labels), 2), np.int64) for name in parsers}
    seconds = dict.fromkeys(parsers, 0.0)
    for pair in pairs:  # each photo is read once, whatever the number of parsers
        stored = read_labels(pair.labels)
        image = read_image(pair.image, stored.shape)
        truth = scheme.apply(stored, pair.labels)
        for name, parser in made.items():
            start = time.perf_counter()
            pred = parser(image)
            seconds[name] += time.perf_counter() - start
            counts[name] += iou_counts(pred, truth, len(labels))
            each(len(pairs) * len(parsers))
    for name in parsers:
        iou = counts[name][:, 0] / np.maximum(counts[name][:, 1], 1)
        report["parsers"][name] = {"miou": round(float(iou.mean()), 4),
                                   "iou": {n: round(float(v), 4) for n, v in zip(labels, iou)},
                                   "ms_per_image": round(1000 * seconds[name] / len(pairs), 1)}
    return report
