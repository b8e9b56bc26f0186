"""Prompt sets: class lists, VISOR's SR2D prompts, I-LDM Multi prompts, scene-world held-out split, files."""

from __future__ import annotations

import hashlib
from collections import Counter
from importlib import resources

import pytest

from spatialgen.eval.prompts import prompt_sets as ps
from spatialgen.eval.prompts.scene_prompts import EVAL_SEED, relational_prompts
from spatialgen.relations import RELATIONS_2D, RELATIONS_3D
from spatialgen.scenes import held_out
from spatialgen.scenes.catalog import COLOURS, SHAPES

# --------------------------------------------------------------------------------------------- class lists


def test_coco_classes():
    classes = ps.coco_classes()
    assert len(classes) == 80 == len(set(classes))
    assert classes[:5] == ("person", "bicycle", "car", "motorcycle", "airplane")
    assert classes[-3:] == ("teddy bear", "hair drier", "toothbrush")
    assert classes.index("tv") == 62 and classes.index("dining table") == 60


def test_places365_official_file_and_cleaning():
    data = resources.files("spatialgen.eval.prompts").joinpath("prompt_data", "categories_places365.txt").read_bytes()
    # size and MD5 of the official CSAILVision/places365 file (see prompt_data/PROVENANCE.md)
    assert len(data) == 6833 and hashlib.md5(data).hexdigest() == "06c963b85866bd0649f97cb43dd16673"
    raw = ps.places365_raw_categories()
    places = ps.places365_categories()
    assert len(raw) == 365 and len(places) == 365 == len(set(places))
    assert places[0] == "airfield" and places[-1] == "zen garden"
    assert "living room" in places and "/l/living_room" in raw
    cleaned = dict(zip(raw, places, strict=True))
    assert cleaned["/a/apartment_building/outdoor"] == "outdoor apartment building"
    assert cleaned["/s/subway_station/platform"] == "subway station platform"
    assert cleaned["/t/temple/asia"] == "asian temple"
    assert all("_" not in p and "/" not in p and p == p.strip() for p in places)
    with pytest.raises(ValueError, match="Places365 category path"):
        ps.clean_places365_name("airfield")


# --------------------------------------------------------------------------------------------- VISOR


