"""Measure the evaluation suite: detector and estimator accuracy, throughput, and a first table on the embedded model.

    python benchmarks/eval_suite.py [--model embedded] [--prompts-2d 64] [--prompts-3d 32] [--seeds 4] [--out DIR]

Every scene is held out (seeds no training set uses) and drawn from the model's own scene
distribution, read from its card (the embedded model v2: its closer camera, 1-3 objects).

1. The scene recogniser and the depth / normal estimator on 500 held-out renders (seed 999).
2. Throughput of ``eval spatial`` (detector + depth + all benchmarks) and ``eval quality`` on
   held-out renders, in images per second on this machine.
3. The embedded base model on held-out scene-world relational prompts (2D and 3D; triplets that
   no training set may contain), 4 seeds each, scored by every spatial benchmark; and its quality
   against held-out renders (CMMD and Frechet distance in the recogniser's features).
4. The same scorers on ground-truth renders captioned with their true relations: the ceiling a
   perfect generator would reach with these detectors.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from spatialgen.eval.detection.depth import SceneDepth
from spatialgen.eval.detection.detectors import SceneDetector
from spatialgen.eval.metrics.quality import scene_quality
from spatialgen.eval.prompts.prompt_sets import scene_prompt_set
from spatialgen.eval.runs.image_sets import collect_images
from spatialgen.eval.runs.run_folder import RunFolder
from spatialgen.eval.runs.spatial_eval import parse_images, run_spatial, spatial_tables
from spatialgen.eval.scene.recogniser import SceneRecogniser
from spatialgen.eval.scene.recogniser_training import score_recogniser
from spatialgen.eval.scene.scene_estimator import SceneEstimator, score_estimator
from spatialgen.generate import GenerationSettings, generate_images, save_generated
from spatialgen.logs import quiet_libraries
from spatialgen.models import load_pipeline
from spatialgen.models.data import model_scene_config
from spatialgen.models.pipeline import model_card
from spatialgen.scenes import SceneConfig, make_sample, scene_seed
from spatialgen.scenes.catalog import RELATION_PHRASES
from spatialgen.scenes.held_out import HELD_OUT_SEED


def score_folder(folder: Path, run_dir: Path) -> tuple[dict, float]:
    """All spatial tables of an image folder with sidecars, and the images per second it took."""
    parsed, _ = parse_images(collect_images(folder), folder)
    run = RunFolder(run_dir, {"benchmark": str(folder)})
    start = time.perf_counter()
    run_spatial(parsed, SceneDetector(), run, SceneDepth(), progress=False)
    elapsed = time.perf_counter() - start
    return spatial_tables([run.records[p.key] for p in parsed]), len(parsed) / elapsed


def write_true_renders(folder: Path, n: int, config: SceneConfig) -> None:
    """Held-out renders captioned with one of their true relations, alternating 2D and 3D."""
    folder.mkdir(parents=True)
    written = i = 0
    while written < n:
        sample = make_sample(scene_seed(HELD_OUT_SEED + 2, i), 64, config)
        i += 1
        names = [f"{o.colour} {o.shape}" for o in sample.objects]
        kind = "2d" if written % 2 == 0 else "3d"
        for rel in sample.relations:
            a, b = names[rel.subject], names[rel.object]
            if rel.kind == kind and rel.dominant and names.count(a) == 1 and names.count(b) == 1:
                Image.fromarray(sample.rgb).save(folder / f"{written:04d}.png")
                prompt = f"a {a} {RELATION_PHRASES[rel.relation]} a {b}"
                (folder / f"{written:04d}.json").write_text(json.dumps({"prompt": prompt, "seed": 0}))
                written += 1
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts-2d", type=int, default=64)
    parser.add_argument("--prompts-3d", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--out", default=None, help="keep the generated images and runs here (default: a temp dir)")
    args = parser.parse_args()

    quiet_libraries()
    torch.manual_seed(0)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="spatialgen-eval-"))
    results: dict[str, object] = {"model": args.model, "threads": torch.get_num_threads()}

    pipe = load_pipeline(args.model)
    # held-out scenes from the model's own scene distribution (its card), seeds no training set uses
    config = model_scene_config(model_card(pipe))
    held = [make_sample(scene_seed(HELD_OUT_SEED, i), 64, config) for i in range(args.held_out)]
    results["recogniser_held_out"] = score_recogniser(SceneRecogniser.load(), held)
    results["estimator_held_out"] = score_estimator(SceneEstimator.load(), held)

    write_true_renders(work / "true-renders", 200, config)
    tables, speed = score_folder(work / "true-renders", work / "run-true-renders")
    results["ceiling_true_renders"] = tables
    results["spatial_eval_images_per_second"] = speed
    half = len(held) // 2
    start = time.perf_counter()
    scene_quality([s.rgb for s in held[:half]], [s.rgb for s in held[half : 2 * half]])
    results["quality_eval_images_per_second"] = 2 * half / (time.perf_counter() - start)

    settings = GenerationSettings(steps=args.steps)
    for kind, n in (("2d", args.prompts_2d), ("3d", args.prompts_3d)):
        records = scene_prompt_set(kind, n)
        generated = generate_images(pipe, [r.prompt for r in records], n=args.seeds, seed=42, settings=settings)
        save_generated(generated, work / f"images-{kind}", {"model": args.model, "steps": args.steps}, grid=False)
        tables, _ = score_folder(work / f"images-{kind}", work / f"run-{kind}")
        results[f"embedded_{kind}"] = tables
        if kind == "2d":
            quality = scene_quality([g.image for g in generated], [s.rgb for s in held[: len(generated)]])
            results["embedded_quality"] = quality.to_dict()
    results["work_dir"] = str(work)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
