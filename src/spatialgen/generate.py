"""Text-to-image generation to files: PNGs carrying their settings, JSON sidecars and a grid.

Every image gets its own seed (``seed + k`` for the k-th image of a prompt) and its own torch
generator, so an image is reproduced by its seed alone, whatever batch it was drawn in.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image, PngImagePlugin
from tqdm.auto import tqdm

from . import __version__
from .fileio import atomic_write_bytes, atomic_write_json, ensure_writable_dir
from .generators import Generator, as_generator
from .image_grid import image_grid
from .models.pipeline import SCHEDULERS, make_scheduler
from .models.tokenizer import prompt_length, unknown_words
from .output_layouts import Job, Layout

logger = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer
ATTENTION_SUFFIX = ".attention.png"  # InfSplign's attention strip beside an image (not a sample)


@dataclass(frozen=True)
class GenerationSettings:
    steps: int = 25
    guidance: float = 7.5
    scheduler: str = "ddim"
    size: int | None = None  # None: the model's native size
    negative_prompt: str | None = None

    def validate(self) -> GenerationSettings:
        if self.steps <= 0:
            raise ValueError(f"--steps must be a positive number of denoising steps, got {self.steps}")
        if self.guidance < 0 or not math.isfinite(self.guidance):
            raise ValueError(f"--guidance must be a finite number >= 0 (1 or less turns CFG off), got {self.guidance}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown --scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if self.size is not None and self.size <= 0:
            raise ValueError(f"--size must be a positive number of pixels (omit it: native size), got {self.size}")
        return self


@dataclass(frozen=True)
class GeneratedImage:
    prompt: str
    seed: int
    image: Image.Image
    path: Path | None = None
    intrinsics: dict[str, Any] | None = None  # I-LDM: depth, normal, segmentation, lines (C, H, W) in [0, 1]
    details: dict[str, Any] | None = None  # per-image metadata (InfSplign: the triplet and its measured Delta)
    attention: Image.Image | None = None  # InfSplign's attention strip, with save_attention

    @property
    def has_intrinsics(self) -> bool:
        return self.intrinsics is not None

    @property
    def has_guidance(self) -> bool:
        """Whether InfSplign ran on this image (``details["infsplign"]`` says what it guided, or None)."""
        return self.details is not None and "infsplign" in self.details


def size_multiple(pipe: Any) -> int:
    """Image sides must be multiples of this: VAE downsampling times the UNet's halvings."""
    return int(pipe.vae_scale_factor) * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def native_size(pipe: Any) -> int:
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def check_size(pipe: Any, size: int) -> int:
    multiple = size_multiple(pipe)
    if size <= 0 or size % multiple:
        raise ValueError(
            f"image size {size} does not fit this model: use a positive multiple of {multiple} "
            f"(its native size is {native_size(pipe)})"
        )
    return size


#: Float tensors of the decoder's widest level alive at once during a VAE decode (a measured upper bound
#: for diffusers' AutoencoderKL: input, output and skip activations of a resnet block and its norm).
_DECODE_LIVE_TENSORS = 6


