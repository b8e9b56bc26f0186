"""Throughput of each intrinsics estimator on this machine: images per second at the dataset's resolution.

    python benchmarks/extraction.py [--images 64] [--resolution 64]

Rows: the embedded scene estimator (depth and normals in one network), the weight-free normals
from depth, lines from the other maps and from the image, and, as stand-ins for the real model
families a user brings (their cost on a GPU is theirs to measure), a tiny random Marigold normals
pipeline (4 denoising steps) and a tiny random Mask2Former; with ``--ilora`` also the shipped
Intrinsic LoRA adapters. Each row runs twice and reports the second (warm) run, batch 16, with torch
on every core; the images are scene-world renders of the held-out seed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from spatialgen.extraction.estimators import (
    depth_estimator,
    edges_of_maps,
    image_edges,
    normal_estimator,
    normals_from_depth,
    segmentation_estimator,
)
from spatialgen.logs import quiet_libraries


def renders(n: int, resolution: int) -> np.ndarray:
    from spatialgen.scenes import make_sample, scene_seed
    from spatialgen.scenes.held_out import HELD_OUT_SEED

    return np.stack([make_sample(scene_seed(HELD_OUT_SEED, i), resolution).rgb for i in range(n)])


def tiny_models(folder: Path) -> tuple[Path, Path]:
    """A tiny random Marigold normals pipeline and Mask2Former, saved in ``folder``."""
    from diffusers import MarigoldNormalsPipeline, UNet2DConditionModel
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    from spatialgen.models import TinySDConfig, build_pipeline

    torch.manual_seed(0)
    base = build_pipeline(TinySDConfig(resolution=64))
    unet = UNet2DConditionModel.from_config({**base.unet.config, "in_channels": 8})
    MarigoldNormalsPipeline(
        unet, base.vae, base.scheduler, base.text_encoder, base.tokenizer, prediction_type="normals"
    ).save_pretrained(folder / "marigold")
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=32,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone,
        hidden_dim=32,
        num_queries=8,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        encoder_feedforward_dim=32,
        dim_feedforward=32,
        mask_feature_size=32,
        feature_size=32,
        num_labels=4,
        use_pretrained_backbone=False,
    )
    Mask2FormerForUniversalSegmentation(config).save_pretrained(folder / "m2f")
    Mask2FormerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder / "m2f")
    return folder / "marigold", folder / "m2f"


def rate(run, images: np.ndarray, batch: int = 16) -> float:
    """Images per second of ``run`` over ``images`` in batches (second of two passes)."""
    for _ in range(2):
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            run(images[i : i + batch])
        seconds = time.perf_counter() - start
    return len(images) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--ilora", action="store_true", help="also the shipped Intrinsic LoRA adapters")
    args = parser.parse_args()
    quiet_libraries()
    images = renders(args.images, args.resolution)
    scenes_depth, scenes_normal = depth_estimator("scenes"), normal_estimator("scenes")
    disparity = scenes_depth(images[:16])
    normals = normals_from_depth(disparity)
    rows = {
        "scene estimator: depth": rate(scenes_depth, images),
        "scene estimator: normals": rate(lambda b: scenes_normal(b, None), images),
        "normals from depth (weight-free)": rate(lambda b: normals_from_depth(disparity[: len(b)]), images[:16]),
        "lines from depth + normals (weight-free)": rate(
            lambda b: edges_of_maps(disparity[: len(b)], normals[: len(b)], None), images[:16]
        ),
        "lines from the image (Sobel)": rate(image_edges, images),
    }
    with tempfile.TemporaryDirectory() as tmp:
        marigold, m2f = tiny_models(Path(tmp))
        marigold_run = normal_estimator(f"marigold:{marigold}")
        rows["tiny random Marigold normals, 4 steps"] = rate(lambda b: marigold_run(b, None), images)
        rows["tiny random Mask2Former, panoptic"] = rate(segmentation_estimator(f"panoptic:{m2f}"), images)
    if args.ilora:
        ilora_depth = depth_estimator("ilora")
        ilora_normal = normal_estimator("ilora")
        rows["Intrinsic LoRA (shipped): depth"] = rate(ilora_depth, images)
        rows["Intrinsic LoRA (shipped): normals"] = rate(lambda b: ilora_normal(b, None), images)
    print(f"\n{args.images} held-out renders at {args.resolution} px, batch 16, {torch.get_num_threads()} threads\n")
    print("| estimator | images / s |")
    print("| --- | --- |")
    for name, value in rows.items():
        print(f"| {name} | {value:,.0f} |")


if __name__ == "__main__":
    main()
