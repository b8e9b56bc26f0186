"""What the demo page does, as plain functions: testable without a browser, a server or Gradio.

The page (:mod:`spatialgen.demo.app`) only wires widgets to these. Models load once per process
and stay cached (:class:`DemoModels`); every request is checked first (:func:`check_request`), so
a bad input becomes one readable sentence on the page (a :class:`DemoInputError`), never a trace.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: The page's method names and the generator methods behind them.
METHOD_CHOICES: dict[str, str] = {
    "Stable Diffusion": "sd",
    "I-LDM": "ildm",
    "InfSplign": "infsplign",
    "I-LDM + InfSplign": "ildm+infsplign",
}
SCHEDULE_CHOICES = ("drop", "gaussian", "none")
SAMPLER_CHOICES = ("ddim", "dpm", "ddpm", "euler")
LOSS_CHOICES = ("sigmoid", "relu", "leaky_relu", "gelu")
MAX_IMAGES = 8
MAX_STEPS = 200
MAX_PROMPT_CHARS = 500  # benchmark prompts are under 300; the parser and tokenizer never see more
KEEP_GENERATIONS = 32  # download folders kept per process; older ones are removed as new ones come
MAX_GENERATORS = 6  # loaded (method, spatial LoRA) pipelines kept; the least recently used goes first
NO_LORA = "none"


class DemoInputError(ValueError):
    """A request the page refuses, with what to change."""


@dataclass
class DemoRequest:
    """Everything the Generate tab sends."""

    prompt: str
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    sampler: str = "ddim"
    images: int = 1
    method: str = "Stable Diffusion"
    schedule: str = "drop"
    tau: float = 900.0  # Drop: the timestep below which cross-domain attention stops
    gaussian_alpha: float = 1.0  # Gaussian: the peak weight ...
    gaussian_tau: float = 800.0  # ... the timestep of the peak ...
    gaussian_sigma: float = 100.0  # ... and its width
    loss: str = "sigmoid"
    weight: float | None = None  # InfSplign's weight; None: the model card's recommendation
    guide_fraction: float = 0.25
    presence: bool = False
    lora: str = ""  # the name of one of the operator's spatial LoRAs (`spatialgen demo --lora DIR`), fused
    tore: bool = False
    tore_tau: float = 0.05
    strict: bool = False


@dataclass
class DemoResult:
    """What the page shows after a generation."""

    images: list[tuple[Image.Image, str]]
    maps: list[tuple[Image.Image, str]] = field(default_factory=list)  # I-LDM's intrinsics beside each image
    attention: list[tuple[Image.Image, str]] = field(default_factory=list)  # InfSplign's strips
    files: list[str] = field(default_factory=list)  # PNGs and their JSON sidecars, for download
    notes: str = ""


def check_prompt_length(prompt: str) -> None:
    """Refuse a prompt longer than :data:`MAX_PROMPT_CHARS` (checked on the server, whatever the page sent)."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise DemoInputError(f"The prompt is {len(prompt)} characters long; keep it to {MAX_PROMPT_CHARS}.")


def check_request(request: DemoRequest) -> DemoRequest:
    """Refuse what cannot run, in words a visitor can act on."""
    if not request.prompt or not request.prompt.strip():
        raise DemoInputError("Type a prompt first, e.g. 'a red cube to the left of a blue sphere'.")
    check_prompt_length(request.prompt)
    if request.method not in METHOD_CHOICES:
        raise DemoInputError(f"Unknown method {request.method!r}; choose one of {', '.join(METHOD_CHOICES)}.")
    if not 1 <= int(request.steps) <= MAX_STEPS:
        raise DemoInputError(f"Steps must be between 1 and {MAX_STEPS}, got {request.steps}.")
    if not 1 <= int(request.images) <= MAX_IMAGES:
        raise DemoInputError(f"Number of images must be between 1 and {MAX_IMAGES}, got {request.images}.")
    if request.seed is None or int(request.seed) < 0:
        raise DemoInputError("The seed must be a whole number of 0 or more.")
    if request.guidance < 0:
        raise DemoInputError("Guidance must be 0 or more (1 or less turns classifier-free guidance off).")
    if request.sampler not in SAMPLER_CHOICES:
        raise DemoInputError(f"Unknown sampler {request.sampler!r}; choose one of {', '.join(SAMPLER_CHOICES)}.")
    if request.schedule not in SCHEDULE_CHOICES:
        raise DemoInputError(f"Unknown schedule {request.schedule!r}; choose one of {', '.join(SCHEDULE_CHOICES)}.")
    return replace(
        request,
        prompt=request.prompt.strip(),
        seed=int(request.seed),
        steps=int(request.steps),
        images=int(request.images),
    )


