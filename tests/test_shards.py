"""Sharded datasets: round trip, parallel == serial, resume after interruption, torch datasets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spatialgen.scenes import DatasetParams, SceneShards, make_dataset, make_sample, scene_seed
from spatialgen.scenes import shards as shards_module
from spatialgen.scenes.dataset import SceneDataset, SceneStream

PARAMS = DatasetParams(n=7, resolution=32, seed=4, shard_size=3)


def digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob("shard-*.tar"))}


def assert_same_sample(a, b) -> None:
    for field in ("rgb", "albedo", "shading", "depth", "normal", "instance", "lines"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field
    assert a.metadata() == b.metadata()


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    make_dataset(root, PARAMS)
    return root


def test_shards_round_trip_to_the_samples_that_made_them(dataset_dir: Path) -> None:
    shards = SceneShards(dataset_dir)
    assert len(shards) == PARAMS.n and shards.resolution == 32
    for i in range(PARAMS.n):
        assert_same_sample(shards[i], make_sample(scene_seed(PARAMS.seed, i), 32))
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    assert manifest["complete"] and list(manifest["shards"]) == [
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
    assert manifest["stats"]["samples"] == 7 and sum(e["count"] for e in manifest["shards"].values()) == 7
    with pytest.raises(IndexError):
        shards[7]


def test_a_manifest_lets_a_read_index_only_the_shard_it_needs(dataset_dir: Path, tmp_path: Path) -> None:
    shards = SceneShards(dataset_dir)
    assert_same_sample(shards[-1], make_sample(scene_seed(PARAMS.seed, PARAMS.n - 1), 32))
    assert shards._entries[:2] == [None, None] and shards._entries[2] is not None  # the last shard only
    assert_same_sample(shards[4], make_sample(scene_seed(PARAMS.seed, 4), 32))  # 3 per shard: the second
    assert shards._entries[0] is None
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in dataset_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"]["shard-000000.tar"]["count"] = 2  # a shard changed after the manifest was written
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="holds 3 samples, but its dataset's manifest says 2"):
        SceneShards(copy)[0]


def test_parallel_workers_write_byte_identical_shards(dataset_dir: Path, tmp_path: Path) -> None:
    make_dataset(tmp_path, PARAMS, workers=2)
    assert digests(tmp_path) == digests(dataset_dir)


def test_an_interrupted_run_resumes_keeping_finished_shards(dataset_dir: Path, tmp_path: Path, monkeypatch) -> None:
    real = shards_module.write_shard
    calls = []

    def dies_on_second_shard(root, params, shard):
        calls.append(shard)
        if len(calls) == 2:
            (root / f".shard-{shard:06d}.tar.partial.tmp").write_bytes(b"half a shard")
            raise KeyboardInterrupt
        return real(root, params, shard)

    monkeypatch.setattr(shards_module, "write_shard", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        make_dataset(tmp_path, PARAMS)
    first = tmp_path / "shard-000000.tar"
    stamp = (first.stat().st_ino, first.stat().st_mtime_ns)
    with pytest.raises(ValueError, match="incomplete"):
        SceneShards(tmp_path)
    assert len(SceneShards(tmp_path, allow_incomplete=True)) == 3

    monkeypatch.setattr(shards_module, "write_shard", real)
    make_dataset(tmp_path, PARAMS)
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == stamp, "the finished shard was kept as it was"
    assert not list(tmp_path.glob(".*.tmp"))
    assert digests(tmp_path) == digests(dataset_dir)
    assert json.loads((tmp_path / "manifest.json").read_text())["complete"]


def test_resuming_with_other_parameters_is_refused(dataset_dir: Path, tmp_path: Path) -> None:
    make_dataset(tmp_path, PARAMS)
    before = digests(tmp_path)
    with pytest.raises(ValueError, match=r"other parameters \(differing: \['resolution'\]\)"):
        make_dataset(tmp_path, DatasetParams(n=7, resolution=64, seed=4, shard_size=3))
    assert digests(tmp_path) == before


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (DatasetParams(n=0, resolution=32, seed=0), "must be positive"),
        (DatasetParams(n=5, resolution=30, seed=0), "multiple of 8"),
        (DatasetParams(n=5, resolution=32, seed=0, shard_size=0), "shard size"),
    ],
)
def test_bad_dataset_parameters_are_refused(tmp_path: Path, params: DatasetParams, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_dataset(tmp_path / "out", params)
    assert not (tmp_path / "out").exists()


def test_an_unwritable_output_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="cannot write to output directory"):
        make_dataset(blocker / "scenes", PARAMS)


def test_scene_dataset_and_stream_yield_the_same_examples(dataset_dir: Path) -> None:
    mix = {"attributes": 1.0, "relation2d": 1.0}
    from_disk = SceneDataset(dataset_dir, caption_mix=mix, caption_seed=9)
    on_the_fly = list(SceneStream(seed=PARAMS.seed, n=PARAMS.n, resolution=32, caption_mix=mix, caption_seed=9))
    assert len(from_disk) == len(on_the_fly) == PARAMS.n
    for i, streamed in enumerate(on_the_fly):
        stored = from_disk[i]
        assert stored["caption"] == streamed["caption"] and stored["index"] == streamed["index"] == i
        assert torch.equal(stored["pixel_values"], streamed["pixel_values"])
        assert torch.equal(stored["intrinsics"], streamed["intrinsics"])
    example = from_disk[0]
    assert example["pixel_values"].shape == (3, 32, 32) and example["intrinsics"].shape == (8, 32, 32)
    assert -1.0 <= example["pixel_values"].min() and example["pixel_values"].max() <= 1.0
    assert example["caption_kind"] in mix


def test_stream_workers_split_indices_without_overlap() -> None:
    stream = SceneStream(seed=1, n=6, resolution=16)
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    assert sorted(int(e["index"]) for e in loader) == list(range(6))


def test_captions_change_across_epochs_reproducibly(dataset_dir: Path) -> None:
    mix = {"attributes": 1.0, "count": 1.0}
    ds = SceneDataset(dataset_dir, caption_mix=mix)
    epoch0 = [ds[i]["caption_kind"] for i in range(PARAMS.n)]
    ds.set_epoch(1)
    epoch1 = [ds[i]["caption_kind"] for i in range(PARAMS.n)]
    ds.set_epoch(0)
    assert [ds[i]["caption_kind"] for i in range(PARAMS.n)] == epoch0
    assert epoch1 != epoch0


def test_dataloader_batches_scene_examples(dataset_dir: Path) -> None:
    batch = next(iter(DataLoader(SceneDataset(dataset_dir), batch_size=4, num_workers=2)))
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and len(batch["caption"]) == 4
