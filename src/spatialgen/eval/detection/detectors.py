"""Detector adapters: OWL-ViT / OWLv2 (the benchmarks' detector, the user's weights) and our scene-world recogniser.

Both answer :class:`~spatialgen.eval.detection.detections.Detector`'s one question, "where are these named
objects in these images?", with :class:`~spatialgen.eval.detection.detections.ObjectDetection` boxes in
the scored image's pixels. Scorers apply their benchmark's threshold; adapters only apply a
floor (``min_score``) so that results stay small.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...devices import check_device
from ...scenes.catalog import SHAPES
from ..scene.recogniser import COLOUR_NAMES, SceneRecogniser
from .detections import ObjectDetection

#: VISOR's and T2I-CompBench's OWL-ViT text query.
VISOR_QUERY_TEMPLATE = "a photo of a {}"


def as_pil(image: Any) -> Image.Image:
    """A PIL RGB image from a PIL image, a uint8 (H, W, 3) array or a path."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected a PIL image or a uint8 (H, W, 3) array, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def _check_queries(images: Sequence[Any], queries: Sequence[Sequence[str]]) -> None:
    if len(images) != len(queries):
        raise ValueError(f"got {len(images)} images but {len(queries)} query lists: give one list per image")


class OwlViTDetector:
    """Open-vocabulary detection with OWL-ViT or OWLv2 through transformers.

    Each object name becomes the text query ``query_template.format(name)`` ("a photo of a dog",
    as VISOR does); every predicted box takes the query with the highest logit (transformers'
    ``post_process_object_detection``) and is kept when its sigmoid score exceeds ``min_score``.
    OWLv2 pads images to a square before resizing, so its relative boxes refer to the padded
    square; they are scaled by the longer side, which puts them back on the original pixels.
    """

    name = "owlvit"

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        query_template: str = VISOR_QUERY_TEMPLATE,
        min_score: float = 0.1,
        batch_size: int = 8,
    ) -> None:
        if "{}" not in query_template:
            raise ValueError(f"query_template must contain '{{}}' for the object name, got {query_template!r}")
        self.model = model.eval()
        self.processor = processor
        self.query_template = query_template
        self.min_score = min_score
        self.batch_size = batch_size
        self.pads_to_square = model.config.model_type == "owlv2"
        self.name = model.config.model_type

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str = "cpu", **kwargs: Any) -> OwlViTDetector:
        """Load an OWL-ViT / OWLv2 checkpoint (e.g. ``google/owlvit-base-patch32``) the user has."""
        from transformers import AutoConfig, AutoProcessor, Owlv2ForObjectDetection, OwlViTForObjectDetection

        device = check_device(device)
        model_type = AutoConfig.from_pretrained(name_or_path).model_type
        classes = {"owlvit": OwlViTForObjectDetection, "owlv2": Owlv2ForObjectDetection}
        if model_type not in classes:
            raise ValueError(f"{name_or_path!r} is a {model_type!r} model; the detector needs OWL-ViT or OWLv2")
        model = classes[model_type].from_pretrained(name_or_path, use_safetensors=True).to(device)
        return cls(model, AutoProcessor.from_pretrained(name_or_path), **kwargs)

    @torch.no_grad()
    def detect(self, images: Sequence[Any], queries: Sequence[Sequence[str]]) -> list[list[ObjectDetection]]:
        _check_queries(images, queries)
        out: list[list[ObjectDetection]] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(images), self.batch_size):
            pil = [as_pil(im) for im in images[start : start + self.batch_size]]
            names = [list(q) if q else [" "] for q in queries[start : start + self.batch_size]]
            text = [[self.query_template.format(n) for n in q] for q in names]
            inputs = self.processor(
                text=text, images=pil, return_tensors="pt", padding="max_length", truncation=True
            ).to(device)
            outputs = self.model(**inputs)
            # transformers pads every image's query list to the batch's longest with " " and lets the
            # padding compete in the per-box argmax; mask it so that a batch answers as single images do.
            counts = torch.tensor([len(q) for q in queries[start : start + self.batch_size]], device=device)
            padded = torch.arange(outputs.logits.shape[-1], device=device)[None, :] >= counts[:, None]
            outputs.logits = outputs.logits.masked_fill(padded[:, None, :], torch.finfo(outputs.logits.dtype).min)
            sizes = [(max(im.size),) * 2 if self.pads_to_square else (im.height, im.width) for im in pil]
            results = self.processor.image_processor.post_process_object_detection(
                outputs, threshold=self.min_score, target_sizes=torch.tensor(sizes, device=device)
            )
            # Queries are padded to the longest list of the batch; a padded query's boxes are dropped.
            for result, wanted in zip(results, names, strict=True):
                dets = [
                    ObjectDetection(wanted[label], tuple(box), score)
                    for score, label, box in zip(
                        result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist(), strict=True
                    )
                    if label < len(wanted) and wanted[label].strip()
                ]
                out.append(sorted(dets, key=lambda d: -d.score))
        return out


