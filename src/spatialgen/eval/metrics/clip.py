"""CLIP wrappers for the metrics that need real CLIP weights: CMMD's image embedding and CLIP score.

* :class:`ClipImageEmbedder`: CMMD's embedding, as ``cmmd/io_util.py`` + ``cmmd/embedding.py`` do:
  centre-crop to a square, PIL bicubic resize (antialiased) to the model's input size (336 for
  the official CLIP ViT-L/14@336), scale to [0, 1], normalise with CLIP's mean and std, take the
  projected image embedding and L2-normalise it (scenic's ``encode_image(normalize=True)``).
  Unlike the official script we keep every image (it drops the remainder after batching).
* :class:`ClipScorer`: CLIP score as Hessel et al. (2021) define it per image, with torchmetrics'
  scale of 100: ``100 * max(cos(image, text), 0)``, then the mean over images. torchmetrics'
  ``clip_score`` clamps the *mean* instead of each image; the two agree whenever no cosine is
  negative (the usual case with real CLIP weights). ``clamp="mean"`` gives torchmetrics' rule.

Weights come from the user's checkpoint or a hub id (transformers); nothing here downloads by itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .distances import cmmd
from .images import ImageLike, as_rgb_image, batches, centre_crop_resize

#: The official CMMD embedding model (scenic's ``vit_l14_336px``), as a transformers hub id.
CMMD_CLIP = "openai/clip-vit-large-patch14-336"
#: torchmetrics' default model for CLIP score.
CLIP_SCORE_CLIP = "openai/clip-vit-large-patch14"
#: OpenAI CLIP's pixel normalisation, used when a checkpoint has no preprocessor config.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _output_embeds(output: Any, name: str) -> torch.Tensor:
    """Projected embeddings from a transformers output: a tensor (4.x) or an output object (5.x)."""
    if isinstance(output, torch.Tensor):
        return output
    for key in (name, "pooler_output"):
        value = getattr(output, key, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cannot find {name!r} in a {type(output).__name__} returned by the CLIP model")


def _device(device: str | torch.device) -> torch.device:
    from ...devices import check_device

    return check_device(device)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _image_processor(name_or_path: str) -> Any:
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(name_or_path)


# --------------------------------------------------------------------------------------------
# CLIP: CMMD embeddings and CLIP score


class ClipImageEmbedder:
    """L2-normalised CLIP image embeddings, preprocessed as the official CMMD code does.

    ``model`` is a transformers ``CLIPVisionModelWithProjection`` or ``CLIPModel``; ``image_size``
    defaults to the model's input size; ``mean`` / ``std`` default to OpenAI CLIP's. Build it
    with :meth:`from_pretrained` from a checkpoint folder or hub id (default: the official CMMD
    model, ``openai/clip-vit-large-patch14-336``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        image_size: int | None = None,
        mean: Sequence[float] = OPENAI_CLIP_MEAN,
        std: Sequence[float] = OPENAI_CLIP_STD,
        batch_size: int = 32,
    ) -> None:
        self.model = model.eval()
        config = getattr(model.config, "vision_config", model.config)
        self.image_size = int(image_size or config.image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = CMMD_CLIP,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 32,
    ) -> ClipImageEmbedder:
        """Load the vision tower + projection (a full CLIP checkpoint works) from safetensors weights.

        The pixel mean and std come from the checkpoint's preprocessor config when it has one.
        """
        from transformers import AutoConfig, CLIPVisionModelWithProjection

        target = _device(device)
        config = AutoConfig.from_pretrained(name_or_path)
        if config.model_type == "clip":
            # A full CLIP checkpoint: its vision sub-config does not always carry the projection
            # width (transformers 5 then builds a 512-wide projection and refuses the weights).
            full, config = config, config.vision_config
            config.projection_dim = full.projection_dim
        with _quiet_transformers():  # the text tower's weights are "unexpected" here, and that is fine
            model = CLIPVisionModelWithProjection.from_pretrained(name_or_path, config=config, use_safetensors=True)
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        try:
            processor = _image_processor(name_or_path)
            mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        except OSError:
            pass  # no preprocessor_config.json: CLIP's own constants
        return cls(model.to(target, dtype), mean=mean, std=std, batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """(N, 3, S, S) float32 pixels: centre crop, bicubic resize to S, [0, 1], CLIP normalisation."""
        arrays = [np.asarray(centre_crop_resize(as_rgb_image(im), self.image_size)) for im in images]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        return (pixels - self.mean) / self.std

    @torch.no_grad()
    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings (N, D), float32 on the CPU, of preprocessed pixels."""
        dtype = next(self.model.parameters()).dtype
        pixels = pixels.to(self.device, dtype)
        if hasattr(self.model, "get_image_features"):
            embeds = _output_embeds(self.model.get_image_features(pixel_values=pixels), "image_embeds")
        else:
            embeds = _output_embeds(self.model(pixel_values=pixels), "image_embeds")
        return F.normalize(embeds.float(), dim=-1).cpu()

    def embed(self, images: Sequence[ImageLike], batch_size: int | None = None) -> torch.Tensor:
        """Unit-length embeddings (N, D) of images (PIL, uint8 arrays or paths, read a batch at a time)."""
        if len(images) == 0:
            raise ValueError("no images to embed")
        out = [self.embed_pixels(self.preprocess(batch)) for batch in batches(images, batch_size or self.batch_size)]
        return torch.cat(out)

    def cmmd(self, images: Sequence[ImageLike], reference: Sequence[ImageLike]) -> float:
        """CMMD between two image sets (lower is closer; the paper compares with the base model's images)."""
        return cmmd(self.embed(reference), self.embed(images))


@dataclass
class ClipScoreResult:
    """Per-image scores (each ``100 * max(cos, 0)``) and the reported value (their mean)."""

    scores: list[float]
    mean: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClipScorer:
    """CLIP score of images against their prompts with a transformers ``CLIPModel``.

    Images go through the checkpoint's own image processor (as torchmetrics does), prompts
    through its tokenizer, truncated to the text model's length. The score of an image is
    ``100 * max(cos(image_embedding, text_embedding), 0)`` (Hessel et al.'s CLIP-S with weight
    100 instead of 2.5); the reported value is the mean over images. With ``clamp="mean"`` the
    mean of the unclamped values is clamped instead, which is torchmetrics' ``clip_score``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        image_processor: Any,
        batch_size: int = 32,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = CLIP_SCORE_CLIP,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 32,
    ) -> ClipScorer:
        """Model (safetensors weights), tokenizer and image processor from one checkpoint or hub id."""
        from transformers import AutoTokenizer, CLIPModel

        target = _device(device)
        model = CLIPModel.from_pretrained(name_or_path, use_safetensors=True)
        return cls(
            model.to(target, dtype),
            AutoTokenizer.from_pretrained(name_or_path),
            _image_processor(name_or_path),
            batch_size,
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _max_length(self) -> int:
        limit = int(self.model.config.text_config.max_position_embeddings)
        model_max = getattr(self.tokenizer, "model_max_length", None)
        return min(limit, int(model_max)) if model_max else limit

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Unit-length image embeddings (N, D), float32 on the CPU."""
        pixels = self.image_processor(images=[as_rgb_image(im) for im in images], return_tensors="pt")["pixel_values"]
        dtype = next(self.model.parameters()).dtype
        output = self.model.get_image_features(pixel_values=pixels.to(self.device, dtype))
        return F.normalize(_output_embeds(output, "image_embeds").float(), dim=-1).cpu()

    @torch.no_grad()
    def text_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-length text embeddings (N, D), float32 on the CPU."""
        tokens = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=self._max_length(), return_tensors="pt"
        )
        output = self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
        )
        return F.normalize(_output_embeds(output, "text_embeds").float(), dim=-1).cpu()

    def cosines(
        self, images: Sequence[ImageLike], prompts: str | Sequence[str], batch_size: int | None = None
    ) -> torch.Tensor:
        """cos(image_i, prompt_i) for each image; one prompt string is used for every image."""
        prompt_list = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
        if len(prompt_list) != len(images):
            raise ValueError(f"got {len(images)} images but {len(prompt_list)} prompts: give one prompt per image")
        if not images:
            raise ValueError("no images to score")
        size = batch_size or self.batch_size
        out = []
        for start in range(0, len(images), size):
            img = self.image_embeddings(images[start : start + size])
            txt = self.text_embeddings(prompt_list[start : start + size])
            out.append((img * txt).sum(-1))
        return torch.cat(out)

    def score(
        self,
        images: Sequence[ImageLike],
        prompts: str | Sequence[str],
        batch_size: int | None = None,
        clamp: Literal["image", "mean"] = "image",
    ) -> ClipScoreResult:
        """CLIP score of ``images`` against ``prompts`` (one per image, or one for all)."""
        if clamp not in ("image", "mean"):
            raise ValueError(f"clamp must be 'image' or 'mean', got {clamp!r}")
        raw = 100.0 * self.cosines(images, prompts, batch_size).double()
        if clamp == "image":
            per_image = raw.clamp_min(0.0)
            return ClipScoreResult([float(s) for s in per_image], float(per_image.mean()))
        return ClipScoreResult([float(s) for s in raw], max(float(raw.mean()), 0.0))
