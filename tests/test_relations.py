"""Relation labels follow VISOR's rule on mask centroids and depth order; captions state only clear truths."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from spatialgen.relations import INVERSE_RELATION
from spatialgen.scenes import CaptionRules, choose_caption, make_sample, scene_seed, vocabulary
from spatialgen.scenes.captions import DEFAULT_CAPTION_MIX, check_caption_mix
from spatialgen.scenes.catalog import RELATION_PHRASES
from spatialgen.scenes.sampling import Draw

SAMPLES = [make_sample(scene_seed(11, i), 64) for i in range(30)]


def centroid(instance: np.ndarray, instance_id: int) -> tuple[float, float]:
    rows, cols = np.nonzero(instance == instance_id)
    res = instance.shape[0]
    return ((cols + 0.5).mean() / res, (rows + 0.5).mean() / res)


def test_2d_labels_follow_the_visor_rule_on_mask_centroids() -> None:
    checked = 0
    for s in SAMPLES:
        labels = {(r.subject, r.relation, r.object) for r in s.relations if r.kind == "2d"}
        for a in s.objects:
            for b in s.objects:
                if a.index == b.index:
                    continue
                (xa, ya), (xb, yb) = centroid(s.instance, a.instance_id), centroid(s.instance, b.instance_id)
                assert a.centroid == pytest.approx((xa, ya), abs=1e-12)
                expected = {"left of" if xa < xb else "right of", "above" if ya < yb else "below"}
                got = {rel for (i, rel, j) in labels if (i, j) == (a.index, b.index)}
                assert got == expected
                checked += 1
    assert checked > 50


def test_labels_of_inverse_pairs_are_inverse_relations() -> None:
    for s in SAMPLES:
        labels = {(r.subject, r.relation, r.object) for r in s.relations}
        for i, rel, j in labels:
            assert (j, INVERSE_RELATION[rel], i) in labels


def test_3d_labels_follow_median_mask_depth() -> None:
    for s in SAMPLES:
        for r in (r for r in s.relations if r.kind == "3d"):
            da = np.median(s.depth[s.instance == r.subject + 1])
            db = np.median(s.depth[s.instance == r.object + 1])
            assert (da < db) == (r.relation == "in front of")
            assert r.separation == pytest.approx(abs(da - db))


def test_dominant_axis_is_marked_on_exactly_one_2d_label_per_pair() -> None:
    for s in SAMPLES:
        per_pair = Counter((r.subject, r.object) for r in s.relations if r.kind == "2d" and r.dominant)
        assert all(count == 1 for count in per_pair.values())


_RELATION = re.compile(
    r"^a (?P<a>[a-z ]+?) (?P<rel>" + "|".join(RELATION_PHRASES.values()) + r") a (?P<b>[a-z ]+?)( on .*)?$"
)


def test_relation_captions_name_unique_objects_and_state_clear_true_relations() -> None:
    rules = CaptionRules()
    phrase_to_relation = {v: k for k, v in RELATION_PHRASES.items()}
    seen = Counter()
    for s in SAMPLES:
        for kind in ("relation2d", "relation3d"):
            if kind not in s.captions:
                continue
            m = _RELATION.match(s.captions[kind])
            assert m, s.captions[kind]
            names = {}
            for o in s.objects:
                names.setdefault(f"{o.colour} {o.shape}", []).append(o.index)
                names.setdefault(f"{o.size} {o.colour} {o.shape}", []).append(o.index)
            (a,), (b,) = names[m["a"]], names[m["b"]]  # each name picks out exactly one object
            relation = phrase_to_relation[m["rel"]]
            (label,) = [r for r in s.relations if (r.subject, r.relation, r.object) == (a, relation, b)]
            if kind == "relation2d":
                assert label.dominant and label.separation >= rules.min_separation
            else:
                assert label.separation >= rules.min_depth_gap
            seen[kind] += 1
    assert seen["relation2d"] > 10 and seen["relation3d"] > 10


def test_attribute_and_count_captions_list_every_object() -> None:
    for s in SAMPLES:
        for o in s.objects:
            assert f"a {o.size} {o.colour} {o.shape}" in s.captions["attributes"]
        counts = Counter(o.shape for o in s.objects)
        for shape, n in counts.items():
            word = ["zero", "one", "two", "three", "four", "five"][n]
            assert f"{word} {shape if n == 1 else shape + 's'}" in s.captions["count"]


def test_every_caption_word_is_in_the_vocabulary() -> None:
    vocab = set(vocabulary())
    for s in SAMPLES:
        for caption in s.captions.values():
            assert set(caption.split()) <= vocab, caption


def test_caption_mix_frequencies_follow_the_weights() -> None:
    captions = {"attributes": "A", "count": "C", "relation2d": "R2", "relation3d": "R3"}
    mix = {"attributes": 0.5, "count": 0.2, "relation2d": 0.2, "relation3d": 0.1}
    draw = Draw(0)
    counts = Counter(choose_caption(captions, mix, draw)[0] for _ in range(20_000))
    for kind, weight in mix.items():
        assert counts[kind] / 20_000 == pytest.approx(weight, abs=0.015)


def test_caption_mix_renormalises_over_present_kinds_and_falls_back_to_attributes() -> None:
    only = {"attributes": "A", "count": "C"}
    assert choose_caption(only, {"relation2d": 1.0}, Draw(1)) == ("attributes", "A")
    kinds = {choose_caption(only, {"count": 1.0, "relation3d": 5.0}, Draw(i))[0] for i in range(20)}
    assert kinds == {"count"}


def test_default_mix_is_ten_percent_relational() -> None:
    relational = DEFAULT_CAPTION_MIX["relation2d"] + DEFAULT_CAPTION_MIX["relation3d"]
    assert relational / sum(DEFAULT_CAPTION_MIX.values()) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("mix", "message"), [({"poem": 1.0}, "unknown caption kind"), ({"count": 0.0}, "positive sum")]
)
def test_bad_caption_mixes_are_refused(mix: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_caption_mix(mix)
