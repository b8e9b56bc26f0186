"""The shipped embedded model is the v2 recipe's, trained without the held-out split, and its card says so."""

from __future__ import annotations

import json
from pathlib import Path

from spatialgen.models.pipeline import embedded_path

RECIPE = Path(__file__).parents[1] / "configs" / "embedded-v2.json"


def _card() -> dict:
    return json.loads((embedded_path() / "spatialgen.json").read_text())


def test_the_shipped_model_never_saw_a_held_out_triplet() -> None:
    card = _card()
    assert card["training"]["exclude_held_out"] is True


def test_the_shipped_model_is_the_recipe_and_carries_its_measurements() -> None:
    card, recipe = _card(), json.loads(RECIPE.read_text())
    assert card["data"] == recipe["data"]  # the README's `scenes make` rebuilds its data exactly
    for key in ("model", "caption_mix", "diffusion_steps", "vae_steps", "batch_size", "snr_gamma", "ema_decay"):
        assert card["training"][key] == recipe["training"][key], key
    assert set(card["cpu_hours"]) >= {"vae", "diffusion", "total"} and card["cpu_hours"]["total"] <= 6.0
    measured = card["measured"]
    for key in ("object_accuracy_all_objects", "object_accuracy_per_object", "vae_psnr_db", "cmmd_recogniser"):
        assert key in measured, key


def test_the_card_names_the_weights_it_describes() -> None:
    """README tables cite the model by the card's version and fingerprint: they must be these weights'."""
    from spatialgen.models import load_pipeline
    from spatialgen.models.fingerprint import base_fingerprint

    card = _card()
    assert card["version"] == 2
    assert card["unet_fingerprint"] == base_fingerprint(load_pipeline("embedded").unet)


def test_the_card_carries_a_tore_bias_table() -> None:
    """`generate --tore` works on the embedded model out of the box, from a `spatialgen bias` table."""
    from spatialgen.bias import CARD_KEY, load_bias_table
    from spatialgen.models import load_pipeline
    from spatialgen.relations import RELATIONS_2D, RELATIONS_3D

    table = load_bias_table(None, load_pipeline("embedded"))
    assert table == _card()[CARD_KEY] and table["model"] == "embedded"
    assert set(table["accuracy"]) == set(RELATIONS_2D + RELATIONS_3D)
    for relation, accuracy in table["accuracy"].items():
        low, high = table["interval"][relation]
        assert low <= accuracy <= high, relation
    assert table["command"].startswith("spatialgen bias")  # whose prompts are drawn with BIAS_SEED (test_bias)