def test_parti_prompts_are_the_official_table_with_its_licence():
    data = resources.files("spatialgen.eval.prompts").joinpath("prompt_data", "PartiPrompts.tsv").read_bytes()
    assert hashlib.md5(data).hexdigest() == "975b3cf12ca946f1e994c89c02a55e3c"  # google-research/parti @ 5a65797
    licence = resources.files("spatialgen.eval.prompts").joinpath("prompt_data", "PartiPrompts.LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    parti = ps.parti_prompts()
    assert len(parti) == 1632 and [r.index for r in parti] == list(range(1632))
    assert (parti[0].prompt, parti[0].category, parti[0].challenge) == ("bond", "Abstract", "Basic")
    assert len({r.category for r in parti}) == 12 and len({r.challenge for r in parti}) == 11
    quoted = [r.prompt for r in parti if r.prompt.startswith('"G I G G L E"')]
    assert len(quoted) == 1  # read without CSV quoting: the quotes belong to the prompt
    positioning = ps.parti_prompts(challenge="Properties & Positioning")
    assert len(positioning) == 35 and all(r.challenge == "Properties & Positioning" for r in positioning)
    assert len(ps.parti_prompts(category="Animals", challenge="Basic")) < 314
    with pytest.raises(ValueError, match="unknown Parti category 'Animal'; choose one of Abstract"):
        ps.parti_prompts(category="Animal")


def test_articles():
    assert ps.with_article("apple") == "an apple"
    assert ps.with_article("elephant") == "an elephant"
    assert ps.with_article("umbrella") == "an umbrella"
    assert ps.with_article("tv") == "a tv" and ps.with_article("hot dog") == "a hot dog"
    vowels = [c for c in ps.coco_classes() if ps.indefinite_article(c) == "an"]
    assert vowels == ["airplane", "elephant", "umbrella", "apple", "orange", "oven"]


@pytest.fixture(scope="module")
def visor():
    return ps.visor_prompts()


def test_visor_counts_and_pairs(visor):
    assert len(visor) == 4 * 6320 == 4 * 80 * 79
    per_relation = Counter(p.relation for p in visor)
    assert per_relation == {r: 6320 for r in ("left of", "right of", "above", "below")}
    assert all(p.obj_a != p.obj_b for p in visor)
    assert len({(p.obj_a, p.relation, p.obj_b) for p in visor}) == len(visor)
    assert len({p.index for p in visor}) == len(visor)
    assert max(p.index for p in visor) < 31680 - 80  # the official file: 31,680 records, 80 single-object last
    assert len(ps.visor_prompts(("above",))) == 6320


def test_visor_official_phrasing_and_ids(visor):
    by_id = {p.index: p for p in visor}
    # the two examples of the microsoft/VISOR README
    assert by_id[1103].prompt == "a kite to the right of a bicycle"
    assert by_id[11036].prompt == "a cat below a bottle"
    assert by_id[0].prompt == "a person to the left of a bicycle"
    assert by_id[1].prompt == "a bicycle to the left of a person"
    apple = next(p for p in visor if p.obj_a == "apple" and p.obj_b == "elephant" and p.relation == "above")
    assert apple.prompt == "an apple above an elephant"
    assert 8 not in by_id and 9 not in by_id  # ids of the pair's two "and" prompts
    with pytest.raises(ValueError, match="unknown VISOR relation"):
        ps.visor_prompts(("behind",))


# --------------------------------------------------------------------------------------------- Multi


def test_multi_prompts_structure_and_determinism():
    prompts = ps.multi_prompts()
    assert len(prompts) == 1000
    assert prompts == ps.multi_prompts(seed=ps.MULTI_SEED)
    assert prompts != ps.multi_prompts(seed=ps.MULTI_SEED + 1)
    coco, places = set(ps.coco_classes()), set(ps.places365_categories())
    for p in prompts:
        assert 3 <= len(p.classes) <= 5 and len(set(p.classes)) == len(p.classes)
        assert set(p.classes) <= coco and p.place in places
        assert p.prompt == " and ".join(f"{c}s" for c in p.classes) + f" in a {p.place}"
    assert set(Counter(len(p.classes) for p in prompts)) == {3, 4, 5}
    assert [p.index for p in prompts] == list(range(1000))


def test_multi_prompts_english_style():
    assert ps.plural_noun("person", "english") == "people"
    assert ps.plural_noun("wine glass", "english") == "wine glasses"
    assert ps.plural_noun("bus", "english") == "buses"
    assert ps.plural_noun("knife", "english") == "knives"
    assert ps.plural_noun("sheep", "english") == "sheep"
    assert ps.plural_noun("bus", "paper") == "buss"
    paper, english = ps.multi_prompts(50), ps.multi_prompts(50, style="english")
    assert [p.classes for p in paper] == [p.classes for p in english]  # same draws, other wording
    for p in english:
        assert p.prompt.endswith(f" in {ps.indefinite_article(p.place)} {p.place}")
    with pytest.raises(ValueError, match="style"):
        ps.multi_prompts(3, style="french")
    with pytest.raises(ValueError, match="min_classes"):
        ps.multi_prompts(3, min_classes=6, max_classes=5)


# --------------------------------------------------------------------------------------------- scene world


def test_held_out_split_is_deterministic_closed_and_about_a_fifth():
    assert held_out.is_held_out(("red", "cube"), "left of", ("blue", "sphere")) == held_out.is_held_out(
        "red cube", "left of", "blue sphere"
    )
    all_2d = ps.scene_triplets("2d", "all")
    held, train = ps.scene_triplets("2d", "held_out"), ps.scene_triplets("2d", "train")
    assert len(all_2d) == len(COLOURS) * len(SHAPES) * (len(COLOURS) * len(SHAPES) - 1) * 4
    assert not set(held) & set(train) and len(held) + len(train) == len(all_2d)
    held_3d = ps.scene_triplets("3d", "held_out")
    for triplets, total in ((held, len(all_2d)), (held_3d, len(all_2d) // 2)):
        assert 0.17 < len(triplets) / total < 0.23
    # a triplet and its inverse describe the same picture: same side of the split
    from spatialgen.relations import INVERSE_RELATION

    for a, relation, b in all_2d[:400]:
        assert held_out.is_held_out(a, relation, b) == held_out.is_held_out(b, INVERSE_RELATION[relation], a)
    # the rule is a pinned hash, not Python's hash(): these values must never change
    assert [held_out.is_held_out(a, r, b) for a, r, b in all_2d[:12]] == [_pinned(a, r, b) for a, r, b in all_2d[:12]]


def _pinned(a, relation, b) -> bool:
    key = held_out.triplet_key(a, relation, b)
    digest = hashlib.blake2b(f"spatialgen-scene-heldout-v1:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < 0.2 * 2**64


def test_scene_prompt_sets_use_only_held_out_triplets():
    for kind, relations in (("2d", RELATIONS_2D), ("3d", RELATIONS_3D)):
        prompts = ps.scene_prompt_set(kind, n=40)
        assert prompts == ps.scene_prompt_set(kind, n=40, seed=EVAL_SEED)
        assert [p.relation for p in prompts] == [relations[i % len(relations)] for i in range(40)]
        assert len({p.prompt for p in prompts}) == 40
        for p in prompts:
            assert held_out.is_held_out(p.obj_a, p.relation, p.obj_b)
            assert held_out.is_held_out_caption(p.prompt)
            assert held_out.caption_triplet(p.prompt) == (tuple(p.obj_a.split()), p.relation, tuple(p.obj_b.split()))
    everything = ps.scene_prompt_set("3d")
    assert len(everything) == len(ps.scene_triplets("3d"))
    with pytest.raises(ValueError, match="too few triplets"):
        ps.scene_prompt_set("3d", n=10_000)
    with pytest.raises(ValueError, match="unknown relation"):
        ps.scene_prompt_set(("next to",))


def test_captions_are_parsed_like_training_captions():
    text = "a small red cube to the left of a blue sphere on the grass"
    assert held_out.caption_triplet(text) == (("red", "cube"), "left of", ("blue", "sphere"))
    assert held_out.is_held_out_caption(text) == held_out.is_held_out("red cube", "left of", "blue sphere")
    assert held_out.caption_triplet("a large red cube and a small blue sphere on a checkered floor") is None
    assert held_out.is_held_out_caption("two cubes and one sphere on the grass") is False
    # the existing generator's prompts read back the same way
    for r in relational_prompts(8):
        assert held_out.caption_triplet(r.prompt) == (r.a, r.relation, r.b)
    with pytest.raises(ValueError, match="two different objects"):
        held_out.is_held_out("red cube", "above", "red cube")
    with pytest.raises(ValueError, match="scene-world object"):
        held_out.is_held_out("red dragon", "above", "red cube")


# --------------------------------------------------------------------------------------------- files


def test_file_round_trip(tmp_path):
    spatial = ps.scene_prompt_set("2d", n=6) + ps.visor_prompts(("below",))[:3]
    multi = ps.multi_prompts(4)
    parti = ps.parti_prompts(challenge="Writing & Symbols")[:5]
    for records in (spatial, multi, parti):
        path = ps.write_prompts(tmp_path / f"{type(records[0]).__name__}.jsonl", records)
        assert ps.read_prompts(path) == records
        text = ps.write_prompts(tmp_path / f"{type(records[0]).__name__}.txt", records)
        assert ps.read_prompts(text) == [r.prompt for r in records]
        assert text.read_text().count("\n") == len(records)
    ps.write_prompts(tmp_path / "plain.txt", ["a red cube above a blue cone"])
    assert ps.read_prompts(tmp_path / "plain.txt") == ["a red cube above a blue cone"]
    with pytest.raises(ValueError, match="structured records"):
        ps.write_prompts(tmp_path / "bad.jsonl", ["a plain string"])
    with pytest.raises(ValueError, match="single lines"):
        ps.write_prompts(tmp_path / "bad.txt", ["two\nlines"])
    (tmp_path / "broken.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(ValueError, match="broken.jsonl:1"):
        ps.read_prompts(tmp_path / "broken.jsonl")
