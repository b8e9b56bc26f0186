"""Image quality against a reference set: CMMD and Fréchet distance, with CLIP or offline in the scene
recogniser's features.

The I-LDM paper reports CMMD (fidelity, against the base model's images) and CLIP score (text
alignment). Both need CLIP weights (:mod:`.clip`), which users load from their own checkpoint or a
hub id. So that every metric also runs offline on the scene world, the same CMMD and Fréchet
distance (:mod:`.distances`) are computed in the feature space of our scene-world recogniser
(global average pools of its activations), against held-out renders:
:func:`recogniser_features` / :func:`scene_quality`. :func:`compare_image_sets` gives every
distance available for two sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...scenes.held_out import HELD_OUT_SEED
from ..scene.recogniser import SceneRecogniser
from .clip import ClipImageEmbedder
from .distances import cmmd, frechet_distance
from .images import ImageLike, as_rgb_image, centre_crop_resize

#: The recogniser's submodules whose activations can be pooled into features, in forward order.
RECOGNISER_LAYERS = ("stem", "enc1", "enc2", "enc3", "dec2", "dec1", "head")
#: Bottleneck (what is where, coarsely) + last decoder block (per-pixel class evidence).
DEFAULT_RECOGNISER_LAYERS = ("enc3", "dec1")


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
