"""Image quality and text alignment: CMMD, CLIP score, Fréchet distance, and offline stand-ins.

The I-LDM paper reports CMMD (fidelity, against the base model's images) and CLIP score (text
alignment). Both need CLIP weights, which users load from their own checkpoint or a hub id. So
that every metric also runs offline on the scene world, the same CMMD and Fréchet distance are
computed in the feature space of our scene-world recogniser, against held-out renders.

What each function computes, and where it follows an official implementation:

* :func:`mmd_rbf` / :func:`cmmd`: the estimator of google-research ``cmmd/distance.py``: squared
  MMD with a Gaussian RBF kernel ``exp(-||x - y||^2 / (2 sigma^2))``, ``sigma = 10``, times
  ``1000``, and the *biased* (minimum-variance, V-statistic) form of Gretton et al. (2012) Eq. 5:
  the means over the full Gram matrices, diagonal terms included. So a set against itself gives
  exactly 0. The Gram matrices are computed block by block (``chunk_size``), so memory stays at
  ``chunk_size**2`` numbers whatever the set sizes; the official code holds all of ``x @ x.T``.
* :class:`ClipImageEmbedder`: CMMD's embedding, as ``cmmd/io_util.py`` + ``cmmd/embedding.py`` do:
  centre-crop to a square, PIL bicubic resize (antialiased) to the model's input size (336 for
  the official CLIP ViT-L/14@336), scale to [0, 1], normalise with CLIP's mean and std, take the
  projected image embedding and L2-normalise it (scenic's ``encode_image(normalize=True)``).
  Unlike the official script we keep every image (it drops the remainder after batching).
* :class:`ClipScorer`: CLIP score as Hessel et al. (2021) define it per image, with torchmetrics'
  scale of 100: ``100 * max(cos(image, text), 0)``, then the mean over images. torchmetrics'
  ``clip_score`` clamps the *mean* instead of each image; the two agree whenever no cosine is
  negative (the usual case with real CLIP weights). ``clamp="mean"`` gives torchmetrics' rule.
* :func:`frechet_distance`: the FID formula ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``
  on any features, with ``tr((S1 S2)^(1/2))`` from symmetric eigendecompositions (see there).
* :func:`recogniser_features` / :func:`scene_quality`: CMMD and Fréchet distance in the scene-world
  recogniser's feature space (global average pools of its activations), the offline stand-in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...scenes.held_out import HELD_OUT_SEED
from ..scene.recogniser import SceneRecogniser

#: The official CMMD kernel bandwidth and scale (google-research cmmd/distance.py).
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0
#: The official CMMD embedding model (scenic's ``vit_l14_336px``), as a transformers hub id.
CMMD_CLIP = "openai/clip-vit-large-patch14-336"
#: torchmetrics' default model for CLIP score.
CLIP_SCORE_CLIP = "openai/clip-vit-large-patch14"
#: OpenAI CLIP's pixel normalisation, used when a checkpoint has no preprocessor config.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Image files read from folders (the official CMMD script reads the same extensions).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

#: The recogniser's submodules whose activations can be pooled into features, in forward order.
RECOGNISER_LAYERS = ("stem", "enc1", "enc2", "enc3", "dec2", "dec1", "head")
#: Bottleneck (what is where, coarsely) + last decoder block (per-pixel class evidence).
DEFAULT_RECOGNISER_LAYERS = ("enc3", "dec1")

ImageLike = Any  # a PIL image, a uint8 (H, W, 3) or (H, W) array, or a path to an image file


# --------------------------------------------------------------------------------------------
# MMD / CMMD


def _as_matrix(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, dim) matrix of embeddings, got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _kernel_mean(
    a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor, gamma: float, chunk: int
) -> torch.Tensor:
    """Mean of exp(-gamma ||a_i - b_j||^2) over all (i, j), one ``chunk x chunk`` block at a time."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i in range(0, a.shape[0], chunk):
        ai, ai_sq = a[i : i + chunk], a_sq[i : i + chunk, None]
        for j in range(0, b.shape[0], chunk):
            d2 = ai_sq + b_sq[None, j : j + chunk] - 2.0 * (ai @ b[j : j + chunk].T)
            # Rounding can make a distance of zero slightly negative: the exact value is >= 0.
            total += torch.exp(-gamma * d2.clamp_min_(0.0)).sum(dtype=torch.float64)
    return total / (a.shape[0] * b.shape[0])


