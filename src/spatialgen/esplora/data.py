"""Image-caption pairs a spatial LoRA trains on: scene-world scenes, ``spatialgen curate`` output, or a folder.

Only captions that state a relation are kept (a spatial LoRA learns relations), and captions of
the scene world's held-out triplets never are, whichever source they come from: curation
synthesises scene-world captions from what it sees, so a curated or hand-captioned folder of
scene renders states held-out triplets as often as a scene dataset does. Images are held as uint8
in memory (``N x 3 x H x W``), every image with its list of true captions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..image_files import UnreadableImage, read_rgb
from ..scenes.captions import RELATIONAL_KINDS
from ..scenes.held_out import is_held_out_caption
from ..triplets import parse_triplet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class CaptionedImages:
    images: torch.Tensor  # uint8 (N, 3, H, W)
    captions: list[list[str]]  # every true spatial caption of each image
    skipped: int = 0  # items without a usable spatial caption

    def __len__(self) -> int:
        return len(self.captions)


def trainable(caption: str, exclude_held_out: bool = True) -> bool:
    """Whether a caption may be trained on: it states a relation, and not one of a held-out triplet."""
    if parse_triplet(caption) is None:
        return False
    return not (exclude_held_out and is_held_out_caption(caption))


class CaptionFilter:
    """:func:`trainable` that also counts the relational captions it dropped as held out (for the error)."""

    def __init__(self, exclude_held_out: bool = True) -> None:
        self.exclude_held_out = exclude_held_out
        self.held_out = 0

    def __call__(self, caption: str) -> bool:
        if parse_triplet(caption) is None:
            return False
        if self.exclude_held_out and is_held_out_caption(caption):
            self.held_out += 1
            return False
        return True


def from_scenes(
    root: str | os.PathLike[str], limit: int | None = None, exclude_held_out: bool = True
) -> CaptionedImages:
    """Scene-world scenes with their relational captions (held-out triplets removed)."""
    from ..scenes.shards import SceneShards

    shards = SceneShards(root)
    images, captions, skipped = [], [], 0
    keep = CaptionFilter(exclude_held_out)
    for i in tqdm(range(len(shards)), desc="loading scenes", unit="scene"):
        if limit is not None and len(captions) >= limit:
            break
        sample = shards[i]
        kept = [sample.captions[k] for k in RELATIONAL_KINDS if k in sample.captions and keep(sample.captions[k])]
        if not kept:
            skipped += 1
            continue
        images.append(torch.from_numpy(np.ascontiguousarray(np.moveaxis(sample.rgb, -1, 0))))
        captions.append(kept)
    shards.close()
    return _finish(images, captions, skipped, root, keep.held_out)


def from_folder(
    root: str | os.PathLike[str], resolution: int, limit: int | None = None, exclude_held_out: bool = True
) -> CaptionedImages:
    """``NAME.png`` (or .jpg, .webp) with ``NAME.txt`` (one caption a line): the lines that state a relation.

    Images are centre-cropped to a square and resized to ``resolution``.
    """
    root = Path(root)
    images, captions, skipped = [], [], 0
    keep = CaptionFilter(exclude_held_out)
    for path in sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if limit is not None and len(captions) >= limit:
            break
        text = path.with_suffix(".txt")
        lines = text.read_text(encoding="utf-8").splitlines() if text.is_file() else []
        kept = [line.strip() for line in lines if line.strip() and keep(line.strip())]
        try:
            image = square(read_rgb(path), resolution)
        except UnreadableImage:  # damaged, or a decompression bomb: skipped and counted like an uncaptioned one
            kept = []
        if not kept:
            skipped += 1
            continue
        images.append(torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(image), -1, 0))))
        captions.append(kept)
    return _finish(images, captions, skipped, root, keep.held_out)


def from_curated(
    root: str | os.PathLike[str], resolution: int, limit: int | None = None, exclude_held_out: bool = True
) -> CaptionedImages:
    """The output of ``spatialgen curate``: each kept image with its verified and synthesised captions."""
    import json
    import tarfile

    images, captions, skipped = [], [], 0
    keep = CaptionFilter(exclude_held_out)
    for shard in sorted((Path(root) / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name in sorted(n for n in files if n.endswith(".json")):
            if limit is not None and len(captions) >= limit:
                break
            record = json.loads(files[name])
            kept = [c for c in record["captions"] if keep(c)]
            if not kept:
                skipped += 1
                continue
            try:
                image = square(read_rgb(files[name[:-5] + ".png"], name[:-5]), resolution)
            except UnreadableImage:
                skipped += 1
                continue
            images.append(torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(image), -1, 0))))
            captions.append(kept)
    return _finish(images, captions, skipped, root, keep.held_out)


def square(image: Image.Image, resolution: int) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)


def _finish(
    images: list, captions: list, skipped: int, root: str | os.PathLike[str], held_out: int = 0
) -> CaptionedImages:
    if not captions and held_out:
        raise ValueError(
            f"no image in {str(root)!r} has a trainable caption: all {held_out} relational caption(s) name triplets "
            "held out for evaluation (spatialgen.scenes.held_out), so they were dropped; add captions with other "
            "objects or relations"
        )
    if not captions:
        raise ValueError(f"no image in {str(root)!r} has a caption that states a spatial relation")
    return CaptionedImages(torch.stack(images), captions, skipped)
