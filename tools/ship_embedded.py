"""Copy a trained run into the package as the embedded model (fp16), and the scene recogniser / estimator.

    python tools/ship_embedded.py --run runs/base --recogniser runs/recogniser --estimator runs/estimator

Prints the checkpoint size and how far fp16 storage moves generated pixels from the fp32 run.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from spatialgen.models.pipeline import embedded_path, load_pipeline, save_pipeline

PROMPTS = ["a red cube on a checkered floor", "a blue sphere to the left of a yellow cone", "two green cylinders"]


def images(pipe) -> np.ndarray:
    generators = [torch.Generator().manual_seed(k) for k in range(len(PROMPTS))]
    return pipe(PROMPTS, num_inference_steps=25, generator=generators, output_type="np").images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a `spatialgen train base` run folder")
    parser.add_argument("--recogniser", type=Path, default=None, help="a `spatialgen train recogniser` folder")
    parser.add_argument("--estimator", type=Path, default=None, help="a `spatialgen train estimator` folder")
    args = parser.parse_args()
    for name in ("recogniser", "estimator"):
        folder = getattr(args, name)
        if folder is not None:
            destination = embedded_path().parent / name
            shutil.rmtree(destination, ignore_errors=True)
            shutil.copytree(folder, destination)
            print(f"{name} copied to {destination}")
    if args.run is None:
        return

    source = load_pipeline(args.run / "pipeline")
    config = source.spatialgen_config
    manifest = Path(config["training"]["data"]) / "manifest.json"
    if config.get("data") is None and manifest.is_file():
        config["data"] = json.loads(manifest.read_text())["params"]
    config["reproduce"] = [
        "spatialgen scenes make --out data/scenes-train --n {n} --resolution {resolution} --seed {seed}".format(
            **config["data"]
        ),
        "spatialgen train base --config src/spatialgen/weights/embedded/spatialgen.json "
        "--data data/scenes-train --out runs/base",
    ]
    target = embedded_path()
    save_pipeline(source, target, fp16=True)
    shipped = load_pipeline("embedded")
    difference = np.abs(images(shipped) - images(source)).max() * 255
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"embedded model: {size / 1e6:.1f} MB in {target}; fp16 storage moves pixels by at most {difference:.1f}/255")


if __name__ == "__main__":
    main()
