"""A picture of the embedded model's quality: held-out prompts x seeds in one grid (the README's figure).

    python benchmarks/held_out_grid.py --out docs/images/embedded-held-out-grid.png [--model embedded]

The prompts are the first ``--prompts`` attribute captions of ``benchmarks/embedded_model.py``'s
held-out scenes (1-3 objects, the model's own scene distribution, seeds no training set uses),
each sampled with seeds 42, 43, ... (25 DDIM steps, guidance 7.5), two prompts to a row. Each
tile is captioned with its prompt and seed, and with a tick when the scene recogniser finds
every named object in it (the object-accuracy check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from embedded_model import attribute_scenes  # noqa: E402

from spatialgen.eval.prompts.scene_prompts import prompt_objects  # noqa: E402
from spatialgen.eval.scene.recogniser import SceneRecogniser  # noqa: E402
from spatialgen.generate import GenerationSettings, generate_images  # noqa: E402
from spatialgen.image_grid import image_grid  # noqa: E402
from spatialgen.models import load_pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--recogniser", default=None, help="recogniser folder (default: the embedded one)")
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = load_pipeline(args.model)
    prompts = [sample.captions["attributes"] for sample in attribute_scenes(pipe, args.prompts)]
    results = generate_images(pipe, prompts, n=args.seeds, seed=42, settings=GenerationSettings(steps=args.steps))
    detections = SceneRecogniser.load(args.recogniser).detect([r.image for r in results])
    captions = []
    for result, found in zip(results, detections, strict=True):
        hit = set(prompt_objects(result.prompt)) <= {(d.colour, d.shape) for d in found}
        captions.append(f"{'[ok] ' if hit else ''}{result.prompt} (seed {result.seed})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image_grid([r.image for r in results], captions, columns=2 * args.seeds).save(args.out)
    hits = sum(c.startswith("[ok]") for c in captions)
    print(f"wrote {args.out}: {len(results)} images, every named object found in {hits}")


if __name__ == "__main__":
    main()