def decode_memory_bytes(pipe: Any, size: int, batch_size: int) -> int:
    """An estimate of the peak memory of decoding ``batch_size`` images of ``size`` px: the VAE decoder's
    activations, level by level (channels x pixels), which grow with the image area and dominate at large sizes."""
    channels = list(pipe.vae.config.block_out_channels)
    element = torch.finfo(pipe.vae.dtype).bits // 8
    per_image = sum(c * (size // 2**level) ** 2 for level, c in enumerate(channels))
    return _DECODE_LIVE_TENSORS * element * per_image * batch_size


def available_memory_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` (CUDA: what the driver reports; CPU: the kernel's MemAvailable), None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(pipe: Any, size: int, batch_size: int) -> None:
    """Refuse, before sampling, an image size whose decode would not fit in the device's free memory."""
    needed = decode_memory_bytes(pipe, size, batch_size)
    free = available_memory_bytes(torch.device(pipe._execution_device))
    if free is not None and needed > free:
        raise ValueError(
            f"--size {size} at --batch-size {batch_size} would need about {needed / 2**30:.1f} GiB to decode, "
            f"more than the {free / 2**30:.1f} GiB free here; use a smaller --size or --batch-size"
        )


def check_prompts(pipe: Any, prompts: Sequence[str], strict: bool = False, guided: bool = False) -> None:
    """Warn about (or, with ``strict``, refuse) words the tokenizer cannot represent and over-long prompts.

    ``guided`` (InfSplign): an object of the relation that the model cannot spell is refused at
    once, in one message, whatever ``strict`` says; guidance would have nothing to locate.
    """
    if not prompts:
        raise ValueError("no prompts given: pass a prompt, or --prompts FILE with one prompt per line")
    problems = []
    for prompt in prompts:
        if guided:
            check_guidable_objects(pipe.tokenizer, prompt)
        unknown = unknown_words(pipe.tokenizer, prompt)
        if unknown:
            problems.append(
                f"prompt {prompt!r} has words outside the model's vocabulary: {', '.join(unknown)} (they become <unk>)"
            )
        length = prompt_length(pipe.tokenizer, prompt)
        if length > pipe.tokenizer.model_max_length:
            problems.append(
                f"prompt {prompt!r} is {length} tokens long; the model reads only the first "
                f"{pipe.tokenizer.model_max_length} (start and end included)"
            )
    if problems and strict:
        raise ValueError("; ".join(problems) + ". Rephrase, or drop --strict to generate anyway")
    for problem in problems:
        logger.warning(problem)


def check_guidable_objects(tokenizer: Any, prompt: str) -> None:
    """Refuse a relation whose objects the model has no tokens for: their attention says nothing of where they are."""
    from .triplets import parse_triplet

    triplet = parse_triplet(prompt)
    if triplet is None:
        return
    unknown = unknown_words(tokenizer, f"{triplet.a.text} {triplet.b.text}")
    if unknown:
        raise ValueError(
            f"InfSplign cannot guide {prompt!r}: the model does not know {', '.join(unknown)} (each becomes <unk>, "
            "with no attention of its own to move); name objects the model knows, or use --method sd"
        )


def read_prompt_file(path: str | os.PathLike[str]) -> list[str]:
    """One prompt per line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {str(path)!r} does not exist")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"prompt file {str(path)!r} holds no prompts (one per line; # starts a comment)")
    return prompts


@torch.no_grad()
def generate_images(
    generator: Generator | Any,
    prompts: Sequence[str],
    n: int = 1,
    seed: int = 0,
    settings: GenerationSettings | None = None,
    batch_size: int = 4,
    strict: bool = False,
    progress: bool = True,
    schedule: Any = None,
    spatial_guidance: Any = None,
    save_attention: bool = False,
) -> list[GeneratedImage]:
    """``n`` images per prompt; image k of a prompt uses seed ``seed + k``.

    ``generator`` is a :class:`~spatialgen.generators.Generator` (:func:`~spatialgen.generators.load_generator`)
    or a pipeline, wrapped by its type with ``schedule`` and ``spatial_guidance``
    (:func:`~spatialgen.generators.as_generator`). With an I-LDM method each result also carries
    its co-generated intrinsics; with an InfSplign method it says which triplet was guided and,
    with ``save_attention``, carries its attention strip.
    """
    generator = as_generator(generator, schedule, spatial_guidance)
    settings = (settings or GenerationSettings()).validate()
    check_run(n, seed, batch_size)
    size = prepare_sampling(generator, prompts, settings, min(batch_size, n * len(prompts)), strict)
    jobs = [(prompt, seed + k) for prompt in prompts for k in range(n)]
    out: list[GeneratedImage] = []
    with tqdm(total=len(jobs), desc="generating", unit="image", disable=not progress) as bar:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            out.extend(sample_chunk(generator, chunk, settings, size, save_attention))
            bar.update(len(chunk))
    return out


def check_run(n: int, seed: int, batch_size: int) -> None:
    """Refuse image counts, seeds and batch sizes that cannot be sampled, naming the flag to change."""
    if n <= 0:
        raise ValueError(f"--n must be a positive number of images per prompt, got {n}")
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    if not 0 <= seed <= MAX_SEED - (n - 1):
        limit = MAX_SEED - (n - 1)
        raise ValueError(f"--seed must be an integer from 0 to {limit} (image k uses seed + k), got {seed}")


def prepare_sampling(
    generator: Generator, prompts: Sequence[str], settings: GenerationSettings, batch_size: int, strict: bool
) -> int:
    """Check size, memory and prompts before any sampling, set the sampler; returns the image side."""
    pipe = generator.pipe
    size = check_size(pipe, settings.size or native_size(pipe))
    check_memory(pipe, size, batch_size)
    check_prompts(pipe, prompts, strict, guided=generator.guided)
    pipe.scheduler = make_scheduler(settings.scheduler, pipe.scheduler.config)  # cheap: a config and a few arrays
    return size


@torch.no_grad()
def sample_chunk(
    generator: Generator,
    chunk: Sequence[tuple[str, int]],
    settings: GenerationSettings,
    size: int,
    save_attention: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> list[GeneratedImage]:
    """One batch of (prompt, seed) jobs, each with its own torch generator; ``on_step(i)`` after step i (1-based)."""
    pipe = generator.pipe
    device = pipe._execution_device
    generators = [torch.Generator(device).manual_seed(s) for _, s in chunk]
    extra: dict[str, Any] = {}
    if on_step is not None:

        def step_end(_pipe: Any, i: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            on_step(i + 1)
            return tensors

        extra["callback_on_step_end"] = step_end
    result = pipe(
        [p for p, _ in chunk],
        height=size,
        width=size,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        negative_prompt=[settings.negative_prompt] * len(chunk) if settings.negative_prompt else None,
        generator=generators,
        output_type="pil",
        **generator.call_kwargs(save_attention, rows=len(chunk)),
        **extra,
    )
    maps: list[dict[str, Any] | None] = [None] * len(chunk)
    if generator.co_generates_intrinsics:
        fields = ("depth", "normal", "segmentation", "lines")
        maps = [{f: getattr(result.intrinsics, f)[k].float().cpu().numpy() for f in fields} for k in range(len(chunk))]
    trace = result.trace if generator.guided else None
    details, strips = _guidance_outputs(trace, len(chunk), save_attention)
    return [
        GeneratedImage(p, s, im, intrinsics=m, details=d, attention=a)
        for (p, s), im, m, d, a in zip(chunk, result.images, maps, details, strips, strict=True)
    ]


def _guidance_outputs(
    trace: Any, rows: int, save_attention: bool
) -> tuple[list[dict[str, Any] | None], list[Image.Image | None]]:
    """Per image: what InfSplign guided (triplet, Delta at the first and last guided step) and its strip."""
    if trace is None:
        return [None] * rows, [None] * rows
    details: list[dict[str, Any] | None] = []
    strips: list[Image.Image | None] = []
    for row, item in enumerate(trace.triplets):
        if item is None:
            details.append({"infsplign": None})
            strips.append(None)
            continue
        triplet = item.triplet
        record: dict[str, Any] = {"a": triplet.a.text, "relation": triplet.relation, "b": triplet.b.text}
        if trace.steps:
            record["delta_first"] = round(float(trace.steps[0].delta[row]), 4)
            record["delta_last"] = round(float(trace.steps[-1].delta[row]), 4)
        details.append({"infsplign": record})
        if save_attention and trace.steps:
            from .guidance.visualise import attention_strip

            strips.append(attention_strip(trace, row))
        else:
            strips.append(None)
    return details, strips


def png_bytes(image: Image.Image, metadata: dict[str, Any]) -> bytes:
    """PNG with ``metadata`` as JSON in a ``parameters`` text chunk (and the prompt on its own)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", json.dumps(metadata, sort_keys=True))
    info.add_text("prompt", str(metadata.get("prompt", "")))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_generated(folder: Path, name: Path, result: GeneratedImage, common: dict[str, Any], layout: Layout) -> Path:
    """Write one image at ``folder / name`` with what its layout keeps beside it; the image comes last.

    An image file therefore exists only once its sidecar and maps do: a run killed mid-way and
    resumed (which skips existing images) never leaves an image without them.
    """
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {**common, "prompt": result.prompt, "seed": result.seed, "spatialgen": __version__, "file": name.name}
    if result.details:
        metadata.update(result.details)
    if layout.extras and result.intrinsics is not None:
        from .intrinsic_files import save_maps

        save_maps(path, result.intrinsics)
    if layout.extras and result.attention is not None:
        buffer = io.BytesIO()
        result.attention.save(buffer, format="PNG")
        atomic_write_bytes(path.with_name(path.stem + ATTENTION_SUFFIX), buffer.getvalue())
    if layout.sidecars:
        atomic_write_json(path.with_suffix(".json"), metadata)
    atomic_write_bytes(path, png_bytes(result.image, metadata))
    return path


def save_generated(
    results: Sequence[GeneratedImage], out: str | os.PathLike[str], common: dict[str, Any], grid: bool = True
) -> list[GeneratedImage]:
    """Write each image (PNG + metadata) and a JSON sidecar, then ``grid.png``; returns them with paths.

    Images are named by their prompt's first position among ``results`` and their seed
    (our layout, :mod:`spatialgen.output_layouts`).
    """
    folder = ensure_writable_dir(out)
    prompts = list(dict.fromkeys(r.prompt for r in results))
    layout = Layout(len(prompts), 1)
    saved = []
    for r in results:
        job = Job(prompts.index(r.prompt), 0, r.prompt, r.seed, {"prompt": r.prompt})
        saved.append(replace(r, path=write_generated(folder, layout.image_path(job), r, common, layout)))
    if grid and results:
        write_grid(results, folder / "grid.png")
    return saved


def write_grid(results: Sequence[GeneratedImage], path: Path) -> None:
    """A captioned grid: one row per prompt, or one row per image with its intrinsic maps."""
    buffer = io.BytesIO()
    if any(r.intrinsics is not None for r in results):
        tiles, captions = intrinsic_rows(results)
        image_grid(tiles, captions, 5).save(buffer, format="PNG")
    else:
        columns = max(1, sum(1 for r in results if r.prompt == results[0].prompt))
        image_grid([r.image for r in results], [f"{r.prompt} (seed {r.seed})" for r in results], columns).save(
            buffer, format="PNG"
        )
    atomic_write_bytes(path, buffer.getvalue())


def intrinsic_rows(results: Sequence[GeneratedImage]) -> tuple[list[Image.Image], list[str]]:
    """One row per result: the image, then its depth, normals, segmentation and line drawing pictures."""
    import numpy as np

    from .intrinsics import Intrinsics

    tiles: list[Image.Image] = []
    captions: list[str] = []
    for r in results:
        tiles.append(r.image)
        captions.append(f"{r.prompt} (seed {r.seed})")
        if r.intrinsics is None:
            continue
        pictures = Intrinsics(**{k: np.asarray(v) for k, v in r.intrinsics.items()}).visualise()
        for name, picture in pictures.items():
            tiles.append(Image.fromarray(picture))
            captions.append(name)
    return tiles, captions


def settings_metadata(settings: GenerationSettings, model: str, size: int) -> dict[str, Any]:
    return {**asdict(settings), "size": size, "model": model}
