"""Scene-world throughput on this machine: scenes per second at 64 and 256 pixels.

    python benchmarks/scenes_speed.py [--n 400] [--workers 2]

Prints, per resolution: the renderer alone (one process), a full sample (sampling + render +
annotations + captions, one process), and `make_dataset` end to end (encoding and writing tar
shards) with --workers processes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from spatialgen.scenes import DatasetParams, make_dataset, make_sample, render, sample_scene, scene_seed


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="scenes at 64px (256px uses n/8)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"cpu cores: {os.cpu_count()}, workers: {args.workers}")
    print(f"{'resolution':>10} {'render/s':>9} {'sample/s':>9} {'dataset/s':>9}  (scenes per second)")
    for resolution, n in ((64, args.n), (256, max(8, args.n // 8))):
        specs = [sample_scene(scene_seed(0, i)) for i in range(n)]
        start = time.perf_counter()
        for spec in specs:
            render(spec, resolution)
        t_render = time.perf_counter() - start

        start = time.perf_counter()
        for i in range(n):
            make_sample(scene_seed(1, i), resolution)
        t_sample = time.perf_counter() - start

        with tempfile.TemporaryDirectory() as root:
            params = DatasetParams(n=n, resolution=resolution, seed=2, shard_size=max(1, n // (4 * args.workers)))
            start = time.perf_counter()
            make_dataset(root, params, workers=args.workers)
            t_dataset = time.perf_counter() - start
        print(f"{resolution:>10} {rate(n, t_render):>9} {rate(n, t_sample):>9} {rate(n, t_dataset):>9}")


if __name__ == "__main__":
    main()
