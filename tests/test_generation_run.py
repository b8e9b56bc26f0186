"""Benchmark-scale generation: disjoint shares per process, the same bytes at any process count, resume, layouts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatialgen.eval.runs.image_sets import collect_images
from spatialgen.generate import GenerationSettings
from spatialgen.generation_run import RUN_RECORD, generate_run, process_share
from spatialgen.generators import as_generator
from spatialgen.models import load_pipeline, save_pipeline
from spatialgen.output_layouts import plan_jobs

FAST = GenerationSettings(steps=2)
RECORDS = [{"prompt": "a red cube"}, {"prompt": "a blue sphere to the left of a green cone"}, {"prompt": "two cones"}]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(pipe, out: Path, **kwargs):
    options = {"n": 2, "seed": 7, "settings": FAST, "batch_size": 4, "progress": False, **kwargs}
    return generate_run(as_generator(pipe), RECORDS, out, {"model": "tiny"}, **options)


def test_shares_are_disjoint_cover_every_job_and_keep_their_batches() -> None:
    jobs = plan_jobs(RECORDS * 5, n=3, seed=0)  # 45 jobs, 12 batches of 4 (the last of 1)
    for processes in (1, 2, 3, 5):
        shares = [process_share(jobs, 4, rank, processes) for rank in range(processes)]
        batches = [tuple(b) for share in shares for b in share]
        assert len(batches) == 12
        flat = [job for b in batches for job in b]
        assert len(flat) == len(jobs) and set(flat) == set(jobs)  # every job, once
        # each batch is one of the single-process cut's batches: the same jobs side by side at any scale
        assert set(batches) == {tuple(b) for b in process_share(jobs, 4, 0, 1)}
    with pytest.raises(ValueError, match="not one of 2"):
        process_share(jobs, 4, 2, 2)


def test_two_processes_write_exactly_the_files_of_one_and_a_resume_redoes_only_what_is_missing(
    tiny_pipe, tmp_path: Path
) -> None:
    one = _run(tiny_pipe, tmp_path / "one")
    assert (one.written, one.skipped, one.total) == (6, 0, 6)
    for rank in (0, 1):  # what `accelerate launch --num_processes 2` runs, one process after the other here
        _run(tiny_pipe, tmp_path / "two", process_index=rank, num_processes=2)
    expected = _files(tmp_path / "one")
    grid = expected.pop("grid.png")  # a single process draws the grid; shares do not
    assert grid and _files(tmp_path / "two") == expected
    assert len([k for k in expected if k.endswith(".png")]) == 6 and RUN_RECORD in expected

    victim = next((tmp_path / "two").glob("001-*-seed8.png"))
    victim.unlink()
    victim.with_suffix(".json").unlink()
    again = _run(tiny_pipe, tmp_path / "two", resume=True)
    assert (again.written, again.skipped) == (1, 5)
    assert _files(tmp_path / "two") == expected  # the redone image has the bytes it had
    with pytest.raises(ValueError, match=r"other settings \(.*steps"):
        _run(tiny_pipe, tmp_path / "two", resume=True, settings=GenerationSettings(steps=3))


def test_benchmark_layouts_are_read_back_with_the_right_prompts(tiny_pipe, tmp_path: Path) -> None:
    geneval = [{"prompt": "a red cube", "tag": "single_object", "include": [{"class": "cube", "count": 1}]}]
    generate_run(
        as_generator(tiny_pipe), geneval, tmp_path / "ge", {}, n=2, settings=FAST, layout="geneval", progress=False
    )
    expected = {RUN_RECORD, "00000/metadata.jsonl", "00000/samples/00000.png", "00000/samples/00001.png"}
    assert set(_files(tmp_path / "ge")) == expected
    assert json.loads((tmp_path / "ge" / "00000" / "metadata.jsonl").read_text()) == geneval[0]
    found = collect_images(tmp_path / "ge")
    assert [(e.prompt, e.record["tag"]) for e in found] == [("a red cube", "single_object")] * 2

    _run(tiny_pipe, tmp_path / "t2i", layout="t2i-compbench")
    names = sorted(p.name for p in (tmp_path / "t2i" / "samples").iterdir())
    assert names[0] == "a blue sphere to the left of a green cone_000002.png" and len(names) == 6
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(r["prompt"] for r in RECORDS) + "\n")
    by_prompt = {e.path.name: e.prompt_id for e in collect_images(tmp_path / "t2i", prompts)}
    assert by_prompt["two cones_000005.png"] == 2 and by_prompt["a red cube_000001.png"] == 0

    visor = [{"prompt": r["prompt"], "index": 1103 + 10 * i} for i, r in enumerate(RECORDS)]  # VISOR's unique ids
    generate_run(
        as_generator(tiny_pipe), visor, tmp_path / "visor", {}, n=2, settings=FAST, layout="visor", progress=False
    )
    found = {e.path.name: e.prompt for e in collect_images(tmp_path / "visor")}
    assert found["1113_1.png"] == RECORDS[1]["prompt"] and len(found) == 6


def test_layouts_refuse_what_they_cannot_name(tiny_pipe, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="remove '/'"):
        generate_run(as_generator(tiny_pipe), [{"prompt": "a cube / a cone"}], tmp_path, {}, layout="t2i-compbench")
    with pytest.raises(ValueError, match="unknown --layout 'coco'"):
        generate_run(as_generator(tiny_pipe), RECORDS, tmp_path, {}, layout="coco")
    with pytest.raises(ValueError, match="no room"):
        generate_run(as_generator(tiny_pipe), RECORDS, tmp_path, {}, layout="geneval", save_attention=True)


def test_accelerate_launch_on_two_cpu_processes_matches_one_process(tiny_pipe, tmp_path: Path) -> None:
    """The real multi-process path: `accelerate launch --multi_gpu --num_processes 2 -m spatialgen generate ...`
    (torch.distributed on the CPU with gloo; --multi_gpu is accelerate's name for its torchrun launcher)."""
    save_pipeline(tiny_pipe, tmp_path / "model")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(r["prompt"] for r in RECORDS) + "\n")
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "spatialgen",
    ]
    args = [
        "generate",
        "--prompts",
        str(prompts),
        "--model",
        str(tmp_path / "model"),
        "--n",
        "2",
        "--steps",
        "2",
        "--seed",
        "7",
        "--layout",
        "geneval",
        "--out",
        str(tmp_path / "two"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join((done.stdout + done.stderr).split())
    assert "wrote 4 image(s)" in said and "process 0 of 2" in said and "wrote 2 image(s)" in said, said
    # the same images as one process of the library makes from the same weights, at the launched processes'
    # thread count (BLAS sums in another order on more threads, moving pixels by 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _run(load_pipeline(tmp_path / "model"), tmp_path / "one", layout="geneval")
    finally:
        torch.set_num_threads(threads)
    assert one.written == 6
    made, expected = _files(tmp_path / "two"), _files(tmp_path / "one")
    assert set(made) == set(expected)
    for name in made:
        if name.endswith(".png"):
            a = np.asarray(Image.open(io.BytesIO(made[name])), dtype=int)
            assert np.array_equal(a, np.asarray(Image.open(io.BytesIO(expected[name])), dtype=int)), name
