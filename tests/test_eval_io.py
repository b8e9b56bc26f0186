"""Evaluation plumbing: pairing images with prompts, resumable run folders, prompt parsing, HTML reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from spatialgen.eval.detection.detections import ObjectDetection
from spatialgen.eval.prompts.spatial_prompts import SpatialPrompt, parse_spatial_prompt, spatial_prompt_of
from spatialgen.eval.runs.image_sets import collect_images, read_prompt_records
from spatialgen.eval.runs.report import Failure, chart_groups, render_comparison, render_report
from spatialgen.eval.runs.run_folder import FinishedRunError, RunFolder, read_results


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(path)


def test_collect_images_reads_our_sidecars_and_groups_by_prompt(tmp_path: Path) -> None:
    for name, prompt, seed in [
        ("000-a-seed0", "a cat left of a dog", 0),
        ("000-a-seed1", "a cat left of a dog", 1),
        ("001-b-seed0", "a cube", 0),
    ]:
        _png(tmp_path / f"{name}.png")
        (tmp_path / f"{name}.json").write_text(json.dumps({"prompt": prompt, "seed": seed}))
    _png(tmp_path / "grid.png")  # our grid is not a sample
    images = collect_images(tmp_path)
    assert [(e.path.name, e.prompt_id, e.seed) for e in images] == [
        ("000-a-seed0.png", 0, 0),
        ("000-a-seed1.png", 0, 1),
        ("001-b-seed0.png", 1, 0),
    ]


def test_collect_images_by_line_number_text_name_and_geneval_layout(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog on the left of a cat\n\na bird above a car\n")
    _png(tmp_path / "imgs" / "00001_0.png")
    _png(tmp_path / "imgs" / "0_3.png")
    _png(tmp_path / "imgs" / "a dog on the left of a cat_000002.png")
    found = collect_images(tmp_path / "imgs", prompts)
    assert [(e.path.name, e.prompt_id, e.prompt) for e in found] == [
        ("0_3.png", 0, "a dog on the left of a cat"),
        ("a dog on the left of a cat_000002.png", 0, "a dog on the left of a cat"),
        ("00001_0.png", 1, "a bird above a car"),
    ]
    _png(tmp_path / "imgs" / "stray.png")
    with pytest.raises(ValueError, match=r"1 image\(s\) have no prompt \(stray.png\)"):
        collect_images(tmp_path / "imgs", prompts)

    geneval = tmp_path / "geneval" / "00007"
    record = {
        "tag": "position",
        "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1, "position": ["right of", 0]}],
        "prompt": "a photo of a cat right of a dog",
    }
    (geneval / "samples").mkdir(parents=True)
    (geneval / "metadata.jsonl").write_text(json.dumps(record) + "\n")
    _png(geneval / "samples" / "0000.png")
    (image,) = collect_images(tmp_path / "geneval")
    assert image.prompt == record["prompt"] and image.record["include"] == record["include"]
    assert spatial_prompt_of(image.record) == SpatialPrompt("cat", "right of", "dog")


def test_collect_images_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_images(tmp_path / "missing")
    _png(tmp_path / "x.png")
    with pytest.raises(ValueError, match="give --prompts FILE"):
        collect_images(tmp_path)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match=r'p.jsonl:2 needs a "prompt"'):
        read_prompt_records(bad)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a red cube to the left of a blue sphere", SpatialPrompt("red cube", "left of", "blue sphere")),
        ("A dog on the left of a cat.", SpatialPrompt("dog", "left of", "cat")),
        ("a photo of a bird right of an apple", SpatialPrompt("bird", "right of", "apple")),
        ("a lamp on the top of a table", SpatialPrompt("lamp", "above", "table")),
        ("a cup next to a plate", SpatialPrompt("cup", "near", "plate")),
        ("a green cone in front of a red cylinder", SpatialPrompt("green cone", "in front of", "red cylinder")),
        ("a cat behind the sofa", SpatialPrompt("cat", "behind", "sofa")),
        ("three red cubes on the grass", None),
    ],
)
def test_parse_spatial_prompt(prompt: str, expected: SpatialPrompt | None) -> None:
    assert parse_spatial_prompt(prompt) == expected


def test_structured_records_win_over_the_text() -> None:
    record = {"prompt": "whatever", "obj_a": "red cube", "relation": "behind", "obj_b": "blue cone", "index": 3}
    assert spatial_prompt_of(record) == SpatialPrompt("red cube", "behind", "blue cone")
    assert spatial_prompt_of({"prompt": "a cat above a dog"}) == SpatialPrompt("cat", "above", "dog")


def test_run_folder_resumes_ignores_a_torn_line_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = RunFolder(out, {"detector": "scenes", "n": 2})
    run.append([{"key": "a.png", "score": 1}, {"key": "b.png", "score": 0}])
    with open(out / "records.jsonl", "a") as handle:
        handle.write('{"key": "c.png", "sco')  # a crash mid-write
    again = RunFolder(out, {"n": 2, "detector": "scenes"})
    assert set(again.records) == {"a.png", "b.png"} and not again.done("c.png")
    again.append([{"key": "c.png", "score": 1}])
    assert set(RunFolder(out, {"detector": "scenes", "n": 2}).records) == {"a.png", "b.png", "c.png"}
    with pytest.raises(ValueError, match=r"other settings \(detector\)"):
        RunFolder(out, {"detector": "owlvit", "n": 2})
    again.finish({"tables": {"VISOR": {"OA": 50.0}}})
    assert read_results(out)["tables"]["VISOR"]["OA"] == 50.0
    assert read_results(out)["settings"] == {"detector": "scenes", "n": 2}
    with pytest.raises(FinishedRunError, match="never overwritten"):
        RunFolder(out, {"detector": "scenes", "n": 2})


def test_report_is_self_contained_html_with_tables_charts_and_failures() -> None:
    failure = Failure(
        Image.new("RGB", (64, 64)),
        "a dog left of a cat",
        "cat not found",
        [ObjectDetection("dog", (4, 4, 20, 30), 0.9)],
    )
    page = render_report("Spatial <eval>", {"VISOR": {"OA": 62.5, "VISOR_cond": 40.0}}, [failure], {"images": 8})
    assert page.startswith("<!doctype html>") and "Spatial &lt;eval&gt;" in page
    assert page.count("data:image/png;base64,") == 2  # one chart, one failure; nothing linked from outside
    assert "62.5" in page and "cat not found" in page and "src='http" not in page
    # counts and scores get a chart each; a kind whose values are all 0 gets a sentence, not an empty axis
    mixed = render_report("t", {"VISOR": {"OA": 62.5, "VISOR_cond": 40.0, "images": 256, "prompts": 64}})
    assert mixed.count("data:image/png;base64,") == 2 and "VISOR: scores chart" in mixed and "VISOR: counts" in mixed
    zero = render_report("t", {"VISOR": {"OA": 0.0, "VISOR_cond": 0.0, "images": 8}})
    assert zero.count("data:image/png;base64,") == 1 and "VISOR: scores: every value is 0" in zero
    assert chart_groups({"OA": 1.5, "images": 8, "passed": True, "name": "x"}) == {
        "scores": {"OA": 1.5},
        "counts": {"images": 8.0},
    }
    both = render_comparison({"base": {"VISOR": {"OA": 10.0}}, "lora": {"VISOR": {"OA": 20.0}}})
    assert both.index("base") < both.index("lora") and "<th>OA</th>" in both
