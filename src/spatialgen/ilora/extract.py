"""Intrinsic maps for any images: I-LoRA adapters (or the scene estimator) over a folder, resumably.

Images of any size and mode are accepted: greyscale becomes RGB, transparency is composited onto
white, and each image is resized to the model's resolution and its maps resized back (normals
renormalised), so maps always match their image pixel for pixel. Maps are written beside a copy
of the image with :mod:`spatialgen.intrinsic_files` (``NAME.depth.png`` 16-bit, ``NAME.normal.png``,
``NAME.albedo.png``, ``NAME.shading.png``), the layout ``spatialgen eval intrinsics`` reads.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..fileio import atomic_write_bytes
from ..image_files import UnreadableImage, read_image
from ..intrinsic_files import is_map_file, map_path, save_maps
from .adapters import CARD, read_card
from .model import IntrinsicLoRAModel
from .targets import parse_intrinsics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
EXTRACT_METHODS = ("ilora", "estimator", "ildm")
ILDM_MAPS = ("depth", "normal", "segmentation", "lines")


def embedded_adapters_path() -> Path:
    return Path(__file__).resolve().parents[1] / "weights" / "embedded-ilora"


def adapter_folders(lora: str | os.PathLike[str]) -> list[Path]:
    """The adapter folders of ``lora``: one adapter folder, a folder of them, or ``"embedded"``."""
    root = embedded_adapters_path() if str(lora) == "embedded" else Path(lora)
    if (root / CARD).is_file():
        return [root]
    found = sorted(p.parent for p in root.glob(f"*/{CARD}")) if root.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"no I-LoRA adapters in {str(root)!r} (folders with {CARD}); train one with `spatialgen train ilora`"
        )
    return found


def to_rgb(image: Image.Image) -> Image.Image:
    """Greyscale / palette / RGBA images as RGB; transparent pixels become white."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def to_model_input(images: Sequence[Image.Image], side: int) -> torch.Tensor:
    """RGB images resized to ``side`` x ``side`` as a [-1, 1] batch."""
    arrays = [np.asarray(im if im.size == (side, side) else im.resize((side, side), Image.BICUBIC)) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def resize_map(name: str, array: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A ``(C, h, w)`` map in [0, 1] resized to ``size`` (width, height); normals stay unit vectors."""
    width, height = size
    if array.shape[-2:] != (height, width) and name == "segmentation":  # ids: no blended colours between them
        array = F.interpolate(array[None].float(), size=(height, width), mode="nearest")[0]
    elif array.shape[-2:] != (height, width):
        array = F.interpolate(array[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]
        if name == "normal":
            array = (F.normalize(array * 2 - 1, dim=0, eps=1e-6) + 1) * 0.5
    return array.clamp(0, 1).cpu().numpy()


@dataclass
class IntrinsicExtractor:
    """Predicts maps of ``intrinsics`` for PIL images with a loaded :class:`IntrinsicLoRAModel` or an estimator."""

    intrinsics: tuple[str, ...]
    model: IntrinsicLoRAModel | None = None
    estimator: Any = None
    predict_options: dict[str, Any] = field(default_factory=dict)
    ildm: Any = None  # an IntrinsicLDMPipeline trained to read images (its image domain held clean)

    @classmethod
    def load(
        cls,
        method: str,
        intrinsics: str | Sequence[str],
        lora: str | os.PathLike[str] = "embedded",
        model: str = "embedded",
        device: str = "cpu",
        **predict_options: Any,
    ) -> IntrinsicExtractor:
        """``method`` "ilora" loads the adapters of ``lora`` onto ``model``; "estimator" the embedded estimator;
        "ildm" the I-LDM ``model`` (``embedded`` or a pipeline folder), which denoises the maps of the given
        image with the image domain held clean (depth, normal, segmentation and lines)."""
        if method == "ildm":
            return cls._load_ildm(intrinsics, model, device, **predict_options)
        names = parse_intrinsics(intrinsics)
        if method == "estimator":
            from ..eval.scene.scene_estimator import SceneEstimator

            unsupported = [n for n in names if n not in ("depth", "normal")]
            if unsupported:
                raise ValueError(
                    f"the scene estimator gives depth and normals only, not {unsupported}; use --method ilora"
                )
            return cls(names, estimator=SceneEstimator.load(None if str(lora) == "embedded" else lora, device))
        if method != "ilora":
            raise ValueError(f"unknown extraction method {method!r}; choose one of {', '.join(EXTRACT_METHODS)}")
        folders = {read_card(f)["intrinsic"]: f for f in adapter_folders(lora)}
        missing = [n for n in names if n not in folders]
        if missing:
            raise ValueError(f"no adapter for {missing} in {str(lora)!r} (it has {', '.join(folders)})")
        cards = [read_card(folders[n]) for n in names]
        variants = {c["variant"] for c in cards}
        if len(variants) > 1:
            raise ValueError(f"the adapters mix variants {sorted(variants)}; extract with one variant at a time")
        first = cards[0]
        loaded = IntrinsicLoRAModel.from_base(
            model,
            first["variant"],
            device=device,
            timestep=first["timestep"],
            image_conditioning=first.get("image_conditioning", True),
            zero_snr=first.get("training", {}).get("zero_snr"),
        )
        for name in names:
            loaded.load(folders[name])
        return cls(names, model=loaded, predict_options=predict_options)

    @classmethod
    def _load_ildm(
        cls, intrinsics: str | Sequence[str], model: str, device: str, **predict_options: Any
    ) -> IntrinsicExtractor:
        from ..ildm.held_jobs import held_job_refusal
        from ..ildm.pipeline import load_ildm_pipeline

        parts = intrinsics.split(",") if isinstance(intrinsics, str) else list(intrinsics)
        names = tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))
        unknown = [n for n in names if n not in ILDM_MAPS]
        if unknown or not names:
            raise ValueError(f"I-LDM reads {', '.join(ILDM_MAPS)}; got {list(names)} (set --intrinsics)")
        pipe = load_ildm_pipeline(model, device)
        refusal = held_job_refusal(pipe, "read")
        if refusal is not None:
            raise ValueError(refusal)
        return cls(names, ildm=pipe, predict_options=predict_options)

    @property
    def resolution(self) -> int:
        if self.ildm is not None:
            return int(self.ildm.unet.config.sample_size * self.ildm.vae_scale_factor)
        if self.model is not None:
            pipe = self.model.pipe
            return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
        return int(self.estimator.resolution)

    def extract(self, images: Sequence[Image.Image], seed: int = 0) -> list[dict[str, np.ndarray]]:
        """Per image, its maps at the image's own size (channel-first, [0, 1])."""
        rgb = [to_rgb(im) for im in images]
        side = self.resolution
        batch = to_model_input(rgb, side)
        predicted: dict[str, torch.Tensor] = {}
        if self.ildm is not None:
            options = {"steps": 25, **self.predict_options}
            out = self.ildm(
                [""] * len(rgb),  # no caption: the image says what is there (training drops captions 10% of the time)
                image=batch,
                num_inference_steps=int(options["steps"]),
                guidance_scale=1.0,
                generator=torch.Generator().manual_seed(seed),
                output_type="latent",
            )
            predicted = {name: getattr(out.intrinsics, name).float().cpu() for name in self.intrinsics}
        elif self.estimator is not None:
            estimated = self.estimator.estimate(batch)
            predicted["depth"] = torch.from_numpy(estimated.depth)[:, None]
            predicted["normal"] = (torch.from_numpy(estimated.normal).permute(0, 3, 1, 2) + 1) * 0.5
        else:
            for name in self.intrinsics:
                generator = torch.Generator().manual_seed(seed)
                predicted[name] = self.model.predict(batch, name, generator=generator, **self.predict_options).cpu()
        return [{n: resize_map(n, predicted[n][i], im.size) for n in self.intrinsics} for i, im in enumerate(rgb)]


@dataclass
class ExtractionReport:
    written: int = 0
    skipped: int = 0  # already done (a resume)
    resized: int = 0
    out: Path | None = None
    unreadable: list[str] = field(default_factory=list)  # "NAME: why", skipped like `--source` skips them


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The images of a folder (not the map files beside them), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {str(folder)!r} is not a folder")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not is_map_file(p))
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
    return images


def extract_folder(
    extractor: IntrinsicExtractor,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> ExtractionReport:
    """Write every image's maps to ``out`` (with a copy of the image); images whose maps exist are skipped."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = ExtractionReport(out=out)
    todo = []
    paths = list_images(images)
    stems = [p.stem for p in paths]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f"images share a name stem ({', '.join(clashes)}): their maps would collide; rename them")
    for path in paths:
        target = out / f"{path.stem}.png"
        if all(map_path(target, n).is_file() for n in extractor.intrinsics) and target.is_file():
            report.skipped += 1
        else:
            todo.append((path, target))
    if progress is not None:
        progress(report.skipped)
    for start in range(0, len(todo), batch_size):
        chunk, opened = [], []
        for path, target in todo[start : start + batch_size]:
            try:
                opened.append(read_image(path, path.name))
                chunk.append((path, target))
            except UnreadableImage as error:  # one bad file of 100,000 must not stop the rest
                report.unreadable.append(f"{path.name}: {error}")
        for (path, target), im, maps in zip(chunk, opened, extractor.extract(opened) if opened else [], strict=True):
            if im.size != (extractor.resolution, extractor.resolution):
                report.resized += 1
            save_maps(target, maps)
            # The image copy is written last, and atomically: a resume trusts a folder holding it and its maps.
            if not target.is_file():
                if path.suffix.lower() == ".png":
                    atomic_write_bytes(target, path.read_bytes())
                else:
                    buffer = io.BytesIO()
                    to_rgb(im).save(buffer, format="PNG")
                    atomic_write_bytes(target, buffer.getvalue())
            report.written += 1
        if progress is not None:
            progress(len(todo[start : start + batch_size]))
    return report
