"""Human-preference scores: ImageReward and HPSv2, as optional adapters.

The I-LDM paper reports ImageReward (Xu et al. 2023) and HPSv2 (Wu et al. 2023). Both models
live in packages of their own that pull in heavy, pinned dependencies, so they are optional
extras: ``pip install "spatialgen[imagereward]"`` (the ``image-reward`` package) and
``pip install "spatialgen[hps]"`` (``open-clip-torch``). Nothing imports them until a scorer
is loaded, and a missing one raises an ImportError that names the extra.

What is ours and what is theirs:

* HPSv2: our code does what the official ``hpsv2/img_score.py`` does around an open_clip
  ViT-H-14 carrying the HPSv2 checkpoint: preprocess as its ``preprocess_val`` (the
  ``light_augmentation=True`` transform: to [0, 1], resize the longer side to 224 with
  antialiased bicubic, zero-pad to a centred square, normalise with OpenAI CLIP's mean and std),
  encode image and prompt, L2-normalise both, and score the diagonal of
  ``image_features @ text_features.T``, i.e. the cosine of each image with its prompt (no
  logit scale). The official code runs under CUDA autocast (fp16); we run in the model's dtype,
  so scores can differ in the third decimal.
* ImageReward: its BLIP encoder and reward head stay in the package; the adapter calls its
  ``score(prompt, images)``, grouping images by prompt and returning one float per image in
  input order.

Tests: the HPSv2 math (preprocessing, encoding calls, normalisation, the diagonal score,
batching) is tested with tiny torch modules that implement open_clip's ``encode_image`` /
``encode_text`` and a tokenizer callable; the ImageReward adapter with a stand-in object that has
``score``; and the ImportError of each missing package. Neither real model, nor loading the real
checkpoints, is tested here (no weights can be downloaded on our machines).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from .images import ImageLike, as_rgb_image

#: The official HPSv2 checkpoints on the Hugging Face hub (hpsv2/utils.py ``hps_version_map``).
HPS_REPO = "xswu/HPSv2"
HPS_CHECKPOINTS = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
HPS_ARCHITECTURE = "ViT-H-14"
IMAGEREWARD_DEFAULT = "ImageReward-v1.0"


def require(module: str, extra: str, purpose: str) -> Any:
    """Import an optional package, or raise an ImportError that says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the optional package {module!r}, which is not installed: "
            f"pip install 'spatialgen[{extra}]'"
        ) from error


def _prompt_list(prompts: str | Sequence[str], n: int) -> list[str]:
    prompt_list = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(prompt_list) != n:
        raise ValueError(f"got {n} images but {len(prompt_list)} prompts: give one prompt per image, or one for all")
    if n == 0:
        raise ValueError("no images to score")
    return prompt_list


# --------------------------------------------------------------------------------------------
# HPSv2


