"""Metrics over images that are not spatial: quality (CMMD, Frechet distance, CLIP score), intrinsic accuracy
(depth, normals, segmentation, lines) and human-preference models (HPSv2, ImageReward)."""
