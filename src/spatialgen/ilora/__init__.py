"""Intrinsic LoRA (papers/002): read normals, depth, albedo and shading out of a generative model.

A rank-8 LoRA per intrinsic turns a Stable Diffusion UNet (or its VAE decoder) into a predictor
of that intrinsic through the model's own output head. :class:`IntrinsicLoRAModel` holds a base
and its adapters; :func:`train_ilora` trains one adapter; :class:`IntrinsicExtractor` writes maps
for folders of images.
"""

from ..models.fingerprint import base_fingerprint
from .adapters import VARIANTS, read_card
from .model import IntrinsicLoRAModel
from .scoring import MEASURES, score_maps
from .targets import INTRINSIC_PROMPTS, INTRINSICS, image_to_map, map_to_image, parse_intrinsics
from .training import ILoRATrainConfig, train_ilora

__all__ = [
    "INTRINSICS",
    "INTRINSIC_PROMPTS",
    "MEASURES",
    "VARIANTS",
    "ILoRATrainConfig",
    "IntrinsicLoRAModel",
    "base_fingerprint",
    "image_to_map",
    "map_to_image",
    "parse_intrinsics",
    "read_card",
    "score_maps",
    "train_ilora",
]