class SceneDetector:
    """The scene-world recogniser as a :class:`Detector` over names like "red cube", "cube" or "red".

    A name is one or two of the world's words (a colour and/or a shape); a detection answers it
    when its colour and shape agree with every word given. Images of another size than the
    recogniser's are resized to it and the boxes and masks scaled back.
    """

    name = "scenes"

    def __init__(self, recogniser: SceneRecogniser | None = None, min_score: float = 0.0) -> None:
        self.recogniser = recogniser if recogniser is not None else SceneRecogniser.load()
        self.min_score = min_score

    @staticmethod
    def parse_name(name: str) -> tuple[str | None, str | None]:
        """(colour, shape) of an object name; either may be None. Plurals are accepted."""
        colour = shape = None
        for word in name.lower().split():
            if word in COLOUR_NAMES and colour is None:
                colour = word
            elif word in SHAPES or (word.endswith("s") and word[:-1] in SHAPES) or word == "boxes":
                shape = "box" if word == "boxes" else (word if word in SHAPES else word[:-1])
            elif word not in ("a", "an", "the", "small", "large"):
                raise ValueError(
                    f"the scene detector does not know {word!r} in {name!r}; it knows colours "
                    f"{', '.join(COLOUR_NAMES)} and shapes {', '.join(SHAPES)}"
                )
        if colour is None and shape is None:
            raise ValueError(f"object name {name!r} has no scene-world colour or shape")
        return colour, shape

    def detect(self, images: Sequence[Any], queries: Sequence[Sequence[str]]) -> list[list[ObjectDetection]]:
        _check_queries(images, queries)
        wanted = [[(name, self.parse_name(name)) for name in q] for q in queries]
        side = self.recogniser.resolution
        pil = [as_pil(im) for im in images]
        resized = [im if im.size == (side, side) else im.resize((side, side), Image.BILINEAR) for im in pil]
        found = self.recogniser.detect(resized)
        out: list[list[ObjectDetection]] = []
        for im, dets, names in zip(pil, found, wanted, strict=True):
            sx, sy = im.width / side, im.height / side
            hits = []
            for det in dets:
                if det.score < self.min_score:
                    continue
                for name, (colour, shape) in names:
                    if (colour is None or colour == det.colour) and (shape is None or shape == det.shape):
                        x0, y0, x1, y1 = det.box
                        mask = det.mask
                        if mask is not None and (sx, sy) != (1.0, 1.0):
                            mask = np.asarray(Image.fromarray(mask).resize(im.size, Image.NEAREST))
                        hits.append(ObjectDetection(name, (x0 * sx, y0 * sy, x1 * sx, y1 * sy), det.score, mask))
            out.append(sorted(hits, key=lambda d: -d.score))
        return out


DETECTORS = ("scenes", "owlvit")


def load_detector(name_or_path: str, device: str = "cpu") -> Any:
    """``scenes`` (the embedded recogniser), ``owlvit`` (google/owlvit-base-patch32, VISOR's) or a path / hub id."""
    if name_or_path == "scenes":
        return SceneDetector(SceneRecogniser.load(device=check_device(device)))
    from ...hub import check_model_source

    source = "google/owlvit-base-patch32" if name_or_path == "owlvit" else name_or_path
    return OwlViTDetector.from_pretrained(check_model_source(source, "--detector"), device=device)