def mmd_rbf(
    x: Any,
    y: Any,
    sigma: float = CMMD_SIGMA,
    scale: float = CMMD_SCALE,
    chunk_size: int = 2048,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> float:
    """``scale`` x the biased squared MMD between two sets of vectors, Gaussian RBF kernel.

    ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))`` and ``MMD^2 = mean K_xx + mean K_yy - 2 mean K_xy``
    over the full matrices (diagonals included), exactly as google-research ``cmmd/distance.py``.
    The sets may differ in size. ``chunk_size`` bounds memory (blocks of ``chunk_size**2``
    kernel values) and does not change the result beyond rounding. ``dtype`` is the compute
    precision of the Gram blocks (float64 by default; the official code runs in float32, and
    float32 here moved a test CMMD by 4e-5 relative); block sums always accumulate in float64.
    No normalisation happens here: :func:`cmmd` normalises first.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    xt, yt = _as_matrix(x, "x"), _as_matrix(y, "y")
    if xt.shape[1] != yt.shape[1]:
        raise ValueError(f"x and y have different dimensions: {xt.shape[1]} and {yt.shape[1]}")
    target = torch.device(device) if device is not None else xt.device
    xt, yt = xt.to(target, dtype), yt.to(target, dtype)
    gamma = 1.0 / (2.0 * sigma**2)
    x_sq, y_sq = (xt * xt).sum(1), (yt * yt).sum(1)
    k_xx = _kernel_mean(xt, xt, x_sq, x_sq, gamma, chunk_size)
    k_yy = _kernel_mean(yt, yt, y_sq, y_sq, gamma, chunk_size)
    k_xy = _kernel_mean(xt, yt, x_sq, y_sq, gamma, chunk_size)
    return float(scale * (k_xx + k_yy - 2.0 * k_xy))


def l2_normalise(x: Any) -> torch.Tensor:
    """Rows scaled to unit length (a zero row is an error: it has no direction)."""
    t = _as_matrix(x, "embeddings")
    norms = t.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("an embedding is the zero vector and cannot be L2-normalised")
    return t / norms


def cmmd(x_embeddings: Any, y_embeddings: Any, chunk_size: int = 2048, normalise: bool = True) -> float:
    """CMMD between two sets of image embeddings (lower = closer distributions; 0 for equal sets).

    The embeddings are L2-normalised first (as CLIP's are when CMMD computes them; a no-op for
    :class:`ClipImageEmbedder` output), then :func:`mmd_rbf` with sigma 10 and scale 1000.
    """
    if normalise:
        x_embeddings, y_embeddings = l2_normalise(x_embeddings), l2_normalise(y_embeddings)
    return mmd_rbf(x_embeddings, y_embeddings, CMMD_SIGMA, CMMD_SCALE, chunk_size)


# --------------------------------------------------------------------------------------------
# Fréchet distance


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``np.cov(rowvar=False)``, as pytorch-fid) of (n, dim) features."""
    f = _as_matrix(features, "features").double().cpu().numpy()
    if f.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {f.shape[0]}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def frechet_distance_from_stats(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 0.0) -> float:
    """``||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` (the FID formula).

    ``tr((S1 S2)^(1/2))`` is computed as the sum of square roots of the eigenvalues of the
    symmetric matrix ``S1^(1/2) S2 S1^(1/2)``, which has the same eigenvalues as ``S1 S2``. Both
    steps are symmetric eigendecompositions in float64 with negative rounding noise clamped to 0,
    so there is no complex ``sqrtm`` output to discard and singular covariances (fewer samples
    than dimensions, constant features) need no special case. ``eps`` (default 0) adds
    ``eps * I`` to both covariances, the ridge pytorch-fid falls back to when ``sqrtm`` fails;
    set it (e.g. 1e-6) only to regularise on purpose: with singular covariances it can move the
    result by ``O(sqrt(eps))`` per degenerate dimension.
    """
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {m1.shape}, mu2 {m2.shape}, sigma1 {s1.shape}, sigma2 {s2.shape}; "
            "expected (d,), (d,), (d, d), (d, d)"
        )
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    t1 = torch.from_numpy((s1 + s1.T) / 2 + eps * np.eye(d))
    t2 = torch.from_numpy((s2 + s2.T) / 2 + eps * np.eye(d))
    root1 = _psd_sqrt(t1)
    middle = root1 @ t2 @ root1
    tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0.0).sqrt().sum()
    diff = m1 - m2
    value = float(diff @ diff) + float(torch.trace(t1) + torch.trace(t2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def frechet_distance(x_features: Any, y_features: Any, eps: float = 0.0) -> float:
    """Fréchet distance between Gaussians fitted to two (n, dim) feature sets; see the stats version."""
    mu1, s1 = feature_statistics(x_features)
    mu2, s2 = feature_statistics(y_features)
    return frechet_distance_from_stats(mu1, s1, mu2, s2, eps)


# --------------------------------------------------------------------------------------------
# Images in


def image_paths(folder: str | os.PathLike[str], max_count: int | None = None) -> list[Path]:
    """Image files (.png, .jpg, .jpeg, any case) directly in ``folder``, sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no such image folder: {str(root)!r}")
    paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no .png/.jpg/.jpeg images in {str(root)!r}")
    return paths[:max_count] if max_count is not None and max_count > 0 else paths


def as_rgb_image(image: ImageLike) -> Image.Image:
    """A PIL RGB image from a PIL image, a uint8 (H, W, 3) / (H, W) array, or an image path."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise ValueError(
            f"expected a PIL image, an image path or a uint8 (H, W, 3) or (H, W) array; got {array.dtype} "
            f"{array.shape} (float images: convert with (x * 255).round().astype(np.uint8))"
        )
    return Image.fromarray(array).convert("RGB")


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def centre_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Centre square crop, then PIL bicubic (antialiased) resize: CMMD's ``_center_crop_and_resize``."""
    w, h = image.size
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), resample=Image.BICUBIC)


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
        out = [self.embed_pixels(self.preprocess(batch)) for batch in _batches(images, batch_size or self.batch_size)]
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