class DemoModels:
    """Generators loaded on first use per (method, spatial LoRA) and kept, at most :data:`MAX_GENERATORS`.

    Spatial LoRAs come only from the operator's list (``spatialgen demo --lora DIR``), by name: a
    visitor picks one from a dropdown and never names a path of the server. Their folders are
    resolved once, here, so one adapter is one cache entry however it was spelled.
    """

    def __init__(self, model: str = "embedded", device: str = "cpu", loras: Sequence[str | Path] = ()) -> None:
        self.model = model
        self.device = device
        self.loras: dict[str, Path] = {}
        for folder in loras:
            path = Path(folder).expanduser().resolve()
            if not path.is_dir():
                raise FileNotFoundError(f"--lora {str(folder)!r} is not a folder; give one `train esplora` wrote")
            name, k = path.name, 1
            while name in self.loras or name == NO_LORA:
                k += 1
                name = f"{path.name}-{k}"
            self.loras[name] = path
        self._generators: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._outputs = Path(tempfile.mkdtemp(prefix="spatialgen-demo-"))
        self._count = 0

    def lora_choices(self) -> list[str]:
        """What the page's spatial LoRA dropdown offers: none, then the operator's adapters by name."""
        return [NO_LORA, *self.loras]

    def output_folder(self) -> Path:
        """A new folder for one generation's downloads; the oldest beyond :data:`KEEP_GENERATIONS` are removed."""
        import shutil

        self._count += 1
        folders = sorted(p for p in self._outputs.iterdir() if p.is_dir())
        for old in folders[: max(0, len(folders) - KEEP_GENERATIONS + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        return self._outputs / f"{self._count:06d}"

    def generator(self, method: str, lora: str = "") -> Any:
        """The generator of ``method`` with the operator's spatial LoRA ``lora`` ("" or "none": without)."""
        from ..generators import load_generator

        lora = "" if lora in ("", NO_LORA) else lora
        if lora and lora not in self.loras:
            raise DemoInputError(f"Unknown spatial LoRA {lora[:40]!r}; pick one from the list.")
        key = (method, lora)
        if key in self._generators:
            self._generators.move_to_end(key)
            return self._generators[key]
        generator = load_generator(method, self.model, device=self.device)
        if lora:
            from ..esplora import apply_spatial_lora

            apply_spatial_lora(generator.pipe, str(self.loras[lora]), 1.0, self.model)
        self._generators[key] = generator
        while len(self._generators) > MAX_GENERATORS:
            self._generators.popitem(last=False)
        return generator

    def tokenizer(self) -> Any:
        return self.generator("sd").pipe.tokenizer


def describe_prompt(prompt: str, models: DemoModels) -> str:
    """Markdown under the prompt box: the parsed triplet (what InfSplign would guide) and any unknown words."""
    from ..models.tokenizer import unknown_words
    from ..triplets import parse_triplet

    if not prompt or not prompt.strip():
        return "Type a prompt; a relation such as *to the left of* or *in front of* can be guided."
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"The prompt is {len(prompt)} characters long; keep it to {MAX_PROMPT_CHARS}."
    lines = []
    triplet = parse_triplet(prompt)
    if triplet is None:
        lines.append("No guidable relation: InfSplign will sample this prompt unguided.")
    else:
        lines.append(f"Triplet: **{triplet.a.text}** / *{triplet.relation}* / **{triplet.b.text}**")
    unknown = unknown_words(models.tokenizer(), prompt)
    if unknown:
        lines.append(f"Words the model does not know (they become `<unk>`): {', '.join(unknown)}")
    return "  \n".join(lines)


def _settings(request: DemoRequest) -> Any:
    from ..generate import GenerationSettings

    return GenerationSettings(steps=request.steps, guidance=request.guidance, scheduler=request.sampler)


def _configured(models: DemoModels, request: DemoRequest) -> Any:
    """The cached generator of the request's method, with its schedule and guidance settings for this call."""
    from ..guidance import InfSplignConfig, recommended_weight
    from ..ildm.schedules import make_schedule

    method = METHOD_CHOICES[request.method]
    generator = models.generator(method, request.lora)
    changes: dict[str, Any] = {}
    if method.startswith("ildm"):
        params: dict[str, float] = {}
        if request.schedule == "drop":
            params = {"tau": request.tau}
        elif request.schedule == "gaussian":
            params = {"alpha": request.gaussian_alpha, "tau": request.gaussian_tau, "sigma": request.gaussian_sigma}
        changes["schedule"] = make_schedule(request.schedule, **params)
    if method.endswith("infsplign"):
        weight = request.weight if request.weight is not None else recommended_weight(generator.pipe)
        changes["spatial_guidance"] = InfSplignConfig(
            loss=request.loss, weight=weight, guide_fraction=request.guide_fraction, presence=request.presence
        )
    return replace(generator, **changes)


def _rewrite(models: DemoModels, request: DemoRequest) -> tuple[str, str]:
    """The prompt to sample (TORE's rewrite when asked) and a note on what TORE did."""
    if not request.tore:
        return request.prompt, ""
    from ..bias import load_bias_table
    from ..tore import tore_rewrite

    try:
        table = load_bias_table(None, models.generator("sd", request.lora).pipe)
    except (FileNotFoundError, KeyError, ValueError) as error:
        raise DemoInputError(f"TORE needs the model's bias table (`spatialgen bias`): {error}") from error
    rewrite = tore_rewrite(request.prompt, table["accuracy"], request.tore_tau)
    if rewrite.prompt == request.prompt:
        return request.prompt, "TORE kept the prompt as it is."
    return rewrite.prompt, f"TORE rewrote the prompt to: *{rewrite.prompt}*"


def generate(request: DemoRequest, models: DemoModels, on_step: Callable[[int, int], None] | None = None) -> DemoResult:
    """Sample the request's images (one batch), with I-LDM's maps and InfSplign's strips when they exist."""
    from ..generate import check_prompts, prepare_sampling, sample_chunk, save_generated
    from ..intrinsics import Intrinsics

    request = check_request(request)
    generator = _configured(models, request)
    prompt, note = _rewrite(models, request)
    settings = _settings(request).validate()
    try:
        check_prompts(generator.pipe, [prompt], strict=request.strict, guided=generator.guided)
    except ValueError as error:
        message = str(error).replace("drop --strict", "untick 'strict'")
        message = message.replace("use --method sd", "choose Stable Diffusion")
        raise DemoInputError(message) from error
    jobs = [(prompt, request.seed + k) for k in range(request.images)]
    size = prepare_sampling(generator, [prompt], settings, len(jobs), request.strict)
    total = settings.steps
    results = sample_chunk(
        generator,
        jobs,
        settings,
        size,
        save_attention=generator.guided,
        on_step=(lambda i: on_step(i, total)) if on_step is not None else None,
    )
    folder = models.output_folder()
    saved = save_generated(results, folder, {"model": models.model, "method": generator.method}, grid=False)
    images = [(r.image, f"seed {r.seed}") for r in saved]
    maps: list[tuple[Image.Image, str]] = []
    for r in saved:
        if r.intrinsics is not None:
            pictures = Intrinsics(**{k: np.asarray(v) for k, v in r.intrinsics.items()}).visualise()
            maps += [(Image.fromarray(picture), f"{name} (seed {r.seed})") for name, picture in pictures.items()]
    strips = [(r.attention, f"attention (seed {r.seed})") for r in saved if r.attention is not None]
    files = sorted(str(p) for p in folder.iterdir() if p.suffix in (".png", ".json"))
    if generator.guided and all(r.details and r.details.get("infsplign") is None for r in saved):
        note = (note + "  \n" if note else "") + "No guidable relation in the prompt: sampled without guidance."
    return DemoResult(images, maps, strips, files, note)


def compare(
    prompt: str, seed: int, steps: int, models: DemoModels, mode: str = "guidance", guidance: float = 7.5
) -> list[tuple[Image.Image, str]]:
    """The same prompt and seed side by side, with the scene recogniser's boxes and VISOR's verdict on each.

    ``mode`` "guidance": without and with InfSplign; "schedules": I-LDM under each schedule.
    """
    from ..eval.detection.detectors import load_detector
    from ..eval.runs.report import draw_detections
    from ..eval.scorers.visor import visor_verdict
    from ..triplets import parse_triplet

    if mode not in ("guidance", "schedules"):
        raise DemoInputError(f"Compare 'guidance' or 'schedules', not {mode!r}.")
    base = DemoRequest(prompt=prompt, seed=seed, steps=steps, guidance=guidance)
    rows = (
        [
            ("without guidance", replace(base, method="Stable Diffusion")),
            ("InfSplign", replace(base, method="InfSplign")),
        ]
        if mode == "guidance"
        else [(f"I-LDM {s}", replace(base, method="I-LDM", schedule=s)) for s in SCHEDULE_CHOICES]
    )
    triplet = parse_triplet(prompt)
    detector = load_detector("scenes")
    out = []
    for label, request in rows:
        image = generate(request, models).images[0][0]
        caption = label
        if triplet is not None:
            a, b = triplet.a.text, triplet.b.text
            found = detector.detect([image], [[a, b]])[0]
            verdict = visor_verdict(found, a, b, triplet.relation)
            status = "correct" if verdict.passed else ("wrong place" if verdict.both_present else "object missing")
            caption = f"{label}: VISOR {status}"
            image = draw_detections(image, found)
        out.append((image, caption))
    return out


MAX_UPLOAD_PIXELS = 4096 * 4096  # uploads larger than this are refused before they are decoded further


def _checked_upload(image: Any, what: str) -> Image.Image:
    """An uploaded picture as RGB, refused with a readable message when missing or unreasonably large."""
    if image is None:
        raise DemoInputError(f"Upload {what} first.")
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if picture.width * picture.height > MAX_UPLOAD_PIXELS:
        raise DemoInputError(f"{what.capitalize()} is {picture.width} x {picture.height} pixels; upload at most 16 MP.")
    return picture.convert("RGB")


def _held_ildm(models: DemoModels, job: str) -> Any:
    """The I-LDM pipeline, refused when its training never held a domain clean (it cannot do ``job``)."""
    from ..ildm.held_jobs import held_job_refusal

    pipe = models.generator("ildm").pipe
    refusal = held_job_refusal(pipe, job)  # type: ignore[arg-type]
    if refusal is not None:
        raise DemoInputError(refusal[0].upper() + refusal[1:].split(";")[0] + ".")
    return pipe


def read_maps(image: Any, seed: int, steps: int, models: DemoModels) -> list[tuple[Image.Image, str]]:
    """The depth, normals, segmentation and lines I-LDM reads from an uploaded image (its image domain held clean)."""
    from ..ilora.extract import ILDM_MAPS, IntrinsicExtractor
    from ..intrinsics import Intrinsics

    if not 1 <= int(steps) <= MAX_STEPS:
        raise DemoInputError(f"Steps must be between 1 and {MAX_STEPS}, got {steps}.")
    picture = _checked_upload(image, "an image")
    extractor = IntrinsicExtractor(ILDM_MAPS, ildm=_held_ildm(models, "read"), predict_options={"steps": int(steps)})
    (maps,) = extractor.extract([picture], seed=int(seed))  # the same path as `intrinsics extract --method ildm`
    pictures = Intrinsics(**{k: v[None] for k, v in maps.items()}).visualise(0)
    return [(picture, "image")] + [(Image.fromarray(p), name) for name, p in pictures.items()]


def draw_from_maps(
    prompt: str, depth: Any, segmentation: Any, seed: int, steps: int, images: int, models: DemoModels
) -> DemoResult:
    """Images for the prompt that follow an uploaded depth map (grey, near = bright) and optional segmentation."""
    import torch

    from ..ildm.given import complete_maps, snap_to_palette
    from ..intrinsics import Intrinsics

    request = check_request(DemoRequest(prompt=prompt, seed=seed, steps=steps, images=images, method="I-LDM"))
    pipe = _held_ildm(models, "follow")
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    grey = _checked_upload(depth, "a depth map").convert("L").resize((side, side), Image.BILINEAR)
    seg = None
    if segmentation is not None:
        coloured = _checked_upload(segmentation, "a segmentation").resize((side, side), Image.NEAREST)
        seg = snap_to_palette(np.moveaxis(np.asarray(coloured, dtype=np.float64) / 255.0, -1, 0))
    maps = complete_maps(depth=np.asarray(grey, dtype=np.float64)[None] / 255.0, segmentation=seg)
    held = Intrinsics(
        *(
            torch.from_numpy(getattr(maps, f)).expand(request.images, -1, -1, -1)
            for f in ("depth", "normal", "segmentation", "lines")
        )
    )
    out = pipe(
        [request.prompt] * request.images,
        given_intrinsics=held,
        num_inference_steps=request.steps,
        generator=[torch.Generator().manual_seed(request.seed + k) for k in range(request.images)],
    )
    shown = [(Image.fromarray(p), name) for name, p in maps.visualise(0).items()]
    return DemoResult([(im, f"seed {request.seed + k}") for k, im in enumerate(out.images)], shown)
