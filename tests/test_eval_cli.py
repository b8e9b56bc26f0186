"""`spatialgen eval` end to end on scene-world renders, whose true relations we know exactly.

Renders captioned with a relation that holds must score high on every benchmark, and the same
renders captioned with the opposite relation must score low: a scorer, a detector adapter or a
parser that mixed up A and B, or x and y, would fail one of the two.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from spatialgen.cli import app
from spatialgen.eval.runs.run_folder import read_results
from spatialgen.relations import INVERSE_RELATION
from spatialgen.scenes import make_sample, scene_seed
from spatialgen.scenes.catalog import RELATION_PHRASES

runner = CliRunner()


def _flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())


def _clear_pairs(n_scenes: int):
    """(sample, a, relation, b) for well-separated pairs of uniquely named, clearly visible objects."""
    out = []
    for i in range(n_scenes):
        sample = make_sample(scene_seed(4321, i), 64)
        names = [f"{o.colour} {o.shape}" for o in sample.objects]
        kind = "2d" if i % 2 else "3d"  # half the prompts of each kind
        for rel in sample.relations:
            a, b = sample.objects[rel.subject], sample.objects[rel.object]
            unique = names.count(names[rel.subject]) == 1 and names.count(names[rel.object]) == 1
            visible = a.area >= 60 and b.area >= 60
            clear = rel.dominant and (rel.separation > 0.2 if kind == "2d" else rel.separation > 1.0)
            if rel.kind == kind and unique and visible and clear:
                out.append((sample, names[rel.subject], rel.relation, names[rel.object]))
                break
    return out


def _write(folder: Path, cases, flip: bool) -> None:
    folder.mkdir(parents=True)
    for k, (sample, a, relation, b) in enumerate(cases):
        relation = INVERSE_RELATION[relation] if flip else relation
        name = f"{k:03d}-seed0"
        Image.fromarray(sample.rgb).save(folder / f"{name}.png")
        prompt = f"a {a} {RELATION_PHRASES[relation]} a {b}"
        (folder / f"{name}.json").write_text(json.dumps({"prompt": prompt, "seed": 0}))


@pytest.fixture(scope="module")
def cases():
    found = _clear_pairs(80)
    assert len(found) >= 35
    return found


def test_eval_spatial_scores_true_relations_high_and_opposite_ones_low(tmp_path: Path, cases) -> None:
    _write(tmp_path / "true", cases, flip=False)
    _write(tmp_path / "flipped", cases, flip=True)
    for kind in ("true", "flipped"):
        result = runner.invoke(
            app, ["eval", "spatial", "--images", str(tmp_path / kind), "--out", str(tmp_path / f"run-{kind}")]
        )
        assert result.exit_code == 0, result.output
    good, bad = read_results(tmp_path / "run-true")["tables"], read_results(tmp_path / "run-flipped")["tables"]
    assert good["VISOR (2D, %)"]["OA"] > 75  # both objects found: the recogniser's recall, squared (about 0.87^2)
    assert good["VISOR (2D, %)"]["VISOR_cond"] > 90 and bad["VISOR (2D, %)"]["VISOR_cond"] < 10
    assert good["GenEval position"]["correct_images"] > 75 > 25 > bad["GenEval position"]["correct_images"]
    assert good["T2I-CompBench 2D spatial"]["score"] > 0.6 > 0.1 > bad["T2I-CompBench 2D spatial"]["score"]
    assert good["3D relations (ours, %)"]["accuracy_cond"] > 75 > 25 > bad["3D relations (ours, %)"]["accuracy_cond"]
    report = (tmp_path / "run-flipped" / "report.html").read_text()
    assert "Worst failures" in report and "data:image/png;base64," in report

    again = runner.invoke(
        app, ["eval", "spatial", "--images", str(tmp_path / "true"), "--out", str(tmp_path / "run-true")]
    )
    assert again.exit_code == 2 and "never overwritten" in _flat(again.output)

    compared = runner.invoke(
        app,
        [
            "eval",
            "compare",
            str(tmp_path / "run-true"),
            str(tmp_path / "run-flipped"),
            "--out",
            str(tmp_path / "compare.html"),
        ],
    )
    assert compared.exit_code == 0, compared.output
    assert "run-flipped" in (tmp_path / "compare.html").read_text()


def test_eval_spatial_resumes_from_its_records(tmp_path: Path, cases) -> None:
    _write(tmp_path / "imgs", cases[:6], flip=False)
    out = tmp_path / "run"
    args = ["eval", "spatial", "--images", str(tmp_path / "imgs"), "--out", str(out), "--depth", "none"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    records = (out / "records.jsonl").read_text().splitlines()
    # Pretend the run died after three images: drop the results and the last records.
    (out / "results.json").unlink()
    (out / "records.jsonl").write_text("\n".join(records[:3]) + "\n")
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    resumed = (out / "records.jsonl").read_text().splitlines()
    assert resumed[:3] == records[:3]  # what was scored is kept as it was
    # The redone images score as before (to float noise: a batch of 3 threads its sums unlike a batch of 6).
    before = {r["key"]: r for r in map(json.loads, records)}
    after = {r["key"]: r for r in map(json.loads, resumed)}
    assert before.keys() == after.keys() and len(resumed) == len(records)
    for key, record in after.items():
        for verdict in ("visor", "geneval"):
            assert record.get(verdict) == before[key].get(verdict)
        scores = [d["score"] for d in record["detections"]]
        assert scores == pytest.approx([d["score"] for d in before[key]["detections"]], abs=1e-4)
    finished = runner.invoke(app, args)
    assert finished.exit_code == 2 and "never overwritten" in _flat(finished.output)
    (out / "results.json").unlink()
    changed = runner.invoke(app, [*args[:-1], "scenes"])
    assert changed.exit_code == 2 and "other settings (depth)" in _flat(changed.output)


def test_eval_spatial_says_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "imgs" / "x.png")
    (tmp_path / "imgs" / "x.json").write_text(json.dumps({"prompt": "three red cubes"}))
    result = runner.invoke(app, ["eval", "spatial", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "states a spatial relation" in _flat(result.output)


def test_intrinsic_maps_round_trip_with_16_bit_depth(tmp_path: Path) -> None:
    from spatialgen.intrinsic_files import is_map_file, load_maps, save_maps

    sample = make_sample(scene_seed(1, 2), 32)
    truth = sample.intrinsics()
    maps = {k: getattr(truth, k) for k in ("depth", "normal", "segmentation", "lines")}
    written = save_maps(tmp_path / "a.png", maps)
    assert all(is_map_file(p) for p in written) and not is_map_file(tmp_path / "a.png")
    loaded = load_maps(tmp_path / "a.png")
    assert abs(loaded["depth"] - maps["depth"]).max() < 1e-4  # 16 bits, not 8
    assert abs(loaded["normal"] - maps["normal"]).max() <= 0.5 / 255 + 1e-6
    assert load_maps(tmp_path / "a.png", ("depth",)).keys() == {"depth"}
    with pytest.raises(ValueError, match=r"must be \(3, H, W\)"):
        save_maps(tmp_path / "b.png", {"normal": maps["depth"]})


def test_scenes_export_then_eval_intrinsics_against_truth_and_the_estimator(tmp_path: Path) -> None:
    exported = runner.invoke(app, ["scenes", "export", "--out", str(tmp_path / "scenes"), "--n", "6"])
    assert exported.exit_code == 0, exported.output
    assert len(list((tmp_path / "scenes").glob("*.depth.png"))) == 6
    truth = runner.invoke(
        app,
        [
            "eval",
            "intrinsics",
            "--images",
            str(tmp_path / "scenes"),
            "--target",
            str(tmp_path / "scenes"),
            "--out",
            str(tmp_path / "self"),
        ],
    )
    assert truth.exit_code == 0, truth.output
    table = read_results(tmp_path / "self")["tables"]["Intrinsic accuracy (mean over images)"]
    assert table["depth/abs_rel"] < 1e-3 and table["depth/delta1"] == 1.0
    assert table["normal/mean"] < 1.0 and table["segmentation/miou"] == 1.0 and table["lines/f"] == 1.0
    assert table["albedo/rmse"] == 0.0
    consistency = runner.invoke(
        app, ["eval", "intrinsics", "--images", str(tmp_path / "scenes"), "--out", str(tmp_path / "estimated")]
    )
    assert consistency.exit_code == 0, consistency.output
    table = read_results(tmp_path / "estimated")["tables"]["Intrinsic accuracy (mean over images)"]
    # what the estimator gives, and the segmentation against the recogniser's objects
    assert set(table) == {k for k in table if k.startswith(("depth/", "normal/", "segmentation_"))}
    assert table["depth/delta1"] > 0.85 and table["normal/mean"] < 20
    assert table["segmentation_foreground_iou"] > 0.8  # a render's exact map agrees with what is seen in it


def test_eval_quality_separates_renders_from_noise(tmp_path: Path) -> None:
    import numpy as np

    runner.invoke(app, ["scenes", "export", "--out", str(tmp_path / "renders"), "--n", "16", "--seed", "5"])
    (tmp_path / "noise").mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "noise" / f"{i}.png")
    for kind in ("renders", "noise"):
        result = runner.invoke(
            app, ["eval", "quality", "--images", str(tmp_path / kind), "--out", str(tmp_path / f"q-{kind}")]
        )
        assert result.exit_code == 0, result.output
    name = "Distribution distance (lower is better)"
    renders, noise = (read_results(tmp_path / f"q-{k}")["tables"][name] for k in ("renders", "noise"))
    assert renders["n_images"] == 16  # the intrinsic maps beside the renders are not counted as images
    assert renders["cmmd_recogniser"] < noise["cmmd_recogniser"] / 3
    assert renders["frechet_recogniser"] < noise["frechet_recogniser"] / 3


@pytest.mark.parametrize(
    ("name", "suffix", "expected"),
    [("visor", ".txt", 25280), ("multi", ".jsonl", 1000), ("parti", ".jsonl", 1632), ("scenes-3d", ".jsonl", 40)],
)
def test_eval_prompts_writes_each_set(tmp_path: Path, name: str, suffix: str, expected: int) -> None:
    out = tmp_path / f"set{suffix}"
    args = ["eval", "prompts", name, "--out", str(out)] + (["--n", "40"] if name == "scenes-3d" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == expected
    if name == "scenes-3d":
        from spatialgen.eval.prompts.spatial_prompts import spatial_prompt_of
        from spatialgen.eval.runs.image_sets import read_prompt_records

        assert {spatial_prompt_of(r).relation for r in read_prompt_records(out)} == {"in front of", "behind"}
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists" in again.output


def test_eval_prompts_geneval_metadata_round_trips(tmp_path: Path) -> None:
    from spatialgen.eval.scorers.geneval import read_metadata

    out = tmp_path / "meta.jsonl"
    result = runner.invoke(app, ["eval", "prompts", "geneval-position", "--out", str(out), "--n", "8"])
    assert result.exit_code == 0, result.output
    records = read_metadata(out)
    assert len(records) == 8 and all(r["tag"] == "position" for r in records)


@pytest.mark.parametrize("kind", ["recogniser", "estimator"])
def test_train_scene_networks_from_the_cli_record_how_they_were_made(tmp_path: Path, kind: str) -> None:
    made = runner.invoke(
        app,
        [
            "scenes",
            "make",
            "--out",
            str(tmp_path / "data"),
            "--n",
            "8",
            "--resolution",
            "32",
            "--workers",
            "1",
            "--shard-size",
            "8",
        ],
    )
    assert made.exit_code == 0, made.output
    near = ["scenes", "make", "--out", str(tmp_path / "near"), "--n", "8", "--resolution", "32", "--workers", "1"]
    made = runner.invoke(app, [*near, "--max-objects", "2", "--distance", "4.5", "5.5", "--region", "1.4"])
    assert made.exit_code == 0, made.output
    args = [
        "train",
        kind,
        "--data",
        str(tmp_path / "data"),
        "--data",
        str(tmp_path / "near"),
        "--out",
        str(tmp_path / kind),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--held-out",
        "4",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / kind / "held-out.json").read_text())
    assert record["training"]["steps"] == 2 and record["held_out"] == 4
    assert (
        record["command"].startswith(f"spatialgen train {kind} --data {tmp_path / 'data'} --data {tmp_path / 'near'}")
        and "--steps 2 --batch-size 4" in record["command"]
    )
    # scored on held-out scenes of each training distribution; the first one's scores stay at the top level
    by_data = record["held_out_by_data"]
    assert list(by_data) == [str(tmp_path / "data"), str(tmp_path / "near")]
    assert all(record[key] == value for key, value in by_data[str(tmp_path / "data")].items())
    assert by_data[str(tmp_path / "near")] != by_data[str(tmp_path / "data")]
    assert (tmp_path / kind / f"{kind}.safetensors").is_file()
    # --config reproduces a run (flags given override it); unset flags take the config dataclass's defaults
    config = str(tmp_path / kind / "config.json")
    again = runner.invoke(
        app, ["train", kind, "--config", config, "--out", str(tmp_path / "again"), "--init", str(tmp_path / kind)]
    )
    assert again.exit_code == 0, again.output  # a fine-tune of the first run's network, with its settings
    first, second = (json.loads((tmp_path / f / "config.json").read_text()) for f in (kind, "again"))
    assert {**first, "out": second["out"], "init": str(tmp_path / kind)} == second and second["steps"] == 2
    missing = runner.invoke(app, ["train", kind])
    assert missing.exit_code != 0 and "pass --data, --out (or --config RUN/config.json)" in missing.output


def test_eval_paper_writes_table_1_for_base_ildm_and_a_baseline(tmp_path: Path) -> None:
    """The paper's protocol end to end on the embedded models (3 Parti prompts, 2 steps): every row sampled,
    scored with the scene-feature CMMD, written to results.json and report.html, and resumed without resampling."""
    import json

    from typer.testing import CliRunner

    from spatialgen.cli import app

    baseline = tmp_path / "ldm3d"
    baseline.mkdir()
    args = ["eval", "paper", "--out", str(tmp_path / "paper"), "--n-prompts", "3", "--steps", "2"]
    args += ["--schedules", "drop", "--baseline", f"ldm3d={tmp_path / 'paper' / 'images' / 'base'}"]
    bad = CliRunner().invoke(app, [*args[:-2], "--baseline", "ldm3d"])
    assert bad.exit_code == 2 and "NAME=FOLDER" in bad.output
    first = CliRunner().invoke(app, args[:-2])
    assert first.exit_code == 0, first.output
    results = json.loads((tmp_path / "paper" / "results.json").read_text())
    assert results["rows"] == ["base", "I-LDM drop"] and results["prompts"]["count"] == 3
    assert all(
        "cmmd" in row or "scene_cmmd" in row or any("cmmd" in k for k in row) for row in results["table"].values()
    )
    assert "I-LDM drop" in (tmp_path / "paper" / "report.html").read_text()
    pngs = sorted((tmp_path / "paper" / "images" / "base").glob("*.png"))
    stamps = {p: p.stat().st_mtime_ns for p in pngs}
    again = CliRunner().invoke(app, args)  # the base's own images as a "baseline" row; nothing resampled
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in pngs} == stamps
    table = json.loads((tmp_path / "paper" / "results.json").read_text())["table"]
    assert table["ldm3d"] == table["base"]  # the same images score the same
    missing_hands = CliRunner().invoke(app, [*args[:-2], "--hand-model", str(tmp_path / "nope.task")])
    assert missing_hands.exit_code != 0 and "hand_landmarker.task" in missing_hands.output


def test_hand_rate_counts_images_with_a_hand_and_the_detector_needs_its_model(tmp_path: Path) -> None:
    import importlib.util

    from spatialgen.eval.metrics.hands import HandDetector, hand_detection_rate, is_hand_prompt

    paths = []
    for i, value in enumerate((0, 200, 255, 10)):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (8, 8), (value, value, value)).save(paths[-1])
    two_if_bright = lambda image: 2 * int(image.getpixel((0, 0))[0] > 128)  # noqa: E731 - a detector with known answers
    assert hand_detection_rate(two_if_bright, paths) == {"hand_detection_rate": 0.5, "hands_per_image": 1.0}
    assert is_hand_prompt("a hand holding a cup") and not is_hand_prompt("a red cube")
    with pytest.raises(FileNotFoundError, match="hand_landmarker.task"):
        HandDetector(tmp_path / "missing.task")
    if importlib.util.find_spec("mediapipe") is None:
        (tmp_path / "hand_landmarker.task").write_bytes(b"not a model")
        with pytest.raises(ImportError, match=r"spatialgen\[hands\]"):
            HandDetector(tmp_path / "hand_landmarker.task")
