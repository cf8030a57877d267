"""The bundle contract: `bundle.json` plus the files it lists, each pinned by sha256.

This is the one reader of the format; the exporter writes it with these constants.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUNDLE_FORMAT = "scam-bundle"
BUNDLE_VERSION = 1
MANIFEST_NAME = "bundle.json"
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_bundle"
"""The bundle shipped inside the package: what every command uses without `--bundle`."""


class BundleError(Exception):
    """A bundle that is missing, malformed, newer than this runtime, or altered."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]   # "batch" for the dynamic dimension
    dtype: str                      # numpy dtype name


@dataclass(frozen=True)
class GraphSpec:
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _tensors(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in items)


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle: what the graphs expect and where they are."""

    path: Path
    manifest: dict[str, Any]
    labels: tuple[str, ...]
    height: int
    width: int
    latent_layout: dict[str, tuple[int, int]]   # label -> [start, stop) latent indices
    latent_dim: int
    precision: str
    noise: str
    attention_path: str
    encoder: GraphSpec
    generator: GraphSpec

    @property
    def num_latents(self) -> int:
        return max(stop for _, stop in self.latent_layout.values())

    def file(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def load(cls, path: str | Path | None = None, verify: bool = True) -> "Bundle":
        """Read `path/bundle.json` (None: the shipped default); with `verify`, refuse any listed
        file whose sha256 differs."""
        if path is None:
            if not (DEFAULT_BUNDLE / MANIFEST_NAME).is_file():
                raise BundleError(f"{DEFAULT_BUNDLE}: the default bundle is missing from this install; "
                                  f"reinstall scam or pass a bundle made by scam-export --ckpt model.pt")
            path = DEFAULT_BUNDLE
        path = Path(path)
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise BundleError(f"{path}: not a scam bundle (no {MANIFEST_NAME})")
        try:
            m = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{manifest_path}: unreadable manifest ({exc})") from exc
        if not isinstance(m, dict) or m.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{manifest_path}: not a scam bundle manifest")
        version = m.get("format_version")
        if not isinstance(version, int) or version > BUNDLE_VERSION:
            raise BundleError(f"{manifest_path}: bundle format {version} is newer than this runtime "
                              f"supports ({BUNDLE_VERSION}); upgrade scam")
        try:
            bundle = cls(
                path=path, manifest=m,
                labels=tuple(label["name"] for label in sorted(m["labels"], key=lambda x: x["id"])),
                height=int(m["resolution"]["height"]), width=int(m["resolution"]["width"]),
                latent_layout={k: (int(v[0]), int(v[1])) for k, v in m["latent_layout"].items()},
                latent_dim=int(m["latent_dim"]), precision=m["precision"], noise=m["noise"],
                attention_path=m["attention_path"],
                encoder=GraphSpec(m["graphs"]["encoder"]["file"], _tensors(m["graphs"]["encoder"]["inputs"]),
                                  _tensors(m["graphs"]["encoder"]["outputs"])),
                generator=GraphSpec(m["graphs"]["generator"]["file"], _tensors(m["graphs"]["generator"]["inputs"]),
                                    _tensors(m["graphs"]["generator"]["outputs"])))
            files = dict(m["files"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BundleError(f"{manifest_path}: incomplete manifest (missing or bad {exc})") from exc
        unlisted = [g.file for g in (bundle.encoder, bundle.generator) if g.file not in files]
        if unlisted:
            raise BundleError(f"{manifest_path}: {unlisted[0]} has no sha256 under 'files' (manifest altered)")
        if verify:
            for name, digest in files.items():
                target = path / name
                if not target.is_file():
                    raise BundleError(f"{target}: listed in the manifest but missing")
                if sha256_file(target) != digest:
                    raise BundleError(f"{target}: sha256 does not match the manifest (file altered or corrupt)")
        return bundle