# --------------------------------------------------------------------------------------------
# Offline stand-ins: the scene-world recogniser's feature space


def scene_reference_images(n: int, seed: int = HELD_OUT_SEED, size: int = 64) -> list[np.ndarray]:
    """``n`` held-out scene-world renders (uint8 (size, size, 3)), scenes ``scene_seed(seed, i)``.

    The held-out seed is kept out of training by convention, so these renders are the world's own
    distribution without being the model's training images.
    """
    from ...scenes import make_sample, scene_seed

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return [make_sample(scene_seed(seed, i), size).rgb for i in range(n)]


def _recogniser_input(images: Sequence[ImageLike] | torch.Tensor, resolution: int) -> torch.Tensor:
    """(N, 3, R, R) in [-1, 1]: PIL / arrays / paths are centre-cropped and resized (bicubic) when needed."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) tensor in [-1, 1], got shape {tuple(images.shape)}")
        x = images.float()
        if x.shape[-2:] != (resolution, resolution):
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        return x
    pictures = []
    for im in images:
        pil = as_rgb_image(im)
        if pil.size != (resolution, resolution):
            pil = centre_crop_resize(pil, resolution)
        pictures.append(np.asarray(pil))
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def recogniser_features(
    images: Sequence[ImageLike] | torch.Tensor,
    recogniser: SceneRecogniser | None = None,
    layers: Iterable[str] = DEFAULT_RECOGNISER_LAYERS,
    batch_size: int = 64,
) -> torch.Tensor:
    """Global-average-pooled activations of the recogniser's ``layers``, concatenated: (N, D) float32.

    Forward hooks read the activations of the named submodules of :class:`RecogniserNet` (see
    ``RECOGNISER_LAYERS``) during its ordinary forward pass. Images are brought to the
    recogniser's resolution first (64 px for the embedded one), as it was trained there.
    ``recogniser=None`` loads the embedded recogniser.
    """
    recogniser = recogniser if recogniser is not None else SceneRecogniser.load()
    names = list(layers)
    unknown = [name for name in names if name not in RECOGNISER_LAYERS]
    if not names or unknown:
        raise ValueError(f"unknown recogniser layers {unknown or names}; choose from {RECOGNISER_LAYERS}")
    if len(images) == 0:
        raise ValueError("no images to featurise")
    net = recogniser.net
    captured: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def record(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            captured[name] = output.mean(dim=(2, 3))

        return record

    handles = [net.get_submodule(name).register_forward_hook(hook(name)) for name in names]
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = _recogniser_input(images[start : start + batch_size], recogniser.resolution)
            captured.clear()
            net(x.to(recogniser.device, torch.float32))
            out.append(torch.cat([captured[name] for name in names], dim=1).float().cpu())
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(out)


@dataclass
class QualityReport:
    """Distribution distances between an image set and a reference set (lower = closer)."""

    n_images: int
    n_reference: int
    cmmd_clip: float | None = None
    cmmd_recogniser: float | None = None
    frechet_recogniser: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scene_quality(
    images: Sequence[ImageLike] | torch.Tensor,
    reference: Sequence[ImageLike] | torch.Tensor | None = None,
    recogniser: SceneRecogniser | None = None,
    layers: Iterable[str] = DEFAULT_RECOGNISER_LAYERS,
) -> QualityReport:
    """CMMD and Fréchet distance in the recogniser's feature space: the offline stand-ins.

    ``reference=None`` uses as many held-out scene renders as there are images, at the
    recogniser's resolution. CMMD here L2-normalises the pooled features and uses the CLIP
    CMMD's sigma and scale, so both numbers are comparable across runs of this project, not
    with CLIP-space CMMD or Inception FID.
    """
    recogniser = recogniser if recogniser is not None else SceneRecogniser.load()
    if reference is None:
        reference = scene_reference_images(len(images), size=recogniser.resolution)
    layers = tuple(layers)
    x = recogniser_features(images, recogniser, layers)
    y = recogniser_features(reference, recogniser, layers)
    return QualityReport(
        n_images=len(x),
        n_reference=len(y),
        cmmd_recogniser=cmmd(y, x),
        frechet_recogniser=frechet_distance(y, x) if min(len(x), len(y)) >= 2 else None,
    )


def compare_image_sets(
    images: Sequence[ImageLike],
    reference: Sequence[ImageLike],
    clip_embedder: ClipImageEmbedder | None = None,
    recogniser: SceneRecogniser | None = None,
    use_recogniser: bool = True,
    layers: Iterable[str] = DEFAULT_RECOGNISER_LAYERS,
) -> QualityReport:
    """Every distance available: CLIP CMMD when an embedder is given, recogniser CMMD/FD when asked.

    For two folders: ``compare_image_sets(image_paths(a), image_paths(b), ClipImageEmbedder.from_pretrained())``
    (paths are opened a batch at a time, so large folders do not have to fit in memory).
    """
    if len(images) == 0 or len(reference) == 0:
        raise ValueError(f"both sets need images; got {len(images)} images and {len(reference)} references")
    report = QualityReport(n_images=len(images), n_reference=len(reference))
    if use_recogniser:
        scene = scene_quality(images, reference, recogniser, layers)
        report.cmmd_recogniser, report.frechet_recogniser = scene.cmmd_recogniser, scene.frechet_recogniser
    if clip_embedder is not None:
        report.cmmd_clip = clip_embedder.cmmd(images, reference)
    return report
