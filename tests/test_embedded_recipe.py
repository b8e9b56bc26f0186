"""The embedded model's training recipe keeps the evaluation split out of training, and its data rebuild exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spatialgen.cli.scenes import make_command
from spatialgen.models.data import batch_generator, draw_captions, model_scene_config
from spatialgen.models.training import BaseTrainConfig
from spatialgen.scenes import make_sample, scene_seed
from spatialgen.scenes.captions import RELATIONAL_KINDS
from spatialgen.scenes.held_out import caption_triplet, is_held_out_caption

RECIPE = Path(__file__).parents[1] / "configs" / "embedded-v2.json"


@pytest.fixture(scope="module")
def recipe() -> dict:
    return json.loads(RECIPE.read_text())


def test_the_recipe_excludes_the_held_out_split_and_keeps_relations_rare(recipe: dict) -> None:
    cfg = BaseTrainConfig.from_file(RECIPE)
    assert cfg.exclude_held_out is True
    assert sum(share for kind, share in cfg.caption_mix.items() if kind in RELATIONAL_KINDS) <= 0.10
    assert "--distance 4.5 5.5" in make_command(recipe["data"])  # its data rebuild with their distribution


def test_no_held_out_triplet_is_among_the_captions_the_recipe_can_draw(recipe: dict) -> None:
    cfg = BaseTrainConfig.from_file(RECIPE)
    config = model_scene_config(recipe, max_objects=None)
    scenes = [make_sample(scene_seed(recipe["data"]["seed"], i), 16, config).captions for i in range(300)]
    relational = [c[k] for c in scenes for k in RELATIONAL_KINDS if k in c]
    held = [c for c in relational if is_held_out_caption(c)]
    assert held, "the scenes hold held-out relations, so the filter below has something to remove"
    drawn = set()
    for step in range(40):  # every scene many times over with the recipe's own mix, dropout and filter
        rng = batch_generator(cfg.seed + 1, step)
        indices = np.arange(len(scenes))
        drawn.update(draw_captions(rng, scenes, indices, cfg.caption_mix, cfg.caption_dropout, cfg.exclude_held_out))
    drawn_relations = [c for c in drawn if caption_triplet(c) is not None]
    assert len(drawn_relations) > 100  # relational captions are drawn, just never held-out ones
    assert not any(is_held_out_caption(c) for c in drawn)
