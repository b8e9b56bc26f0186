"""Real image datasets made into training data: intrinsic maps estimated per image, written as shards.

``spatialgen intrinsics extract --source DIR --out DATA`` reads what ``spatialgen curate`` reads,
estimates depth, normals, segmentation and lines with the models the user names
(:mod:`.estimators`), and writes shards (:mod:`spatialgen.intrinsic_shards`) that ``train intrinsic-vae`` and ``train
ildm`` read as they read scene datasets (:func:`open_dataset`).
"""

from ..intrinsic_shards import ImageIntrinsics, IntrinsicShards, open_dataset
from .estimators import IntrinsicsEstimator, normals_from_depth
from .job import ExtractionSettings, extract_dataset

__all__ = [
    "ExtractionSettings",
    "ImageIntrinsics",
    "IntrinsicShards",
    "IntrinsicsEstimator",
    "extract_dataset",
    "normals_from_depth",
    "open_dataset",
]
