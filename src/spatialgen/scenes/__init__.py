"""The procedural scene world: 3D scenes of simple objects with exact intrinsics, captions and
spatial-relation labels. Training data of the embedded model and ground truth of evaluations.

Light imports only (numpy, Pillow): the torch datasets live in :mod:`spatialgen.scenes.dataset`.
"""

from .annotate import ObjectAnnotation, Relation
from .captions import CAPTION_KINDS, DEFAULT_CAPTION_MIX, CaptionRules, choose_caption, vocabulary
from .render import SceneRender, render
from .sampling import sample_scene, scene_seed
from .shards import DatasetParams, SceneShards, make_dataset
from .spec import CameraSpec, FloorSpec, LightSpec, ObjectSpec, SceneConfig, SceneSpec
from .world import SceneSample, make_sample, sample_from_spec

__all__ = [
    "CAPTION_KINDS",
    "DEFAULT_CAPTION_MIX",
    "CameraSpec",
    "CaptionRules",
    "DatasetParams",
    "FloorSpec",
    "LightSpec",
    "ObjectAnnotation",
    "ObjectSpec",
    "Relation",
    "SceneConfig",
    "SceneRender",
    "SceneSample",
    "SceneShards",
    "SceneSpec",
    "choose_caption",
    "make_dataset",
    "make_sample",
    "render",
    "sample_from_spec",
    "sample_scene",
    "scene_seed",
    "vocabulary",
]