def resize_longest_and_pad(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (3, size, size): HPSv2's ``ResizeMaxSize`` with fill 0.

    The longer side becomes ``size`` (the other ``round(side * scale)``) by antialiased bicubic
    interpolation (torchvision's tensor resize, unclamped), then zeros pad it to a centred square
    (an odd pixel goes right / bottom). One deviation: the official transform skips the padding
    too when the longer side already is ``size``, which hands the model a non-square image that
    it cannot take; we pad that case as well.
    """
    _, h, w = pixels.shape
    scale = size / float(max(h, w))
    if scale != 1.0:
        h, w = round(h * scale), round(w * scale)
        pixels = F.interpolate(pixels[None], size=(h, w), mode="bicubic", align_corners=False, antialias=True)[0]
    pad_h, pad_w = size - h, size - w
    if pad_h or pad_w:
        pixels = F.pad(pixels, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)
    return pixels


class HPSv2Scorer:
    """HPSv2 score (higher = preferred): the cosine between an image and its prompt in HPSv2's CLIP.

    ``model`` implements open_clip's ``encode_image(pixels)`` and ``encode_text(tokens)``;
    ``tokenizer`` maps a list of prompts to a LongTensor of token ids (open_clip's tokenizer).
    Load the real one with :meth:`from_pretrained`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Callable[[list[str]], torch.Tensor],
        image_size: int = 224,
        mean: Sequence[float] = OPENAI_CLIP_MEAN,
        std: Sequence[float] = OPENAI_CLIP_STD,
        batch_size: int = 16,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike[str] | None = None,
        version: str = "v2.0",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
    ) -> HPSv2Scorer:
        """open_clip ViT-H-14 with the HPSv2 weights from ``checkpoint``, or from the hub for ``version``.

        ``checkpoint`` may be a ``.safetensors`` file (a state dict) or the official ``.pt``
        file, which is read with ``torch.load(weights_only=True)``: tensors only, no code runs.
        ``version`` picks the hub file when no checkpoint is given: "v2.0" (the official
        ``score``'s default) or "v2.1".
        """
        open_clip = require("open_clip", "hps", "HPSv2 scoring")
        from ...devices import check_device

        target = check_device(device)
        if checkpoint is None:
            if version not in HPS_CHECKPOINTS:
                raise ValueError(f"unknown HPS version {version!r}; choose from {sorted(HPS_CHECKPOINTS)}")
            from huggingface_hub import hf_hub_download

            checkpoint = hf_hub_download(HPS_REPO, HPS_CHECKPOINTS[version])
        state = _load_state_dict(checkpoint)
        model = open_clip.create_model(HPS_ARCHITECTURE, pretrained=None)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"{str(checkpoint)!r} is not an HPSv2 {HPS_ARCHITECTURE} checkpoint for this open_clip: {error}"
            ) from error
        visual = getattr(model, "visual", None)
        size = getattr(visual, "image_size", 224)
        size = size[0] if isinstance(size, (tuple, list)) else size
        mean = getattr(visual, "image_mean", None) or OPENAI_CLIP_MEAN
        std = getattr(visual, "image_std", None) or OPENAI_CLIP_STD
        tokenizer = open_clip.get_tokenizer(HPS_ARCHITECTURE)
        return cls(model.to(target, dtype), tokenizer, int(size), mean, std, batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """(N, 3, S, S): RGB to [0, 1], resize the longer side to S and pad, normalise."""
        out = []
        for image in images:
            array = np.asarray(as_rgb_image(image))
            pixels = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0
            out.append((resize_longest_and_pad(pixels, self.image_size) - self.mean) / self.std)
        return torch.stack(out)

    @torch.no_grad()
    def score_pixels(self, pixels: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Scores (N,) of preprocessed pixels against their prompts: diag(normalise(I) @ normalise(T).T)."""
        dtype = next(self.model.parameters()).dtype
        tokens = self.tokenizer(list(prompts)).to(self.device)
        image_features = F.normalize(self.model.encode_image(pixels.to(self.device, dtype)).float(), dim=-1)
        text_features = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
        return torch.diagonal(image_features @ text_features.T).cpu()

    def score(
        self, images: Sequence[ImageLike], prompts: str | Sequence[str], batch_size: int | None = None
    ) -> list[float]:
        """One HPSv2 score per image, in order; ``prompts`` is one per image, or one for all."""
        prompt_list = _prompt_list(prompts, len(images))
        size = batch_size or self.batch_size
        scores: list[float] = []
        for start in range(0, len(images), size):
            pixels = self.preprocess(images[start : start + size])
            scores.extend(float(s) for s in self.score_pixels(pixels, prompt_list[start : start + size]))
        return scores


def _load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no HPSv2 checkpoint at {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state: Any = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # any refusal of the restricted unpickler gets the same advice
            raise ValueError(
                f"cannot read {path!r} as a tensors-only checkpoint ({error}); convert it to .safetensors"
            ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} holds no state dict")
    # Checkpoints saved from DistributedDataParallel prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in state.items()}


# --------------------------------------------------------------------------------------------
# ImageReward


class ImageRewardScorer:
    """ImageReward score (higher = preferred) through the ``image-reward`` package's model.

    ``model`` is what ``ImageReward.load`` returns (anything with ``score(prompt, images)``
    taking a prompt and a list of PIL images, and returning a list of floats, or a float for a
    single image, as the package does). The package reads its weights with ``torch.load``.
    """

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "score", None)):
            raise TypeError(f"an ImageReward model needs a score(prompt, images) method; got {type(model).__name__}")
        self.model = model

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = IMAGEREWARD_DEFAULT,
        device: str | torch.device = "cpu",
        download_root: str | None = None,
    ) -> ImageRewardScorer:
        """``ImageReward.load(name_or_path)``: a released name ("ImageReward-v1.0") or a local ``.pt``."""
        reward = require("ImageReward", "imagereward", "ImageReward scoring")
        from ...devices import check_device

        model = reward.load(name_or_path, device=str(check_device(device)), download_root=download_root)
        return cls(model)

    def score(self, images: Sequence[ImageLike], prompts: str | Sequence[str]) -> list[float]:
        """One reward per image, in input order; images sharing a prompt are scored in one call."""
        prompt_list = _prompt_list(prompts, len(images))
        groups: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompt_list):
            groups.setdefault(prompt, []).append(index)
        scores = [0.0] * len(images)
        with torch.no_grad():
            for prompt, indices in groups.items():
                rewards = self.model.score(prompt, [as_rgb_image(images[i]) for i in indices])
                values = np.atleast_1d(np.asarray(rewards, dtype=np.float64)).ravel()
                if values.shape[0] != len(indices):
                    raise ValueError(f"the ImageReward model gave {values.shape[0]} scores for {len(indices)} images")
                for i, value in zip(indices, values, strict=True):
                    scores[i] = float(value)
        return scores
