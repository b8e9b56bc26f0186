"""How large the objects of a scene distribution are, and how well the scene recogniser reads them.

    python benchmarks/scene_distribution.py [--recogniser FOLDER] [--scenes 256]

For camera-distance ranges (with the floor region shrunk so objects stay in view), on held-out
scenes of 1-3 objects at 64 px: the median side of the objects' visible boxes, the share under
10 px (2 x 2 latent cells or fewer at f = 4), and the share of scenes whose every object the
recogniser finds on the render itself (the ceiling of the object-accuracy check), and per object.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from embedded_model import score_objects  # noqa: E402

from spatialgen.eval.scene.recogniser import SceneRecogniser  # noqa: E402
from spatialgen.scenes import SceneConfig, make_sample, scene_seed  # noqa: E402
from spatialgen.scenes.held_out import HELD_OUT_SEED  # noqa: E402

RANGES = (((6.5, 8.0), 2.0), ((5.5, 6.5), 1.7), ((5.0, 6.0), 1.6), ((4.5, 5.5), 1.4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recogniser", default=None, help="recogniser folder (default: the embedded one)")
    parser.add_argument("--scenes", type=int, default=256)
    args = parser.parse_args()
    recogniser = SceneRecogniser.load(args.recogniser)
    print(
        "| camera distance | floor half-width | median object side | objects under 10 px "
        "| recogniser on renders: all objects | per object |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for distance, region in RANGES:
        config = SceneConfig(min_objects=1, max_objects=3, distance=distance, region_half_width=region)
        samples = [make_sample(scene_seed(HELD_OUT_SEED + 1, i), 64, config) for i in range(args.scenes)]
        sides = np.array(
            [
                np.sqrt(max(0.0, (b[2] - b[0]) * (b[3] - b[1])))
                for s in samples
                for b in (o.visible_box for o in s.objects)
            ]
        )
        x = torch.from_numpy(np.stack([s.rgb for s in samples])).permute(0, 3, 1, 2).float() / 127.5 - 1
        scores = score_objects(recogniser, x, [s.captions["attributes"] for s in samples], "renders")
        print(
            f"| {distance[0]:g}-{distance[1]:g} | {region:g} | {np.median(sides):.1f} px "
            f"| {100 * np.mean(sides < 10):.0f}% | {scores['renders_all_objects']:.1f}% "
            f"| {scores['renders_per_object']:.1f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
